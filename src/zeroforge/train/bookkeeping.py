"""What the training loop writes and restores besides the weights: metrics.csv and its curves, the
progress bar, and the state a resumed run continues from (train/checkpoint.py holds the files)."""

from __future__ import annotations

import csv
import io
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
    if not enabled:
        return None
    from tqdm.auto import tqdm

    if args.max_steps is not None:
        return tqdm(total=args.max_steps, initial=start_step, unit="step", dynamic_ncols=True)
    budget = args.max_minutes * 60  # type: ignore[operator]
    # a time-budget run: the bar counts seconds of training, so its ETA is the budget left
    return tqdm(total=round(budget), initial=round(elapsed), unit="s", dynamic_ncols=True)
