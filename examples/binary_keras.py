"""A binary classifier 10 -> 10 -> 1 with a sigmoid and binary cross-entropy, Keras style.

Keras' ``Sequential([Dense(10, relu), Dense(1, sigmoid)])`` with ``compile(loss="binary_crossentropy",
optimizer="adam", metrics=["accuracy"])``, trained with ``zeroforge.fit(loss="bce")``.

``loss="bce"`` takes the last layer's raw score z (a logit) and computes
-[y log σ(z) + (1 - y) log(1 - σ(z))] in its log-sigmoid form, which stays finite when σ(z) rounds to 0
or 1. So the model ends in ``Linear(10, 1)``; the sigmoid is applied when you want probabilities
(``torch.sigmoid(zf.predict(...))``). ``examples/binary_pytorch.py`` writes the other style: a model
ending in ``nn.Sigmoid`` trained with ``nn.BCELoss``.

Data: the Wisconsin breast-cancer table (569 tumours, shipped inside scikit-learn's wheel); the 10
inputs are the "mean" measurements of the cell nuclei (radius, texture, perimeter, area, smoothness,
compactness, concavity, concave points, symmetry, fractal dimension); the label is malignant (0) or
benign (1). Standardised with the training rows' statistics; 25% held out for the test.

    python examples/binary_keras.py            # a few seconds, test accuracy 93%
    python examples/binary_keras.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import zeroforge as zf


def load_table(seed: int = 0) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): 10 standardised features, labels 0./1. as float32."""
    table = load_breast_cancer()
    x = table.data[:, :10].astype(np.float32)  # the ten "mean ..." columns
    y = table.target.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[: int(0.75 * len(x))], order[int(0.75 * len(x)) :]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / std
    return x[train], y[train], x[test], y[test]


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_table()

    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))  # the sigmoid lives in loss="bce"

    history = zf.fit(
        model, x_train, y_train, loss="bce", optimizer="adam", lr=1e-3,
        epochs=5 if quick else 30, batch_size=32, verbose=not quick,
    )  # fmt: skip

    result = zf.evaluate_arrays(model, x_test, y_test, loss="bce")
    probabilities = torch.sigmoid(torch.as_tensor(zf.predict(model, x_test[:5])))
    majority = max(y_test.mean(), 1 - y_test.mean())  # always answering the more common class
    print(f"P(benign) for five test tumours: {np.round(probabilities.numpy(), 3)}, labels {y_test[:5]}")
    print(f"test accuracy {100 * result['accuracy']:.2f}% (majority class: {100 * majority:.2f}%)")
    return {"losses": history["loss"], "metric": result["accuracy"], "chance": float(majority)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 epochs: the smoke test's setting")
    main(parser.parse_args().quick)
