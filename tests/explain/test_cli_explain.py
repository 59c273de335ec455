"""``zeroforge explain`` on a run directory: files written, bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

from zeroforge.cli import main

TINY = ["model.name=gpt-tiny", "train.max_steps=2", "train.batch_size=2", "train.block_size=8"]


def test_explain_attention_on_a_run(tmp_path: Path, monkeypatch, capsys, tiny_corpus) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    run = ["train", f"data.source={tiny_corpus}", *TINY, "train.progress=false", "train.out_dir=runs/t"]
    assert main(run) == 0
    assert main(["explain", "attention", "runs/t", "--text", "the cat"]) == 0
    report = json.loads((tmp_path / "runs/t/explain/attention.json").read_text())
    assert report["tokens"] == list("the cat") and len(report["attention"][0][0]) == 7
    assert (tmp_path / "runs/t/explain/attention.png").is_file()
    capsys.readouterr()
    assert main(["explain", "attention", "runs/t"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "zeroforge explain: error: explain attention: give --text (or --index N for an image run's saliency)"
    )
    assert main(["explain", "saliency", "runs/t", "--text", "the cat"]) == 2  # an LM is not a classifier
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
