"""The one training loop, for every model from linear regression to GPT.

A model returns ``ModelOutput(loss=...)`` for a batch dict; this loop owns everything else:
optimizer and schedule, precision, gradient accumulation and clipping, periodic evaluation, early
stopping, checkpoints and exact resume, the time budget, progress, metrics.csv and plots. It is
written as one function on purpose (nanoGPT's train.py, without a callback framework).

Under torchrun the same loop runs on every rank (``distributed.strategy`` ddp or fsdp): the model
wrapping, gradient-sync skipping and consolidated checkpoints live in ``train/distributed.py``; here
every rank takes the same steps, metrics are summed over ranks, and only rank 0 logs and writes.
The device, precision and validation helpers are in ``train/runtime.py``; metrics.csv, the progress bar
and resuming in ``train/bookkeeping.py``. Recipes reach this loop through the entry points
(``pretraining``, ``finetuning``, ``fitting``), never the other way round.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.config import DistributedArgs, TrainArgs
from zeroforge.errors import ConfigError
from zeroforge.models.output import ModelOutput
from zeroforge.train import checkpoint as ckpt
from zeroforge.train.bookkeeping import (
    logged_rows,
    plot_curves,
    progress_bar,
    progress_postfix,
    read_weights,
    restore_optimizer,
    resume_or_check,
    stop_message,
    with_step_cap,
    write_metrics_csv,
)
from zeroforge.train.distributed import (
    DistContext,
    WrappedModel,
    all_gather_states,
    all_reduce_sums,
    broadcast_float,
    failures,
    session,
)
from zeroforge.train.optim import build_optimizer, learning_rate, set_learning_rate
from zeroforge.train.runtime import (
    BatchSource,
    MetricMeter,
    autocast,
    batch_size_of,
    compile_step,
    evaluate_ranks,
    evaluation_says_stop,
    resolve_device,
    resolve_precision,
    rng_state,
    to_device,
)


@dataclass
class TrainResult:
    run_dir: Path | None
    step: int
    stopped_by: str
    elapsed_s: float
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    """The step with the best ``train.monitor`` value (the published model's step under keep_best)."""
    best_score: float | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- the loop


def train(
    model: nn.Module,
    train_data: BatchSource,
    args: TrainArgs,
    *,
    val_batches: list[dict[str, Any]] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    tokenizer: Any | None = None,
    recipe: dict[str, Any] | None = None,
    distributed: DistributedArgs | None = None,
) -> TrainResult:
    """Train ``model`` on batches from ``train_data`` as ``args`` says; see the module docstring.

    With ``run_dir`` set, checkpoints, metrics.csv, loss.png and the final model go there (rank 0 only)
    and ``args.resume`` continues from its latest checkpoint exactly. ``distributed`` (default: one
    process) runs it on the ranks torchrun started; under fsdp ``model`` is sharded in place.
    """
    dist_args = distributed if distributed is not None else DistributedArgs()
    with session(dist_args, resolve_device(args.device)) as ctx, failures(ctx):
        return _train(model, train_data, args, dist_args, ctx, val_batches, run_dir, tokenizer, recipe)


def _train(
    model: nn.Module,
    train_data: BatchSource,
    args: TrainArgs,
    dist_args: DistributedArgs,
    ctx: DistContext,
    val_batches: list[dict[str, Any]] | None,
    run_dir: str | os.PathLike[str] | None,
    tokenizer: Any | None,
    recipe: dict[str, Any] | None,
) -> TrainResult:
    is_main = ctx.is_main
    args, val_batches = with_step_cap(args, val_batches)  # $ZEROFORGE_MAX_STEPS: a quick check
    device = ctx.device_for(resolve_device(args.device))
    amp_dtype = resolve_precision(args.precision, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model.to(device)
    model.train()

    run_path = Path(run_dir) if run_dir is not None else None
    start_step, elapsed_before, history = 0, 0.0, []
    # early stopping and keep_best watch ``args.monitor``; best_val is the lowest val loss, reported
    minimize = args.monitor_mode == "min" or (args.monitor_mode == "auto" and "loss" in args.monitor)
    best_val, evals_since_best = math.inf, 0
    best_score, best_step = (math.inf if minimize else -math.inf), None
    best_weights: dict[str, torch.Tensor] | None = None
    resumed = None
    if run_path is not None:
        resumed = resume_or_check(run_path, args, model, train_data, ctx)
        if resumed is not None:
            start_step = resumed["step"]
            elapsed_before = resumed["elapsed_s"]
            best_val = resumed["best_val"]
            evals_since_best = resumed["evals_since_best"]
            best_score = resumed.get("best_score", best_score)
            best_step = resumed.get("best_step")
            history = [r for r in logged_rows(run_path / "metrics.csv") if (r.get("step") or 0) <= start_step]
            if is_main:
                print(f"resumed from step {start_step} ({run_path})")
        if is_main:
            run_path.mkdir(parents=True, exist_ok=True)
            ckpt.remove_partial_writes(run_path)  # what a killed earlier start left half-written
    if resumed is None and ctx.world_size > 1:
        torch.manual_seed(args.seed + ctx.rank)  # own dropout masks per rank; the weights are rank 0's

    # DDP wraps the model, FSDP shards it in place; the optimizer then sees the parameters it steps
    wrapped = WrappedModel(model, dist_args, ctx)
    if args.keep_best and (run_path is None or not val_batches):
        raise ConfigError("train.keep_best: needs a run directory and validation data to judge 'best'")
    if args.keep_best and wrapped.sharded:
        raise ConfigError("train.keep_best: not supported with fsdp (the best weights are sharded)")
    if args.optimizer == "muon" and wrapped.sharded:
        raise ConfigError(
            "train.optimizer: muon orthogonalises whole matrices and fsdp shards them; "
            "use adamw with fsdp, or distributed.strategy=ddp"
        )
    if args.keep_best and resumed is not None and best_step is not None:
        best_path = ckpt.best_checkpoint(run_path)  # type: ignore[arg-type]
        if best_path is not None:
            best_weights = read_weights(model, best_path / ckpt.WEIGHTS_FILE)
    optimizer = build_optimizer(model, args)
    if resumed is not None:
        if wrapped.sharded:
            wrapped.load_optimizer_state(optimizer, resumed["optimizer"])
        else:
            restore_optimizer(optimizer, resumed["optimizer"])
    step_fn = compile_step(wrapped.module, device) if args.compile else wrapped.module

    def progress_of(step: int, elapsed: float) -> float:
        """Fraction of the post-warmup run done, by steps or by wall time, whichever is further."""
        parts = []
        if args.max_steps is not None:
            parts.append((step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
        if args.max_minutes is not None:
            parts.append(elapsed / (args.max_minutes * 60))
        return max(parts)

    def save(step: int, elapsed: float) -> Path | None:
        """A checkpoint; a collective (every rank's data/RNG state, and the shards under fsdp)."""
        mine = {"data": train_data.state_dict(), "rng": rng_state()}
        ranks = all_gather_states(ctx, mine) if ctx.world_size > 1 else None
        to_save, optimizer_state = wrapped.checkpoint_parts(optimizer)
        if not is_main or run_path is None:
            return None
        state = {
            "step": step,
            "elapsed_s": elapsed,
            "best_val": best_val,
            "evals_since_best": evals_since_best,
            "best_score": best_score,
            "best_step": best_step,
            "optimizer": optimizer_state,
            "data": mine["data"],
            "rng": mine["rng"],
        }
        if ranks is not None:  # each rank's stream continues on resume under the same world size
            state.update(world_size=ctx.world_size, ranks=ranks)
        return ckpt.save_checkpoint(run_path, step, to_save, tokenizer, recipe, state)

    bar = progress_bar(args, start_step, elapsed_before, enabled=is_main and args.progress)
    step, elapsed = start_step, elapsed_before
    stopped_by = "max_steps"
    window = MetricMeter()
    window_units, window_time, unit = 0, 0.0, "tokens"
    last_val: dict[str, float] = {}
    last_checkpoint: Path | None = None
    saved_step = -1  # known on every rank: saving is a collective
    stop_asked = False  # by a listener of train.runtime.on_evaluation (a search pruning this run)
    t_last = time.perf_counter()

    while True:
        if args.max_steps is not None and step >= args.max_steps:
            stopped_by = "max_steps"
            break
        if args.max_minutes is not None and elapsed >= args.max_minutes * 60:
            stopped_by = "max_minutes"
            break

        # one optimizer step = grad_accum micro-batches; gradients are reduced over ranks on the last
        lr = learning_rate(step, progress_of(step, elapsed), args)
        set_learning_rate(optimizer, lr)
        for micro in range(args.grad_accum):
            batch = to_device(train_data.next_batch(), device)
            with wrapped.gradient_sync(micro == args.grad_accum - 1):
                with autocast(device, amp_dtype):
                    out: ModelOutput = step_fn(**batch)
                if out.loss is None:
                    raise ConfigError("the model returned no loss: does the data provide labels?")
                (out.loss / args.grad_accum).backward()
            window.add(out.loss.item(), out.metrics)
            n, unit = batch_size_of(batch)
            window_units += n
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        now = time.perf_counter()
        dt, t_last = now - t_last, now
        elapsed += dt
        window_time += dt
        if args.max_minutes is not None:
            elapsed = broadcast_float(ctx, elapsed)  # one clock for the schedule and the stop
        row: dict[str, Any] | None = None
        if step % args.log_every == 0 or step == args.max_steps:
            sums = all_reduce_sums(ctx, {**window.sums, "__units__": [float(window_units), 1.0]})
            units = sums.pop("__units__")[0]
            window.sums = sums
            stats = window.compute()
            row = {"step": step, "elapsed_s": round(elapsed, 3), "lr": lr, "train_loss": stats.pop("loss")}
            row.update({f"train_{k}": v for k, v in stats.items()})
            row[f"{unit}_per_s"] = units / max(window_time, 1e-9)
            window, window_units, window_time = MetricMeter(), 0, 0.0

        is_last = args.max_steps is not None and step >= args.max_steps
        out_of_time = args.max_minutes is not None and elapsed >= args.max_minutes * 60
        if val_batches and (step % args.eval_every == 0 or is_last or out_of_time):
            last_val = evaluate_ranks(model, val_batches, device, amp_dtype, ctx)
            row = row or {"step": step, "elapsed_s": round(elapsed, 3), "lr": lr}
            row["val_loss"] = last_val.get("loss", float("nan"))
            row.update({f"val_{k}": v for k, v in last_val.items() if k != "loss"})
            best_val = min(best_val, row["val_loss"])
            score = row.get(args.monitor)
            if score is None:
                known = ", ".join(k for k in row if k.startswith("val_"))
                raise ConfigError(f"train.monitor: this run reports no {args.monitor!r} (it has {known})")
            improved = score < best_score if minimize else score > best_score
            if improved:
                best_score, best_step, evals_since_best = score, step, 0
            else:
                evals_since_best += 1
            if improved and args.keep_best:
                last_checkpoint, saved_step = save(step, elapsed), step
                best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                if is_main:
                    assert last_checkpoint is not None
                    ckpt.keep_as_best(run_path, last_checkpoint)  # type: ignore[arg-type]
            stop_asked = evaluation_says_stop(step, row)
            t_last = time.perf_counter()  # evaluation and saving time is not training time

        if row is not None:
            history.append(row)
            if bar is not None:
                bar.set_postfix(progress_postfix(row, unit), refresh=False)
            if run_path is not None and is_main:
                write_metrics_csv(run_path / "metrics.csv", history)
        if bar is not None:
            bar.update(1 if args.max_steps is not None else max(0, round(elapsed) - bar.n))

        stop_early = args.early_stopping_patience > 0 and evals_since_best >= args.early_stopping_patience
        periodic = args.save_every and step % args.save_every == 0 and saved_step != step
        if run_path is not None and periodic and not stop_early:
            last_checkpoint, saved_step = save(step, elapsed), step
            if is_main and history:  # a checkpoint may come before the first logged row
                plot_curves(run_path, history)
            t_last = time.perf_counter()
        if stop_early:
            stopped_by = "early_stopping"
            break
        if stop_asked:
            stopped_by = "stopped_after_evaluation"
            break

    if bar is not None:
        bar.close()
    if is_main and args.progress:
        print(stop_message(args, step, stopped_by, elapsed, best_step))
    train_loss = next((r["train_loss"] for r in reversed(history) if r.get("train_loss") is not None), None)
    result = TrainResult(
        run_dir=run_path,
        step=step,
        stopped_by=stopped_by,
        elapsed_s=elapsed,
        train_loss=train_loss,
        val_loss=last_val.get("loss"),
        best_val_loss=None if best_val == math.inf else best_val,
        best_step=best_step,
        best_score=None if best_step is None else best_score,
        val_metrics={k: v for k, v in last_val.items() if k != "loss"},
        history=history,
    )
    if run_path is not None:
        if saved_step != step:
            last_checkpoint = save(step, elapsed)
        best_path = ckpt.best_checkpoint(run_path) if args.keep_best and is_main else None
        if args.keep_best and best_weights is not None:
            model.load_state_dict(best_weights)  # published; the caller (test-set evaluation) sees it
        if is_main:
            assert last_checkpoint is not None
            # fsdp leaves each rank a shard: the whole weights were gathered into the last checkpoint
            final = ckpt.load_model_files(last_checkpoint) if wrapped.sharded else model
            ckpt.publish_final(run_path, best_path or last_checkpoint, final, tokenizer)
            write_metrics_csv(run_path / "metrics.csv", history)
            if history:  # a time budget can end a run before its first logged row
                plot_curves(run_path, history)
            ckpt.mark_complete(
                run_path,
                {
                    "step": step,
                    "stopped_by": stopped_by,
                    "val_loss": result.val_loss,
                    "train_loss": train_loss,
                    "monitor": args.monitor,
                    "best_step": best_step,
                    "best_score": result.best_score,
                    "published_step": best_step if best_path is not None else step,
                },
            )
    return result
