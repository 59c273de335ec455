"""Batch-1 greedy decoding speed: zeroforge vs transformers ``generate(use_cache=True)`` on this CPU.

One GPT (6 layers, 384 wide, 6 heads, GPT-2's 50,257-token vocabulary, GPT-2 initialisation, seed 0)
is copied into transformers' GPT2LMHeadModel (sdpa attention). Each row generates 256 tokens after
the same 16-token prompt; rows run in rotating order, ``--reps`` times, and the median tokens/s
(prefill and sampling included) is printed next to the baseline's.

Rows: transformers fp32 (the baseline) and bf16 (``model.to(torch.bfloat16)``); zeroforge fp32 eager
plain (``layout=False``: the model's own weights, the reference), fp32 eager (the default
``generate``: decode-time weight layouts, see ``zeroforge/decoding.py``), fp32 compiled
(``compile=True``), and bf16 weights compiled (``dtype=torch.bfloat16, compile=True``: weights
stored in bf16, arithmetic in fp32).

Checks (exit status 2 on failure): every zeroforge fp32 row must produce exactly transformers'
fp32 tokens; the bf16-weight row must produce exactly the tokens of transformers running in fp32
on the same bf16-rounded weights (same weights, same arithmetic precision). transformers' own bf16
row rounds every activation to bf16 too; its agreement is printed, not required.

Memory bound: a decode step reads every weight once, so tokens/s <= bandwidth / weight bytes per
token. Bandwidth is measured in the same run (the best median of a full read of a 1 GiB fp32
tensor by ``torch.sum`` and ``torch.amax``); the fraction of that limit is printed per row.

    .venv/bin/python bench/generate_gpt.py
    .venv/bin/python bench/generate_gpt.py --new-tokens 64 --reps 2      # quick
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from _common import BenchmarkMismatch, hf_gpt2, load_average, machine_header, median
from zeroforge.generation import generate_ids
from zeroforge.models.gpt import GPT, GPTConfig

CONFIG = dict(n_layer=6, n_head=6, n_embd=384, block_size=1024, vocab_size=50257)
PROMPT_LEN = 16


@dataclass
class Row:
    name: str
    run: Callable[[], list[int]]
    weight_bytes: int
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    first_s: float = 0.0


def weight_bytes_per_token(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes of parameters one decode step reads: every matrix once (the tied embedding once, as the
    output layer), the position table not at all (one row). Matrices in ``dtype``, vectors in fp32."""
    total, seen = 0, set()
    for name, p in model.named_parameters():
        if id(p) in seen or name.endswith("wpe.weight"):
            continue
        seen.add(id(p))
        total += p.numel() * (torch.finfo(dtype).bits // 8 if p.dim() == 2 else 4)
    return total


def read_bandwidth(clock: Callable[[], float], reps: int = 5) -> float:
    """Streaming-read bandwidth, bytes/s: the best median over two full reductions of 1 GiB."""
    big = torch.ones(1 << 28)  # 1 GiB of fp32
    best = 0.0
    for reduce in (torch.sum, torch.amax):
        reduce(big)
        seconds = []
        for _ in range(reps):
            t0 = clock()
            reduce(big)
            seconds.append(clock() - t0)
        best = max(best, big.numel() * 4 / median(seconds))
    return best


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3, help="timed generations per row")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time (with --threads 1, a load-independent measure for development)",
    )
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.new_tokens

    print(machine_header("Batch-1 greedy decoding: zeroforge vs transformers generate(use_cache=True)"))
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**CONFIG)).eval()
    theirs = hf_gpt2(ours, "sdpa").eval()
    theirs.generation_config.eos_token_id = None  # generate all n tokens, as zeroforge does without eos_id
    theirs_bf16 = hf_gpt2(ours, "sdpa").eval().to(torch.bfloat16)
    theirs_bf16.generation_config.eos_token_id = None
    prompt = torch.randint(
        0, CONFIG["vocab_size"], (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1)
    )
    hf_kwargs = dict(
        attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False, use_cache=True
    )

    @torch.inference_mode()
    def hf_run(model: torch.nn.Module) -> list[int]:
        return model.generate(prompt, **hf_kwargs)[0, PROMPT_LEN:].tolist()

    def zf_run(dtype: torch.dtype | None, compile: bool, layout: bool = True) -> Callable[[], list[int]]:
        return lambda: generate_ids(
            ours, prompt, max_new_tokens=n, temperature=0, dtype=dtype, compile=compile, layout=layout
        )[0].tolist()

    fp32_bytes = weight_bytes_per_token(ours, torch.float32)
    bf16_bytes = weight_bytes_per_token(ours, torch.bfloat16)
    rows = [
        Row("transformers fp32", lambda: hf_run(theirs), fp32_bytes),
        Row("transformers bf16", lambda: hf_run(theirs_bf16), bf16_bytes),
        Row("zeroforge fp32 plain", zf_run(None, False, layout=False), fp32_bytes),
        Row("zeroforge fp32 eager", zf_run(None, False), fp32_bytes),
        Row("zeroforge fp32 compile", zf_run(None, True), fp32_bytes),
        Row("zeroforge bf16 compile", zf_run(torch.bfloat16, True), bf16_bytes),
    ]
    for row in rows:  # warm-up: compilation, allocator, oneDNN kernels
        t0 = time.perf_counter()
        row.tokens = row.run()
        row.first_s = time.perf_counter() - t0
    for rep in range(args.reps):
        for row in rows[rep % len(rows) :] + rows[: rep % len(rows)]:
            t0 = clock()
            tokens = row.run()
            row.seconds.append(clock() - t0)
            if tokens != row.tokens:
                raise BenchmarkMismatch(f"{row.name}: greedy tokens changed between runs")
    bandwidth = read_bandwidth(clock)

    # The references the tokens must equal: transformers fp32 on the same weights, and on the
    # same weights rounded to bf16 (what the bf16-weight row computes with, in fp32 arithmetic).
    reference = rows[0].tokens
    rounded = hf_gpt2(ours, "sdpa").eval()
    with torch.no_grad():
        for p in rounded.parameters():
            if p.dim() == 2:
                p.copy_(p.bfloat16().float())
    rounded.generation_config.eos_token_id = None
    reference_rounded = hf_run(rounded)

    base = n / median(rows[0].seconds)
    print(
        f"model: {CONFIG}, {sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M parameters; prompt "
        f"{PROMPT_LEN}, {n} new tokens, batch 1, greedy; {args.reps} timed runs per row"
    )
    print(f"read bandwidth: {bandwidth / 1e9:.1f} GB/s (1 GiB fp32, best median of torch.sum/torch.amax)")
    print(
        f"{'row':<24}{'tok/s':>8}{'vs hf fp32':>11}{'weight MB/tok':>15}{'of BW limit':>13}"
        f"{'first call s':>14}  tokens"
    )
    failures = []
    for row in rows:
        tok_s = n / median(row.seconds)
        if row.name.startswith("zeroforge"):
            expected = reference_rounded if "bf16" in row.name else reference
            diff = first_difference(row.tokens, expected)
            agreement = "identical" if diff is None else f"DIFFER at token {diff}"
            if diff is not None:
                failures.append(f"{row.name}: tokens differ from transformers at position {diff}")
            if "bf16" in row.name:
                agreement += " (to hf on bf16-rounded weights)"
                if first_difference(row.tokens, reference) is None:
                    agreement += ", identical to hf fp32"
        elif row is rows[0]:
            agreement = "reference"
        else:
            diff = first_difference(row.tokens, reference)
            agreement = "identical to hf fp32" if diff is None else f"differs from hf fp32 at token {diff}"
        print(
            f"{row.name:<24}{tok_s:>8.1f}{tok_s / base:>10.2f}x{row.weight_bytes / 1e6:>15.1f}"
            f"{tok_s * row.weight_bytes / bandwidth:>12.0%}{row.first_s:>14.1f}  {agreement}"
        )
    print(f"load average at end: {load_average()}")
    if failures:
        raise BenchmarkMismatch("; ".join(failures))


if __name__ == "__main__":
    main()
