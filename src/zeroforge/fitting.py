"""Keras-style ``fit`` / ``predict`` / ``evaluate_arrays`` for any PyTorch module, on the one trainer.

(The module is ``fitting``, not ``fit``: importing a submodule ``zeroforge.fit`` would overwrite the
top-level function ``zeroforge.fit`` with the module object.)

    import zeroforge as zf
    history = zf.fit(model, x_train, y_train, val=(x_test, y_test), loss="cross_entropy", epochs=5)
    history.plot("history.png")
    logits = zf.predict(model, x_test)

``fit`` is a thin front: it checks the arrays, wraps them in an epoch-shuffled ``ArrayBatches`` source,
turns the Keras arguments into ``TrainArgs`` (max_steps = epochs * steps_per_epoch, one log row and one
validation pass per epoch) and calls ``zeroforge.train.loop.train``. There is no second training loop.

Models: a zeroforge model (``forward(features|pixel_values|input_ids, labels) -> ModelOutput``) trains on
its own loss; any other ``nn.Module`` mapping a tensor to a tensor is wrapped with the ``loss`` you name
(``mse`` when you name none). Naming a loss for a zeroforge model overrides the model's own.

Gradient descent flavours, batch vs stochastic: ``batch_size=None`` is full-batch gradient
descent (one step per epoch on all samples), ``batch_size=1`` is stochastic gradient descent, anything
between is mini-batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.config import TrainArgs
from zeroforge.data.arrays import (
    INPUT_KEYS,
    ArrayBatches,
    Transform,
    accepts_labels,
    input_key,
    iterate_batches,
)
from zeroforge.errors import ConfigError, DataError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.losses import LOSSES, LossName, loss_and_metrics

ArrayLike = np.ndarray | torch.Tensor | list

# ----------------------------------------------------------------------------- inputs


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


def _val_pair(val: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(val, torch.utils.data.Dataset):
        return as_arrays(val, name="val")
    if isinstance(val, tuple | list) and len(val) == 2:
        return as_arrays(val[0], val[1], name="val")
    raise DataError("val: expected (x_val, y_val) or a Dataset of (x, y) items")


# ----------------------------------------------------------------------------- models


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


def _prepare_model(
    model: nn.Module, loss: LossName | Callable[..., torch.Tensor] | None
) -> tuple[nn.Module, str]:
    """(the module the trainer runs, the batch key of its input)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(loss, str) and loss not in LOSSES:
        raise ConfigError(f"loss: expected one of {', '.join(LOSSES)} or a callable, got {loss!r}")
    if loss is None and accepts_labels(model):
        return model, input_key(model)
    return WithLoss(model, loss or "mse"), "features"


