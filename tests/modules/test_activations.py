"""Each written-out activation equals torch.nn.functional's, in value and gradient, also at the extremes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeroforge.modules import activations as A

X = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([0.0, -1e-8, 1e-8, -100.0, 100.0, -1e4, 1e4])])

REFERENCES = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "gelu": lambda x: F.gelu(x, approximate="none"),
}


@pytest.mark.parametrize("name", A.ACTIVATIONS)
def test_matches_torch_in_value_and_gradient(name: str) -> None:
    ours_x = X.double().clone().requires_grad_(True)
    ref_x = X.double().clone().requires_grad_(True)
    ours = A.make_activation(name)(ours_x)
    ref = REFERENCES[name](ref_x)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    ours.sum().backward()
    ref.sum().backward()
    assert torch.isfinite(ours_x.grad).all()
    torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", A.ACTIVATIONS)
def test_float32_is_as_accurate_as_torch(name: str) -> None:
    # float32 results within float32 rounding of the float64 reference
    exact = REFERENCES[name](X.double())
    torch.testing.assert_close(A.make_activation(name)(X).double(), exact, rtol=2e-6, atol=1e-12)


def test_gelu_keeps_the_left_tail() -> None:
    # 0.5x(1 + erf(x/sqrt2)) cancels to 0 in float32 for x << 0; the erfc form does not (exact: -6.0019e-08)
    assert A.gelu(torch.tensor(-5.6)).item() == pytest.approx(-6.0019e-08, rel=1e-4)


def test_tanh_keeps_precision_near_zero() -> None:
    # 2*sigmoid(2x) - 1 would round tanh(1e-8) to 0 in float32; the expm1 form keeps it
    x = torch.tensor([1e-8, -3e-7], dtype=torch.float32)
    torch.testing.assert_close(A.tanh(x), torch.tanh(x), rtol=1e-6, atol=0)


def test_leaky_relu_slope_and_unknown_name() -> None:
    x = torch.tensor([-2.0, 3.0])
    assert A.make_activation("leaky_relu", negative_slope=0.2)(x).tolist() == pytest.approx([-0.4, 3.0])
    with pytest.raises(ValueError, match="expected one of sigmoid, tanh, relu, leaky_relu, gelu"):
        A.make_activation("swish")  # type: ignore[arg-type]
