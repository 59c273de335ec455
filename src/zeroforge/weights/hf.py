"""Hugging Face model folders in and out: config.json + model.safetensors (+ tokenizer files).

Reading: the family comes from config.json (``model_type`` and ``architectures``), its ``KeyMap``
(``keymaps.py``) names every tensor, and every shape is asserted against the config before anything
is copied. Weights are read from ``model.safetensors`` (or its sharded index); ``pytorch_model.bin``
only through ``torch.load(weights_only=True)``, which refuses anything but tensors and containers.

Writing produces what ``transformers.AutoModel*.from_pretrained`` reads, plus a ``zeroforge`` entry
in config.json holding our family and typed config, so a round trip restores fields HF has no key
for (``attention="naive"``, ``bias=False``...). ``transformers`` itself is never imported.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.errors import ConfigError, DataError, ZeroforgeError
from zeroforge.io import check_output_dir, read_json_object, write_folder
from zeroforge.weights.keymaps import KeyMap, family_for_hf, keymap_for, tied_keys

CONFIG_FILE = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
ZEROFORGE_KEY = "zeroforge"
"""config.json entry ``{"family": ..., "config": {...}}`` written by zeroforge."""


# ----------------------------------------------------------------------------- config


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    return read_json_object(Path(directory) / CONFIG_FILE, "not a model directory")


def is_hf_config(config: dict[str, Any]) -> bool:
    """True for an HF-format config.json (ours since this format, or anyone's); False for the older
    zeroforge layout (``{"zeroforge_family": ..., <config fields>}``)."""
    return "zeroforge_family" not in config


def model_config(
    hf: dict[str, Any], where: str, family: str | None = None, **overrides: Any
) -> tuple[str, KeyMap, Any]:
    """(family, its KeyMap, our typed config) for an HF config.json; ``family`` overrides the guess
    (load a BertModel checkpoint as ``bert-classifier``), ``overrides`` set config fields."""
    from zeroforge.registry import model_config as build

    ours = hf.get(ZEROFORGE_KEY) if isinstance(hf.get(ZEROFORGE_KEY), dict) else None
    family = family or (ours or {}).get("family") or family_for_hf(hf, where)
    keymap = keymap_for(family)
    if keymap is None:
        raise ConfigError(f"{where}: zeroforge family {family!r} has no Hugging Face format")
    if ours is not None and keymap_for(ours.get("family", "")) is keymap:
        fields = dict(ours.get("config") or {})
    else:
        fields = keymap.config_from_hf(hf, where)
    fields.update(overrides)
    try:
        return family, keymap, build(family, **fields)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def hf_config(model: nn.Module, tokenizer: Any | None = None) -> dict[str, Any]:
    """The config.json ``save_pretrained`` writes for ``model``."""
    from zeroforge.registry import config_to_dict, family_for_model

    family = family_for_model(model).name
    keymap = _keymap(family)
    config = model.config
    out: dict[str, Any] = {
        "architectures": [keymap.architecture],
        "model_type": keymap.model_type,
        **keymap.config_to_hf(config),
    }
    dtype = next(model.parameters()).dtype
    out["dtype"] = str(dtype).removeprefix("torch.")
    if tokenizer is not None:
        for role in ("bos", "eos", "pad"):
            token_id = getattr(tokenizer, f"{role}_id", None)  # bos_id: only tokenizers that have one
            if token_id is not None:
                out[f"{role}_token_id"] = token_id
    out[ZEROFORGE_KEY] = {"family": family, "config": config_to_dict(config)}
    return out


def _keymap(family: str) -> KeyMap:
    keymap = keymap_for(family)
    if keymap is None:
        raise ZeroforgeError(f"save_pretrained: family {family!r} has no Hugging Face format")
    return keymap


# ----------------------------------------------------------------------------- reading tensors


@dataclass(frozen=True)
class Stored:
    """One tensor of a checkpoint, not read yet: its file, its shape (from the header) and a reader."""

    file: Path
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# safetensors dtype -> (numpy dtype to read, torch dtype to view it as)
_SAFETENSORS_DTYPES = {
    "F64": (np.float64, torch.float64),
    "F32": (np.float32, torch.float32),
    "F16": (np.float16, torch.float16),
    "BF16": (np.int16, torch.bfloat16),  # numpy has no bfloat16: read the bits, view them
    "I64": (np.int64, torch.int64),
    "I32": (np.int32, torch.int32),
    "I16": (np.int16, torch.int16),
    "I8": (np.int8, torch.int8),
    "U8": (np.uint8, torch.uint8),
    "BOOL": (np.bool_, torch.bool),
}


def _open_safetensors(path: Path) -> dict[str, Stored]:
    """The file's tensors; ``safe_open`` validates the header (offsets inside the file, one dtype
    and shape per tensor), then each tensor is read with a plain file read when it is needed.

    Reading instead of memory-mapping keeps the peak memory of a load at about the model's size:
    pages of a mapping stay resident (and counted) until the whole file is unmapped.
    """
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework="pt")
        shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        del handle
    except (SafetensorError, OSError, ValueError, struct.error) as err:
        raise DataError(f"{path}: corrupt or truncated safetensors file ({_first_line(err)})") from None

    def reader(name: str) -> Callable[[], torch.Tensor]:
        entry = header[name]
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise DataError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        np_dtype, torch_dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]

        def load() -> torch.Tensor:
            count = (end - begin) // np.dtype(np_dtype).itemsize
            try:
                array = np.fromfile(path, dtype=np_dtype, count=count, offset=8 + size + begin)
            except (OSError, ValueError) as err:
                raise DataError(f"{path}: cannot read tensor {name} ({_first_line(err)})") from None
            if array.size != count:
                raise DataError(f"{path}: truncated inside tensor {name}")
            return torch.from_numpy(array).view(torch_dtype).reshape(shapes[name])

        return load

    return {name: Stored(path, shape, reader(name)) for name, shape in shapes.items()}


def _open_torch_bin(path: Path) -> dict[str, Stored]:
    import pickle

    try:
        # weights_only: a restricted unpickler that builds tensors and containers, nothing else
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise DataError(f"{path}: not a tensors-only PyTorch checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: expected a flat dict of tensors")
    return {name: Stored(path, tuple(t.shape), lambda t=t: t) for name, t in state.items()}


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path}: not a checkpoint index (expected a 'weight_map'; {_first_line(err)})"
        ) from None
    return weight_map


def open_tensors(directory: str | os.PathLike[str]) -> dict[str, Stored]:
    """Every tensor of an HF checkpoint folder: name -> (file, loader), without reading any data yet."""
    directory = Path(directory)
    if (directory / SAFETENSORS).is_file():
        return _open_safetensors(directory / SAFETENSORS)
    for index, opener in ((SAFETENSORS_INDEX, _open_safetensors), (TORCH_BIN_INDEX, None)):
        if (directory / index).is_file():
            weight_map = _read_index(directory / index)
            tensors: dict[str, Stored] = {}
            for shard in sorted(set(weight_map.values())):
                shard_path = directory / shard
                if not shard_path.is_file():
                    raise DataError(f"{shard_path}: missing (listed in {index})")
                tensors.update(_open_safetensors(shard_path) if opener else _open_torch_bin(shard_path))
            return tensors
    if (directory / TORCH_BIN).is_file():
        return _open_torch_bin(directory / TORCH_BIN)
    raise DataError(
        f"{directory / SAFETENSORS}: missing (no {SAFETENSORS} or {TORCH_BIN} in the model folder)"
    )


# ----------------------------------------------------------------------------- HF tensors -> model


def load_state(model: nn.Module, keymap: KeyMap, tensors: dict[str, Stored], where: str) -> list[str]:
    """Copy HF-named ``tensors`` into ``model`` after checking every name and shape.

    Returns our parameter names a full-model checkpoint did not have (only ``keymap.optional`` heads
    may be missing, anything else is a DataError; a bare backbone has no heads by design and returns
    none). Raises before copying anything when a shape is wrong.
    """
    ours = model.state_dict()
    tied = set(tied_keys(keymap, model.config))
    expected = {keymap.hf_name(k): k for k in ours if k not in tied}  # HF name -> our name
    assert len(expected) == len(ours) - len(tied), f"{keymap.family}: key map is not one to one"
    names = {keymap.modern_name(name): name for name in tensors}  # HF name -> name in the file
    backbone = not any(name.startswith(keymap.prefix) for name in names)
    if backbone:  # a bare backbone (BertModel, LlamaModel): its keys lack the prefix, and it has no heads
        names = {keymap.prefix + name: raw for name, raw in names.items()}

    tied_copies = {keymap.hf_name(k) for k in tied}  # some checkpoints store a tied weight twice
    plan: list[tuple[str, str]] = []  # (our name, name in the file)
    for name, raw in sorted(names.items()):
        if name in expected:
            plan.append((expected[name], raw))
        elif name in tied_copies or keymap.is_ignored(name):
            continue
        elif not _zero_bias(model, name, tensors[raw]):
            raise DataError(
                f"{tensors[raw].file}: unexpected tensor {raw} "
                f"(a {keymap.family} model with this config.json has no such weight)"
            )
    for key, raw in plan:  # names and shapes first, from the headers: an error leaves the model untouched
        shape = tuple(ours[key].shape[::-1] if keymap.is_transposed(key) else ours[key].shape)
        if tensors[raw].shape != shape:
            raise DataError(
                f"{tensors[raw].file}: tensor {raw} has shape {tensors[raw].shape}, expected {shape} from {where}"
            )
    loaded = {key for key, _ in plan}
    missing = [k for k in expected.values() if k not in loaded]
    required = [k for k in missing if not k.startswith(keymap.optional)]
    if required:
        files = sorted({str(stored.file) for stored in tensors.values()})
        raise DataError(f"{files[0]}: missing tensor {keymap.hf_name(required[0])} (needed by {where})")
    with torch.no_grad():
        for key, raw in plan:
            value = tensors[raw].load()
            ours[key].copy_(value.t() if keymap.is_transposed(key) else value)
    return [] if backbone else missing


def _zero_bias(model: nn.Module, name: str, stored: Stored) -> bool:
    """A bias that zeroforge wrote as zeros for a ``bias=False`` GPT (HF's GPT-2 always has biases)."""
    return (
        name.endswith(".bias")
        and getattr(model.config, "bias", True) is False
        and not bool(stored.load().any())
    )


def new_model(model_cls: type[nn.Module], config: Any, dtype: torch.dtype) -> nn.Module:
    """A freshly initialised model whose parameters are created in ``dtype`` (no fp32 copy first,
    so loading a bf16 model never holds twice its size)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return model_cls(config)
    finally:
        torch.set_default_dtype(default)


def load_hf_model(
    directory: str | os.PathLike[str],
    family: str | None = None,
    dtype: torch.dtype | None = torch.float32,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> nn.Module:
    """The model of an HF folder (config.json + weights), in eval mode.

    ``dtype`` None keeps float32 (the reference numerics); ``family``/``overrides`` as ``model_config``.
    """
    from zeroforge.registry import family_of

    directory = Path(directory)
    where = str(directory / CONFIG_FILE)
    family, keymap, config = model_config(read_config(directory), where, family, **overrides)
    tensors = open_tensors(directory)
    model = new_model(family_of(family).model_cls, config, dtype or torch.float32)
    missing = load_state(model, keymap, tensors, where)
    if missing:
        heads = sorted({p for p in keymap.optional for k in missing if k.startswith(p)})
        warnings.warn(
            f"{directory}: {len(missing)} tensors of {', '.join(heads)} are not in the checkpoint "
            "and keep their fresh initialisation (train them before use)",
            stacklevel=3,
        )
    return model.to(device=device, dtype=dtype or torch.float32).eval()


# ----------------------------------------------------------------------------- model -> HF tensors


def hf_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights under HF names and layouts: Conv1D transposed, tied copies dropped."""
    from zeroforge.registry import family_for_model

    keymap = _keymap(family_for_model(model).name)
    tied = set(tied_keys(keymap, model.config))
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key in tied:
            continue
        value = value.detach()
        out[keymap.hf_name(key)] = (value.t() if keymap.is_transposed(key) else value).contiguous().cpu()
    if getattr(model.config, "bias", True) is False:
        # HF's GPT-2 has a bias in every Linear and LayerNorm; zeros make it compute the same function.
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear | nn.LayerNorm) and module.bias is None and name != "lm_head":
                out[keymap.hf_name(f"{name}.bias")] = torch.zeros(
                    module.weight.shape[0], dtype=module.weight.dtype
                )
    return out


def write_hf_model(directory: str | os.PathLike[str], model: nn.Module, tokenizer: Any | None = None) -> None:
    """config.json (with ``tokenizer``'s bos/eos/pad ids) + model.safetensors into an existing ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    config = hf_config(model, tokenizer)
    save_file(hf_state_dict(model), str(directory / SAFETENSORS), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_hf_files(directory: str | os.PathLike[str], model: nn.Module, tokenizer: Any | None = None) -> None:
    """config.json + model.safetensors + the tokenizer's files into an existing ``directory``."""
    write_hf_model(directory, model, tokenizer)
    if tokenizer is not None:
        tokenizer.save(directory)


def save_pretrained(model: nn.Module, tokenizer: Any | None, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` (and ``tokenizer``) as an HF folder that ``transformers`` loads; returns the folder.

    Everything is written into a temporary sibling folder first; the files appear in ``directory``
    only once all of them are complete (each by an atomic rename), so a failure leaves nothing
    half-written. Files of an earlier save that this one does not write stay as they were.
    """
    directory = check_output_dir(directory, "save_pretrained: directory")
    return write_folder(directory, lambda tmp: write_hf_files(tmp, model, tokenizer))
