"""train.runtime.on_evaluation: a listener sees every evaluation's row and can stop the run there."""

from __future__ import annotations

from typing import Any

import torch

from zeroforge.config import TrainArgs
from zeroforge.data.arrays import ArrayBatches
from zeroforge.registry import create_model
from zeroforge.train.loop import train
from zeroforge.train.runtime import on_evaluation


def _run(listener: Any | None, tmp_path: Any = None) -> Any:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    data = {"features": x, "labels": x.sum(-1)}
    val = [{"features": x[:16], "labels": x[:16].sum(-1)}]
    args = TrainArgs(max_steps=20, eval_every=5, batch_size=8, lr=0.05, progress=False, device="cpu")
    if listener is None:
        return train(
            create_model("linear-regression", in_features=3),
            ArrayBatches(data, 8, seed=0),
            args,
            val_batches=val,
            run_dir=tmp_path,
        )
    with on_evaluation(listener):
        return train(
            create_model("linear-regression", in_features=3),
            ArrayBatches(data, 8, seed=0),
            args,
            val_batches=val,
            run_dir=tmp_path,
        )


def test_listener_sees_each_evaluation_and_stops_the_run(tmp_path) -> None:
    seen: list[tuple[int, float]] = []

    def listen(step: int, row: dict[str, Any]) -> bool:
        seen.append((step, row["val_loss"]))
        return step >= 10

    result = _run(listen, tmp_path / "run")
    assert [s for s, _ in seen] == [5, 10]
    assert result.step == 10 and result.stopped_by == "stopped_after_evaluation"
    assert (tmp_path / "run" / "COMPLETE").is_file()  # a normal, finished run directory
    full = _run(None)
    assert full.step == 20
    # up to the stop, the listened run is the same run: same validation losses at steps 5 and 10
    logged = {r["step"]: r["val_loss"] for r in full.history if "val_loss" in r}
    assert [logged[s] for s, _ in seen] == [v for _, v in seen]


def test_a_listener_that_never_stops_changes_nothing() -> None:
    steps: list[int] = []
    result = _run(lambda step, row: steps.append(step) or False)
    assert steps == [5, 10, 15, 20] and result.stopped_by == "max_steps"
    assert [r["val_loss"] for r in result.history if "val_loss" in r] == [
        r["val_loss"] for r in _run(None).history if "val_loss" in r
    ]
