"""The one prepare-and-cache mechanism (``data.cache``) as both objectives use it: a missing source
creates nothing, a complete folder is reused while its settings and source are unchanged (and when
the source is gone), a failed build leaves the previous folder and no temp folder behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from zeroforge.data.cache import META_FILE, prepared_folder
from zeroforge.data.mlm import prepare_mlm_nsp
from zeroforge.data.text import ensure_prepared, prepare
from zeroforge.errors import DataError

PREPARERS: dict[str, Callable[..., Path]] = {
    "clm prepare": lambda source, out: prepare(source, out, progress=False),
    "clm ensure_prepared": lambda source, out: ensure_prepared(source, out=out, progress=False),
    "mlm_nsp": lambda source, out: prepare_mlm_nsp(
        source, out, vocab_size=60, max_seq_len=16, progress=False
    ),
    "mlm_nsp reuse": lambda source, out: prepare_mlm_nsp(
        source, out, vocab_size=60, max_seq_len=16, progress=False, reuse=True
    ),
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for k, words in enumerate(["a b c d", "e f g h", "i j k l", "m n o p", "q r s t"]):
        lines = [" ".join(words.split()[i % 4 :] + words.split()[: i % 4]) + "." for i in range(12)]
        (folder / f"doc{k}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("how", list(PREPARERS))
@pytest.mark.parametrize("default_out", [False, True], ids=["out", "default-out"])
def test_a_missing_source_fails_before_anything_is_created(
    tmp_path: Path, cache: Path, how: str, default_out: bool
) -> None:
    out = None if default_out else tmp_path / "deep" / "prepared"
    with pytest.raises(DataError, match="missing.txt: no such file or dataset"):
        PREPARERS[how](str(tmp_path / "missing.txt"), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock file, no cache, no parent folders


@pytest.mark.parametrize("how", ["clm ensure_prepared", "mlm_nsp reuse"])
def test_reused_until_the_source_changes_and_when_it_is_gone(
    tmp_path: Path, documents: Path, how: str
) -> None:
    out = tmp_path / "prepared"
    assert PREPARERS[how](str(documents), out) == out
    stamp = (out / META_FILE).stat().st_mtime_ns
    assert PREPARERS[how](str(documents), out) == out
    assert (out / META_FILE).stat().st_mtime_ns == stamp  # reused
    (documents / "doc0.txt").write_text("a b c d.\nd c b a.\n" * 6)
    PREPARERS[how](str(documents), out)
    rebuilt = (out / META_FILE).stat().st_mtime_ns
    assert rebuilt != stamp  # the source changed: rebuilt
    for p in documents.iterdir():
        p.unlink()
    documents.rmdir()
    assert PREPARERS[how](str(documents), out) == out  # the source is gone: the complete copy is all there is
    assert (out / META_FILE).stat().st_mtime_ns == rebuilt


def test_prepared_folder_settings_build_and_failure(tmp_path: Path, documents: Path) -> None:
    out = tmp_path / "p"
    built: list[dict[str, object]] = []

    def build(tmp: Path, fingerprint: dict[str, object]) -> None:
        built.append(fingerprint)
        (tmp / "data.txt").write_text("x")
        (tmp / META_FILE).write_text(
            f'{{"source": "{documents}", "size": 1, "fingerprint": {json.dumps(fingerprint)}}}'
        )

    def complete(d: Path) -> bool:
        return (d / "data.txt").is_file()

    settings = {"source": str(documents), "size": 1}
    assert prepared_folder(out, settings, build, complete) == out and len(built) == 1
    prepared_folder(out, settings, build, complete)
    assert len(built) == 1  # same settings: reused
    prepared_folder(out, {**settings, "size": 2}, build, complete)
    assert len(built) == 2  # other settings: rebuilt

    def failing(tmp: Path, fingerprint: dict[str, object]) -> None:
        (tmp / "half.txt").write_text("x")
        raise DataError("broken source")

    with pytest.raises(DataError, match="broken source"):
        prepared_folder(out, settings, failing, complete, reuse=False)
    assert (out / "data.txt").is_file() and not (out / "half.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p.lock", "docs", "p"]  # no temp folder left
