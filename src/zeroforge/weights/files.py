"""A model's files on disk, in both layouts zeroforge writes, and where a run directory keeps them.

- The Hugging Face layout (``hf.py``): config.json in HF's terms + model.safetensors under HF names,
  for the families that have one (GPT-2, BERT, Llama), so ``transformers`` loads the folder.
- zeroforge's own layout: config.json ``{"zeroforge_family": ..., <config fields>}`` + the state dict
  under our parameter names (tied weights stored once), for every other family and for every
  checkpoint (exact resume reads our names).

A run directory holds its final model at the top and its checkpoints under ``checkpoints/``; the
pointer file ``checkpoints/latest`` names the newest complete one (``zeroforge.train.checkpoint``
writes them), so a run that is still training is read from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import read_json_object
from zeroforge.modules.quantized import QuantizedLinear, QuantScheme, convert_to_quantized
from zeroforge.weights.hf import CONFIG_FILE, SAFETENSORS, is_hf_config, load_hf_model, write_hf_files
from zeroforge.weights.keymaps import keymap_for

WEIGHTS_FILE = SAFETENSORS
CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
STATE_JSON = "trainer_state.json"
QUANTIZATION = "quantization"
"""config.json entry of a quantised model: ``{"bits", "group_size", "symmetric"}``."""
"""Written last into a checkpoint: a checkpoint without it is incomplete."""

__all__ = [
    "BEST",
    "CHECKPOINTS",
    "CONFIG_FILE",
    "LATEST",
    "STATE_JSON",
    "WEIGHTS_FILE",
    "checkpoints_dir",
    "has_hf_format",
    "latest_checkpoint",
    "load_model_files",
    "model_folder",
    "pointed_checkpoint",
    "save_model_files",
]


def has_hf_format(model: nn.Module) -> bool:
    """Whether ``model``'s family has a Hugging Face layout (a key map in ``keymaps.py``)."""
    from zeroforge.registry import family_for_model

    return keymap_for(family_for_model(model).name) is not None


def quantization_of(model: nn.Module) -> QuantScheme | None:
    """The scheme of a quantised model's layers (modules/quantized.py), or None for a float model."""
    schemes = [m.scheme for m in model.modules() if isinstance(m, QuantizedLinear)]
    return min(schemes, key=lambda s: s.bits) if schemes else None  # int4 keeps its vocabulary layers int8


def save_model_files(directory: Path, model: nn.Module, tokenizer: Any | None, hf: bool = True) -> None:
    """config.json + model.safetensors (+ tokenizer files) into ``directory``.

    ``hf=True`` writes the Hugging Face layout for families that have one; other families, and
    ``hf=False``, write zeroforge's own layout.
    """
    from safetensors.torch import save_model

    from zeroforge.registry import config_to_dict, family_for_model

    if hf and has_hf_format(model) and quantization_of(model) is None:
        write_hf_files(directory, model, tokenizer)
        return
    family = family_for_model(model)
    config = {"zeroforge_family": family.name, **config_to_dict(model.config)}
    scheme = quantization_of(model)
    if scheme is not None:  # a quantised model (modules/quantized.py): its layers are rebuilt before loading
        config[QUANTIZATION] = scheme.to_dict()
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_model(model, str(directory / WEIGHTS_FILE))
    if tokenizer is not None:
        tokenizer.save(directory)


def load_model_files(
    directory: str | os.PathLike[str],
    family: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> nn.Module:
    """The model in ``directory`` (either layout; any HF folder too), in eval mode.

    ``dtype`` None keeps float32. ``family`` picks the zeroforge family where an HF checkpoint allows
    several (``bert-classifier`` for a BertModel); ``overrides`` set config fields (``n_labels=3``).
    """
    directory = Path(directory)
    config = read_json_object(directory / CONFIG_FILE, "not a run directory or model folder")
    if is_hf_config(config):
        return load_hf_model(directory, family, dtype, device, **overrides)
    if QUANTIZATION in config:  # its integer weights keep their dtype, its scales fp32
        return _load_own_layout(directory, config, family, overrides).to(device).eval()
    return _load_own_layout(directory, config, family, overrides).to(device, dtype or torch.float32).eval()


def _load_own_layout(
    directory: Path, config: dict[str, Any], family: str | None, overrides: dict[str, Any]
) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from zeroforge.registry import create_model

    saved_family = config.pop("zeroforge_family")
    if family not in (None, saved_family):
        raise ConfigError(f"{directory / CONFIG_FILE}: holds a {saved_family!r} model, not {family!r}")
    quantization = config.pop(QUANTIZATION, None)
    model = create_model(saved_family, **{**config, **overrides})
    if quantization is not None:
        if not isinstance(quantization, dict):
            raise ConfigError(f"{directory / CONFIG_FILE}: {QUANTIZATION} must be an object")
        scheme = QuantScheme.from_dict(quantization, str(directory / CONFIG_FILE))
        convert_to_quantized(model, scheme, empty=True)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise DataError(f"{weights}: missing")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise DataError(f"{weights}: cannot load ({str(err).splitlines()[0]})") from None
    if missing or unexpected:
        what = f"missing tensor {missing[0]}" if missing else f"unexpected tensor {unexpected[0]}"
        raise DataError(f"{weights}: {what}")
    return model


# ----------------------------------------------------------------------------- run directories


def checkpoints_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / CHECKPOINTS


def pointed_checkpoint(run_dir: str | os.PathLike[str], pointer_name: str) -> Path | None:
    """The complete checkpoint a pointer file (``latest`` or ``best``) names, or None."""
    pointer = checkpoints_dir(run_dir) / pointer_name
    if not pointer.is_file():
        return None
    path = checkpoints_dir(run_dir) / pointer.read_text(encoding="utf-8").strip()
    return path if (path / STATE_JSON).is_file() else None


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    return pointed_checkpoint(run_dir, LATEST)


def model_folder(path: Path) -> Path:
    """The folder holding a model: ``path`` itself (a finished run or a model folder), else the latest
    checkpoint of a run that is still training."""
    if (path / CONFIG_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise DataError(
            f"{path}: neither {CONFIG_FILE} + {WEIGHTS_FILE} nor a checkpoint found "
            "(not a run directory or model folder)"
        )
    return latest
