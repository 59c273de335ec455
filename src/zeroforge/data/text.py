"""Token files for causal language models: prepare a corpus once, then draw (input, label) blocks.

``prepare("shakespeare")`` writes ``<cache>/prepared/shakespeare-char/``::

    train.bin  val.bin     token ids, raw np.uint16 (np.uint32 when the vocabulary exceeds 65,536)
    meta.json              tokenizer kind, vocab_size, dtype, token counts, source, val_fraction
    zeroforge_tokenizer.json (+ tokenizer.json for BPE)   the tokenizer, ``load_tokenizer(dir)``

As in nanoGPT's ``prepare.py`` the split is on the TEXT: the first ``1 - val_fraction`` of the
characters are train, the rest (contiguous) val. A char vocabulary comes from the whole text (so
val has no unknown characters); a BPE is trained on the train part only (val stays unseen).

``TokenBlocks`` draws random windows, nanoGPT's ``get_batch``: ``x = data[i:i+T]``,
``y = data[i+1:i+T+1]``, so ``labels`` are already shifted by one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroforge import datasets
from zeroforge.data.builders import DataContext, TrainingData, register_data_builder
from zeroforge.data.cache import META_FILE, prepared_folder
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_json
from zeroforge.tokenizers import KINDS, Tokenizer, build_tokenizer, load_tokenizer

SPLITS = ("train", "val")


# tokenizers trained on the corpus: their vocabulary size is part of what a prepared folder is
TRAINED_VOCAB = ("bpe", "wordpiece")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 holds ids < 65,536 at half the disk and page cache of uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# ----------------------------------------------------------------------------- prepare


def prepared_dir_for(source: str, tokenizer: str = "char", vocab_size: int = 4096) -> Path:
    """Default output folder: ``<cache>/prepared/<source-stem>-<tokenizer>[-<vocab>]`` (vocab for bpe)."""
    if source in datasets.list_datasets():
        stem = source
    else:
        path = Path(source).expanduser()
        stem = path.name if path.is_dir() else path.stem
        stem = stem or path.resolve().name
    stem = re.sub(r"[^\w.-]+", "_", stem) or "corpus"
    suffix = f"-{vocab_size}" if tokenizer in TRAINED_VOCAB else ""
    return datasets.cache_dir() / "prepared" / f"{stem}-{tokenizer}{suffix}"


def _check_args(tokenizer: str, vocab_size: int, val_fraction: float) -> None:
    if tokenizer not in KINDS:
        raise ConfigError(f"tokenizer: expected one of {', '.join(KINDS)}, got {tokenizer!r}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction: must be in (0, 1), got {val_fraction}")
    if vocab_size < 2:
        raise ConfigError(f"vocab_size: must be >= 2, got {vocab_size}")


def _settings(source: str, tokenizer: str, vocab_size: int, val_fraction: float) -> dict[str, Any]:
    """What a prepared folder records and must match to be reused (the vocabulary size only for
    tokenizers trained on the corpus)."""
    settings: dict[str, Any] = {"source": source, "tokenizer": tokenizer, "val_fraction": val_fraction}
    if tokenizer in TRAINED_VOCAB:
        settings["requested_vocab_size"] = vocab_size
    return settings


def _build(
    tmp: Path,
    fingerprint: dict[str, object],
    source: str,
    tokenizer: str,
    vocab_size: int,
    val_fraction: float,
    progress: bool,
) -> None:
    text = datasets.load_text(source)
    split = int(len(text) * (1 - val_fraction))  # nanoGPT: data[: int(n * 0.9)]
    train_text, val_text = text[:split], text[split:]
    if not train_text or not val_text:
        raise DataError(
            f"{source}: {len(text)} characters are too few to split with val_fraction {val_fraction}"
        )
    vocab_text = text if tokenizer == "char" else train_text
    tok = build_tokenizer(tokenizer, vocab_text, vocab_size=vocab_size, progress=progress)
    dtype = token_dtype(tok.vocab_size)
    counts = {}
    for split_name, part in zip(SPLITS, (train_text, val_text)):
        ids = tok.encode_corpus(part, progress=progress and len(part) > 1 << 20)
        ids.astype(dtype).tofile(tmp / f"{split_name}.bin")
        counts[f"{split_name}_tokens"] = int(ids.size)
    tok.save(tmp)
    meta = {
        "tokenizer": tok.kind,
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        **counts,
        "source": source,
        "val_fraction": val_fraction,
        "requested_vocab_size": vocab_size,
        "eos_id": tok.eos_id,
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "fingerprint": fingerprint,
    }
    atomic_write_json(tmp / META_FILE, meta)


def _prepared(
    source: str,
    out: Path,
    tokenizer: str,
    vocab_size: int,
    val_fraction: float,
    progress: bool,
    reuse: bool,
) -> Path:
    def build(tmp: Path, fingerprint: dict[str, object]) -> None:
        _build(tmp, fingerprint, source, tokenizer, vocab_size, val_fraction, progress)

    settings = _settings(source, tokenizer, vocab_size, val_fraction)
    return prepared_folder(out, settings, build, lambda d: _problem(d) is None, reuse)


def prepare(
    input: str,
    out: str | os.PathLike[str] | None = None,
    tokenizer: str = "char",
    vocab_size: int = 4096,
    val_fraction: float = 0.1,
    progress: bool = True,
) -> Path:
    """Tokenize a corpus (dataset name, text file or folder of .txt) into train/val token files.

    Returns the output folder (default ``prepared_dir_for(input, tokenizer, vocab_size)``), written
    atomically: built next to ``out`` and renamed into place only when complete.
    """
    _check_args(tokenizer, vocab_size, val_fraction)
    out_path = Path(out).expanduser() if out else prepared_dir_for(str(input), tokenizer, vocab_size)
    return _prepared(str(input), out_path, tokenizer, vocab_size, val_fraction, progress, reuse=False)


def describe_prepared(out: Path) -> str:
    """What ``prepare`` wrote: the folder, its token (or pair) counts and tokenizer, read from meta.json."""
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    counts = []
    for split in ("train", "val"):
        if isinstance(meta.get(split), dict) and "pairs" in meta[split]:  # mlm_nsp: sentence pairs per split
            counts.append(f"{meta[split]['pairs']:,} {split} pairs")
        elif f"{split}_tokens" in meta:  # clm: token counts per split
            counts.append(f"{meta[f'{split}_tokens']:,} {split} tokens")
    tokenizer = meta.get("tokenizer", {})
    kind = tokenizer.get("kind") if isinstance(tokenizer, dict) else tokenizer
    vocab = meta.get("vocab_size")
    about = ", ".join(
        [*counts, *([f"tokenizer {kind}"] if kind else []), *([f"vocab {vocab}"] if vocab else [])]
    )
    return f"prepared: {out}" + (f" ({about})" if about else "")


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or not {"dtype", "vocab_size", "train_tokens", "val_tokens"} <= set(meta):
        raise DataError(f"{path}: expected keys dtype, vocab_size, train_tokens, val_tokens")
    return meta


def _problem(directory: Path) -> str | None:
    """Why ``directory`` is not a complete prepared folder (None when it is)."""
    if not directory.is_dir():
        return f"{directory}: no prepared data folder"
    if not (directory / META_FILE).is_file():
        return f"{directory / META_FILE}: missing (incomplete prepared data folder)"
    meta = _read_meta(directory)
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in SPLITS:
        path = directory / f"{split}.bin"
        if not path.is_file():
            return f"{path}: missing (incomplete prepared data folder)"
        expected = meta[f"{split}_tokens"] * itemsize
        if path.stat().st_size != expected:
            return f"{path}: {path.stat().st_size} bytes, meta.json says {meta[f'{split}_tokens']} {meta['dtype']} tokens"
    return None


def load_prepared(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], Tokenizer]:
    """``(meta, tokenizer)`` of a prepared folder; a missing or incomplete one is a DataError."""
    directory = Path(directory).expanduser()
    problem = _problem(directory)
    if problem:
        raise DataError(f"{problem}; run: zeroforge prepare --input SOURCE --out {directory}")
    meta = _read_meta(directory)
    tok = load_tokenizer(directory)
    if tok.vocab_size != meta["vocab_size"]:
        raise DataError(
            f"{directory}: tokenizer has {tok.vocab_size} ids, meta.json says {meta['vocab_size']}"
        )
    return meta, tok


def ensure_prepared(
    source: str,
    tokenizer: str = "char",
    vocab_size: int = 4096,
    val_fraction: float = 0.1,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """The prepared folder for these settings: reused when complete and built from the same
    unchanged source with the same settings, else (re)built by ``prepare``. Safe to call from
    every rank at once (a file lock serialises them)."""
    _check_args(tokenizer, vocab_size, val_fraction)
    out_path = Path(out).expanduser() if out else prepared_dir_for(str(source), tokenizer, vocab_size)
    return _prepared(str(source), out_path, tokenizer, vocab_size, val_fraction, progress, reuse=True)


# ----------------------------------------------------------------------------- batches


class TokenBlocks:
    """Random ``block_size`` windows of a token file: the trainer's causal-LM batch source.

    ``next_batch()`` -> ``{"input_ids": (B, T) int64, "labels": (B, T) int64}`` with
    ``labels[b, t] = input_ids[b, t + 1]`` (the next token). Offsets come from a
    ``torch.Generator`` seeded with ``seed + rank`` so each rank sees different windows;
    ``state_dict``/``load_state_dict`` make a resumed run draw exactly the same next batches.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dtype: str | np.dtype,
        block_size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if block_size < 1 or batch_size < 1:
            raise ConfigError(f"block_size and batch_size must be >= 1, got {block_size} and {batch_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        if not self.path.is_file():
            raise DataError(f"{self.path}: token file not found")
        size = self.path.stat().st_size
        if size % self.dtype.itemsize:
            raise DataError(f"{self.path}: {size} bytes is not a whole number of {self.dtype.name} tokens")
        self.n_tokens = size // self.dtype.itemsize
        if block_size >= self.n_tokens:
            raise DataError(
                f"{self.path}: block_size {block_size} needs more than {block_size} tokens, "
                f"the file has {self.n_tokens}"
            )
        self.block_size, self.batch_size = block_size, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.generator = torch.Generator().manual_seed(seed + rank)
        self.step = 0  # batches drawn so far

    def _offsets(self, generator: torch.Generator, batch_size: int) -> torch.Tensor:
        # Start i in [0, N - T - 1] so that y = data[i + 1 : i + T + 1] stays inside the file.
        return torch.randint(self.n_tokens - self.block_size, (batch_size,), generator=generator)  # (B,)

    def next_batch(self) -> dict[str, torch.Tensor]:
        T = self.block_size
        ix = self._offsets(self.generator, self.batch_size).tolist()
        # A fresh memmap per batch, as nanoGPT does, so pages are not pinned by a long-lived map.
        data = np.memmap(self.path, dtype=self.dtype, mode="r")
        rows = torch.from_numpy(np.stack([data[i : i + T + 1] for i in ix]).astype(np.int64))  # (B, T+1)
        self.step += 1
        return {"input_ids": rows[:, :-1].contiguous(), "labels": rows[:, 1:].contiguous()}  # (B, T) each

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),  # uint8 tensor
            "seed": self.seed,
            "rank": self.rank,
            "step": self.step,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stopped. A state saved by another rank (e.g. rank 0's only)
        is replayed: this rank's generator is re-seeded and advanced ``step`` batches."""
        self.seed, self.step = int(state["seed"]), int(state["step"])
        if int(state["rank"]) == self.rank:
            self.generator.set_state(state["generator"])
            return
        self.generator = torch.Generator().manual_seed(self.seed + self.rank)
        for _ in range(self.step):
            self._offsets(self.generator, int(state["batch_size"]))


def eval_batches(
    path: str | os.PathLike[str],
    dtype: str | np.dtype,
    block_size: int,
    batch_size: int,
    n_batches: int,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """A fixed set of ``n_batches`` batches (same windows on every call) so evaluations compare."""
    blocks = TokenBlocks(path, dtype, block_size, batch_size, seed)
    return [blocks.next_batch() for _ in range(n_batches)]


# ----------------------------------------------------------------------------- the pretrain data contract


@dataclass
class PretrainData:
    """What ``pretrain`` needs from an objective's data builder (``clm`` here, ``mlm_nsp`` in data/mlm.py)."""

    train: Any  # a BatchSource: next_batch(), state_dict(), load_state_dict()
    val: list[dict[str, torch.Tensor]]
    tokenizer: Tokenizer
    meta: dict[str, Any]
    description: str


def build_clm_data(
    data_args: Any,
    block_size: int,
    batch_size: int,
    eval_batch_count: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> PretrainData:
    """Causal-LM data: prepared token files, random training windows, a fixed set of validation windows."""
    data_dir = ensure_prepared(
        data_args.source,
        tokenizer=data_args.tokenizer,
        vocab_size=data_args.vocab_size,
        val_fraction=data_args.val_fraction,
        out=data_args.prepared_dir,
    )
    meta, tokenizer = load_prepared(data_dir)
    dtype = meta["dtype"]
    train = TokenBlocks(
        data_dir / "train.bin", dtype, block_size, batch_size, seed=seed, rank=rank, world_size=world_size
    )
    val = eval_batches(data_dir / "val.bin", dtype, block_size, batch_size, eval_batch_count, seed=0)
    return PretrainData(train, val, tokenizer, meta, f"{data_dir} ({meta.get('train_tokens')} train tokens)")


# ----------------------------------------------------------------------------- the recipe's data (objective clm)


def pretrain_objective_data(
    recipe: Any, ctx: DataContext, build: Callable[..., PretrainData]
) -> TrainingData:
    """A pretraining objective's data: ``build`` (``build_clm_data``, ``build_mlm_nsp_data``) at the
    recipe's block size (default the model's), batch size, evaluation batches and seed, for this rank."""
    args = recipe.train
    block = args.block_size or recipe.model_config().block_size
    data = build(recipe.data, block, args.batch_size, args.eval_batches, args.seed, ctx.rank, ctx.world_size)
    fields = {"vocab_size": data.tokenizer.vocab_size}
    return TrainingData(data.train, data.val, data.description, data.tokenizer, fields)


@register_data_builder("clm")
def clm_objective_data(recipe: Any, ctx: DataContext) -> TrainingData:
    """``data.objective: clm``: ``build_clm_data`` at the recipe's block size, batch size and seed."""
    return pretrain_objective_data(recipe, ctx, build_clm_data)
