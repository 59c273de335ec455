"""Weight-only low precision for decoding: weights stored in bf16, all arithmetic in fp32.

Decoding one token at a time multiplies every weight matrix by a single vector, so its speed is set
by how many weight bytes stream from memory per token, not by FLOPs. Storing the weights in bf16
halves those bytes. The activations stay fp32 and every product is accumulated in fp32, so the
model computes exactly what an fp32 model with bf16-rounded weights would (only the weights are
rounded, by at most 2^-9 relative), not a bf16 model whose every activation is rounded too.

Under ``torch.compile`` a product with few rows is written as ``(x[..., None, :] * W).sum(-1)``:
inductor turns that into one vectorised reduction that reads each bf16 weight once and converts it
in registers (about twice the speed of PyTorch's bf16 matrix-vector kernel on CPUs without AMX).
Eager code and many-row products (a prompt's prefill) upcast the weight to fp32 and call ``F.linear``.

``convert_to_weight_only(model, dtype)`` swaps every ``nn.Linear`` and ``nn.Embedding`` of a model
in place for these modules, keeping tied weights tied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MATVEC_ROWS = 4
"""Up to this many rows a product is a memory-bound matrix-vector product (decode steps of small batches)."""


@torch.library.custom_op("zeroforge::materialize", mutates_args=())
def materialize(x: torch.Tensor) -> torch.Tensor:
    """A copy that ``torch.compile`` cannot fuse into its consumer (an opaque op's input and output
    are always written to memory)."""
    return x.clone()


@materialize.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class WeightOnlyLinear(nn.Module):
    """``y = x W^T + b`` with W stored in a low-precision dtype; x, b and y in the compute dtype."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.weight = weight  # (out, in), e.g. bf16
        self.bias = bias  # (out,) in the compute dtype, or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.size(-1)
        if torch.compiler.is_compiling() and rows <= MATVEC_ROWS:
            # One fused reduction: bf16 weight read once, products and sum in x's dtype (fp32). x is
            # materialised first, else inductor recomputes whatever produced it (LayerNorm, GELU) once
            # per output row.
            x = materialize(x)
            y = (x.unsqueeze(-2) * self.weight.to(x.dtype)).sum(-1)  # (..., out)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight.to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, weight_dtype={self.weight.dtype}"


class WeightOnlyEmbedding(nn.Module):
    """A lookup table stored in a low-precision dtype; the looked-up rows come out in ``compute_dtype``."""

    def __init__(self, weight: nn.Parameter, compute_dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = weight  # (num_embeddings, dim)
        self.compute_dtype = compute_dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight).to(self.compute_dtype)  # (..., dim)


