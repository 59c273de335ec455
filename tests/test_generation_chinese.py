"""Streaming Chinese: a byte-level BPE emits a CJK character as several byte tokens; ``generate`` and
``chat`` hand out each character only once all its bytes are there, never a U+FFFD half."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.chat import ChatSession
from zeroforge.generation import Continuation, generate
from zeroforge.models.output import ModelOutput
from zeroforge.tokenizers import PretrainedTokenizer, train_bpe

# 3-byte CJK characters and full-width punctuation, a 4-byte emoji, ASCII
SCRIPT = "人民日报：新年好！🎉 ok"


def byte_tokenizer():
    """Byte-level BPE with no merges (vocabulary = the 256 bytes + <|endoftext|>): one token per byte."""
    tok = train_bpe("ab", vocab_size=257)
    ids = tok.encode(SCRIPT)
    assert len(ids) == len(SCRIPT.encode("utf-8"))  # every character is split into its bytes
    return tok, ids


class ScriptedLM(nn.Module):
    """Predicts ``script[k]`` as the k-th new token, whatever the prompt (decoded by recomputing)."""

    def __init__(self, script: list[int], vocab_size: int) -> None:
        super().__init__()
        self.script, self.vocab_size = script, vocab_size
        self.anchor = nn.Parameter(torch.zeros(()))
        self.prompt_length: int | None = None

    def forward(self, input_ids, labels=None, attention_mask=None, position_ids=None, cache=None):
        T = input_ids.size(1)
        if self.prompt_length is None:
            self.prompt_length = T
        k = min(T - self.prompt_length, len(self.script) - 1)
        row = F.one_hot(torch.tensor(self.script[k]), self.vocab_size).float() * 10
        return ModelOutput(logits=row.expand(input_ids.size(0), T, -1).clone())


def test_stream_piece_holds_partial_utf8_until_the_character_is_complete() -> None:
    tok, ids = byte_tokenizer()
    row = Continuation(tok, eos_id=None, stops=[])
    pieces = []
    for i in ids:
        row.add(i, decode=True)
        pieces.append(row.stream_piece())
    assert "".join(pieces) == SCRIPT
    assert all("\ufffd" not in p for p in pieces)
    assert [p for p in pieces if p] == list(SCRIPT)  # each character once, when its last byte arrives
    assert pieces[:3] == ["", "", "人"]


def test_generate_streams_whole_chinese_characters() -> None:
    tok, ids = byte_tokenizer()
    pieces: list[str] = []
    text = generate(
        ScriptedLM(ids, tok.vocab_size),
        tok,
        "a",
        max_new_tokens=len(ids),
        temperature=0,
        stream=pieces.append,
    )
    assert text == SCRIPT and pieces == list(SCRIPT)


def test_generation_cut_inside_a_character_streams_what_it_returns() -> None:
    tok, ids = byte_tokenizer()
    pieces: list[str] = []
    text = generate(
        ScriptedLM(ids, tok.vocab_size), tok, "a", max_new_tokens=4, temperature=0, stream=pieces.append
    )
    # 4 bytes: 人 (3 bytes) and the first byte of 民; the half character is flushed as U+FFFD at the end
    assert text == "人\ufffd" and "".join(pieces) == text and pieces[0] == "人"


def test_chat_streams_whole_chinese_characters() -> None:
    bpe, ids = byte_tokenizer()
    template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tok = PretrainedTokenizer(bpe.tokenizer, {"eos": "<|endoftext|>"}, chat_template=template)
    session = ChatSession(ScriptedLM(ids, tok.vocab_size), tok, max_new_tokens=len(ids), temperature=0)
    pieces: list[str] = []
    reply = session.send("你好", stream=pieces.append)
    assert reply == SCRIPT and pieces == list(SCRIPT)
