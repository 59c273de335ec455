"""Shared helpers for the GPT benchmarks: machine facts, load, matmul peak, the transformers twin.

Every benchmark prints the machine it ran on (CPU model, cores, torch threads, ISA flags that matter
for bf16) and the 1-minute load average before and after, because on a shared machine absolute
numbers move with the load; the A/B comparisons alternate steps in one process so both sides see
the same load.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zeroforge.models.gpt import GPT


class BenchmarkMismatch(SystemExit):
    """The two sides disagree (tokens, step-0 loss): the benchmark exits non-zero."""

    def __init__(self, message: str) -> None:
        print(f"MISMATCH: {message}", file=sys.stderr)
        super().__init__(2)


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (what ``uptime`` prints)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_header(title: str) -> str:
    """One block naming the date, hardware, software and load: printed first by every benchmark."""
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    import transformers

    return "\n".join(
        [
            f"# {title}",
            f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"cpu: {cpu_model()}, {os.cpu_count()} logical cores, isa: {' '.join(isa) or 'n/a'}",
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
            f"{transformers.__version__}, python {platform.python_version()}",
            f"load average (1/5/15 min) at start: {load_average()}",
        ]
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_seconds(
    n: int, dtype: torch.dtype, reps: int = 3, clock: Callable[[], float] = time.perf_counter
) -> Callable[[], float]:
    """A closure timing ``reps`` (n, n) @ (n, n) products in ``dtype``; returns seconds per product."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)

    def run() -> float:
        t0 = clock()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        return (clock() - t0) / reps

    run()  # warm up (oneDNN builds its kernel on first use)
    return run


class MatmulPeak:
    """Same-dtype matmul throughput, sampled between benchmark steps so it sees the same load.

    The peak is the best median GFLOP/s over a few square sizes (the largest products reach the
    BLAS kernels' steady state; small ones show the per-call overhead).
    """

    def __init__(
        self,
        dtype: torch.dtype,
        sizes: tuple[int, ...] = (512, 1024, 2048),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.dtype = dtype
        self.runs = {n: matmul_seconds(n, dtype, clock=clock) for n in sizes}
        self.samples: dict[int, list[float]] = {n: [] for n in sizes}

    def sample(self) -> None:
        for n, run in self.runs.items():
            self.samples[n].append(2 * n**3 / run() / 1e9)

    def gflops(self) -> tuple[float, int]:
        """(peak GFLOP/s, the size that reached it)."""
        best = max(self.samples, key=lambda n: median(self.samples[n]))
        return median(self.samples[best]), best


def hf_gpt2(model: GPT, attn_implementation: str = "sdpa") -> Any:
    """transformers' GPT2LMHeadModel carrying ``model``'s weights, dropout 0, in ``model``'s training
    mode: tests/hf_twins.py's ``hf_gpt2``, the twin the GPT parity tests check against. A mismatch
    (attention implementation, a shape) ends the benchmark (BenchmarkMismatch)."""
    tests_dir = str(Path(__file__).resolve().parents[1] / "tests")
    if tests_dir not in sys.path:
        sys.path.append(tests_dir)
    import hf_twins  # imports transformers

    try:
        return hf_twins.hf_gpt2(model, attn_implementation)
    except hf_twins.TwinMismatch as err:
        raise BenchmarkMismatch(str(err)) from None
