import copy
import math

import pytest
import torch

from zeroforge.config import TrainArgs
from zeroforge.train.optim import build_optimizer, learning_rate, param_groups


def test_warmup_then_cosine_to_min_lr():
    args = TrainArgs(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert learning_rate(0, 0.0, args) == pytest.approx(1 / 11)
    assert learning_rate(9, 0.0, args) == pytest.approx(10 / 11)
    assert learning_rate(10, 0.0, args) == pytest.approx(1.0)
    assert learning_rate(60, 0.5, args) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 0.9)
    assert learning_rate(110, 1.0, args) == pytest.approx(0.1)
    assert learning_rate(500, 3.0, args) == pytest.approx(0.1)  # clamped past the end


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize(
    "name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_build_optimizer(name, cls):
    opt = build_optimizer(torch.nn.Linear(2, 2), TrainArgs(optimizer=name))
    assert isinstance(opt, cls)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_fused_adam_kernel_takes_the_foreach_steps(name):
    """build_optimizer picks torch's fused Adam(W) on CPU; it must follow the foreach update rule."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    args = TrainArgs(optimizer=name, lr=1e-2, weight_decay=0.1)
    fused = build_optimizer(model, args)
    assert fused.defaults["fused"] is True
    groups = param_groups(twin, args.weight_decay)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    foreach = cls(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, foreach=True)
    for _ in range(5):
        x = torch.randn(32, 8)
        for m, opt in ((model, fused), (twin, foreach)):
            m(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for p, q, p0 in zip(model.parameters(), twin.parameters(), start.parameters()):
        assert not torch.equal(p, p0)  # the weights moved
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
