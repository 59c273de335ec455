"""Llama-family decoder-only transformer (Llama 2/3, SmolLM2, TinyLlama), read top to bottom.

Token embedding -> n_layer pre-norm blocks (RMSNorm, grouped-query causal self-attention with rotary
position embeddings, RMSNorm, SwiGLU feed-forward) -> final RMSNorm -> lm_head (tied to the embedding
when ``tie_word_embeddings``). No biases and no learned positions.

Parameter names are Hugging Face's ``LlamaForCausalLM`` ones (``model.layers.0.self_attn.q_proj``...),
so HF checkpoints map one to one; ``zeroforge.weights`` also maps GGUF (llama.cpp) names onto them.
The model contract is GPT's (models/gpt.py): ``hidden_states``, ``output_layer``, ``blocks``, ``final_norm``;
what the two decoders share (those members, the KV cache, the loss) is ``DecoderLM`` (models/decoder_lm.py).

References: Touvron et al. 2023 (Llama, Llama 2); Su et al. 2021 (RoPE); Shazeer 2020 (SwiGLU);
Ainslie et al. 2023 (grouped-query attention); Allal et al. 2025 (SmolLM2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.models.decoder_lm import DecoderLM
from zeroforge.modules.attention import attention, merge_heads, split_heads
from zeroforge.modules.init import normal_init_
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.masks import DecoderInputs
from zeroforge.modules.norm import RMSNorm
from zeroforge.modules.rope import RotaryEmbedding, apply_rotary
from zeroforge.schema import preset_config, require, require_choices, require_positive


@dataclass
class LlamaConfig:
    """Defaults are SmolLM2-135M (HuggingFaceTB), a 30-layer, 576-wide Llama."""

    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3
    """Key/value heads; ``n_head`` for plain multi-head attention, fewer for grouped-query attention."""
    n_embd: int = 576
    intermediate_size: int = 1536
    """Hidden width of the SwiGLU feed-forward network."""
    vocab_size: int = 49152
    block_size: int = 8192
    """Longest sequence (HF's ``max_position_embeddings``); RoPE itself has no table to outgrow."""
    head_dim: int | None = None
    """Per-head size; default n_embd // n_head."""
    rope_theta: float = 100000.0
    """RoPE base: theta_i = rope_theta^(-2i/head_dim)."""
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    dropout: float = 0.0
    """Residual dropout for fine-tuning (pretrained Llamas use none)."""
    attention: Literal["sdpa", "naive"] = "sdpa"
    """``sdpa``: PyTorch's fused kernel; ``naive``: softmax(QK^T/sqrt(d_k))V written out (reference)."""

    def __post_init__(self) -> None:
        require_positive(
            self, "n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size", "vocab_size", "block_size"
        )
        if self.head_dim is None:
            require(
                self.n_embd % self.n_head == 0,
                "n_embd",
                f"must be divisible by n_head ({self.n_head}) unless head_dim is set, got {self.n_embd}",
            )
            self.head_dim = self.n_embd // self.n_head
        require(
            self.head_dim >= 2 and self.head_dim % 2 == 0, "head_dim", f"must be even, got {self.head_dim}"
        )
        require(
            self.n_head % self.n_kv_head == 0,
            "n_kv_head",
            f"must divide n_head ({self.n_head}), got {self.n_kv_head}",
        )
        require(self.rope_theta > 0, "rope_theta", f"must be > 0, got {self.rope_theta}")
        require(self.rms_norm_eps > 0, "rms_norm_eps", f"must be > 0, got {self.rms_norm_eps}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require_choices(self)  # attention

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> LlamaConfig:
        """A preset's config (``LlamaConfig.from_name("smollm2-135m", n_layer=4)``)."""
        return preset_config(cls, PRESETS, name, **overrides)


# RoPE's (cos, sin) tables for the batch's positions, (B|1, T, hs) each (modules/rope.py)
Rotation = tuple[torch.Tensor, torch.Tensor]


class LlamaAttention(nn.Module):
    """Causal self-attention with RoPE on q and k, and ``n_kv_head`` key/value heads (GQA)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hs = config.head_dim
        assert hs is not None  # set by __post_init__
        self.q_proj = nn.Linear(config.n_embd, config.n_head * hs, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * hs, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * hs, bias=False)
        self.o_proj = nn.Linear(config.n_head * hs, config.n_embd, bias=False)
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.impl = config.attention
        self.qkv_proj: nn.Module | None = None  # q, k, v in one product: decoding copies (fuse_projections)
        self.split_sizes = [config.n_head * hs, config.n_kv_head * hs, config.n_kv_head * hs]

    def forward(
        self, x: torch.Tensor, rope: Rotation, inputs: DecoderInputs, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        cos, sin = rope
        if self.qkv_proj is None:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        else:
            q, k, v = self.qkv_proj(x).split(self.split_sizes, dim=-1)
        q = apply_rotary(split_heads(q, self.n_head), cos, sin)  # (B, nh, T, hs)
        k = apply_rotary(split_heads(k, self.n_kv_head), cos, sin)  # (B, nkv, T, hs)
        v = split_heads(v, self.n_kv_head)  # (B, nkv, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nkv, L+T, hs): keys are cached already rotated
        B, nh, T, hs = q.shape
        if T == 1 and inputs.mask is None and nh != self.n_kv_head:
            # one query per head attending every key (a decode step): the query heads sharing a K/V
            # head become that head's rows, so K and V are read as they are, not repeated per group
            q = q.reshape(B, self.n_kv_head, nh // self.n_kv_head, hs)  # (B, nkv, groups, hs)
            y = attention(q, k, v, impl=self.impl).view(B, nh, 1, hs)  # (B, nh, 1, hs)
        else:
            mask, is_causal = inputs.mask, inputs.is_causal
            y = attention(q, k, v, mask=mask, is_causal=is_causal, impl=self.impl)  # (B, nh, T, hs)
        return self.o_proj(merge_heads(y))  # (B, T, C)


class SwiGLU(nn.Module):
    """Gated feed-forward network (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, n_embd: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(n_embd, hidden, bias=False)
        self.up_proj = nn.Linear(n_embd, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, n_embd, bias=False)
        self.gate_up_proj: nn.Module | None = None  # gate and up in one product: decoding copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is None:
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)  # (B, T, C)


class LlamaBlock(nn.Module):
    """Pre-norm block: x + attn(rmsnorm(x)), then x + mlp(rmsnorm(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = SwiGLU(config.n_embd, config.intermediate_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, rope: Rotation, inputs: DecoderInputs, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), rope, inputs, cache, layer))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class Llama(DecoderLM):
    config_class = LlamaConfig
    lora_targets = ("q_proj", "v_proj")  # LoRA's default targets (modules/lora.py)

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        assert config.head_dim is not None  # set by __post_init__
        self.config = config
        # ``model`` holds the decoder as HF's LlamaModel does, so parameter names match its checkpoints.
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(config.vocab_size, config.n_embd),
                layers=nn.ModuleList([LlamaBlock(config) for _ in range(config.n_layer)]),
                norm=RMSNorm(config.n_embd, config.rms_norm_eps),
            )
        )
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.lm_head: nn.Linear | None = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(normal_init_)  # N(0, 0.02) for every matrix, as HF's initializer_range
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight  # Press & Wolf 2017

    def fuse_projections(self) -> None:
        """Compute q, k, v with one matrix product, and the SwiGLU gate and up with another (in place).

        Only for a decoding copy (``generation.decoding_model``), never for a model that is trained or
        saved: a one-token step then reads two long weight matrices per block instead of five. The
        fused weights are new tensors and the separate layers are removed from this module (their
        weights stay with the model the copy was made from), so no layer is prepared twice.
        """
        for block in self.model.layers:
            attn, mlp = block.self_attn, block.mlp
            attn.qkv_proj = _concat_linear(attn.q_proj, attn.k_proj, attn.v_proj)
            mlp.gate_up_proj = _concat_linear(mlp.gate_proj, mlp.up_proj)
            attn.q_proj = attn.k_proj = attn.v_proj = mlp.gate_proj = mlp.up_proj = None

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def final_norm(self) -> nn.Module:
        """The final RMSNorm ``model.norm``."""
        return self.model.norm

    def cache_layout(self) -> tuple[int, int]:
        """(n_kv_head, head_dim): grouped-query attention shrinks the cache by n_head / n_kv_head."""
        assert self.config.head_dim is not None  # set by __post_init__
        return self.config.n_kv_head, self.config.head_dim

    def run_layers(
        self, input_ids: torch.Tensor, inputs: DecoderInputs, cache: KVCache | None
    ) -> torch.Tensor:
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        rope = self.rotary(inputs.positions, x.dtype)  # cos, sin (B|1, T, hs) each, shared by every layer
        for i, block in enumerate(self.model.layers):
            x = block(x, rope, inputs, cache, i)
        return self.model.norm(x)  # (B, T, C)


def _concat_linear(*layers: nn.Linear) -> nn.Linear:
    """One bias-free Linear whose output is the layers' outputs side by side (an inference copy).

    The weight is stored (in, out) and viewed as (out, in): the transposed layout a decoding copy
    multiplies one row by (modules/weight_only.TransposedLinear), so that layout costs no second copy.
    """
    weight_t = torch.cat([layer.weight.detach().t() for layer in layers], dim=1)  # (in, sum of out)
    fused = nn.Linear(weight_t.size(0), weight_t.size(1), bias=False, device="meta")
    fused.weight = nn.Parameter(weight_t.t(), requires_grad=False)  # (sum of out, in), a view
    return fused


# ----------------------------------------------------------------------------- presets

# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # HuggingFaceTB/SmolLM2-135M(-Instruct): the shipped GGUF's metadata says exactly this
    "smollm2-135m": ("llama", {}),
    # HuggingFaceTB/SmolLM2-360M(-Instruct)
    "smollm2-360m": (
        "llama",
        dict(n_layer=32, n_head=15, n_kv_head=5, n_embd=960, intermediate_size=2560),
    ),
    # TinyLlama/TinyLlama-1.1B (Zhang et al. 2024): Llama 2 tokenizer, 4 key/value heads for 32 query heads
    "tinyllama-1.1b": (
        "llama",
        dict(
            n_layer=22,
            n_head=32,
            n_kv_head=4,
            n_embd=2048,
            intermediate_size=5632,
            vocab_size=32000,
            block_size=2048,
            rope_theta=10000.0,
            tie_word_embeddings=False,
        ),
    ),
    # a character-level Llama the size of gpt-char-small, for Shakespeare on a CPU
    "llama-char-small": (
        "llama",
        dict(
            n_layer=4,
            n_head=4,
            n_kv_head=2,
            n_embd=128,
            intermediate_size=344,
            vocab_size=96,
            block_size=64,
            rope_theta=10000.0,
        ),
    ),
    # for tests
    "llama-tiny": (
        "llama",
        dict(
            n_layer=2,
            n_head=4,
            n_kv_head=2,
            n_embd=32,
            intermediate_size=64,
            vocab_size=64,
            block_size=32,
            rope_theta=10000.0,
        ),
    ),
}
