"""SFT data: rows -> messages (both layouts, one-line errors), the loss only on assistant tokens
(checked by decoding the labelled tokens and by the gradient reaching only response positions),
piecewise tokenization == whole-text tokenization, and packing: same loss as one example per row."""

from __future__ import annotations

import json

import pytest
import torch

from zeroforge.data.sft import (
    IGNORE_INDEX,
    PLAIN_TEMPLATE,
    SFTBatches,
    SFTExample,
    chat_pieces,
    collate,
    collate_packed,
    encode_example,
    encode_rows,
    eval_batches,
    pack,
    read_jsonl,
    render_prompt,
    row_messages,
    split_rows,
)
from zeroforge.errors import DataError
from zeroforge.models.causal_lm import FinetunedLM
from zeroforge.registry import create_model
from zeroforge.tokenizers.chat_template import render_chat

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def chatml_tokenizer():
    """GPT-2's BPE plus ChatML's two control tokens and SmolLM2's template (as its GGUF has it)."""
    from tokenizers import AddedToken

    from zeroforge.tokenizers import gpt2_tokenizer
    from zeroforge.weights.tokenizer import PretrainedTokenizer

    tok = gpt2_tokenizer().tokenizer
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")]
    )
    return PretrainedTokenizer(tok, {"bos": "<|im_start|>", "eos": "<|im_end|>"}, CHATML)


ROW = {"instruction": "Classify: free prize, text WIN now", "input": "Options: spam, ham", "output": "spam"}
CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
}


def test_row_layouts_become_messages():
    assert row_messages(ROW, "r:1") == [
        {"role": "user", "content": "Classify: free prize, text WIN now\n\nOptions: spam, ham"},
        {"role": "assistant", "content": "spam"},
    ]
    with_system = row_messages({**ROW, "system": "S", "input": ""}, "r:1")
    assert (
        with_system[0] == {"role": "system", "content": "S"}
        and with_system[1]["content"] == ROW["instruction"]
    )
    assert row_messages(CHAT, "r:2") == CHAT["messages"]


@pytest.mark.parametrize(
    "row, message",
    [
        (
            {"instruction": "x"},
            r"^d.jsonl:3: output: missing \(an instruction row needs instruction and output",
        ),
        ({"output": "x"}, r"^d.jsonl:3: instruction: missing"),
        ({"instruction": "x", "output": "  "}, r"^d.jsonl:3: output: empty$"),
        ({"instruction": "x", "output": 3}, r"^d.jsonl:3: output: expected a string, got int$"),
        ({"messages": [{"role": "user", "content": "x"}]}, r"^d.jsonl:3: messages: no assistant turn"),
        ({"messages": [{"role": "bot", "content": "x"}]}, r"^d.jsonl:3: messages\[0\]: expected \{role"),
    ],
)
def test_bad_rows_are_one_line_errors(row, message):
    with pytest.raises(DataError, match=message):
        row_messages(row, "d.jsonl:3")


def test_read_jsonl_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROW) + "\n\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: not valid JSON"):
        read_jsonl(path)
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({"instruction": "a"}) + "\n", encoding="utf-8")
    (first, row1), (second, row2) = read_jsonl(path)
    assert first == f"{path}:1" and row1 == ROW
    with pytest.raises(DataError, match=rf"^{path}:2: output: missing"):
        row_messages(row2, second)


@pytest.mark.network
def test_pieces_rebuild_the_rendered_chat_and_mark_only_answers(chatml_tokenizer):
    messages = row_messages(CHAT, "c")
    pieces = chat_pieces(chatml_tokenizer, messages)
    assert "".join(t for t, _ in pieces) == render_chat(CHATML, messages, add_generation_prompt=False)
    assert [t for t, answer in pieces if answer] == ["Hello!<|im_end|>\n", "4<|im_end|>\n"]


def test_labels_are_exactly_the_assistant_tokens(chatml_tokenizer):
    example = encode_example(chatml_tokenizer, row_messages(CHAT, "c"), max_length=256)
    full = render_chat(CHATML, CHAT["messages"], add_generation_prompt=False)
    ids = chatml_tokenizer.encode(full)
    assert example.input_ids == ids[:-1]  # piecewise tokens == the whole text's tokens
    targets = [t for t in example.labels if t != IGNORE_INDEX]
    assert chatml_tokenizer.decode(targets) == "Hello!<|im_end|>\n4<|im_end|>\n"
    # every labelled position predicts the token that follows it
    for t, label in enumerate(example.labels):
        assert label in (IGNORE_INDEX, ids[t + 1])


def test_prompt_positions_get_no_gradient_and_their_labels_do_not_matter(chatml_tokenizer):
    """Changing what a prompt position would predict leaves the loss unchanged; the loss's gradient
    with respect to the logits is zero at every prompt position and non-zero at the answer's."""
    torch.manual_seed(0)
    model = create_model("llama-tiny", vocab_size=chatml_tokenizer.vocab_size, block_size=128).eval()
    example = encode_example(chatml_tokenizer, row_messages(ROW, "r"), max_length=256)
    batch = collate([example])
    logits = model(batch["input_ids"]).logits.detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(logits[0], batch["labels"][0], ignore_index=IGNORE_INDEX)
    loss.backward()
    prompt = batch["labels"][0] == IGNORE_INDEX
    assert prompt.sum() > 10 and (~prompt).sum() == len(chatml_tokenizer.encode("spam<|im_end|>\n"))
    assert logits.grad[0, prompt].abs().max() == 0
    assert (logits.grad[0, ~prompt].abs().sum(-1) > 0).all()
    # the model's own loss agrees, and rewriting the unmasked targets at prompt positions changes nothing
    unmasked = torch.tensor([example.input_ids[1:] + [0]])
    with torch.no_grad():
        ours = model(batch["input_ids"], labels=batch["labels"]).loss
        changed = torch.where(prompt[None], (unmasked + 7) % 50, batch["labels"])
        changed = torch.where(prompt[None], IGNORE_INDEX, changed)  # the mask is by position, not value
        torch.testing.assert_close(ours, loss.detach())
        torch.testing.assert_close(model(batch["input_ids"], labels=changed).loss, ours)
        # while changing an answer target does change it
        answer_changed = batch["labels"].clone()
        answer_changed[0, (~prompt).nonzero()[0, 0]] = 5
        assert not torch.allclose(model(batch["input_ids"], labels=answer_changed).loss, ours)


