"""Initialisers: the documented variance (measured on large matrices and conv kernels), the same draws
as torch.nn.init for the same seed, and biases at zero."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zeroforge.modules.init import INITS, expected_variance, fans, init_weight_, init_weights

SHAPES = [(512, 256), (64, 32, 5, 5)]  # Linear (out, in) and Conv2d (out, in, kh, kw)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scheme", [s for s in INITS if s != "default"])
def test_variance_is_the_documented_one(scheme: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    w = init_weight_(torch.empty(shape), scheme)  # type: ignore[arg-type]
    fan_in, fan_out = fans(w)
    want = {
        "normal": 0.01**2,
        "uniform": 0.05**2 / 3,
        "xavier_normal": 2 / (fan_in + fan_out),
        "xavier_uniform": 2 / (fan_in + fan_out),
        "he_normal": 2 / fan_in,
        "he_uniform": 2 / fan_in,
    }[scheme]
    assert expected_variance(scheme, fan_in, fan_out) == pytest.approx(want)  # type: ignore[arg-type]
    # sample variance of n >= 51,200 iid draws: relative standard error sqrt(2/n) < 0.7% (normal)
    assert w.var().item() == pytest.approx(want, rel=0.03)
    assert abs(w.mean().item()) < 4 * math.sqrt(want / w.numel())
    if "uniform" in scheme:
        assert w.abs().max().item() <= math.sqrt(3 * want) + 1e-7


def test_fans_of_linear_and_conv() -> None:
    assert fans(torch.empty(10, 20)) == (20, 10)
    assert fans(torch.empty(64, 32, 5, 5)) == (32 * 25, 64 * 25)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fans(torch.empty(3))


@pytest.mark.parametrize(
    ("scheme", "reference"),
    [
        ("xavier_uniform", lambda w: nn.init.xavier_uniform_(w)),
        ("xavier_normal", lambda w: nn.init.xavier_normal_(w)),
        ("he_normal", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
        ("he_uniform", lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu")),
        ("normal", lambda w: nn.init.normal_(w, 0.0, 0.01)),
    ],
)
def test_same_draws_as_torch_nn_init(scheme: str, reference) -> None:  # noqa: ANN001
    torch.manual_seed(3)
    ours = init_weight_(torch.empty(40, 30, 3, 3), scheme)  # type: ignore[arg-type]
    torch.manual_seed(3)
    theirs = reference(torch.empty(40, 30, 3, 3))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_leaky_relu_gain() -> None:
    assert expected_variance("he_normal", 100, 7, negative_slope=0.2) == pytest.approx(2 / (1 + 0.04) / 100)


def test_init_weights_zeroes_biases_and_leaves_norms() -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4), nn.Conv2d(1, 2, 3))
    before = model[1].weight.clone()
    init_weights(model, "xavier_uniform")
    assert model[0].bias.abs().sum() == 0 and model[2].bias.abs().sum() == 0
    assert torch.equal(model[1].weight, before)
    with pytest.raises(ValueError, match="expected one of default, normal"):
        init_weights(model, "orthogonal")  # type: ignore[arg-type]
