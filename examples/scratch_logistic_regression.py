"""Logistic regression by gradient descent in ``zeroforge.scratch``, checked against scikit-learn.

    python examples/scratch_logistic_regression.py

p = sigma(X w + b), loss = mean binary cross-entropy + ||w||^2 / (2 C n): scikit-learn's L2 objective
(C sum_i loss_i + ||w||^2 / 2) divided by C n, so both minimise the same function. The breast-cancer
data ship with scikit-learn (569 samples, 30 standardised features).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from zeroforge.scratch import Tensor, optim
from zeroforge.scratch import functional as F


@dataclass
class LogisticConfig:
    C: float = 1.0  # noqa: N815 - scikit-learn's name for the inverse regularisation strength
    steps: int = 3000
    lr: float = 0.05


def fit_logistic(x: np.ndarray, y: np.ndarray, config: LogisticConfig) -> tuple[np.ndarray, float]:
    """Full-batch Adam on the regularised cross-entropy; returns (weights, intercept)."""
    n, d = x.shape
    w = Tensor(np.zeros(d), requires_grad=True)
    b = Tensor(np.zeros(1), requires_grad=True)
    optimizer = optim.Adam([w, b], lr=config.lr)
    inputs = Tensor(x)
    for _ in range(config.steps):
        optimizer.zero_grad()
        logits = inputs @ w + b  # z = X w + b
        loss = F.binary_cross_entropy_with_logits(logits, y) + (w * w).sum() * (1 / (2 * config.C * n))
        loss.backward()
        optimizer.step()
    return w.data.copy(), float(b.data[0])


def main() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=LogisticConfig.steps)
    config = LogisticConfig(steps=parser.parse_args().steps)
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    w, b = fit_logistic(x, y.astype(np.float64), config)
    reference = LogisticRegression(C=config.C, tol=1e-10, max_iter=10_000).fit(x, y)
    diff = max(np.abs(w - reference.coef_[0]).max(), abs(b - reference.intercept_[0]))
    scale = np.abs(reference.coef_).max()
    print(f"largest |coefficient| {scale:.4f}; largest difference from scikit-learn {diff:.2e}")
    print(f"training accuracy: scratch {((x @ w + b > 0) == y).mean():.4f}, "
          f"scikit-learn {reference.score(x, y):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
