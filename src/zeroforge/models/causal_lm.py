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
(``fused_loss``), None: the output layer and the loss then run together in row chunks. The wrapped
model is used through its contract (models/gpt.py): ``hidden_states`` (with ``segment_ids`` for
packed rows, modules/masks.py) and ``output_layer``.
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
from zeroforge.modules.losses import IGNORE_INDEX
from zeroforge.registry import config_to_dict, create_model, family_for_model, family_of


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


class FinetunedLM(nn.Module):
    """See the module docstring. ``model`` is the wrapped GPT/Llama (its weights, its names)."""

    config_class = FinetunedLMConfig

    def __init__(self, config: FinetunedLMConfig, model: nn.Module | None = None) -> None:
        super().__init__()
        family = family_of(config.base).name
        if family not in ("gpt", "llama"):
            raise ConfigError(f"model: continued LM training and SFT need a gpt or llama model, got {family}")
        self.config = config
        self.model = model if model is not None else create_model(config.base, **config.base_config)
        if config.lora is not None:
            from zeroforge.modules.lora import LoRAConfig, apply_lora

            apply_lora(self.model, LoRAConfig(**config.lora))
        self.register_load_state_dict_pre_hook(_output_layer_inside_model)

    @classmethod
    def wrap(cls, model: nn.Module) -> FinetunedLM:
        family = family_for_model(model).name
        return cls(FinetunedLMConfig(base=family, base_config=config_to_dict(model.config)), model=model)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.blocks

    @property
    def final_norm(self) -> nn.Module:
        return self.model.final_norm

    @property
    def output_layer(self) -> nn.Linear:
        return self.model.output_layer

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @contextlib.contextmanager
    def plain_model(self) -> Iterator[nn.Module]:
        """The wrapped model, for generation."""
        yield self.model

    def merged(self) -> nn.Module:
        """The wrapped model with any LoRA adapters merged into its weights (this wrapper is used up)."""
        from zeroforge.modules.lora import merged_model

        self.config.lora = None
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
        hidden = self.model.hidden_states(input_ids, attention_mask, segment_ids=segment_ids)  # (B, T, C)
        head = self.model.output_layer
        if labels is None:
            return ModelOutput(logits=head(hidden))  # (B, T, V)
        selected = labels != IGNORE_INDEX  # (B, T)
        targets = labels[selected]  # (N,)
        n = targets.numel()
        if self.config.fused_loss and head.bias is None:
            logits = None
            loss = linear_cross_entropy(hidden[selected], head.weight, targets)  # (N, V) never whole
        else:
            logits = head(hidden[selected])  # (N, V)
            # the mean over labelled tokens, as F.cross_entropy(ignore_index=-100)
            loss = F.cross_entropy(logits.float(), targets, reduction="sum") / max(n, 1)
        return ModelOutput(logits=logits, loss=loss, metrics={"token_loss": (loss.detach() * n, n)})


def _output_layer_inside_model(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Load-time key map: checkpoints that kept the output layer on the wrapper (``lm_head.*``) load
    into ``model.lm_head.*``, where it now lives."""
    for key in [k for k in state_dict if k.startswith(prefix + "lm_head.")]:
        state_dict[prefix + "model." + key.removeprefix(prefix)] = state_dict.pop(key)
