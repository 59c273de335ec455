"""Training throughput of one process against N processes (torchrun, DDP / FSDP), tokens per second.

Each configuration trains a small GPT on random tokens through zeroforge's training loop
(``zeroforge.train.loop.train``), launched by ``torchrun --standalone``, and reads the loop's own
``tokens_per_s`` (global: summed over ranks), skipping the first logging window (warm-up).

Two ways to count scaling:
  weak    every rank keeps batch B, so N ranks train on N*B sequences per step (the usual use of DDP)
  strong  the global batch stays B, each rank takes B/N

On CPU the honest comparison holds the cores fixed: one process with all T threads against N
processes with T/N threads each (``--threads``), so the numbers show what DDP costs or gains on the
same machine, not what extra machines would add.

    .venv/bin/python bench/distributed_scaling.py                      # CPU, gloo, 1 vs 2 processes
    .venv/bin/python bench/distributed_scaling.py --device cuda --nproc 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))


class RandomTokens:
    """A BatchSource of uniformly random tokens (throughput does not depend on what the tokens are)."""

    def __init__(self, vocab: int, batch: int, block: int, seed: int) -> None:
        self.shape, self.vocab = (batch, block + 1), vocab
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self) -> dict[str, torch.Tensor]:
        rows = torch.randint(0, self.vocab, self.shape, generator=self.generator)  # (B, T+1)
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def worker(opts: argparse.Namespace) -> None:
    """One rank (or the single process): train, then rank 0 prints the steady-state tokens/s as JSON."""
    from zeroforge.config import DistributedArgs, TrainArgs
    from zeroforge.registry import create_model
    from zeroforge.train.loop import train

    rank = int(os.environ.get("RANK", 0))
    torch.manual_seed(0)
    model = create_model(
        "gpt", n_layer=opts.layers, n_head=4, n_embd=opts.width, block_size=opts.block, vocab_size=256
    )
    args = TrainArgs(
        max_steps=opts.steps,
        batch_size=opts.batch,
        block_size=opts.block,
        log_every=opts.steps // 4,
        eval_every=10**9,
        precision="fp32",
        progress=False,
        device=opts.device,
        threads=opts.threads,
        seed=0,
    )
    source = RandomTokens(256, opts.batch, opts.block, seed=rank)
    result = train(model, source, args, distributed=DistributedArgs(strategy=opts.strategy))
    if rank == 0:
        rates = [r["tokens_per_s"] for r in result.history[1:]]  # the first window holds the warm-up
        print("RESULT " + json.dumps({"tokens_per_s": statistics.median(rates), "windows": rates}))


def run(opts: argparse.Namespace, nproc: int, strategy: str, batch: int, threads: int) -> dict[str, Any]:
    """One configuration in fresh processes; returns its tokens/s."""
    argv = [
        "--worker",
        f"--strategy={strategy}",
        f"--batch={batch}",
        f"--threads={threads}",
        f"--device={opts.device}",
        f"--steps={opts.steps}",
        f"--layers={opts.layers}",
        f"--width={opts.width}",
        f"--block={opts.block}",
    ]
    if nproc == 1 and strategy == "single":
        cmd = [sys.executable, __file__, *argv]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += [__file__, *argv]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="single", choices=["single", "ddp", "fsdp"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nproc", type=int, nargs="+", default=[2], help="process counts to compare with 1")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads in all (default: all cores)")
    parser.add_argument("--batch", type=int, default=16, help="per-rank batch (weak scaling)")
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per configuration")
    opts = parser.parse_args()
    if opts.worker:
        worker(opts)
        return

    from _common import load_average, machine_header

    print(machine_header("distributed scaling: tokens/s, one process vs torchrun ranks"))
    cuda = opts.device.startswith("cuda")
    cores = opts.threads or os.cpu_count() or 1
    backend = "nccl" if cuda else "gloo"
    print(
        f"model: GPT {opts.layers} layers x {opts.width} wide, block {opts.block}; fp32; "
        f"{opts.steps} steps; backend {backend}"
        + ("" if cuda else f"; {cores} CPU threads shared by all processes")
    )
    first = "1 process" if cuda else f"1 process, {cores} threads"
    configs = [(first, 1, "single", opts.batch, 0)]  # label, processes, strategy, batch, threads
    if not cuda and cores > 1:
        configs.append(("1 process, 1 thread", 1, "single", opts.batch, 1))
    for n in opts.nproc:
        for strategy in ("ddp", "fsdp"):
            configs.append((f"{n} x {strategy} (weak)", n, strategy, opts.batch, 0))
            if opts.batch % n == 0:
                configs.append((f"{n} x {strategy} (strong)", n, strategy, opts.batch // n, 0))

    # alternate the configurations, repeats times, so a change in the machine's load hits them all
    rates: dict[str, list[float]] = {c[0]: [] for c in configs}
    for rep in range(opts.repeats):
        for label, n, strategy, batch, threads in configs:
            threads = threads or (0 if cuda else max(1, cores // n))
            rate = run(opts, n, strategy, batch, threads)["tokens_per_s"]
            rates[label].append(rate)
            print(f"  [{rep + 1}/{opts.repeats}] {label:<24} {rate:>10.0f} tokens/s", flush=True)

    # the baseline is the faster one-process run: on a loaded machine all-thread runs can stall
    one = [label for label, n, *_ in configs if n == 1]
    base_label = max(one, key=lambda label: statistics.median(rates[label]))
    base = statistics.median(rates[base_label])
    print(
        f"\n| configuration | batch per rank | tokens/s, median of {opts.repeats} (range) | vs {base_label} |"
    )
    print("|---|---|---|---|")
    rows = []
    for label, n, strategy, batch, _ in configs:
        rate = statistics.median(rates[label])
        spread = f"{min(rates[label]):.0f}-{max(rates[label]):.0f}"
        print(f"| {label} | {batch} | {rate:.0f} ({spread}) | {rate / base:.2f}x |")
        rows.append(
            {
                "config": label,
                "processes": n,
                "strategy": strategy,
                "batch": batch,
                "tokens_per_s": rates[label],
            }
        )
    print(f"\nload average at end: {load_average()}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
