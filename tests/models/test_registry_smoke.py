"""One smoke test over every registered model (timm-style): build, forward on a tiny batch, loss,
backward, and no NaN anywhere. Models above ``MAX_PARAMS`` are skipped (their families are covered
by a smaller preset); the inputs come from the forward signature and the config, or from a model's own
``example_batch(batch_size)`` when it defines one."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

from zeroforge.registry import create_model, list_models, model_config

MAX_PARAMS = 30_000_000
BATCH = 2


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _num_params(name: str) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def _inputs(model: nn.Module, config: Any) -> dict[str, torch.Tensor]:
    params = inspect.signature(model.forward).parameters
    if "input_ids" in params:
        T = min(8, getattr(config, "block_size", 8))
        return {"input_ids": torch.randint(0, config.vocab_size, (BATCH, T))}
    if "pixel_values" in params:
        size = config.image_size if config.image_size <= 64 else 32
        return {"pixel_values": torch.randn(BATCH, config.in_channels, size, size)}
    if "features" in params:
        return {"features": torch.randn(BATCH, config.in_features)}
    raise AssertionError(f"{type(model).__name__}: unknown input; define example_batch(batch_size)")


def _labels(logits: torch.Tensor) -> torch.Tensor:
    """Class ids for (..., C) logits; 0/1 targets for one output per sample (regression or binary)."""
    if logits.dim() == 1:
        return torch.randint(0, 2, logits.shape).float()
    return torch.randint(0, logits.size(-1), logits.shape[:-1])


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_no_nan(name: str) -> None:
    n_params = _num_params(name)
    if n_params > MAX_PARAMS:
        pytest.skip(f"{name}: {n_params / 1e6:.0f}M parameters, too heavy for a smoke test")
    torch.manual_seed(0)
    model = create_model(name)
    config = model_config(name)
    assert sum(p.numel() for p in model.parameters()) == n_params
    model.train()
    batch = model.example_batch(BATCH) if hasattr(model, "example_batch") else _inputs(model, config)
    with torch.no_grad():
        plain = model(**batch)
    assert plain.logits.shape[0] == BATCH and torch.isfinite(plain.logits).all()
    if "labels" not in batch:
        batch["labels"] = _labels(plain.logits)
    out = model(**batch)
    assert out.loss is not None and out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads, f"{name}: no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    for value in out.metrics.values():
        num, den = value if isinstance(value, tuple) else (value, 1)
        assert torch.isfinite(torch.as_tensor(num, dtype=torch.float)) and float(den) >= 0
