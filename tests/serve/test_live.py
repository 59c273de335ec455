"""A live server on 127.0.0.1 (uvicorn, a free port): the official ``openai`` client (chat, streaming,
embeddings), a client that disconnects mid-stream, and a load test (200 requests, 16 at a time)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
from serving_models import live_server

from zeroforge.embedding import embed
from zeroforge.serve import load_app
from zeroforge.weights import load

openai = pytest.importorskip("openai")

KEY = "test-key"


@pytest.fixture(scope="module")
def chat_server(chat_dir):
    app = load_app(chat_dir, api_key=KEY, max_batch=16)
    with live_server(app) as url:
        yield app, url


def test_openai_client_chat_and_streaming(chat_server):
    app, url = chat_server
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    assert [m.id for m in client.models.list()] == ["tiny-chat"]
    messages = [{"role": "user", "content": "the user asked"}]
    reply = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=10, temperature=0)
    text = reply.choices[0].message.content
    assert text and reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 3
    stream = client.chat.completions.create(
        model="tiny-chat", messages=messages, max_tokens=10, temperature=0, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == text and len([p for p in pieces if p]) > 1
    completion = client.completions.create(model="tiny-chat", prompt="God", max_tokens=5, temperature=0)
    assert completion.choices[0].text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_openai_client_embeddings(encoder_dir):
    model, tok = load(encoder_dir)
    texts = ["In the beginning", "the assistant answered"]
    with live_server(load_app(encoder_dir)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        result = client.embeddings.create(model="tiny-encoder", input=texts)
    got = np.array([d.embedding for d in result.data])
    np.testing.assert_allclose(got, embed(model, texts, tokenizer=tok).numpy(), atol=1e-6)


def test_a_client_that_disconnects_mid_stream_stops_its_sequence(chat_server):
    app, url = chat_server
    scheduler = app.state.scheduler
    step = scheduler._step
    released = threading.Event()

    def slow_step():  # hold decoding until the client is gone, then 10 ms a step
        released.wait(30)
        time.sleep(0.01)
        step()

    scheduler._step = slow_step
    try:
        before = scheduler.cancelled
        auth = {"Authorization": f"Bearer {KEY}"}
        body = {"prompt": "God", "max_tokens": 200, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, headers=auth) as r:
            assert r.status_code == 200
            next(r.iter_lines())
        released.set()  # the client closed the connection above
        deadline = time.monotonic() + 10
        while scheduler.cancelled == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scheduler.cancelled == before + 1 and scheduler.running == 0
        released.clear()  # the same for a request that is not streamed: the client gives up waiting
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/completions", json={**body, "stream": False}, headers=auth, timeout=0.5)
        released.set()
        deadline = time.monotonic() + 10
        while scheduler.cancelled == before + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scheduler.cancelled == before + 2 and scheduler.running == 0
    finally:
        released.set()
        scheduler._step = step
    r = httpx.post(
        url + "/v1/completions",
        json={"prompt": "God", "max_tokens": 3},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200
    metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert "zeroforge_requests_in_flight 0.0" in metrics  # every request, however it ended, let go


async def load_test(url: str, n_requests: int, concurrency: int, max_tokens: int, headers: dict) -> dict:
    """n_requests completions, ``concurrency`` in flight at once: latencies, errors, tokens/s."""
    gate = asyncio.Semaphore(concurrency)
    latencies, errors, tokens = [], [], 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal tokens
        async with gate:
            start = time.perf_counter()
            body = {
                "prompt": ["God", "the user asked", "In the beginning"][i % 3],
                "max_tokens": max_tokens,
                "temperature": 0.8,
                "seed": i,
            }
            r = await client.post(url + "/v1/completions", json=body, headers=headers)
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                errors.append(r.text)
            else:
                tokens += r.json()["usage"]["completion_tokens"]

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(one(client, i) for i in range(n_requests)))
    wall = time.perf_counter() - start
    return {
        "errors": errors,
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "tokens_per_s": tokens / wall,
        "wall": wall,
        "tokens": tokens,
    }


def test_load_200_requests_16_concurrent(chat_server):
    app, url = chat_server
    result = asyncio.run(load_test(url, 200, 16, 16, {"Authorization": f"Bearer {KEY}"}))
    print(
        f"\nload test: 200 requests, 16 concurrent, max_tokens 16: {result['wall']:.1f} s, "
        f"p50 {result['p50'] * 1000:.0f} ms, p95 {result['p95'] * 1000:.0f} ms, "
        f"{result['tokens_per_s']:.0f} tokens/s ({result['tokens']} tokens)"
    )
    assert result["errors"] == []
    assert result["wall"] < 120
    assert result["tokens"] > 200
