"""modules/mlp.py: GPT-2's GELU written as x * sigmoid(2u) under torch.compile equals torch's kernel."""

import pytest
import torch
import torch.nn.functional as F

from zeroforge.modules.mlp import MLP, GELUTanh


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_compiled_gelu_tanh_equals_torch_kernel(dtype, tol):
    torch.manual_seed(0)
    x = (torch.randn(64, 96) * 4).to(dtype).requires_grad_()  # tails reach |x| ~ 15, where tanh saturates
    compiled = torch.compile(GELUTanh(), dynamic=False)
    y = compiled(x)
    ref = F.gelu(x, approximate="tanh")
    torch.testing.assert_close(y, ref, rtol=tol, atol=tol)
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, g)
    (dx_ref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(dx, dx_ref, rtol=tol, atol=tol)


def test_eager_gelu_tanh_is_torch_kernel():
    x = torch.randn(8, 16)
    assert torch.equal(GELUTanh()(x), F.gelu(x, approximate="tanh"))


@pytest.mark.slow
def test_compiled_mlp_equals_eager():
    torch.manual_seed(0)
    mlp = MLP(32, 128)
    x = torch.randn(4, 8, 32)
    torch.testing.assert_close(torch.compile(mlp, dynamic=False)(x), mlp(x), rtol=1e-5, atol=1e-6)
