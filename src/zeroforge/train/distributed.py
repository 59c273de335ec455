"""One recipe on many processes, on PyTorch's own engine: torchrun + DDP or FSDP2.

    torchrun --nproc_per_node 4 -m zeroforge pretrain --config recipe.yaml distributed.strategy=ddp

torchrun starts one process per device and tells each who it is through the environment (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). ``session`` reads it and joins the
process group (gloo on CPU, nccl on CUDA, with ``distributed.timeout_s`` on every wait); the training
loop then asks this module to wrap the model, to skip gradient sync on accumulation micro-steps, to sum
metrics over ranks and to gather a consolidated checkpoint on rank 0.

Strategies (``distributed.strategy``):
  single  one process; ``WORLD_SIZE > 1`` is refused, N copies of one run are never what was meant.
  ddp     DistributedDataParallel: each rank holds the whole model and optimizer; backward all-reduces
          the gradients to their mean over ranks, so W ranks at batch B step exactly as one process at W*B.
  fsdp    FSDP2 ``fully_shard``: every block's parameters, gradients and optimizer state are split over
          the ranks, all-gathered for compute and reduce-scattered after backward (the same mean).

Checkpoints are consolidated: rank 0 writes what one process would (full weights in model.safetensors,
optimizer state keyed like ``optimizer.state_dict()``), so any checkpoint resumes under any strategy
and world size. Per-rank data positions and RNG states are gathered to rank 0 without pickle.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from zeroforge.config import DistributedArgs
from zeroforge.errors import ConfigError, ZeroforgeError

# ----------------------------------------------------------------------------- the process group


@dataclass
class DistContext:
    """Who this process is in the run. ``backend`` is None when there is no process group."""

    strategy: str = "single"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None
    timeout_s: float = 600.0
    owns_group: bool = False
    """This session created the process group, so it destroys it."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where collective buffers live: nccl only moves CUDA tensors."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def device_for(self, device: torch.device) -> torch.device:
        """Each rank drives its own GPU: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a process group."""
        if self.backend is not None and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment {name}={raw!r}: expected an integer") from None


def launch_env() -> tuple[int, int, int] | None:
    """``(rank, local_rank, world_size)`` from torchrun's environment; None when not launched by it.

    A half-set environment is a one-line ConfigError naming what is missing.
    """
    world = _env_int("WORLD_SIZE")
    if world is None:
        return None
    if world < 1:
        raise ConfigError(f"environment WORLD_SIZE={world}: must be >= 1")
    rank = _env_int("RANK")
    if world == 1 and rank in (None, 0) and not os.environ.get("MASTER_ADDR"):
        return None  # WORLD_SIZE=1 on its own asks for nothing distributed
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ConfigError(
            f"environment WORLD_SIZE={world} is set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: launch with torchrun "
            "(see docs/distributed.md) or set RANK, MASTER_ADDR and MASTER_PORT"
        )
    assert rank is not None
    if not 0 <= rank < world:
        raise ConfigError(f"environment RANK={rank}: must be in [0, WORLD_SIZE={world})")
    local_rank = _env_int("LOCAL_RANK")
    return rank, (rank if local_rank is None else local_rank), world


@functools.cache
def _note_once(message: str) -> None:
    print(message)


def setup(args: DistributedArgs, device: torch.device) -> DistContext:
    """Join the process group torchrun describes (or reuse one already joined); see ``session``."""
    launched = launch_env()
    if launched is None and not dist.is_initialized():
        if args.strategy != "single":
            _note_once(f"distributed.strategy={args.strategy} without torchrun: training in one process")
        return DistContext(timeout_s=args.timeout_s)
    if dist.is_initialized():  # a caller (pretrain, or the user's script) already joined
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = launched[1] if launched else rank
        backend, owns = dist.get_backend(), False
    else:
        assert launched is not None
        rank, local_rank, world = launched
        backend, owns = None, True
    if args.strategy == "single":
        if world > 1:
            raise ConfigError(
                f"distributed.strategy: single, but this is rank {rank} of WORLD_SIZE={world}: "
                "set distributed.strategy=ddp or fsdp to train one model on all ranks"
            )
        return DistContext(timeout_s=args.timeout_s)
    if backend is None:
        backend = args.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError(f"distributed.backend: nccl needs CUDA, but train.device is {device}")
        device_id = None
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            device_id = torch.device("cuda", local_rank)
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout_s), device_id=device_id)
        except (RuntimeError, ValueError) as err:
            raise ZeroforgeError(
                f"rank {rank}: could not join the other {world - 1} rank(s) at "
                f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within "
                f"distributed.timeout_s={args.timeout_s:g} ({_first_line(err)})"
            ) from None
    elif backend == "nccl":
        torch.cuda.set_device(local_rank)
    return DistContext(args.strategy, rank, local_rank, world, backend, args.timeout_s, owns)


