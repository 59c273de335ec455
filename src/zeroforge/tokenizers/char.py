"""Character-level tokenization: one id per character, as nanoGPT's Shakespeare model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_json
from zeroforge.tokenizers.base import META_FILE, UNK_TOKEN, Tokenizer


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
        self.eos_id = self.pad_id = None
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
