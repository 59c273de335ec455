"""Continuous batching: a request's output is the same alone or batched (greedy fp32, and seeded
sampling), requests join and leave between steps and share forward passes, a cancelled request
leaves at once, a full queue is refused."""

from __future__ import annotations

import queue

import pytest
import torch
from serving_models import chat_model, chat_tokenizer, randomized

from zeroforge.generation import generate
from zeroforge.registry import create_model
from zeroforge.serve.batching import BatchScheduler, Event, GenerationRequest, QueueFull, SamplingSettings

PROMPTS = [
    "the user asked",
    "In the beginning God created the heaven and the assistant answered politely.",
    "politely",
    "the heaven. the user asked and",
    "God",
    "answered the user and the assistant asked God politely. In the",
]


def run(scheduler: BatchScheduler, tokenizer, prompts, settings) -> list[tuple[str, Event]]:
    """Submit every prompt at once; collect each one's text and final event."""
    inboxes = []
    with scheduler.lock:  # the scheduler sees them all at once: they join together
        for prompt, s in zip(prompts, settings):
            inbox: queue.Queue[Event] = queue.Queue()
            scheduler.submit(GenerationRequest(tokenizer.encode(prompt), s, inbox.put))
            inboxes.append(inbox)
    results = []
    for inbox in inboxes:
        pieces = []
        while True:
            event = inbox.get(timeout=60)
            pieces.append(event.text)
            if event.finish_reason is not None:
                results.append(("".join(pieces), event))
                break
    return results


@pytest.mark.parametrize("family", ["llama-tiny", "gpt-tiny"])
@pytest.mark.parametrize("max_length", [256, 64])  # 64: columns run out, rows are shifted while decoding
def test_greedy_output_is_the_same_alone_and_batched(family, max_length):
    model, tok = chat_model(family)
    budgets = [12, 30, 5, 20, 25, 9]
    scheduler = BatchScheduler(model, tok, max_batch=4, max_length=max_length)
    try:
        batched = run(
            scheduler, tok, PROMPTS, [SamplingSettings(max_tokens=n, temperature=0) for n in budgets]
        )
    finally:
        scheduler.close()
    assert scheduler.shifts > 0 if max_length == 64 else True
    assert scheduler.prefills < len(PROMPTS)  # prompts of different lengths were prefilled together
    for prompt, n, (text, end) in zip(PROMPTS, budgets, batched):
        alone = generate(model, tok, prompt, max_new_tokens=n, temperature=0)
        assert text == alone, prompt
        assert end.finish_reason in ("stop", "length") and end.completion_tokens <= n
    assert len({text for text, _ in batched}) > 3  # the outputs differ: the comparison means something


def test_seeded_sampling_is_the_same_alone_and_batched():
    model, tok = chat_model()
    settings = [
        SamplingSettings(max_tokens=15, temperature=0.9, top_p=0.9, seed=i) for i in range(len(PROMPTS))
    ]
    scheduler = BatchScheduler(model, tok, max_batch=3)
    try:
        batched = run(scheduler, tok, PROMPTS, settings)
    finally:
        scheduler.close()
    for prompt, s, (text, _) in zip(PROMPTS, settings, batched):
        assert text == generate(model, tok, prompt, 15, temperature=0.9, top_p=0.9, seed=s.seed)


def test_requests_share_forward_passes_and_stop_strings_end_a_row():
    model, tok = chat_model()
    scheduler = BatchScheduler(model, tok, max_batch=8)
    try:
        results = run(
            scheduler, tok, PROMPTS, [SamplingSettings(max_tokens=20, temperature=0)] * len(PROMPTS)
        )
        steps = scheduler.steps
        alone = generate(model, tok, PROMPTS[1], 20, temperature=0)
        stop = alone[3:6]
        [(text, end)] = run(
            scheduler, tok, PROMPTS[1:2], [SamplingSettings(max_tokens=20, temperature=0, stop=[stop])]
        )
    finally:
        scheduler.close()
    generated = sum(end.completion_tokens for _, end in results)
    assert steps < generated / 3  # six rows decode together, not one after another
    assert end.finish_reason == "stop" and text == alone[: alone.find(stop)]


def test_a_cancelled_request_leaves_and_the_next_one_is_served():
    model, tok = chat_model()
    scheduler = BatchScheduler(model, tok, max_batch=2)
    try:
        inbox: queue.Queue[Event] = queue.Queue()
        request = GenerationRequest(
            tok.encode(PROMPTS[0]), SamplingSettings(max_tokens=200, temperature=0), inbox.put
        )
        scheduler.submit(request)
        request.cancel()
        events = []
        while not events or events[-1].finish_reason is None:
            events.append(inbox.get(timeout=30))
        assert events[-1].finish_reason == "cancelled" and events[-1].completion_tokens < 200
        [(text, _)] = run(scheduler, tok, PROMPTS[:1], [SamplingSettings(max_tokens=6, temperature=0)])
        assert text == generate(model, tok, PROMPTS[0], 6, temperature=0)
        assert scheduler.running == 0
    finally:
        scheduler.close()


def test_a_full_queue_and_an_over_long_request_are_refused():
    model, tok = chat_model()
    scheduler = BatchScheduler(model, tok, max_batch=1, max_queue=0, max_length=64)
    try:
        ids = tok.encode(PROMPTS[0])
        with pytest.raises(Exception, match="exceeds the context length 64"):
            scheduler.submit(GenerationRequest(ids, SamplingSettings(max_tokens=64), lambda e: None))
        inbox: queue.Queue[Event] = queue.Queue()
        first = GenerationRequest(ids, SamplingSettings(max_tokens=40, temperature=0), inbox.put)
        scheduler.submit(first)
        inbox.get(timeout=30)  # the first is running: its row is taken and no one may wait
        with pytest.raises(QueueFull):
            scheduler.submit(GenerationRequest(ids, SamplingSettings(max_tokens=4), lambda e: None))
        first.cancel()
    finally:
        scheduler.close()


def test_a_recurrent_model_is_decoded_row_by_row():
    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = randomized(create_model("lstm-tiny", vocab_size=tok.vocab_size))
    scheduler = BatchScheduler(model, tok, max_batch=3)
    try:
        assert not scheduler.batched
        results = run(scheduler, tok, PROMPTS[:4], [SamplingSettings(max_tokens=10, temperature=0)] * 4)
    finally:
        scheduler.close()
    for prompt, (text, _) in zip(PROMPTS, results):
        assert text == generate(model, tok, prompt, 10, temperature=0)
