"""Writing cleaned rows as txt, JSONL, CSV or TSV (``data.records.RecordReader`` reads them).

The output goes to a temp file beside the target and is renamed over it only on success.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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
