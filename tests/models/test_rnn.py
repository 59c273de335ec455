"""Recurrent LMs: written-out cells vs torch.nn cells (copied weights), the unrolled reference vs the fused
kernel, the recurrent state as a decoding cache (step-by-step == full forward, left padding, the
Foundation's generation), and training on the shared trainer."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import zeroforge as zf
from zeroforge.config import TrainArgs
from zeroforge.errors import ConfigError
from zeroforge.generation import generate_ids
from zeroforge.models.rnn import GRUCell, LSTMCell, RecurrentLM, RecurrentState, RNNCell, rnn_cell
from zeroforge.train.loop import train


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids oversubscribing a shared CPU (2 threads can be 20x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CELLS = [(RNNCell, nn.RNNCell), (LSTMCell, nn.LSTMCell), (GRUCell, nn.GRUCell)]


@pytest.mark.parametrize(("ours_cls", "torch_cls"), CELLS)
def test_cells_match_torch_with_copied_weights(ours_cls: type, torch_cls: type) -> None:
    torch.manual_seed(0)
    theirs = torch_cls(5, 7).double()
    ours = ours_cls(5, 7).double()
    ours.load_state_dict(theirs.state_dict())  # same names and layout: weight_ih, weight_hh, bias_ih, bias_hh
    x = torch.randn(3, 5, dtype=torch.double)
    h = torch.randn(3, 7, dtype=torch.double)
    state: Any = (h, torch.randn(3, 7, dtype=torch.double)) if torch_cls is nn.LSTMCell else h
    a, b = ours(x, state), theirs(x, state)
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)
    sum(t.sum() for t in a).backward()
    sum(t.sum() for t in b).backward()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, dict(theirs.named_parameters())[name].grad, rtol=1e-10, atol=1e-12)


def test_vanilla_cell_is_the_seeds_formula() -> None:
    # h_t = tanh(W x_t + U h_{t-1} + b), by hand
    W, U, b = torch.randn(4, 3), torch.randn(4, 4), torch.randn(4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(rnn_cell(x, h, W, U, b, torch.zeros(4)), torch.tanh(x @ W.T + h @ U.T + b))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_unrolled_cells_equal_the_fused_kernel(cell: str) -> None:
    torch.manual_seed(1)
    model = zf.create_model("rnn-lm", cell=cell, vocab_size=20, n_embd=6, hidden_size=9, n_layer=2).double()
    ids = torch.randint(0, 20, (3, 11))
    labels = torch.randint(0, 20, (3, 11))
    fused = model(input_ids=ids, labels=labels)
    fused.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.config.impl = "cells"
    cells = model(input_ids=ids, labels=labels)
    cells.loss.backward()
    torch.testing.assert_close(cells.logits, fused.logits, rtol=1e-10, atol=1e-10)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_cache_step_by_step_equals_full_forward(cell: str) -> None:
    torch.manual_seed(2)
    model = zf.create_model("rnn-lm", cell=cell, vocab_size=20, n_embd=6, hidden_size=9, n_layer=2).eval()
    ids = torch.randint(0, 20, (2, 9))
    full = model(input_ids=ids).logits
    cache = model.new_cache(2, 9)
    assert isinstance(cache, RecurrentState) and (cache.c is not None) == (cell == "lstm")
    parts = [model(input_ids=ids[:, :4], cache=cache).logits]
    parts += [model(input_ids=ids[:, t : t + 1], cache=cache).logits for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-6)
    assert cache.length == 9


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_left_padding_leaves_the_state_untouched(cell: str) -> None:
    torch.manual_seed(3)
    model = zf.create_model("rnn-lm", cell=cell, vocab_size=20, n_embd=6, hidden_size=9, n_layer=2).eval()
    short = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    alone = model(input_ids=short).logits[0, -1]
    batch_cache = model.new_cache(2)
    batched = model(input_ids=padded, attention_mask=mask, cache=batch_cache).logits
    torch.testing.assert_close(batched[0, -1], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched[1], model(input_ids=padded[1:]).logits[0], rtol=1e-5, atol=1e-6)


def test_generation_through_the_foundation_api_uses_the_state() -> None:
    torch.manual_seed(4)
    model = zf.create_model("lstm-tiny")
    prompts = torch.tensor([[0, 0, 3, 4, 5], [7, 8, 9, 10, 11]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    cached = generate_ids(model, prompts, mask, max_new_tokens=12, temperature=0)
    recomputed = generate_ids(model, prompts, mask, max_new_tokens=12, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)
    alone = generate_ids(model, prompts[:1, 2:], None, max_new_tokens=12, temperature=0)
    assert torch.equal(cached[0], alone[0])  # the padded prompt decodes as it would alone
    sampled = generate_ids(model, prompts, mask, max_new_tokens=12, temperature=1.0, seed=0)
    assert torch.equal(
        sampled, generate_ids(model, prompts, mask, max_new_tokens=12, temperature=1.0, seed=0)
    )


class Cycle:
    """Blocks of the repeating sequence 0 1 2 ... 9 0 1 ...: a perfectly predictable language."""

    def __init__(self, batch_size: int, block: int) -> None:
        self.batch_size, self.block, self.step = batch_size, block, 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        starts = torch.arange(self.batch_size) * 3 + self.step
        self.step += 1
        seq = (starts[:, None] + torch.arange(self.block + 1)) % 10  # (B, T + 1)
        return {"input_ids": seq[:, :-1], "labels": seq[:, 1:]}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trains_on_the_shared_trainer(cell: str) -> None:
    torch.manual_seed(5)
    model = zf.create_model(
        "rnn-lm", cell=cell, vocab_size=10, n_embd=8, hidden_size=32, n_layer=1, block_size=12
    )
    args = TrainArgs(
        max_steps=80,
        lr=3e-2,
        batch_size=8,
        progress=False,
        precision="fp32",
        log_every=10,
        schedule="constant",
    )
    result = train(model, Cycle(8, 12), args)
    assert result.history[0]["train_loss"] > 1.5  # ~ln(10) at the start
    assert result.train_loss < 0.1


def test_config_errors_and_types() -> None:
    assert isinstance(zf.create_model("gru-char-small"), RecurrentLM)
    with pytest.raises(ConfigError, match="model.cell: expected one of rnn, lstm, gru"):
        zf.create_model("rnn-lm", cell="transformer")
    with pytest.raises(ConfigError, match="model.hidden_size: must be >= 1"):
        zf.create_model("rnn-lm", hidden_size=0)
