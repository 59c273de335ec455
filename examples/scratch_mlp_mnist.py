"""A two-layer perceptron trained on MNIST with ``zeroforge.scratch`` alone: NumPy forward and backward.

    OMP_NUM_THREADS=1 python examples/scratch_mlp_mnist.py --epochs 8

784 -> 256 (ReLU) -> 10, softmax cross-entropy, Adam. MNIST arrays come from ``zeroforge.data.images``
(that loader uses torch; the model and its training do not).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from zeroforge.scratch import functional as F
from zeroforge.scratch import nn, optim


@dataclass
class MLPConfig:
    hidden: int = 256
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


def build_mlp(config: MLPConfig, in_features: int = 784, classes: int = 10) -> nn.Module:
    rng = np.random.default_rng(config.seed)
    return nn.Sequential(
        nn.Linear(in_features, config.hidden, rng=rng, dtype=np.float32),
        nn.Activation(F.relu),
        nn.Linear(config.hidden, classes, rng=rng, dtype=np.float32),
    )


def train(config: MLPConfig, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
          y_test: np.ndarray) -> float:  # fmt: skip
    """Train and return the final test accuracy; prints one line per epoch."""
    model = build_mlp(config, x_train.shape[1], int(y_train.max()) + 1)
    optimizer = optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    return optim.train_classifier(
        model, F.cross_entropy, optimizer, (x_train, y_train), (x_test, y_test),
        config.epochs, config.batch_size, rng, log=lambda line: print(line, flush=True),
    )  # fmt: skip


def mnist_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Flattened MNIST pixels in [0, 1] (float32) and int64 labels."""
    from zeroforge.data.images import load_images

    data = load_images("mnist", split)
    return data.images.reshape(len(data), -1).astype(np.float32) / 255.0, data.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=MLPConfig.epochs)
    parser.add_argument("--hidden", type=int, default=MLPConfig.hidden)
    args = parser.parse_args()
    config = MLPConfig(hidden=args.hidden, epochs=args.epochs)
    x_train, y_train = mnist_arrays("train")
    x_test, y_test = mnist_arrays("test")
    start = time.perf_counter()
    final = train(config, x_train, y_train, x_test, y_test)
    print(
        f"final test accuracy {final:.4f} after {config.epochs} epochs, {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
