"""Where zeroforge's GPT training step spends its time: bench/train_gpt.py's step, profiled.

Builds the zeroforge side of ``bench/train_gpt.py`` (same config, compile, fused loss, AdamW), runs
warm-up steps, prints the median step time, then the torch profiler's table of 5 steps by self CPU
time. ``--kernels`` names inductor's generated kernels in the table (inductor's
``cpp.enable_kernel_profile``), so the fused LayerNorm/GELU work shows kernel by kernel.

    .venv/bin/python bench/profile_train_gpt.py --config a --threads 2 --kernels
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from train_gpt import BATCH_SIZE, CONFIGS, make_step, zeroforge_labels
from zeroforge.config import TrainArgs
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.train.optim import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="a", choices=sorted(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps before profiling")
    parser.add_argument("--rows", type=int, default=30, help="rows of the profiler table")
    parser.add_argument("--kernels", action="store_true", help="name inductor's kernels in the table")
    args = parser.parse_args()
    if args.kernels:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True
    torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]
    torch.manual_seed(0)
    model = GPT(GPTConfig(**cfg, fused_loss=True)).train()
    compiled = torch.compile(model)
    optimizer = build_optimizer(model, TrainArgs(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99))
    step = make_step(model, optimizer, lambda x: compiled(x, labels=zeroforge_labels(x)).loss, False)
    batches = torch.Generator().manual_seed(1)

    def batch() -> torch.Tensor:
        return torch.randint(0, cfg["vocab_size"], (BATCH_SIZE, cfg["block_size"]), generator=batches)

    for _ in range(5):  # compile and warm up
        step(batch())
    seconds = []
    for _ in range(args.steps):
        x = batch()
        t0 = time.perf_counter()
        step(x)
        seconds.append(time.perf_counter() - t0)
    median = statistics.median(seconds)
    tokens = BATCH_SIZE * cfg["block_size"]
    gflops = tokens * model.estimate_flops_per_token(cfg["block_size"]) / median / 1e9
    print(
        f"config {args.config}, {args.threads} threads: median step {1000 * median:.1f} ms, "
        f"{tokens / median:,.0f} tok/s, {gflops:.1f} GFLOP/s (6N + 12LHQT)"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step(batch())
    print(
        prof.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=70
        )
    )


if __name__ == "__main__":
    main()
