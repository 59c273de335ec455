"""``zeroforge train`` on the classic and vision recipes (MLP, LeNet, ResNet-18): the same loop, a data
builder for images, and a run directory like any other run's. Each runs a few steps on mnist-5k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zeroforge.cli import main
from zeroforge.eval.plots import read_metrics_csv

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FEW_STEPS = [
    "data.source=mnist-5k",  # the shipped 5,000-digit MNIST sample: seconds to load
    "data.val_fraction=0.05",
    "train.batch_size=32",
    "train.eval_every=1000",
    "train.log_every=1",
    "train.progress=false",
]

pytestmark = pytest.mark.network  # MNIST and Fashion-MNIST come from registry packages


def train_recipe(name: str, tmp_path: Path, *overrides: str) -> Path:
    out = tmp_path / name
    argv = [
        "train",
        "--config",
        str(RECIPES / f"{name}.yaml"),
        *FEW_STEPS,
        f"train.out_dir={out}",
        *overrides,
    ]
    assert main(argv) == 0
    return out


def test_mlp_recipe_learns_mnist_digits(tmp_path):
    run = train_recipe("mlp-mnist", tmp_path, "train.max_steps=40", "train.warmup_steps=0")
    rows = read_metrics_csv(run / "metrics.csv")
    final = rows[-1]
    assert final["step"] == 40 and final["val_accuracy"] > 0.7, final  # chance is 0.1
    recipe = yaml.safe_load((run / "run.yaml").read_text())
    assert recipe["model"]["in_features"] == 784 and recipe["model"]["out_features"] == 10
    assert recipe["data"]["objective"] == "images" and "finetune" not in recipe
    for name in ("loss.png", "config.json", "model.safetensors", "COMPLETE"):
        assert (run / name).is_file(), name

    # zeroforge evaluate on the run rebuilds the held-out digits (same split, same normalisation)
    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 250 and metrics["val_accuracy"] == pytest.approx(final["val_accuracy"], abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-6)  # the same predictions
    assert len(metrics["confusion_matrix"]) == 10 and (run / "confusion_matrix.png").stat().st_size > 0
    # mnist-5k is a training sample only: a test split is refused in one line
    assert main(["evaluate", str(run), "--split", "test"]) == 2


def test_image_run_is_evaluated_on_the_datasets_test_split(tmp_path):
    run = train_recipe(
        "mlp-mnist", tmp_path, "data.source=mnist", "train.max_steps=40", "train.warmup_steps=0"
    )
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 10_000 and 0.5 < metrics["test_accuracy"] <= 1
    assert sum(map(sum, metrics["confusion_matrix"])) == 10_000


@pytest.mark.parametrize(
    "name, overrides",
    [("lenet-mnist", []), ("resnet18-fashion-mnist", ["model.width=4", "train.device=cpu"])],
)
def test_cnn_recipes_train_on_the_same_loop(tmp_path, name, overrides):
    run = train_recipe(name, tmp_path, "train.max_steps=3", "train.warmup_steps=0", *overrides)
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2, 3] and 0 <= rows[-1]["val_accuracy"] <= 1
    model = yaml.safe_load((run / "run.yaml").read_text())["model"]
    assert model["in_channels"] == 1 and model["num_classes"] == 10 and model["image_size"] == 28
    assert (run / "loss.png").is_file() and (run / "COMPLETE").is_file()
