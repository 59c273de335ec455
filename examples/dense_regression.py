"""A dense network for regression: 4 -> 10 -> 1, mean squared error, Adam.

Keras' ``Sequential([Dense(10, relu, input_shape=(4,)), Dense(1)])`` with ``compile(optimizer="adam",
loss="mse")``, written as a PyTorch module and trained with ``zeroforge.fit``.

Data: scikit-learn's diabetes table (442 patients, shipped inside the scikit-learn wheel, so it needs no
download). The target is disease progression one year after baseline; the four inputs are body-mass
index, mean blood pressure and two blood-serum measurements (s5, s6). Inputs and target are
standardised with the training rows' mean and standard deviation, so an MSE of 1.0 is what predicting
the mean scores (R² = 0).

    python examples/dense_regression.py            # ~10 s
    python examples/dense_regression.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from torch import nn

import zeroforge as zf

FEATURES = ["bmi", "bp", "s5", "s6"]


def load_table(seed: int = 0) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test), 80/20 split, standardised with the training statistics."""
    table = load_diabetes(scaled=False)
    columns = [table.feature_names.index(name) for name in FEATURES]
    x = table.data[:, columns].astype(np.float32)
    y = table.target.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[: int(0.8 * len(x))], order[int(0.8 * len(x)) :]
    x_mean, x_std = x[train].mean(0), x[train].std(0)
    y_mean, y_std = y[train].mean(), y[train].std()
    x, y = (x - x_mean) / x_std, (y - y_mean) / y_std
    return x[train], y[train], x[test], y[test]


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_table()

    # Dense(10, activation="relu", input_shape=(4,)) -> Dense(1)
    model = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 1))

    # compile(optimizer="adam", loss="mse") + fit(x_train, y_train, epochs=...): one call. Keras' default
    # learning rate (1e-3) needs a few hundred epochs of these 353 rows; 1e-2 gets there in 100.
    history = zf.fit(
        model, x_train, y_train, loss="mse", optimizer="adam", lr=1e-2,
        epochs=10 if quick else 100, batch_size=32, verbose=not quick,
    )  # fmt: skip

    # evaluate(x_test, y_test) -> the test MSE; R² = 1 - MSE / variance of the (standardised) target
    test_mse = zf.evaluate_arrays(model, x_test, y_test, loss="mse")["loss"]
    baseline_mse = float(np.mean((y_test - y_train.mean()) ** 2))  # always predicting the training mean
    r2 = 1.0 - test_mse / float(np.var(y_test))

    # predict(x_new): standardised progression for new patients (here: the first three test rows)
    predictions = zf.predict(model, x_test[:3])
    print(f"predictions {np.round(predictions, 2)} vs targets {np.round(y_test[:3], 2)}")
    print(f"test MSE {test_mse:.3f} (predicting the mean: {baseline_mse:.3f}), R² {r2:.3f}")
    return {"losses": history["loss"], "metric": -test_mse, "chance": -baseline_mse, "r2": r2}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs: the smoke test's setting")
    main(parser.parse_args().quick)
