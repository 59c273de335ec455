"""The learning-rate range test: an exponential sweep whose loss falls then diverges, a suggestion in
between, and no trace left (weights, RNG, batch stream; the run's own optimizer is never touched)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from zeroforge.cli import main
from zeroforge.config import TrainArgs
from zeroforge.data.arrays import ArrayBatches
from zeroforge.lr_find import lr_range_test, suggest
from zeroforge.models.output import ModelOutput
from zeroforge.train.optim import build_optimizer


class Regression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> ModelOutput:
        out = self.net(features).squeeze(-1)
        return ModelOutput(logits=out, loss=torch.nn.functional.mse_loss(out, labels))


def _data() -> ArrayBatches:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    return ArrayBatches({"features": x, "labels": x @ torch.tensor([1.0, -2.0, 0.5, 3.0])}, 32, seed=0)


def test_range_test_restores_everything_and_suggests_between() -> None:
    torch.manual_seed(0)
    model, data = Regression(), _data()
    args = TrainArgs(
        optimizer="sgd",
        lr=0.05,
        momentum=0.0,
        weight_decay=0.0,
        grad_clip=0.0,
        device="cpu",
        precision="fp32",
    )
    run_optimizer = build_optimizer(model, args)  # a run's optimizer: the test must leave it untouched
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data_before, rng_before = data.state_dict(), torch.get_rng_state()
    r = lr_range_test(model, data, args, steps=100, start_lr=1e-4, end_lr=10.0, progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert run_optimizer.state_dict()["state"] == {}
    assert data.state_dict() == data_before and torch.equal(torch.get_rng_state(), rng_before)
    # the sweep is exponential, the loss fell well below its start, and it stopped on divergence
    ratios = [b / a for a, b in zip(r.lrs, r.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)
    assert min(r.smoothed) < 0.6 * max(r.losses[:10])
    assert r.stopped_early and r.lrs[-1] < 10.0  # SGD on a regression diverges well before lr 10
    assert r.suggestion is not None and 1e-3 < r.suggestion < r.min_loss_lr


def test_suggest_is_the_steepest_descent() -> None:
    lrs = [10 ** (-4 + i * 0.1) for i in range(41)]  # 1e-4 .. 1
    # a loss that falls fastest at lr = 1e-2 (a logistic in log10 lr) and is lowest at the end
    smoothed = [2.0 - 1.0 / (1 + math.exp(-4 * (math.log10(lr) + 2))) for lr in lrs]
    steep, at_min = suggest(lrs, smoothed)
    assert steep == pytest.approx(1e-2, rel=0.01)
    assert at_min == lrs[-1]


def test_cli_lr_find_on_a_recipe(tmp_path: Path, monkeypatch, capsys, tiny_corpus) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    args = ["lr-find", "--config", "missing.yaml"]
    assert main(args) == 2 and "missing.yaml: recipe file not found" in capsys.readouterr().err
    overrides = [
        f"data.source={tiny_corpus}",
        "model.name=gpt-tiny",
        "train.batch_size=2",
        "train.block_size=8",
    ]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {name: tiny}\n", encoding="utf-8")
    assert main(["lr-find", "--config", str(recipe), *overrides, "--steps", "20", "--out", "lf"]) == 0
    assert "suggested lr" in capsys.readouterr().out
    saved = json.loads((tmp_path / "lf/lr_find.json").read_text())
    assert len(saved["lrs"]) <= 20 and saved["recipe_lr"] == 1e-3
    assert (tmp_path / "lf/lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "runs" / "tiny").exists()  # no run directory left behind
