"""``clean(input, out, config)``: stream a corpus or table through the cleaning rules.

Per row, in order (the first rule that fires removes the row):
malformed -> bad UTF-8 -> normalise every string cell -> missing values (drop or fill)
-> empty text -> label not allowed -> too short / too long -> language -> spelling (edits)
-> exact duplicate -> near duplicate. Rows are read and written in chunks of ``chunk_size``;
every rule looks only at the row and the rows before it, so the output does not depend on the
chunk size. Mean/median/mode fills need the column's values first: one extra streaming pass
collects them (memory: 8 bytes per number of a mean/median column, one entry per distinct value
of a mode column).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zeroforge.data.clean.config import CleanConfig, load_clean_config
from zeroforge.data.clean.dedup import ExactIndex, NearDuplicateIndex
from zeroforge.data.clean.report import CleanReport, preview
from zeroforge.data.clean.text import LanguageFilter, SpellingCorrector, count_tokens, normalize_text
from zeroforge.data.records import Record, RecordReader, RecordWriter, detect_format
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_open

_KEY_SEPARATOR = "\x1f"  # between the cells of a multi-column duplicate key (a control char: never in a cell)


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, leave=False)


class _RowCleaner:
    """The per-row rules and the duplicate indexes; ``process`` takes a chunk, returns the rows to write."""

    def __init__(
        self,
        cfg: CleanConfig,
        path: Path,
        columns: list[str],
        text_column: str | None,
        fill_values: dict[str, Any],
        report: CleanReport,
    ) -> None:
        self.cfg = cfg
        self.path = path
        self.columns = columns
        self.text_column = text_column
        self.key_columns = cfg.dedup.columns or ([text_column] if text_column else columns)
        self.fill_values = fill_values
        self.report = report
        self.missing_values = set(cfg.missing_values)
        # JSONL rows may lack keys: the columns named in the config are checked in every row.
        named = [c for c in cfg.missing if c != "*"] + ([text_column] if text_column else [])
        self.named_columns = list(dict.fromkeys(named))
        self.language = LanguageFilter(cfg.languages, cfg.min_language_prob) if cfg.languages else None
        self.spelling = SpellingCorrector() if cfg.spelling else None
        self.exact = ExactIndex() if cfg.dedup.exact else None
        d = cfg.dedup
        self.near = (
            NearDuplicateIndex(d.threshold, d.num_perm, d.shingle, d.ngram, d.seed) if d.near else None
        )
        self.near_lines = array("q")  # near index row -> its input line (8 bytes per kept row)

    def is_missing(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, float):
            return math.isnan(value)
        return isinstance(value, str) and value in self.missing_values

    def process(self, records: list[Record]) -> list[dict[str, Any]]:
        passed = []  # (record, fields, duplicate key, edits) of rows that passed the per-row rules
        for record in records:
            self.report.rows_in += 1
            row = self._row(record)
            if row is not None:
                passed.append((record, *row))
        unique = []
        for record, fields, key, edits in passed:
            first = self.exact.check(key, record.line) if self.exact is not None else None
            if first is not None:
                self.report.remove("exact_duplicate", record.line, key, f"same as line {first}")
                self.report.duplicate("exact", first, record.line, key)
            else:
                unique.append((record, fields, key, edits))
        kept = []
        signatures = self.near.signatures([key for _, _, key, _ in unique]) if self.near is not None else None
        for i, (record, fields, key, edits) in enumerate(unique):
            if self.near is not None:
                hit = self.near.check(signatures[i])
                if hit is not None:
                    kept_line, similarity = self.near_lines[hit[0]], hit[1]
                    self.report.remove(
                        "near_duplicate", record.line, key, f"~ line {kept_line}, similarity {similarity:.2f}"
                    )
                    self.report.duplicate("near", kept_line, record.line, key, similarity)
                    continue
                self.near_lines.append(record.line)
            for what, n in edits.items():
                self.report.count(what, n)
            kept.append(fields)
        self.report.rows_out += len(kept)
        return kept

    def _row(self, record: Record) -> tuple[dict[str, Any], str, Counter[str]] | None:
        """(fields, duplicate key, edits) for a row that passes the per-row rules, else None."""
        cfg, report, line = self.cfg, self.report, record.line
        if record.error is not None:
            if cfg.malformed == "error":
                raise DataError(f"{self.path}:{line}: {record.error}; set malformed: drop to skip such rows")
            report.remove("malformed", line, "", record.error)
            return None
        if record.bad_bytes:
            raw = record.fields.get(self.text_column) if self.text_column else record.fields
            if cfg.encoding_errors == "drop":
                report.remove("bad_encoding", line, raw, "not valid UTF-8")
                return None
            report.flag("bad_encoding", line, raw, "not valid UTF-8, replaced with U+FFFD")
        edits: Counter[str] = Counter()
        fields = dict(record.fields)
        for column, value in fields.items():
            if isinstance(value, str):
                lower = cfg.normalize.lowercase and column == self.text_column
                new = normalize_text(value, cfg.normalize, lowercase=lower)
                if new != value:
                    fields[column] = new
                    edits["normalized"] = 1
        if not self._missing(fields, line, edits):
            return None
        text = ""
        if self.text_column is not None:
            value = fields.get(self.text_column)
            text = "" if self.is_missing(value) else str(value)
            if not text.strip():
                report.remove("empty_text", line, "", f"column {self.text_column!r} is empty")
                return None
        if cfg.labels.allowed:
            label = fields.get(cfg.labels.column)
            label_str = "" if self.is_missing(label) else str(label)
            if label_str not in cfg.labels.allowed:
                detail = f"label {label_str!r}" if label_str else "no label"
                if cfg.labels.invalid == "drop":
                    report.remove("invalid_label", line, text or fields, detail)
                    return None
                report.flag("invalid_label", line, text or fields, detail)
        if not self._length_ok(text, line):
            return None
        if self.language is not None:
            why = self.language.check(text)
            if why is not None:
                report.remove("language", line, text, why)
                return None
        if self.spelling is not None:
            new, n = self.spelling.correct(text)
            if n:
                fields[self.text_column] = text = new
                edits["spelling"] = 1
                edits["spelling_words"] = n
        if self.key_columns == [self.text_column]:
            key = text
        else:
            key = _KEY_SEPARATOR.join(
                "" if self.is_missing(fields.get(c)) else str(fields.get(c)) for c in self.key_columns
            )
        return fields, key, edits

    def _missing(self, fields: dict[str, Any], line: int, edits: Counter[str]) -> bool:
        """Drop the row or fill its missing cells; False when the row is dropped."""
        columns = (
            fields.keys() if not self.named_columns else list(dict.fromkeys([*fields, *self.named_columns]))
        )
        missing = [c for c in columns if self.is_missing(fields.get(c))]
        if not missing:
            return True
        drop = [c for c in missing if self.cfg.strategy(c) == "drop"]
        if drop:
            for column in missing:
                self.report.missing_cell(column, "dropped")
            row = fields.get(self.text_column) if self.text_column else fields
            self.report.remove("missing_value", line, row, f"column {drop[0]!r} is missing")
            return False
        for column in missing:
            if column in self.fill_values:
                fields[column] = self.fill_values[column]
                self.report.missing_cell(column, "filled")
                edits["filled"] += 1
            else:
                self.report.missing_cell(column, "kept")
        return True

    def _length_ok(self, text: str, line: int) -> bool:
        cfg = self.cfg
        if (
            cfg.min_chars is None
            and cfg.max_chars is None
            and cfg.min_tokens is None
            and cfg.max_tokens is None
        ):
            return True
        chars = len(text)
        if cfg.min_chars is not None and chars < cfg.min_chars:
            self.report.remove("too_short", line, text, f"{chars} characters < {cfg.min_chars}")
            return False
        if cfg.max_chars is not None and chars > cfg.max_chars:
            self.report.remove("too_long", line, text, f"{chars} characters > {cfg.max_chars}")
            return False
        tokens = count_tokens(text) if cfg.min_tokens is not None or cfg.max_tokens is not None else 0
        if cfg.min_tokens is not None and tokens < cfg.min_tokens:
            self.report.remove("too_short", line, text, f"{tokens} tokens < {cfg.min_tokens}")
            return False
        if cfg.max_tokens is not None and tokens > cfg.max_tokens:
            self.report.remove("too_long", line, text, f"{tokens} tokens > {cfg.max_tokens}")
            return False
        return True


# ----------------------------------------------------------------------------- fill statistics


def _fill_values(
    reader: RecordReader, cfg: CleanConfig, columns: list[str], text_column: str | None, progress: bool
) -> dict[str, Any]:
    """Column -> fill value: constants as given; mean/median/mode from a first pass over the file.

    The statistics cover every well-formed row of the input, before the other rules filter rows.
    """
    fills: dict[str, Any] = {}
    stats: dict[str, str] = {}
    for column in dict.fromkeys([*columns, *(c for c in cfg.missing if c != "*")]):
        strategy = cfg.strategy(column)
        if isinstance(strategy, dict):
            fills[column] = strategy["constant"]
        elif strategy in ("mean", "median", "mode"):
            stats[column] = strategy
    if not stats:
        return fills
    numbers = {c: array("d") for c, s in stats.items() if s != "mode"}
    counts: dict[str, Counter[Any]] = {c: Counter() for c, s in stats.items() if s == "mode"}
    originals: dict[str, dict[Any, Any]] = {c: {} for c in counts}  # hashable key -> the first value seen
    missing_values = set(cfg.missing_values)
    bar = _progress(reader.size, "clean: statistics", progress)
    for i, record in enumerate(reader):
        if record.error is not None or (record.bad_bytes and cfg.encoding_errors == "drop"):
            continue
        for column in stats:
            value = record.fields.get(column)
            if isinstance(value, str):
                value = normalize_text(
                    value, cfg.normalize, cfg.normalize.lowercase and column == text_column
                )
            if value is None or (isinstance(value, str) and value in missing_values):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            if column in numbers:
                try:
                    numbers[column].append(float(value))
                except (TypeError, ValueError):
                    raise DataError(
                        f"{reader.path}:{record.line}: column {column!r} has {preview(value, 40)!r}, but "
                        f"missing.{column}: {stats[column]} needs numbers (use mode or {{constant: ...}})"
                    ) from None
            else:
                key = value if isinstance(value, str | int | float | bool) else repr(value)
                counts[column][key] += 1
                originals[column].setdefault(key, value)
        if i % 10_000 == 0:
            bar.n = reader.bytes_read
            bar.refresh()
    bar.close()
    for column, strategy in stats.items():
        if column in numbers:
            values = np.frombuffer(numbers[column], dtype=np.float64) if len(numbers[column]) else None
            if values is None:
                raise DataError(f"{reader.path}: column {column!r} has no numbers to take the {strategy} of")
            fills[column] = float(np.mean(values) if strategy == "mean" else np.median(values))
        else:
            if not counts[column]:
                raise DataError(f"{reader.path}: column {column!r} has no values to take the mode of")
            fills[column] = originals[column][counts[column].most_common(1)[0][0]]  # ties: the first seen
    return fills


# ----------------------------------------------------------------------------- entry points


def _resolve_input(input: str | os.PathLike[str]) -> Path:
    path = Path(input)
    if path.is_file():
        return path
    if path.exists():
        raise DataError(f"{path}: not a file (clean reads one txt, JSONL, CSV or TSV file)")
    from zeroforge import datasets

    if str(input) in datasets.list_datasets():
        found = datasets.asset_file(str(input))
        if not found.is_file():
            raise DataError(f"{input}: dataset is a folder, not one file; pass one of its files to clean")
        return found
    raise DataError(f"{path}: no such file (nor a dataset name: {', '.join(datasets.list_datasets())})")


def _check_columns(
    cfg: CleanConfig, path: Path, fmt: str, columns: list[str], text_column: str | None
) -> None:
    where = "columns of its first row" if fmt == "jsonl" else "columns"
    known = f"({where}: {', '.join(columns)})"
    named: list[tuple[str, str]] = []
    if cfg.text_column is not None:
        named.append(("text_column", cfg.text_column))
    named += [("dedup.columns", c) for c in cfg.dedup.columns or []]
    if cfg.labels.allowed:
        named.append(("labels.column", cfg.labels.column))
    named += [(f"missing.{c}", c) for c in cfg.missing if c != "*"]
    for option, column in named:
        if column not in columns:
            raise ConfigError(f"clean.{option}: unknown column {column!r} in {path} {known}")
    needs = cfg.needs_text
    if needs and text_column is None:
        raise ConfigError(
            f"clean.{needs[0]}: needs a text column, and {path} has no 'text' column; set text_column {known}"
        )


def clean(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: CleanConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    chunk_size: int = 10_000,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CleanReport:
    """Clean ``input`` (a txt, JSONL, CSV or TSV file, or a dataset name) into ``out``.

    ``config`` is a ``CleanConfig``, a dict of its fields, or a YAML file. The input is never
    modified; ``out`` appears only when cleaning succeeded. The report is saved as
    ``<out>.report.json`` and ``<out>.report.txt`` (or ``report_path`` and its ``.txt`` twin)::

        report = clean("reviews.csv", "reviews.clean.csv", {"labels": {"allowed": [0, 1]}})
        report.rows_in, report.rows_out, report.removed["exact_duplicate"]
    """
    start = time.perf_counter()
    cfg = load_clean_config(config)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: must be >= 1, got {chunk_size}")
    dst = Path(out)
    json_path = Path(report_path) if report_path else dst.with_name(dst.name + ".report.json")
    for option, path in (
        ("--out", dst),
        ("--report", json_path),
        ("--report", json_path.with_suffix(".txt")),
    ):
        if path.is_dir():
            raise DataError(f"{option}: {path} is a directory, expected a file path")
    src = _resolve_input(input)
    if dst.exists() and dst.resolve() == src.resolve():
        raise DataError(f"{dst}: the output must not be the input file (the input is never modified)")
    fmt = detect_format(src, cfg.format, "clean.format", error=DataError)
    reader = RecordReader(
        src,
        fmt,
        encoding=cfg.encoding,
        encoding_errors=cfg.encoding_errors,
        encoding_hint="set encoding (e.g. latin-1), or encoding_errors: replace or drop to go on",
    )
    columns = reader.columns
    text_column = cfg.text_column or ("text" if "text" in columns else None)
    _check_columns(cfg, src, fmt, columns, text_column)

    report = CleanReport(str(input), str(dst), fmt, max_examples=cfg.examples, max_clusters=cfg.clusters)
    report.config = dataclasses.asdict(cfg)
    fill_values = _fill_values(reader, cfg, columns, text_column, progress)
    report.fill_values = dict(fill_values)
    for column in dict.fromkeys([*columns, *(c for c in cfg.missing if c != "*")]):  # zeros are news too
        report.missing[column] = {"missing": 0, "dropped": 0, "filled": 0, "kept": 0}
    cleaner = _RowCleaner(cfg, src, columns, text_column, fill_values, report)
    bar = _progress(reader.size, f"clean {src.name}", progress)
    with atomic_open(dst) as f:
        writer = RecordWriter(f, fmt, columns)
        for chunk in _chunks(reader, chunk_size):
            for fields in cleaner.process(chunk):
                writer.write(fields)
            bar.n = reader.bytes_read
            bar.set_postfix(rows=report.rows_in, kept=report.rows_out, refresh=True)
    bar.close()
    report.finish()
    report.seconds = round(time.perf_counter() - start, 3)
    report.save(json_path, json_path.with_suffix(".txt"))
    return report


def cleaned_path(input_path: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> Path:
    """Where ``clean_step`` writes the cleaned copy of ``input_path`` (every rank can compute it)."""
    src = _resolve_input(input_path)
    return Path(run_dir) / "data" / f"{src.stem}.clean{src.suffix}"


def clean_step(
    config: CleanConfig | dict[str, Any] | None,
    input_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> Path:
    """Cleaning as a step of a recipe (``clean: {...}``): ``<run_dir>/data/<stem>.clean<suffix>``.

    The report goes to ``<run_dir>/clean_report.json`` and ``clean_report.txt``. Returns the
    cleaned file's path, for the next step (prepare / finetune) to read.
    """
    src = _resolve_input(input_path)
    out = cleaned_path(input_path, run_dir)
    run_dir = Path(run_dir)
    clean(src, out, config or {}, report_path=run_dir / "clean_report.json", progress=progress)
    return out
