"""The classic losses, written out as formulas (the tests compare each with torch / scikit-learn).

  mse             (1/N) Σ (ŷ_i - y_i)²
  cross_entropy   -(1/N) Σ log softmax(z_i)[y_i],   log softmax(z)_k = z_k - log Σ_j e^{z_j}
  bce             -(1/N) Σ [y_i log σ(z_i) + (1 - y_i) log(1 - σ(z_i))]   (from logits z)
  hinge           binary: (1/N) Σ max(0, 1 - t_i z_i) with t_i ∈ {-1, +1}
                  multiclass: (1/N) Σ_i (1/C) Σ_{j≠y_i} max(0, 1 - z_{i,y_i} + z_{i,j})  (Weston & Watkins)

Every loss takes raw scores (logits), never probabilities: the log-sum-exp and log σ forms below are
the numerically safe ones. Labels that cannot be right (a class out of range, a binary target of 3)
raise a DataError naming the problem instead of an index error deep inside torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from zeroforge.errors import ConfigError, DataError

# The label that contributes no loss (PyTorch's ``F.cross_entropy`` default ``ignore_index``): prompt
# tokens in SFT, unmasked tokens in MLM, padding.
IGNORE_INDEX = -100

LossName = Literal["mse", "cross_entropy", "bce", "hinge"]
LOSSES: tuple[str, ...] = get_args(LossName)
CLASSIFICATION_LOSSES = ("cross_entropy", "bce", "hinge")


def check_class_labels(labels: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> None:
    """DataError unless every label is an integer class id in [0, num_classes) (or ``ignore_index``)."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"labels: expected integer class ids, got dtype {labels.dtype}")
    if labels.numel() == 0:
        return
    valid = labels if ignore_index is None else labels[labels != ignore_index]
    if valid.numel() == 0:
        return
    low, high = int(valid.min()), int(valid.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(
            f"labels: class {bad} is out of range for {num_classes} classes (expected 0..{num_classes - 1})"
        )


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits are upcast (exp/log lose too much in 16 bits); fp32 and fp64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; ``pred`` and ``target`` must have the same number of elements per sample."""
    if pred.shape != target.shape:
        if pred.numel() != target.numel():
            raise DataError(
                f"labels: shape {tuple(target.shape)} does not match predictions {tuple(pred.shape)}"
            )
        target = target.reshape(pred.shape)
    return ((pred - target.to(pred.dtype)) ** 2).mean()


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """z - logsumexp(z), with the max subtracted first so e^z never overflows."""
    z_max = z.amax(dim=dim, keepdim=True).detach()  # a constant shift: it cancels in the value and gradient
    shifted = z - z_max
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-likelihood of the true class. logits (N, C) or (N, T, C); labels (N,) or (N, T)."""
    num_classes = logits.size(-1)
    check_class_labels(labels, num_classes, ignore_index)
    logp = log_softmax(_at_least_fp32(logits.reshape(-1, num_classes)))  # (N*T, C)
    flat = labels.reshape(-1).long()
    keep = flat != ignore_index
    if not bool(keep.any()):
        return logits.sum() * 0.0  # nothing to learn from, but keep the graph
    picked = logp[keep].gather(1, flat[keep, None]).squeeze(1)  # (n,) log p(y_i)
    return -picked.mean()


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE from logits: -[y log σ(z) + (1-y) log(1-σ(z))] = max(z, 0) - z·y + log(1 + e^-|z|).

    targets are probabilities in [0, 1] (usually 0/1 labels), one per logit.
    """
    if targets.numel() != logits.numel():
        raise DataError(
            f"labels: shape {tuple(targets.shape)} does not match predictions {tuple(logits.shape)}"
        )
    z = _at_least_fp32(logits)
    y = targets.reshape(logits.shape).to(z.dtype)
    if y.numel() and (float(y.min()) < 0 or float(y.max()) > 1):
        bad = float(y.min()) if float(y.min()) < 0 else float(y.max())
        raise DataError(
            f"labels: {bad:g} is out of range for binary cross-entropy (expected 0/1 labels or [0, 1])"
        )
    return (z.clamp_min(0.0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()


def hinge(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Hinge loss of an SVM. scores (N,) or (N, 1): binary with labels in {0, 1} or {-1, +1};
    scores (N, C) with C > 1: multiclass with integer labels (torch's ``multi_margin_loss``)."""
    if scores.dim() == 1 or (scores.dim() == 2 and scores.size(1) == 1):
        s = _at_least_fp32(scores.reshape(-1))
        if labels.numel() != s.numel():
            raise DataError(f"labels: {labels.numel()} labels for {s.numel()} predictions")
        t = labels.reshape(-1).to(s.dtype)
        values = set(torch.unique(t).tolist())
        if not values <= {-1.0, 1.0} and not values <= {0.0, 1.0}:
            raise DataError(
                f"labels: binary hinge loss needs labels in {{0, 1}} or {{-1, +1}}, got {sorted(values)}"
            )
        if values <= {0.0, 1.0}:
            t = 2.0 * t - 1.0  # {0, 1} -> {-1, +1}
        return (margin - t * s).clamp_min(0.0).mean()
    num_classes = scores.size(-1)
    check_class_labels(labels, num_classes)
    s = _at_least_fp32(scores)  # (N, C)
    index = labels.reshape(-1, 1).long()  # (N, 1)
    true_score = s.gather(1, index)  # (N, 1) z_{i, y_i}
    margins = (margin - true_score + s).clamp_min(0.0)  # (N, C); the j = y_i column is exactly `margin`
    margins = margins.scatter(1, index, 0.0)  # leave out j = y_i
    return (margins.sum(dim=1) / num_classes).mean()


def get_loss(name: LossName) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function for a name: ``mse``, ``cross_entropy``, ``bce`` or ``hinge``."""
    table: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "mse": mse,
        "cross_entropy": cross_entropy,
        "bce": binary_cross_entropy,
        "hinge": hinge,
    }
    if name not in table:
        raise ConfigError(f"loss: expected one of {', '.join(LOSSES)}, got {name!r}")
    return table[name]


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """Class ids from scores: argmax over C > 1 columns, else 1 where the single logit is > 0."""
    if logits.dim() == 1 or logits.size(-1) == 1:
        return (logits.reshape(logits.shape[0], -1)[:, 0] > 0).long()
    return logits.argmax(dim=-1)


def loss_and_metrics(
    logits: torch.Tensor, labels: torch.Tensor, loss: LossName
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, int]]]:
    """The loss, plus ``accuracy`` as an exact (correct, count) pair for the classification losses."""
    value = get_loss(loss)(logits, labels)
    if loss not in CLASSIFICATION_LOSSES:
        return value, {}
    pred = predicted_classes(logits)  # (N,) or (N, T)
    if logits.dim() == 1 or logits.size(-1) == 1:
        # binary: bce targets are probabilities (> 0.5 is class 1); hinge labels are {0, 1} or {-1, +1}
        truth = labels.reshape(-1) > (0.5 if loss == "bce" else 0.0)
        correct = (pred.reshape(-1).bool() == truth).sum()
        return value, {"accuracy": (correct, truth.numel())}
    keep = labels != -100
    correct = ((pred == labels) & keep).sum()
    return value, {"accuracy": (correct, int(keep.sum()))}


def sequence_loss_and_metrics(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Token-level cross-entropy over (B, T, V) logits, label-smoothed for training (Szegedy et al. 2016:
    the target is (1 - eps) on the label and eps / V everywhere), with the unsmoothed negative
    log-likelihood ``nll`` and ``token_accuracy`` as exact (sum, count) pairs over the non-ignored labels."""
    flat = logits.float().view(-1, logits.size(-1))
    target = labels.reshape(-1)
    loss = F.cross_entropy(flat, target, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
    with torch.no_grad():
        real = labels != IGNORE_INDEX
        nll = F.cross_entropy(flat, target, ignore_index=IGNORE_INDEX, reduction="sum")
        correct = ((logits.argmax(-1) == labels) & real).sum()
    n = real.sum()
    return loss, {"nll": (nll, n), "token_accuracy": (correct, n)}
