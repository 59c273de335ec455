"""Streaming rows in and out of txt, JSONL, CSV and TSV files.

A file is read line by line as bytes, so memory does not grow with the file, a bad byte is
pinned to its line number, and a malformed row is reported instead of stopping the run. The
output goes to a temp file beside the target and is renamed over it only on success.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zeroforge.errors import DataError

FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
# A runaway quote in a CSV swallows the rest of the file into one field; the csv module's default
# limit (128 KiB) is too small for long documents, so allow 64 MiB and report anything larger.
_CSV_FIELD_LIMIT = 1 << 26


@dataclass
class Record:
    """One row of the input, before cleaning."""

    line: int
    """1-based line of the row's first physical line (the header is line 1 of a CSV)."""
    fields: dict[str, Any]
    """Column -> value: strings for txt/CSV/TSV, JSON values for JSONL."""
    error: str | None = None
    """Why the row is malformed (then ``fields`` is empty)."""
    bad_bytes: bool = False
    """The row's bytes were not valid UTF-8 (decoded with U+FFFD in their place)."""
    last_line: int = 0
    """The row's last physical line (> ``line`` for a CSV field with newlines)."""


def detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"set format: txt, jsonl, csv or tsv (suffixes {', '.join(FORMATS)})"
        )
    return found


class RecordReader:
    """Iterate over a file's records, as often as needed (``clean`` reads twice for mean/median fills).

    ``columns`` is known after construction: the CSV/TSV header, ``["text"]`` for txt, the keys of
    the first object for JSONL. ``bytes_read`` follows the current iteration (for the progress bar).
    """

    def __init__(self, path: Path, fmt: str, encoding_errors: str = "drop") -> None:
        self.path = path
        self.format = fmt
        self.encoding_errors = encoding_errors
        self.size = path.stat().st_size
        self.bytes_read = 0
        self.columns: list[str] = self._read_columns()

    # ---------------------------------------------------------------- lines

    def _lines(self) -> Iterator[tuple[int, str, bool]]:
        """(line number, decoded line with its newline, had bad bytes)."""
        self.bytes_read = 0
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                self.bytes_read += len(raw)
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
                    raw = raw[3:]
                try:
                    yield number, raw.decode("utf-8"), False
                except UnicodeDecodeError as err:
                    if self.encoding_errors == "error":
                        raise DataError(
                            f"{self.path}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                            f"{err.start + 1}); set encoding_errors: replace or drop to go on"
                        ) from None
                    yield number, raw.decode("utf-8", errors="replace"), True

    def _read_columns(self) -> list[str]:
        if self.format == "txt":
            return ["text"]
        if self.format == "jsonl":
            for record in self:
                if record.error is None:
                    return list(record.fields)
            raise DataError(f"{self.path}: no JSON object found (expected one object per line)")
        header = self._csv_header()
        if header is None:
            raise DataError(f"{self.path}: empty file, expected a header row with the column names")
        return header

    def _csv_header(self) -> list[str] | None:
        for _, cells, _ in self._csv_rows():
            if isinstance(cells, str):
                raise DataError(f"{self.path}:1: cannot read the header ({cells})")
            names = [c.strip() for c in cells]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise DataError(f"{self.path}:1: column {dupes[0]!r} appears twice in the header")
            return names
        return None

    def _csv_rows(self) -> Iterator[tuple[tuple[int, int], list[str] | str, bool]]:
        """((first line, last line), cells or an error message, had bad bytes) per CSV record."""
        bad_lines: set[int] = set()

        def text_lines() -> Iterator[str]:
            for number, line, bad in self._lines():
                if bad:
                    bad_lines.add(number)
                yield line

        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        reader = csv.reader(text_lines(), delimiter="\t" if self.format == "tsv" else ",")
        done = 0  # physical lines consumed so far
        while True:
            try:
                cells: list[str] | str = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                cells = str(err)
            span = (done + 1, reader.line_num)
            done = reader.line_num
            bad = any(n in bad_lines for n in range(span[0], span[1] + 1))
            bad_lines.clear()
            if cells == []:  # a blank line is no record
                continue
            yield span, cells, bad

    # ---------------------------------------------------------------- records

    def __iter__(self) -> Iterator[Record]:
        if self.format == "txt":
            for number, line, bad in self._lines():
                text = line.rstrip("\r\n")
                if text.strip():
                    yield Record(number, {"text": text}, bad_bytes=bad, last_line=number)
        elif self.format == "jsonl":
            yield from self._jsonl_records()
        else:
            yield from self._csv_records()

    def _jsonl_records(self) -> Iterator[Record]:
        for number, line, bad in self._lines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield Record(number, {}, f"not valid JSON ({err.msg} at column {err.colno})", bad, number)
                continue
            if not isinstance(obj, dict):
                yield Record(number, {}, f"expected a JSON object, got {type(obj).__name__}", bad, number)
                continue
            yield Record(number, obj, None, bad, number)

    def _csv_records(self) -> Iterator[Record]:
        rows = self._csv_rows()
        next(rows, None)  # the header
        n = len(self.columns)
        for (first, last), cells, bad in rows:
            if isinstance(cells, str):
                yield Record(first, {}, f"CSV error: {cells}", bad, last)
            elif len(cells) != n:
                where = f" (a quoted field runs over lines {first}-{last})" if last > first else ""
                yield Record(first, {}, f"expected {n} fields, got {len(cells)}{where}", bad, last)
            else:
                yield Record(first, dict(zip(self.columns, cells)), None, bad, last)


class RecordWriter:
    """Write cleaned rows in the input's format (a CSV/TSV header first, even with no rows)."""

    def __init__(self, f: IO[str], fmt: str, columns: list[str]) -> None:
        self.f = f
        self.format = fmt
        self.columns = columns
        self._csv = None
        if fmt in ("csv", "tsv"):
            self._csv = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            self._csv.writerow(columns)

    def write(self, fields: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([_cell(fields.get(c)) for c in self.columns])
        elif self.format == "jsonl":
            self.f.write(json.dumps(fields, ensure_ascii=False) + "\n")
        else:
            self.f.write(str(fields["text"]).replace("\n", " ") + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@contextmanager
def atomic_output(path: Path) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` only if the block finishes: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