def convert_to_weight_only(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace ``model``'s Linear and Embedding layers (in place) by weight-only ``dtype`` versions.

    Other parameters (norms, biases) keep their dtype, which is the compute dtype. A weight shared by
    several layers (GPT's tied embedding and output layer) becomes one shared ``dtype`` tensor.
    Returns ``model``, for inference only (the new weights do not require grad).
    """
    converted: dict[int, nn.Parameter] = {}

    def low(weight: torch.Tensor) -> nn.Parameter:
        if id(weight) not in converted:
            converted[id(weight)] = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
        return converted[id(weight)]

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, WeightOnlyLinear(low(child.weight), child.bias))
            elif type(child) is nn.Embedding and child.padding_idx is None and child.max_norm is None:
                setattr(parent, name, WeightOnlyEmbedding(low(child.weight), child.weight.dtype))
    return model


# ----------------------------------------------------------------------------- decode-time layouts
#
# The same product y = x W^T + b, with a second copy of W laid out for the CPU's one-row kernels
# (measured on an AMD EPYC with AVX-512 bf16, torch 2.13, MKL/oneDNN; docs/benchmarks.md):
#
# - fp32, out >= in (an output layer, fused q/k/v, a SwiGLU gate/up): MKL's single-row kernel
#   reads W stored (in, out) and multiplied as x @ W^T up to twice as fast as nn.Linear's (out, in);
# - fp32, in > out (a down projection): the (in, out) layout is slower there, but oneDNN's matmul
#   on W reordered once into its blocked layout is about 15% faster than nn.Linear;
# - bf16 (bf16 activations): the same oneDNN reordered weight is 1.5-2x faster than nn.Linear, which
#   reorders the weight on every call; same kernel, same results.
#
# Only one-row products (decode steps, up to MATVEC_ROWS rows) use the copy; a prompt's prefill
# calls F.linear on the original weight, so its results do not change at all.


def _mkldnn_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _mkldnn() -> bool:
    return torch.backends.mkldnn.is_available()


class TransposedLinear(nn.Module):
    """``y = x W^T + b`` whose one-row products read ``weight_t = W^T`` stored contiguous (in, out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, weight_t: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight  # (out, in), shared with the source model (prefill)
        self.bias = bias
        self.weight_t = weight_t  # (in, out), a decode-only copy

    @staticmethod
    def prepare(weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.size(-1)
        if rows > MATVEC_ROWS:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(rows, x.size(-1))  # (rows, in)
        y = x2 @ self.weight_t if self.bias is None else torch.addmm(self.bias, x2, self.weight_t)
        return y.view(*x.shape[:-1], y.size(-1))  # (..., out)

    def extra_repr(self) -> str:
        in_features, out_features = self.weight_t.shape
        return f"in_features={in_features}, out_features={out_features}, layout=(in, out)"


class PackedLinear(nn.Module):
    """``y = x W^T + b`` whose one-row products use W reordered once for oneDNN's matmul."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight  # (out, in), shared with the source model (prefill)
        self.bias = bias
        # an opaque oneDNN tensor (no storage; neither a parameter nor a buffer, so never saved or moved)
        self.packed = packed

    @staticmethod
    def prepare(weight: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.size(-1)
        if rows > MATVEC_ROWS or x.dtype != self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(rows, x.size(-1))  # (rows, in)
        y = torch.ops.mkldnn._linear_pointwise(x2, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], y.size(-1))  # (..., out)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, layout=onednn"


def decode_layout(weight: torch.Tensor) -> type[TransposedLinear] | type[PackedLinear] | None:
    """The decode-time module for a Linear with this weight on this machine (see above), or None."""
    if weight.device.type != "cpu" or weight.dim() != 2:
        return None
    out_features, in_features = weight.shape
    if weight.dtype == torch.float32:
        if out_features >= in_features:
            return TransposedLinear
        return PackedLinear if _mkldnn() else None
    if weight.dtype == torch.bfloat16 and _mkldnn_bf16():
        return PackedLinear
    return None


def convert_to_decode_layout(model: nn.Module) -> nn.Module:
    """Replace (in place) every ``nn.Linear`` of ``model`` that a decode-time layout speeds up on this
    machine by a ``TransposedLinear`` or ``PackedLinear``, which keeps the original weight for
    many-row products. Returns ``model``, for inference only (the copies are not trained)."""
    prepared: dict[int, torch.Tensor] = {}  # one copy per weight, however many layers share it
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or (layout := decode_layout(child.weight)) is None:
                continue
            if id(child.weight) not in prepared:
                prepared[id(child.weight)] = layout.prepare(child.weight)
            setattr(parent, name, layout(child.weight, child.bias, prepared[id(child.weight)]))
    return model


def transpose_wide_layers(model: nn.Module, ratio: int = 8) -> nn.Module:
    """In a ``convert_to_weight_only`` model whose weights kept the compute dtype (fp32), replace (in
    place) each ``WeightOnlyLinear`` with at least ``ratio`` times more outputs than inputs (an output
    layer over a vocabulary) by a ``TransposedLinear`` that shares its weight.

    For a compiled decode step: inductor's fused reduction beats MKL on a block's small products, but
    on a 50257 x 384 output layer MKL's one-row kernel on the (in, out) copy is faster (GPT decode
    step, 1.33x end to end; docs/benchmarks.md).
    """
    prepared: dict[int, torch.Tensor] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not WeightOnlyLinear or child.weight.dtype != torch.float32:
                continue
            out_features, in_features = child.weight.shape
            if child.weight.device.type != "cpu" or out_features < ratio * in_features:
                continue
            if id(child.weight) not in prepared:
                prepared[id(child.weight)] = TransposedLinear.prepare(child.weight)
            setattr(parent, name, TransposedLinear(child.weight, child.bias, prepared[id(child.weight)]))
    return model
