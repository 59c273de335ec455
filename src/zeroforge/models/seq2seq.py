"""Encoder-decoder Transformer for translation (Vaswani et al. 2017), read top to bottom.

    source ids -> embed (x sqrt(d) when scaled) + positions -> n_encoder_layer blocks
               (self-attention over real tokens, MLP)                                 -> memory (B, S, C)
    target ids -> embed + positions -> n_decoder_layer blocks (causal self-attention,
               cross-attention to the memory, MLP) -> output layer (tied to the embedding) -> logits

- ``norm="pre"`` puts LayerNorm before each sub-layer and once more at the top of each stack (Xiong et
  al. 2020: trains without a warm-up-sensitive start); ``norm="post"`` is the original
  x = LayerNorm(x + sublayer(x)), which is Marian's layout (weights/marian.py writes it for transformers).
- ``positions``: ``sinusoidal`` (fixed; sin in the first half of the channels, cos in the second, the
  tensor2tensor/Marian layout of PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)) or
  ``learned`` (a table of ``max_positions`` rows).
- ``share_embeddings`` uses one token table for source and target (a shared BPE vocabulary);
  ``tie_output`` makes the output layer the decoder's token table (Press & Wolf 2017).
- Cross-attention reads the memory through the source's key padding mask: a padded source token
  never receives attention (tests/models/test_seq2seq.py checks it).

Decoding contract (``zeroforge.beam``): ``state = start_decoding(input_ids, attention_mask, max_length)``
runs the encoder once and projects every decoder layer's cross-attention keys/values once;
``decode_step(tokens, state)`` appends tokens to the decoder's self-attention ``KVCache`` and returns
their logits; ``state.reorder(index)`` keeps / repeats rows (beam search).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from zeroforge.errors import ZeroforgeError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.attention import attention, merge_heads, padding_mask, split_heads
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.losses import sequence_loss_and_metrics
from zeroforge.modules.masks import shift_right
from zeroforge.modules.mlp import MLP
from zeroforge.schema import preset_config, require, require_choices, require_positive, require_token_ids


@dataclass
class Seq2SeqConfig:
    """Defaults are Transformer-base (Vaswani et al. 2017, table 3): 6 + 6 layers, d 512, 8 heads, ff 2048."""

    vocab_size: int = 32000
    d_model: int = 512
    n_head: int = 8
    n_encoder_layer: int = 6
    n_decoder_layer: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    max_positions: int = 512
    """Longest source or target sequence (rows of a learned position table; a bound for sinusoids)."""
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    norm: Literal["pre", "post"] = "pre"
    activation: Literal["relu", "gelu", "gelu_tanh"] = "relu"
    share_embeddings: bool = True
    """One token table for source and target (needs a shared vocabulary)."""
    tie_output: bool = True
    """The output layer is the decoder's token table, transposed."""
    scale_embedding: bool = True
    """Multiply token embeddings by sqrt(d_model) (Vaswani et al. 3.4)."""
    label_smoothing: float = 0.1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    """The first decoder input (Marian's convention: the pad id)."""
    attention: Literal["auto", "sdpa", "naive"] = "auto"
    """``sdpa``: PyTorch's fused kernel; ``naive``: the formula written out; ``auto``: the fused kernel
    except where the written-out one is faster (bf16 training on CPU; modules/attention.py)."""

    def __post_init__(self) -> None:
        require_positive(
            self, "vocab_size", "d_model", "n_head", "n_encoder_layer", "n_decoder_layer", "d_ff"
        )
        require_positive(self, "max_positions")
        require(self.d_model % self.n_head == 0, "d_model", f"must be divisible by n_head ({self.n_head})")
        require(self.d_model % 2 == 0, "d_model", "must be even (sinusoids come in sin/cos pairs)")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(
            0.0 <= self.label_smoothing < 1.0,
            "label_smoothing",
            f"must be in [0, 1), got {self.label_smoothing}",
        )
        require_token_ids(self, "pad_token_id", "eos_token_id", "decoder_start_token_id")
        require_choices(self)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> Seq2SeqConfig:
        return preset_config(cls, PRESETS, name, **overrides)


