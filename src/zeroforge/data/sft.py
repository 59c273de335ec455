"""Instruction data for supervised fine-tuning (SFT): rows -> chat -> token ids with a loss mask.

A row of a JSONL file is either

- ``{"instruction": ..., "input": ... (optional), "output": ..., "system": ... (optional)}``, or
- ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}`` (several turns).

Both become a list of chat messages, rendered with the model's own chat template (the Jinja program
its tokenizer ships, ``zeroforge.tokenizers.chat_template.render_chat``) or, for a tokenizer without one, a plain
``### User:`` / ``### Assistant:`` layout. The loss is on the assistant's tokens only: the text is
cut at every turn boundary by rendering the conversation up to each turn, each piece is tokenized
on its own, and only the pieces an assistant wrote (its answer and the template's end-of-turn
marker, so the model learns to stop) keep their labels; the rest get -100.

Packing (``pack``) concatenates examples into rows of ``max_length`` tokens; ``segment_ids`` tells
``FinetunedLM`` which example each token belongs to, so no example attends to another and positions
restart per example: a packed batch has exactly the loss of the same examples padded one per row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zeroforge.data.collate import attention_mask, right_padded
from zeroforge.data.records import read_records
from zeroforge.data.sampler import BatchPlan
from zeroforge.errors import DataError
from zeroforge.modules.losses import IGNORE_INDEX
from zeroforge.tokenizers.chat_template import Message, render_chat

ROLES = ("system", "user", "assistant")

# For tokenizers without a chat template (a char or BPE tokenizer trained here).
PLAIN_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@dataclass
class SFTExample:
    """One conversation as model inputs: ``labels[t]`` is the token after ``input_ids[t]`` where an
    assistant wrote it, else -100 (already shifted, as the models expect)."""

    input_ids: list[int]
    labels: list[int]
    where: str = ""

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


# ----------------------------------------------------------------------------- rows -> messages


def read_jsonl(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """``[(path:line, row)]`` for every non-blank line of a JSONL file (``data.records`` reads it)."""
    return list(read_records(path, "jsonl")[1])


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise DataError(
                f"{where}: {key}: missing (an instruction row needs instruction and output, "
                "or a row has messages)"
            )
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {key}: expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise DataError(f"{where}: {key}: empty")
    return value


def row_messages(row: dict[str, Any], where: str) -> list[Message]:
    """The conversation of one row (either layout in the module docstring), checked."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: messages: expected a non-empty list of {{role, content}}")
        out = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(
                    f"{where}: messages[{i}]: expected {{role: system|user|assistant, content: str}}, got {m!r}"
                )
            out.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
            raise DataError(f"{where}: messages: no assistant turn to learn from")
        return out
    instruction = _text(row, "instruction", where)
    output = _text(row, "output", where)
    extra = _text(row, "input", where, required=False)
    system = _text(row, "system", where, required=False)
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": output}]  # type: ignore[dict-item]


# ----------------------------------------------------------------------------- messages -> tokens


def chat_template(tokenizer: Any) -> str:
    """The tokenizer's own chat template, else ``PLAIN_TEMPLATE``."""
    return getattr(tokenizer, "chat_template", None) or PLAIN_TEMPLATE


def _render(template: str, tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> str:
    specials = dict(getattr(tokenizer, "specials", {}) or {})
    eos = getattr(tokenizer, "eos_token", None) or specials.get("eos") or ""
    variables = {f"{role}_token": token for role, token in specials.items()}
    variables["eos_token"] = eos
    return render_chat(template, messages, add_generation_prompt=add_generation_prompt, **variables)


def render_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """The text a model is given to answer ``messages`` (the template's assistant opening at the end)."""
    return _render(chat_template(tokenizer), tokenizer, messages, add_generation_prompt=True)


def chat_pieces(tokenizer: Any, messages: list[Message], where: str = "") -> list[tuple[str, bool]]:
    """The rendered conversation cut at turn boundaries: ``[(text, is_assistant_answer)]``.

    Rendering ``messages[:i]`` (with the assistant opening when turn i is the assistant's) must be a
    prefix of rendering ``messages[:i+1]``; templates that rewrite earlier turns are refused.
    """
    template = chat_template(tokenizer)
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            opening = _render(template, tokenizer, messages[:i], add_generation_prompt=True)
            if not opening.startswith(done):
                raise DataError(
                    f"{where}: the chat template renders earlier turns differently as the conversation grows"
                )
            pieces.append((opening[len(done) :], False))
            done = opening
        upto = _render(template, tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not upto.startswith(done):
            raise DataError(
                f"{where}: the chat template renders earlier turns differently as the conversation grows"
            )
        pieces.append((upto[len(done) :], message["role"] == "assistant"))
        done = upto
    return [(text, answer) for text, answer in pieces if text]


def encode_example(
    tokenizer: Any, messages: list[Message], max_length: int, where: str = ""
) -> SFTExample | None:
    """Token ids and shifted labels of one conversation, cut to ``max_length`` inputs.

    Returns None when the cut leaves no assistant token to learn from (the caller counts those).
    """
    ids: list[int] = []
    answer: list[bool] = []
    for text, is_answer in chat_pieces(tokenizer, messages, where):
        piece = tokenizer.encode(text)
        ids += piece
        answer += [is_answer] * len(piece)
    ids, answer = ids[: max_length + 1], answer[: max_length + 1]
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids[1:], answer[1:])]
    if all(t == IGNORE_INDEX for t in labels):
        return None
    return SFTExample(ids[:-1], labels, where)


