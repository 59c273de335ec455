"""Optimisers: 20 steps of parameter trajectory equal torch.optim's (SGD, momentum, Adam)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from zeroforge.errors import ConfigError
from zeroforge.scratch import Tensor, optim
from zeroforge.scratch import functional as F

STEPS = 20

CASES: dict[str, tuple[Callable, Callable]] = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "momentum": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    ),
    "adam": (
        lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameter_trajectory_matches_torch_optim(name: str) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), rng.integers(0, 4, size=16)
    w1, b1, w2 = rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=(5, 4))
    ours = [Tensor(a.copy(), requires_grad=True) for a in (w1, b1, w2)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (w1, b1, w2)]
    make_ours, make_theirs = CASES[name]
    opt, opt_ref = make_ours(ours), make_theirs(theirs)
    for step in range(STEPS):
        opt.zero_grad()
        F.cross_entropy((Tensor(x) @ ours[0] + ours[1]).tanh() @ ours[2], y).backward()
        opt.step()
        opt_ref.zero_grad()
        logits = torch.tanh(torch.tensor(x) @ theirs[0] + theirs[1]) @ theirs[2]
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        opt_ref.step()
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(
                a.data, b.detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=f"step {step}"
            )
    assert not np.allclose(ours[0].data, w1), "the parameters must have moved"


def test_a_parameter_without_gradient_is_left_alone() -> None:
    used, unused = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([used, unused], lr=0.1)
    (used * used).sum().backward()
    opt.step()
    assert np.all(used.data < 1) and np.all(unused.data == 1)


def test_train_epoch_lowers_the_loss() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    w = Tensor(rng.normal(size=(2, 2)) * 0.1, requires_grad=True)
    opt = optim.SGD([w], lr=0.5, momentum=0.5)
    losses = [
        optim.train_epoch(lambda i: F.cross_entropy(Tensor(x[i]) @ w, y[i]), opt, 64, 16, rng).loss
        for _ in range(5)
    ]
    assert losses[-1] < losses[0] * 0.7


def test_bad_optimiser_settings_are_refused() -> None:
    p = [Tensor(np.ones(1), requires_grad=True)]
    with pytest.raises(ConfigError, match="lr must be > 0"):
        optim.SGD(p, lr=0)
    with pytest.raises(ConfigError, match="momentum"):
        optim.SGD(p, lr=0.1, momentum=1.5)
    with pytest.raises(ConfigError, match="no parameters"):
        optim.Adam([], lr=0.1)
