"""Classification and language-model metrics, written out with their formulas.

Everything here follows scikit-learn's conventions exactly (the tests compare against it), without
needing scikit-learn at run time:

- labels may be ints, integral floats, bools or strings; the label set is the sorted union of
  ``y_true`` and ``y_pred`` (plus any ``labels=`` you pass, in your order);
- a confusion matrix has rows = true class, columns = predicted class;
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2·TP / (2·TP + FP + FN);
  a 0/0 takes the value ``zero_division`` (0.0, 1.0 or nan) instead of a warning.

Per-class counts come from ``np.bincount`` in O(N + K), so P/R/F1 over a 50k-token vocabulary is cheap;
only :func:`confusion_matrix` and :class:`ConfusionAccumulator` build the K×K matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from zeroforge.errors import ZeroforgeError

Labels = Sequence[Any] | np.ndarray | torch.Tensor
Average = Literal["macro", "micro", "weighted", "binary"] | None
_AVERAGES = (None, "macro", "micro", "weighted", "binary")


class PRF(NamedTuple):
    """Unpacks like sklearn's ``precision_recall_fscore_support``: arrays per class, or floats."""

    precision: np.ndarray | float
    recall: np.ndarray | float
    f1: np.ndarray | float
    support: np.ndarray | None  # true count per class; None once averaged (as in sklearn)


# ----------------------------------------------------------------------------- input handling


def _as_labels(y: Labels, name: str) -> np.ndarray:
    """A 1-D numpy array of int64 or str labels; anything else is a one-line ZeroforgeError."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ZeroforgeError(f"{name}: expected a 1-D sequence of labels, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ZeroforgeError(f"{name}: empty; need at least one label")
    kind = arr.dtype.kind
    if kind in "biu":
        return arr.astype(np.int64)
    if kind == "f":
        # 1.0 and 1 are the same class (sklearn agrees); 0.5 is a regression target, not a label
        if not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise ZeroforgeError(
                f"{name}: float labels must be whole numbers (a regression target is not a label)"
            )
        return arr.astype(np.int64)
    if kind in "US":
        return arr.astype(str)
    if kind == "O" and all(isinstance(v, str) for v in arr):
        return arr.astype(str)
    raise ZeroforgeError(f"{name}: expected integer or string labels, got dtype {arr.dtype}")


def _pair(y_true: Labels, y_pred: Labels) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ZeroforgeError(f"y_true and y_pred differ in length: {len(t)} vs {len(p)}")
    if (t.dtype.kind == "U") != (p.dtype.kind == "U"):
        raise ZeroforgeError("y_true and y_pred mix string and integer labels; use one kind for both")
    return t, p


def _label_set(t: np.ndarray, p: np.ndarray, labels: Labels | None) -> tuple[np.ndarray, int]:
    """(all labels, n selected): the chosen labels first, in the caller's order, then any other label
    seen in the data (sorted), so per-class counts are exact even for labels left out of ``labels``."""
    present = np.union1d(t, p)  # sorted unique
    if labels is None:
        return present, len(present)
    chosen = _as_labels(labels, "labels")
    if (chosen.dtype.kind == "U") != (present.dtype.kind == "U"):
        raise ZeroforgeError("labels: mixes string and integer labels with y_true/y_pred")
    if len(np.unique(chosen)) != len(chosen):
        raise ZeroforgeError(f"labels: contains duplicates: {chosen.tolist()}")
    rest = np.setdiff1d(present, chosen)
    return np.concatenate([chosen, rest]), len(chosen)


def _encode(y: np.ndarray, all_labels: np.ndarray) -> np.ndarray:
    """Index of each label in ``all_labels`` (every value of y is known to be in there)."""
    order = np.argsort(all_labels, kind="stable")
    return order[np.searchsorted(all_labels[order], y)]


def _class_counts(t: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TP, predicted count, true count) per class index, shape (k,) each."""
    tp = np.bincount(t[t == p], minlength=k)
    pred_sum = np.bincount(p, minlength=k)
    true_sum = np.bincount(t, minlength=k)
    return tp, pred_sum, true_sum


