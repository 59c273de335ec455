"""What a new user meets first: a fast ``--help``, ``zeroforge models`` that says what each model is,
one-line answers to the usual first mistakes, a last line saying why a run stopped, and the names the
README uses (embed on a loaded model, zf.clean / zf.convert / zf.ChatSession)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import zeroforge as zf
from zeroforge.cli import main
from zeroforge.config import TrainArgs, load_recipe
from zeroforge.data.builders import data_builder
from zeroforge.data.debian import unpack_deb
from zeroforge.data.text import describe_prepared
from zeroforge.errors import ConfigError, DataError
from zeroforge.eval.evaluate import compare_runs
from zeroforge.models.bert import BertConfig, BertForPreTraining
from zeroforge.registry import describe_models, models_table
from zeroforge.tokenizers import train_wordpiece
from zeroforge.train.bookkeeping import stop_message, with_step_cap
from zeroforge.train.checkpoint import save_model_files

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    """``zeroforge --help`` starts in well under a second because nothing imports torch on its path
    (``python -X importtime`` lists every module a process imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "zeroforge", *argv],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "zeroforge.cli" in imported
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}


def test_models_lists_family_size_context_and_shipped_weights(capsys: pytest.CaptureFixture[str]) -> None:
    rows = {r.name: r for r in describe_models()}
    assert rows["gpt2"].family == "gpt" and rows["gpt2"].parameters == 124_439_808
    assert rows["gpt2"].context == "1024 tokens" and rows["lenet"].context == "32x32 px"
    assert rows["MiniLM-L6-H384"].weights == "all-minilm-l6-v2"
    assert rows["smollm2-135m"].weights == "smollm2-135m-instruct"
    assert rows["gpt2"].weights == ""
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out == models_table() + "\n"
    groups = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert groups[:4] == ["language models:", "encoders:", "vision:", "classic:"]
    assert "zeroforge.load('all-minilm-l6-v2')" in out and "124.4M params" in out


def test_create_model_on_a_weights_name_says_how_to_load_them() -> None:
    with pytest.raises(ConfigError, match=r"zeroforge.load\('all-minilm-l6-v2'\).*'MiniLM-L6-H384'"):
        zf.create_model("all-minilm-l6-v2")


def test_prepare_says_what_it_wrote(tmp_path: Path) -> None:
    meta = {"tokenizer": "char", "vocab_size": 84, "train_tokens": 4551478, "val_tokens": 505720}
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    assert describe_prepared(tmp_path) == (
        f"prepared: {tmp_path} (4,551,478 train tokens, 505,720 val tokens, tokenizer char, vocab 84)"
    )


def test_compare_of_language_model_runs_has_no_blank_columns(tmp_path: Path) -> None:
    for name, loss in (("a", 1.5), ("b", 1.25)):
        (tmp_path / name).mkdir()
        metrics = {"val_loss": loss, "val_perplexity": float(np.exp(loss)), "val_tokens": 640}
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    table = compare_runs([tmp_path / "a", tmp_path / "b"], evaluate_missing=False).splitlines()
    assert [c.strip() for c in table[0].split("|")] == ["run", "val loss", "perplexity"]
    assert [c.strip() for c in table[3].split("|")] == [str(tmp_path / "b"), "1.2500", "3.49"]


# ----------------------------------------------------------------------------- why a run stopped


def test_stop_message_names_the_reason() -> None:
    args = TrainArgs(max_steps=300, max_minutes=2.0, early_stopping_patience=3)
    assert stop_message(args, 48, "max_minutes", 120.4, None) == (
        "stopped at step 48 of train.max_steps=300: the time budget train.max_minutes=2 ran out (2.0 min)"
    )
    assert "did not improve for train.early_stopping_patience=3 evaluations; best val_loss at step 20" in (
        stop_message(args, 50, "early_stopping", 30.0, 20)
    )
    assert stop_message(args, 300, "max_steps", 5.0, None) == "finished: 300 of 300 steps done (5 s)"


def test_fit_prints_why_it_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    x = torch.randn(32, 3)
    zf.fit(torch.nn.Linear(3, 1), x, x.sum(dim=1), epochs=2, batch_size=16)
    assert "finished: 4 of 4 steps done" in capsys.readouterr().out


def test_step_cap_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    args = TrainArgs(max_steps=None, max_minutes=5.0, warmup_steps=50)
    val = [{"x": i} for i in range(10)]
    assert with_step_cap(args, val) == (args, val)
    monkeypatch.setenv("ZEROFORGE_MAX_STEPS", "4")
    capped, short = with_step_cap(args, val)
    assert (capped.max_steps, capped.warmup_steps, capped.max_minutes, len(short)) == (4, 2, 5.0, 4)
    assert with_step_cap(TrainArgs(max_steps=2), None)[0].max_steps == 2  # a shorter run is kept
    monkeypatch.setenv("ZEROFORGE_MAX_STEPS", "many")
    with pytest.raises(ConfigError, match="ZEROFORGE_MAX_STEPS"):
        with_step_cap(args, None)


