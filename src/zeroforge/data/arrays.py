"""In-memory tensors as a BatchSource of the training loop (``fit`` and the image recipes use it), and
the batch key a model reads its input from."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from zeroforge.errors import ConfigError, DataError

Transform = Callable[[torch.Tensor], torch.Tensor]
INPUT_KEYS = ("features", "pixel_values", "input_ids")
"""The batch keys of a model's one input tensor: tabular features, images, token ids."""


class ArrayBatches:
    """A BatchSource over in-memory tensors: every epoch visits each sample once, in a fresh order.

    The order comes from ``EpochSampler`` (shuffled by seed and epoch, like torch's
    DistributedSampler): under torchrun each rank reads its own share, and the state (epoch and
    samples consumed) restores the exact remaining batches after a resume. The last batch of an
    epoch is smaller when ``batch_size`` does not divide the sample count (as in Keras).
    ``transform`` (e.g. augmentation) is applied to the input tensor of each training batch.
    """

    def __init__(
        self,
        inputs: dict[str, torch.Tensor],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        transform: Transform | None = None,
        input_key: str = "features",
    ) -> None:
        import os

        from zeroforge.data.sampler import EpochSampler

        lengths = {len(v) for v in inputs.values()}
        if len(lengths) != 1:
            raise DataError(f"inputs differ in length: { {k: len(v) for k, v in inputs.items()} }")
        self.inputs = inputs
        self.n = lengths.pop()
        self.transform = transform
        self.input_key = input_key
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.sampler = EpochSampler(self.n, rank=rank, world_size=world, seed=seed, shuffle=shuffle)
        self.batch_size = min(batch_size, self.sampler.num_samples)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch(self.batch_size)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def next_batch(self) -> dict[str, torch.Tensor]:
        idx = self.sampler.next_indices(self.batch_size)
        batch = {k: v[idx] for k, v in self.inputs.items()}
        if self.transform is not None:
            batch[self.input_key] = self.transform(batch[self.input_key])
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def iterate_batches(inputs: dict[str, torch.Tensor], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Fixed-order batches for validation and prediction."""
    n = len(next(iter(inputs.values())))
    for start in range(0, n, batch_size):
        yield {k: v[start : start + batch_size] for k, v in inputs.items()}


def accepts_labels(model: nn.Module) -> bool:
    """True for models following the zeroforge contract (``forward(..., labels=None) -> ModelOutput``)."""
    try:
        return "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def input_key(model: nn.Module) -> str:
    """The batch key a contract model reads its input from (``features``, ``pixel_values``, ...)."""
    if not accepts_labels(model):
        return "features"
    params = inspect.signature(model.forward).parameters
    key = next((k for k in INPUT_KEYS if k in params), None)
    if key is None:
        raise ConfigError(
            f"{type(model).__name__}.forward takes labels but none of {', '.join(INPUT_KEYS)}; "
            "fit needs one input tensor"
        )
    return key


def rename_input(batches: list[dict[str, torch.Tensor]], model: nn.Module) -> None:
    """Give ``model`` its input under the name its forward reads (image batches carry ``pixel_values``;
    an MLP reads ``features``), in place."""
    key = input_key(model)
    for batch in batches:
        found = next((k for k in INPUT_KEYS if k in batch), key)
        if found != key:
            batch[key] = batch.pop(found)
