"""Debian packages as named assets: pinned version + sha256, fetched with ``apt-get download``.

The second kind of named asset beside ``zeroforge.datasets``' PyPI archives. A Debian package is
fetched once into ``<cache>/archives/`` with ``apt-get download NAME=VERSION`` (no install, no root),
its sha256 checked against the pin, and unpacked with ``dpkg-deb -x`` (or, where dpkg-deb is missing,
by reading the ``ar`` archive in Python) into ``<cache>/files/deb/<package>_<version>/``::

    >>> from zeroforge.data import debian
    >>> root = debian.deb_root("sword-text-sparv")      # the unpacked tree: root / "usr/share/sword"

Files by path instead of a download (offline machines, or apt missing):

- ``$ZEROFORGE_DEB_DIR``: a folder holding the ``.deb`` files themselves (``apt-get download`` run by
  hand elsewhere); each is sha256-checked like a downloaded one.
- the readers that use a package take a path to the installed files too (``apt-get install`` puts
  them under ``/usr/share/...``): see ``zeroforge.data.translation`` (``data.source``) and
  ``zeroforge.data.images`` (``$ZEROFORGE_FASHION_MNIST_DIR``).

Adding a package is one ``register_deb(DebPackage(...))`` call: ``apt-cache show NAME`` prints its
Version and SHA256.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.io import cache_dir, file_sha256


@dataclass(frozen=True)
class DebPackage:
    """One pinned Debian package."""

    package: str
    version: str
    sha256: str
    description: str = ""

    @property
    def filename(self) -> str:
        """The file ``apt-get download`` writes (an epoch's ``:`` is written ``%3a``)."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_all.deb"

    @property
    def pin(self) -> str:
        return f"{self.package}={self.version}"


_PACKAGES: dict[str, DebPackage] = {}


def register_deb(package: DebPackage) -> DebPackage:
    _PACKAGES[package.package] = package
    return package


def list_debs() -> list[str]:
    """Every Debian package ``deb_file`` / ``deb_root`` accept."""
    return sorted(_PACKAGES)


def get_deb(name: str | DebPackage) -> DebPackage:
    """A registered package by name (a ``DebPackage`` is returned as is: an asset's own pin)."""
    if isinstance(name, DebPackage):
        return name
    if name not in _PACKAGES:
        raise DataError(f"{name}: unknown Debian package asset (known: {', '.join(list_debs())})")
    return _PACKAGES[name]


def _by_hand(deb: DebPackage) -> str:
    return (
        f"run `apt-get update` then `apt-get download {deb.pin}` on a Debian/Ubuntu machine and put the file "
        f"in $ZEROFORGE_DEB_DIR (expected sha256 {deb.sha256})"
    )


def _checked(path: Path, deb: DebPackage) -> Path:
    got = file_sha256(path)
    if got != deb.sha256:
        raise ZeroforgeError(f"{path}: sha256 {got} does not match {deb.pin} ({deb.sha256})")
    return path


def _apt_download(deb: DebPackage, folder: Path) -> tuple[Path | None, str]:
    """Run ``apt-get download`` in ``folder``; (the file or None, why it failed)."""
    try:
        done = subprocess.run(
            ["apt-get", "download", deb.pin], cwd=folder, capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    path = folder / deb.filename
    if path.is_file():
        return path, ""
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    errors = [line for line in lines if line.startswith("E:")]
    return None, (errors or lines or ["no package file written"])[-1]


def deb_file(name: str | DebPackage) -> Path:
    """The package's ``.deb`` in the cache (or in ``$ZEROFORGE_DEB_DIR``), sha256-checked.

    Fetched with ``apt-get download`` on first use; a missing apt is a one-line error saying how to
    pass the file by hand.
    """
    deb = get_deb(name)
    given = os.environ.get("ZEROFORGE_DEB_DIR")
    if given:
        path = Path(given).expanduser() / deb.filename
        if not path.is_file():
            raise DataError(f"$ZEROFORGE_DEB_DIR: {path} not found ({_by_hand(deb)})")
        return _checked(path, deb)
    path = cache_dir() / "archives" / deb.filename
    if path.is_file():
        return _checked(path, deb)
    if shutil.which("apt-get") is None:
        raise DataError(
            f"{deb.package}: apt-get download {deb.pin} failed (apt-get not found on this machine); {_by_hand(deb)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching {deb.package}: apt-get download {deb.pin} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
        got, why = _apt_download(deb, Path(tmp))
        if got is None and ("Unable to locate" in why or "Can't find" in why):
            # an empty package list: refresh it once (needs write access to /var/lib/apt) and retry
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=False)
            got, why = _apt_download(deb, Path(tmp))
        if got is None:
            raise DataError(f"{deb.package}: apt-get download {deb.pin} failed ({why}); {_by_hand(deb)}")
        _checked(got, deb)
        os.replace(got, path)  # same folder: the archive appears complete or not at all
    return path


def unpack_deb(deb_path: Path, dest: Path) -> None:
    """``dpkg-deb -x`` by hand: a .deb is an ``ar`` archive (``!<arch>``, then 60-byte member headers:
    name, mtime, uid, gid, mode, size) whose ``data.tar.{xz,gz,zst}`` member is the installed tree."""
    raw = deb_path.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise DataError(f"{deb_path}: not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(raw):
        header = raw[offset : offset + 60]
        member, size = header[:16].strip().decode("ascii", "replace"), int(header[48:58])
        body = raw[offset + 60 : offset + 60 + size]
        offset += 60 + size + size % 2  # members are 2-byte aligned
        if member.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                tar.extractall(dest, filter="data")
            return
    raise DataError(f"{deb_path}: no data.tar member")


def deb_root(name: str | DebPackage) -> Path:
    """The package unpacked into the cache (the folder that holds its ``usr/``); unpacked once."""
    deb = get_deb(name)
    root = cache_dir() / "files" / "deb" / deb.filename.removesuffix("_all.deb")
    done = root.with_name(root.name + ".complete")
    if done.is_file() and root.is_dir():
        return root
    path = deb_file(name)
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".unpack-"))
    try:
        if shutil.which("dpkg-deb"):
            done_run = subprocess.run(["dpkg-deb", "-x", str(path), str(tmp)], capture_output=True, text=True)
            if done_run.returncode != 0:
                raise DataError(f"{path}: dpkg-deb -x failed ({done_run.stderr.strip()})")
        else:
            unpack_deb(path, tmp)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done.write_bytes(b"")
    return root


# ----------------------------------------------------------------------------- the packages

register_deb(
    DebPackage(
        "sword-text-kjv",
        "14.3-1",
        "9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57",
        "King James Version (1769) with Strong's numbers, SWORD module engKJV2006eb",
    )
)
register_deb(
    DebPackage(
        "sword-text-web",
        "426.0-1",
        "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
        "World English Bible (public domain, modern English), SWORD module engWEB2015eb",
    )
)
register_deb(
    DebPackage(
        "sword-text-sparv",
        "2.60-1",
        "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf",
        "Reina-Valera 1909 (Spanish), SWORD module spaRV1909eb",
    )
)
register_deb(
    DebPackage(
        "dataset-fashion-mnist",
        "0.0~git20200523.55506a9-1",
        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        "Fashion-MNIST IDX files under usr/share/datasets/fashion-mnist",
    )
)
