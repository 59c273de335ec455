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
