"""The interface every zeroforge tokenizer implements, and the file that says which one a folder holds."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

META_FILE = "zeroforge_tokenizer.json"
"""``{"kind": ...}`` plus what that kind needs to rebuild itself."""
EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"


class Tokenizer(ABC):
    """text <-> token ids, the one interface every tokenizer implements.

    ``eos_id`` is the end-of-text id (generation stops there) and ``pad_id`` the padding id; each is
    None when the vocabulary has no such token (a caller that must pad falls back to eos, then 0:
    padded positions are masked, so any id works).
    """

    kind: str
    vocab_size: int
    eos_id: int | None
    pad_id: int | None

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
            f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size}, "
            f"eos_id={self.eos_id}, pad_id={self.pad_id})"
        )
