"""The scratch demonstrations: a few steps on tiny random data (default run), the full runs opt-in (slow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_mlp_example_trains_on_tiny_data() -> None:
    mlp = _example("scratch_mlp_mnist")
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 20), dtype=np.float32), rng.integers(0, 3, 64)
    accuracy = mlp.train(mlp.MLPConfig(hidden=16, epochs=2, batch_size=16), x, y, x, y)
    assert 0 <= accuracy <= 1


def test_cnn_example_trains_on_tiny_data() -> None:
    cnn = _example("scratch_cnn_mnist")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    assert 0 <= cnn.train(cnn.LeNetConfig(epochs=1, batch_size=4), x, y, x, y) <= 1


def test_char_transformer_example_lowers_the_loss_on_a_tiny_text() -> None:
    gpt = _example("scratch_char_transformer")
    config = gpt.CharGPTConfig(block_size=8, dim=16, num_heads=2, num_layers=1, batch_size=8, max_steps=60,
                               eval_every=1000, eval_batches=2, lr=1e-2)  # fmt: skip
    final = gpt.train(config, "abcdefgh" * 200)
    assert final < np.log(8) * 0.8  # a periodic text is learnable: well below the uniform log(vocab)


def test_logistic_regression_matches_scikit_learn_coefficients() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    logistic = _example("scratch_logistic_regression")
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    w, b = logistic.fit_logistic(x, y.astype(np.float64), logistic.LogisticConfig())
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(w, reference.coef_[0], atol=1e-4)
    assert abs(b - reference.intercept_[0]) < 1e-4


@pytest.mark.slow
@pytest.mark.network
def test_mlp_reaches_the_target_accuracy_on_mnist() -> None:
    mlp = _example("scratch_mlp_mnist")
    x_train, y_train = mlp.mnist_arrays("train")
    x_test, y_test = mlp.mnist_arrays("test")
    assert mlp.train(mlp.MLPConfig(), x_train, y_train, x_test, y_test) >= 0.975
