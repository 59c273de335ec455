"""Run directories and checkpoints: atomic, pickle-free, exactly resumable.

A run directory::

    runs/<name>/
      config.json  model.safetensors  <tokenizer files>  run.yaml     the final model (HF layout)
      trainer_state.json  trainer_state.safetensors                  optimizer, RNG, data position, step
      metrics.csv  loss.png                                          the curves
      checkpoints/step-000500/ ...  checkpoints/latest               intermediate checkpoints
      COMPLETE                                                       written last

Each checkpoint is written whole into ``checkpoints/.tmp-*`` and renamed, so a kill never leaves a
broken one; the final files are hard-linked from the last checkpoint, one atomic rename each, and
``COMPLETE`` marks the end. Checkpoints store the model under zeroforge's own parameter names (exact
resume reads them); the final model is published in the Hugging Face layout for families that have
one (GPT-2, BERT, Llama), so ``transformers.AutoModel*.from_pretrained(run_dir)`` loads it. Trainer state is split into tensors (safetensors) and everything else
(JSON); nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from zeroforge.errors import DataError
from zeroforge.io import DIR_MODE, FILE_MODE, atomic_write_json, atomic_write_text, read_json_object

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
COMPLETE = "COMPLETE"
LATEST = "latest"
BEST = "best"

# ----------------------------------------------------------------------------- state <-> (tensors, JSON)


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """Replace every tensor in a nested state by a reference; dict keys keep their types (int stays int)."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [flatten_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in trainer state at {path}")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# ----------------------------------------------------------------------------- model files


def _has_hf_format(model: nn.Module) -> bool:
    from zeroforge.registry import family_for_model
    from zeroforge.weights.keymaps import keymap_for

    return keymap_for(family_for_model(model).name) is not None


def save_model_files(directory: Path, model: nn.Module, tokenizer: Any | None, hf: bool = True) -> None:
    """config.json + model.safetensors (+ tokenizer files) into ``directory``.

    ``hf=True`` writes the Hugging Face layout for families that have one (GPT-2, BERT, Llama:
    ``transformers`` loads the folder); other families, and ``hf=False``, write zeroforge's own layout:
    ``{"zeroforge_family": ..., <config>}`` and the state dict under our names (tied weights once).
    """
    from zeroforge.registry import config_to_dict, family_for_model

    if hf and _has_hf_format(model):
        from zeroforge.weights.hf import write_hf_files

        write_hf_files(directory, model, tokenizer)
        return
    family = family_for_model(model)
    config = {"zeroforge_family": family.name, **config_to_dict(model.config)}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_model(model, str(directory / WEIGHTS_FILE))
    if tokenizer is not None:
        tokenizer.save(directory)


def _read_config(directory: Path) -> dict[str, Any]:
    return read_json_object(directory / CONFIG_FILE, "not a zeroforge run or model directory")