@contextlib.contextmanager
def session(args: DistributedArgs, device: torch.device) -> Iterator[DistContext]:
    """``setup``, and on a clean exit leave the process group if this session joined it.

    Sessions nest (``pretrain`` opens one, ``train`` inside it reuses it). After a failure the group is
    left as is: a collective on a dead peer could block, and the process is about to exit anyway.
    """
    ctx = setup(args, device)
    yield ctx
    if ctx.owns_group and dist.is_initialized():
        with failures(ctx, "the final barrier"):
            dist.barrier()  # nobody leaves while rank 0 still writes the run directory
        dist.destroy_process_group()


@contextlib.contextmanager
def rank_zero_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. prepares data into a shared cache), then the others."""
    if ctx.backend is not None and not ctx.is_main:
        dist.barrier()
    yield
    if ctx.backend is not None and ctx.is_main:
        dist.barrier()


# ----------------------------------------------------------------------------- failures


_COMM_FAILURE = re.compile(
    r"gloo|nccl|connection (closed|reset|refused)|timed out|timeout|broken pipe|c10d|processgroup", re.I
)


def is_comm_failure(err: BaseException) -> bool:
    """A collective failed because a peer died or hung (gloo raises plain RuntimeErrors for it)."""
    return isinstance(err, dist.DistError) or (
        isinstance(err, RuntimeError) and bool(_COMM_FAILURE.search(str(err)))
    )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"^\[[^\]]*\.(cpp|cc|h):\d+\]\s*", "", text)  # drop the C++ source location
    return text[:200]


@contextlib.contextmanager
def failures(ctx: DistContext, where: str = "training") -> Iterator[None]:
    """Turn a lost peer into one line: which rank, when, and how to go on."""
    try:
        yield
    except ZeroforgeError:
        raise
    except Exception as err:
        if ctx.world_size > 1 and is_comm_failure(err):
            raise ZeroforgeError(
                f"rank {ctx.rank} of {ctx.world_size}: lost the other ranks during {where} "
                f"({_first_line(err)}); a rank died or hung longer than distributed.timeout_s="
                f"{ctx.timeout_s:g}; resume with train.resume=true from the last checkpoint"
            ) from None
        raise


# ----------------------------------------------------------------------------- small collectives


def all_reduce_sums(ctx: DistContext, sums: dict[str, list[float]]) -> dict[str, list[float]]:
    """Sum ``{name: [num, den]}`` over ranks (every rank must pass the same names)."""
    if ctx.backend is None or ctx.world_size == 1:
        return sums
    names = sorted(sums)
    values = torch.tensor([sums[k] for k in names], dtype=torch.float64, device=ctx.comm_device)  # (K, 2)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {k: [float(v[0]), float(v[1])] for k, v in zip(names, values.cpu(), strict=True)}


def broadcast_float(ctx: DistContext, value: float) -> float:
    """Rank 0's ``value`` on every rank (e.g. elapsed time, so a time budget stops all ranks together)."""
    if ctx.backend is None or ctx.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.comm_device)
    dist.broadcast(t, src=0)
    return float(t.item())


def all_gather_bytes(ctx: DistContext, payload: bytes) -> list[bytes]:
    """Every rank's ``payload``, in rank order (lengths first, then the zero-padded bytes)."""
    dev = ctx.comm_device
    data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(dev)  # (n,)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8, device=dev)
    padded[: data.numel()] = data
    chunks = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(chunks, padded)
    return [c[: int(s.item())].cpu().numpy().tobytes() for c, s in zip(chunks, sizes, strict=True)]


def all_gather_states(ctx: DistContext, state: Any) -> list[Any]:
    """Every rank's nested state (tensors, numbers, strings), as JSON + safetensors: no pickle."""
    from safetensors.torch import load as load_tensors
    from safetensors.torch import save as save_tensors

    from zeroforge.train.checkpoint import flatten_state, unflatten_state

    if ctx.backend is None or ctx.world_size == 1:
        return [state]
    tensors: dict[str, torch.Tensor] = {}
    tree = json.dumps(flatten_state(state, tensors)).encode("utf-8")
    blob = len(tree).to_bytes(8, "little") + tree + save_tensors(tensors)
    out = []
    for chunk in all_gather_bytes(ctx, blob):
        n = int.from_bytes(chunk[:8], "little")
        out.append(unflatten_state(json.loads(chunk[8 : 8 + n]), load_tensors(chunk[8 + n :])))
    return out


