"""GPT-2-compatible decoder-only transformer, nanoGPT-style (read top to bottom).

Token + learned position embeddings -> n_layer pre-LN blocks (causal self-attention, GELU MLP)
-> final LayerNorm -> lm_head tied to the token embedding. Parameter names match Hugging Face's
GPT2LMHeadModel (whose c_attn/c_proj/c_fc are Conv1D: their weights are our Linear weights transposed).

What heads, fine-tuning and packed batches use (the model contract shared with Llama and BERT):
``hidden_states(...)`` -> the final normed states (B, T, C), ``output_layer`` (``lm_head``), ``blocks``
(bottom to top) and ``final_norm``; ``forward`` is ``hidden_states`` + output layer (+ loss). What GPT
and Llama share as decoders (those members, the KV cache, the loss) is ``DecoderLM`` (models/decoder_lm.py).

References: Radford et al. 2019 (GPT-2); Karpathy's nanoGPT model.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from zeroforge.models.decoder_lm import DecoderLM
from zeroforge.modules.attention import attention, merge_heads, split_heads
from zeroforge.modules.init import normal_init_
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.masks import DecoderInputs
from zeroforge.modules.mlp import MLP
from zeroforge.schema import preset_config, require, require_choices, require_positive


@dataclass
class GPTConfig:
    """Defaults are GPT-2 small (124M)."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    """Longest sequence the model sees (the number of learned positions)."""
    vocab_size: int = 50257
    dropout: float = 0.0
    bias: bool = True
    """Biases in Linear and LayerNorm layers (GPT-2 has them; False is a little faster and as good)."""
    attention: Literal["auto", "sdpa", "naive"] = "auto"
    """``sdpa``: PyTorch's fused kernel; ``naive``: softmax(QK^T/sqrt(d_k))V written out (reference);
    ``auto``: the fused kernel except where the written-out formula is faster (modules/attention.py)."""
    fused_loss: bool = False
    """When labels are given, compute lm_head and cross-entropy together in row chunks
    (modules/fused_ce.py) instead of materialising the (B, T, vocab) logits: less memory and time for
    a large vocabulary. The forward then returns ``logits=None`` whenever it returns a loss."""

    def __post_init__(self) -> None:
        require_positive(self, "n_layer", "n_head", "n_embd", "block_size", "vocab_size")
        require(
            self.n_embd % self.n_head == 0,
            "n_embd",
            f"must be divisible by n_head ({self.n_head}), got {self.n_embd}",
        )
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require_choices(self)  # attention

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> GPTConfig:
        """A preset's config (``GPTConfig.from_name("gpt2", n_layer=4)``)."""
        return preset_config(cls, PRESETS, name, **overrides)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        # q, k, v for all heads in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.impl = config.attention

    def forward(
        self, x: torch.Tensor, inputs: DecoderInputs, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))  # 3 x (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, L+T, hs)
        dropout_p = self.dropout if self.training else 0.0
        y = attention(
            q, k, v, mask=inputs.mask, is_causal=inputs.is_causal, dropout_p=dropout_p, impl=self.impl
        )
        return self.resid_dropout(self.c_proj(merge_heads(y)))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config.n_embd, 4 * config.n_embd, config.bias, config.dropout, "gelu_tanh")

    def forward(
        self, x: torch.Tensor, inputs: DecoderInputs, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), inputs, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(DecoderLM):
    config_class = GPTConfig
    lora_targets = ("c_attn",)  # LoRA's default targets (modules/lora.py): q, k and v in one Linear
    loss_in_float32 = False  # cross-entropy in the logits' dtype, as GPT-2 (DecoderLM.loss_in_float32)

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head: nn.Linear | None = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017): the output projection is the token embedding.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(normal_init_)
        # GPT-2: scale residual projections by 1/sqrt(2 * n_layer), two residual adds per block.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @property
    def fused_loss(self) -> bool:
        """``GPTConfig.fused_loss``: with labels, ``forward`` returns the loss and ``logits=None``."""
        return self.config.fused_loss

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.h

    @property
    def final_norm(self) -> nn.Module:
        """The final LayerNorm ``ln_f``."""
        return self.transformer.ln_f

    def cache_layout(self) -> tuple[int, int]:
        """(n_head, head size): every head keeps its keys and values."""
        return self.config.n_head, self.config.n_embd // self.config.n_head

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` drops the position embeddings (nanoGPT's convention:
        the token embedding stays because it is also the output layer)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def estimate_flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token, 6N + 12 * L * H * Q * T (PaLM appendix B, as nanoGPT's MFU)."""
        cfg = self.config
        T = seq_len or cfg.block_size
        return 6.0 * self.num_parameters() + 12.0 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * T

    def run_layers(
        self, input_ids: torch.Tensor, inputs: DecoderInputs, cache: KVCache | None
    ) -> torch.Tensor:
        tok_emb = self.transformer.wte(input_ids)  # (B, T, C)
        pos_emb = self.transformer.wpe(inputs.positions)  # (1 or B, T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        for i, block in enumerate(self.transformer.h):
            x = block(x, inputs, cache, i)
        return self.transformer.ln_f(x)  # (B, T, C)


# ----------------------------------------------------------------------------- presets

_GPT2 = dict(block_size=1024, vocab_size=50257)
# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("gpt", dict(n_layer=12, n_head=12, n_embd=768, **_GPT2)),  # 124M
    "gpt2-medium": ("gpt", dict(n_layer=24, n_head=16, n_embd=1024, **_GPT2)),  # 350M
    "gpt2-large": ("gpt", dict(n_layer=36, n_head=20, n_embd=1280, **_GPT2)),  # 774M
    "gpt2-xl": ("gpt", dict(n_layer=48, n_head=25, n_embd=1600, **_GPT2)),  # 1558M
    # nanoGPT's "baby GPT" for Shakespeare on a CPU (README, quick start without a GPU)
    "gpt-char-small": ("gpt", dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=96)),
    # nanoGPT's config/train_shakespeare_char.py (GPU-sized character model)
    "gpt-mini": (
        "gpt",
        dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=96, dropout=0.2),
    ),
    # for tests
    "gpt-tiny": ("gpt", dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=64)),
}
