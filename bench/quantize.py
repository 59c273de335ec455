"""SmolLM2-135M-Instruct quantised: held-out perplexity, batch-1 decode speed and memory, side by side.

    python bench/quantize.py                                  # everything, ~15 min on 2 loaded cores
    python bench/quantize.py --blocks 8 --tokens 32 --rounds 3 --skip-llamacpp   # a quick look
    python bench/quantize.py --run runs/gpt-char-shakespeare  # also llama.cpp on a recipe-trained GPT

Sides: fp32 (the shipped GGUF dequantised), bf16 (weight-only: weights stored bf16, arithmetic fp32,
what ``generate(..., dtype=torch.bfloat16)`` runs), int8 (per output channel) and int4-g64
(zeroforge.quantize_model; modules/quantized.py), plus llama.cpp (llama-cpp-python) on the same
model exported with ``zeroforge export-gguf`` as f16, q8_0 and q4_0.

- Perplexity: the last 10% of the Shakespeare corpus (the char recipes' validation text), SmolLM2's
  tokens, ``--blocks`` non-overlapping blocks of ``--block`` tokens.
- Decode: greedy tokens per second from the first generated token to the last, batch 1, rounds
  alternating the sides in one process so all see the same machine load; each ratio is the median
  of the rounds' ratios to the bf16 side. A second bf16 side loads the whole model in bf16
  (activations bf16 too; oneDNN's packed bf16 kernels), the fastest bf16 path on AMX machines.
- Memory: bytes of the model's parameters and buffers, and the resident set (RSS) of a fresh process
  that holds only that side's model (measured after the fp32 source is freed).
- llama.cpp: the 32 greedy tokens of the f16 export against zeroforge's on the same file (exit 2 if
  they differ), and its decode tokens per second.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROMPT = "The capital of France is Paris. Here is a short story about a lighthouse keeper:"
SIDES = ("fp32", "bf16", "bf16 model", "int8", "int4-g64")
PPL_ONLY = ("int4-g64-asym", "int4-g32-asym")  # perplexity only


def build(side: str, fp32: torch.nn.Module) -> torch.nn.Module:
    from zeroforge.modules.weight_only import convert_to_weight_only
    from zeroforge.quantization import quantize_model

    if side == "fp32":
        return fp32
    if side == "bf16":
        return convert_to_weight_only(copy.deepcopy(fp32), torch.bfloat16).eval()
    if side == "bf16 model":
        import zeroforge

        return zeroforge.load("smollm2-135m-instruct", dtype=torch.bfloat16)[0]
    if side == "int8":
        return quantize_model(copy.deepcopy(fp32), 8)
    group = int(side.split("-g")[1].split("-")[0])
    return quantize_model(copy.deepcopy(fp32), 4, group, asymmetric=side.endswith("asym"))


def held_out_tokens(tokenizer) -> torch.Tensor:
    from zeroforge import datasets

    text = datasets.load_text("shakespeare")
    return torch.tensor(tokenizer.encode(text[int(0.9 * len(text)) :]))


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokens: torch.Tensor, block: int, blocks: int) -> float:
    import math

    total, count = 0.0, 0
    for i in range(blocks):
        chunk = tokens[i * block : (i + 1) * block + 1][None]
        logits = model(input_ids=chunk[:, :-1]).logits.float()
        total += torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum").item()
        count += block
    return math.exp(total / count)


def decode(model: torch.nn.Module, prompt: list[int], n: int, **options) -> tuple[list[int], float]:
    from zeroforge.generation import iter_tokens

    stamps, tokens = [], []
    for token in iter_tokens(model, torch.tensor([prompt]), max_new_tokens=n, temperature=0, **options):
        tokens.append(int(token[0]))
        stamps.append(time.perf_counter())
    return tokens, (len(tokens) - 1) / (stamps[-1] - stamps[0])


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(side: str) -> None:
    import zeroforge
    from zeroforge.modules.quantized import quantized_bytes

    fp32, tok = zeroforge.load("smollm2-135m-instruct")
    model = build(side, fp32)
    prompt = tok.encode(PROMPT)
    decode(
        fp32 if side == "bf16" else model, prompt, 4, **({"dtype": torch.bfloat16} if side == "bf16" else {})
    )
    if model is not fp32:
        del fp32
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    print(json.dumps({"rss_mb": rss_mb(), "weight_mb": quantized_bytes(model) / 1e6}))


def child_memory(side: str, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", side, "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llamacpp_side(path: Path, prompt: list[int], n: int, threads: int) -> tuple[list[int], float]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=threads, verbose=False)
    stamps, tokens = [], []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        tokens.append(int(token))
        stamps.append(time.perf_counter())
        if len(tokens) == n:
            break
    return tokens, (len(tokens) - 1) / (stamps[-1] - stamps[0])


def parity(path: Path, prompt_text: str, threads: int, n: int = 32) -> bool:
    import zeroforge
    from zeroforge.generation import generate_ids

    model, tok = zeroforge.load(path)
    prompt = tok.encode(prompt_text)
    ours = generate_ids(model, torch.tensor([prompt]), max_new_tokens=n, temperature=0.0)[0].tolist()
    theirs, _ = llamacpp_side(path, prompt, n, threads)
    return ours == theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=32, help="perplexity blocks")
    parser.add_argument("--block", type=int, default=256, help="tokens per perplexity block")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per decode round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-llamacpp", action="store_true")
    parser.add_argument(
        "--gguf-types",
        default="f16",
        help="exports llama.cpp decodes (f16,q8_0,q4_0); llama-cpp-python 0.3.36 built with GGML_NATIVE "
        "crashed (a general protection fault in libggml-cpu) on q8_0/q4_0/q4_1 files on an AMX Xeon",
    )
    parser.add_argument(
        "--run", default=None, help="a recipe-trained run: its f16 export checked in llama.cpp"
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0

    import zeroforge

    cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
    print("# SmolLM2-135M-Instruct: fp32, bf16, int8, int4-g64 and llama.cpp")
    print(f"cpu: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, threads {args.threads}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    fp32, tok = zeroforge.load("smollm2-135m-instruct")
    models = {side: build(side, fp32) for side in SIDES}
    prompt = tok.encode(PROMPT)

    tokens = held_out_tokens(tok)
    ppl = {side: perplexity(m, tokens, args.block, args.blocks) for side, m in models.items()}
    for side in PPL_ONLY:
        ppl[side] = perplexity(build(side, fp32), tokens, args.block, args.blocks)
    models["bf16"] = fp32  # decoded as generate(dtype=torch.bfloat16) decodes: a cached bf16 copy
    print(f"\nheld-out Shakespeare perplexity, {args.blocks} x {args.block} tokens:")
    for side, value in ppl.items():
        print(f"  {side:10s} {value:8.3f}  ({100 * (value / ppl['fp32'] - 1):+.2f}% vs fp32)")

    gguf_dir = Path(tempfile.mkdtemp(prefix="zeroforge-bench-gguf-"))
    exports: dict[str, Path] = {}
    if not args.skip_llamacpp:
        from zeroforge.weights.gguf_export import write_gguf

        for kind in args.gguf_types.split(","):  # what `zeroforge export-gguf` writes, from the loaded model
            exports[kind] = write_gguf(fp32, tok, gguf_dir / f"smol-{kind}.gguf", kind)

    options = {side: {"dtype": torch.bfloat16} if side == "bf16" else {} for side in models}
    for side, model in models.items():  # warm-up
        decode(model, prompt, 8, **options[side])
    rates: dict[str, list[float]] = {side: [] for side in [*models, *(f"llama.cpp {k}" for k in exports)]}
    first: dict[str, list[int]] = {}
    order = list(rates)
    for r in range(args.rounds):
        for side in order[r % len(order) :] + order[: r % len(order)]:
            if side.startswith("llama.cpp"):
                toks, rate = llamacpp_side(exports[side.split()[1]], prompt, args.tokens, args.threads)
            else:
                toks, rate = decode(models[side], prompt, args.tokens, **options[side])
            rates[side].append(rate)
            first.setdefault(side, toks)
        print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    memory = {side: child_memory(side, args.threads) for side in models}
    print(f"\ndecode, batch 1, {args.tokens} new tokens, {args.rounds} alternating rounds:")
    print("| side | tok/s median (range) | x bf16 (median of round ratios) | weights MB | process RSS MB |")
    print("|---|---|---|---|---|")
    for side, values in rates.items():
        ratio = statistics.median(a / b for a, b in zip(values, rates["bf16"]))
        mem = memory.get(side)
        if side.startswith("llama.cpp"):
            weights = f"{exports[side.split()[1]].stat().st_size / 1e6:.0f} (file)"
            rss = "-"
        else:
            weights, rss = f"{mem['weight_mb']:.0f}", f"{mem['rss_mb']:.0f}"
        print(
            f"| {side} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) | {ratio:.2f} "
            f"| {weights} | {rss} |"
        )
    same = {side: first[side] == first["fp32"] for side in first}
    print(f"\ngreedy tokens equal to fp32's: {same}")

    status = 0
    if exports:
        ok = parity(exports["f16"], "The capital of France is", args.threads)
        print(f"llama.cpp f16 export, 32 greedy tokens equal to zeroforge's: {ok}")
        status = status or (0 if ok else 2)
    if args.run:
        path = zeroforge.export_gguf(args.run, gguf_dir / "run-f16.gguf", "f16")
        ok = parity(path, "ROMEO:\n", args.threads)
        print(f"llama.cpp on {args.run} (f16 export), 32 greedy tokens equal to zeroforge's: {ok}")
        status = status or (0 if ok else 2)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
