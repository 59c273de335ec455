"""The one training loop, for every model from linear regression to GPT.

A model returns ``ModelOutput(loss=...)`` for a batch dict; this loop owns everything else:
optimizer and schedule, precision, gradient accumulation and clipping, periodic evaluation, early
stopping, checkpoints and exact resume, the time budget, progress, metrics.csv and plots. It is
written as one function on purpose (nanoGPT's train.py, without a callback framework).

Under torchrun the same loop runs on every rank (``distributed.strategy`` ddp or fsdp): the model
wrapping, gradient-sync skipping and consolidated checkpoints live in ``train/distributed.py``; here
every rank takes the same steps, metrics are summed over ranks, and only rank 0 logs and writes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from zeroforge.config import DistributedArgs, Recipe, TrainArgs, load_recipe
from zeroforge.errors import ConfigError, ZeroforgeError
from zeroforge.io import atomic_write_text
from zeroforge.models.output import ModelOutput
from zeroforge.train import checkpoint as ckpt
from zeroforge.train.distributed import (
    DistContext,
    WrappedModel,
    all_gather_states,
    all_reduce_sums,
    broadcast_float,
    failures,
    rank_zero_first,
    session,
)
from zeroforge.train.optim import build_optimizer, learning_rate, set_learning_rate


class BatchSource(Protocol):
    """Where training batches come from; its state is saved so a resumed run sees the same batches."""

    def next_batch(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


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


# ----------------------------------------------------------------------------- small helpers


class MetricMeter:
    """Averages the loss and ``ModelOutput.metrics``: scalars by batch, (num, den) pairs exactly."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, loss: float | None, metrics: dict[str, Any], weight: float = 1.0) -> None:
        """``weight=0`` records the names without the values (a rank's padding batch)."""
        if loss is not None:
            self._add("loss", loss * weight, weight)
        for name, value in metrics.items():
            if isinstance(value, tuple):
                self._add(name, float(value[0]) * weight, float(value[1]) * weight)
            else:
                self._add(name, float(value) * weight, weight)

    def _add(self, name: str, num: float, den: float) -> None:
        acc = self.sums.setdefault(name, [0.0, 0.0])
        acc[0] += num
        acc[1] += den

    def compute(self) -> dict[str, float]:
        return {k: (n / d if d else float("nan")) for k, (n, d) in self.sums.items()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device: unknown device {name!r} (expected auto, cpu, cuda, cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested but CUDA is not available")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    ``auto`` picks bf16 where the hardware runs it natively and faster than fp32: CUDA GPUs with bf16,
    and CPUs with bf16 dot products (AVX512-BF16, or AMX tiles): on an AVX512-BF16 EPYC bf16 autocast
    trains a GPT 1.4-1.7x faster than fp32 (docs/benchmarks.md). On other CPUs (AVX2 only, as AMD Zen 3)
    bf16 matmuls are emulated and slower, so fp32 stays.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if _cpu_has_native_bf16() else None


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compile_step(module: nn.Module, device: torch.device) -> Any:
    """``torch.compile(module)``, or the module itself with a one-line note where inductor cannot
    build CPU kernels (it needs a C++ compiler), so a recipe with ``train.compile`` still runs."""
    import shutil

    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if device.type == "cpu" and not any(shutil.which(c) for c in compilers if c):
        print("train.compile: no C++ compiler found (torch.compile needs one on CPU); training eagerly")
        return module
    return torch.compile(module)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


def batch_size_of(batch: dict[str, Any]) -> tuple[int, str]:
    """Throughput unit: tokens when the batch has input_ids, else samples."""
    if "input_ids" in batch:
        return batch["input_ids"].numel(), "tokens"
    first = next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return first.shape[0], "samples"


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": repr(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Mean loss and metrics of ``model`` over ``batches`` (model left in eval mode's caller state)."""
    was_training = model.training
    model.eval()
    meter = MetricMeter()
    for batch in batches:
        with autocast(device, dtype):
            out: ModelOutput = model(**to_device(batch, device))
        meter.add(None if out.loss is None else out.loss.item(), out.metrics)
    model.train(was_training)
    return meter.compute()


@torch.no_grad()
def evaluate_ranks(
    model: nn.Module,
    batches: list[dict[str, Any]],
    device: torch.device,
    dtype: torch.dtype | None,
    ctx: DistContext,
) -> dict[str, float]:
    """``evaluate_batches`` with the batches dealt over the ranks (rank r takes r, r + W, ...) and the
    (num, den) sums added up, so the result is the same mean one process computes over all of them."""
    if ctx.world_size == 1:
        return evaluate_batches(model, batches, device, dtype)
    was_training = model.training
    model.eval()
    meter = MetricMeter()
    # every rank runs the same number of forwards (under fsdp each forward is a collective);
    # a rank past the end repeats batch 0 and counts it with weight 0
    for i in range(math.ceil(len(batches) / ctx.world_size)):
        j = ctx.rank + i * ctx.world_size
        with autocast(device, dtype):
            out: ModelOutput = model(**to_device(batches[j if j < len(batches) else 0], device))
        loss = None if out.loss is None else out.loss.item()
        meter.add(loss, out.metrics, weight=1.0 if j < len(batches) else 0.0)
    model.train(was_training)
    meter.sums = all_reduce_sums(ctx, meter.sums)
    return meter.compute()


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


def read_metrics_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _parse(value: str) -> Any:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def plot_curves(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    try:
        from zeroforge.eval.plots import plot_training_curves
    except ImportError:  # plots are a nicety; never fail a run over them
        return
    plot_training_curves(rows, run_dir / "loss.png", title=run_dir.name)


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
        resumed = _resume_or_check(run_path, args, model, train_data, ctx)
        if resumed is not None:
            start_step = resumed["step"]
            elapsed_before = resumed["elapsed_s"]
            best_val = resumed["best_val"]
            evals_since_best = resumed["evals_since_best"]
            best_score = resumed.get("best_score", best_score)
            best_step = resumed.get("best_step")
            history = [
                r for r in read_metrics_rows(run_path / "metrics.csv") if r.get("step", 0) <= start_step
            ]
            if is_main:
                print(f"resumed from step {start_step} ({run_path})")
        if is_main:
            run_path.mkdir(parents=True, exist_ok=True)
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
            best_weights = _read_weights(model, best_path / ckpt.WEIGHTS_FILE)
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

    bar = _progress_bar(args, start_step, elapsed_before, enabled=is_main and args.progress)
    step, elapsed = start_step, elapsed_before
    stopped_by = "max_steps"
    window = MetricMeter()
    window_units, window_time, unit = 0, 0.0, "tokens"
    last_val: dict[str, float] = {}
    last_checkpoint: Path | None = None
    saved_step = -1  # known on every rank: saving is a collective
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
            t_last = time.perf_counter()  # evaluation and saving time is not training time

        if row is not None:
            history.append(row)
            if bar is not None:
                bar.set_postfix(_postfix(row, unit), refresh=False)
            if run_path is not None and is_main:
                write_metrics_csv(run_path / "metrics.csv", history)
        if bar is not None:
            bar.update(1 if args.max_steps is not None else max(0, round(elapsed) - bar.n))

        stop_early = args.early_stopping_patience > 0 and evals_since_best >= args.early_stopping_patience
        periodic = args.save_every and step % args.save_every == 0 and saved_step != step
        if run_path is not None and periodic and not stop_early:
            last_checkpoint, saved_step = save(step, elapsed), step
            if is_main:
                plot_curves(run_path, history)
            t_last = time.perf_counter()
        if stop_early:
            stopped_by = "early_stopping"
            break

    if bar is not None:
        bar.close()
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


def _resume_or_check(
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


def _read_weights(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
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


def _postfix(row: dict[str, Any], unit: str) -> dict[str, str]:
    post = {}
    if row.get("train_loss") is not None:
        post["loss"] = f"{row['train_loss']:.4f}"
    if row.get("val_loss") is not None:
        post["val"] = f"{row['val_loss']:.4f}"
    if row.get(f"{unit}_per_s") is not None:
        post[f"{unit[:3]}/s"] = f"{row[f'{unit}_per_s']:.0f}"
    return post


def _progress_bar(args: TrainArgs, start_step: int, elapsed: float, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    if args.max_steps is not None:
        return tqdm(total=args.max_steps, initial=start_step, unit="step", dynamic_ncols=True)
    budget = args.max_minutes * 60  # type: ignore[operator]
    # a time-budget run: the bar counts seconds of training, so its ETA is the budget left
    return tqdm(total=round(budget), initial=round(elapsed), unit="s", dynamic_ncols=True)


# ----------------------------------------------------------------------------- pretrain (recipe -> run dir)


# Objective -> "module:function" building its PretrainData (see data/text.py:build_clm_data).
DATA_BUILDERS = {
    "clm": "zeroforge.data.text:build_clm_data",
    "mlm_nsp": "zeroforge.data.mlm:build_mlm_nsp_data",
}


def pretrain(
    config: str | os.PathLike[str] | Recipe | None = None, overrides: list[str] | None = None
) -> Path:
    """Pretrain a model from a recipe (path, Recipe or None for the default); returns the run dir.

    Under torchrun with ``distributed.strategy`` ddp or fsdp every rank runs this; rank 0 prepares the
    data first (a shared cache is written once) and alone writes the run directory.
    """
    recipe = config if isinstance(config, Recipe) else load_recipe(config, overrides)
    with session(recipe.distributed, resolve_device(recipe.train.device)) as ctx, failures(ctx):
        _pretrain(recipe, ctx)
    return recipe.train.run_dir


def clean_source(recipe: Recipe, ctx: DistContext) -> Path:
    """Run the recipe's ``clean:`` step on ``data.source`` (rank 0 only) -> the cleaned file's path.

    The cleaned file and ``clean_report.json``/``.txt`` are written into the run directory.
    """
    from zeroforge.data.clean import clean_step, cleaned_path

    with rank_zero_first(ctx):
        if ctx.is_main:
            clean_step(recipe.clean, recipe.data.source, recipe.train.run_dir)
    return cleaned_path(recipe.data.source, recipe.train.run_dir)


def _pretrain(recipe: Recipe, ctx: DistContext) -> None:
    import importlib

    from zeroforge.registry import family_of

    args = recipe.train
    rank, world = ctx.rank, ctx.world_size

    model_values = dict(recipe.model)
    name = model_values.pop("name")
    block_size = args.block_size or recipe.model_config().block_size
    module_name, _, func = DATA_BUILDERS[recipe.data.objective].partition(":")
    build_data = getattr(importlib.import_module(module_name), func)
    if recipe.clean is not None:
        recipe.data.source = str(clean_source(recipe, ctx))
    with rank_zero_first(ctx):
        data = build_data(recipe.data, block_size, args.batch_size, args.eval_batches, args.seed, rank, world)

    tokenizer = data.tokenizer
    if "vocab_size" not in model_values:
        model_values["vocab_size"] = tokenizer.vocab_size
    elif model_values["vocab_size"] < tokenizer.vocab_size:
        raise ConfigError(
            f"model.vocab_size: {model_values['vocab_size']} is smaller than the tokenizer's {tokenizer.vocab_size}"
        )
    recipe.model = {"name": name, **model_values}
    model_cfg = recipe.model_config()
    if block_size > model_cfg.block_size:
        raise ConfigError(
            f"train.block_size: {block_size} is larger than the model's block_size {model_cfg.block_size}"
        )

    torch.manual_seed(args.seed)  # the same seed gives the same initial weights
    model = family_of(name).model_cls(model_cfg)
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model {name}: {n_params / 1e6:.2f}M parameters; data {data.description}")
        if world > 1:
            print(
                f"{recipe.distributed.strategy} on {world} ranks: global batch = {args.batch_size} x "
                f"{args.grad_accum} (accumulation) x {world} (ranks) = {args.batch_size * args.grad_accum * world}"
            )
    train(
        model,
        data.train,
        args,
        val_batches=data.val,
        run_dir=args.run_dir,
        tokenizer=tokenizer,
        recipe=recipe.to_dict(),
        distributed=recipe.distributed,
    )