def _probe(
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


def _check_scaled(x: torch.Tensor) -> None:
    """Raw uint8 pixels (0..255) train an MLP badly and silently; ask for them scaled first."""
    if x.dtype == torch.uint8:
        raise DataError(
            f"x: uint8 values (raw pixels, 0..255) of shape {tuple(x.shape)}; scale them first: "
            "zeroforge.data.images.to_float(x) gives [0, 1], images.normalize() standardises"
        )


# ----------------------------------------------------------------------------- History


@dataclass
class History:
    """Per-epoch metrics, Keras style: ``history.history["loss"]``, ``["val_accuracy"]``, ...

    ``loss`` is the mean training loss over the epoch's batches; ``val_*`` is measured after the epoch.
    """

    epochs: list[int]
    history: dict[str, list[float]]
    elapsed_s: list[float]
    steps_per_epoch: int
    result: Any = field(default=None, repr=False)
    """The trainer's ``TrainResult`` (step, stop reason, raw log rows)."""

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def plot(self, path: str | os.PathLike[str] = "history.png", title: str | None = None) -> Path:
        """Loss (and accuracy, when measured) per epoch as a PNG; returns the path."""
        from zeroforge.eval.plots import plot_training_curves

        rows = [
            {"step": epoch, **{k: v[i] for k, v in self.history.items()}}
            for i, epoch in enumerate(self.epochs)
        ]
        return plot_training_curves(rows, path, title=title or "fit (x axis: epoch)")


def _history(result: Any, steps_per_epoch: int) -> History:
    epochs, elapsed, history = [], [], {}
    rows = [r for r in result.history if r["step"] % steps_per_epoch == 0 or r["step"] == result.step]
    for row in rows:
        epochs.append(math.ceil(row["step"] / steps_per_epoch))
        elapsed.append(float(row["elapsed_s"]))
        for key, value in row.items():
            if key in ("step", "elapsed_s", "lr") or key.endswith("_per_s") or value is None:
                continue
            name = key[len("train_") :] if key.startswith("train_") else key
            history.setdefault(name, []).append(float(value))
    return History(epochs, history, elapsed, steps_per_epoch, result)


# ----------------------------------------------------------------------------- fit / predict / evaluate


def fit(
    model: nn.Module,
    x: Any,
    y: Any = None,
    *,
    val: Any = None,
    loss: LossName | Callable[..., torch.Tensor] | None = None,
    optimizer: str = "adam",
    epochs: int = 10,
    batch_size: int | None = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    schedule: str = "constant",
    augment: Transform | None = None,
    shuffle: bool = True,
    seed: int = 0,
    val_batch_size: int = 1024,
    device: str = "auto",
    precision: str = "fp32",
    threads: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> History:
    """Train ``model`` in place on (x, y) for ``epochs`` epochs; returns the per-epoch History.

    x, y: numpy arrays, tensors or lists (x (N, ...), y (N,) or (N, k)); or x a map-style Dataset of
    (x, y) items. val: (x_val, y_val) or a Dataset, evaluated after every epoch. loss: ``mse``,
    ``cross_entropy``, ``bce``, ``hinge`` or a callable(logits, labels); None uses a zeroforge model's
    own loss (``mse`` for other modules). optimizer: ``adam``, ``adamw`` or ``sgd`` (with ``momentum``).
    batch_size: None = full-batch gradient descent, 1 = stochastic gradient descent.
    augment: a function applied to each training batch's input tensor (see ``zeroforge.data.images``).
    """
    from zeroforge.train.loop import train
    from zeroforge.train.runtime import resolve_device

    if epochs < 1:
        raise ConfigError(f"epochs: must be >= 1, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1 or None (full batch), got {batch_size}")
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"optimizer: expected adam, adamw or sgd, got {optimizer!r}")
    xt, yt = as_arrays(x, y)
    if yt is None:
        raise DataError("y: fit needs labels (pass y, or a Dataset of (x, y) items)")
    _check_scaled(xt)
    trained, key = _prepare_model(model, loss)
    if run_dir is not None and trained is not model:
        raise ConfigError(
            "run_dir: checkpoints need a zeroforge model (create_model) trained on its own loss"
        )
    dev = resolve_device(device)
    trained.to(dev)
    _probe(trained, key, xt, yt, dev)

    source = ArrayBatches({key: xt, "labels": yt}, batch_size or len(xt), shuffle, seed, augment, key)
    val_batches = None
    if val is not None:
        xv, yv = _val_pair(val)
        if yv is None:
            raise DataError("val: needs labels")
        _probe(trained, key, xv, yv, dev)
        val_batches = list(iterate_batches({key: xv, "labels": yv}, val_batch_size))
    spe = source.steps_per_epoch
    args = TrainArgs(
        name="fit",
        max_steps=epochs * spe,
        batch_size=source.batch_size,
        optimizer=optimizer,  # type: ignore[arg-type]
        lr=lr,
        min_lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        schedule=schedule,  # type: ignore[arg-type]
        grad_clip=0.0,
        precision=precision,  # type: ignore[arg-type]
        eval_every=spe,
        log_every=spe,
        seed=seed,
        device=str(dev),
        threads=threads,
        progress=verbose,
    )
    if schedule != "constant":
        args.min_lr = None  # cosine/linear decay to lr / 10
    result = train(trained, source, args, val_batches=val_batches, run_dir=run_dir)
    return _history(result, spe)


def _restore_type(out: torch.Tensor, like: Any) -> np.ndarray | torch.Tensor:
    return out if isinstance(like, torch.Tensor | torch.utils.data.Dataset) else out.numpy()


@torch.no_grad()
def predict(
    model: nn.Module, x: Any, *, batch_size: int = 256, device: str | None = None
) -> np.ndarray | torch.Tensor:
    """The model's outputs (logits) for every sample of x, batch by batch in eval mode.

    numpy in -> numpy out; a tensor or Dataset in -> a CPU tensor out.
    """
    xt, _ = as_arrays(x)
    run, key = _prepare_model(model, None if accepts_labels(model) else "mse")
    dev = torch.device(device) if device else next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    run.eval()
    try:
        outs = [
            run(**{key: b[key].to(dev)}).logits.float().cpu() for b in iterate_batches({key: xt}, batch_size)
        ]
    finally:
        run.train(was_training)
    return _restore_type(torch.cat(outs), x)


@torch.no_grad()
def evaluate_arrays(
    model: nn.Module,
    x: Any,
    y: Any = None,
    *,
    loss: LossName | Callable[..., torch.Tensor] | None = None,
    batch_size: int = 1024,
    device: str | None = None,
) -> dict[str, float]:
    """Mean loss and metrics (``accuracy`` for classification) over every sample of (x, y), each sample
    weighted equally (a smaller last batch counts for its size). ``x`` may also be an (x, y) pair or a
    Dataset of (x, y) items."""
    if y is None and isinstance(x, tuple) and len(x) == 2:
        x, y = x
    xt, yt = as_arrays(x, y)
    if yt is None:
        raise DataError("y: evaluation needs labels")
    run, key = _prepare_model(model, loss)
    dev = torch.device(device) if device else next(model.parameters(), torch.empty(0)).device
    _probe(run, key, xt, yt, dev)
    was_training = model.training
    run.eval()
    sums: dict[str, list[float]] = {}
    try:
        for batch in iterate_batches({key: xt, "labels": yt}, batch_size):
            out = run(**{k: v.to(dev) for k, v in batch.items()})
            n = len(batch["labels"])
            _add(sums, "loss", float(out.loss) * n, n)
            for name, value in out.metrics.items():
                num, den = value if isinstance(value, tuple) else (float(value) * n, n)
                _add(sums, name, float(num), float(den))
    finally:
        run.train(was_training)
    return {name: num / den for name, (num, den) in sums.items()}


def _add(sums: dict[str, list[float]], name: str, num: float, den: float) -> None:
    acc = sums.setdefault(name, [0.0, 0.0])
    acc[0] += num
    acc[1] += den


__all__ = [
    "ArrayBatches",
    "History",
    "WithLoss",
    "as_arrays",
    "evaluate_arrays",
    "fit",
    "predict",
]
