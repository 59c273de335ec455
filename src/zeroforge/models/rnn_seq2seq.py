"""GRU encoder-decoder with additive attention (Bahdanau, Cho & Bengio 2015, "RNNsearch"): the
translation baseline the Transformer is measured against.

    encoder: h_j = [GRU_fwd(x_1..x_j); GRU_bwd(x_j..x_S)]                 bidirectional, (B, S, 2H)
    s_0 = tanh(W_init mean_j h_j)                                         over real source tokens
    step t:  e_tj = v^T tanh(W_s s_{t-1} + U_h h_j)                        alignment scores (B, S)
             a_t = softmax_j(e_tj) (padded j masked out);  c_t = sum_j a_tj h_j
             s_t = GRUCell([E y_{t-1}; c_t], s_{t-1})
             logits_t = W_o tanh(L [s_t; c_t; E y_{t-1}])                  (a deep output, sec. A.2.2)

The encoder runs torch's fused GRU kernel (as ``RecurrentLM``'s ``impl="fused"``, over packed
sequences so right padding never enters the backward direction); the decoder steps ``GRUCell`` from
models/rnn.py, whose written-out cell is tested equal to torch's. U_h h_j is computed once per source
and cached, like a Transformer's cross-attention keys.

Decoding contract (``zeroforge.beam``): ``start_decoding`` / ``decode_step`` / ``state.reorder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zeroforge.models.output import ModelOutput
from zeroforge.models.rnn import GRUCell
from zeroforge.models.seq2seq import translation_example_batch
from zeroforge.modules.losses import sequence_loss_and_metrics
from zeroforge.modules.masks import shift_right
from zeroforge.schema import preset_config, require, require_positive, require_token_ids


@dataclass
class GRUSeq2SeqConfig:
    vocab_size: int = 8000
    embed_dim: int = 256
    hidden_size: int = 256
    """H: each encoder direction and the decoder state."""
    attention_size: int = 256
    dropout: float = 0.1
    label_smoothing: float = 0.1
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    def __post_init__(self) -> None:
        require_positive(self, "vocab_size", "embed_dim", "hidden_size", "attention_size")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(
            0.0 <= self.label_smoothing < 1.0,
            "label_smoothing",
            f"must be in [0, 1), got {self.label_smoothing}",
        )
        require_token_ids(self, "pad_token_id", "eos_token_id", "decoder_start_token_id")

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> GRUSeq2SeqConfig:
        return preset_config(cls, PRESETS, name, **overrides)


@dataclass
class GRUState:
    """The decoder's state between steps: the annotations h_j, their cached keys U_h h_j, the source
    mask and s_{t-1}."""

    memory: torch.Tensor  # (B, S, 2H)
    keys: torch.Tensor  # (B, S, A)
    mask: torch.Tensor  # (B, S) bool, True = real source token
    hidden: torch.Tensor  # (B, H)

    def reorder(self, index: torch.Tensor) -> None:
        self.memory, self.keys = self.memory.index_select(0, index), self.keys.index_select(0, index)
        self.mask, self.hidden = self.mask.index_select(0, index), self.hidden.index_select(0, index)


class GRUSeq2Seq(nn.Module):
    config_class = GRUSeq2SeqConfig

    def __init__(self, config: GRUSeq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        V, E, H, A = config.vocab_size, config.embed_dim, config.hidden_size, config.attention_size
        self.embed = nn.Embedding(V, E, padding_idx=config.pad_token_id)  # shared BPE: one table
        self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(2 * H, H)
        self.attn_query = nn.Linear(H, A, bias=False)  # W_s
        self.attn_key = nn.Linear(2 * H, A)  # U_h
        self.attn_v = nn.Linear(A, 1, bias=False)  # v
        self.cell = GRUCell(E + 2 * H, H)
        self.deep_output = nn.Linear(H + 2 * H + E, E)
        self.output_layer = nn.Linear(E, V)
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> GRUState:
        mask = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        lengths = mask.sum(1).clamp(min=1).cpu()
        x = self.dropout(self.embed(input_ids))  # (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=input_ids.size(1))
        mean = (memory * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # (B, 2H)
        hidden = torch.tanh(self.init_state(mean))  # s_0 (B, H)
        return GRUState(memory, self.attn_key(memory), mask, hidden)

    def _step(self, y_prev: torch.Tensor, state: GRUState) -> torch.Tensor:
        """One target token (B,) -> logits (B, V); advances ``state.hidden``."""
        emb = self.dropout(self.embed(y_prev))  # (B, E)
        scores = self.attn_v(torch.tanh(self.attn_query(state.hidden)[:, None] + state.keys)).squeeze(
            -1
        )  # (B, S)
        weights = scores.masked_fill(~state.mask, float("-inf")).softmax(-1)  # a_t (B, S)
        context = (weights[:, :, None] * state.memory).sum(1)  # c_t (B, 2H)
        state.hidden = self.cell(torch.cat([emb, context], -1), state.hidden)  # s_t (B, H)
        deep = torch.tanh(self.deep_output(torch.cat([state.hidden, context, emb], -1)))  # (B, E)
        return self.output_layer(self.dropout(deep))  # (B, V)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        if decoder_input_ids is None:
            source = labels if labels is not None else input_ids
            decoder_input_ids = shift_right(source, self.config.decoder_start_token_id)
        state = self.encode(input_ids, attention_mask)
        logits = torch.stack(
            [self._step(decoder_input_ids[:, t], state) for t in range(decoder_input_ids.size(1))], 1
        )
        if labels is None:
            return ModelOutput(logits=logits)
        loss, metrics = sequence_loss_and_metrics(logits, labels, self.config.label_smoothing)
        return ModelOutput(logits=logits, loss=loss, metrics=metrics)

    def example_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        return translation_example_batch(self.config.vocab_size, batch_size)

    @torch.no_grad()
    def start_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_length: int
    ) -> GRUState:
        return self.encode(input_ids, attention_mask)

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, state: GRUState) -> torch.Tensor:
        return torch.stack([self._step(tokens[:, t], state) for t in range(tokens.size(1))], 1)  # (B, T, V)


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "gru-attention-cpu": (
        "gru-seq2seq",
        dict(embed_dim=256, hidden_size=256, attention_size=256, vocab_size=8000),
    ),
    "gru-attention-tiny": (
        "gru-seq2seq",
        dict(embed_dim=16, hidden_size=16, attention_size=16, vocab_size=64, dropout=0.0),
    ),
}
