"""zeroforge sweep: a grid of 4 trials on a tiny recipe runs and prunes the hopeless one, a killed sweep
resumes with no trial lost or run twice, and bad spaces are one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from zeroforge.cli import main  # noqa: E402
from zeroforge.errors import ConfigError  # noqa: E402
from zeroforge.sweep import read_space, sweep  # noqa: E402

# three learning rates that learn, one that cannot (1e-9): the median pruner stops that one
SPACE = "train.lr: [0.03, 0.02, 0.01, 1.0e-9]\n"


def _recipe(tmp_path: Path, corpus: Path, steps: int) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"model: {{name: gpt-tiny}}\ndata: {{source: {corpus}}}\n"
        f"train: {{name: tiny, max_steps: {steps}, batch_size: 2, block_size: 8, eval_every: 2, "
        "eval_batches: 2, log_every: 2, threads: 1}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _finished(db: Path) -> list[tuple[str, float]]:
    """(state, lr) of every complete or pruned trial in the study database."""
    study = optuna.load_study(study_name="sweep-tiny", storage=f"sqlite:///{db}")
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [(t.state.name, t.params["train.lr"]) for t in study.get_trials(states=done)]


def test_grid_sweep_prunes_the_hopeless_trial(in_tmp: Path, tiny_corpus: Path, capsys) -> None:
    recipe = _recipe(in_tmp, tiny_corpus, steps=8)
    (in_tmp / "space.yaml").write_text(SPACE, encoding="utf-8")
    result = sweep(recipe, in_tmp / "space.yaml", trials=4, sampler="grid", out_dir="sw", startup_trials=3)
    assert result.finished == 4 and result.pruned == 1
    study = optuna.load_study(study_name="sweep-tiny", storage=f"sqlite:///{in_tmp / 'sw/study.db'}")
    by_lr = {t.params["train.lr"]: t for t in study.trials}
    assert by_lr[1e-9].state == optuna.trial.TrialState.PRUNED
    assert max(by_lr[1e-9].intermediate_values) < 8  # stopped at an evaluation before the end
    assert result.best_params["train.lr"] != 1e-9
    for t in study.trials:  # every trial is a normal, complete run directory
        assert (Path(t.user_attrs["run_dir"]) / "COMPLETE").is_file()
    best = (in_tmp / "sw/best.yaml").read_text()
    assert f"lr: {result.best_params['train.lr']}" in best
    assert (in_tmp / "sw/trials.csv").read_text().count("\n") == 5
    for plot in ("history", "importances", "parallel"):
        assert (in_tmp / f"sw/{plot}.png").read_bytes()[:4] == b"\x89PNG"


def test_killed_sweep_resumes_without_lost_or_repeated_trials(in_tmp: Path, tiny_corpus: Path) -> None:
    recipe = _recipe(in_tmp, tiny_corpus, steps=30)
    (in_tmp / "space.yaml").write_text(SPACE, encoding="utf-8")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "zeroforge", "sweep", "--config", str(recipe), "--space", "space.yaml",
           "--trials", "4", "--sampler", "grid", "--out", "sw", "--heartbeat", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (in_tmp / "sw/trial-0001/metrics.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # mid-trial 1: it stays RUNNING in the database
    proc.wait()
    assert len(_finished(in_tmp / "sw/study.db")) < 4
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    finished = _finished(in_tmp / "sw/study.db")
    assert sorted(lr for _, lr in finished) == sorted([0.03, 0.02, 0.01, 1e-9])  # each value once
    assert "4 trials finished" in done.stdout


@pytest.mark.parametrize(
    "space, message",
    [
        ("train.lrr: [0.1]\n", "space.yaml: train.lrr: 0.1 is refused by the recipe"),
        ("model.n_layer: []\n", "space.yaml: model.n_layer: empty list of choices"),
        ("train.lr: loguniform 3e-3 1e-4\n", "space.yaml: train.lr: low 0.003 > high 0.0001"),
        ("train.lr: loguniform 0 1e-4\n", "space.yaml: train.lr: loguniform needs low > 0"),
        ("train.lr: between 1 2\n", "space.yaml: train.lr: expected a list of values or"),
        ("lr: [1]\n", "space.yaml: lr: expected a recipe field as section.key"),
    ],
)
def test_bad_space_is_one_line_error(
    in_tmp: Path, tiny_corpus: Path, capsys, space: str, message: str
) -> None:
    recipe = _recipe(in_tmp, tiny_corpus, steps=2)
    (in_tmp / "space.yaml").write_text(space, encoding="utf-8")
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        read_space("space.yaml", recipe)
    assert main(["sweep", "--config", str(recipe), "--space", "space.yaml", "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (in_tmp / "runs").exists()  # nothing started


def test_two_worker_processes_share_the_study(in_tmp: Path, tiny_corpus: Path) -> None:
    recipe = _recipe(in_tmp, tiny_corpus, steps=2)
    (in_tmp / "space.yaml").write_text("train.lr: loguniform 1e-3 1e-2\n", encoding="utf-8")
    result = sweep(
        recipe, in_tmp / "space.yaml", trials=3, jobs=2, sampler="random", out_dir="sw", prune=False
    )
    # each worker stops once 3 trials have finished; one may be mid-trial then and finish a 4th
    assert 3 <= result.finished <= 4
    study = optuna.load_study(study_name="sweep-tiny", storage=f"sqlite:///{in_tmp / 'sw/study.db'}")
    runs = [t.user_attrs["run_dir"] for t in study.trials]
    assert len(set(runs)) == len(runs) and all((Path(r) / "COMPLETE").is_file() for r in runs)
