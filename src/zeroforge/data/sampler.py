"""Which samples of a labelled dataset each rank reads: epochs, shuffling and sharding, resumable.

``EpochSampler`` is ``torch.utils.data.DistributedSampler`` (tested against it) driven batch by batch:

- every epoch the indices ``0..N-1`` are shuffled by a generator seeded with ``seed + epoch``, the same
  permutation on every rank (so no communication is needed);
- the permutation is dealt round-robin: rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...``;
- when ``W`` does not divide ``N``: ``drop_last=False`` (default) pads the permutation with its own first
  ``total - N`` indices, so those few samples are read twice in that epoch; ``drop_last=True`` cuts it to
  ``W * floor(N / W)``, so up to ``W - 1`` samples are skipped in that epoch (others in the next).

So across ranks each sample is read once per epoch, and ``W`` ranks at batch ``B`` read, step by step,
the very samples one process reads at batch ``W * B`` (its step ``k`` is positions ``[kWB, (k+1)WB)``).
The last batch of an epoch is smaller when ``B`` does not divide the rank's share (as in Keras).

The state is ``epoch`` and ``consumed`` (samples of this epoch read by all ranks together), which does
not mention ``W``: a checkpoint of a 2-rank run resumes in one process at the same place, and back.

``BatchPlan`` draws the batches of classification and SFT training from it, optionally grouped by
length (``length_grouped``, transformers' ``group_by_length``) so a batch pads less.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from zeroforge.errors import ConfigError, DataError


class EpochSampler:
    """Rank ``rank``'s batches of indices into a dataset of ``n`` samples; see the module docstring."""

    def __init__(
        self,
        n: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        if n < 1:
            raise DataError("the dataset is empty")
        if drop_last and n < world_size:
            raise DataError(f"{n} samples cannot be dealt to {world_size} ranks with drop_last")
        self.n, self.rank, self.world_size = n, rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        # DistributedSampler's arithmetic: each rank gets num_samples, total_size = W * num_samples
        if drop_last:
            self.num_samples = n // world_size
        else:
            self.num_samples = math.ceil(n / world_size)
        self.total_size = self.num_samples * world_size
        self.epoch, self.position = 0, 0  # position: indices of this epoch this rank has read
        self._cached: tuple[int, torch.Tensor] | None = None

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, in reading order: ``(num_samples,)`` int64."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.n, generator=g)  # (N,)
        else:
            order = torch.arange(self.n)  # (N,)
        if self.total_size > self.n:  # pad with the permutation's own head, repeated if W > N
            repeats = math.ceil((self.total_size - self.n) / self.n)
            order = torch.cat([order, order.repeat(repeats)[: self.total_size - self.n]])
        mine = order[: self.total_size][self.rank :: self.world_size].clone()  # (num_samples,)
        self._cached = (epoch, mine)
        return mine

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.num_samples / batch_size)

    def next_indices(self, batch_size: int) -> torch.Tensor:
        """The next ``batch_size`` indices of this rank (fewer at an epoch's end): ``(b,)`` int64."""
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
        indices = self.epoch_indices(self.epoch)[self.position : self.position + batch_size]
        self.position += len(indices)
        if self.position >= self.num_samples:
            self.epoch, self.position = self.epoch + 1, 0
        return indices

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": self.position * self.world_size,  # global: the same number on every rank
            "n": self.n,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state``'s place, also when it was saved under another world size.

        ``consumed`` samples of the epoch are behind us, so this rank starts at ``consumed // W``;
        when ``W`` does not divide ``consumed`` (batch sizes that do not line up) the ranks start
        together at the floor and re-read at most ``W - 1`` samples.
        """
        if int(state["n"]) != self.n:
            raise DataError(
                f"the checkpoint's sampler was over {state['n']} samples, this dataset has {self.n}"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = min(int(state["consumed"]) // self.world_size, self.num_samples)
        if self.position >= self.num_samples:
            self.epoch, self.position = self.epoch + 1, 0


def length_grouped(
    order: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int, mega: int = 50
) -> np.ndarray:
    """Reorder an epoch so each batch holds examples of similar length (less padding, same examples).

    The shuffled ``order`` is cut into chunks of ``mega`` batches; each chunk is sorted by length
    (longest first) and cut into batches; then the batches are shuffled (seeded) so long and short
    ones alternate through the epoch. This is ``transformers``' group_by_length sampler, written out.
    """
    chunk = batch_size * mega
    grouped = [
        part[np.argsort(-lengths[part], kind="stable")]
        for part in (order[i : i + chunk] for i in range(0, len(order), chunk))
    ]
    flat = np.concatenate(grouped) if grouped else order
    batches = [flat[i : i + batch_size] for i in range(0, len(flat), batch_size)]
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(len(batches))
    return np.concatenate([batches[i] for i in perm]) if batches else flat


class BatchPlan:
    """Which examples each training batch takes, epoch after epoch: ``EpochSampler``'s seeded, rank-aware
    order, optionally ``length_grouped``. The state (epoch, position) resumes exactly."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        group_by_length: bool = False,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.group = batch_size, seed, group_by_length
        self.sampler = EpochSampler(len(self.lengths), rank=rank, world_size=world_size, seed=seed)
        self.epoch, self.position = 0, 0
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch(self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            order = self.sampler.epoch_indices(epoch).numpy()
            self._cached = (epoch, length_grouped(order, self.lengths, self.batch_size, self.seed + epoch))
        return self._cached[1]

    def next_indices(self) -> list[int]:
        if not self.group:
            return self.sampler.next_indices(self.batch_size).tolist()
        order = self._order(self.epoch)
        idx = order[self.position : self.position + self.batch_size]
        self.position += len(idx)
        if self.position >= len(order):
            self.epoch, self.position = self.epoch + 1, 0
        return idx.tolist()

    def state_dict(self) -> dict[str, Any]:
        if not self.group:
            return self.sampler.state_dict()
        return {"epoch": self.epoch, "position": self.position, "n": len(self.lengths), "grouped": True}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if bool(state.get("grouped")) != self.group:
            raise DataError("the checkpoint's batches were drawn with another data.group_by_length setting")
        if not self.group:
            self.sampler.load_state_dict(state)
            return
        if int(state["n"]) != len(self.lengths):
            raise DataError(
                f"the checkpoint's data had {state['n']} examples, this data has {len(self.lengths)}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
