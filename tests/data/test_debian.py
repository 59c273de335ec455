"""Debian packages as named assets: pinned sha256, apt-get download into the cache, files by path."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from zeroforge.data import debian
from zeroforge.errors import DataError, ZeroforgeError


def _fake_deb(path: Path, files: dict[str, bytes]) -> bytes:
    """A minimal .deb: an ar archive with debian-binary and a data.tar.gz holding ``files``."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:gz") as tar:
        text = (
            b"Package: zf-test-pkg\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
        )
        info = tarfile.TarInfo("./control")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    members = [
        (b"debian-binary", b"2.0\n"),
        (b"control.tar.gz", control.getvalue()),
        (b"data.tar.gz", tar_bytes.getvalue()),
    ]
    out = b"!<arch>\n"
    for name, data in members:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        out += header + str(len(data)).encode().ljust(10) + b"`\n" + data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(out)
    return out


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "debs"
    folder.mkdir()
    data = _fake_deb(folder / "zf-test-pkg_1.0-1_all.deb", {"usr/share/zf/hello.txt": b"hola\n"})
    package = debian.DebPackage("zf-test-pkg", "1.0-1", hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(debian._PACKAGES, package.package, package)
    return folder, package


def test_files_by_path_are_checked_and_unpacked(fake_package, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = fake_package
    monkeypatch.setenv("ZEROFORGE_DEB_DIR", str(folder))
    root = debian.deb_root("zf-test-pkg")
    assert (root / "usr/share/zf/hello.txt").read_bytes() == b"hola\n"
    assert debian.deb_root("zf-test-pkg") == root  # unpacked once


def test_python_unpacking_matches_dpkg_deb(fake_package, tmp_path: Path) -> None:
    folder, _ = fake_package
    debian.unpack_deb(folder / "zf-test-pkg_1.0-1_all.deb", tmp_path / "x")
    assert (tmp_path / "x/usr/share/zf/hello.txt").read_bytes() == b"hola\n"


def test_a_changed_file_fails_its_sha256(fake_package, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = fake_package
    path = folder / "zf-test-pkg_1.0-1_all.deb"
    path.write_bytes(path.read_bytes() + b"x")
    monkeypatch.setenv("ZEROFORGE_DEB_DIR", str(folder))
    with pytest.raises(ZeroforgeError, match=r"sha256 .* does not match zf-test-pkg=1.0-1"):
        debian.deb_file("zf-test-pkg")


def test_missing_apt_is_a_one_line_error(fake_package, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZEROFORGE_DEB_DIR", raising=False)
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as err:
        debian.deb_file("zf-test-pkg")
    message = str(err.value)
    assert "apt-get not found" in message and "ZEROFORGE_DEB_DIR" in message and "\n" not in message


def test_unknown_package_names_the_known_ones() -> None:
    with pytest.raises(DataError, match="unknown Debian package asset.*sword-text-sparv"):
        debian.get_deb("no-such-package")


@pytest.mark.network
def test_apt_get_download_fetches_the_pinned_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if debian.shutil.which("apt-get") is None:
        pytest.skip("apt-get not installed")
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path))
    monkeypatch.delenv("ZEROFORGE_DEB_DIR", raising=False)
    root = debian.deb_root("sword-text-sparv")
    assert (root / "usr/share/sword/mods.d/spaRV1909eb.conf").is_file()
