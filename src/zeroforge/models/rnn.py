"""Recurrent language models: vanilla RNN, LSTM and GRU, character-level on the shared trainer.

The recurrence (Elman 1990), one step per token::

    h_t = f(W x_t + U h_{t-1} + b)                                   vanilla RNN, f = tanh

and its gated descendants (the gate order and two bias vectors follow torch.nn, so weights copy over):

    LSTM (Hochreiter & Schmidhuber 1997)        GRU (Cho et al. 2014)
    i = σ(W_i x + U_i h + b_i)   input gate      r = σ(W_r x + U_r h + b_r)          reset gate
    f = σ(W_f x + U_f h + b_f)   forget gate     z = σ(W_z x + U_z h + b_z)          update gate
    g = tanh(W_g x + U_g h + b_g)                n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn))
    o = σ(W_o x + U_o h + b_o)   output gate     h' = (1 - z) ⊙ n + z ⊙ h
    c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')

``rnn_cell`` / ``lstm_cell`` / ``gru_cell`` write these out; the ``RNNCell``/``LSTMCell``/``GRUCell``
modules hold the weights in torch.nn's layout and are tested equal to torch's cells. ``RecurrentLM`` runs
torch's fused multi-layer kernel (``impl="fused"``, fast) or unrolls the written-out cells over time
(``impl="cells"``, the reference; also used whenever an attention mask marks padding, since a padding
step must leave the state untouched).

Decoding: ``new_cache`` returns a ``RecurrentState`` (the hidden state, plus the cell state for LSTM);
``forward(input_ids, cache=state)`` continues from it and updates it in place, so the Foundation's
step-level generation treats it exactly like a transformer's KV cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.models.output import ModelOutput
from zeroforge.schema import require, require_positive

CellName = Literal["rnn", "lstm", "gru"]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # rows of W per hidden unit

# ----------------------------------------------------------------------------- the cells, written out


def rnn_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """h_t = tanh(W x_t + U h_{t-1} + b), with W = w_ih (H, I), U = w_hh (H, H), b = b_ih + b_hh.

    x (B, I), h (B, H) -> (B, H).
    """
    pre = x @ w_ih.T + h @ w_hh.T  # (B, H)  W x_t + U h_{t-1}
    if b_ih is not None:
        pre = pre + b_ih + b_hh
    return torch.tanh(pre)


def lstm_cell(
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: (h, c) (B, H) each -> (h', c'). w_ih (4H, I), w_hh (4H, H), gates stacked i, f, g, o."""
    h, c = state
    gates = x @ w_ih.T + h @ w_hh.T  # (B, 4H)
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # forget part of the old memory, write the gated candidate
    h = o * torch.tanh(c)  # expose the gated memory
    return h, c


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One GRU step: h (B, H) -> h'. w_ih (3H, I), w_hh (3H, H), gates stacked r, z, n."""
    gi = x @ w_ih.T  # (B, 3H)
    gh = h @ w_hh.T  # (B, 3H)
    if b_ih is not None:
        gi, gh = gi + b_ih, gh + b_hh
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)  # the reset gate scales U_n h (+ its bias), as torch and cuDNN do
    return (1.0 - z) * n + z * h  # interpolate between the candidate and the old state


class _Cell(nn.Module):
    """Weights in torch.nn.*Cell's layout: weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh."""

    kind: CellName = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        rows = GATES[self.kind] * hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        bound = 1.0 / math.sqrt(hidden_size)  # torch's U(-1/sqrt(H), 1/sqrt(H)) for every tensor
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


class RNNCell(_Cell):
    kind = "rnn"

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h
        return rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class LSTMCell(_Cell):
    kind = "lstm"

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        return lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(_Cell):
    kind = "gru"

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h
        return gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


# ----------------------------------------------------------------------------- the recurrent state (cache)


@dataclass
class RecurrentState:
    """The decoding cache of a recurrent LM: h (n_layer, B, H), and c (n_layer, B, H) for LSTM.

    Unlike a KV cache it does not grow: ``length`` only counts the tokens consumed so far.
    """

    h: torch.Tensor
    c: torch.Tensor | None = None
    length: int = 0

    @property
    def batch_size(self) -> int:
        return self.h.shape[1]

    def as_torch(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.h if self.c is None else (self.h, self.c)


# ----------------------------------------------------------------------------- the language model


@dataclass
class RNNLMConfig:
    """A character-level LM: embedding -> n_layer recurrent layers -> Linear to the vocabulary."""

    cell: CellName = "lstm"
    vocab_size: int = 96
    n_embd: int = 128
    """Token embedding size (the input size of the first layer)."""
    hidden_size: int = 256
    n_layer: int = 2
    dropout: float = 0.0
    """On the embeddings, between layers and before the output layer."""
    block_size: int = 128
    """Training sequence length (the trainer's default; the model itself has no length limit)."""
    impl: Literal["fused", "cells"] = "fused"
    """``fused``: torch's nn.RNN/LSTM/GRU kernel; ``cells``: the written-out cells unrolled in Python."""

    def __post_init__(self) -> None:
        require(self.cell in GATES, "cell", f"expected rnn, lstm or gru, got {self.cell!r}")
        require_positive(self, "vocab_size", "n_embd", "hidden_size", "n_layer", "block_size")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.impl in ("fused", "cells"), "impl", f"expected fused or cells, got {self.impl!r}")


