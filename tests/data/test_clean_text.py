"""Text clean-up: Unicode forms, control characters, whitespace; language and spelling extras."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroforge.data.clean.config import NormalizeArgs
from zeroforge.data.clean.text import count_tokens, normalize_text


def test_nfkc_folds_compatibility_forms_like_unicodedata() -> None:
    raw = "Ｆｕｌｌ-width ﬁne café\u00a0déjà ①"
    got = normalize_text(raw, NormalizeArgs(control_chars=False, whitespace=False))
    assert got == unicodedata.normalize("NFKC", raw)
    assert got == "Full-width fine café déjà 1"


def test_unicode_none_and_nfc_keep_compatibility_forms() -> None:
    raw = "ﬁ Ｆ"
    assert normalize_text(raw, NormalizeArgs(unicode="none")) == raw
    assert normalize_text(raw, NormalizeArgs(unicode="NFC")) == unicodedata.normalize("NFC", raw)


def test_control_characters_zero_width_and_surrogates_are_removed() -> None:
    raw = "a\x00b\x07c\u200bd\ufeffe\u00adf\x7fg\ud800h\x9bi"
    assert normalize_text(raw, NormalizeArgs(whitespace=False)) == "abcdefghi"
    # tab and newline are whitespace, not removed by the control-character rule
    assert normalize_text("a\tb\nc", NormalizeArgs(whitespace=False)) == "a\tb\nc"


def test_whitespace_collapses_trims_lines_and_keeps_one_blank_line() -> None:
    raw = "  hello \t  world \r\n\r\n\r\n\n  second\u2028line\u3000end  "
    assert normalize_text(raw, NormalizeArgs()) == "hello world\n\nsecond\nline end"


def test_lowercase_only_when_asked() -> None:
    assert normalize_text("Hello WORLD", NormalizeArgs()) == "Hello WORLD"
    assert normalize_text("Hello WORLD", NormalizeArgs(), lowercase=True) == "hello world"


def test_count_tokens_is_whitespace_words() -> None:
    assert count_tokens("a  b\tc\nd") == 4
    assert count_tokens("") == 0


def test_language_filter_matches_py3langid() -> None:
    langid = pytest.importorskip("py3langid.langid")
    from zeroforge.data.clean.text import LanguageFilter

    texts = {
        "en": "This film was a wonderful surprise and the actors were excellent.",
        "fr": "Ce film était une merveilleuse surprise et les acteurs étaient excellents.",
        "de": "Dieser Film war eine wunderbare Überraschung und die Schauspieler waren großartig.",
    }
    flt = LanguageFilter(["en"])
    reference = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    for lang, text in texts.items():
        assert flt.detect(text)[0] == reference.classify(text)[0] == lang
    assert flt.check(texts["en"]) is None
    assert flt.check(texts["fr"]).startswith("detected fr")
    assert LanguageFilter(["en"], min_prob=1.01 - 1e-9).check(texts["en"]) is not None


def test_spelling_corrects_lowercase_words_like_pyspellchecker() -> None:
    spellchecker = pytest.importorskip("spellchecker")
    from zeroforge.data.clean.text import SpellingCorrector

    reference = spellchecker.SpellChecker(language="en", distance=1)
    fixed, n = SpellingCorrector().correct("the moive was grat but teh end was bad")
    expected = " ".join(
        w if w in reference or len(w) < 3 else reference.correction(w) or w
        for w in "the moive was grat but teh end was bad".split()
    )
    assert fixed == expected
    assert (
        n == sum(a != b for a, b in zip(fixed.split(), "the moive was grat but teh end was bad".split())) >= 2
    )
    # names, contractions and words glued to digits are left alone
    assert SpellingCorrector().correct("Zzyzx isn't abc123 here") == ("Zzyzx isn't abc123 here", 0)


def test_html_breaks_tags_and_entities() -> None:
    raw = "Great film.<br /><br />The <i>cast</i> &amp; crew&nbsp;shine; 3 < 4 > 2<BR>end"
    assert (
        normalize_text(raw, NormalizeArgs(html=True))
        == "Great film.\n\nThe cast & crew shine; 3 < 4 > 2\nend"
    )
    assert normalize_text(raw, NormalizeArgs()) == raw  # off by default


_ALPHABET = "ab \t\n\r\x0b\x0c\x1c\x85\u00a0\u2028\u3000\u200b\x00é"


@given(st.text(alphabet=_ALPHABET, max_size=40))
@settings(max_examples=300, deadline=None)
def test_whitespace_equals_the_regex_definition(raw: str) -> None:
    # the definition: other whitespace runs -> " ", trim around newlines, at most one blank line
    expected = re.sub(r"\r\n?|[\x85\u2028\u2029]", "\n", raw)
    expected = re.sub(r"[^\S\n]+", " ", expected)
    expected = re.sub(r" ?\n ?", "\n", expected)
    expected = re.sub(r"\n{3,}", "\n\n", expected).strip()
    args = NormalizeArgs(unicode="none", control_chars=False)
    assert normalize_text(raw, args) == expected