def _check_zero_division(zero_division: float) -> float:
    if isinstance(zero_division, int | float) and (zero_division in (0, 1) or math.isnan(zero_division)):
        return float(zero_division)
    raise ZeroforgeError(f"zero_division: expected 0.0, 1.0 or nan, got {zero_division!r}")


# ----------------------------------------------------------------------------- the metrics


def accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Fraction of exact matches: (1/N) Σ 1[y_true_i == y_pred_i]."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Labels, y_pred: Labels, labels: Labels | None = None) -> np.ndarray:
    """(K, K) int64 counts, C[i, j] = #samples of true class i predicted as class j.

    Classes are ``labels`` in that order, else the sorted union of y_true and y_pred. Samples whose
    true or predicted label is not in ``labels`` are left out, as in sklearn.
    """
    t, p = _pair(y_true, y_pred)
    all_labels, n = _label_set(t, p, labels)
    k = len(all_labels)
    ti, pi = _encode(t, all_labels), _encode(p, all_labels)
    # one bincount over the flattened index true*K + pred fills the whole matrix
    cm = np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)
    return cm[:n, :n]


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    """num / den elementwise, with 0/0 (den == 0 means num == 0 here) set to ``zero_division``."""
    out = num / np.where(den == 0, 1, den).astype(np.float64)
    out[den == 0] = zero_division
    return out


