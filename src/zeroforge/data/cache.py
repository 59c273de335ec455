"""Prepared data folders, built once and reused: the one prepare-and-cache mechanism of every objective.

``prepared_folder(out, settings, build, complete)`` returns ``out`` as it is when the folder is
complete and its ``meta.json`` records the same ``settings`` and the same source fingerprint
(``datasets.source_fingerprint``: an archive's sha256, or a local file's size and mtime); otherwise
``build(tmp, fingerprint)`` fills a new temp folder next to ``out``, which then replaces ``out``
(a failure leaves any previous complete folder untouched). A file lock (``.<out>.lock`` beside it)
lets every torchrun rank call it at once: one builds, the others wait and reuse. A missing source
fails before anything is created on disk.

``data.text`` (causal-LM token files) and ``data.mlm`` (BERT sentence pairs) prepare through it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zeroforge import datasets
from zeroforge.errors import DataError

META_FILE = "meta.json"


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """One process prepares ``out`` at a time (torchrun ranks all ask for it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out.parent / f".{out.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_folder(out: Path, build: Callable[[Path], None]) -> Path:
    """Write a prepared data folder atomically: ``build(tmp)`` fills a new folder next to ``out``,
    which then replaces ``out``. Call it holding ``locked(out)``.

    A failure leaves any previous complete folder untouched; an ``out`` that holds other files (no
    meta.json) is a DataError, never overwritten.
    """
    if out.exists() and not (out / META_FILE).is_file() and (out.is_file() or any(out.iterdir())):
        raise DataError(
            f"{out}: exists and is not a prepared data folder (no {META_FILE}); choose another --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(tmp, 0o755)
        build(tmp)
        # Build fully, then swap: a failure leaves any previous complete folder untouched.
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _matches(out: Path, settings: dict[str, Any], fingerprint: Any, complete: Callable[[Path], bool]) -> bool:
    """``out`` is complete and was built with ``settings`` from a source with ``fingerprint``
    (``None``: the source is gone, so any fingerprint will do)."""
    try:
        if not complete(out):
            return False
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, DataError):  # a corrupt folder: rebuild
        return False
    return (
        isinstance(meta, dict)
        and all(meta.get(key) == value for key, value in settings.items())
        and (fingerprint is None or meta.get("fingerprint") == fingerprint)
    )


def prepared_folder(
    out: Path,
    settings: dict[str, Any],
    build: Callable[[Path, dict[str, object]], None],
    complete: Callable[[Path], bool],
    reuse: bool = True,
) -> Path:
    """``out``, reused (with ``reuse``) or (re)built; see the module docstring.

    ``settings`` must hold ``source`` (a dataset name or a path) and is compared key by key with the
    folder's meta.json; ``build(tmp, fingerprint)`` writes the data and a meta.json holding
    ``settings`` and ``fingerprint``; ``complete(out)`` says whether every data file is there.
    """
    try:
        fingerprint = datasets.source_fingerprint(settings["source"])
    except DataError:
        # the source is gone: a complete folder prepared from it with these settings is all there is
        if reuse and _matches(out, settings, None, complete):
            return out
        raise
    with locked(out):
        if reuse and _matches(out, settings, fingerprint, complete):
            return out
        return build_folder(out, lambda tmp: build(tmp, fingerprint))
