"""Output layer and cross-entropy in one pass over row chunks, never holding the (N, vocab) logits.

For a language model with a large vocabulary the logits dominate training memory: GPT-2's 50,257
columns times 2,048 tokens are 412 MB in fp32, written by the matmul, read and written again by
log-softmax, its backward and the matmul backward. Here each chunk of rows is done start to finish
in one reused logits buffer, every step in place:

    z = x W^T                              (n, V)   logits of the chunk
    z = log softmax(z) = z - logsumexp(z)           one vectorised pass per row
    loss_i = -z_i[y_i]                              cross-entropy
    dL/dz = exp(z) - onehot(y)                      its gradient, softmax(z) - onehot(y)
    dL/dx = (dL/dz) W,  dL/dW += (dL/dz)^T x        the two backward matmuls

so the gradients are finished during the forward pass (as Liger-Kernel's fused linear cross-entropy
does) and ``backward`` only scales them by the incoming gradient. Matmuls run in the autocast dtype
when autocast is on (like ``nn.Linear`` would); softmax and the loss are always fp32 (like
``F.cross_entropy`` under autocast).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from zeroforge.modules.losses import IGNORE_INDEX


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The matmul dtype ``nn.Linear`` would use here: autocast's, else the input's."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def default_chunk_rows(vocab_size: int) -> int:
    """Rows per chunk: about 128 MB of fp32 logits (640 rows of GPT-2's vocabulary), a multiple of 64
    rows and at least 128, so the three matmuls per chunk stay near the BLAS kernels' full speed (a
    row count like 333 runs them 10-20% slower on an AVX2 CPU, docs/benchmarks.md)."""
    return max(128, (128 << 20) // (4 * vocab_size) // 64 * 64)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        chunk_rows: int,
        compute_dtype: torch.dtype,
        grad_enabled: bool,
    ) -> torch.Tensor:
        # needs_input_grad says which inputs require grad even under no_grad, where nothing will
        # call backward: evaluation must not pay for (or allocate) the gradients
        need_dx = grad_enabled and ctx.needs_input_grad[0]
        need_dw = grad_enabled and ctx.needs_input_grad[1]
        w = weight.to(compute_dtype)  # (V, C), one cast for all chunks
        xs = x.to(compute_dtype)  # (N, C)
        n_rows, vocab = xs.size(0), w.size(0)
        valid = labels != IGNORE_INDEX  # (N,)
        n_valid = valid.sum().clamp(min=1)
        acc_dtype = torch.promote_types(compute_dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
        rows = max(1, min(chunk_rows, n_rows))
        # One logits buffer for every chunk, written in place by each step below: a fresh 100+ MB
        # tensor per chunk would be a fresh mmap, paid for in page faults on every write.
        logits = torch.empty(rows, vocab, dtype=acc_dtype, device=x.device)  # (n, V)
        low = None  # the bf16 product's buffer under bf16 autocast
        if compute_dtype != acc_dtype:
            low = torch.empty(rows, vocab, dtype=compute_dtype, device=x.device)
        total = torch.zeros((), dtype=acc_dtype, device=x.device)
        grad_x = torch.empty_like(x) if need_dx else None  # (N, C)
        grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_dw else None
        with torch.autocast(x.device.type, enabled=False):
            for start in range(0, n_rows, rows):
                xc, yc, vc = (t[start : start + rows] for t in (xs, labels, valid))  # (n, C), (n,), (n,)
                n = xc.size(0)
                z = logits[:n]  # (n, V)
                if low is None:
                    torch.mm(xc, w.t(), out=z)
                else:  # bf16 product, softmax in fp32
                    z.copy_(torch.mm(xc, w.t(), out=low[:n]))
                # log softmax(z) = z - logsumexp(z), in place: one vectorised pass per row
                torch.log_softmax(z, dim=-1, out=z)
                target = yc.clamp(min=0)[:, None]  # (n, 1); ignored rows point at class 0, masked below
                total -= (z.gather(1, target).squeeze(1) * vc).sum()  # cross-entropy, -log p[y]
                if not (need_dx or need_dw):
                    continue
                # dL/dz = softmax(z) - onehot(y), in place. Ignored rows get zero gradient through their
                # (n, C) inputs and outputs below, not an (n, V) pass over z.
                z.exp_()
                z.scatter_add_(1, target, torch.full_like(target, -1.0, dtype=z.dtype))
                dz = z if low is None else low[:n].copy_(z)  # (n, V)
                keep = vc[:, None].to(xc.dtype)  # (n, 1)
                if grad_x is not None:
                    out = grad_x[start : start + n]  # (n, C), a contiguous row block
                    if out.dtype == dz.dtype:
                        torch.mm(dz, w, out=out).mul_(keep)
                    else:
                        out.copy_(torch.mm(dz, w).mul_(keep))
                if grad_w is not None:
                    xk = xc * keep  # (n, C)
                    if dz.dtype == grad_w.dtype:
                        grad_w.addmm_(dz.t(), xk)  # (V, C) += (V, n) @ (n, C)
                    else:  # bf16 product, accumulated in fp32
                        grad_w.add_(torch.mm(dz.t(), xk))
        ctx.save_for_backward(grad_x, grad_w, n_valid)
        ctx.weight_dtype = weight.dtype
        return total / n_valid

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # the gradients were finished in forward; scaled out of place, so a retained graph can run
        # backward again (gradcheck does)
        grad_x, grad_w, n_valid = ctx.saved_tensors
        scale = grad_output / n_valid  # d(mean loss)/d(sum loss)
        dx = None if grad_x is None else grad_x * scale.to(grad_x.dtype)
        dw = None if grad_w is None else (grad_w * scale).to(ctx.weight_dtype)
        return dx, dw, None, None, None, None


# Run as written even inside a compiled model: traced, functionalisation turns each in-place update of
# the logits buffer and each out= product into a copy (the whole (b) training step of
# bench/train_gpt.py was 12-29% slower traced, 1 thread); left out, it costs one graph break.
@torch.compiler.disable
def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the logits ``x @ weight.T`` against ``labels``, without materialising them.

    x (..., C); weight (V, C), the output layer (no bias); labels (...), class ids or -100 (ignored).
    Equal to ``F.cross_entropy((x @ weight.T).view(-1, V), labels.view(-1), ignore_index=-100)``
    within float rounding, gradients included. ``chunk_rows`` rows of logits exist at a time.
    """
    x2 = x.reshape(-1, x.size(-1))  # (N, C)
    y = labels.reshape(-1)  # (N,)
    if x2.size(0) != y.size(0):
        raise ValueError(f"labels: {y.size(0)} labels for {x2.size(0)} rows of logits")
    rows = chunk_rows or default_chunk_rows(weight.size(0))
    return _LinearCrossEntropy.apply(x2, weight, y, rows, _compute_dtype(x2), torch.is_grad_enabled())


def reference_linear_cross_entropy(
    x: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The plain path the fused one is tested against: full logits, then ``F.cross_entropy``."""
    logits = F.linear(x, weight)  # (..., V)
    logits = logits.reshape(-1, logits.size(-1))  # (N, V)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, labels.reshape(-1), ignore_index=IGNORE_INDEX)
