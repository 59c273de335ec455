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
"""

from __future__ import annotations

import math
from typing import Any

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
