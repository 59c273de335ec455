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
