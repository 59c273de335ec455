"""LeNet-5-style CNN on MNIST with ``zeroforge.scratch``: im2col convolution and max-pooling in NumPy.

    OMP_NUM_THREADS=1 python examples/scratch_cnn_mnist.py --epochs 3

conv 5x5 (1 -> 6, pad 2) ReLU, max-pool 2 -> conv 5x5 (6 -> 16) ReLU, max-pool 2 -> 400 -> 120 -> 84 -> 10
(LeCun et al., 1998, with ReLU and max-pooling), softmax cross-entropy, Adam, float32.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from zeroforge.scratch import functional as F
from zeroforge.scratch import nn, optim


@dataclass
class LeNetConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


def build_lenet(seed: int = 0, classes: int = 10) -> nn.Module:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    relu = nn.Activation(F.relu)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng, dtype=f32), relu, nn.MaxPool2d(2),  # (N, 6, 14, 14)
        nn.Conv2d(6, 16, 5, rng=rng, dtype=f32), relu, nn.MaxPool2d(2),  # (N, 16, 5, 5)
        nn.Flatten(),
        nn.Linear(400, 120, rng=rng, dtype=f32), relu,
        nn.Linear(120, 84, rng=rng, dtype=f32), relu,
        nn.Linear(84, classes, rng=rng, dtype=f32),
    )  # fmt: skip


def train(config: LeNetConfig, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
          y_test: np.ndarray) -> float:  # fmt: skip
    """Train on (N, 1, 28, 28) float32 images; returns the final test accuracy."""
    model = build_lenet(config.seed, int(y_train.max()) + 1)
    optimizer = optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    return optim.train_classifier(
        model, F.cross_entropy, optimizer, (x_train, y_train), (x_test, y_test),
        config.epochs, config.batch_size, rng, log=lambda line: print(line, flush=True),
    )  # fmt: skip


def mnist_images(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 28, 28) pixels in [0, 1] (float32) and int64 labels."""
    from zeroforge.data.images import load_images

    data = load_images("mnist", split)
    return data.images.astype(np.float32) / 255.0, data.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=LeNetConfig.epochs)
    args = parser.parse_args()
    config = LeNetConfig(epochs=args.epochs)
    x_train, y_train = mnist_images("train")
    x_test, y_test = mnist_images("test")
    start = time.perf_counter()
    final = train(config, x_train, y_train, x_test, y_test)
    print(
        f"final test accuracy {final:.4f} after {config.epochs} epochs, {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
