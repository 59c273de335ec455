"""WordPiece: ids equal to transformers' pure-Python BertTokenizer (the original BERT algorithm) on
the same vocab.txt, save/load round trips (ours, vocab.txt, tokenizer.json, AutoTokenizer), and errors."""

import functools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroforge.errors import ConfigError, DataError
from zeroforge.tokenizers import (
    WORDPIECE_SPECIALS,
    WordPieceTokenizer,
    build_tokenizer,
    load_tokenizer,
    load_wordpiece,
    train_wordpiece,
)

transformers = pytest.importorskip("transformers")
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy  # noqa: E402

CORPUS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "Café naïve résumé — über cooperation, co-operation; don't won't it's 3.14 1,000",
    "ROMEO: But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun.",
    "中文字符 和 日本語 テキスト 한국어",
] * 20

SAMPLES = [
    "Hello, World!",
    "In the Beginning GOD created",
    "Café NAÏVE résumé",
    "  multiple   spaces\tand\nnewlines  ",
    "unknown glyphs ☃ ♞ 𝄞",
    "中文字符和日本語",
    "a" * 120 + " short",  # words over 100 characters are [UNK] in both
    "don't [MASK] it's [CLS] x [SEP]",
    "control\x00chars\u200b here\ufeff",
    "",
]


@pytest.fixture(scope="module")
def trained():
    return {lc: train_wordpiece(CORPUS, vocab_size=300, lowercase=lc) for lc in (True, False)}


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    dirs = {}
    for lc, tok in trained.items():
        d = tmp_path_factory.mktemp(f"wp-{lc}")
        tok.save(d)
        dirs[lc] = d
    return dirs


@functools.cache
def legacy(directory, lowercase: bool) -> BertTokenizerLegacy:
    return BertTokenizerLegacy(str(directory / "vocab.txt"), do_lower_case=lowercase)


def test_specials_and_attributes(trained):
    tok = trained[True]
    assert [tok.tokenizer.id_to_token(i) for i in range(5)] == list(WORDPIECE_SPECIALS)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.special_ids() == [0, 1, 2, 3, 4]
    assert tok.kind == "wordpiece" and tok.eos_id is None
    assert tok.vocab_size <= 300
    cont = tok.continuation_mask()
    assert cont.shape == (tok.vocab_size,)
    assert cont.sum() > 0 and all(t.startswith("##") == c for t, c in zip(tok.vocab_tokens(), cont))
    assert isinstance(build_tokenizer("wordpiece", "\n".join(CORPUS), vocab_size=300), WordPieceTokenizer)


@pytest.mark.parametrize("lowercase", [True, False])
def test_ids_match_the_original_python_bert_tokenizer(trained, saved, lowercase):
    tok, ref = trained[lowercase], legacy(saved[lowercase], lowercase)
    for text in SAMPLES + CORPUS[:5]:
        assert tok.encode(text) == ref(text, add_special_tokens=False).input_ids, text
    # pairs: [CLS] A [SEP] B [SEP] with segment ids, from our tokenizer.json's template
    ours = tok.tokenizer.encode("Hello, World!", "Café naïve")
    theirs = ref("Hello, World!", "Café naïve", return_token_type_ids=True)
    assert ours.ids == theirs.input_ids and ours.type_ids == theirs.token_type_ids


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(list("abcdeghilnorstuwAÉÏüç ,.;'!?-#\t\n中文日本☃") + ["the ", "earth"]), max_size=30
    )
)
def test_random_text_matches_the_original_python_bert_tokenizer(trained, saved, pieces):
    text = "".join(pieces)
    assert trained[True].encode(text) == legacy(saved[True], True)(text, add_special_tokens=False).input_ids


def test_lowercase_option(trained):
    assert trained[True].encode("GOD") == trained[True].encode("god")
    assert trained[False].encode("GOD") != trained[False].encode("god")
    assert trained[True].decode(trained[True].encode("Café NAÏVE")) == "cafe naive"


