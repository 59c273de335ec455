"""The one reader (and writer) of tables and corpora: CSV, TSV, JSONL and plain text (one row per line).

Cleaning (``zeroforge clean``) and training (``data.tables.read_rows``, ``data.sft.read_jsonl``) both
read files through ``RecordReader``, so a file means the same rows to both and a bad file gets the
same one-line message. A file is streamed line by line as bytes: memory does not grow with the
file, and a bad byte or a malformed row is pinned to its line number.

What the reader copes with, and what it reports (``Record.error``, or a ``DataError`` at once):

- a UTF-8 byte-order mark (skipped), CRLF line endings, blank lines (no rows);
- bytes that are not valid in ``encoding``: ``path:line: not valid utf-8 at byte N (0xff); set ...``,
  or, with ``encoding_errors="replace"``, the row decoded with U+FFFD and flagged ``bad_bytes``;
- an empty file, a header naming a column twice (errors); a header-only file has no rows;
- a CSV row with the wrong number of fields (its line number; a row that spans lines names both);
- a broken quote. Python's ``csv`` module, by default, lets a stray quote (``"unclosed,1``) run on
  through the following lines until the next quote character, silently merging good rows into one
  junk row. Here the CSV is parsed with ``strict=True``: a quoted field that spans lines and then
  breaks (a closing quote followed by more text) is one malformed record naming the line the quote
  opened on and the line it broke on, and the lines after the opening line are read again as rows
  of their own, so no good row is lost. A quote that never closes runs to the end of the file and
  is reported as one malformed record naming both lines.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zeroforge.errors import ConfigError, DataError, ZeroforgeError

FORMATS = {
    ".txt": "txt",
    ".text": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
}
ALL_FORMATS = ("txt", "jsonl", "csv", "tsv")
TABLE_FORMATS = ("csv", "tsv", "jsonl")
# The csv module's default field limit (128 KiB) is too small for long documents: allow 64 MiB.
CSV_FIELD_LIMIT = 1 << 26
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class Record:
    """One row of the input."""

    line: int
    """1-based line of the row's first physical line (the header is line 1 of a CSV)."""
    fields: dict[str, Any]
    """Column -> value: strings for txt/CSV/TSV, JSON values for JSONL."""
    error: str | None = None
    """Why the row is malformed (then ``fields`` is empty)."""
    bad_bytes: bool = False
    """The row's bytes were not valid in the encoding (decoded with U+FFFD in their place)."""
    last_line: int = 0
    """The row's last physical line (> ``line`` for a CSV field with line breaks)."""


def detect_format(
    path: Path,
    fmt: str = "auto",
    option: str = "format",
    formats: Sequence[str] = ALL_FORMATS,
    error: type[ZeroforgeError] = ConfigError,
) -> str:
    """``fmt``, or for ``auto`` the format of ``path``'s suffix; an unknown suffix is an ``error``
    naming the ``option`` to set and the ``formats`` the caller reads."""
    if fmt != "auto":
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None or found not in formats:
        suffixes = ", ".join(s for s, f in FORMATS.items() if f in formats)
        raise error(
            f"{option}: cannot tell the format of {path} from its suffix {path.suffix!r}; "
            f"set {', '.join(formats)} (suffixes {suffixes})"
        )
    return found


