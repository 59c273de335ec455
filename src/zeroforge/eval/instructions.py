"""Scoring a model on instruction rows (``zeroforge.data.instructions``): greedy replies, parsed.

    result = instruction_accuracy(model, tokenizer, rows["test"])   # greedy answers, parsed

An answer is parsed from free text: the option (or one of its aliases, e.g. "not spam" for ham) that
appears first as a whole word, case-insensitively. A reply that names no option counts as wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from zeroforge.data.instructions import TASKS


def parse_answer(
    reply: str, options: Sequence[str], aliases: dict[str, Sequence[str]] | None = None
) -> str | None:
    """The option named first in ``reply`` (whole words, any case), or None.

    At the same position the longer spelling wins, so "not spam" (an alias of ham) beats "spam".
    """
    text = reply.casefold()
    best: tuple[int, int, str] | None = None
    for option in options:
        for spelling in (option, *(aliases or {}).get(option, ())):
            m = re.search(rf"(?<!\w){re.escape(spelling.casefold())}(?!\w)", text)
            if m and (best is None or (m.start(), -len(spelling)) < (best[0], best[1])):
                best = (m.start(), -len(spelling), option)
    return None if best is None else best[2]


def instruction_accuracy(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    batch_size: int = 16,
    max_new_tokens: int = 8,
) -> dict[str, Any]:
    """Greedy replies to every row's instruction (with the model's chat template), parsed and scored.

    Returns ``{"accuracy", "n", "unparsed", "per_task": {task: accuracy}, "replies": [...]}``.
    """
    from zeroforge.data.sft import render_prompt, row_messages
    from zeroforge.generation import generate

    prompts = [render_prompt(tokenizer, row_messages(row, str(i))[:-1]) for i, row in enumerate(rows)]
    # similar lengths in a batch pad less: sort by prompt length, score in the original order
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    replies: list[str] = [""] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        out = generate(
            model, tokenizer, [prompts[i] for i in chunk], max_new_tokens=max_new_tokens, temperature=0.0
        )
        for i, reply in zip(chunk, out):
            replies[i] = reply
    correct, unparsed = [], 0
    per_task: dict[str, list[bool]] = {}
    for row, reply in zip(rows, replies):
        task = TASKS.get(row.get("task", ""))
        aliases = dict(task.aliases) if task else {}
        answer = parse_answer(reply, row["options"], aliases)
        unparsed += answer is None
        ok = answer == row["output"]
        correct.append(ok)
        per_task.setdefault(row.get("task", "?"), []).append(ok)
    return {
        "accuracy": float(np.mean(correct)) if correct else float("nan"),
        "n": len(rows),
        "unparsed": unparsed,
        "per_task": {k: float(np.mean(v)) for k, v in sorted(per_task.items())},
        "replies": replies,
    }
