"""``make demo``: the whole path in a few minutes on a laptop CPU.

Prepare the Shakespeare corpus (fetched by name), pretrain a small character-level GPT under a
time budget with a progress bar, report validation loss, sample from it, and plot the curves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "gpt-char-shakespeare.yaml"
DEMO_DIR = "runs/demo"


def run_demo(minutes: float = 2.5, out_dir: str = DEMO_DIR) -> Path:
    from zeroforge.config import load_recipe
    from zeroforge.eval.evaluate import evaluate
    from zeroforge.generation import generate
    from zeroforge.pretraining import pretrain
    from zeroforge.weights import load

    recipe_path = DEMO_RECIPE if DEMO_RECIPE.is_file() else None
    overrides = [f"train.max_minutes={minutes}", "train.max_steps=null", f"train.out_dir={out_dir}"]
    recipe = load_recipe(recipe_path, overrides)
    run_dir = Path(out_dir)
    if run_dir.exists():  # the demo's own folder from an earlier demo
        shutil.rmtree(run_dir)
    print(f"== zeroforge demo: {recipe.model.name} on {recipe.data.source}, {minutes} min budget ==")
    pretrain(recipe)
    metrics = evaluate(run_dir)
    print(
        f"\nvalidation loss over all {metrics['val_tokens']:,} held-out tokens: {metrics['val_loss']:.4f} "
        f"(perplexity {metrics['val_perplexity']:.2f}); the bar's val= and the line above are the "
        f"estimate on train.eval_batches={recipe.train.eval_batches} batches"
    )
    model, tokenizer = load(run_dir)
    print("\n== sample (temperature 0.8) ==")
    continuation = generate(model, tokenizer, "ROMEO:", max_new_tokens=300, temperature=0.8, top_k=40, seed=0)
    print("ROMEO:" + continuation)  # generate returns what follows the prompt
    print(f"\ncurves: {run_dir / 'loss.png'}   metrics: {run_dir / 'metrics.csv'}")
    return run_dir
