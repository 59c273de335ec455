"""In-memory tensors as a BatchSource of the training loop (``fit`` and the image recipes use it), the
batch key a model reads its input from, and the checks and loss adapter that ``fit``, ``predict`` and
``evaluate_arrays`` share: arrays in (``as_arrays``), a model that returns a loss (``prepare_model``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.errors import ConfigError, DataError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.losses import LOSSES, LossName, loss_and_metrics

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


# ----------------------------------------------------------------------------- arrays in


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise DataError(f"{name}: expected a numeric array, got objects of mixed types or ragged rows")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # torch modules are float32; float64 inputs would fail in Linear
    return torch.from_numpy(np.ascontiguousarray(arr))


def _from_dataset(data: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A map-style dataset of ``x``, ``(x, y)`` or ``{"features"|..., "labels"}`` items, read into memory."""
    try:
        n = len(data)  # type: ignore[arg-type]
    except TypeError:
        raise DataError("x: an iterable dataset has no length; pass a map-style Dataset or arrays") from None
    if n == 0:
        raise DataError("x: the dataset is empty")
    xs, ys = [], []
    for i in range(n):
        item = data[i]
        if isinstance(item, dict):
            key = next((k for k in INPUT_KEYS if k in item), None)
            if key is None:
                raise DataError(
                    f"x: dataset item {i} has keys {sorted(item)}, expected one of {', '.join(INPUT_KEYS)}"
                )
            xs.append(torch.as_tensor(item[key]))
            if "labels" in item:
                ys.append(torch.as_tensor(item["labels"]))
        elif isinstance(item, tuple | list) and len(item) == 2:
            xs.append(torch.as_tensor(item[0]))
            ys.append(torch.as_tensor(item[1]))
        else:
            xs.append(torch.as_tensor(item))
    if ys and len(ys) != len(xs):
        raise DataError("x: some dataset items have labels and some do not")
    return torch.stack(xs), (torch.stack(ys) if ys else None)


def as_arrays(x: Any, y: Any = None, name: str = "x") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y) as tensors from numpy arrays, tensors, lists or a map-style Dataset, checked for the usual
    mistakes: empty data, mismatched lengths, NaN or inf values."""
    if isinstance(x, torch.utils.data.Dataset):
        if y is not None:
            raise DataError(f"{name}: pass labels inside the dataset, not as y")
        xt, yt = _from_dataset(x)
    else:
        xt = _as_tensor(x, name)
        yt = None if y is None else _as_tensor(y, "y" if name == "x" else f"{name} labels")
    if xt.dim() == 0 or len(xt) == 0:
        raise DataError(f"{name}: no samples (shape {tuple(xt.shape)})")
    if yt is not None and (yt.dim() == 0 or len(yt) != len(xt)):
        got = 1 if yt.dim() == 0 else len(yt)
        raise DataError(f"{name} and its labels differ in length: {len(xt)} samples vs {got} labels")
    for tensor, what in ((xt, name), (yt, "y" if name == "x" else f"{name} labels")):
        if tensor is not None and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = (~torch.isfinite(tensor)).reshape(len(tensor), -1).any(dim=1).nonzero()[0, 0].item()
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "inf"
            raise DataError(
                f"{what}: contains {kind} values (first in sample {bad}); clean or impute them first"
            )
    return xt, yt


# ----------------------------------------------------------------------------- a model with a loss


class WithLoss(nn.Module):
    """Adapts a plain module (tensor in, tensor out) or a contract model to a named loss.

    forward(features, labels) -> ModelOutput(logits, loss, metrics); accuracy for classification losses.
    """

    def __init__(self, module: nn.Module, loss: LossName | Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.loss = loss
        self.contract_key = input_key(module) if accepts_labels(module) else None

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        if self.contract_key is not None:
            logits = self.module(**{self.contract_key: features}).logits
        else:
            logits = self.module(features)
            if isinstance(logits, ModelOutput):
                logits = logits.logits
        if logits.dim() == 2 and logits.size(1) == 1 and (labels is None or labels.dim() == 1):
            logits = logits.squeeze(1)  # (N, 1) -> (N,) like the labels of a single target
        if labels is None:
            return ModelOutput(logits=logits)
        if callable(self.loss):
            return ModelOutput(logits=logits, loss=self.loss(logits, labels))
        loss, metrics = loss_and_metrics(logits, labels, self.loss)
        return ModelOutput(logits=logits, loss=loss, metrics=metrics)


def prepare_model(
    model: nn.Module, loss: LossName | Callable[..., torch.Tensor] | None
) -> tuple[nn.Module, str]:
    """(the module the trainer runs, the batch key of its input): a contract model trained on its own
    loss as it is (when ``loss`` is None), any other module wrapped in ``WithLoss``."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(loss, str) and loss not in LOSSES:
        raise ConfigError(f"loss: expected one of {', '.join(LOSSES)} or a callable, got {loss!r}")
    last = list(model.modules())[-1]
    if loss == "bce" and isinstance(last, nn.Sigmoid):
        # the named loss applies the sigmoid itself (log-sigmoid, stable): a second one would squash
        # every output into (0.5, 0.73) and the model would train towards the majority class
        raise ConfigError(
            "loss: 'bce' takes logits and applies the sigmoid itself, but the model ends in nn.Sigmoid; "
            "drop the final sigmoid, or pass loss=torch.nn.BCELoss()"
        )
    if loss is None and accepts_labels(model):
        return model, input_key(model)
    return WithLoss(model, loss or "mse"), "features"


def probe_model(
    trained: nn.Module, key: str, x: torch.Tensor, y: torch.Tensor | None, device: torch.device
) -> None:
    """One forward on two samples: a wrong input shape fails here, before training, with the model's
    own message; integer labels are checked against the number of output classes."""
    was_training = trained.training
    trained.eval()
    sample = x[:2]
    try:
        with torch.no_grad():
            logits = trained(**{key: sample.to(device)}).logits
    except DataError as err:
        # the model saw a 2-sample slice; report the shape the caller passed
        message = str(err).replace(str(tuple(sample.shape)), str(tuple(x.shape)))
        raise DataError(message + _image_size_hint(trained, x)) from None
    finally:
        trained.train(was_training)
    if y is None or y.is_floating_point() or logits.dim() != y.dim() + 1:
        return
    num_classes = logits.size(-1)
    labels = y[y != -100]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(
            f"y: label {bad} is out of range for the model's {num_classes} outputs (expected 0..{num_classes - 1})"
        )


def _image_size_hint(trained: nn.Module, x: torch.Tensor) -> str:
    """For an image model built for another size (``lenet`` takes 32x32, MNIST is 28x28): what to pass."""
    model = trained.module if isinstance(trained, WithLoss) else trained
    size = getattr(getattr(model, "config", None), "image_size", None)
    if size is None or x.dim() != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] == size:
        return ""
    return f"; build the model for these images: create_model(NAME, image_size={x.shape[-1]})"
