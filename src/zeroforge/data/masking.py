"""Dynamic masking for BERT's masked LM, and the batches of masked sentence pairs.

Masking is dynamic (RoBERTa): each time an example is drawn, ``mask_prob`` of its non-special tokens
(whole words with ``whole_word_mask``) are selected; of those 80% become [MASK], 10% a random
token, 10% stay, and ``labels`` hold the originals there (-100 elsewhere). The draw depends only on
(seed, epoch, example), so every epoch masks differently and a resumed run draws the same batches.
The sentence pairs themselves are built by ``data.mlm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zeroforge.data.collate import attention_mask, right_padded
from zeroforge.errors import ConfigError, DataError
from zeroforge.modules.losses import IGNORE_INDEX
from zeroforge.tokenizers import WordPieceTokenizer

if TYPE_CHECKING:
    from zeroforge.data.mlm import PairSet


@dataclass(frozen=True)
class MaskingSpec:
    """What masking needs to know about the vocabulary."""

    mask_id: int
    pad_id: int
    special: np.ndarray  # (V,) bool: never selected ([CLS], [SEP], [PAD], ...)
    continuation: np.ndarray  # (V,) bool: ``##`` pieces (whole-word masking joins them to the word)
    random_ids: np.ndarray  # ids the 10% "random token" case draws from (the non-special ones)
    mask_prob: float = 0.15
    whole_word: bool = False

    @classmethod
    def from_tokenizer(
        cls, tok: WordPieceTokenizer, mask_prob: float = 0.15, whole_word: bool = False
    ) -> MaskingSpec:
        tok.require("[CLS]", "[SEP]", "[MASK]", "[PAD]")
        special = np.zeros(tok.vocab_size, dtype=bool)
        special[tok.special_ids()] = True
        assert tok.mask_id is not None and tok.pad_id is not None  # checked by require
        return cls(
            mask_id=tok.mask_id,
            pad_id=tok.pad_id,
            special=special,
            continuation=tok.continuation_mask(),
            random_ids=np.flatnonzero(~special),
            mask_prob=mask_prob,
            whole_word=whole_word,
        )


def mask_tokens(
    ids: np.ndarray, spec: MaskingSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking of one sequence -> ``(input_ids, labels)``, labels -100 where nothing was selected.

    round(mask_prob * n) of the n non-special tokens are selected (at least 1), as
    create_pretraining_data.py; with ``whole_word`` whole words are taken, skipping any that would
    overshoot the count. Each selected token: 80% [MASK], 10% a random non-special id, 10% unchanged.
    """
    ids = np.asarray(ids, dtype=np.int64)
    candidates = np.flatnonzero(~spec.special[ids])  # positions that may be masked
    inputs, labels = ids.copy(), np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    if candidates.size == 0:
        return inputs, labels
    n_predict = max(1, round(candidates.size * spec.mask_prob))
    if spec.whole_word:
        # a ## piece right after a candidate joins that candidate's word
        starts = ~(spec.continuation[ids[candidates]] & (np.r_[-2, candidates[:-1]] == candidates - 1))
        words = np.split(candidates, np.flatnonzero(starts)[1:])
        chosen: list[int] = []
        for w in rng.permutation(len(words)):
            if len(chosen) + len(words[w]) <= n_predict:
                chosen.extend(words[w].tolist())
            if len(chosen) == n_predict:
                break
        selected = np.sort(np.asarray(chosen, dtype=np.int64))
    else:
        selected = np.sort(rng.choice(candidates, size=n_predict, replace=False))
    labels[selected] = ids[selected]
    r = rng.random(selected.size)
    inputs[selected[r < 0.8]] = spec.mask_id
    swap = selected[(r >= 0.8) & (r < 0.9)]
    inputs[swap] = spec.random_ids[rng.integers(spec.random_ids.size, size=swap.size)]
    return inputs, labels


def collate(
    pairs: PairSet, indices: Sequence[int], spec: MaskingSpec, rngs: Sequence[np.random.Generator]
) -> dict[str, torch.Tensor]:
    """Mask ``pairs[indices]`` and pad them to the longest -> a BertForPreTraining batch."""
    inputs, labels, segments = [], [], []
    for i, rng in zip(indices, rngs):
        x, y = mask_tokens(pairs.example(i), spec, rng)
        inputs.append(x)
        labels.append(y)
        segments.append(np.arange(x.size) >= pairs.len_a[i])  # segment B, its [SEP] included
    return {
        "input_ids": right_padded(inputs, spec.pad_id),  # (B, T)
        "attention_mask": attention_mask(inputs),  # (B, T)
        "token_type_ids": right_padded(segments, 0),  # (B, T)
        "labels": right_padded(labels, IGNORE_INDEX),  # (B, T)
        "next_sentence_label": torch.from_numpy(pairs.next_label[list(indices)].copy()),  # (B,)
    }


VAL_EPOCH = (1 << 32) - 1  # the epoch number validation masks are drawn for (never a training epoch)


def _example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


class MaskedPairBatches:
    """The trainer's batch source for ``mlm_nsp``: shuffled pairs, freshly masked every epoch.

    Epoch e visits a permutation of the pairs seeded by (seed, e); rank r of w takes every w-th
    of it. Example i's mask in epoch e comes from a generator seeded by (seed, e, i), so the state
    is just (epoch, cursor) and resuming draws exactly the batches an uninterrupted run would.
    """

    def __init__(
        self,
        pairs: PairSet,
        spec: MaskingSpec,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        if len(pairs) < world_size:
            raise DataError(f"{len(pairs)} sentence pairs are too few for {world_size} ranks")
        self.pairs, self.spec, self.batch_size = pairs, spec, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))[
            self.rank :: self.world_size
        ]

    def next_batch(self) -> dict[str, torch.Tensor]:
        indices, rngs = [], []
        while len(indices) < self.batch_size:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            i = int(self._order[self.cursor])
            indices.append(i)
            rngs.append(_example_rng(self.seed, self.epoch, i))
            self.cursor += 1
        return collate(self.pairs, indices, self.spec, rngs)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed, self.epoch, self.cursor = int(state["seed"]), int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order(self.epoch)


def fixed_batches(
    pairs: PairSet, spec: MaskingSpec, batch_size: int, n_batches: int | None = None, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Evaluation batches: the same examples and masks on every call (all pairs when n_batches is None)."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    if n_batches is not None:
        order = order[: n_batches * batch_size]
    batches = []
    for start in range(0, len(order), batch_size):
        idx = [int(i) for i in order[start : start + batch_size]]
        batches.append(collate(pairs, idx, spec, [_example_rng(seed, VAL_EPOCH, i) for i in idx]))
    return batches


def most_frequent_token_baseline(
    train: PairSet, batches: Sequence[dict[str, torch.Tensor]], special: np.ndarray
) -> tuple[int, float]:
    """``(token, accuracy)``: always predicting the training pairs' most frequent non-special token."""
    counts = np.bincount(train.tokens.astype(np.int64), minlength=special.size)
    counts[special] = 0
    token = int(counts.argmax())
    labels = torch.cat([b["labels"][b["labels"] != IGNORE_INDEX] for b in batches])
    return token, float((labels == token).float().mean()) if labels.numel() else math.nan