# ----------------------------------------------------------------------------- the model


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks: members of the outermost ``nn.ModuleList``s (GPT's ``transformer.h``).

    They are FSDP's unit of sharding (one all-gather per block) and of activation checkpointing.
    """
    blocks: list[nn.Module] = []
    seen: set[int] = set()
    for module in model.modules():
        if id(module) in seen:
            continue
        if isinstance(module, nn.ModuleList):
            for inner in module.modules():
                seen.add(id(inner))
            blocks.extend(module)
    return blocks


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpoint_activations(model: nn.Module) -> int:
    """Recompute each block's activations in backward instead of storing them; returns the count.

    The block's own ``forward`` is wrapped (not the module), so parameter names, and with them
    checkpoints, stay the same. Dropout replays the same mask: checkpoint restores the RNG state.
    """
    blocks = transformer_blocks(model)
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)  # type: ignore[method-assign]
    return len(blocks)


class WrappedModel:
    """The model as a strategy runs it.

    ``module`` is what the loop calls (the DDP wrapper, or the model itself, sharded in place by
    FSDP2); ``model`` is the user's module, whose ``parameters()`` the optimizer and clipping use.
    """

    def __init__(self, model: nn.Module, args: DistributedArgs, ctx: DistContext) -> None:
        self.model, self.ctx, self.strategy = model, ctx, ctx.strategy
        self.model_cls, self.config = type(model), getattr(model, "config", None)
        self._shadow: nn.Module | None = None
        if args.activation_checkpointing and checkpoint_activations(model) == 0 and ctx.is_main:
            print("distributed.activation_checkpointing: the model has no ModuleList of blocks; ignored")
        self.module: nn.Module = model
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            device = next(model.parameters()).device
            ids = [device.index] if device.type == "cuda" else None
            self.module = DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's weights
        elif self.strategy == "fsdp":
            self._shard(args)

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"

    def _shard(self, args: DistributedArgs) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        device = next(self.model.parameters()).device
        # every rank starts from rank 0's weights (DDP does the same when it wraps)
        for tensor in [*self.model.parameters(), *self.model.buffers()]:
            dist.broadcast(tensor.data, src=0)
        mesh = init_device_mesh(device.type, (self.ctx.world_size,))
        policy = MixedPrecisionPolicy()
        if args.mixed_precision == "bf16":
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in transformer_blocks(self.model):
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(self.model, mesh=mesh, mp_policy=policy)  # the rest: embeddings, head, final norm

    def gradient_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        """Gradient accumulation: reduce gradients only on the last micro-batch of a step."""
        if self.strategy == "ddp" and not enabled:
            return self.module.no_sync()  # type: ignore[operator]
        if self.strategy == "fsdp":
            self.model.set_requires_gradient_sync(enabled)  # type: ignore[operator]
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ consolidated checkpoints

    def _param_names(self, optimizer: torch.optim.Optimizer) -> list[str]:
        """Parameter names in ``optimizer.state_dict()``'s numbering (groups in order, params in order)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]

    def checkpoint_parts(self, optimizer: torch.optim.Optimizer) -> tuple[nn.Module | None, Any]:
        """``(model to save, optimizer.state_dict()-style state)`` on rank 0, ``(None, None)`` elsewhere.

        Under fsdp this is a collective: the full weights and optimizer state are gathered to rank 0's
        CPU and poured into an unsharded copy of the model, so checkpoint.py writes plain tensors.
        """
        if not self.sharded:
            return (self.model, optimizer.state_dict()) if self.ctx.is_main else (None, None)
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(self.model, options=options)
        by_name = get_optimizer_state_dict(self.model, optimizer, options=options)
        if not self.ctx.is_main:
            return None, None
        if self._shadow is None:
            with torch.random.fork_rng(devices=[]):  # building it must not move the training RNG
                self._shadow = self.model_cls(self.config)
        self._shadow.load_state_dict(weights)
        index = {name: i for i, name in enumerate(self._param_names(optimizer))}
        state = {
            "state": {index[k]: v for k, v in by_name["state"].items()},
            "param_groups": [
                {**g, "params": [index[k] for k in g["params"]]} for g in by_name["param_groups"]
            ],
        }
        return self._shadow, state

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load an ``optimizer.state_dict()``-style state (every rank holds it) into the sharded optimizer."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = self._param_names(optimizer)
        by_name = {
            "state": {names[int(i)]: v for i, v in state["state"].items()},
            "param_groups": [
                {**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]
            ],
        }
        set_optimizer_state_dict(
            self.model, optimizer, by_name, options=StateDictOptions(full_state_dict=True)
        )
