"""CJK text as BERT-Chinese sees it: every CJK ideograph is a token of its own.

Chinese is written without spaces, so whitespace-based counting and splitting see one "word" per
line. BERT (Devlin et al. 2019, ``tokenization.py``: ``_is_chinese_char`` / ``_tokenize_chinese_chars``)
puts spaces around each CJK ideograph before splitting; these helpers do the same, for the
tokenizers (byte-level BPE pre-splitting, WordPiece decoding) and for cleaning (token counts,
word shingles, the Han share of a text).

    split_cjk("我爱NLP模型").split()  # ["我", "爱", "NLP", "模", "型"]
    count_words("我爱 NLP 模型")      # 5: 我, 爱, NLP, 模, 型
    join_wide("迈 向 新 世 纪 。")     # "迈向新世纪。" (no space next to a wide character)
"""

from __future__ import annotations

import re
import unicodedata

# The code point blocks of BERT's _is_chinese_char: CJK Unified Ideographs, Extensions A-E,
# Compatibility Ideographs and their Supplement. (Kana and Hangul are not in them: BERT splits
# Japanese and Korean on whitespace, as English.)
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
CJK_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES)
"""The ranges as a regex character class body (``[...]`` around it) written with the characters
themselves, which both ``re`` and HF ``tokenizers.Regex`` (Oniguruma) read."""
_CJK = re.compile(f"([{CJK_CLASS}])")
_KANA_HANGUL = re.compile("[\u3040-\u30ff\u31f0-\u31ff\u1100-\u11ff\uac00-\ud7af]")


def is_cjk(ch: str) -> bool:
    """Whether the one-character string ``ch`` is a CJK ideograph (BERT's ``_is_chinese_char``)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def split_cjk(text: str) -> str:
    """``text`` with a space on each side of every CJK ideograph (BERT's ``_tokenize_chinese_chars``)."""
    return _CJK.sub(r" \1 ", text)


def count_words(text: str) -> int:
    """Whitespace-separated words, each CJK ideograph counting as one word."""
    return len(split_cjk(text).split())


def han_share(text: str) -> tuple[float, bool]:
    """(CJK ideographs / letters of ``text``, whether it has kana or hangul). Letters are characters
    of Unicode category L*; a text without letters has share 0."""
    letters = han = 0
    for ch in text:
        if unicodedata.category(ch).startswith("L"):
            letters += 1
            han += is_cjk(ch)
    return (han / letters if letters else 0.0), bool(_KANA_HANGUL.search(text))


def is_wide(ch: str) -> bool:
    """A character East Asian text sets without spaces: wide or full-width (CJK ideographs, kana,
    full-width forms and punctuation), or a punctuation mark / symbol of ambiguous width (“ ” — … ·)."""
    width = unicodedata.east_asian_width(ch)
    return width in ("W", "F") or (width == "A" and unicodedata.category(ch)[0] in "PS")


def join_wide(text: str) -> str:
    """Drop every single space that has a wide character (``is_wide``) on either side: the spaces a
    token-by-token decoder puts between CJK characters. Other spaces are left alone."""
    if " " not in text or text.isascii():
        return text
    out = []
    for i, ch in enumerate(text):
        if (
            ch == " "
            and 0 < i < len(text) - 1
            and text[i - 1] != " "
            and text[i + 1] != " "
            and (is_wide(text[i - 1]) or is_wide(text[i + 1]))
        ):
            continue
        out.append(ch)
    return "".join(out)
