"""zeroforge.data.text: prepare (split, dtype, atomic), TokenBlocks (nanoGPT get_batch, exact resume), errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroforge.data.text import (
    TokenBlocks,
    ensure_prepared,
    eval_batches,
    load_prepared,
    prepare,
    prepared_dir_for,
    token_dtype,
)
from zeroforge.errors import ConfigError, DataError
from zeroforge.tokenizers import train_bpe


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, str]:
    rng = random.Random(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "世界", "🎉"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    text = "\n".join(lines) + "\nQ"  # "Q" only in the last 10%: must still be in the char vocabulary
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path, text


def _tokens(directory: Path, split: str) -> np.ndarray:
    meta = json.loads((directory / "meta.json").read_text())
    return np.fromfile(directory / f"{split}.bin", dtype=meta["dtype"])


# ----------------------------------------------------------------------------- prepare


def test_char_split_is_contiguous_text_split(cache: Path, corpus: tuple[Path, str]) -> None:
    path, text = corpus
    out = prepare(str(path), progress=False)
    assert out == cache / "prepared" / "corpus-char"
    meta, tok = load_prepared(out)
    n_train = int(len(text) * 0.9)  # nanoGPT: data[: int(n * 0.9)]
    assert meta["tokenizer"] == "char" and meta["dtype"] == "uint16"
    assert meta["vocab_size"] == len(set(text)) == tok.vocab_size
    assert (meta["train_tokens"], meta["val_tokens"]) == (n_train, len(text) - n_train)
    assert tok.decode(_tokens(out, "train")) == text[:n_train]
    assert tok.decode(_tokens(out, "val")) == text[n_train:]
    assert meta["source"] == str(path) and meta["val_fraction"] == 0.1


def test_bpe_split_trained_on_train_only(cache: Path, corpus: tuple[Path, str], tmp_path: Path) -> None:
    path, text = corpus
    text += "\n" + "xylophone " * 100  # frequent, but only in the validation part
    path.write_text(text, encoding="utf-8")
    out = prepare(
        str(path), tmp_path / "bpe", tokenizer="bpe", vocab_size=300, val_fraction=0.25, progress=False
    )
    meta, tok = load_prepared(out)
    n_train = int(len(text) * 0.75)
    assert "xylophone" not in text[:n_train]
    assert meta["tokenizer"] == "bpe" and meta["val_fraction"] == 0.25 and meta["eos_id"] == 0
    assert tok.decode(_tokens(out, "train")) == text[:n_train]
    assert tok.decode(_tokens(out, "val")) == text[n_train:]
    pieces = [tok.decode([i]) for i in range(tok.vocab_size)]
    assert not any("xyl" in p for p in pieces)  # val never shaped the merges
    everything = train_bpe(text, vocab_size=300)  # control: trained on all text it learns the word
    assert any("xyl" in everything.decode([i]) for i in range(everything.vocab_size))
    assert prepared_dir_for(str(path), "bpe", 300) == cache / "prepared" / "corpus-bpe-300"


def test_dtype_choice(cache: Path, tmp_path: Path) -> None:
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    # 70,000 distinct characters -> a char vocabulary too large for uint16.
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000]
    text = "".join(chars) + "".join(chars[:100])
    path = tmp_path / "wide.txt"
    path.write_text(text, encoding="utf-8")
    out = prepare(str(path), progress=False)
    meta, tok = load_prepared(out)
    assert meta["dtype"] == "uint32" and (out / "train.bin").stat().st_size == 4 * meta["train_tokens"]
    assert tok.decode(_tokens(out, "val")) == text[int(len(text) * 0.9) :]


def test_replace_is_atomic_and_only_on_success(cache: Path, corpus: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = corpus
    out = tmp_path / "prepared"
    prepare(str(path), out, progress=False)
    before = (out / "train.bin").read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff")
    with pytest.raises(DataError, match="not valid UTF-8"):
        prepare(str(bad), out, progress=False)
    assert (out / "train.bin").read_bytes() == before  # the complete folder survived
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".prepared.")) == [".prepared.lock"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="exists and is not a prepared data folder"):
        prepare(str(path), tmp_path / "mine", progress=False)


def test_ensure_prepared_reuses_until_source_changes(cache: Path, corpus: tuple[Path, str]) -> None:
    path, text = corpus
    out = ensure_prepared(str(path), progress=False)
    stamp = (out / "meta.json").stat().st_mtime_ns
    assert ensure_prepared(str(path), progress=False) == out
    assert (out / "meta.json").stat().st_mtime_ns == stamp  # reused
    path.write_text(text + " more", encoding="utf-8")
    ensure_prepared(str(path), progress=False)
    meta, _ = load_prepared(out)
    assert meta["train_tokens"] + meta["val_tokens"] == len(text) + 5  # rebuilt from the new text
    ensure_prepared(str(path), val_fraction=0.2, progress=False)
    assert load_prepared(out)[0]["val_fraction"] == 0.2


@pytest.mark.network
def test_real_shakespeare_char(tmp_path: Path) -> None:
    out = prepare(
        "shakespeare", tmp_path / "shakespeare-char", progress=False
    )  # archive from the shared cache
    meta, tok = load_prepared(out)
    assert meta["vocab_size"] == 84 and meta["dtype"] == "uint16"
    assert meta["train_tokens"] + meta["val_tokens"] == 5_057_198
    assert meta["train_tokens"] == int(5_057_198 * 0.9)


def test_prepare_errors(cache: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        prepare(str(empty), progress=False)
    with pytest.raises(DataError, match="no such file or dataset"):
        prepare(str(tmp_path / "missing.txt"), progress=False)
    one = tmp_path / "one.txt"
    one.write_text("x")
    with pytest.raises(DataError, match="too few to split"):
        prepare(str(one), progress=False)
    with pytest.raises(ConfigError, match="tokenizer: expected one of char, bpe, gpt2"):
        prepare(str(one), tokenizer="words")
    with pytest.raises(ConfigError, match="val_fraction"):
        prepare(str(one), val_fraction=1.0)


def test_load_prepared_names_what_is_missing(cache: Path, corpus: tuple[Path, str], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing: no prepared data folder"):
        load_prepared(tmp_path / "nothing")
    out = prepare(str(corpus[0]), tmp_path / "p", progress=False)
    (out / "val.bin").unlink()
    with pytest.raises(DataError, match=r"val\.bin: missing"):
        load_prepared(out)
    (out / "train.bin").write_bytes(b"\x00" * 6)
    with pytest.raises(DataError, match=r"train\.bin: 6 bytes, meta.json says"):
        load_prepared(out)
    (out / "meta.json").unlink()
    with pytest.raises(DataError, match=r"meta\.json: missing"):
        load_prepared(out)


# ----------------------------------------------------------------------------- batches


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.bin"
    np.arange(1000, dtype=np.uint16).tofile(path)  # token value == its position
    return path


def test_batches_follow_nanogpt_get_batch(token_file: Path) -> None:
    data = np.fromfile(token_file, dtype=np.uint16)
    blocks = TokenBlocks(token_file, "uint16", block_size=16, batch_size=4, seed=7, rank=1, world_size=2)
    batch = blocks.next_batch()
    # nanoGPT train.py get_batch, with a generator seeded seed + rank
    g = torch.Generator().manual_seed(7 + 1)
    ix = torch.randint(len(data) - 16, (4,), generator=g)
    x = torch.stack([torch.from_numpy(data[i : i + 16].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + 16].astype(np.int64)) for i in ix])
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (4, 16)
    torch.testing.assert_close(batch["input_ids"], x)
    torch.testing.assert_close(batch["labels"], y)
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])


def test_resume_draws_the_same_batches(token_file: Path, tmp_path: Path) -> None:
    def run(rank: int) -> TokenBlocks:
        return TokenBlocks(token_file, np.uint16, block_size=8, batch_size=3, seed=5, rank=rank, world_size=2)

    for rank in (0, 1):
        straight = run(rank)
        reference = [straight.next_batch() for _ in range(6)]
        first = run(rank)
        for _ in range(3):
            first.next_batch()
        torch.save(first.state_dict(), tmp_path / "state.pt")
        resumed = run(rank)
        resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
        for expected in reference[3:]:
            got = resumed.next_batch()
            assert torch.equal(got["input_ids"], expected["input_ids"])
            assert torch.equal(got["labels"], expected["labels"])

    # Only rank 0 saved: rank 1 replays its own stream from rank 0's state.
    rank0 = run(0)
    for _ in range(3):
        rank0.next_batch()
    straight1 = run(1)
    reference1 = [straight1.next_batch() for _ in range(4)][3]
    resumed1 = run(1)
    resumed1.load_state_dict(rank0.state_dict())
    assert torch.equal(resumed1.next_batch()["input_ids"], reference1["input_ids"])
    assert not torch.equal(run(0).next_batch()["input_ids"], run(1).next_batch()["input_ids"])


def test_eval_batches_are_fixed(token_file: Path) -> None:
    a = eval_batches(token_file, "uint16", 8, 4, n_batches=3, seed=0)
    b = eval_batches(token_file, "uint16", 8, 4, n_batches=3, seed=0)
    assert len(a) == 3
    for x, y in zip(a, b):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
    assert not torch.equal(a[0]["input_ids"], a[1]["input_ids"])


def test_block_errors(token_file: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"tokens\.bin: block_size 1000 needs more than 1000 tokens, the file has 1000"
    ):
        TokenBlocks(token_file, "uint16", 1000, 2, seed=0)
    TokenBlocks(token_file, "uint16", 999, 2, seed=0).next_batch()  # the largest block that fits
    with pytest.raises(DataError, match=r"missing\.bin: token file not found"):
        TokenBlocks(tmp_path / "missing.bin", "uint16", 8, 2, seed=0)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x00" * 7)
    with pytest.raises(DataError, match="not a whole number of uint16 tokens"):
        TokenBlocks(odd, "uint16", 2, 2, seed=0)
