"""GPT training speed: zeroforge vs transformers' GPT2LMHeadModel on this CPU, in one process.

Both models get the same config, the same initial weights (copied), the same batches, the same
AdamW settings (zeroforge's ``build_optimizer``), the same threads, gradient clipping at 1.0, and the
same precision: fp32, or bf16 autocast. transformers is pinned to ``attn_implementation="sdpa"``,
dropout 0, and computes its own loss (``labels=input_ids``, shifted inside); zeroforge gets the
pre-shifted labels with -100 in the last column, so both average the same B * (T - 1) predictions.

Steps alternate A/B (the order flips every round) with a same-dtype matmul peak sampled in between,
so load from other processes hits all three alike; medians are printed. Achieved GFLOP/s counts
6N + 12 L H Q T FLOPs per token (PaLM appendix B, nanoGPT's MFU) for both. The peak is the best of
square products (512, 1024, 2048); the "block mm" column is the throughput of one block's own
linear-layer products at the model's shapes (forward, and both backward products of c_attn,
attn.c_proj, c_fc, mlp.c_proj on B * T rows), sampled the same way: it shows how close to the square
peak the real shapes get, i.e. what a step made only of those matmuls would reach.

Before timing, the step-0 losses of the two models on the same batch must agree (fp32: 1e-4
relative; bf16: 2e-2), otherwise the script exits with status 2.

    .venv/bin/python bench/train_gpt.py                        # configs a and b, fp32 and bf16
    .venv/bin/python bench/train_gpt.py --configs a --precisions fp32 --steps 20
    .venv/bin/python bench/train_gpt.py --no-compile           # zeroforge eager
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from _common import BenchmarkMismatch, MatmulPeak, hf_gpt2, load_average, machine_header, median
from zeroforge.config import TrainArgs
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.train.optim import build_optimizer

# Two pinned configurations: (a) a small character model (vocabulary 96), (b) GPT-2's vocabulary (50304).
CONFIGS = {
    "a": dict(n_layer=4, n_head=4, n_embd=256, block_size=128, vocab_size=96),
    "b": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=50304),
}
BATCH_SIZE = 8
LOSS_TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2}


@dataclass
class Side:
    name: str
    step: Callable[[torch.Tensor], float]
    seconds: list[float]
    losses: list[float]


def make_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, forward: Callable[[torch.Tensor], Any], bf16: bool
) -> Callable[[torch.Tensor], float]:
    """One optimizer step as zeroforge's trainer does it: forward, backward, clip, AdamW, zero grads."""

    def step(x: torch.Tensor) -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss = forward(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


class BlockMatmuls:
    """Throughput of one transformer block's linear-layer products at the model's shapes: for each of
    c_attn, attn.c_proj, c_fc, mlp.c_proj, y = x W^T, dL/dx = dL/dy W and dL/dW = (dL/dy)^T x."""

    def __init__(self, rows: int, n_embd: int, dtype: torch.dtype, clock: Callable[[], float]) -> None:
        g = torch.Generator().manual_seed(0)
        self.products: list[tuple[torch.Tensor, torch.Tensor]] = []
        for fan_in, fan_out in (
            (n_embd, 3 * n_embd),
            (n_embd, n_embd),
            (n_embd, 4 * n_embd),
            (4 * n_embd, n_embd),
        ):
            x = torch.randn(rows, fan_in, generator=g).to(dtype)  # (B*T, in)
            w = torch.randn(fan_out, fan_in, generator=g).to(dtype)  # (out, in), nn.Linear's layout
            dy = torch.randn(rows, fan_out, generator=g).to(dtype)  # (B*T, out)
            self.products += [(x, w.t()), (dy, w), (dy.t(), x)]
        self.flops = sum(2 * a.size(0) * a.size(1) * b.size(1) for a, b in self.products)
        self.clock = clock
        self.samples: list[float] = []
        self.run()  # warm up

    def run(self) -> float:
        t0 = self.clock()
        for a, b in self.products:
            torch.mm(a, b)
        return self.flops / (self.clock() - t0) / 1e9

    def sample(self) -> None:
        self.samples.append(self.run())

    def gflops(self) -> float:
        return median(self.samples)


def zeroforge_labels(x: torch.Tensor) -> torch.Tensor:
    """transformers' shift, written out: position t predicts x[t + 1]; the last position has no label."""
    return torch.cat([x[:, 1:], torch.full_like(x[:, :1], -100)], dim=1)  # (B, T)


def bench_one(config: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = CONFIGS[config]
    bf16 = precision == "bf16"
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**cfg, fused_loss=args.fused_loss, attention=args.attention)).train()
    theirs = hf_gpt2(ours, "sdpa").train()
    train_args = TrainArgs(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99)
    ours_fwd = torch.compile(ours) if args.compile else ours
    theirs_fwd = torch.compile(theirs) if args.hf_compile else theirs
    batches = torch.Generator().manual_seed(1)

    def batch() -> torch.Tensor:
        return torch.randint(0, cfg["vocab_size"], (BATCH_SIZE, cfg["block_size"]), generator=batches)

    # step 0: the same weights and batch must give the same loss
    x0 = batch()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        loss_ours = ours(x0, labels=zeroforge_labels(x0)).loss.item()
        loss_theirs = theirs(x0, labels=x0).loss.item()
    if abs(loss_ours - loss_theirs) > LOSS_TOLERANCE[precision] * abs(loss_theirs):
        raise BenchmarkMismatch(
            f"config {config} {precision}: step-0 loss zeroforge {loss_ours:.6f} vs transformers {loss_theirs:.6f}"
        )

    sides = [
        Side(
            "zeroforge",
            make_step(
                ours,
                build_optimizer(ours, train_args),
                lambda x: ours_fwd(x, labels=zeroforge_labels(x)).loss,
                bf16,
            ),
            [],
            [],
        ),
        Side(
            "transformers",
            make_step(
                theirs, build_optimizer(theirs, train_args), lambda x: theirs_fwd(x, labels=x).loss, bf16
            ),
            [],
            [],
        ),
    ]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = MatmulPeak(dtype, clock=clock)
    block_mm = BlockMatmuls(BATCH_SIZE * cfg["block_size"], cfg["n_embd"], dtype, clock)
    t_warm = time.perf_counter()
    for _ in range(args.warmup):  # compilation and allocator warm-up, not timed
        x = batch()
        for side in sides:
            side.step(x)
    warmup_s = time.perf_counter() - t_warm
    for i in range(args.steps):
        x = batch()
        for side in sides if i % 2 == 0 else sides[::-1]:
            t0 = clock()
            side.losses.append(side.step(x))
            side.seconds.append(clock() - t0)
        peak.sample()
        block_mm.sample()

    tokens = BATCH_SIZE * cfg["block_size"]
    flops_per_token = ours.estimate_flops_per_token(cfg["block_size"])
    peak_gflops, peak_n = peak.gflops()
    result: dict[str, Any] = {
        "config": config,
        "precision": precision,
        "peak_gflops": peak_gflops,
        "peak_n": peak_n,
        "block_mm_gflops": block_mm.gflops(),
        "loss0": (loss_ours, loss_theirs),
        "warmup_s": warmup_s,
    }
    for side in sides:
        tok_s = tokens / median(side.seconds)
        result[side.name] = {
            "tok_s": tok_s,
            "gflops": tok_s * flops_per_token / 1e9,
            "last_loss": side.losses[-1],
        }
    result["ratio"] = result["zeroforge"]["tok_s"] / result["transformers"]["tok_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="a,b", help="comma-separated: a, b")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side (compilation)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torch.compile the zeroforge model (train.compile=true)",
    )
    parser.add_argument(
        "--fused-loss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="zeroforge's chunked lm_head + cross-entropy (model.fused_loss=true)",
    )
    parser.add_argument("--attention", default="auto", help="zeroforge's model.attention (auto, sdpa, naive)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time (with --threads 1, a load-independent measure for development)",
    )
    parser.add_argument("--hf-compile", action="store_true", help="torch.compile transformers' model too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(machine_header("GPT training: zeroforge vs transformers GPT2LMHeadModel"))
    print(
        f"batch {BATCH_SIZE}; zeroforge compile={args.compile} fused_loss={args.fused_loss} "
        f"attention={args.attention}; "
        f"transformers sdpa compile={args.hf_compile}; {args.steps} timed steps per side after {args.warmup}; "
        f"{args.clock} clock"
    )
    print(
        f"{'cfg':<4}{'prec':<6}{'zeroforge tok/s':>16}{'transformers':>14}{'ratio':>7}"
        f"{'zf GFLOP/s':>12}{'hf GFLOP/s':>12}{'matmul peak':>13}{'block mm':>10}{'zf/peak':>9}"
        f"{'loss0 zf / hf':>24}"
    )
    results = []
    for config in args.configs.split(","):
        for precision in args.precisions.split(","):
            r = bench_one(config, precision, args)
            results.append(r)
            zf, hf = r["zeroforge"], r["transformers"]
            print(
                f"{config:<4}{precision:<6}{zf['tok_s']:>16.0f}{hf['tok_s']:>14.0f}{r['ratio']:>6.2f}x"
                f"{zf['gflops']:>12.1f}{hf['gflops']:>12.1f}{r['peak_gflops']:>8.1f} n={r['peak_n']:<4}"
                f"{r['block_mm_gflops']:>10.1f}"
                f"{zf['gflops'] / r['peak_gflops']:>8.0%}{r['loss0'][0]:>12.5f} / {r['loss0'][1]:.5f}",
                flush=True,
            )
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
