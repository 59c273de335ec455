"""The training loop on a model small enough to reason about exactly (linear regression)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from zeroforge.config import TrainArgs
from zeroforge.models.output import ModelOutput
from zeroforge.train.loop import MetricMeter, train


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        pred = self.linear(features).squeeze(-1)
        loss = None if labels is None else nn.functional.mse_loss(pred, labels)
        hits = ((pred - labels).abs() < 0.1).sum() if labels is not None else 0
        return ModelOutput(logits=pred, loss=loss, metrics={"close": (hits, pred.numel())})


class ArraySource:
    """Sequential batches over fixed arrays (enough to test the loop)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size, self.pos = x, y, batch_size, 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        idx = torch.arange(self.pos, self.pos + self.batch_size) % len(self.x)
        self.pos += self.batch_size
        return {"features": self.x[idx], "labels": self.y[idx]}

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos = state["pos"]


def data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.5, -2.0, 0.5]) + 0.3
    return x, y


def quiet(**kw: Any) -> TrainArgs:
    base = dict(progress=False, log_every=1, eval_every=10, grad_clip=0.0, precision="fp32", weight_decay=0.0)
    return TrainArgs(**{**base, **kw})


def test_loss_falls_and_weights_approach_truth():
    torch.manual_seed(0)
    model = Regression()
    x, y = data()
    result = train(model, ArraySource(x, y, 16), quiet(max_steps=300, lr=0.05, schedule="constant"))
    assert result.history[0]["train_loss"] > 1.0
    assert result.train_loss < 1e-4
    torch.testing.assert_close(
        model.linear.weight.detach()[0], torch.tensor([1.5, -2.0, 0.5]), atol=1e-2, rtol=0
    )


def test_gradient_accumulation_equals_the_large_batch():
    x, y = data(16)
    torch.manual_seed(1)
    a = Regression()
    b = Regression()
    b.load_state_dict(a.state_dict())
    args = dict(max_steps=3, lr=0.1, optimizer="sgd", momentum=0.0, schedule="constant")
    train(a, ArraySource(x, y, 16), quiet(**args, batch_size=16))
    train(b, ArraySource(x, y, 8), quiet(**args, batch_size=8, grad_accum=2))
    torch.testing.assert_close(a.linear.weight, b.linear.weight, atol=1e-6, rtol=0)


def test_validation_metrics_pairs_and_early_stopping():
    torch.manual_seed(0)
    x, y = data()
    val = [
        {"features": x[:32], "labels": y[:32] + 100.0}
    ]  # unreachable targets: val never improves after 1st
    result = train(
        Regression(),
        ArraySource(x, y, 16),
        quiet(max_steps=1000, lr=0.05, eval_every=5, early_stopping_patience=3),
        val_batches=val,
    )
    assert result.stopped_by == "early_stopping"
    assert result.step < 1000
    assert "close" in result.val_metrics and 0.0 <= result.val_metrics["close"] <= 1.0
    assert [r["step"] for r in result.history if "val_loss" in r][:2] == [5, 10]


def test_time_budget_stops_the_run():
    result = train(Regression(), ArraySource(*data(), 16), quiet(max_steps=None, max_minutes=0.002, lr=0.01))
    assert result.stopped_by == "max_minutes"
    assert result.elapsed_s >= 0.12


def test_metric_meter_weights_pairs_exactly():
    meter = MetricMeter()
    meter.add(1.0, {"acc": (torch.tensor(1), 1), "s": 2.0})
    meter.add(3.0, {"acc": (torch.tensor(0), 3), "s": 4.0})
    assert meter.compute() == {"loss": 2.0, "acc": 0.25, "s": 3.0}


def test_model_without_loss_is_a_clear_error():
    from zeroforge.errors import ConfigError

    class NoLabels(ArraySource):
        def next_batch(self):
            return {"features": super().next_batch()["features"]}

    with pytest.raises(ConfigError, match="no loss"):
        train(Regression(), NoLabels(*data(), 4), quiet(max_steps=2))


