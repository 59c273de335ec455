"""Atomic file writes (a temp file in the same folder, fsync, then rename over the target), and
reading a JSON object with one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from zeroforge.errors import DataError


def cache_dir() -> Path:
    """Where fetched archives, extracted files and prepared token files live.

    ``$ZEROFORGE_CACHE`` when set, else ``~/.cache/zeroforge``.
    """
    env = os.environ.get("ZEROFORGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zeroforge"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; published files get the permissions a plain open() would give
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """A file (text: UTF-8, newlines as written) that appears at ``path`` only if the block finishes:
    written to a temp file in the same folder, fsynced, then renamed over ``path``. A failure leaves
    ``path`` as it was and no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_folder(directory: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` fills a temporary sibling of ``directory``; then its files appear in ``directory``
    together (a rename of the whole folder, or of each file into an existing one), with the modes a
    plain ``open()`` gives. A failure leaves nothing half-written; files of an earlier write that
    this one does not write stay as they were."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        os.chmod(tmp, DIR_MODE)
        write(tmp)
        for written in tmp.iterdir():
            os.chmod(written, FILE_MODE)  # safetensors and mkstemp create files 0600
        if not directory.exists():
            os.replace(tmp, directory)
            return directory
        for src in sorted(tmp.iterdir()):
            os.replace(src, directory / src.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (how pinned archives and packages are checked)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """The JSON object in ``path``. A DataError naming ``path`` when the file is missing (``missing``
    says what the folder then is not), is not valid JSON, or holds something other than an object."""
    if not path.is_file():
        raise DataError(f"{path}: missing ({missing})")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object")
    return obj


# ----------------------------------------------------------------------------- paths checked before any work
# A command checks every path it will read or write before it starts, so a bad path fails at once, in
# one line naming the argument, and leaves every existing file as it was.


def _writable(folder: Path) -> bool:
    """This process may create files in ``folder`` (its effective ids, as a write would be judged;
    a read-only mount counts as not writable)."""
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a new ``path`` would be created in)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_creatable(path: Path, what: str) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    base = _nearest_existing(path.absolute())
    shown = base if path.is_absolute() else Path(os.path.relpath(base))
    if not base.is_dir():
        raise DataError(f"{what}: cannot create {path}: {shown} is a file, not a folder")
    if not _writable(base):
        raise DataError(f"{what}: cannot create {path}: {shown} is not writable")


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` can be written as a file: not a folder, and in (or creatable in) a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what}: {path} is a directory, expected a file path")
    if path.exists():
        if not _writable(path.parent.absolute()):
            raise DataError(f"{what}: cannot replace {path}: its folder is not writable")
    else:
        _check_creatable(path, what)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` can be a folder to write into: an existing writable folder, or creatable."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{what}: {path} is a file, expected a folder")
        if not _writable(path):
            raise DataError(f"{what}: {path} is not writable")
    else:
        _check_creatable(path, what)
    return path


def check_readable(path: str | os.PathLike[str], what: str) -> Path:
    """An existing ``path`` this process can read: a file it can open, a folder it can list."""
    path = Path(path)
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb"):
                pass
    except OSError as err:
        raise DataError(f"{what}: cannot read {path} ({err.strerror})") from None
    return path


def check_input_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` is a file this process can read."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what}: {path} not found")
    if path.is_dir():
        raise DataError(f"{what}: {path} is a directory, expected a file")
    return check_readable(path, what)