def _nanaverage(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean (weighted if given) over the non-nan entries; nan if all are nan; unweighted if all
    remaining weights are 0 (sklearn's rule for 'weighted' when no class has true samples)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None or weights[keep].sum() == 0:
        return float(np.mean(values[keep]))
    return float(np.average(values[keep], weights=weights[keep]))


def _scores(
    tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray, average: Average, zero_division: float
) -> PRF:
    """P/R/F1 from per-class counts of the selected classes, then the requested average."""
    if average == "micro":
        # micro: pool the counts over classes first, then one ratio
        tp, pred_sum, true_sum = (
            tp.sum(keepdims=True),
            pred_sum.sum(keepdims=True),
            true_sum.sum(keepdims=True),
        )
    precision = _divide(tp, pred_sum, zero_division)  # TP / (TP + FP)
    recall = _divide(tp, true_sum, zero_division)  # TP / (TP + FN)
    # F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN) = 2TP / (true + pred); the count form stays defined
    # when P or R alone is 0/0 (a class never predicted gets F1 = 0, not zero_division)
    f1 = _divide(2 * tp, true_sum + pred_sum, zero_division)
    if average is None:
        return PRF(precision, recall, f1, true_sum)
    weights = true_sum if average == "weighted" else None
    return PRF(_nanaverage(precision, weights), _nanaverage(recall, weights), _nanaverage(f1, weights), None)


def precision_recall_f1(
    y_true: Labels,
    y_pred: Labels,
    average: Average = None,
    labels: Labels | None = None,
    pos_label: int | str = 1,
    zero_division: float = 0.0,
) -> PRF:
    """Precision, recall, F1 and support, as sklearn's ``precision_recall_fscore_support``.

    average=None: arrays of shape (K,) in label order (``labels`` or the sorted union), plus support.
    "macro": unweighted mean over classes. "weighted": mean weighted by support (true count).
    "micro": pool TP/FP/FN over classes (equals accuracy when every class is included).
    "binary": the scores of ``pos_label`` only; needs at most two classes in y_true ∪ y_pred.
    A class listed in ``labels`` but absent from both inputs scores ``zero_division``.
    """
    if average not in _AVERAGES:
        raise ZeroforgeError(
            f"average: expected one of None, 'macro', 'micro', 'weighted', 'binary', got {average!r}"
        )
    zero_division = _check_zero_division(zero_division)
    t, p = _pair(y_true, y_pred)
    if average == "binary":
        present = np.union1d(t, p)
        if len(present) > 2:
            raise ZeroforgeError(
                f"average='binary' needs at most two classes, got {len(present)}; use 'macro', 'micro' or 'weighted'"
            )
        same_kind = isinstance(pos_label, str) == (present.dtype.kind == "U")
        if pos_label not in present.tolist() and (len(present) == 2 or not same_kind):
            raise ZeroforgeError(
                f"pos_label={pos_label!r} is not a label; expected one of {present.tolist()}"
            )
        labels = [pos_label]
    all_labels, n = _label_set(t, p, labels)
    tp, pred_sum, true_sum = _class_counts(_encode(t, all_labels), _encode(p, all_labels), len(all_labels))
    return _scores(tp[:n], pred_sum[:n], true_sum[:n], average, zero_division)


# ----------------------------------------------------------------------------- reports


def _report_from_counts(
    names: Sequence[str], tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray, zero_division: float
) -> dict[str, Any]:
    per_class = _scores(tp, pred_sum, true_sum, None, zero_division)
    total = int(true_sum.sum())
    report: dict[str, Any] = {"classes": {}}
    for i, name in enumerate(names):
        report["classes"][name] = {
            "precision": float(per_class.precision[i]),
            "recall": float(per_class.recall[i]),
            "f1": float(per_class.f1[i]),
            "support": int(true_sum[i]),
        }
    report["accuracy"] = float(tp.sum() / total)  # every class is included, so micro-F1 == accuracy
    for average in ("macro", "weighted"):
        scores = _scores(tp, pred_sum, true_sum, average, zero_division)  # type: ignore[arg-type]
        report[average] = {
            "precision": scores.precision,
            "recall": scores.recall,
            "f1": scores.f1,
            "support": total,
        }
    return report


def classification_report(
    y_true: Labels, y_pred: Labels, label_names: Sequence[str] | None = None, zero_division: float = 0.0
) -> dict[str, Any]:
    """Per-class precision/recall/F1/support plus accuracy and the macro and weighted averages.

    Returns ``{"classes": {name: {"precision", "recall", "f1", "support"}}, "accuracy": float,
    "macro": {...}, "weighted": {...}}`` (the per-class entries sit under "classes" so a class called
    "accuracy" cannot collide with the summary). With ``label_names``, labels must be the integers
    0..len(label_names)-1 and every class is listed, even one absent from this data; without it the
    classes are the sorted union of y_true and y_pred, named ``str(label)``.
    """
    zero_division = _check_zero_division(zero_division)
    t, p = _pair(y_true, y_pred)
    if label_names is None:
        all_labels, _ = _label_set(t, p, None)
        names = [str(v) for v in all_labels.tolist()]
    else:
        k = len(label_names)
        if t.dtype.kind == "U" or min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k:
            raise ZeroforgeError(f"label_names: names {k} classes, so labels must be integers in [0, {k})")
        all_labels, names = np.arange(k), [str(n) for n in label_names]
    tp, pred_sum, true_sum = _class_counts(_encode(t, all_labels), _encode(p, all_labels), len(all_labels))
    return _report_from_counts(names, tp, pred_sum, true_sum, zero_division)


def format_report(report: dict[str, Any], digits: int = 3) -> str:
    """A fixed-width text table of a :func:`classification_report` result (sklearn's layout)."""
    names = list(report["classes"])
    width = max([len(n) for n in names] + [len("weighted")])
    col = max(digits + 4, 9)
    head = f"{'':<{width}}" + "".join(f"{h:>{col}}" for h in ("precision", "recall", "f1", "support"))
    lines = [head, ""]

    def row(name: str, r: dict[str, Any]) -> str:
        nums = "".join(f"{r[m]:>{col}.{digits}f}" for m in ("precision", "recall", "f1"))
        return f"{name:<{width}}{nums}{r['support']:>{col}d}"

    lines += [row(n, report["classes"][n]) for n in names]
    lines.append("")
    total = report["macro"]["support"]
    lines.append(f"{'accuracy':<{width}}{'':>{2 * col}}{report['accuracy']:>{col}.{digits}f}{total:>{col}d}")
    lines += [row("macro", report["macro"]), row("weighted", report["weighted"])]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- streaming


class ConfusionAccumulator:
    """Sums a (K, K) confusion matrix over batches, so evaluation keeps counts, not predictions.

    ``update(pred, target)`` takes class ids of the same shape as ``target``, or scores/logits with one
    more trailing dimension of size K (argmax is taken). Targets equal to ``ignore_index`` (the -100
    of padded or unmasked tokens) are skipped. Under DDP, ``dist.all_reduce(acc.matrix)`` before
    ``compute()`` gives the global report. ``matrix`` stays on the CPU: K² int64 counts.
    """

    def __init__(
        self, num_classes: int, label_names: Sequence[str] | None = None, ignore_index: int | None = -100
    ):
        if num_classes < 1:
            raise ZeroforgeError(f"num_classes: expected >= 1, got {num_classes}")
        if label_names is not None and len(label_names) != num_classes:
            raise ZeroforgeError(f"label_names: expected {num_classes} names, got {len(label_names)}")
        self.num_classes = num_classes
        self.label_names = [str(n) for n in label_names] if label_names is not None else None
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # (true, pred)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor | np.ndarray | Sequence[int],
        target: torch.Tensor | np.ndarray | Sequence[int],
    ) -> None:
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        k = self.num_classes
        if pred.dim() == target.dim() + 1:
            if pred.shape[-1] != k:
                raise ZeroforgeError(f"pred: last dimension is {pred.shape[-1]}, expected num_classes={k}")
            pred = pred.argmax(dim=-1)  # (...,)
        if pred.shape != target.shape:
            raise ZeroforgeError(
                f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}"
            )
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long().to(pred.device)  # (N,)
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        if target.numel() == 0:
            return
        lo, hi = torch.aminmax(torch.cat([pred, target]))
        if lo.item() < 0 or hi.item() >= k:
            raise ZeroforgeError(f"class ids must be in [0, {k}), got values in [{lo.item()}, {hi.item()}]")
        # flattened (true, pred) index, as in confusion_matrix
        counts = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)  # (K, K)
        self.matrix += counts.cpu()

    def confusion_matrix(self) -> np.ndarray:
        return self.matrix.numpy().copy()

    def compute(self, zero_division: float = 0.0) -> dict[str, Any]:
        """The same dict as :func:`classification_report` over every sample seen so far."""
        cm = self.matrix.numpy()
        if cm.sum() == 0:
            raise ZeroforgeError("ConfusionAccumulator: no samples yet; call update() first")
        names = self.label_names or [str(i) for i in range(self.num_classes)]
        # TP is the diagonal; column sums count predictions, row sums count true samples
        return _report_from_counts(
            names, np.diag(cm), cm.sum(axis=0), cm.sum(axis=1), _check_zero_division(zero_division)
        )