def encode_rows(
    rows: Sequence[tuple[str, dict[str, Any]]], tokenizer: Any, max_length: int, vocab_size: int | None = None
) -> tuple[list[SFTExample], int]:
    """Every row -> ``SFTExample``; returns (examples, rows dropped because nothing of the answer fit)."""
    examples, dropped = [], 0
    for where, row in rows:
        example = encode_example(tokenizer, row_messages(row, where), max_length, where)
        if example is None:
            dropped += 1
            continue
        if vocab_size is not None and max(example.input_ids) >= vocab_size:
            raise DataError(
                f"{where}: token id {max(example.input_ids)} is outside the model's vocabulary of {vocab_size} "
                f"(tokenizer vocab_size {tokenizer.vocab_size}: the tokenizer does not belong to this model)"
            )
        examples.append(example)
    if not examples:
        raise DataError(f"no example has an answer within max_length={max_length} tokens")
    return examples, dropped


# ----------------------------------------------------------------------------- batches


def collate(examples: Sequence[SFTExample], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """One example per row, right-padded: input_ids, labels (-100 on padding), attention_mask (B, T)."""
    return {
        "input_ids": right_padded([e.input_ids for e in examples], pad_id),
        "labels": right_padded([e.labels for e in examples], IGNORE_INDEX),
        "attention_mask": attention_mask([e.input_ids for e in examples]),
    }


@dataclass
class PackedRow:
    """Several examples end to end; ``segment_ids`` numbers them 1, 2, ... (0 = padding)."""

    input_ids: list[int]
    labels: list[int]
    segment_ids: list[int]


def pack(examples: Sequence[SFTExample], max_length: int) -> list[PackedRow]:
    """Greedy packing in order: an example starts a new row when it does not fit in the current one.

    No example is split (one longer than ``max_length`` is a DataError: cut it with max_length first).
    """
    rows: list[PackedRow] = []
    current = PackedRow([], [], [])
    for e in examples:
        n = len(e.input_ids)
        if n > max_length:
            raise DataError(f"{e.where}: {n} tokens do not fit a packed row of {max_length}")
        if len(current.input_ids) + n > max_length:
            rows.append(current)
            current = PackedRow([], [], [])
        segment = (current.segment_ids[-1] if current.segment_ids else 0) + 1
        current.input_ids += e.input_ids
        current.labels += e.labels
        current.segment_ids += [segment] * n
    if current.input_ids:
        rows.append(current)
    return rows


def collate_packed(rows: Sequence[PackedRow], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Packed rows right-padded to the longest: input_ids, labels, segment_ids (B, T)."""
    return {
        "input_ids": right_padded([r.input_ids for r in rows], pad_id),
        "labels": right_padded([r.labels for r in rows], IGNORE_INDEX),
        "segment_ids": right_padded([r.segment_ids for r in rows], 0),
    }


class SFTBatches:
    """The trainer's BatchSource: examples (or packed rows) in a fresh seeded order every epoch
    (``data.sampler.BatchPlan``: rank-aware, optionally grouped by length)."""

    def __init__(
        self,
        examples: Sequence[SFTExample],
        batch_size: int,
        pad_id: int = 0,
        seed: int = 0,
        packed_length: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        group_by_length: bool = False,
    ) -> None:
        self.units: Sequence[SFTExample] | list[PackedRow]
        self.units = pack(examples, packed_length) if packed_length else list(examples)
        self.packed = packed_length is not None
        self.batch_size, self.pad_id = batch_size, pad_id
        lengths = [len(u.input_ids) for u in self.units]
        self.plan = BatchPlan(lengths, batch_size, seed, rank, world_size, group_by_length)

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    def next_batch(self) -> dict[str, torch.Tensor]:
        units = [self.units[i] for i in self.plan.next_indices()]
        return collate_packed(units, self.pad_id) if self.packed else collate(units, self.pad_id)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return self.plan.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan.load_state_dict(state)


def eval_batches(
    examples: Sequence[SFTExample], batch_size: int, pad_id: int = 0, packed_length: int | None = None
) -> list[dict[str, torch.Tensor]]:
    """Fixed validation batches (data order)."""
    if packed_length:
        rows = pack(examples, packed_length)
        return [collate_packed(rows[i : i + batch_size], pad_id) for i in range(0, len(rows), batch_size)]
    return [collate(examples[i : i + batch_size], pad_id) for i in range(0, len(examples), batch_size)]


def split_rows(rows: Sequence[Any], fractions: Sequence[float], seed: int = 0) -> list[list[Any]]:
    """A seeded random partition of rows into len(fractions) parts (train first takes the rest)."""
    import math

    from zeroforge.errors import ConfigError

    if len(fractions) < 2 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"data.splits: expected fractions that sum to 1, got {list(fractions)}")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(rows))
    counts = [round(f * len(rows)) for f in fractions[1:]]
    start = len(rows) - sum(counts)
    parts = [sorted(order[:start].tolist())]
    for n in counts:
        parts.append(sorted(order[start : start + n].tolist()))
        start += n
    return [[rows[i] for i in part] for part in parts]