@pytest.mark.parametrize("lowercase", [True, False])
def test_save_and_load_round_trip(trained, saved, lowercase):
    tok, d = trained[lowercase], saved[lowercase]
    for loaded in (load_tokenizer(d), load_wordpiece(d), load_wordpiece(d / "vocab.txt")):
        assert isinstance(loaded, WordPieceTokenizer) and loaded.lowercase == lowercase
        assert loaded.vocab_size == tok.vocab_size and loaded.mask_id == tok.mask_id
        for text in SAMPLES:
            assert loaded.encode(text) == tok.encode(text), (loaded.where, text)
    meta = json.loads((d / "zeroforge_tokenizer.json").read_text())
    assert meta == {"kind": "wordpiece", "vocab_size": tok.vocab_size, "lowercase": lowercase}


def test_transformers_autotokenizer_reads_the_saved_folder(trained, saved):
    tok = trained[True]
    hf = transformers.AutoTokenizer.from_pretrained(str(saved[True]))
    assert hf.mask_token_id == tok.mask_id and hf.cls_token_id == tok.cls_id and hf.pad_token_id == 0
    for text in SAMPLES[:6]:
        assert hf(text).input_ids == [tok.cls_id, *tok.encode(text), tok.sep_id]


def test_plain_vocab_txt_folders_and_foreign_tokenizer_json(trained, saved, tmp_path):
    vocab = (saved[False] / "vocab.txt").read_text()
    # a bare vocab.txt next to a tokenizer_config.json that says cased
    (tmp_path / "cased").mkdir()
    (tmp_path / "cased" / "vocab.txt").write_text(vocab)
    (tmp_path / "cased" / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    loaded = load_tokenizer(tmp_path / "cased")
    assert isinstance(loaded, WordPieceTokenizer) and loaded.lowercase is False
    assert loaded.encode("GOD Café") == trained[False].encode("GOD Café")
    # a tokenizer.json written by transformers (no zeroforge meta): detected as WordPiece, case kept
    hf = transformers.BertTokenizerFast(vocab_file=str(saved[False] / "vocab.txt"), do_lower_case=False)
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.txt").unlink(missing_ok=True)
    loaded = load_tokenizer(tmp_path / "hf")
    assert isinstance(loaded, WordPieceTokenizer) and loaded.lowercase is False
    assert loaded.encode("GOD Café, naïve") == hf("GOD Café, naïve", add_special_tokens=False).input_ids


def test_vocab_without_mask_loads_but_mlm_requirement_is_a_clear_error(saved, tmp_path):
    lines = [t for t in (saved[True] / "vocab.txt").read_text().splitlines() if t != "[MASK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n")
    tok = load_wordpiece(tmp_path / "vocab.txt")
    assert tok.mask_id is None and tok.cls_id is not None
    tok.require("[CLS]", "[SEP]")
    with pytest.raises(DataError, match=r"vocab.txt: the vocabulary has no \[MASK\] token"):
        tok.require("[CLS]", "[SEP]", "[MASK]", "[PAD]")


def test_errors(saved, tmp_path):
    with pytest.raises(ConfigError, match="vocab_size: WordPiece needs >= 6"):
        train_wordpiece(CORPUS, vocab_size=5)
    with pytest.raises(DataError, match="empty training text"):
        train_wordpiece(["", "  "], vocab_size=100)
    (tmp_path / "dup.txt").write_text("[PAD]\na\na\n")
    with pytest.raises(DataError, match="one distinct token per line"):
        load_wordpiece(tmp_path / "dup.txt")
    with pytest.raises(DataError, match="no such WordPiece vocabulary"):
        load_wordpiece(tmp_path / "missing")
    bpe = build_tokenizer("bpe", "\n".join(CORPUS), vocab_size=300)
    bpe.save(tmp_path / "bpe")
    with pytest.raises(DataError, match="a BPE tokenizer, not WordPiece"):
        load_wordpiece(tmp_path / "bpe" / "tokenizer.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a tokenizers JSON file"):
        load_wordpiece(tmp_path / "bad.json")
