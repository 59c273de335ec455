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
    ArrayBatches,
    Transform,
    WithLoss,
    accepts_labels,
    as_arrays,
    iterate_batches,
    prepare_model,
    probe_model,
)
from zeroforge.errors import ConfigError, DataError
from zeroforge.eval.evaluate import evaluate_arrays  # Keras' evaluate, beside fit and predict
from zeroforge.modules.losses import LossName

ArrayLike = np.ndarray | torch.Tensor | list

# ----------------------------------------------------------------------------- inputs


def _val_pair(val: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(val, torch.utils.data.Dataset):
        return as_arrays(val, name="val")
    if isinstance(val, tuple | list) and len(val) == 2:
        return as_arrays(val[0], val[1], name="val")
    raise DataError("val: expected (x_val, y_val) or a Dataset of (x, y) items")


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


def _log_interval(steps_per_epoch: int) -> int:
    """Steps per log row: a divisor of the epoch near a tenth of it, so the windows tile every epoch
    (loss.png gets about ten points an epoch) and an epoch's mean is the mean of its windows."""
    return next(d for d in range(max(1, steps_per_epoch // 10), 0, -1) if steps_per_epoch % d == 0)


def _history(result: Any, steps_per_epoch: int) -> History:
    """Per-epoch metrics from the trainer's log rows: a training metric is the mean over the epoch's
    windows weighted by their steps (the mean over its batches), a validation one is the epoch end's."""
    epochs, elapsed, history = [], [], {}
    by_epoch: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    previous = 0
    for row in result.history:
        by_epoch.setdefault(math.ceil(row["step"] / steps_per_epoch), []).append(
            (row["step"] - previous, row)
        )
        previous = row["step"]
    for epoch, rows in sorted(by_epoch.items()):
        last = rows[-1][1]
        if last["step"] % steps_per_epoch and last["step"] != result.step:
            continue  # an epoch the run did not finish
        epochs.append(epoch)
        elapsed.append(float(last["elapsed_s"]))
        for key, value in last.items():
            if key in ("step", "elapsed_s", "lr") or key.endswith("_per_s") or value is None:
                continue
            if key.startswith("train_"):
                pairs = [(w, float(r[key])) for w, r in rows if r.get(key) is not None]
                value = sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)
                key = key[len("train_") :]
            history.setdefault(key, []).append(float(value))
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
    trained, key = prepare_model(model, loss)
    if run_dir is not None and trained is not model:
        raise ConfigError(
            "run_dir: checkpoints need a zeroforge model (create_model) trained on its own loss"
        )
    dev = resolve_device(device)
    trained.to(dev)
    probe_model(trained, key, xt, yt, dev)

    source = ArrayBatches({key: xt, "labels": yt}, batch_size or len(xt), shuffle, seed, augment, key)
    val_batches = None
    if val is not None:
        xv, yv = _val_pair(val)
        if yv is None:
            raise DataError("val: needs labels")
        probe_model(trained, key, xv, yv, dev)
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
        log_every=_log_interval(spe),
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
    run, key = prepare_model(model, None if accepts_labels(model) else "mse")
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


__all__ = [
    "ArrayBatches",
    "History",
    "WithLoss",
    "as_arrays",
    "evaluate_arrays",
    "fit",
    "predict",
]
