"""``zeroforge lr-find``: the learning-rate range test (Smith 2017, "Cyclical Learning Rates for
Training Neural Networks", section 3.3).

    zeroforge lr-find --config recipes/gpt-char-shakespeare.yaml --steps 100

The recipe's model, data and optimizer are built as ``zeroforge train`` builds them; then for ``steps``
optimizer steps the learning rate grows exponentially from ``start_lr`` to ``end_lr``,
lr_i = start * (end / start)^(i / (steps - 1)), and each step's training loss is recorded. The curve is
smoothed with a bias-corrected exponential moving average (as fastai's LRFinder) and the test stops once
the smoothed loss passes ``diverge`` x its minimum. The suggestion is the learning rate where the smoothed
loss falls fastest against log(lr) (the steepest descent); the learning rate at the minimum / 10 is
reported beside it.

The test leaves no trace: it trains the model itself, then restores its weights, the torch RNG
and the batch stream afterwards, and its optimizer is its own, thrown away (a run's optimizer state is
never touched). Output: ``lr_find.png`` (loss against lr, log x) and ``lr_find.json``.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from zeroforge.config import Recipe, TrainArgs, load_recipe
from zeroforge.errors import ConfigError
from zeroforge.io import atomic_write_json
from zeroforge.train.optim import build_optimizer, set_learning_rate
from zeroforge.train.runtime import (
    BatchSource,
    autocast,
    resolve_device,
    resolve_precision,
    rng_state,
    set_rng_state,
    to_device,
)


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    """Raw training loss of each step."""
    smoothed: list[float]
    suggestion: float | None
    """The steepest descent of the smoothed loss against log(lr)."""
    min_loss_lr: float | None
    """The learning rate at the smoothed minimum (``min_loss_lr / 10`` is the other common choice)."""
    stopped_early: bool = False
    recipe_lr: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def lr_range_test(
    model: nn.Module,
    batches: BatchSource,
    args: TrainArgs,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    smoothing: float = 0.98,
    diverge: float = 4.0,
    progress: bool = True,
) -> LRFindResult:
    """The range test on ``model`` with ``args``' optimizer (and its grad_accum, grad_clip, precision);
    the model's weights, the torch RNG state and ``batches``' position are restored afterwards."""
    if steps < 2:
        raise ConfigError(f"--steps: must be >= 2, got {steps}")
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"--start-lr/--end-lr: need 0 < start < end, got {start_lr:g} and {end_lr:g}")
    if not 0 <= smoothing < 1:
        raise ConfigError(f"--smoothing: must be in [0, 1), got {smoothing}")
    device = resolve_device(args.device)
    amp_dtype = resolve_precision(args.precision, device)
    weights = copy.deepcopy(model.state_dict())
    rng, data_state, was_training = rng_state(), copy.deepcopy(batches.state_dict()), model.training
    model.to(device).train()
    optimizer = build_optimizer(model, args)  # its own: thrown away at the end
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    try:
        for i in tqdm(range(steps), desc="lr range test", disable=not progress):
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
            set_learning_rate(optimizer, lr)
            total = 0.0
            for _ in range(args.grad_accum):
                batch = to_device(batches.next_batch(), device)
                with autocast(device, amp_dtype):
                    loss = model(**batch).loss
                if loss is None:
                    raise ConfigError("lr-find: the model returned no loss (does the data provide labels?)")
                (loss / args.grad_accum).backward()
                total += float(loss.item()) / args.grad_accum
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            avg = smoothing * avg + (1 - smoothing) * total
            value = avg / (1 - smoothing ** (i + 1))  # bias-corrected moving average
            lrs.append(lr)
            losses.append(total)
            smoothed.append(value)
            best = min(best, value)
            if not math.isfinite(value) or value > diverge * best:
                stopped = True
                break
    finally:
        model.load_state_dict(weights)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        set_rng_state(rng)
        batches.load_state_dict(data_state)
        del optimizer
    steep, at_min = suggest(lrs, smoothed)
    return LRFindResult(lrs, losses, smoothed, steep, at_min, stopped, args.lr)


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(steepest descent lr, lr at the minimum) of the smoothed curve, before it diverged.

    The slope d loss / d log(lr) is a difference over ``w`` = 5% of the points on each side (single-step
    differences follow batch noise), taken up to the minimum and past the first 10% (where the moving
    average still rests on a few batches)."""
    finite = [(lr, v) for lr, v in zip(lrs, smoothed) if math.isfinite(v)]
    if len(finite) < 3:
        return None, None
    k = min(range(len(finite)), key=lambda i: finite[i][1])
    at_min = finite[k][0]
    w = max(1, len(finite) // 20)
    lo, hi = max(w, len(finite) // 10), min(k, len(finite) - 1 - w)
    if hi < lo:
        return None, at_min
    slopes = {
        i: (finite[i + w][1] - finite[i - w][1]) / (math.log(finite[i + w][0]) - math.log(finite[i - w][0]))
        for i in range(lo, hi + 1)
    }
    return finite[min(slopes, key=slopes.__getitem__)][0], at_min


def build_for_recipe(recipe: Recipe, work_dir: Path) -> tuple[nn.Module, BatchSource]:
    """The model (initialised as training would: same seed, or the pretrained weights) and its training
    batches, as ``zeroforge train`` assembles them; anything the data step writes goes to ``work_dir``."""
    from zeroforge.data.arrays import rename_input
    from zeroforge.data.builders import DataContext, data_builder
    from zeroforge.registry import family_of

    recipe.train.out_dir = str(work_dir)
    if recipe.finetune is not None:
        from zeroforge.finetuning import build_model, check_vocab, load_base, vocab_rows

        torch.manual_seed(recipe.train.seed)
        base, tokenizer = load_base(recipe.model)
        check_vocab(base, tokenizer, "model")
        data = data_builder(recipe)(recipe, DataContext(work_dir, 0, 1, tokenizer, vocab_rows(base)))
        return build_model(recipe, base, data.label_names), data.train
    from zeroforge.pretraining import set_model_fields

    if recipe.clean is not None:
        raise ConfigError(
            "lr-find: a recipe with a clean: step; run zeroforge clean first and point data.source at it"
        )
    data = data_builder(recipe)(recipe, DataContext(work_dir))
    set_model_fields(recipe, data.model_fields)
    torch.manual_seed(recipe.train.seed)
    assert recipe.model.name is not None
    model = family_of(recipe.model.name).model_cls(recipe.model_config())
    if recipe.data.objective == "images":
        rename_input([data.train.inputs, *data.val], model)
    return model, data.train


def plot_lr_find(result: LRFindResult, path: Path, title: str = "") -> None:
    """Loss against learning rate (log x): raw and smoothed, the suggestion and the recipe's lr marked."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zeroforge.io import atomic_write_bytes

    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggestion {result.suggestion:.2g}")
    if result.recipe_lr is not None:
        ax.axvline(result.recipe_lr, color="C2", ls=":", label=f"recipe lr {result.recipe_lr:.2g}")
    finite = [v for v in result.smoothed + result.losses if math.isfinite(v)]
    if finite:  # the fall in full; the divergence only up to 2.5x the lowest loss
        ax.set_ylim(min(finite) * 0.95, max(min(finite) * 2.5, result.smoothed[0] * 1.1))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(path, buf.getvalue())


def lr_find(
    config: str | os.PathLike[str],
    overrides: list[str] | None = None,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> LRFindResult:
    """The range test on a recipe; writes ``lr_find.png`` and ``lr_find.json`` into ``out_dir``
    (default ``runs/lr-find-<train.name>``) and returns the result."""
    recipe = load_recipe(config, overrides)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"lr-find-{recipe.train.name}"
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    with tempfile.TemporaryDirectory(prefix="zeroforge-lr-find-") as work:
        model, batches = build_for_recipe(recipe, Path(work))
        result = lr_range_test(model, batches, recipe.train, steps, start_lr, end_lr, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    result.extra = {"config": str(config), "overrides": list(overrides or []), "steps": steps}
    atomic_write_json(out / "lr_find.json", asdict(result))
    plot_lr_find(result, out / "lr_find.png", title=f"LR range test: {recipe.train.name}")
    return result
