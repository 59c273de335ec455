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

from zeroforge.scratch import Tensor, nn, no_grad, optim
from zeroforge.scratch import functional as F


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


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    correct = 0
    with no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(Tensor(x[start : start + batch_size])).data
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return correct / len(x)


def train(config: MLPConfig, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
          y_test: np.ndarray) -> float:  # fmt: skip
    """Train and return the final test accuracy; prints one line per epoch."""
    model = build_mlp(config, x_train.shape[1], int(y_train.max()) + 1)
    optimizer = optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)

    def loss_fn(index: np.ndarray) -> Tensor:
        return F.cross_entropy(model(Tensor(x_train[index])), y_train[index])

    test_accuracy = 0.0
    for epoch in range(config.epochs):
        start = time.perf_counter()
        result = optim.train_epoch(loss_fn, optimizer, len(x_train), config.batch_size, rng)
        seconds = time.perf_counter() - start
        test_accuracy = accuracy(model, x_test, y_test)
        print(f"epoch {epoch + 1}: train loss {result.loss:.4f}  test accuracy {test_accuracy:.4f}  ({seconds:.1f} s)",
              flush=True)  # fmt: skip
    return test_accuracy


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
