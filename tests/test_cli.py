"""The CLI: bad input gives one line naming the problem and a non-zero exit, never a traceback,
and never a run directory that looks complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zeroforge.cli import main

TINY = [
    "model.name=gpt-tiny",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.block_size=8",
    "train.progress=false",
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def fails(args: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    return err


def no_complete_run(root: Path) -> bool:
    return not list(root.glob("runs/**/COMPLETE"))


def test_missing_corpus(in_tmp, capsys):
    fails(["pretrain", "data.source=nope.txt", *TINY], capsys, "nope.txt: no such file or dataset")
    assert no_complete_run(in_tmp)


def test_empty_corpus(in_tmp, capsys):
    (in_tmp / "empty.txt").write_text("")
    fails(["pretrain", "data.source=empty.txt", *TINY], capsys, "empty.txt")
    assert no_complete_run(in_tmp)


def test_non_utf8_corpus(in_tmp, capsys):
    (in_tmp / "bad.txt").write_bytes(b"hello \xff\xfe world\n" * 50)
    fails(["pretrain", "data.source=bad.txt", *TINY], capsys, "UTF-8")
    assert no_complete_run(in_tmp)


def test_unknown_key_negative_lr_and_oversized_block(in_tmp, capsys, tiny_corpus):
    src = f"data.source={tiny_corpus}"
    fails(["pretrain", src, *TINY, "train.learning_rate=1"], capsys, "train.learning_rate: unknown key")
    fails(["pretrain", src, *TINY, "train.lr=-0.1"], capsys, "train.lr: must be > 0")
    fails(["pretrain", src, *TINY[:-2], "train.block_size=64"], capsys, "train.block_size: 64 is larger than")
    assert no_complete_run(in_tmp)


def test_recipe_file_errors_name_the_file(in_tmp, capsys):
    (in_tmp / "r.yaml").write_text("train:\n  lr: [1, 2\n")
    fails(["pretrain", "--config", "r.yaml"], capsys, "r.yaml: not valid YAML")
    fails(["pretrain", "--config", "missing.yaml"], capsys, "missing.yaml: recipe file not found")
    fails(["generate", "no-such-run"], capsys, "no-such-run: no such run directory")


def test_one_line_and_no_traceback_from_a_real_process(in_tmp):
    env = {**os.environ, "ZEROFORGE_CACHE": str(in_tmp / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "zeroforge", "pretrain", "train.lr=-1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "zeroforge pretrain: error: train.lr: must be > 0, got -1.0"


def test_pretrain_generate_evaluate_end_to_end(in_tmp, capsys, tiny_corpus):
    assert main(["pretrain", f"data.source={tiny_corpus}", *TINY, "train.name=e2e"]) == 0
    capsys.readouterr()
    run_dir = in_tmp / "runs" / "e2e"
    for name in ("config.json", "model.safetensors", "run.yaml", "metrics.csv", "loss.png", "COMPLETE"):
        assert (run_dir / name).is_file(), name
    assert main(["generate", str(run_dir), "--prompt", "All:", "--max-new-tokens", "5", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("All:") and len(out.strip()) > len("All:")
    assert main(["evaluate", str(run_dir)]) == 0
    assert (run_dir / "metrics.json").is_file()


def test_recipe_clean_step_runs_before_tokenising(in_tmp, capsys, tiny_corpus):
    recipe = in_tmp / "r.yaml"
    recipe.write_text(
        f"model: {{name: gpt-tiny}}\ndata: {{source: {tiny_corpus}}}\n"
        "train: {name: c, max_steps: 2, batch_size: 2, block_size: 8, progress: false}\n"
        "clean: {dedup: {exact: true}}\n"
    )
    assert main(["pretrain", "--config", str(recipe)]) == 0
    run_dir = in_tmp / "runs" / "c"
    report = json.loads((run_dir / "clean_report.json").read_text())
    cleaned = (run_dir / "data" / "tiny.clean.txt").read_text().splitlines()
    assert report["rows_in"] == len([line for line in tiny_corpus.read_text().splitlines() if line.strip()])
    assert report["rows_out"] == len(cleaned) == len(set(cleaned))  # exact duplicates went
    capsys.readouterr()
    bad = in_tmp / "bad.yaml"
    bad.write_text(recipe.read_text().replace("exact: true", "exactly: true"))
    fails(["pretrain", "--config", str(bad)], capsys, "exactly")


def test_prepare_with_a_recipe_writes_to_out_and_rejects_flags_it_would_ignore(in_tmp, capsys, tiny_corpus):
    recipe = in_tmp / "r.yaml"
    recipe.write_text(f"model: {{name: gpt-tiny}}\ndata: {{source: {tiny_corpus}}}\ntrain: {{name: p}}\n")
    out = in_tmp / "prepared-here"
    assert main(["prepare", "--config", str(recipe), "--out", str(out)]) == 0
    assert (out / "meta.json").is_file()  # --out is the recipe's data.prepared_dir
    capsys.readouterr()
    fails(["prepare", "--config", str(recipe), "--max-seq-len", "64"], capsys, "override model.block_size")
    fails(["prepare", "--config", str(recipe), "--vocab-size", "99"], capsys, "override data.vocab_size")
    fails(["prepare", "--config", str(recipe), "--extra-source", "x"], capsys, "override data.extra_sources")
    fails(
        ["prepare", "--config", str(recipe), "--out", str(out), f"data.prepared_dir={out}"],
        capsys,
        "not both",
    )


SUBCOMMANDS = [
    "prepare", "train", "pretrain", "finetune", "generate", "evaluate", "models", "demo",
    "clean", "embed", "convert", "chat",
]  # fmt: skip


def test_help_lists_every_subcommand_without_importing_torch():
    code = (
        "import sys\nfrom zeroforge.cli import build_parser\n"
        "print(build_parser().format_help())\nprint('torch loaded:', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert set(SUBCOMMANDS) <= listed, listed
    assert "torch loaded: False" in out


def test_a_subcommand_whose_module_fails_to_import_is_an_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "zeroforge.chat", None)  # ``import zeroforge.chat`` now fails
    with pytest.raises(SystemExit):
        main(["chat", "--help"])  # the command is still there
    assert "chat with a model" in capsys.readouterr().out
    assert main(["chat", "some-model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("zeroforge chat: error: cannot import") and "zeroforge.chat" in err


def test_train_runs_a_pretraining_recipe_like_pretrain(in_tmp, capsys, tiny_corpus):
    assert main(["train", f"data.source={tiny_corpus}", *TINY, "train.out_dir=runs/t"]) == 0
    assert (in_tmp / "runs" / "t" / "COMPLETE").is_file()
    assert "run directory: runs/t" in capsys.readouterr().out
    fails(["train", "--config", "missing.yaml"], capsys, "missing.yaml: recipe file not found")


@pytest.mark.parametrize(
    "argv, prog",
    [(["generate"], "zeroforge generate"), (["nosuch"], "zeroforge"), (["train", "--bogus"], "zeroforge")],
)
def test_usage_errors_are_one_line(argv, prog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and f"see {prog} --help" in err
