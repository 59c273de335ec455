"""LoRA vs full fine-tuning, and zeroforge's LoRA vs peft's, on SmolLM2-135M (docs/benchmarks.md).

    python bench/finetune_lora.py memory     # peak RSS and step time: full vs LoRA (one process each)
    python bench/finetune_lora.py speed      # zeroforge LoRA vs peft LoRA, steps alternating in one process
    python bench/finetune_lora.py all

Batch 4 x 256 tokens of real text (the Shakespeare corpus through SmolLM2's tokenizer), fp32, AdamW,
LoRA rank 16 / alpha 32 on q, k, v, o, gate, up and down projections. Two kinds of labels:

- ``lm``: every position has a next-token label (continued pretraining);
- ``sft``: only the last 64 positions of each row have labels, the rest is -100 (a prompt and its
  answer, as in instruction tuning).

peft runs on ``transformers.LlamaForCausalLM`` loaded from the same weights (an HF folder written by
``zeroforge.save_pretrained``), with the same adapters (A copied from ours, B zero) and the same
batches: the first step's losses must agree, or the benchmark stops. Peak RSS is measured per
process, over the steps after the first (``/proc/self/clear_refs`` resets the high-water mark once
the first step, which allocates the optimizer state and compiles under ``--compile``, is done), so
it is the weights, the optimizer state and what a training step adds. Results go to
``bench/results/finetune/lora_bench.json``.

    python bench/finetune_lora.py memory --compile --checkpointing   # the memory-lean settings

On CPU, glibc's heap keeps most of what a step frees (fragmentation: freed activations are reused,
not returned), so peak RSS is well above the live tensors; compile (fewer, fused temporaries) and
activation checkpointing (one block's activations at a time) cut both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).resolve().parent / "results" / "finetune"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA = 16, 32.0
B, T, ANSWER = 4, 256, 64


def rss_mb() -> tuple[float, float]:
    """(current, peak since the last reset) resident set size in MB, from /proc/self/status."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


def hf_folder() -> Path:
    """SmolLM2-135M-Instruct as an HF folder (written once into the cache from the shipped GGUF)."""
    from zeroforge.datasets import cache_dir

    folder = cache_dir() / "bench" / "finetune-smollm2-135m-hf"
    if not (folder / "config.json").is_file():
        import zeroforge as zf

        model, tok = zf.load_pretrained("smollm2-135m-instruct")
        zf.save_pretrained(model, tok, folder)
    return folder


def batches(n: int, kind: str, vocab_tokenizer: Any) -> list[dict[str, torch.Tensor]]:
    from zeroforge import datasets

    text = datasets.load_text("shakespeare")[:400_000]
    ids = torch.tensor(vocab_tokenizer.encode(text)[: n * B * (T + 1)]).view(n, B, T + 1)
    out = []
    for rows in ids:
        labels = rows[:, 1:].clone()
        labels[:, -1] = -100  # transformers predicts T - 1 targets per row: score the same ones
        if kind == "sft":
            labels[:, : T - ANSWER] = -100
        out.append({"input_ids": rows[:, :-1].contiguous(), "labels": labels})
    return out


def ours(method: str) -> tuple[torch.nn.Module, Any]:
    import zeroforge as zf
    from zeroforge.models.causal_lm import FinetunedLM
    from zeroforge.modules.lora import LoRAConfig, apply_lora, mark_trainable

    base, tok = zf.load_pretrained(hf_folder())
    model = FinetunedLM.wrap(base.train())
    if method == "lora":
        apply_lora(model.model, LoRAConfig(rank=RANK, alpha=ALPHA, target_modules=TARGETS))
        mark_trainable(model)
    return model, tok


def theirs() -> torch.nn.Module:
    import peft
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(
        hf_folder(), dtype=torch.float32, attn_implementation="sdpa"
    )
    config = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS)
    return peft.get_peft_model(hf, config).train()