# ----------------------------------------------------------------------------- scores and LM metrics


def roc_auc(y_true: Labels, scores: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """Area under the ROC curve for a binary task; the larger of the two labels is positive.

    Mann–Whitney form: AUC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋), where R₊ is the sum of the positives'
    ranks among all scores and tied scores share their average rank, so a positive/negative tie
    counts 1/2 — the same value as sklearn's trapezoidal ``roc_auc_score``.
    """
    t = _as_labels(y_true, "y_true")
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) != len(t):
        raise ZeroforgeError(f"scores: expected shape ({len(t)},) to match y_true, got {tuple(s.shape)}")
    if not np.all(np.isfinite(s)):
        raise ZeroforgeError("scores: contains nan or inf")
    classes = np.unique(t)
    if len(classes) != 2:
        raise ZeroforgeError(
            f"roc_auc needs exactly two classes in y_true, got {len(classes)}: {classes.tolist()[:5]}"
        )
    positive = t == classes[1]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    # average ranks (1-based) with ties: every member of a run of equal scores gets the run's mean rank
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    run_start = np.r_[True, sorted_s[1:] != sorted_s[:-1]]  # (N,) first element of each tie run
    run_id = np.cumsum(run_start) - 1
    starts = np.flatnonzero(run_start)
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(s))
    ranks[order] = mean_rank[run_id]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def perplexity(mean_loss: float | torch.Tensor) -> float:
    """exp(mean token cross-entropy in nats); inf instead of OverflowError when the loss is huge."""
    loss = float(mean_loss)
    try:
        return math.exp(loss)
    except OverflowError:  # loss > ~709.78, beyond float64
        return math.inf