def load_model_files(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """The model in ``directory``, whichever layout ``save_model_files`` used (or any HF folder)."""
    from zeroforge.registry import create_model

    directory = Path(directory)
    config = _read_config(directory)
    family = config.pop("zeroforge_family", None)
    if family is None:  # the Hugging Face layout
        from zeroforge.weights.hf import load_hf_model

        return load_hf_model(directory, device=device)
    model = create_model(family, **config)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise DataError(f"{weights}: missing")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise DataError(f"{weights}: cannot load ({str(err).splitlines()[0]})") from None
    if missing or unexpected:
        what = f"missing tensor {missing[0]}" if missing else f"unexpected tensor {unexpected[0]}"
        raise DataError(f"{weights}: {what}")
    return model.to(device)


def load_model_weights(model: nn.Module, directory: str | os.PathLike[str]) -> None:
    """Copy the weights saved in ``directory`` (either layout) into an existing ``model`` (for resuming)."""
    loaded = load_model_files(directory, device=next(model.parameters()).device)
    model.load_state_dict(loaded.state_dict())


def load_run(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` from a run directory (its final model, else its latest checkpoint), an HF
    model folder, a GGUF file or named weights (``zeroforge.weights.NAMED``). ``tokenizer`` is None for
    a model trained on arrays (``zeroforge.fit``)."""
    from zeroforge.weights.tokenizer import load_pretrained_tokenizer

    path = Path(path)
    if not path.is_dir():
        from zeroforge.weights import NAMED, load_pretrained

        if path.is_file() or str(path) in NAMED:
            return load_pretrained(path if path.is_file() else str(path), device=device)
        raise DataError(f"{path}: no such run directory, model folder, GGUF file or named weights")
    if not (path / CONFIG_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise DataError(f"{path}: neither {CONFIG_FILE} + {WEIGHTS_FILE} nor a checkpoint found")
        path = latest
    model = load_model_files(path, device)
    model.eval()
    # models trained on arrays (fit: regression, CNNs) have no tokenizer
    tokenizer_files = ("zeroforge_tokenizer.json", "tokenizer.json", "vocab.json", "vocab.txt")
    if not any((path / name).is_file() for name in tokenizer_files):
        return model, None
    return model, load_pretrained_tokenizer(path)


# ----------------------------------------------------------------------------- checkpoints


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def _pointed_checkpoint(run_dir: str | os.PathLike[str], pointer_name: str) -> Path | None:
    """The complete checkpoint a pointer file (``latest`` or ``best``) names, or None."""
    pointer = checkpoints_dir(Path(run_dir)) / pointer_name
    if not pointer.is_file():
        return None
    path = checkpoints_dir(Path(run_dir)) / pointer.read_text(encoding="utf-8").strip()
    return path if (path / STATE_JSON).is_file() else None


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    return _pointed_checkpoint(run_dir, LATEST)


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    tokenizer: Any | None,
    recipe: dict[str, Any] | None,
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-NNNNNN`` via a temp dir + rename; point ``latest`` at it; prune old ones."""
    import yaml

    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        os.chmod(tmp, DIR_MODE)
        save_model_files(tmp, model, tokenizer, hf=False)  # resume reads these by our names
        if recipe is not None:
            (tmp / "run.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        tensors: dict[str, torch.Tensor] = {}
        tree = flatten_state(trainer_state, tensors)
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(tree) + "\n", encoding="utf-8")
        final = root / f"step-{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / LATEST, final.name + "\n")
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def keep_as_best(run_dir: Path, checkpoint: Path) -> Path:
    """Keep ``checkpoint`` as ``checkpoints/best-step-N`` (hard links, so no second copy of the bytes)
    and point ``best`` at it; the previous best goes once the pointer has moved. Pruning of
    ``step-*`` never touches it."""
    root = checkpoints_dir(run_dir)
    final = root / f"best-{checkpoint.name}"
    if not final.exists():
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-best-"))
        try:
            os.chmod(tmp, DIR_MODE)
            for src in checkpoint.iterdir():
                try:
                    os.link(src, tmp / src.name)
                except OSError:
                    shutil.copy2(src, tmp / src.name)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    atomic_write_text(root / BEST, final.name + "\n")
    for old in root.glob("best-step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def best_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    return _pointed_checkpoint(run_dir, BEST)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    try:
        tree = json.loads((checkpoint / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(checkpoint / STATE_TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise DataError(f"{checkpoint}: unreadable trainer state ({str(err).splitlines()[0]})") from None
    return unflatten_state(tree, tensors)


def publish_final(run_dir: Path, checkpoint: Path) -> None:
    """Expose the last checkpoint's files at the top of the run dir (hard links, atomic renames).

    The model itself is published in the Hugging Face layout where its family has one, so the run
    directory is a folder ``transformers.AutoModel*.from_pretrained`` loads.
    """
    from zeroforge.weights.keymaps import keymap_for

    family = _read_config(checkpoint).get("zeroforge_family")
    convert = keymap_for(family) is not None if isinstance(family, str) else False
    for src in sorted(checkpoint.iterdir()):
        if not src.is_file() or (convert and src.name in (CONFIG_FILE, WEIGHTS_FILE)):
            continue
        tmp = run_dir / f".{src.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, run_dir / src.name)
    if convert:
        _publish_hf_model(run_dir, checkpoint)


def _publish_hf_model(run_dir: Path, checkpoint: Path) -> None:
    """The checkpoint's model as HF config.json + model.safetensors at the top of ``run_dir``."""
    from zeroforge.tokenizers import load_tokenizer
    from zeroforge.weights.hf import write_hf_files

    model = load_model_files(checkpoint)
    try:
        tokenizer = load_tokenizer(checkpoint)  # its bos/eos ids go into config.json
    except DataError:
        tokenizer = None
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".model-"))
    try:
        write_hf_files(tmp, model, None)
        if tokenizer is not None:
            from zeroforge.weights.hf import hf_config

            atomic_write_json(tmp / CONFIG_FILE, hf_config(model, tokenizer))
        for name in (WEIGHTS_FILE, CONFIG_FILE):  # config last: it says what the weights are
            os.chmod(tmp / name, FILE_MODE)
            os.replace(tmp / name, run_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mark_complete(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(run_dir / COMPLETE, summary)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETE).is_file()
