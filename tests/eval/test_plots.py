"""Plots: valid PNGs written atomically, the right data on the axes, metrics.csv parsed back."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.eval.plots import (
    _confusion_figure,
    _training_curves_figure,
    plot_confusion_matrix,
    plot_series,
    plot_training_curves,
    read_metrics_csv,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_only_png(path: Path) -> tuple[int, int]:
    """The file is a PNG with nonzero size, nothing else (no temp file) is in its folder; returns (w, h)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return width, height


def metric_rows() -> list[dict]:
    rows = []
    for step in range(0, 100, 10):
        rows.append(
            {
                "step": step,
                "train_loss": 3.0 - step / 50,
                # val every 30 steps: blanks in between, as metrics.csv stores them
                "val_loss": 2.9 - step / 60 if step % 30 == 0 else "",
                "lr": 3e-4,
                "tokens_per_s": 1000.0,
                "elapsed_s": step / 10,
                "mlm_accuracy": step / 200 if step != 40 else None,
            }
        )
    return rows


def test_training_curves_png_and_panels(tmp_path: Path) -> None:
    rows = metric_rows()
    out = plot_training_curves(rows, tmp_path / "plots" / "curves.png", title="run")
    assert out == tmp_path / "plots" / "curves.png"
    width, height = assert_only_png(out)
    assert width > height  # two panels side by side

    fig = _training_curves_figure(rows, None)
    loss_ax, score_ax = fig.axes
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert set(lines) == {"train_loss", "val_loss"}  # lr / throughput are not losses
    np.testing.assert_array_equal(lines["val_loss"].get_xdata(), [0, 30, 60, 90])  # blanks skipped
    np.testing.assert_allclose(lines["val_loss"].get_ydata(), [2.9 - s / 60 for s in (0, 30, 60, 90)])
    (acc_line,) = score_ax.get_lines()
    assert acc_line.get_label() == "mlm_accuracy"
    assert 40 not in acc_line.get_xdata() and len(acc_line.get_xdata()) == 9


def test_training_curves_loss_only_and_errors(tmp_path: Path) -> None:
    rows = [
        {"step": 1, "train_loss": 2.0, "val_loss": None},
        {"step": 2, "train_loss": 1.5, "val_loss": None},
    ]
    assert len(_training_curves_figure(rows, None).axes) == 1
    assert_only_png(plot_training_curves(rows, tmp_path / "loss.png"))
    with pytest.raises(ZeroforgeError, match="no metric rows"):
        plot_training_curves([], tmp_path / "x.png")
    with pytest.raises(ZeroforgeError, match="no loss or accuracy"):
        plot_training_curves([{"step": 1, "lr": 0.1}], tmp_path / "x.png")


def test_read_metrics_csv_round_trip(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "step,train_loss,val_loss,lr,note\n10,2.5,,0.0003,warmup\n20,2.25,2.0,3e-4,\n30,nan,1.5,1e-4\n",
        encoding="utf-8",
    )
    rows = read_metrics_csv(csv_path)
    assert rows[0] == {"step": 10, "train_loss": 2.5, "val_loss": None, "lr": 3e-4, "note": "warmup"}
    assert rows[1] == {"step": 20, "train_loss": 2.25, "val_loss": 2.0, "lr": 3e-4, "note": None}
    assert isinstance(rows[0]["step"], int)
    assert np.isnan(rows[2]["train_loss"]) and rows[2]["note"] is None  # short row: missing cell is None
    fig = _training_curves_figure(rows, None)
    train = next(line for line in fig.axes[0].get_lines() if line.get_label() == "train_loss")
    np.testing.assert_array_equal(train.get_xdata(), [10, 20])  # the nan loss is a gap
    with pytest.raises(DataError, match="not found"):
        read_metrics_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_png_and_cell_text(tmp_path: Path, normalize: bool) -> None:
    cm = torch.tensor([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # a tensor, with an empty row
    out = plot_confusion_matrix(cm, ["cat", "dog", "eel"], tmp_path / "cm.png", normalize=normalize)
    assert_only_png(out)
    fig = _confusion_figure(cm, ["cat", "dog", "eel"], normalize, None)
    texts = [t.get_text() for t in fig.axes[0].texts]
    if normalize:
        assert texts[:3] == ["0.83", "0.17", "0.00"] and texts[-3:] == ["0.00", "0.00", "0.00"]
    else:
        assert texts == ["5", "1", "0", "2", "7", "1", "0", "0", "0"]
    with pytest.raises(ZeroforgeError, match="does not match"):
        plot_confusion_matrix(cm, ["cat", "dog"], tmp_path / "bad.png")


def test_series_with_gaps(tmp_path: Path) -> None:
    series = {
        "lstm": ([0.0, 1.0, 2.0, 3.0], [3.0, 2.5, None, 2.0]),
        "gpt": ([0.0, 1.5, 3.0], [3.0, 1.8, 1.2]),
    }
    out = plot_series(
        series, tmp_path / "compare.png", "wall time (s)", "val loss", title="LSTM vs GPT", logy=True
    )
    assert_only_png(out)
    with pytest.raises(ZeroforgeError, match="x values"):
        plot_series({"a": ([1, 2], [1])}, tmp_path / "bad.png", "x", "y")


def test_failed_save_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "curves.png"
    target.mkdir()  # a folder in the way: the rename fails
    with pytest.raises(OSError):
        plot_training_curves(metric_rows(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
