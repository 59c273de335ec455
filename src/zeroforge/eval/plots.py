"""PNG figures for a run: training curves from metrics.csv, a confusion matrix, and curves compared.

Figures are built on an explicit Agg canvas (``FigureCanvasAgg``) rather than through pyplot, so they
render headless, never touch the global backend of a notebook that imports zeroforge, and leave no
open figures behind. Each file is written atomically (temp file in the same folder, then rename), so a
plot a dashboard is watching is never half-written.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.io import atomic_write_bytes

if TYPE_CHECKING:  # matplotlib is imported inside the functions that draw
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Value = int | float | str | None

# a column is plotted on the accuracy panel when one of its "_"-separated words is one of these
_SCORE_WORDS = {"acc", "accuracy", "f1", "precision", "recall", "auc"}


# ----------------------------------------------------------------------------- metrics.csv


def _parse(text: str) -> Value:
    """'' -> None, '12' -> 12, '0.5' / 'nan' / '1e-3' -> float, anything else stays a string."""
    text = text.strip()
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, Value]]:
    """Rows of a metrics.csv as dicts, numbers parsed to int/float and blank cells to None."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty metrics file, expected a header row")
        # a short row gives None for its missing cells, which means "no value" as a blank does
        return [{k: _parse(v) if isinstance(v, str) else None for k, v in row.items()} for row in reader]


def _number(value: Any) -> float | None:
    """A float for plotting, or None for a blank/None/non-numeric/nan cell (drawn as a gap)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = _parse(value)
        if not isinstance(value, int | float):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _points(rows: Sequence[dict[str, Any]], x_key: str | None, y_key: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of the rows that have a y value (and an x value); the row index when x_key is None."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        x = float(i) if x_key is None else _number(row.get(x_key))
        y = _number(row.get(y_key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


# ----------------------------------------------------------------------------- drawing helpers


def _new_figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: Agg rendering without pyplot's global backend
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Render to memory, then write atomically; the format follows the suffix (.png when none)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _draw(ax: Axes, xs: list[float], ys: list[float], label: str) -> None:
    # a marker keeps sparse series (val loss every eval_interval, a single point) visible
    marker = "o" if len(xs) < 50 else None
    ax.plot(xs, ys, label=label, marker=marker, markersize=3)


# ----------------------------------------------------------------------------- public plots


def _training_curves_figure(rows: Sequence[dict[str, Any]], title: str | None) -> Figure:
    if not rows:
        raise ZeroforgeError("plot_training_curves: no metric rows to plot")
    columns = list(dict.fromkeys(k for row in rows for k in row))  # every column, first-seen order
    x_key = "step" if "step" in columns else None
    loss_cols = [c for c in columns if c.split("_")[-1] == "loss"]  # train_loss, val_loss, mlm_loss, ...
    score_cols = [c for c in columns if _SCORE_WORDS & set(c.lower().split("_"))]
    loss_series = {c: _points(rows, x_key, c) for c in loss_cols}
    score_series = {c: _points(rows, x_key, c) for c in score_cols}
    loss_series = {c: xy for c, xy in loss_series.items() if xy[0]}
    score_series = {c: xy for c, xy in score_series.items() if xy[0]}
    if not loss_series and not score_series:
        raise ZeroforgeError(f"plot_training_curves: no loss or accuracy values in columns {columns}")

    panels = [(name, s) for name, s in (("loss", loss_series), ("accuracy", score_series)) if s]
    fig, axes = _new_figure(6.0 * len(panels), 4.0, len(panels))
    for ax, (ylabel, series) in zip(axes, panels):
        for name, (xs, ys) in series.items():
            _draw(ax, xs, ys, name)
        ax.set_xlabel("step" if x_key else "row")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_training_curves(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Loss vs step (every ``*_loss`` column: train, val, ...) and, when present, a second panel
    with the accuracy-like columns (``mlm_accuracy``, ``val_f1``, ...). Blank/None cells are skipped,
    so a val loss logged every N steps draws as its own sparse curve. Returns ``path``."""
    return _save(_training_curves_figure(rows, title), path)


def _confusion_figure(cm: Any, labels: Sequence[str], normalize: bool, title: str | None) -> Figure:
    counts = np.asarray(cm.detach().cpu().numpy() if hasattr(cm, "detach") else cm)
    k = len(labels)
    if counts.shape != (k, k):
        raise ZeroforgeError(f"plot_confusion_matrix: matrix shape {counts.shape} does not match {k} labels")
    values = counts.astype(np.float64)
    if normalize:
        # each row divided by its true count: the diagonal becomes per-class recall; empty rows stay 0
        row_sums = values.sum(axis=1, keepdims=True)
        values = np.divide(values, row_sums, out=np.zeros_like(values), where=row_sums > 0)

    side = min(max(4.0, 0.6 * k + 2.0), 20.0)
    fig, (ax,) = _new_figure(side, side)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(
        range(k),
        labels=[str(n) for n in labels],
        rotation=45 if k > 5 else 0,
        ha="right" if k > 5 else "center",
    )
    ax.set_yticks(range(k), labels=[str(n) for n in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:  # beyond that the numbers are unreadable; the colours still show the pattern
        threshold = values.max() / 2.0 if values.max() > 0 else 1.0
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                colour = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(title or ("confusion matrix (row-normalized)" if normalize else "confusion matrix"))
    return fig


def plot_confusion_matrix(
    cm: Any,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    normalize: bool = False,
    title: str | None = None,
) -> Path:
    """Heatmap of a (K, K) confusion matrix (rows true, columns predicted) with the count in each
    cell, or with each row's fractions when ``normalize``. ``cm`` may be a numpy array or tensor."""
    return _save(_confusion_figure(cm, labels, normalize, title), path)


def _series_figure(
    series: dict[str, tuple[Sequence[Any], Sequence[Any]]],
    xlabel: str,
    ylabel: str,
    title: str | None,
    logy: bool,
) -> Figure:
    if not series:
        raise ZeroforgeError("plot_series: no series to plot")
    fig, (ax,) = _new_figure(6.5, 4.0)
    for name, (xs, ys) in series.items():
        if len(xs) != len(ys):
            raise ZeroforgeError(
                f"plot_series: series {name!r} has {len(xs)} x values but {len(ys)} y values"
            )
        pairs = [
            (x, y) for x, y in zip(map(_number, xs), map(_number, ys)) if x is not None and y is not None
        ]
        _draw(ax, [x for x, _ in pairs], [y for _, y in pairs], name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_series(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike[str],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logy: bool = False,
) -> Path:
    """Several named (xs, ys) curves on one axes, e.g. validation loss vs wall time for LSTM vs GPT.
    Points with a missing (None/blank/nan) x or y are skipped."""
    return _save(_series_figure(series, xlabel, ylabel, title, logy), path)