def _hf_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same examples for transformers, which shifts labels inside: labels[t] is token t itself."""
    ids = batch["input_ids"]
    labels = torch.full_like(ids, -100)
    labels[:, 1:] = batch["labels"][:, :-1]
    return {"input_ids": ids, "labels": labels}


def run_memory(
    method: str, kind: str, steps: int, checkpointing: bool = False, compile: bool = False
) -> dict[str, Any]:
    """One configuration in this process: step times, and the peak RSS of steps 2..steps+1 (the
    first step, which allocates the optimizer state and under ``compile`` compiles, runs before the
    high-water mark is reset; the state it allocates stays in every later step).

    ``checkpointing``: every block's activations are recomputed in backward instead of kept
    (zeroforge's ``distributed.activation_checkpointing``, transformers' ``gradient_checkpointing_enable``).
    ``compile``: zeroforge's model runs through ``train.compile``'s path (peft's never does)."""
    torch.manual_seed(0)
    if method == "peft":
        import transformers

        model = theirs()
        tok = transformers.AutoTokenizer.from_pretrained(hf_folder())
        if checkpointing:
            model.base_model.model.gradient_checkpointing_enable({"use_reentrant": False})
    else:
        model, tok = ours(method)
        if checkpointing:
            from zeroforge.train.distributed import checkpoint_activations

            checkpoint_activations(model)
    data = batches(steps + 1, kind, tok)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    run: Any = model
    if compile and method != "peft":
        from zeroforge.train.loop import compile_step

        run = compile_step(model, torch.device("cpu"))
    loaded, _ = rss_mb()
    times, losses = [], []
    for i, batch in enumerate(data):
        b = _hf_batch(batch) if method == "peft" else batch
        t0 = time.perf_counter()
        loss = run(**b).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
        if i == 0:
            reset_peak()
    _, peak = rss_mb()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "method": method,
        "labels": kind,
        "rss_after_load_mb": round(loaded, 1),
        "peak_rss_mb": round(peak, 1),
        "step_s_median": round(statistics.median(times[1:]), 3),
        "step_s": [round(t, 3) for t in times],
        "first_loss": losses[0],
        "trainable_params": trainable,
        "activation_checkpointing": checkpointing,
        "compile": compile and method != "peft",
        "threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for method in ("full", "lora", "peft"):
        cmd = [
            sys.executable,
            __file__,
            "_one",
            method,
            "lm",
            str(args.steps),
            "--threads",
            str(args.threads),
            *(["--checkpointing"] if args.checkpointing else []),
            *(["--compile"] if args.compile else []),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        record = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(record), flush=True)
        results.append(record)
    return results


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """zeroforge LoRA and peft LoRA in one process, steps alternating so both see the same load.

    With ``--compile`` zeroforge's model runs through ``train.compile``'s path (torch.compile; the
    fused loss stays eager behind a graph break at the labelled-row selection); peft runs eagerly."""
    torch.manual_seed(0)
    z, tok = ours("lora")
    p = theirs()
    from zeroforge.modules.lora import lora_layers

    with torch.no_grad():  # the same adapters: A from ours, B zero on both sides
        params = dict(p.named_parameters())
        for name, layer in lora_layers(z.model):
            params[f"base_model.model.{name}.lora_A.default.weight"].copy_(layer.lora_A.weight)
    opt_z = torch.optim.AdamW([q for q in z.parameters() if q.requires_grad], lr=1e-5)
    opt_p = torch.optim.AdamW([q for q in p.parameters() if q.requires_grad], lr=1e-5)
    z_run: Any = z
    if args.compile:
        from zeroforge.train.loop import compile_step

        z_run = compile_step(z, torch.device("cpu"))
    results = []
    for kind in ("lm", "sft"):
        data = batches(args.steps + 1 + args.compile, kind, tok)  # compiled: 2 untimed warm-up steps
        times: dict[str, list[float]] = {"zeroforge": [], "peft": []}
        for i, batch in enumerate(data):
            order = [("zeroforge", z_run, opt_z, batch), ("peft", p, opt_p, _hf_batch(batch))]
            losses = {}
            for name, model, opt, b in order if i % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                loss = model(**b).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                times[name].append(time.perf_counter() - t0)
                losses[name] = float(loss.detach())
            if i == 0 and kind == "lm" and abs(losses["zeroforge"] - losses["peft"]) > 1e-3:
                raise SystemExit(f"MISMATCH: first-step losses differ: {losses}")
        skip = 1 + args.compile
        z_med, p_med = statistics.median(times["zeroforge"][skip:]), statistics.median(times["peft"][skip:])
        record = {
            "labels": kind,
            "compile": args.compile,
            "threads": torch.get_num_threads(),
            "zeroforge_step_s": round(z_med, 3),
            "peft_step_s": round(p_med, 3),
            "speedup": round(p_med / z_med, 3),
            "zeroforge_steps": [round(t, 3) for t in times["zeroforge"]],
            "peft_steps": [round(t, 3) for t in times["peft"]],
            "load_avg": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(record), flush=True)
        results.append(record)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["memory", "speed", "all", "_one"])
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="compile zeroforge's model (not peft's)")
    parser.add_argument(
        "--checkpointing", action="store_true", help="memory: activation checkpointing in every model"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "_one":
        method, kind, steps = args.rest
        print(json.dumps(run_memory(method, kind, int(steps), args.checkpointing, args.compile)))
        return
    from zeroforge.io import atomic_write_json

    hf_folder()
    path = OUT / "lora_bench.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    record["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    if args.what in ("memory", "all"):
        key = (
            "memory" + ("_compiled" if args.compile else "") + ("_checkpointed" if args.checkpointing else "")
        )
        record[key] = memory(args)
        atomic_write_json(path, record)
    if args.what in ("speed", "all"):
        record["speed_compiled" if args.compile else "speed"] = speed(args)
        atomic_write_json(path, record)
    print(path)


if __name__ == "__main__":
    main()
