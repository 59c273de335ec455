"""Distillation on SMS spam: teacher, distilled student and the same student alone, side by side.

    zeroforge finetune --config recipes/finetune-sms-spam.yaml
    zeroforge finetune --config recipes/distill-sms-spam.yaml
    zeroforge finetune --config recipes/distill-sms-spam.yaml finetune.task=classification train.name=distill-sms-spam-alone
    python bench/distill_results.py

Quality is each run's own test-split evaluation (metrics.json: the same 906 messages for all three);
speed is the test split classified in batches of 64, rounds alternating the models in one process
(median messages per second); size is the parameter count and the safetensors file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

RUNS = {
    "teacher (MiniLM-L6, fine-tuned)": "runs/finetune-sms-spam",
    "student, distilled (2 layers)": "runs/distill-sms-spam",
    "student alone (2 layers)": "runs/distill-sms-spam-alone",
}


def test_batches(run_dir: str, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    from zeroforge.config import read_run_recipe
    from zeroforge.data.tasks import labelled_splits, pad_id_of
    from zeroforge.tokenizers import load_tokenizer

    recipe = read_run_recipe(Path(run_dir))
    tok = load_tokenizer(run_dir)
    texts = labelled_splits(recipe, None)["test"].texts
    batches = []
    for i in range(0, len(texts), batch_size):
        ids = [tok.encode(t)[: recipe.data.max_length] for t in texts[i : i + batch_size]]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad_id_of(tok))
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x)
            mask[row, : len(x)] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask})
    return batches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import zeroforge

    models = {name: zeroforge.load(run)[0] for name, run in RUNS.items()}
    batches = test_batches(RUNS["teacher (MiniLM-L6, fine-tuned)"])
    n = sum(len(b["input_ids"]) for b in batches)
    rates: dict[str, list[float]] = {name: [] for name in models}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with torch.no_grad():
        for r in range(args.rounds):
            for name in list(models)[r % 3 :] + list(models)[: r % 3]:
                start = time.perf_counter()
                for batch in batches:
                    models[name](**batch)
                rates[name].append(n / (time.perf_counter() - start))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {n} test messages, {args.rounds} rounds")
    print("| model | parameters | file MB | accuracy | spam F1 | ROC-AUC | messages/s (median) | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in RUNS.items():
        m = json.loads((Path(run) / "metrics.json").read_text())
        params = sum(p.numel() for p in models[name].parameters())
        size = (Path(run) / "model.safetensors").stat().st_size / 1e6
        print(
            f"| {name} | {params / 1e6:.1f}M | {size:.0f} | {100 * m['accuracy']:.2f}% | {m['f1']:.3f} "
            f"| {m['roc_auc']:.3f} | {statistics.median(rates[name]):.0f} | {m['train_seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