def sinusoids(n_positions: int, dim: int) -> torch.Tensor:
    """(n_positions, dim): sin(pos * w_i) in channels [0, dim/2), cos(pos * w_i) in [dim/2, dim),
    w_i = 1 / 10000^(2i/dim) (Vaswani et al. 3.5, in tensor2tensor's channel order)."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = pos * inv_freq  # (P, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


class MultiHeadAttention(nn.Module):
    """softmax(QK^T / sqrt(d_k)) V over ``n_head`` heads; q from ``x``, k/v from ``x`` (self) or the
    memory (cross). Names follow Marian (q_proj, k_proj, v_proj, out_proj)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        d = config.d_model
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.n_head, self.dropout, self.impl = config.n_head, config.dropout, config.attention

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``memory`` (B, S, C) -> 2 x (B, nh, S, hs); cached once for cross-attention."""
        return split_heads(self.k_proj(memory), self.n_head), split_heads(self.v_proj(memory), self.n_head)

    def forward(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.n_head)  # (B, nh, T, hs)
        p = self.dropout if self.training else 0.0
        y = attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=p, impl=self.impl)  # (B, nh, T, hs)
        return self.out_proj(merge_heads(y))  # (B, T, C)


def sublayer(x: torch.Tensor, norm: nn.LayerNorm, fn: Any, dropout: nn.Dropout, pre: bool) -> torch.Tensor:
    """A residual sublayer: x + sublayer(LN(x)) (pre-LN) or LN(x + sublayer(x)) (post-LN, Vaswani et al. 2017)."""
    if pre:
        return x + dropout(fn(norm(x)))
    return norm(x + dropout(fn(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        eps = config.layer_norm_eps
        self.self_attn = MultiHeadAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.mlp = MLP(config.d_model, config.d_ff, activation=config.activation)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.dropout = nn.Dropout(config.dropout)
        self.pre = config.norm == "pre"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = sublayer(
            x,
            self.self_attn_layer_norm,
            lambda h: self.self_attn(h, *self.self_attn.project_kv(h), mask=mask),
            self.dropout,
            self.pre,
        )
        return sublayer(x, self.final_layer_norm, self.mlp, self.dropout, self.pre)


class DecoderLayer(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        eps = config.layer_norm_eps
        self.self_attn = MultiHeadAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.encoder_attn = MultiHeadAttention(config)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.mlp = MLP(config.d_model, config.d_ff, activation=config.activation)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.dropout = nn.Dropout(config.dropout)
        self.pre = config.norm == "pre"

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None,
        is_causal: bool,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        cross_mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        def self_attention(h: torch.Tensor) -> torch.Tensor:
            k, v = self.self_attn.project_kv(h)  # (B, nh, T, hs)
            if cache is not None:
                k, v = cache.update(layer, k, v)  # (B, nh, L + T, hs): every target token so far
            return self.self_attn(h, k, v, mask=self_mask, is_causal=is_causal)

        x = sublayer(x, self.self_attn_layer_norm, self_attention, self.dropout, self.pre)
        x = sublayer(
            x,
            self.encoder_attn_layer_norm,
            lambda h: self.encoder_attn(h, *cross_kv, mask=cross_mask),
            self.dropout,
            self.pre,
        )
        return sublayer(x, self.final_layer_norm, self.mlp, self.dropout, self.pre)


class Embeddings(nn.Module):
    """Token table (x sqrt(d) when scaled) + positions, then dropout."""

    def __init__(self, config: Seq2SeqConfig, tokens: nn.Embedding) -> None:
        super().__init__()
        self.embed_tokens = tokens
        self.scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        if config.positions == "learned":
            self.embed_positions: nn.Embedding | None = nn.Embedding(config.max_positions, config.d_model)
            self.register_buffer("sinusoids", None, persistent=False)
        else:
            self.embed_positions = None
            self.register_buffer(
                "sinusoids", sinusoids(config.max_positions, config.d_model), persistent=False
            )
        self.dropout = nn.Dropout(config.dropout)
        self.max_positions = config.max_positions

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if int(positions.max()) >= self.max_positions:
            raise ZeroforgeError(
                f"sequence of {int(positions.max()) + 1} tokens exceeds max_positions {self.max_positions}"
            )
        x = self.embed_tokens(input_ids) * self.scale  # (B, T, C)
        pos = (
            self.embed_positions(positions) if self.embed_positions is not None else self.sinusoids[positions]
        )
        return self.dropout(x + pos)


@dataclass
class Seq2SeqState:
    """What decoding carries between steps: the memory's padding mask, each decoder layer's cached
    cross-attention keys/values, and the self-attention KV cache."""

    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
    cross_mask: torch.Tensor | None  # bool (B, 1, 1, S), True = real source token
    cache: KVCache

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (B',) of every tensor: beam search's survivors (repeats allowed)."""
        self.cross_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross_kv]
        if self.cross_mask is not None:
            self.cross_mask = self.cross_mask.index_select(0, index)
        c = self.cache
        c.keys = [k.index_select(0, index) for k in c.keys]
        c.values = [v.index_select(0, index) for v in c.values]
        c.key_padding_mask = c.key_padding_mask.index_select(0, index)
        c.next_position = c.next_position.index_select(0, index)
        c.batch_size = int(index.numel())