# ----------------------------------------------------------------------------- first mistakes


def test_fit_refuses_raw_uint8_pixels() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
    with pytest.raises(DataError, match=r"uint8 values .*images.to_float"):
        zf.fit(zf.create_model("mlp-mnist"), pixels, np.zeros(8, dtype=np.int64), epochs=1, verbose=False)


def test_fit_says_which_image_size_to_build_for() -> None:
    x = torch.rand(8, 1, 28, 28)
    with pytest.raises(DataError, match=r"expected 32x32 .*create_model\(NAME, image_size=28\)"):
        zf.fit(zf.create_model("lenet"), x, torch.zeros(8, dtype=torch.long), epochs=1, verbose=False)


def test_an_image_model_on_a_text_objective_is_a_one_line_error() -> None:
    recipe = load_recipe(None, ["model.name=lenet", "data.source=mnist"])
    with pytest.raises(ConfigError, match=r"data.objective: clm .*lenet is not one.*data.objective=images"):
        data_builder(recipe)


# ----------------------------------------------------------------------------- names the README uses


def test_embed_finds_the_tokenizer_that_load_returned(tmp_path: Path) -> None:
    tok = train_wordpiece(["a cat sat on the mat, a kitten sat on the hat. " * 20], vocab_size=80)
    torch.manual_seed(0)
    model = BertForPreTraining(
        BertConfig(n_layer=1, n_head=2, n_embd=8, block_size=16, vocab_size=tok.vocab_size)
    )
    save_model_files(tmp_path, model, tok)
    loaded, tokenizer = zf.load(tmp_path)
    assert zf.tokenizer_of(loaded) is tokenizer
    torch.testing.assert_close(
        zf.embed(loaded, ["a cat", "a kitten"]), zf.embed(str(tmp_path), ["a cat", "a kitten"])
    )
    assert zf.tokenizer_of(torch.nn.Linear(1, 1)) is None


def test_generate_finds_the_tokenizer_that_load_returned(tmp_path: Path) -> None:
    from zeroforge.tokenizers import CharTokenizer

    tok = CharTokenizer.from_text("abcdefgh ")
    torch.manual_seed(0)
    model = zf.create_model("gpt-tiny", vocab_size=tok.vocab_size)
    save_model_files(tmp_path, model, tok)
    loaded, _ = zf.load(tmp_path)
    assert zf.generate(loaded, None, "abc", max_new_tokens=5, temperature=0) == zf.generate(
        str(tmp_path), None, "abc", max_new_tokens=5, temperature=0
    )


def test_every_subcommand_has_its_python_function() -> None:
    from zeroforge.chat import ChatSession
    from zeroforge.data.clean import clean
    from zeroforge.weights import convert

    assert (zf.clean, zf.convert, zf.ChatSession) == (clean, convert, ChatSession)


def test_a_debian_package_is_read_without_installing_it(tmp_path: Path) -> None:
    """An ``ar`` archive holding ``data.tar.xz``, as ``apt-get download`` saves it."""
    tree = io.BytesIO()
    with tarfile.open(fileobj=tree, mode="w:xz") as tar:
        for name, data in (("./usr/share/datasets/fashion-mnist/a.gz", b"abc"), ("./usr/share/doc/x", b"no")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    members = [(b"debian-binary", b"2.0\n"), (b"control.tar.xz", b"x"), (b"data.tar.xz", tree.getvalue())]
    deb = b"!<arch>\n"
    for name, body in members:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        deb += header + str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path = tmp_path / "pkg.deb"
    path.write_bytes(deb)
    unpack_deb(path, tmp_path / "tree")
    assert (tmp_path / "tree" / "usr/share/datasets/fashion-mnist/a.gz").read_bytes() == b"abc"
    path.write_bytes(b"not a deb")
    with pytest.raises(DataError, match="not a Debian package"):
        unpack_deb(path, tmp_path / "again")


@pytest.mark.network
def test_fashion_mnist_loads_without_an_install() -> None:
    """From /usr/share/datasets when the package is installed, else fetched with apt-get download."""
    from zeroforge.data.images import load_images

    test = load_images("fashion-mnist", "test")
    assert test.images.shape == (10_000, 1, 28, 28) and test.class_names[9] == "Ankle boot"
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_a_saved_model_folder_has_plain_file_permissions(tmp_path: Path) -> None:
    """safetensors creates its file 0600; save_pretrained (and so ``zeroforge convert``) gives every file
    the permissions a plain open() would."""
    from zeroforge.io import FILE_MODE

    out = zf.save_pretrained(zf.create_model("gpt-tiny"), None, tmp_path / "hf")
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {"config.json": FILE_MODE, "model.safetensors": FILE_MODE}
