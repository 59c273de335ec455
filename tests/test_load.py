"""``zeroforge.load``: every source kind through the one loader, and its one-line errors.

A folder saved without a tokenizer loads as ``(model, None)``; a run that is still training loads
from its latest checkpoint; a fine-tuned classifier's run loads in a fresh process (the registry
knows the ``classifier`` family without anything imported first).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zeroforge
from zeroforge.errors import ConfigError, DataError
from zeroforge.registry import create_model
from zeroforge.tokenizers import CharTokenizer
from zeroforge.train.checkpoint import publish_final, save_checkpoint
from zeroforge.weights import save_pretrained

CHARS = sorted(set("abcdefghijklmnopqrstuvwxyz .,"))


def randomized(name: str, seed: int = 0, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, **config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # far from the init, so a load that kept the init fails
    return model.eval()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    ours, theirs = a.state_dict(), b.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(theirs[key], ours[key], rtol=0, atol=0, msg=key)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_a_folder_saved_without_tokenizer_loads_as_model_and_none(name, tmp_path):
    model = randomized(name)
    save_pretrained(model, None, tmp_path / "m")
    loaded, tokenizer = zeroforge.load(tmp_path / "m")
    assert tokenizer is None
    assert type(loaded) is type(model) and not loaded.training
    assert_same_weights(model, loaded)


def test_what_needs_a_tokenizer_says_so_in_one_line(tmp_path):
    from zeroforge.cli import build_parser

    save_pretrained(randomized("bert-tiny"), None, tmp_path / "bert")
    with pytest.raises(ConfigError) as err:
        zeroforge.embed(tmp_path / "bert", ["a text"])
    assert one_line(err) == f"{tmp_path / 'bert'}: has no tokenizer (tokenizer.json); embed needs one"

    save_pretrained(randomized("llama-tiny"), None, tmp_path / "llama")
    for command in (["chat", str(tmp_path / "llama")], ["generate", str(tmp_path / "llama")]):
        args = build_parser().parse_args(command)
        with pytest.raises(ConfigError) as err:
            args.func(args)
        assert (
            one_line(err)
            == f"{tmp_path / 'llama'}: has no tokenizer (tokenizer.json); {command[0]} needs one"
        )


def test_a_run_still_training_loads_its_latest_checkpoint(tmp_path):
    tokenizer = CharTokenizer(CHARS)
    save_checkpoint(tmp_path, 5, randomized("gpt-tiny", seed=1), tokenizer, None, {"step": 5})
    model = randomized("gpt-tiny", seed=2)
    save_checkpoint(tmp_path, 10, model, tokenizer, None, {"step": 10})
    assert not (tmp_path / "config.json").exists()  # nothing published yet
    loaded, tok = zeroforge.load(tmp_path)
    assert_same_weights(model, loaded)
    assert tok.encode("hello, world") == tokenizer.encode("hello, world")


def test_a_finished_run_loads_the_published_model_written_from_memory(tmp_path):
    tokenizer = CharTokenizer(CHARS)
    model = randomized("gpt-tiny")
    checkpoint = save_checkpoint(tmp_path, 10, model, tokenizer, None, {"step": 10})
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # the trainer's model in memory is what gets published
    publish_final(tmp_path, checkpoint, model, tokenizer)
    loaded, tok = zeroforge.load(tmp_path)
    assert_same_weights(model, loaded)
    assert tok.encode("abc") == tokenizer.encode("abc")
    assert zeroforge.load_run(tmp_path)[0].state_dict().keys() == loaded.state_dict().keys()


def test_missing_paths_and_non_models_are_named_in_one_line(tmp_path):
    with pytest.raises(DataError) as err:
        zeroforge.load(tmp_path / "nope")
    assert one_line(err).startswith(f"{tmp_path / 'nope'}: no such run directory, model folder, GGUF file")
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello")
    with pytest.raises(DataError) as err:
        zeroforge.load(not_a_model)
    assert one_line(err).startswith(f"{not_a_model}: not a GGUF file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        zeroforge.load(tmp_path / "empty")
    assert one_line(err).startswith(f"{tmp_path / 'empty'}: neither config.json + model.safetensors")
    with pytest.raises(zeroforge.ZeroforgeError, match="dtype: expected one of float32"):
        zeroforge.load(tmp_path / "empty", dtype="int3")


def test_aliases_are_the_one_loader(tmp_path):
    model = randomized("gpt-tiny")
    save_pretrained(model, CharTokenizer(CHARS), tmp_path)
    for loaded, tok in (zeroforge.load_run(tmp_path), zeroforge.load_pretrained(tmp_path)):
        assert_same_weights(model, loaded)
        assert isinstance(tok, CharTokenizer)


@pytest.mark.parametrize("body", ["gpt-tiny", "bert-tiny"])
def test_a_classifier_run_loads_in_a_fresh_process(body, tmp_path):
    """The run directory the trainer leaves after fine-tuning a classifier; nothing but ``zeroforge``
    is imported in the process that loads it."""
    from zeroforge.models.classifier import SequenceClassifier

    tokenizer = CharTokenizer(CHARS)
    model = SequenceClassifier.from_body(randomized(body), n_labels=2).eval()
    checkpoint = save_checkpoint(tmp_path, 2, model, tokenizer, None, {"step": 2})
    publish_final(tmp_path, checkpoint, model, tokenizer)
    x = torch.tensor([tokenizer.encode("a fine text")])
    expected = model(input_ids=x).logits
    torch.save(expected, tmp_path / "expected.pt")
    code = textwrap.dedent(
        f"""
        import torch, zeroforge
        model, tokenizer = zeroforge.load({str(tmp_path)!r})
        x = torch.tensor([tokenizer.encode("a fine text")])
        torch.testing.assert_close(model(input_ids=x).logits, torch.load({str(tmp_path / "expected.pt")!r}))
        print(type(model).__name__, type(tokenizer).__name__, model.config.n_labels)
        """
    )
    src = str(Path(zeroforge.__file__).parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["SequenceClassifier", "CharTokenizer", "2"]


@pytest.mark.network
def test_named_image_weights_load_without_a_tokenizer():
    from zeroforge.models.cnn_efficientnet import EfficientNetLite

    model, tokenizer = zeroforge.load("efficientnet-lite0")
    assert tokenizer is None and not model.training
    from zeroforge import datasets

    assert_same_weights(EfficientNetLite.from_pretrained(datasets.asset_file("efficientnet-lite0")), model)