def test_truncation_and_rows_without_room_for_an_answer(chatml_tokenizer):
    messages = row_messages(ROW, "r")
    n_prompt = len(chatml_tokenizer.encode(render_prompt(chatml_tokenizer, messages[:-1])))
    assert encode_example(chatml_tokenizer, messages, max_length=n_prompt - 1) is None
    cut = encode_example(chatml_tokenizer, messages, max_length=n_prompt)
    assert len(cut.input_ids) == n_prompt and cut.n_targets == 1  # the first answer token only
    examples, dropped = encode_rows([("a", ROW), ("b", CHAT)], chatml_tokenizer, max_length=n_prompt - 1)
    assert dropped == 1 and [e.where for e in examples] == ["b"]


def test_vocab_mismatch_names_the_row(chatml_tokenizer):
    with pytest.raises(DataError, match=r"^r:7: token id \d+ is outside the model's vocabulary of 1000"):
        encode_rows([("r:7", ROW)], chatml_tokenizer, 256, vocab_size=1000)


def test_plain_template_for_tokenizers_without_one():
    from zeroforge.tokenizers import CharTokenizer

    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ#:!? \n")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo!"}]
    assert render_prompt(tok, messages[:1]) == "### User:\nHi\n\n### Assistant:\n"
    example = encode_example(tok, messages, max_length=100)
    assert tok.decode([t for t in example.labels if t != IGNORE_INDEX]) == "Yo!\n\n"
    assert "{{ eos_token }}" in PLAIN_TEMPLATE


# ----------------------------------------------------------------------------- packing


def fake_examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(lengths):
        ids = torch.randint(1, 60, (n,), generator=g).tolist()
        labels = [
            IGNORE_INDEX if t < n // 2 else torch.randint(1, 60, (1,), generator=g).item() for t in range(n)
        ]
        out.append(SFTExample(ids, labels, f"e{i}"))
    return out


def test_pack_keeps_examples_whole_and_in_order():
    examples = fake_examples([5, 4, 7, 3, 8])
    rows = pack(examples, max_length=10)
    assert [r.segment_ids for r in rows] == [[1] * 5 + [2] * 4, [1] * 7 + [2] * 3, [1] * 8]
    assert sum((r.input_ids for r in rows), []) == sum((e.input_ids for e in examples), [])
    with pytest.raises(DataError, match="e4: 8 tokens do not fit a packed row of 7"):
        pack(examples, max_length=7)
    batch = collate_packed(rows)
    assert batch["segment_ids"][2].tolist() == [1] * 8 + [0, 0]
    assert batch["labels"][2, 8:].tolist() == [IGNORE_INDEX] * 2


@pytest.mark.parametrize("name", ["llama-tiny", "gpt-tiny"])
def test_packed_batches_give_the_loss_of_unpacked_ones(name):
    torch.manual_seed(0)
    model = FinetunedLM.wrap(create_model(name)).eval()
    examples = fake_examples([6, 9, 4, 12, 5, 7], seed=1)
    unpacked = collate(examples, pad_id=0)
    packed = eval_batches(examples, batch_size=8, packed_length=16)
    assert len(packed) == 1 and packed[0]["input_ids"].shape[0] < len(examples)
    with torch.no_grad():
        a = model(**unpacked).loss
        b = model(**packed[0]).loss
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # gradients agree too
    model.train()
    grads = []
    for batch in (unpacked, packed[0]):
        model.zero_grad()
        model(**batch).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_sft_batches_cover_all_units_and_resume():
    examples = fake_examples([3, 4, 5, 6, 7, 3, 2])
    for packed_length in (None, 9):
        source = SFTBatches(examples, batch_size=2, seed=3, packed_length=packed_length)
        tokens = []
        for _ in range(source.steps_per_epoch):
            batch = source.next_batch()
            real = batch["segment_ids"] > 0 if packed_length else batch["attention_mask"] > 0
            tokens += batch["input_ids"][real].tolist()
        assert sorted(tokens) == sorted(sum((e.input_ids for e in examples), []))
        state = source.state_dict()
        expected = source.next_batch()
        again = SFTBatches(examples, batch_size=2, seed=3, packed_length=packed_length)
        again.load_state_dict(state)
        assert torch.equal(again.next_batch()["input_ids"], expected["input_ids"])


def test_split_rows_is_a_seeded_partition():
    rows = list(range(50))
    parts = split_rows(rows, (0.8, 0.1, 0.1), seed=2)
    assert [len(p) for p in parts] == [40, 5, 5] and sorted(sum(parts, [])) == rows
    assert split_rows(rows, (0.8, 0.1, 0.1), seed=2) == parts != split_rows(rows, (0.8, 0.1, 0.1), seed=3)