class DriftingSource(ArraySource):
    """The true targets for the first ``switch`` batches, then shifted ones: validation on the true
    targets improves, then gets worse, so the best step is known to lie near ``switch``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, switch: int) -> None:
        super().__init__(x, y, batch_size)
        self.switch, self.batches = switch, 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        batch = super().next_batch()
        self.batches += 1
        if self.batches > self.switch:
            batch["labels"] = batch["labels"] + 3.0
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos, "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos, self.batches = state["pos"], state["batches"]


def test_early_stopping_on_a_chosen_metric_finds_the_best_step():
    torch.manual_seed(0)
    x, y = data()
    result = train(
        Regression(),
        DriftingSource(x, y, 16, switch=120),
        quiet(
            max_steps=1000,
            lr=0.05,
            schedule="constant",
            eval_every=10,
            monitor="val_close",
            early_stopping_patience=4,
        ),
        val_batches=[{"features": x, "labels": y}],
    )
    closes = {r["step"]: r["val_close"] for r in result.history if "val_close" in r}
    assert result.stopped_by == "early_stopping"
    assert result.best_score == max(closes.values()) == closes[result.best_step] == 1.0  # higher is better
    assert result.best_step == min(s for s, c in closes.items() if c == 1.0)  # strict improvement only
    assert result.best_step <= 120
    assert result.step == result.best_step + 4 * 10  # exactly `patience` evaluations without improvement


def test_keep_best_publishes_the_best_checkpoint_not_the_last(tmp_path):
    from safetensors.torch import load_file

    from zeroforge import create_model

    torch.manual_seed(0)
    x, y = data()
    model = create_model("linear-regression", in_features=3)
    result = train(
        model,
        DriftingSource(x, y, 16, switch=120),
        quiet(max_steps=300, lr=0.05, schedule="constant", eval_every=10, keep_best=True),
        val_batches=[{"features": x, "labels": y}],
        run_dir=tmp_path / "run",
    )
    losses = {r["step"]: r["val_loss"] for r in result.history if "val_loss" in r}
    assert result.stopped_by == "max_steps" and result.step == 300
    assert result.best_score == min(losses.values()) == losses[result.best_step]  # lower is better
    assert result.best_step <= 130 and losses[300] > 10 * result.best_score
    # the published model and the in-memory model are the best step's weights, not the last step's
    checkpoints = tmp_path / "run" / "checkpoints"
    best_dir = checkpoints / f"best-step-{result.best_step:06d}"
    assert (checkpoints / "best").read_text().strip() == best_dir.name
    assert len(list(checkpoints.glob("best-step-*"))) == 1
    assert (checkpoints / "step-000300").is_dir()  # the last step stays the resume point
    published = load_file(str(tmp_path / "run" / "model.safetensors"))
    kept = load_file(str(best_dir / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(published[name], tensor, atol=0, rtol=0)
        torch.testing.assert_close(kept[name], tensor, atol=0, rtol=0)


def test_monitor_errors_and_modes():
    from zeroforge.errors import ConfigError

    with pytest.raises(ValueError, match="monitor: expected val_loss or a val_<metric> name"):
        quiet(max_steps=5, monitor="accuracy")
    x, y = data()
    with pytest.raises(
        ConfigError, match=r"train.monitor: this run reports no 'val_f1' \(it has val_loss, val_close\)"
    ):
        train(
            Regression(),
            ArraySource(x, y, 16),
            quiet(max_steps=20, eval_every=5, monitor="val_f1"),
            val_batches=[{"features": x, "labels": y}],
        )
    with pytest.raises(ConfigError, match="train.keep_best: needs a run directory and validation data"):
        train(Regression(), ArraySource(x, y, 16), quiet(max_steps=5, keep_best=True))
    # min mode on a "higher is better" metric: the first evaluation stays the best, so patience runs out
    torch.manual_seed(0)
    result = train(
        Regression(),
        ArraySource(x, y, 16),
        quiet(
            max_steps=1000,
            lr=0.05,
            eval_every=5,
            monitor="val_close",
            monitor_mode="min",
            early_stopping_patience=2,
        ),
        val_batches=[{"features": x, "labels": y}],
    )
    assert result.best_step == 5 and result.stopped_by == "early_stopping" and result.step == 15


def test_compile_falls_back_to_eager_without_a_cpp_compiler(monkeypatch, capsys):
    import shutil

    from zeroforge.train.loop import compile_step

    model = Regression()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert compile_step(model, torch.device("cpu")) is model
    assert "train.compile: no C++ compiler found" in capsys.readouterr().out
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/g++")
    assert compile_step(model, torch.device("cpu")) is not model  # an OptimizedModule, compiled lazily
