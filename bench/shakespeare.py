"""Loss per minute on Shakespeare: nanoGPT's CPU quick configuration vs recipes/gpt-char-shakespeare.yaml.

Both train with zeroforge's trainer on the same data (the ``shakespeare`` corpus, character
tokenizer, the first 90% of the text for training and the last 10% for validation) for the same
wall-clock budget (``train.max_minutes``; evaluation time is not counted), one after the other in
this process. The reference is nanoGPT's README command for a CPU
(``config/train_shakespeare_char.py`` with ``--block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --dropout=0.0``: lr 1e-3 to 1e-4 by cosine, 100 warmup steps, beta2 0.99, fp32, no
compile), its schedule stretched over the budget as the recipe's is. Printed per run: the validation
loss of the last evaluation at or before each mark (2 and 10 minutes by default) and when it ran,
steps, tokens/s, and the load average and CPU use during the run (a loaded machine does fewer steps).

    .venv/bin/python bench/shakespeare.py                    # 10-minute budget: ~25 minutes in all
    .venv/bin/python bench/shakespeare.py --minutes 2 --marks 1,2
    .venv/bin/python bench/shakespeare.py --only recipe --minutes 2
    .venv/bin/python bench/shakespeare.py --recipe recipes/gpt-char-shakespeare-10min.yaml --marks 2,5,10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import load_average, machine_header
from zeroforge.eval.plots import read_metrics_csv
from zeroforge.pretraining import pretrain

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "gpt-char-shakespeare.yaml"

# nanoGPT's quick CPU configuration, as overrides of the recipe (data and tokenizer stay the same).
REFERENCE = [
    "model.name=gpt-char-small",
    "model.n_layer=4",
    "model.n_head=4",
    "model.n_embd=128",
    "model.block_size=64",
    "model.dropout=0.0",
    "model.bias=true",
    "model.attention=auto",
    "model.fused_loss=false",
    "train.block_size=null",
    "train.batch_size=12",
    "train.grad_accum=1",
    "train.optimizer=adamw",
    "train.lr=1e-3",
    "train.min_lr=1e-4",
    "train.schedule=cosine",
    "train.warmup_steps=100",
    "train.weight_decay=0.1",
    "train.beta1=0.9",
    "train.beta2=0.99",
    "train.grad_clip=1.0",
    "train.precision=fp32",
    "train.compile=false",
    "train.eval_every=100",
    "train.eval_batches=50",
]


def run(name: str, recipe: Path, overrides: list[str], minutes: float, out_dir: Path) -> dict[str, Any]:
    load_before = load_average()
    cpu0, wall0 = os.times(), time.perf_counter()
    run_dir = pretrain(
        recipe,
        overrides
        + [
            f"train.max_minutes={minutes}",
            "train.max_steps=null",
            f"train.out_dir={out_dir / name}",
            "train.progress=false",
            "train.save_every=0",
        ],
    )
    cpu1, wall = os.times(), time.perf_counter() - wall0
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    rows = read_metrics_csv(Path(run_dir) / "metrics.csv")
    return {
        "name": name,
        "rows": rows,
        "load_before": load_before,
        "load_after": load_average(),
        "cpu_use": cpu_s / wall,
    }


def value_at(rows: list[dict[str, Any]], seconds: float) -> tuple[float, float, int] | None:
    """(val_loss, elapsed_s, step) of the last evaluation at or before ``seconds`` of training."""
    evals = [r for r in rows if r.get("val_loss") is not None and r["elapsed_s"] <= seconds + 1.0]
    if not evals:
        return None
    last = evals[-1]
    return last["val_loss"], last["elapsed_s"], last["step"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    parser.add_argument("--marks", default="2,10", help="minutes at which to read the curves")
    parser.add_argument(
        "--recipe", type=Path, default=RECIPE, help="the recipe to race (the reference overrides it)"
    )
    parser.add_argument("--only", choices=["reference", "recipe"], help="run one configuration")
    parser.add_argument(
        "--threads", type=int, default=0, help="train.threads for both runs (0: torch's default)"
    )
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for the recipe run (train.lr=...)")
    args = parser.parse_args()
    marks = [float(m) for m in args.marks.split(",")]
    if not args.recipe.is_file():
        parser.error(f"--recipe {args.recipe}: no such recipe file")

    print(machine_header("Shakespeare characters: validation loss per minute of training"))
    print(
        f"recipe: {args.recipe.name} {' '.join(args.overrides)}; budget {args.minutes:g} min per run; "
        f"train.threads={args.threads or 'default'}"
    )
    threads = [f"train.threads={args.threads}"]
    runs = [("reference", REFERENCE + threads), ("recipe", threads + list(args.overrides))]
    if args.only:
        runs = [r for r in runs if r[0] == args.only]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        results = [run(name, args.recipe, ovr, args.minutes, out) for name, ovr in runs]

    header = f"{'run':<11}" + "".join(f"{f'val @ {m:g} min':>22}" for m in marks)
    print(header + f"{'steps':>8}{'tokens/s':>10}{'CPU use':>9}  load before -> after")
    for r in results:
        rows = r["rows"]
        cells = []
        for m in marks:
            hit = value_at(rows, m * 60)
            cells.append(f"{hit[0]:.4f} ({hit[1]:.0f} s)" if hit else "n/a")
        train_rows = [x for x in rows if x.get("tokens_per_s") is not None]
        tok_s = sum(x["tokens_per_s"] for x in train_rows) / max(1, len(train_rows))
        print(
            f"{r['name']:<11}" + "".join(f"{c:>22}" for c in cells) + f"{rows[-1]['step']:>8}{tok_s:>10.0f}"
            f"{r['cpu_use']:>8.2f}  {r['load_before']} -> {r['load_after']}"
        )
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