class RecordReader:
    """Iterate over a file's records, as often as needed (``clean`` reads twice for mean/median fills).

    ``columns`` is known after construction: the CSV/TSV header (``0``, ``1``, ... with
    ``header=False``), ``["text"]`` for txt, the keys of the first object for JSONL. ``bytes_read``
    follows the current iteration (for a progress bar). ``encoding_errors``: ``error`` stops at the
    first bad byte with a DataError whose advice is ``encoding_hint``; ``replace`` (or ``drop``, which
    the caller acts on) yields the row decoded with U+FFFD and ``bad_bytes`` set.
    """

    def __init__(
        self,
        path: Path,
        fmt: str,
        *,
        encoding: str = "utf-8",
        encoding_errors: str = "error",
        encoding_hint: str = "set encoding (e.g. latin-1) or convert the file",
        encoding_option: str = "encoding",
        header: bool = True,
    ) -> None:
        self.path = Path(path)
        self.format = fmt
        self.encoding = encoding
        self.encoding_errors = encoding_errors
        self.encoding_hint = encoding_hint
        self.header = header
        self.delimiter = "\t" if fmt == "tsv" else ","
        try:
            codec = codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"{encoding_option}: unknown encoding {encoding!r}") from None
        if "\n".encode(codec.name) != b"\n":
            raise ConfigError(
                f"{encoding_option}: {encoding} is not read here (lines are split on the byte 0x0a); "
                "convert the file to UTF-8"
            )
        self._skip_bom = codec.name == "utf-8"
        self.size = self.path.stat().st_size
        self.bytes_read = 0
        self.columns: list[str] = self._read_columns()

    # ---------------------------------------------------------------- lines

    def _lines(self) -> Iterator[tuple[int, str, bool]]:
        """(line number, decoded line with its line ending, had bad bytes)."""
        self.bytes_read = 0
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                start = self.bytes_read  # the line's byte offset in the file
                self.bytes_read += len(raw)
                if number == 1 and self._skip_bom and raw.startswith(_UTF8_BOM):
                    raw, start = raw[len(_UTF8_BOM) :], start + len(_UTF8_BOM)
                try:
                    yield number, raw.decode(self.encoding), False
                except UnicodeDecodeError as err:
                    if self.encoding_errors == "error":
                        raise DataError(
                            f"{self.path}:{number}: not valid {self.encoding} at byte {start + err.start} "
                            f"(0x{raw[err.start]:02x}); {self.encoding_hint}"
                        ) from None
                    yield number, raw.decode(self.encoding, errors="replace"), True

    def _read_columns(self) -> list[str]:
        if self.format == "txt":
            return ["text"]
        if self.format == "jsonl":
            for record in self:
                if record.error is None:
                    return list(record.fields)
            raise DataError(f"{self.path}: no JSON object found (expected one object per line)")
        for _, cells, _ in self._csv_rows():
            if isinstance(cells, str):
                raise DataError(f"{self.path}:1: cannot read the header ({cells})")
            if not self.header:
                return [str(i) for i in range(len(cells))]
            names = [c.strip() for c in cells]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise DataError(f"{self.path}:1: column {dupes[0]!r} appears twice in the header")
            return names
        expected = ", expected a header row with the column names" if self.header else ""
        raise DataError(f"{self.path}: empty file{expected}")

    def _csv_rows(self) -> Iterator[tuple[tuple[int, int], list[str] | str, bool]]:
        """((first line, last line), cells or an error message, had bad bytes) per CSV record.

        Lines go to a strict ``csv.reader`` through ``feed``, which remembers the lines of the record
        being parsed (``taken``) and serves lines handed back (``pending``) before new ones.
        """
        lines = self._lines()
        pending: deque[tuple[int, str, bool]] = deque()
        taken: list[tuple[int, str, bool]] = []
        ended = False

        def feed() -> Iterator[str]:
            nonlocal ended
            while True:
                item = pending.popleft() if pending else next(lines, None)
                if item is None:
                    ended = True
                    return
                taken.append(item)
                yield item[1]

        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        reader = csv.reader(feed(), delimiter=self.delimiter, strict=True)
        while True:
            taken.clear()
            try:
                cells: list[str] | str = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                cells = self._broken_quote(taken, str(err), ended, pending)
            if not taken:
                return
            if cells == [] or (isinstance(cells, list) and len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line is no record
            yield (taken[0][0], taken[-1][0]), cells, any(bad for _, _, bad in taken)

    def _broken_quote(
        self,
        taken: list[tuple[int, str, bool]],
        problem: str,
        ended: bool,
        pending: deque[tuple[int, str, bool]],
    ) -> list[str] | str:
        """The cells, or the error, of a record the strict parser refused (``problem``); for a quoted
        field that broke on a later line, the lines after the opening one go back to ``pending``."""
        first, last = taken[0][0], taken[-1][0]
        spaces = " " if self.format == "tsv" else " \t"
        closing = re.match(rf'[^"]*"[{spaces}]+({self.delimiter}|\r?\n?$)', taken[-1][1])
        if first == last or closing:
            # A quote in an odd place within one line (``"a"b``), or a field closed with spaces before
            # the delimiter (``"two\nlines" ,0``): the quoted field is whole, so read the record as the
            # csv module's default dialect does.
            try:
                return next(csv.reader([line for _, line, _ in taken], delimiter=self.delimiter), [])
            except csv.Error as err:
                return f"CSV error: {err}"
        if ended:
            return (
                f"a quoted field opened on line {first} never closes "
                f"(it runs to the end of the file, line {last})"
            )
        pending.extendleft(reversed(taken[1:]))  # lines first + 1 .. last are rows of their own
        again = f"line {last} is" if last == first + 1 else f"lines {first + 1}-{last} are"
        return (
            f"a quoted field opened on line {first} breaks on line {last} ({problem}); "
            f"{again} read again as rows"
        )

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
        if self.header:
            next(rows, None)
        n = len(self.columns)
        for (first, last), cells, bad in rows:
            if isinstance(cells, str):
                yield Record(first, {}, cells, bad, last)
            elif len(cells) != n:
                where = f" (a quoted field runs over lines {first}-{last})" if last > first else ""
                yield Record(first, {}, f"expected {n} fields, got {len(cells)}{where}", bad, last)
            else:
                yield Record(first, dict(zip(self.columns, cells)), None, bad, last)


def read_records(
    path: str | Path,
    fmt: str,
    *,
    encoding: str = "utf-8",
    header: bool = True,
    encoding_hint: str = "set data.encoding (e.g. latin-1) or convert the file",
    encoding_option: str = "data.encoding",
) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    """``(columns, rows)`` of a file for training: ``rows`` yields ``(path:line, fields)`` per
    record, ``line`` being the record's last line; the first malformed record or bad byte is a
    DataError naming its line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    reader = RecordReader(
        path,
        fmt,
        encoding=encoding,
        header=header,
        encoding_hint=encoding_hint,
        encoding_option=encoding_option,
    )

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for record in reader:
            if record.error is not None:
                raise DataError(f"{path}:{record.line}: {record.error}")
            yield f"{path}:{record.last_line}", record.fields

    return reader.columns, rows()


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
