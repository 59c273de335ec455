"""The registry's table of families: every entry resolves, every preset names a known family, and a
fresh process knows every family (the fine-tuning wrappers included) without importing anything else."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zeroforge.errors import ConfigError
from zeroforge.registry import FAMILIES, create_model, family_of, list_models

SRC = Path(__file__).resolve().parents[2] / "src"


def test_every_family_resolves_to_a_model_class_and_its_config():
    for name, target in FAMILIES.items():
        module_name, class_name = target.split(":")
        model_cls = getattr(importlib.import_module(module_name), class_name)
        family = family_of(name)
        assert family.model_cls is model_cls
        assert dataclasses.is_dataclass(family.config_cls) and family.config_cls is model_cls.config_class


def test_every_preset_belongs_to_a_known_family():
    modules = {target.split(":")[0] for target in FAMILIES.values()}
    presets = {}
    for module_name in modules:
        presets.update(getattr(importlib.import_module(module_name), "PRESETS", {}))
    assert {"gpt2", "smollm2-135m", "bert-base", "lenet", "resnet18", "lstm-tiny"} <= set(presets)
    for name, (family, values) in presets.items():
        assert family in FAMILIES, name
        assert name in list_models() and family_of(name).name == family
        assert isinstance(values, dict)


def test_config_from_name_reads_its_module_presets():
    from zeroforge.models.gpt import GPTConfig

    assert GPTConfig.from_name("gpt-char-small", n_layer=2).n_layer == 2
    with pytest.raises(ConfigError, match="'bert-base' is not a GPTConfig preset"):
        GPTConfig.from_name("bert-base")


def test_wrappers_are_listed_and_built_without_importing_finetuning():
    assert {"classifier", "finetuned-lm"} <= set(list_models())
    model = create_model("classifier", backbone="gpt-tiny", n_labels=3, dropout=0.0)
    assert model.score.out_features == 3


TINY_GPT = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=32)


def test_a_fresh_process_builds_and_loads_a_classifier(tmp_path):
    """Nothing imported but ``zeroforge``: the registry finds the classifier family itself, and the
    classifier's model files (as a fine-tuning run publishes them) load back with ``load_run``."""
    code = f"""
import json, sys, torch, zeroforge
assert "classifier" in zeroforge.list_models() and "finetuned-lm" in zeroforge.list_models()
torch.manual_seed(0)
model = zeroforge.create_model("classifier", backbone="gpt", backbone_config={TINY_GPT!r}, n_labels=2)
from zeroforge.train.checkpoint import save_model_files
save_model_files(__import__("pathlib").Path(sys.argv[1]), model, None, hf=False)
ids = torch.tensor([[1, 2, 3]])
print(json.dumps(model.eval()(ids).logits.tolist()))
"""
    load = """
import json, sys, torch, zeroforge
model, tokenizer = zeroforge.load_run(sys.argv[1])
print(json.dumps(model(torch.tensor([[1, 2, 3]])).logits.tolist()))
"""
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    runs = []
    for script in (code, load):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len(runs[0][0]) == 2
    torch.testing.assert_close(torch.tensor(runs[1]), torch.tensor(runs[0]))
