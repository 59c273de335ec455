"""What the training loop runs on: the device and precision, batches moved to it, RNG state, and
validation averaged over batches (and over ranks under torchrun)."""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from zeroforge.errors import ConfigError
from zeroforge.models.output import ModelOutput
from zeroforge.train.distributed import DistContext, all_reduce_sums


class BatchSource(Protocol):
    """Where training batches come from; its state is saved so a resumed run sees the same batches."""

    def next_batch(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


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
    and CPUs with bf16 dot products (AVX512-BF16, or AMX tiles): on an AMX Xeon bf16 autocast trains
    a GPT 1.7-2.2x faster than fp32 (docs/benchmarks.md, GPT training). On other CPUs (AVX2 only, as AMD Zen 3)
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


# ----------------------------------------------------------------------------- evaluation listeners

EvalListener = Callable[[int, dict[str, Any]], bool]
"""Called after each evaluation with (step, the logged row: ``val_loss``, ``val_<metric>``...);
returning True stops the run at that step (a hyperparameter search pruning a trial)."""

_eval_listeners: list[EvalListener] = []


@contextlib.contextmanager
def on_evaluation(listener: EvalListener) -> Iterator[None]:
    """Call ``listener`` after every evaluation of every run trained inside the block (one process;
    under torchrun each rank must reach the same answer)."""
    _eval_listeners.append(listener)
    try:
        yield
    finally:
        _eval_listeners.remove(listener)


def evaluation_says_stop(step: int, row: dict[str, Any]) -> bool:
    """Tell the listeners of ``on_evaluation`` about an evaluation; True when one asks to stop."""
    return any([listener(step, dict(row)) for listener in _eval_listeners])
