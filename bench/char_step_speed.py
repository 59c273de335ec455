"""Training-step speed of small character-level models by shape and optimizer (tokens per second).

    .venv/bin/python bench/char_step_speed.py --threads 2 gpt:2:128:4:64:24 gpt:2:128:4:64:24:muon

A SPEC is FAMILY:LAYERS:WIDTH:HEADS:BLOCK:BATCH[:OPTIMIZER], FAMILY gpt or llama, OPTIMIZER adamw
(default) or muon. Each shape trains on random 84-symbol batches (the Shakespeare vocabulary): 5
warm-up steps, then the median of 40 timed steps (forward, backward, clipping, optimizer step), eager
fp32, in the order given; run the sides you compare next to each other, on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import machine_header
from zeroforge.config import TrainArgs
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.models.llama import Llama, LlamaConfig
from zeroforge.train.optim import build_optimizer

VOCAB = 84


def build(spec: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, int, int]:
    family, *numbers = spec.split(":")
    optimizer = numbers.pop() if len(numbers) == 6 else "adamw"
    layers, width, heads, block, batch = map(int, numbers)
    torch.manual_seed(0)
    if family == "gpt":
        config = GPTConfig(n_layer=layers, n_embd=width, n_head=heads, block_size=block, vocab_size=VOCAB)
        model = GPT(config)
    elif family == "llama":
        hidden = int(width * 8 / 3) // 8 * 8  # SwiGLU's usual 8/3 width
        model = Llama(
            LlamaConfig(
                n_layer=layers, n_embd=width, n_head=heads, n_kv_head=heads, intermediate_size=hidden,
                block_size=block, vocab_size=VOCAB, rope_theta=10000.0,
            )
        )  # fmt: skip
    else:
        raise SystemExit(f"{spec}: family must be gpt or llama")
    args = TrainArgs(optimizer=optimizer, lr=1e-3, weight_decay=0.1, beta2=0.99, momentum=0.95)
    return model.train(), build_optimizer(model, args), block, batch


def median_step_seconds(spec: str) -> tuple[float, int, float]:
    """(median seconds per training step, tokens per step, millions of parameters) of one SPEC."""
    model, optimizer, block, batch = build(spec)

    def step() -> None:
        x = torch.randint(0, VOCAB, (batch, block + 1))
        model(x[:, :-1], labels=x[:, 1:]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), batch * block, sum(p.numel() for p in model.parameters()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("specs", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_header("Training-step speed of small character-level models"))
    for spec in args.specs:
        seconds, tokens, params = median_step_seconds(spec)
        print(
            f"{spec:>26}: {tokens / seconds:8.0f} tokens/s  {1 / seconds:6.1f} steps/s  {params:.2f}M params"
        )


if __name__ == "__main__":
    main()
