"""BERT's WordPiece tokenizer: trained with Hugging Face ``tokenizers`` or read from an existing
``vocab.txt`` / ``tokenizer.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_json, atomic_write_text, read_json_object
from zeroforge.tokenizers.base import META_FILE
from zeroforge.tokenizers.bpe import HFTokenizer, split_for_encoding
from zeroforge.tokenizers.cjk import join_wide

# BERT's special tokens, in the order a trained WordPiece vocabulary gives them ids 0..4.
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


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

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The WordPiece decoder's text (words joined by spaces, ``##`` pieces glued on) without the
        spaces it puts next to CJK characters and full-width punctuation (``cjk.join_wide``), so
        Chinese decodes as it is written: "迈向新世纪。", not "迈 向 新 世 纪 。"."""
        return join_wide(super().decode(ids))

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


def _bert_pipeline(model: Any, lowercase: bool, nfkc: bool = False) -> Any:
    """BERT's normaliser (after NFKC when ``nfkc``), pre-tokenizer, decoder and
    ``[CLS] A [SEP] (B [SEP])`` template."""
    from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
    from tokenizers import Tokenizer as HF

    tok = HF(model)
    # strip_accents=None: strip accents exactly when lowercasing (bert-base-uncased vs -cased)
    bert = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), bert]) if nfkc else bert
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
    texts: str | Iterable[str],
    vocab_size: int = 8192,
    lowercase: bool = True,
    progress: bool = False,
    nfkc: bool = False,
) -> WordPieceTokenizer:
    """A WordPiece vocabulary trained on ``texts`` with HF ``tokenizers``.

    Ids 0..4 are ``[PAD] [UNK] [CLS] [SEP] [MASK]``. Every character seen becomes a token even past
    ``vocab_size``; a small corpus can end below it when nothing is left to merge. ``nfkc``: text is
    NFKC-normalised first (the normaliser is saved with the tokenizer, so encoding applies it too).
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
    tok = _bert_pipeline(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"), lowercase, nfkc)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(WORDPIECE_SPECIALS),
        continuing_subword_prefix="##",
        show_progress=progress,
    )
    tok.train_from_iterator(chunks, trainer, length=len(chunks))
    return WordPieceTokenizer(_bert_pipeline(tok.model, lowercase, nfkc), lowercase)


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
        value = read_json_object(config, "").get("do_lower_case")
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
