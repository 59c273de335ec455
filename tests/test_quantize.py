"""zeroforge quantize: a quantised folder that zeroforge.load reads back bit for bit, generation and
evaluation on it, before/after metrics, and bad arguments as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zeroforge.cli import main
from zeroforge.modules.quantized import QuantizedEmbedding, QuantizedLinear

TINY = [
    "model.name=gpt-tiny",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.block_size=8",
    "train.progress=false",
]


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_corpus: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    assert main(["pretrain", f"data.source={tiny_corpus}", *TINY, "train.name=q"]) == 0
    return tmp_path / "runs" / "q"


def fails(args: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


@pytest.mark.parametrize(
    "flags",
    [["--bits", "8"], ["--bits", "8", "--asymmetric"], ["--bits", "4", "--group-size", "32"]],
)
def test_quantize_cli_round_trip_generate_and_evaluate(run_dir, tmp_path, capsys, flags):
    import zeroforge

    out = tmp_path / "q-out"
    assert main(["quantize", str(run_dir), str(out), *flags, "--evaluate", "--max-batches", "2"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{") :])
    before, after = report["before"]["val_perplexity"], report["after"]["val_perplexity"]
    assert 0.9 < after / before < 1.1  # the tiny model's perplexity barely moves
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["bits"] == int(flags[1])
    assert (out / "run.yaml").is_file()
    model, tokenizer = zeroforge.load(out)
    assert tokenizer is not None
    kinds = {type(m) for m in model.modules()}
    assert QuantizedLinear in kinds and QuantizedEmbedding in kinds and torch.nn.Linear not in kinds
    # the in-memory quantisation and the saved one compute the same logits
    ref, _ = zeroforge.load(run_dir)
    zeroforge.quantize_model(
        ref,
        bits=int(flags[1]),
        group_size=32 if "--group-size" in flags else None,
        asymmetric="--asymmetric" in flags,
    )
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)
    assert main(["generate", str(out), "--prompt", "All:", "--max-new-tokens", "4", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("All:")


def test_quantize_bad_arguments(run_dir, tmp_path, capsys):
    fails(
        ["quantize", str(run_dir), str(tmp_path / "a"), "--bits", "3"], capsys, "bits: expected 8 or 4, got 3"
    )
    fails(
        ["quantize", str(run_dir), str(tmp_path / "a"), "--bits", "4", "--group-size", "48"],
        capsys,
        "group_size: expected one of 32, 64, 128",
    )
    # gpt-tiny is 32 wide: a group of 64 does not divide it
    fails(
        ["quantize", str(run_dir), str(tmp_path / "a"), "--bits", "4", "--group-size", "64"],
        capsys,
        "does not divide the input width",
    )
    fails(["quantize", str(run_dir), str(run_dir)], capsys, "source itself")
    assert not (tmp_path / "a").exists()
