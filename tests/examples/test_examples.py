"""Every script in examples/ runs in its quick setting: the training loss falls and the test metric
beats chance (majority class, uniform guess or predicting the mean, as each example defines it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# examples that read zeroforge.datasets (MNIST, Shakespeare, movie reviews, shipped weights); the others
# read tables that ship inside scikit-learn
READS_DATASETS = {
    "lenet_mnist",
    "mlp_mnist",
    "gpt2_pretrain",
    "bert_text_classification",
    "finetune_efficientnet",
}
OFFLINE = ["dense_regression", "binary_keras", "binary_pytorch"]


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))  # binary_pytorch imports binary_keras' data loader
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def check_quick_run(name: str) -> None:
    result = load_example(name).main(quick=True)
    losses = result["losses"]
    assert len(losses) >= 2
    assert losses[-1] < losses[0], f"{name}: the training loss did not fall: {losses}"
    assert result["metric"] > result["chance"], f"{name}: {result['metric']} does not beat {result['chance']}"


def test_every_example_is_smoke_tested() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("scratch_")}
    assert scripts == READS_DATASETS | set(OFFLINE)


@pytest.mark.parametrize("name", OFFLINE)
def test_example_quick(name: str) -> None:
    check_quick_run(name)


@pytest.mark.network
@pytest.mark.parametrize("name", sorted(READS_DATASETS))
def test_example_quick_on_shipped_data(name: str) -> None:
    check_quick_run(name)
