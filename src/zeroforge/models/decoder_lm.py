"""What GPT and Llama share as causal language models: the decoder half of the model contract.

A family (models/gpt.py, models/llama.py) brings its typed config (with ``n_layer`` and ``block_size``),
its blocks, ``blocks``, ``final_norm``, the LM head ``lm_head``, ``run_layers`` (embeddings -> blocks ->
final norm) and ``cache_layout``. ``DecoderLM`` adds the rest, once:

- ``hidden_states``: the length check, then the positions and the causal/padding/packed mask of
  ``modules/masks.py``, then the family's ``run_layers``;
- ``output_layer`` and ``without_output_layer``: the LM head, and the model as the body of a new head;
- ``new_cache``: a KV cache shaped by the family's ``cache_layout``;
- ``forward``: hidden states -> LM head -> mean next-token cross-entropy over the labelled tokens.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import ZeroforgeError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.fused_ce import linear_cross_entropy
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.losses import IGNORE_INDEX
from zeroforge.modules.masks import DecoderInputs, decoder_inputs


class DecoderLM(nn.Module):
    """The shared members of a decoder-only language model; see the module docstring."""

    config: Any
    lm_head: nn.Linear | None
    loss_in_float32: bool = True
    """Cross-entropy on float32 logits (as HF's LlamaForCausalLM). GPT keeps the logits' own dtype, as
    GPT-2 did: the two differ only where the weights themselves are bf16 (FSDP's bf16 parameters)."""

    @property
    def fused_loss(self) -> bool:
        """Whether a forward with labels runs the LM head and the loss together in row chunks
        (modules/fused_ce.py) and returns ``logits=None``; a family with a ``fused_loss`` config field
        reads it."""
        return False

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, bottom to top."""
        raise NotImplementedError

    @property
    def final_norm(self) -> nn.Module:
        """The norm after the last block (``hidden_states`` ends with it)."""
        raise NotImplementedError

    def cache_layout(self) -> tuple[int, int]:
        """(key/value heads, head size): what one layer's KV cache holds per token."""
        raise NotImplementedError

    def run_layers(
        self, input_ids: torch.Tensor, inputs: DecoderInputs, cache: KVCache | None
    ) -> torch.Tensor:
        """input_ids (B, T) at ``inputs.positions`` -> the final norm's output (B, T, C): the family's
        embeddings, blocks and final norm."""
        raise NotImplementedError

    @property
    def context_length(self) -> int:
        """The most tokens one forward can attend to (generation slides a window beyond it)."""
        return self.config.block_size

    @property
    def output_layer(self) -> nn.Linear | None:
        """The LM head, (B, T, C) -> (B, T, vocab_size); None once ``without_output_layer`` ran."""
        return self.lm_head

    def without_output_layer(self) -> DecoderLM:
        """This model as the body of a new task head, in place: the LM head is removed (a tied weight
        stays with the token embedding), ``hidden_states`` is unchanged and ``forward`` no longer runs."""
        self.lm_head = None
        return self

    def new_cache(
        self,
        batch_size: int,
        max_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        static: bool = False,
    ) -> KVCache:
        """A preallocated KV cache for ``batch_size`` sequences of up to ``max_length`` tokens
        (``static``: fixed shapes for a compiled decode step, see modules/kv_cache.py)."""
        if max_length > self.config.block_size:
            raise ZeroforgeError(
                f"cache max_length {max_length} exceeds model block_size {self.config.block_size}"
            )
        kv_heads, head_size = self.cache_layout()
        # the activations' dtype: a decoding copy may store its matrices in bf16 (modules/weight_only.py)
        weight = self.final_norm.weight
        return KVCache(
            self.config.n_layer,
            batch_size,
            kv_heads,
            head_size,
            max_length,
            device=device or weight.device,
            dtype=dtype or weight.dtype,
            static=static,
        )

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) -> the final norm's output (B, T, C).

        attention_mask (B, T): 1 = real token, 0 = padding (left); positions then count real tokens only.
        segment_ids (B, T): packed rows, 1, 2, ... per example and 0 = padding (modules/masks.py).
        cache: from ``new_cache``; the new tokens are appended to it and attend over all of it.
        """
        T = input_ids.size(1)
        if T > self.config.block_size:
            raise ZeroforgeError(f"sequence length {T} exceeds model block_size {self.config.block_size}")
        inputs = decoder_inputs(input_ids, attention_mask, segment_ids, position_ids, cache)
        x = self.run_layers(input_ids, inputs, cache)  # (B, T, C)
        if cache is not None:
            cache.advance(T)
        return x

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T) -> logits (B, T, vocab_size); the other inputs as ``hidden_states``.

        labels (B, T): the already-shifted next tokens (-100 = ignore) -> mean cross-entropy loss
        (and ``logits=None`` with ``fused_loss``).
        """
        if self.lm_head is None:
            raise ZeroforgeError(
                f"{type(self).__name__}: this model's output layer was removed (a task head's body); "
                "use hidden_states"
            )
        x = self.hidden_states(input_ids, attention_mask, position_ids, segment_ids, cache)  # (B, T, C)
        if labels is not None and self.fused_loss:
            loss = linear_cross_entropy(x, self.lm_head.weight, labels)  # no (B, T, vocab_size) tensor
            return ModelOutput(logits=None, loss=loss, cache=cache)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if labels is not None:
            scores = logits.float() if self.loss_in_float32 else logits
            loss = F.cross_entropy(
                scores.view(-1, scores.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return ModelOutput(logits=logits, loss=loss, cache=cache)