_CELL_FUNCTIONS = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}
_TORCH_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLM(nn.Module):
    config_class = RNNLMConfig

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        # torch's layer owns the weights (weight_ih_l0, weight_hh_l0, ...) for both implementations
        self.rnn = _TORCH_LAYERS[config.cell](
            config.n_embd,
            config.hidden_size,
            num_layers=config.n_layer,
            batch_first=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.lm_head.weight, std=0.02)
        nn.init.zeros_(self.lm_head.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(
        self,
        batch_size: int,
        max_length: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> RecurrentState:
        """A zero state for ``batch_size`` sequences (``max_length`` is accepted for the shared contract:
        the state does not grow with the sequence)."""
        weight = self.lm_head.weight
        shape = (self.config.n_layer, batch_size, self.config.hidden_size)
        zeros = lambda: torch.zeros(shape, device=device or weight.device, dtype=dtype or weight.dtype)  # noqa: E731
        return RecurrentState(h=zeros(), c=zeros() if self.config.cell == "lstm" else None)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        cache: RecurrentState | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T) -> logits (B, T, vocab_size).

        labels (B, T): the already-shifted next tokens (-100 = ignore) -> mean cross-entropy.
        cache: a ``RecurrentState``; the run starts from it and it is updated in place.
        attention_mask (B, T) (or (B, past + T)): 0 marks padding, whose steps leave the state unchanged.
        position_ids: accepted for the shared contract and ignored (a recurrence needs no positions).
        """
        B, T = input_ids.shape
        x = self.drop(self.wte(input_ids))  # (B, T, n_embd)
        state = None if cache is None else cache.as_torch()
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, -T:].bool()  # (B, T)
            if bool(mask.all()):
                mask = None
        if self.config.impl == "cells" or mask is not None:
            out, new_state = self._unrolled(x, state, mask)
        else:
            out, new_state = self.rnn(x, state)  # (B, T, H)
        logits = self.lm_head(self.drop(out))  # (B, T, vocab_size)

        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        if cache is not None:
            if isinstance(new_state, tuple):
                cache.h, cache.c = new_state
            else:
                cache.h = new_state
            cache.length += T
        return ModelOutput(logits=logits, loss=loss, cache=cache)

    def _unrolled(
        self,
        x: torch.Tensor,
        state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """The written-out cells, layer by layer and step by step, on the weights of ``self.rnn``.

        Where ``mask`` (B, T) is False the state is carried over unchanged (a padding step).
        """
        cfg = self.config
        B, T, _ = x.shape
        cell = _CELL_FUNCTIONS[cfg.cell]
        if state is None:
            zeros = x.new_zeros(cfg.n_layer, B, cfg.hidden_size)
            state = (zeros, zeros.clone()) if cfg.cell == "lstm" else zeros
        h_all = state[0] if isinstance(state, tuple) else state  # (n_layer, B, H)
        c_all = state[1] if isinstance(state, tuple) else None
        h_out, c_out = [], []
        layer_in = x  # (B, T, I)
        for layer in range(cfg.n_layer):
            w_ih, w_hh = getattr(self.rnn, f"weight_ih_l{layer}"), getattr(self.rnn, f"weight_hh_l{layer}")
            b_ih, b_hh = getattr(self.rnn, f"bias_ih_l{layer}"), getattr(self.rnn, f"bias_hh_l{layer}")
            h = h_all[layer]  # (B, H)
            c = None if c_all is None else c_all[layer]
            steps = []
            for t in range(T):
                if c is not None:
                    h_new, c_new = cell(layer_in[:, t], (h, c), w_ih, w_hh, b_ih, b_hh)
                else:
                    h_new, c_new = cell(layer_in[:, t], h, w_ih, w_hh, b_ih, b_hh), None
                if mask is not None:
                    keep = mask[:, t, None]  # (B, 1)
                    h_new = torch.where(keep, h_new, h)
                    c_new = None if c is None else torch.where(keep, c_new, c)
                h, c = h_new, c_new
                steps.append(h)
            h_out.append(h)
            if c is not None:
                c_out.append(c)
            layer_in = torch.stack(steps, dim=1)  # (B, T, H)
            if layer < cfg.n_layer - 1:
                layer_in = F.dropout(layer_in, cfg.dropout, self.training)  # as nn.LSTM between layers
        new_h = torch.stack(h_out)  # (n_layer, B, H)
        return layer_in, ((new_h, torch.stack(c_out)) if c_all is not None else new_h)


# ----------------------------------------------------------------------------- presets

# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # character-level models matched to gpt-char-small (812,288 parameters with the 84-character Shakespeare
    # vocabulary): LSTM 806,756, GRU 791,700, vanilla RNN 818,900
    "lstm-char-small": ("rnn-lm", dict(cell="lstm", n_embd=64, hidden_size=244, n_layer=2, block_size=64)),
    "gru-char-small": ("rnn-lm", dict(cell="gru", n_embd=64, hidden_size=280, n_layer=2, block_size=64)),
    "rnn-char-small": ("rnn-lm", dict(cell="rnn", n_embd=64, hidden_size=496, n_layer=2, block_size=64)),
    # for tests
    "lstm-tiny": (
        "rnn-lm",
        dict(cell="lstm", vocab_size=64, n_embd=16, hidden_size=32, n_layer=2, block_size=16),
    ),
}