def translation_example_batch(vocab_size: int, batch_size: int) -> dict[str, torch.Tensor]:
    """A tiny random source/target batch, the first source right-padded (the registry smoke test)."""
    input_ids = torch.randint(3, vocab_size, (batch_size, 7))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 5:] = 0
    labels = torch.randint(3, vocab_size, (batch_size, 5))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class Seq2SeqTransformer(nn.Module):
    """The encoder-decoder; ``forward(input_ids, attention_mask, decoder_input_ids, labels)``."""

    config_class = Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        V, d = config.vocab_size, config.d_model
        source_table = nn.Embedding(V, d, padding_idx=config.pad_token_id)
        target_table = (
            source_table if config.share_embeddings else nn.Embedding(V, d, padding_idx=config.pad_token_id)
        )
        self.encoder_embed = Embeddings(config, source_table)
        self.decoder_embed = Embeddings(config, target_table)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layer))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layer))
        pre = config.norm == "pre"  # a pre-LN stack ends un-normalised: one LayerNorm at the top of each
        self.encoder_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if pre else nn.Identity()
        self.output_layer = nn.Linear(d, V, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(V))  # Marian has one; zero unless imported
        self.apply(self._init_weights)
        if config.tie_output:
            self.output_layer.weight = target_table.weight

    def _init_weights(self, module: nn.Module) -> None:
        # Xavier-uniform Linear layers (as fairseq's transformer); N(0, d^-1/2) tokens, so that the
        # sqrt(d) scale gives unit-variance embeddings
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.d_model**-0.5)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    # ------------------------------------------------------------------------- encoder

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) source ids (+ (B, S) mask, 1 = real) -> memory (B, S, C)."""
        S = input_ids.size(1)
        positions = torch.arange(S, device=input_ids.device)[None]  # (1, S): padding is on the right
        mask = None if attention_mask is None or bool(attention_mask.all()) else padding_mask(attention_mask)
        x = self.encoder_embed(input_ids, positions)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    # ------------------------------------------------------------------------- decoder

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        cross_kv: list[tuple[torch.Tensor, torch.Tensor]],
        cross_mask: torch.Tensor | None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Target ids (B, T) -> logits (B, T, V), attending the cached memory keys/values."""
        T = decoder_input_ids.size(1)
        if cache is not None:
            positions, self_mask, is_causal = cache.prepare(T)
        else:
            positions = torch.arange(T, device=decoder_input_ids.device)[None]
            self_mask, is_causal = None, True
        x = self.decoder_embed(decoder_input_ids, positions)
        for i, layer in enumerate(self.decoder_layers):
            x = layer(x, self_mask, is_causal, cross_kv[i], cross_mask, cache, i)
        if cache is not None:
            cache.advance(T)
        return self.output_layer(self.decoder_norm(x)) + self.final_logits_bias  # (B, T, V)

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.encoder_attn.project_kv(memory) for layer in self.decoder_layers]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Teacher forcing: logits (B, T, V) for ``decoder_input_ids`` (default: the start token then
        ``labels`` shifted right); with ``labels`` (-100 = ignore) the label-smoothed cross-entropy."""
        if decoder_input_ids is None:
            source = labels if labels is not None else input_ids
            decoder_input_ids = shift_right(source, self.config.decoder_start_token_id)
        memory = self.encode(input_ids, attention_mask)
        cross_mask = (
            None if attention_mask is None or bool(attention_mask.all()) else padding_mask(attention_mask)
        )
        logits = self.decode(decoder_input_ids, self.cross_kv(memory), cross_mask)
        if labels is None:
            return ModelOutput(logits=logits)
        loss, metrics = sequence_loss_and_metrics(logits, labels, self.config.label_smoothing)
        return ModelOutput(logits=logits, loss=loss, metrics=metrics)

    def example_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A tiny random batch with right padding on the source (the registry smoke test)."""
        return translation_example_batch(self.config.vocab_size, batch_size)

    # ------------------------------------------------------------------------- decoding contract

    @torch.no_grad()
    def start_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_length: int
    ) -> Seq2SeqState:
        """Encode once, project each decoder layer's cross-attention K/V once, allocate the KV cache."""
        memory = self.encode(input_ids, attention_mask)
        cross_mask = (
            None if attention_mask is None or bool(attention_mask.all()) else padding_mask(attention_mask)
        )
        c = self.config
        p = next(self.parameters())
        cache = KVCache(
            c.n_decoder_layer,
            input_ids.size(0),
            c.n_head,
            c.d_model // c.n_head,
            max_length,
            p.device,
            memory.dtype,
        )
        return Seq2SeqState(self.cross_kv(memory), cross_mask, cache)

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, state: Seq2SeqState) -> torch.Tensor:
        """tokens (B, T) appended to the cached target -> logits (B, T, V)."""
        return self.decode(tokens, state.cross_kv, state.cross_mask, state.cache)


_BASE = dict(d_model=512, n_head=8, n_encoder_layer=6, n_decoder_layer=6, d_ff=2048, dropout=0.1)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "transformer-base": ("seq2seq", dict(_BASE, vocab_size=32000)),  # Vaswani et al. 2017, ~60M
    # a CPU size: 3 + 3 layers, 256 wide, an 8k shared BPE (recipes/translate-en-es.yaml shrinks it
    # further, to 2 + 2 layers 128 wide, for a 2-core machine shared with other jobs)
    "transformer-cpu": (
        "seq2seq",
        dict(
            d_model=256,
            n_head=4,
            n_encoder_layer=3,
            n_decoder_layer=3,
            d_ff=1024,
            dropout=0.1,
            vocab_size=8000,
            max_positions=256,
        ),
    ),
    "transformer-tiny": (
        "seq2seq",
        dict(
            d_model=32,
            n_head=4,
            n_encoder_layer=2,
            n_decoder_layer=2,
            d_ff=64,
            dropout=0.0,
            vocab_size=64,
            max_positions=64,
        ),
    ),
}
