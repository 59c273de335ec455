"""A dense 784-128-10 softmax classifier on MNIST, five epochs of Adam.

Keras' ``Sequential([Dense(128, relu, input_shape=(784,)), Dense(10, softmax)])`` compiled with
``sparse_categorical_crossentropy``, as a PyTorch module trained with ``zeroforge.fit``. The softmax
is not a layer here: the cross-entropy loss takes the raw scores (logits) and applies log-softmax
itself, the numerically stable form; ``softmax(logits)`` gives the probabilities when you need them.

Data: ``zeroforge.datasets`` "mnist", LeCun's 60,000 training and 10,000 test digits (28x28 grey).

    python examples/mlp_mnist.py            # ~2 CPU-minutes, test accuracy 97.6%
    python examples/mlp_mnist.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import zeroforge as zf
from zeroforge.data.images import load_images, to_float


def load_mnist(quick: bool) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): flattened 784-pixel rows in [0, 1], integer labels."""
    train, test = load_images("mnist", "train"), load_images("mnist", "test")
    x_train, x_test = to_float(train.images).flatten(1), to_float(test.images).flatten(1)  # (N, 784)
    y_train, y_test = torch.as_tensor(train.labels), torch.as_tensor(test.labels)
    if quick:  # a slice, so the smoke test takes seconds
        x_train, y_train, x_test, y_test = x_train[:3000], y_train[:3000], x_test[:1000], y_test[:1000]
    return x_train, y_train, x_test, y_test


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_mnist(quick)

    # Dense(128, relu) -> Dense(10): logits; the softmax is inside the loss
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))

    # compile(optimizer="adam", loss="sparse_categorical_crossentropy") + fit(epochs=5), Keras' batch of 32
    history = zf.fit(
        model, x_train, y_train, val=(x_test, y_test), loss="cross_entropy", optimizer="adam",
        lr=1e-3, epochs=2 if quick else 5, batch_size=32, verbose=not quick,
    )  # fmt: skip

    result = zf.evaluate_arrays(model, x_test, y_test, loss="cross_entropy")
    probabilities = torch.softmax(torch.as_tensor(zf.predict(model, x_test[:1])), dim=-1)
    print(f"first test digit: label {int(y_test[0])}, predicted {int(probabilities.argmax())} "
          f"with probability {float(probabilities.max()):.3f}")  # fmt: skip
    print(f"test loss {result['loss']:.4f}, test accuracy {100 * result['accuracy']:.2f}%")
    return {"losses": history["loss"], "metric": result["accuracy"], "chance": 0.1}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 digits, 2 epochs: the smoke test")
    main(parser.parse_args().quick)
