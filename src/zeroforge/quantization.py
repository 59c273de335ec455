"""``zeroforge quantize``: a model's Linear and Embedding weights as int8 or int4, saved and reloaded.

    zeroforge quantize runs/gpt-char-shakespeare out/gpt-int8 --bits 8
    zeroforge quantize smollm2-135m-instruct out/smol-int4 --bits 4 --group-size 64 --evaluate --data shakespeare

    model, tokenizer = zeroforge.load("smollm2-135m-instruct")
    zeroforge.quantize_model(model, bits=4, group_size=64)       # in place, in memory
    zeroforge.quantize("runs/x", "out/x-int8", bits=8)           # a folder ``zeroforge.load`` reads

The folder is zeroforge's own layout (weights/files.py): config.json with the family, its config and
a ``quantization`` entry ``{"bits", "group_size", "symmetric"}``; model.safetensors with each layer's
``qweight``, scales and offsets (modules/quantized.py); the tokenizer; and, for a run directory,
its run.yaml, so ``zeroforge evaluate`` reads the same data as for the original. The loaded model
runs generation, evaluation and serving on the quantised weights (the CPU int8/int4 kernels).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from zeroforge.errors import DataError
from zeroforge.io import check_output_dir, write_folder
from zeroforge.modules.quantized import QuantScheme, convert_to_quantized, is_quantized, quantized_bytes

__all__ = ["quantize", "quantize_model", "save_quantized"]


def quantize_model(
    model: nn.Module, bits: int = 8, group_size: int | None = None, asymmetric: bool = False
) -> nn.Module:
    """``model`` with every Linear and Embedding quantised in place (module docstring); returns it."""
    scheme = QuantScheme(bits, group_size, not asymmetric)
    if is_quantized(model):
        raise DataError("quantize: the model is quantised already")
    return convert_to_quantized(model, scheme)


def save_quantized(model: nn.Module, tokenizer: Any | None, directory: str | os.PathLike[str]) -> Path:
    """Write a quantised ``model`` (and ``tokenizer``) as a folder ``zeroforge.load`` reads; all files
    appear at once (written into a temporary sibling, then renamed)."""
    from zeroforge.weights.files import save_model_files

    directory = check_output_dir(directory, "out")
    return write_folder(directory, lambda tmp: save_model_files(tmp, model, tokenizer, hf=False))


def quantize(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    bits: int = 8,
    group_size: int | None = None,
    asymmetric: bool = False,
) -> Path:
    """Load ``src`` (a run directory, model folder, GGUF file or named weights), quantise it and save it
    at ``out``; returns ``out``. Arguments are checked before anything is loaded."""
    from zeroforge.weights import load, resolve

    QuantScheme(bits, group_size, not asymmetric)  # bad arguments fail before a load
    out = check_output_dir(out, "out")
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise DataError(
            f"out: {out} holds other files and no config.json; quantize into a new or empty folder"
        )
    source = resolve(src)
    if source.resolve() == out.resolve():
        raise DataError(f"out: {out} is the source itself; quantize into another folder")
    model, tokenizer = load(src)
    quantize_model(model, bits, group_size, asymmetric)
    save_quantized(model, tokenizer, out)
    if source.is_dir() and (source / "run.yaml").is_file():  # evaluate reads the run's data from it
        shutil.copyfile(source / "run.yaml", out / "run.yaml")
    return out


def describe(model: nn.Module) -> dict[str, Any]:
    """Bytes of the model's weights and its scheme (for the CLI's one-line summary)."""
    from zeroforge.modules.quantized import QuantizedLinear

    scheme = next((m.scheme for m in model.modules() if isinstance(m, QuantizedLinear)), None)
    return {"scheme": scheme.name if scheme else "float", "weight_bytes": quantized_bytes(model)}


def evaluate_before_after(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    data: str | None = None,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """``zeroforge evaluate`` of the source and of its quantised copy on the same data:
    ``{"before": metrics, "after": metrics}`` (perplexity for a language model, accuracy and F1 for
    a classifier run). Each run directory gets its metrics.json, as ``zeroforge evaluate`` writes."""
    from zeroforge.eval.evaluate import evaluate

    before = evaluate(src, data, max_batches=max_batches)
    after = evaluate(out, data, max_batches=max_batches)
    return {"before": before, "after": after}
