"""A causal LM being fine-tuned: optional LoRA adapters, and packed rows whose examples stay apart.

``FinetunedLM`` wraps a GPT or Llama (family ``finetuned-lm``) for continued LM training and
instruction tuning. Two things set it apart from calling the model directly:

- *packing*: several short examples share one row of the batch, and ``segment_ids`` (B, T) says which
  example each token belongs to (0 = padding). Attention is then block-diagonal and causal -- a
  token attends to earlier tokens of its own example only -- and ``position_ids`` restart at 0 for
  each example, so every example is computed exactly as it would be alone in its row;
- *LoRA*: with ``lora`` in the config the model carries adapters, so a checkpoint written during a
  LoRA run rebuilds with ``create_model("finetuned-lm", ...)``.

``merged()`` returns the plain model with the adapters merged: what the run directory publishes.

With labels, the output layer runs only at the positions that have one: in SFT most tokens are the
prompt (-100), and the (tokens x vocabulary) projection, its softmax and their gradients are a
large share of a step (SmolLM2's output layer is 28M of its 135M weights). ``logits`` is then
(N, V) for the N labelled positions in row-major order, as BERT's MLM head does -- or, by default
(``fused_loss``), None: the output layer and the loss then run together in row chunks. For this the
wrapped model's ``lm_head`` is moved to the wrapper (``self.lm_head``, still tied to the embedding)
and an Identity left in its place, so the model's own forward returns its final hidden states.

The model families take a (B, T) padding mask, not a (B, T, T) one, so the packed path runs the
model's own embedding and blocks with the block-diagonal mask (``_packed_hidden``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import ConfigError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.fused_ce import linear_cross_entropy
from zeroforge.registry import register_model

IGNORE_INDEX = -100


@dataclass
class FinetunedLMConfig:
    base: str = "llama"
    """The language model's family or preset (``llama``, ``gpt``...)."""
    base_config: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    """``LoRAConfig`` fields when the model carries LoRA adapters."""
    fused_loss: bool = True
    """With labels, run the output layer and cross-entropy together in row chunks
    (modules/fused_ce.py): the (N, vocab) logits, their log-softmax and its gradient are never held
    whole (SmolLM2: 1,024 labelled tokens x 49,152 = 201 MB each). ``logits`` is then None."""


def segment_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Block-diagonal causal attention for packed rows: (B, T) -> bool (B, 1, T, T), True = attend.

    Query i may attend key j when j <= i and both belong to the same example. A padding query
    (segment 0) keeps its own key, so its softmax row is never empty (its output is never used).
    """
    T = segment_ids.size(1)
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()  # (T, T)
    real_key = (segment_ids != 0)[:, None, :]  # (B, 1, T)
    own = torch.eye(T, dtype=torch.bool, device=segment_ids.device)  # (T, T)
    return ((same & causal & real_key) | own)[:, None]  # (B, 1, T, T)


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at every example of a packed row: (B, T) -> (B, T)."""
    T = segment_ids.size(1)
    index = torch.arange(T, device=segment_ids.device).expand_as(segment_ids)  # (B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]  # (B, T) first token of each example
    start_index = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values  # (B, T)
    return index - start_index


@register_model("finetuned-lm", FinetunedLMConfig)
class FinetunedLM(nn.Module):
    """See the module docstring. ``model`` is the wrapped GPT/Llama (its weights, its names)."""

    def __init__(self, config: FinetunedLMConfig, model: nn.Module | None = None) -> None:
        super().__init__()
        from zeroforge.registry import create_model, family_of

        family = family_of(config.base).name
        if family not in ("gpt", "llama"):
            raise ConfigError(f"model: continued LM training and SFT need a gpt or llama model, got {family}")
        self.config = config
        self.model = model if model is not None else create_model(config.base, **config.base_config)
        self.lm_head = self.model.lm_head  # the output layer runs here, on labelled positions only
        self.model.lm_head = nn.Identity()
        if config.lora is not None:
            from zeroforge.modules.lora import LoRAConfig, apply_lora

            apply_lora(self.model, LoRAConfig(**config.lora), family)

    @classmethod
    def wrap(cls, model: nn.Module) -> FinetunedLM:
        from zeroforge.registry import config_to_dict, family_for_model

        family = family_for_model(model).name
        return cls(FinetunedLMConfig(base=family, base_config=config_to_dict(model.config)), model=model)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.transformer.h if hasattr(self.model, "transformer") else self.model.model.layers

    @property
    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f if hasattr(self.model, "transformer") else self.model.model.norm

    @property
    def context_length(self) -> int:
        return self.model.config.block_size

    @contextlib.contextmanager
    def plain_model(self) -> Iterator[nn.Module]:
        """The wrapped model with its output layer in place, for generation (restored on exit)."""
        self.model.lm_head = self.lm_head
        try:
            yield self.model
        finally:
            self.model.lm_head = nn.Identity()

    def merged(self) -> nn.Module:
        """The wrapped model, its output layer back in place and any LoRA adapters merged into its
        weights (this wrapper is used up)."""
        from zeroforge.modules.lora import merged_model

        self.config.lora = None
        self.model.lm_head = self.lm_head
        return merged_model(self.model)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T) -> logits (B, T, V). With labels (B, T) (already shifted, -100 = no loss):
        the mean cross-entropy over labelled tokens and logits (N, V) at those N positions only.

        With ``segment_ids`` (B, T) the row is packed (see the module docstring); otherwise
        ``attention_mask`` marks padding as for the plain model.
        """
        if segment_ids is None:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, C)
        else:
            hidden = _packed_hidden(self.model, input_ids, segment_ids)  # (B, T, C)
        if labels is None:
            return ModelOutput(logits=self.lm_head(hidden))  # (B, T, V)
        selected = labels != IGNORE_INDEX  # (B, T)
        targets = labels[selected]  # (N,)
        n = targets.numel()
        if self.config.fused_loss and self.lm_head.bias is None:
            logits = None
            loss = linear_cross_entropy(hidden[selected], self.lm_head.weight, targets)  # (N, V) never whole
        else:
            logits = self.lm_head(hidden[selected])  # (N, V)
            # the mean over labelled tokens, as F.cross_entropy(ignore_index=-100)
            loss = F.cross_entropy(logits.float(), targets, reduction="sum") / max(n, 1)
        return ModelOutput(logits=logits, loss=loss, metrics={"token_loss": (loss.detach() * n, n)})


def _packed_hidden(model: nn.Module, input_ids: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """The final hidden states (B, T, C) of a packed batch, through the model's own modules."""
    from zeroforge.models.gpt import GPT
    from zeroforge.models.llama import Llama

    mask = segment_mask(segment_ids)  # (B, 1, T, T)
    positions = segment_positions(segment_ids)  # (B, T)
    if isinstance(model, Llama):
        x = model.model.embed_tokens(input_ids)  # (B, T, C)
        cos, sin = model.rotary(positions, x.dtype)
        for i, block in enumerate(model.model.layers):
            x = block(x, cos, sin, mask, False, None, i)
        return model.model.norm(x)
    if isinstance(model, GPT):
        t = model.transformer
        x = t.drop(t.wte(input_ids) + t.wpe(positions))  # (B, T, C)
        for i, block in enumerate(t.h):
            x = block(x, mask, False, None, i)
        return t.ln_f(x)
    raise ConfigError(f"packing: {type(model).__name__} is not a gpt or llama model")
