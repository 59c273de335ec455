"""Gradient descent and its refinements, each written as its update formula, and a minimal training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from zeroforge.errors import ConfigError
from zeroforge.scratch.tensor import Tensor, no_grad


class Optimizer:
    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ConfigError(
                "optimizer: no parameters to optimise (the model has no Tensor with requires_grad)"
            )
        if lr <= 0:
            raise ConfigError(f"optimizer: lr must be > 0, got {lr}")
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        with no_grad():
            for i, p in enumerate(self.params):
                if p.grad is not None:
                    self.update(i, p, p.grad)

    def update(self, index: int, param: Tensor, grad: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent, theta <- theta - lr * g; with momentum mu (torch's form, velocity starts at g):

    v <- mu v + g,   theta <- theta - lr v.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise ConfigError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.velocity: list[np.ndarray | None] = [None] * len(self.params)

    def update(self, index: int, param: Tensor, grad: np.ndarray) -> None:
        if self.momentum:
            v = self.velocity[index]
            grad = grad.copy() if v is None else self.momentum * v + grad
            self.velocity[index] = grad
        param.data -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with bias correction:

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,
    m_hat = m / (1 - b1^t),   v_hat = v / (1 - b2^t),   theta <- theta - lr m_hat / (sqrt(v_hat) + eps).
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:  # fmt: skip
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]
        self.t = 0

    def step(self) -> None:
        self.t += 1  # one time step for all parameters
        super().step()

    def update(self, index: int, param: Tensor, grad: np.ndarray) -> None:
        m, v = self.m[index], self.v[index]
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        m_hat = m / (1 - self.beta1**self.t)
        v_hat = v / (1 - self.beta2**self.t)
        param.data -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


# ----------------------------------------------------------------------------- a minimal training loop


@dataclass
class EpochResult:
    loss: float
    """Mean training loss over the epoch's batches."""
    steps: int


def batches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Index arrays of ``batch_size`` covering range(n), shuffled when ``rng`` is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_epoch(
    loss_fn: Callable[[np.ndarray], Tensor],
    optimizer: Optimizer,
    n: int,
    batch_size: int,
    rng: np.random.Generator | None = None,
) -> EpochResult:
    """One pass: for each batch, forward (``loss_fn(indices)``), backward, step. Returns the mean loss."""
    total, steps = 0.0, 0
    for index in batches(n, batch_size, rng):
        optimizer.zero_grad()
        loss = loss_fn(index)
        loss.backward()
        optimizer.step()
        total += loss.item()
        steps += 1
    return EpochResult(total / max(steps, 1), steps)


def accuracy(
    model: Callable[[Tensor], Tensor], x: np.ndarray, y: np.ndarray, batch_size: int = 1000
) -> float:
    """Share of ``x``'s rows whose largest logit is the label ``y`` (no graph is recorded)."""
    correct = 0
    with no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(Tensor(x[start : start + batch_size])).data
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return correct / len(x)


def train_classifier(
    model: Callable[[Tensor], Tensor],
    loss: Callable[[Tensor, np.ndarray], Tensor],
    optimizer: Optimizer,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    log: Callable[[str], None] = print,
) -> float:
    """Epochs of ``loss(logits, labels)`` (e.g. ``functional.cross_entropy``) on ``train`` = (x, y), the
    ``test`` accuracy logged after each; returns the last one."""
    import time

    x_train, y_train = train

    def loss_fn(index: np.ndarray) -> Tensor:
        return loss(model(Tensor(x_train[index])), y_train[index])

    test_accuracy = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        result = train_epoch(loss_fn, optimizer, len(x_train), batch_size, rng)
        test_accuracy = accuracy(model, *test)
        log(
            f"epoch {epoch + 1}: train loss {result.loss:.4f}  test accuracy {test_accuracy:.4f}  "
            f"({time.perf_counter() - start:.1f} s)"
        )
    return test_accuracy
