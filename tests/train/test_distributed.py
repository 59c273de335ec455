"""Two CPU processes (gloo) against one: DDP and FSDP2 take the same steps as one process at twice the batch.

The pytest process runs the one-process reference (batch 2B, where each rank has B) and saves at step 5.
One pair of worker processes (this file run as a script, with the environment torchrun would set) then
does, in one process group: DDP, FSDP2 (fp32, activation checkpointing), FSDP2 with bf16 parameters, and
DDP and FSDP2 resuming the one-process checkpoint. Back in pytest, one process resumes the DDP and FSDP
checkpoints. Equal losses (1e-5) and weights across all of them show the strategies are the same
training, and that checkpoints move between them. A second pair checks that a killed rank makes the
other exit non-zero with a one-line message, and that the run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from zeroforge.config import DistributedArgs, TrainArgs
from zeroforge.data.sampler import EpochSampler
from zeroforge.errors import ConfigError
from zeroforge.registry import create_model
from zeroforge.train.loop import train

N_SAMPLES, T, BATCH, STEPS, SAVE_AT, ACCUM = 40, 16, 4, 10, 5, 2  # BATCH is per rank
RUNS = [  # name, strategy, extra DistributedArgs, resume
    ("ddp", "ddp", {}, False),
    ("fsdp", "fsdp", {"activation_checkpointing": True}, False),
    ("fsdp-bf16", "fsdp", {"mixed_precision": "bf16"}, False),
    ("single-then-ddp", "ddp", {}, True),
    ("single-then-fsdp", "fsdp", {}, True),
]


class Samples:
    """Fixed rows of token ids dealt by ``EpochSampler``; remembers the sample ids of every batch."""

    def __init__(self, rank: int, world: int, batch_size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.rows = torch.randint(0, 64, (N_SAMPLES, T + 1), generator=g)  # (N, T+1)
        self.sampler = EpochSampler(N_SAMPLES, rank=rank, world_size=world, seed=3)
        self.batch_size = batch_size
        self.seen: list[list[int]] = []

    def next_batch(self) -> dict[str, torch.Tensor]:
        idx = self.sampler.next_indices(self.batch_size)
        self.seen.append(idx.tolist())
        rows = self.rows[idx]
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}  # (b, T) each

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def val_batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, 64, (4, T + 1), generator=g) for _ in range(3)]  # 3 batches: uneven over 2 ranks
    return [{"input_ids": r[:, :-1], "labels": r[:, 1:]} for r in rows]


def run_one(
    out: Path, name: str, strategy: str, extra: dict[str, Any], resume: bool, rank: int = 0, world: int = 1
) -> None:
    """One training run; writes ``<name>-rank<r>.json`` with its loss history and the sample ids it read."""
    torch.manual_seed(0)
    model = create_model("gpt-tiny")
    source = Samples(rank, world, BATCH * 2 // world)
    args = TrainArgs(
        max_steps=STEPS,
        batch_size=source.batch_size,
        grad_accum=ACCUM,
        lr=1e-2,
        warmup_steps=2,
        eval_every=SAVE_AT,
        eval_batches=3,
        save_every=SAVE_AT,
        log_every=1,
        precision="fp32",
        progress=False,
        device="cpu",
        resume=resume,
    )
    dist_args = DistributedArgs(strategy=strategy, timeout_s=60, **extra)  # type: ignore[arg-type]
    result = train(model, source, args, val_batches=val_batches(), run_dir=out / name, distributed=dist_args)
    record = {"history": result.history, "seen": source.seen}
    (out / f"{name}-rank{rank}.json").write_text(json.dumps(record))


def worker(out: Path) -> None:
    """One rank of the worker pair: every distributed run, in one process group."""
    from zeroforge.train.distributed import session

    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    with session(DistributedArgs(strategy="ddp", timeout_s=60), torch.device("cpu")):
        for name, strategy, extra, resume in RUNS:
            run_one(out, name, strategy, extra, resume, rank, world)


# ----------------------------------------------------------------------------- launching ranks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Two processes with the environment torchrun gives its workers."""
    port = str(free_port())
    procs = []
    for rank in range(2):
        rank_env = {**os.environ, **(env or {}), "RANK": str(rank), "LOCAL_RANK": str(rank)}
        rank_env.update(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        rank_env["OMP_NUM_THREADS"] = "1"
        procs.append(
            subprocess.Popen(
                [sys.executable, *argv],
                cwd=cwd,
                env=rank_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def cut_back(src: Path, dst: Path, step: int) -> None:
    """A copy of run ``src`` as a kill right after its step-``step`` checkpoint would leave it."""
    shutil.copytree(src, dst)
    for child in dst.iterdir():
        if child.name not in ("checkpoints", "metrics.csv"):
            child.unlink()
    for ckpt in (dst / "checkpoints").glob("step-*"):
        if ckpt.name != f"step-{step:06d}":
            shutil.rmtree(ckpt)
    (dst / "checkpoints" / "latest").write_text(f"step-{step:06d}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("distributed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_one(out, "single", "single", {}, False)
        cut_back(out / "single", out / "single-then-ddp", SAVE_AT)
        cut_back(out / "single", out / "single-then-fsdp", SAVE_AT)
        procs = start_ranks([__file__, str(out)], cwd=out)
        results = [p.communicate(timeout=240) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err[-3000:]
        for name in ("ddp", "fsdp"):
            cut_back(out / name, out / f"{name}-then-single", SAVE_AT)
            run_one(out, f"{name}-then-single", "single", {}, True)
    finally:
        torch.set_num_threads(threads)
    return out


def record(out: Path, name: str, rank: int = 0) -> dict[str, Any]:
    return json.loads((out / f"{name}-rank{rank}.json").read_text())


def losses(out: Path, name: str, key: str = "train_loss", after: int = 0) -> dict[int, float]:
    rows = record(out, name)["history"]
    return {r["step"]: r[key] for r in rows if r.get(key) is not None and r["step"] > after}


def assert_same_losses(a: dict[int, float], b: dict[int, float], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    worst = max(abs(a[k] - b[k]) for k in a)
    assert worst <= atol, (worst, a, b)


def assert_same_weights(a: Path, b: Path, atol: float = 1e-4) -> None:
    """Equal final weights. Not to 1e-5: the rounding of one mean over 2B against the mean of two means
    over B (~1e-7) reaches the weights through Adam's g / sqrt(v), which amplifies it where gradients
    are ~0 (attention key biases, zero in exact arithmetic). 1e-4 is 0.1% of the 10 steps' movement."""
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=0, msg=key)


# ----------------------------------------------------------------------------- equivalence


def test_ddp_two_ranks_at_batch_b_equal_one_process_at_2b(runs: Path):
    assert len(losses(runs, "single")) == STEPS
    assert_same_losses(losses(runs, "ddp"), losses(runs, "single"))
    assert_same_losses(losses(runs, "ddp", "val_loss"), losses(runs, "single", "val_loss"))
    assert_same_weights(runs / "ddp", runs / "single")
    # the loss moved: equal losses are not two untrained models agreeing
    first, last = losses(runs, "single")[1], losses(runs, "single")[STEPS]
    assert last < first - 0.1


def test_ddp_ranks_read_disjoint_samples_that_make_up_the_big_batch(runs: Path):
    rank0, rank1 = record(runs, "ddp", 0)["seen"], record(runs, "ddp", 1)["seen"]
    single = record(runs, "single")["seen"]
    assert len(rank0) == len(rank1) == len(single) == STEPS * ACCUM
    for ids0, ids1, both in zip(rank0, rank1, single, strict=True):
        assert len(ids0) == len(ids1) == BATCH
        assert not set(ids0) & set(ids1)
        assert sorted(ids0 + ids1) == sorted(both)
    per_epoch = N_SAMPLES // 2 // BATCH  # batches per rank per epoch
    epoch0 = [i for batch in rank0[:per_epoch] + rank1[:per_epoch] for i in batch]
    assert sorted(epoch0) == list(range(N_SAMPLES))  # every sample exactly once in the epoch


def test_fsdp_two_ranks_match_one_process(runs: Path):
    assert_same_losses(losses(runs, "fsdp"), losses(runs, "single"))
    assert_same_losses(losses(runs, "fsdp", "val_loss"), losses(runs, "single", "val_loss"))
    assert_same_weights(runs / "fsdp", runs / "single")
    assert_same_weights(runs / "fsdp", runs / "ddp", atol=1e-6)  # both average the same two rank means


def test_fsdp_bf16_parameters_compute_in_bf16(runs: Path):
    bf16, fp32 = losses(runs, "fsdp-bf16"), losses(runs, "single")
    assert_same_losses(bf16, fp32, atol=0.05)  # close ...
    assert max(abs(bf16[k] - fp32[k]) for k in fp32) > 1e-5  # ... but not fp32: the policy took effect


# ----------------------------------------------------------------------------- checkpoints across strategies


def test_ddp_checkpoint_resumes_in_one_process(runs: Path):
    assert_same_losses(losses(runs, "ddp-then-single", after=SAVE_AT), losses(runs, "ddp", after=SAVE_AT))
    assert_same_weights(runs / "ddp-then-single", runs / "ddp")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_process_checkpoint_resumes_under_ddp_and_fsdp(runs: Path, strategy: str):
    resumed = losses(runs, f"single-then-{strategy}", after=SAVE_AT)
    assert min(resumed) == SAVE_AT + 1
    assert_same_losses(resumed, losses(runs, "single", after=SAVE_AT))
    assert_same_weights(runs / f"single-then-{strategy}", runs / "single")


def test_fsdp_checkpoint_is_consolidated_and_resumes_in_one_process(runs: Path):
    from zeroforge.train.checkpoint import load_model_files, load_trainer_state

    step = runs / "fsdp" / "checkpoints" / f"step-{STEPS:06d}"
    plain, sharded = load_trainer_state(runs / "single" / "checkpoints" / step.name), load_trainer_state(step)
    # the optimizer state is keyed as optimizer.state_dict() keys it, with full (unsharded) tensors
    assert sharded["optimizer"]["state"].keys() == plain["optimizer"]["state"].keys()
    for i, s in plain["optimizer"]["state"].items():
        assert sharded["optimizer"]["state"][i]["exp_avg"].shape == s["exp_avg"].shape
    assert [g["params"] for g in sharded["optimizer"]["param_groups"]] == [
        g["params"] for g in plain["optimizer"]["param_groups"]
    ]
    assert len(sharded["ranks"]) == 2
    load_model_files(runs / "fsdp")  # a plain single-process load
    assert_same_losses(losses(runs, "fsdp-then-single", after=SAVE_AT), losses(runs, "fsdp", after=SAVE_AT))


# ----------------------------------------------------------------------------- faults and mistakes

KILL_PRELUDE = """
import os, signal, time
import zeroforge.train.loop as loop
steps = []
set_learning_rate = loop.set_learning_rate
def set_lr_or_die(optimizer, lr):  # called once at the start of every training step
    steps.append(lr)
    if os.environ["RANK"] == "1" and len(steps) == 3:
        open("killed-at", "w").write(str(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    set_learning_rate(optimizer, lr)
loop.set_learning_rate = set_lr_or_die
"""
PRETRAIN = [
    "pretrain",
    "data.source=tiny.txt",
    "model.name=gpt-tiny",
    "train.batch_size=4",
    "train.block_size=16",
    "train.max_steps=5",
    "train.save_every=2",
    "train.eval_every=100",
    "train.log_every=1",
    "train.precision=fp32",
    "train.progress=false",
    "train.out_dir=run",
]


def test_a_killed_rank_stops_the_other_with_a_message_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from tiny_corpus import TINY_TEXT
    from zeroforge.cli import main

    (tmp_path / "tiny.txt").write_text(TINY_TEXT, encoding="utf-8")
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    timeout_s = 30
    argv = [*PRETRAIN, "distributed.strategy=ddp", f"distributed.timeout_s={timeout_s}"]
    code = f"{KILL_PRELUDE}\nfrom zeroforge.cli import main\nraise SystemExit(main({argv!r}))"
    survivor, killed = start_ranks(["-c", code], cwd=tmp_path)
    killed.communicate(timeout=120)
    _, err = survivor.communicate(timeout=120)
    exited = time.time()
    assert killed.returncode == -signal.SIGKILL
    assert survivor.returncode != 0
    assert exited - float((tmp_path / "killed-at").read_text()) < timeout_s
    last = err.strip().splitlines()[-1]
    assert last.startswith("zeroforge pretrain: error: rank 0 of 2: lost the other ranks"), err[-2000:]
    assert "train.resume=true" in last

    # the last complete checkpoint is step 2; one process resumes it and finishes the run
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step-000002"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main([*PRETRAIN, "train.resume=true"]) == 0
    finally:
        os.chdir(cwd)
    from zeroforge.eval.plots import read_metrics_csv

    assert [r["step"] for r in read_metrics_csv(tmp_path / "run" / "metrics.csv")] == [1, 2, 3, 4, 5]
    assert (tmp_path / "run" / "COMPLETE").is_file()


@pytest.mark.parametrize(
    ("env", "overrides", "expected"),
    [
        (
            {"WORLD_SIZE": "2", "RANK": "0"},
            ["distributed.strategy=ddp"],
            "MASTER_ADDR and MASTER_PORT are not",
        ),
        (
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            [],
            "strategy: single",
        ),
        ({}, ["distributed.strategy=zero3"], "distributed.strategy: expected one of single, ddp, fsdp"),
        ({}, ["distributed.mixed_precision=bf16"], "distributed.mixed_precision: bf16 needs strategy fsdp"),
    ],
)
def test_a_misset_environment_or_recipe_is_one_line(
    env: dict[str, str], overrides: list[str], expected: str, monkeypatch: pytest.MonkeyPatch, capsys
):
    from zeroforge.cli import main

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert main(["pretrain", "model.name=gpt-tiny", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_a_rank_that_cannot_reach_rank_0_fails_within_the_timeout(monkeypatch: pytest.MonkeyPatch):
    import torch.distributed as dist

    from zeroforge.errors import ZeroforgeError
    from zeroforge.train.distributed import setup

    env = {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    start = time.time()
    with pytest.raises(
        ZeroforgeError, match=r"rank 1: could not join .* within distributed.timeout_s=1"
    ) as err:
        setup(DistributedArgs(strategy="ddp", timeout_s=1), torch.device("cpu"))
    assert time.time() - start < 15
    assert "\n" not in str(err.value)
    assert not dist.is_initialized()


def test_launch_env_reads_torchrun_variables(monkeypatch: pytest.MonkeyPatch):
    from zeroforge.train.distributed import launch_env

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert launch_env() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(ConfigError, match="RANK=5: must be in"):
        launch_env()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_env() == (3, 1, 4)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
