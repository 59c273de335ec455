"""SmolLM2-135M-Instruct batch-1 greedy decode: zeroforge vs transformers on the same weights.

    python bench/smollm2_decode.py                      # fp32 and bf16, 64 new tokens, 5 rounds
    python bench/smollm2_decode.py --dtypes float32 --tokens 128 --rounds 7 --threads 1

The shipped GGUF is dequantised once by ``zeroforge convert`` into an HF folder (cached under
``$ZEROFORGE_CACHE/bench``); both libraries load that folder, so they run the very same fp32 weights
(and the same bf16 rounding of them). Each library decodes with its own public API: zeroforge's
``generation.iter_tokens`` (KV cache, step-level; by default with decode-time weight layouts, see
``zeroforge/decoding.py``), transformers' ``generate(do_sample=False)`` with a streamer. A third
side, ``zeroforge plain``, is ``iter_tokens(..., layout=False)``: the model's own weights, the
reference the default path is tested against. Decode speed is timed from the first generated token
to the last (prefill excluded); rounds alternate the sides in one process so all see the same
machine load, and the median is reported with the load average; the speed-up is the median of the
rounds' ratios. The greedy tokens of all sides must be identical, or the script exits 2. Peak memory is measured in a fresh child process per library: peak RSS minus the RSS
after imports (weights + caches + temporaries).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT = "The capital of France is Paris. Here is a short story about a lighthouse keeper:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def hf_folder() -> Path:
    """The GGUF dequantised to an HF safetensors folder (fp32), made once."""
    from zeroforge.datasets import cache_dir
    from zeroforge.weights import convert

    out = cache_dir() / "bench" / "smollm2-135m-instruct-hf"
    if not (out / "model.safetensors").is_file():
        convert("smollm2-135m-instruct", out)
    return out


SIDES = ("zeroforge", "zeroforge plain", "transformers")


def load(side: str, folder: Path, dtype: torch.dtype):
    if side.startswith("zeroforge"):
        from zeroforge.weights import load_pretrained

        model, tok = load_pretrained(folder, dtype=dtype)
        return model, tok.encode(PROMPT), tok.eos_id
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    return model, tok(PROMPT, add_special_tokens=False).input_ids, tok.eos_token_id


def decode(side: str, model, prompt: list[int], n: int) -> tuple[list[int], float]:
    """(n greedy tokens, seconds from the first token to the last)."""
    ids = torch.tensor([prompt])
    stamps: list[float] = []
    tokens: list[int] = []
    if side.startswith("zeroforge"):
        from zeroforge.generation import iter_tokens

        options = {"layout": side != "zeroforge plain", "compile": side == "zeroforge compile"}
        for token in iter_tokens(model, ids, max_new_tokens=n, temperature=0, **options):
            tokens.append(int(token[0]))
            stamps.append(time.perf_counter())
    else:

        class Streamer:
            first = True

            def put(self, value: torch.Tensor) -> None:
                if self.first:  # the prompt
                    self.first = False
                    return
                tokens.append(int(value.reshape(-1)[0]))
                stamps.append(time.perf_counter())

            def end(self) -> None:
                pass

        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                streamer=Streamer(),
                pad_token_id=model.config.eos_token_id,
            )
    return tokens, stamps[-1] - stamps[0]


def status_mb(key: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(side: str, folder: Path, dtype: str, n: int) -> None:
    """Run in a fresh process: print peak RSS growth (MB) over load + one decode."""
    import transformers  # noqa: F401  both pay for the import before the baseline

    import zeroforge.weights  # noqa: F401

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS: imports do not count
    before = status_mb("VmRSS")
    model, prompt, _ = load(side, folder, DTYPES[dtype])
    decode(side, model, prompt, n)
    print(json.dumps({"peak_mb": status_mb("VmHWM") - before}))


def peak_memory(side: str, folder: Path, dtype: str, n: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "--memory-child", side, "--dtypes", dtype, "--tokens", str(n)]
    cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a side decoding with compile=True (a static KV cache and one compiled graph per step; "
        "its first call compiles for about a minute and is not timed); printed under the table",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = hf_folder()
    if args.memory_child:
        memory_child(args.memory_child, folder, args.dtypes, args.tokens)
        return 0

    import transformers

    print("# SmolLM2-135M-Instruct, batch 1, greedy decode")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {args.tokens} new tokens, "
        f"prompt {len(PROMPT)} chars, {args.rounds} alternating rounds"
    )
    print(f"load average at start: {load_average()}")
    print()
    print(
        "| dtype | zeroforge tok/s, median (range) | zeroforge plain tok/s | transformers tok/s, median (range) "
        "| speed-up (plain) | zeroforge peak MB (plain) | transformers peak MB | same tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    status = 0
    compiled: list[str] = []
    for name in args.dtypes.split(","):
        dtype = DTYPES[name]
        sides = {side: load(side, folder, dtype) for side in SIDES}
        if args.compile:
            sides["zeroforge compile"] = sides["zeroforge"]  # the same model, decoded compiled
        for side, (model, prompt, _) in sides.items():  # warm-up: allocator, kernels, caches
            decode(side, model, prompt, 8)
        rates: dict[str, list[float]] = {side: [] for side in sides}
        tokens: dict[str, list[int]] = {}
        for r in range(args.rounds):
            order = list(sides)
            for side in order[r % len(order) :] + order[: r % len(order)]:  # rotate the order
                model, prompt, _ = sides[side]
                toks, seconds = decode(side, model, prompt, args.tokens)
                rates[side].append((len(toks) - 1) / seconds)
                tokens[side] = toks
        same = tokens["zeroforge"] == tokens["transformers"] == tokens["zeroforge plain"]
        ours, plain, theirs = (statistics.median(rates[s]) for s in SIDES)
        # speed-up: the median of each round's ratio (the sides of one round ran back to back, so a
        # change of machine load between rounds cancels out)
        speedup = {
            s: statistics.median(a / b for a, b in zip(rates[s], rates["transformers"])) for s in rates
        }
        spread = {s: f"{min(r):.1f}-{max(r):.1f}" for s, r in rates.items()}
        del sides
        mem = {s: peak_memory(s, folder, name, args.tokens, torch.get_num_threads()) for s in SIDES}
        print(
            f"| {name} | {ours:.1f} ({spread['zeroforge']}) | {plain:.1f} ({spread['zeroforge plain']}) "
            f"| {theirs:.1f} ({spread['transformers']}) | {speedup['zeroforge']:.2f}x ({speedup['zeroforge plain']:.2f}x) "
            f"| {mem['zeroforge']:.0f} ({mem['zeroforge plain']:.0f}) | "
            f"{mem['transformers']:.0f} | {'yes' if same else 'NO'} |"
        )
        if args.compile:
            compiled.append(
                f"{name}: zeroforge compile {statistics.median(rates['zeroforge compile']):.1f} tok/s "
                f"({speedup['zeroforge compile']:.2f}x transformers), "
                f"same tokens: {'yes' if tokens['zeroforge compile'] == tokens['transformers'] else 'NO'}"
            )
        for side in [s for s in tokens if s != "transformers"]:
            ours_t, theirs_t = tokens[side], tokens["transformers"]
            if ours_t != theirs_t:
                first = next((i for i, (a, b) in enumerate(zip(ours_t, theirs_t)) if a != b), 0)
                print(
                    f"MISMATCH ({side}) at token {first}: {ours_t[first : first + 5]} vs "
                    f"{theirs_t[first : first + 5]}",
                    file=sys.stderr,
                )
                status = 2
    print()
    for line in compiled:
        print(line)
    print(f"load average at end: {load_average()}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
