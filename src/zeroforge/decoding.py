"""A model prepared for fast decoding: fewer weight bytes per token, CPU-friendly layouts, a compiled step.

One decode step multiplies every weight matrix by one vector per sequence, so it is bound by the
bytes of weights read per token (a memory-bound matrix-vector product), not by FLOPs. Three things
make it faster, each leaving the outputs as they were (greedy tokens are tested against the plain
model in tests/test_generation.py and tests/test_generation_layout.py):

- **bf16 weights** (``dtype=torch.bfloat16``): Linear and Embedding weights stored in bf16, half the
  bytes; the arithmetic stays fp32 (weight-only low precision, modules/weight_only.py).
- **decode-time layouts** (``layout=True``): a second copy of each Linear weight laid out for the
  CPU's one-row kernels (fp32 layers with at least as many outputs as inputs stored transposed,
  others reordered for oneDNN; ``modules/weight_only.convert_to_decode_layout``), after a model's
  ``fuse_projections`` if it has one (Llama: q/k/v and gate/up become one product each).
- **a compiled step** (``compile=True``): ``torch.compile`` over a static-shape KV cache, so every
  step runs one graph with no per-step Python inside the model; only an fp32 output layer keeps a
  transposed copy there (``transpose_wide_layers``).

Each applies to a copy of the model that shares every tensor it does not convert; the model itself
is never changed. The copy (and its compiled step) is cached per model and rebuilt once any of the
model's parameters or buffers changes, so a model trained between generations decodes its new weights.

    prepared = prepare_for_decoding(model, dtype=torch.bfloat16, compile=True)
    cache = prepared.new_cache(batch_size, length, device)
    logits = prepared.model(prompt_ids, attention_mask=mask, cache=cache).logits  # prefill
    logits = prepared.step(next_ids[:, None], cache=cache).logits                  # one token
"""

from __future__ import annotations

import copy
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import nn

from zeroforge.modules.quantized import is_quantized
from zeroforge.modules.weight_only import (
    convert_to_decode_layout,
    convert_to_weight_only,
    transpose_wide_layers,
)

# A compiled step's cache spans its length rounded up to this many columns, so prompts of
# different lengths share one compiled graph (the extra columns are masked; they cost little).
STATIC_CACHE_BUCKET = 128

# model -> {(dtype, compile, layout): (weight versions, copy, step)}
_DECODE_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[Any, tuple[Any, nn.Module, nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def _compute_dtype(model: nn.Module) -> torch.dtype:
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    return param.dtype if param is not None else torch.float32


def decoding_model(
    model: nn.Module, dtype: torch.dtype | None = None, compile: bool = False, layout: bool = False
) -> tuple[nn.Module, nn.Module]:
    """``(copy, step)``: an eval-mode copy of ``model`` for decoding, and what runs one decode step
    (``torch.compile(copy)`` when ``compile``, else the copy).

    With ``dtype`` other than the model's own, or ``compile``, the copy's Linear and Embedding weights
    are stored in ``dtype`` (default: the model's own) behind ``WeightOnlyLinear``; with ``layout``
    too, fp32 output layers are multiplied by a transposed copy (``transpose_wide_layers``).
    Otherwise, with ``layout``, its Linear layers get a second copy of their weight laid out for the
    CPU's one-row kernels (``convert_to_decode_layout``).

    The copy shares every tensor it does not convert with ``model``. It is cached per model and
    rebuilt once any parameter or buffer of the model changes.
    """
    dtype = dtype or _compute_dtype(model)
    weight_only = compile or dtype != _compute_dtype(model)
    # every in-place update (an optimizer step) bumps a tensor's _version
    versions = tuple((id(t), t._version) for t in chain(model.parameters(), model.buffers()))
    copies = _DECODE_COPIES.setdefault(model, {})
    key = (dtype, compile, layout)
    cached = copies.get(key)
    if cached is not None and cached[0] == versions:
        return cached[1], cached[2]
    shared = {id(t): t for t in chain(model.parameters(), model.buffers())}
    decode_copy = copy.deepcopy(model, memo=shared).eval()  # new modules, the model's own tensors
    if weight_only:
        convert_to_weight_only(decode_copy, dtype)
        if compile and layout:
            transpose_wide_layers(decode_copy)  # the output layer: MKL's (in, out) kernel wins there
    elif layout:
        if hasattr(decode_copy, "fuse_projections"):  # e.g. Llama: q, k, v and gate, up in one product each
            decode_copy.fuse_projections()
        convert_to_decode_layout(decode_copy)
    step = torch.compile(decode_copy, dynamic=False) if compile else decode_copy
    copies[key] = (versions, decode_copy, step)
    return decode_copy, step


@dataclass
class PreparedModel:
    """What a decoder runs: ``model`` for a prompt and for recomputed windows, ``step`` for one token
    per sequence, and ``new_cache`` for the cache both share."""

    model: nn.Module
    step: Callable[..., Any]
    cache_dtype: torch.dtype  # the activations' dtype: the source model's, even with bf16 weights
    static: bool = False  # the step is compiled: its KV cache keeps fixed shapes

    def new_cache(self, batch_size: int, length: int, device: torch.device) -> Any:
        """A cache for ``batch_size`` sequences of up to ``length`` tokens."""
        if not self.static:
            return self.model.new_cache(batch_size, length, device=device, dtype=self.cache_dtype)
        context_length = getattr(self.model, "context_length", None)
        width = -(-length // STATIC_CACHE_BUCKET) * STATIC_CACHE_BUCKET  # ceil to a bucket
        width = min(width, context_length or width)
        return self.model.new_cache(batch_size, width, device=device, dtype=self.cache_dtype, static=True)


def prepare_for_decoding(
    model: nn.Module, dtype: torch.dtype | None = None, compile: bool = False, layout: bool = True
) -> PreparedModel:
    """``model`` ready to decode: the model itself when nothing applies, else a cached copy with weights
    in ``dtype``, decode-time ``layout`` and a compiled step (module docstring). ``compile`` needs a
    ``new_cache`` that takes ``static=True`` (GPT, Llama); other models decode eagerly."""
    cache_dtype = _compute_dtype(model)
    if is_quantized(model):  # int8/int4 layers are their own decode path (modules/quantized.py)
        return PreparedModel(model, model, cache_dtype)
    static = compile and "static" in inspect.signature(getattr(model, "new_cache", len)).parameters
    if dtype in (None, cache_dtype) and not static and not layout:
        return PreparedModel(model, model, cache_dtype)
    decode_copy, step = decoding_model(model, dtype, static, layout)
    return PreparedModel(decode_copy, step, cache_dtype, static)
