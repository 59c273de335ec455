"""What the training loop writes and restores besides the weights: metrics.csv and its curves, the
progress bar, and the state a resumed run continues from (train/checkpoint.py holds the files)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.config import TrainArgs
from zeroforge.errors import ConfigError, ZeroforgeError
from zeroforge.io import atomic_write_text
from zeroforge.train import checkpoint as ckpt
from zeroforge.train.distributed import DistContext, all_gather_states
from zeroforge.train.runtime import BatchSource, set_rng_state


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def logged_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier metrics.csv (none when there is none yet)."""
    from zeroforge.eval.plots import read_metrics_csv

    return read_metrics_csv(path) if path.is_file() else []


def plot_curves(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    try:
        from zeroforge.eval.plots import plot_training_curves
    except ImportError:  # plots are a nicety; never fail a run over them
        return
    plot_training_curves(rows, run_dir / "loss.png", title=run_dir.name)


def resume_or_check(
    run_path: Path, args: TrainArgs, model: nn.Module, data: BatchSource, ctx: DistContext
) -> dict[str, Any] | None:
    """Restore the latest checkpoint's weights and this rank's data/RNG state when resuming (the
    optimizer follows once it exists); refuse to silently mix two runs otherwise."""
    latest = ckpt.latest_checkpoint(run_path)
    if ctx.world_size > 1:
        seen = all_gather_states(ctx, None if latest is None else latest.name)
        if len(set(seen)) > 1:
            raise ZeroforgeError(
                f"{run_path}: the ranks see different checkpoints ({', '.join(map(str, seen))}); "
                "the run directory must be on a filesystem every rank shares"
            )
    if not args.resume:
        if latest is not None or ckpt.is_complete(run_path):
            raise ConfigError(
                f"{run_path}: already holds a run; set train.resume=true to continue it, "
                "or choose another train.name / train.out_dir"
            )
        return None
    if latest is None:
        return None
    from safetensors.torch import load_model

    load_model(model, str(latest / ckpt.WEIGHTS_FILE), device=str(next(model.parameters()).device))
    state = ckpt.load_trainer_state(latest)
    ranks = state.get("ranks")
    if ranks is not None and len(ranks) == ctx.world_size:
        mine = ranks[ctx.rank]
    else:  # saved under another world size: rank 0 continues rank 0's state, the others derive theirs
        mine = {"data": state["data"], "rng": state["rng"] if ctx.rank == 0 else None}
    data.load_state_dict(mine["data"])
    if mine["rng"] is not None:
        set_rng_state(mine["rng"])
    else:
        torch.manual_seed(args.seed + ctx.rank)
    if ctx.is_main:
        (run_path / ckpt.COMPLETE).unlink(missing_ok=True)  # the run is live again until it ends
    return state


def read_weights(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's weights as a full state dict of ``model`` (tied weights are stored once)."""
    from safetensors.torch import load_model

    copy = {k: v.detach().clone() for k, v in model.state_dict().items()}
    load_model(model, str(path), device=str(next(model.parameters()).device))
    best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    model.load_state_dict(copy)
    return best


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as error:  # e.g. the run was started with another train.optimizer
        raise ConfigError(
            f"train.optimizer: the checkpoint's optimizer state does not fit this optimizer ({error}); "
            "resume with the optimizer the run started with"
        ) from None


def progress_postfix(row: dict[str, Any], unit: str) -> dict[str, str]:
    post = {}
    if row.get("train_loss") is not None:
        post["loss"] = f"{row['train_loss']:.4f}"
    if row.get("val_loss") is not None:
        post["val"] = f"{row['val_loss']:.4f}"
    if row.get(f"{unit}_per_s") is not None:
        post[f"{unit[:3]}/s"] = f"{row[f'{unit}_per_s']:.0f}"
    return post


def progress_bar(args: TrainArgs, start_step: int, elapsed: float, enabled: bool) -> Any:
    """A tqdm bar: steps done of ``max_steps``, or, for a run on a time budget alone, seconds of the
    budget used (``12/300 s of budget``, no rate; ``stop_message`` then names the step reached)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    if args.max_steps is not None:
        return tqdm(total=args.max_steps, initial=start_step, unit="step", dynamic_ncols=True)
    budget = args.max_minutes * 60  # type: ignore[operator]
    # the ETA of a time-budget run is the budget left, so the bar counts training seconds
    time_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget [{elapsed}<{remaining}{postfix}]"
    return tqdm(total=round(budget), initial=round(elapsed), bar_format=time_format, dynamic_ncols=True)


STEP_CAP_VARIABLE = "ZEROFORGE_MAX_STEPS"
"""An environment variable for a quick check of a whole workflow (the README's test sets it): every
run stops after at most this many optimizer steps and validates on at most this many batches, and
``evaluate`` reads at most this many batches. Unset, nothing changes."""


def step_cap() -> int | None:
    """``$ZEROFORGE_MAX_STEPS`` as a number, or None when it is not set."""
    value = os.environ.get(STEP_CAP_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"${STEP_CAP_VARIABLE}: expected a whole number >= 1, got {value!r}")
    return int(value)


def with_step_cap(
    args: TrainArgs, val_batches: list[dict[str, Any]] | None
) -> tuple[TrainArgs, list[dict[str, Any]] | None]:
    """``args`` and the validation batches, cut to ``$ZEROFORGE_MAX_STEPS`` when it is set."""
    cap = step_cap()
    if cap is None:
        return args, val_batches
    if val_batches is not None:
        val_batches = val_batches[:cap]
    if args.max_steps is not None and args.max_steps <= cap:
        return args, val_batches
    return dataclasses.replace(
        args, max_steps=cap, warmup_steps=min(args.warmup_steps, cap // 2)
    ), val_batches


def stop_message(args: TrainArgs, step: int, stopped_by: str, elapsed_s: float, best_step: int | None) -> str:
    """One line that says why a run ended: its steps done, its time budget, or early stopping."""
    minutes = f"{elapsed_s / 60:.1f} min" if elapsed_s >= 60 else f"{elapsed_s:.0f} s"
    if stopped_by == "max_minutes":
        of = f" of train.max_steps={args.max_steps}" if args.max_steps is not None else ""
        return (
            f"stopped at step {step}{of}: the time budget train.max_minutes={args.max_minutes:g} "
            f"ran out ({minutes})"
        )
    if stopped_by == "early_stopping":
        best = f"; best {args.monitor} at step {best_step}" if best_step is not None else ""
        return (
            f"stopped early at step {step}: {args.monitor} did not improve for "
            f"train.early_stopping_patience={args.early_stopping_patience} evaluations{best} ({minutes})"
        )
    if stopped_by == "stopped_after_evaluation":
        return f"stopped at step {step}: a listener of its evaluations asked (a search pruned it) ({minutes})"
    capped = " (capped by $" + STEP_CAP_VARIABLE + ")" if os.environ.get(STEP_CAP_VARIABLE) else ""
    return f"finished: {step} of {args.max_steps} steps done{capped} ({minutes})"
