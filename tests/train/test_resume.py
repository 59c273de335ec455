"""Exact resume: N steps, stop, resume in a fresh process for M more == N+M uninterrupted (bitwise, fp32 CPU).

The uninterrupted run checkpoints at step N on its way; the "stopped" run is that run directory cut
back to its step-N checkpoint, as a kill right after the checkpoint would leave it. Dropping the
optimizer state on resume must break the equality, which shows the test can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

N, M = 6, 6
ARGS = [
    "model.name=gpt-tiny",
    "model.dropout=0.1",  # dropout makes the RNG state part of what must be restored
    "train.batch_size=4",
    "train.block_size=16",
    f"train.max_steps={N + M}",
    f"train.save_every={N}",
    "train.warmup_steps=2",
    "train.eval_every=4",
    "train.eval_batches=2",
    "train.log_every=1",
    "train.precision=fp32",
    "train.progress=false",
]


def run(cwd: Path, args: list[str], prelude: str = "") -> None:
    code = f"{prelude}\nfrom zeroforge.cli import main\nraise SystemExit(main({args!r}))"
    env = {**os.environ, "ZEROFORGE_CACHE": str(cwd / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def cut_back_to(run_dir: Path, step: int) -> None:
    """What a kill right after the step-N checkpoint leaves: that checkpoint, and nothing final."""
    for child in run_dir.iterdir():
        if child.name not in ("checkpoints", "metrics.csv"):
            child.unlink()
    for ckpt in (run_dir / "checkpoints").glob("step-*"):
        if ckpt.name != f"step-{step:06d}":
            shutil.rmtree(ckpt)
    (run_dir / "checkpoints" / "latest").write_text(f"step-{step:06d}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_corpus import TINY_TEXT

    root = tmp_path_factory.mktemp("resume")
    (root / "tiny.txt").write_text(TINY_TEXT, encoding="utf-8")
    run(root, ["pretrain", "data.source=tiny.txt", "train.out_dir=full", *ARGS])
    return root


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def resumed_copy(root: Path, name: str, prelude: str = "") -> Path:
    target = root / name
    shutil.copytree(root / "full", target)
    cut_back_to(target, N)
    run(
        root,
        ["pretrain", "data.source=tiny.txt", f"train.out_dir={name}", "train.resume=true", *ARGS],
        prelude,
    )
    return target


def test_resume_in_a_fresh_process_is_bitwise_exact(runs: Path):
    resumed = resumed_copy(runs, "resumed")
    full, again = weights(runs / "full"), weights(resumed)
    assert full.keys() == again.keys()
    for key in full:
        assert torch.equal(full[key], again[key]), key
    assert (resumed / "COMPLETE").is_file()
    from zeroforge.eval.plots import read_metrics_csv

    def curve(run_dir: Path) -> list[tuple]:  # timings differ between runs; steps, lr and losses may not
        rows = read_metrics_csv(run_dir / "metrics.csv")
        return [(r["step"], r["lr"], r["train_loss"], r.get("val_loss")) for r in rows]

    assert curve(resumed) == curve(runs / "full")


def test_resume_without_optimizer_state_differs(runs: Path):
    drop = "import zeroforge.train.loop as loop\nloop.restore_optimizer = lambda optimizer, state: None"
    resumed = resumed_copy(runs, "no-optimizer-state", prelude=drop)
    full, again = weights(runs / "full"), weights(resumed)
    assert any(not torch.equal(full[k], again[k]) for k in full)


def test_a_finished_run_is_not_silently_overwritten(runs: Path):
    from zeroforge.cli import main

    cwd = os.getcwd()
    os.chdir(runs)
    try:
        assert main(["pretrain", "data.source=tiny.txt", "train.out_dir=full", *ARGS]) == 2
    finally:
        os.chdir(cwd)


def test_resume_with_muon_is_bitwise_exact(runs: Path):
    """Muon's momentum buffers and AdamW's moments both travel through the checkpoint."""
    muon = ["train.optimizer=muon", "train.momentum=0.95", *ARGS]
    run(runs, ["pretrain", "data.source=tiny.txt", "train.out_dir=full-muon", *muon])
    target = runs / "resumed-muon"
    shutil.copytree(runs / "full-muon", target)
    cut_back_to(target, N)
    run(runs, ["pretrain", "data.source=tiny.txt", "train.out_dir=resumed-muon", "train.resume=true", *muon])
    full, again = weights(runs / "full-muon"), weights(target)
    assert any(not torch.equal(full[k], v) for k, v in weights(runs / "full").items())  # not AdamW's run
    for key in full:
        assert torch.equal(full[key], again[key]), key
