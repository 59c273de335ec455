"""The fine-tuning results of docs/results.md: runs, baselines on the same splits, and checks.

    python bench/finetune_results.py run RECIPE [overrides]   # zeroforge finetune, timed, with the load
    python bench/finetune_results.py tfidf-sms                # TF-IDF + logistic regression, SMS spam
    python bench/finetune_results.py embedding-lr-rt          # logistic regression on frozen MiniLM embeddings, RT
    python bench/finetune_results.py check-hf RUN             # merged model == transformers' logits
    python bench/finetune_results.py table RUN ...            # markdown rows from the runs' metrics.json

Baselines read the recipe's own split (``labelled_splits``: same de-duplication, fractions and seed),
fit on train, pick C on val, and score test once. Each command writes
``bench/results/finetune/<name>.json`` (metrics, wall time, command, machine and load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "finetune"
ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def save(name: str, record: dict[str, Any]) -> Path:
    from zeroforge.io import atomic_write_json

    record = {
        "name": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **record,
        "machine_end": machine(),
    }
    path = OUT / f"{name}.json"
    atomic_write_json(path, record)
    print(json.dumps({k: v for k, v in record.items() if k != "per_class"}, indent=2)[:3000])
    return path


def splits_of(recipe_path: str) -> dict[str, Any]:
    from zeroforge.config import load_recipe
    from zeroforge.data.tasks import labelled_splits

    recipe = load_recipe(recipe_path, finetune=True)
    return labelled_splits(recipe, None)


def _fit_lr(x_train: Any, y_train: np.ndarray, x_val: Any, y_val: np.ndarray) -> tuple[Any, float]:
    """Logistic regression with C chosen on the validation split."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train)
        score = clf.score(x_val, y_val)
        if best is None or score > best[1]:
            best = (clf, score, c)
    assert best is not None
    return best[0], best[2]


def _score(clf: Any, x_test: Any, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    from zeroforge.eval.evaluate import classification_metrics

    probs = clf.predict_proba(x_test)
    return classification_metrics(labels, probs, names)


def tfidf_sms(args: argparse.Namespace) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    t0 = time.time()
    parts = splits_of(str(ROOT / "recipes" / "finetune-sms-spam.yaml"))
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vec.fit_transform(parts["train"].texts)
    clf, c = _fit_lr(x_train, parts["train"].labels, vec.transform(parts["val"].texts), parts["val"].labels)
    metrics = _score(clf, vec.transform(parts["test"].texts), parts["test"].labels, parts["test"].label_names)
    save(
        "tfidf-lr-sms-spam",
        {
            "method": "TF-IDF (1-2 grams) + logistic regression",
            "C": c,
            **metrics,
            "seconds": round(time.time() - t0, 1),
            "machine": machine(),
        },
    )


def embedding_lr_rt(args: argparse.Namespace) -> None:
    import zeroforge as zf

    t0 = time.time()
    torch.set_num_threads(args.threads)
    parts = splits_of(str(ROOT / "recipes" / "finetune-rotten-tomatoes-full.yaml"))
    emb = {k: zf.embed("all-minilm-l6-v2", v.texts) for k, v in parts.items()}
    emb = {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in emb.items()}
    clf, c = _fit_lr(emb["train"], parts["train"].labels, emb["val"], parts["val"].labels)
    metrics = _score(clf, emb["test"], parts["test"].labels, parts["test"].label_names)
    save(
        "embedding-lr-rotten-tomatoes",
        {
            "method": "logistic regression on frozen all-MiniLM-L6-v2 sentence embeddings",
            "C": c,
            **metrics,
            "seconds": round(time.time() - t0, 1),
            "machine": machine(),
        },
    )


def run(args: argparse.Namespace) -> None:
    from zeroforge.config import load_recipe
    from zeroforge.finetuning import finetune

    recipe = load_recipe(args.recipe, args.overrides, finetune=True)
    start = machine()
    t0 = time.time()
    run_dir = finetune(recipe)
    wall = time.time() - t0
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    save(
        recipe.train.name,
        {
            "recipe": args.recipe,
            "overrides": args.overrides,
            "run_dir": str(run_dir),
            "wall_seconds": round(wall, 1),
            "machine": start,
            **metrics,
        },
    )


def check_hf(args: argparse.Namespace) -> None:
    """The published (merged) model and transformers' AutoModelForCausalLM on the same prompts."""
    import transformers

    import zeroforge as zf

    run_dir = Path(args.run)
    ours, tok = zf.load_pretrained(run_dir)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch.float32).eval()
    rows = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()[:4]]
    from zeroforge.data.sft import render_prompt, row_messages

    worst = 0.0
    for i, row in enumerate(rows):
        ids = torch.tensor([tok.encode(render_prompt(tok, row_messages(row, str(i))[:-1]))])
        with torch.no_grad():
            a, b = ours(ids).logits, theirs(ids).logits
        worst = max(worst, float((a - b).abs().max()))
    save(
        f"check-hf-{run_dir.name}",
        {"run": str(run_dir), "prompts": len(rows), "max_abs_logit_diff": worst, "machine": machine()},
    )


def table(args: argparse.Namespace) -> None:
    for run in args.runs:
        m = json.loads((Path(run) / "metrics.json").read_text(encoding="utf-8"))
        print(
            f"| {Path(run).name} | {m.get('method')} | {m.get('accuracy', float('nan')):.4f} | "
            f"{m.get('f1', m.get('f1_macro', float('nan'))):.4f} | {m.get('train_steps')} | {m.get('train_seconds')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=run)
    sub.add_parser("tfidf-sms").set_defaults(func=tfidf_sms)
    p = sub.add_parser("embedding-lr-rt")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=embedding_lr_rt)
    p = sub.add_parser("check-hf")
    p.add_argument("run")
    p.set_defaults(func=check_hf)
    p = sub.add_parser("table")
    p.add_argument("runs", nargs="+")
    p.set_defaults(func=table)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
