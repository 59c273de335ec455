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
resume reads them); the final model is written from memory in the Hugging Face layout for families
that have one (GPT-2, BERT, Llama), so ``transformers.AutoModel*.from_pretrained(run_dir)`` loads it.
Trainer state is split into tensors (safetensors) and everything else (JSON); nothing is ever
unpickled. Reading a run back is ``zeroforge.load`` (``zeroforge.weights``).
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
from safetensors.torch import load_file, save_file
from torch import nn

from zeroforge.config import TrainArgs
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import DIR_MODE, FILE_MODE, atomic_write_json, atomic_write_text, check_output_dir
from zeroforge.weights import load
from zeroforge.weights.files import (
    BEST,
    CONFIG_FILE,
    LATEST,
    STATE_JSON,
    WEIGHTS_FILE,
    checkpoints_dir,
    has_hf_format,
    latest_checkpoint,
    load_model_files,
    pointed_checkpoint,
    save_model_files,
)
from zeroforge.weights.hf import write_hf_model

STATE_TENSORS = "trainer_state.safetensors"
COMPLETE = "COMPLETE"

# The model-file functions live in ``zeroforge.weights.files``, the loader in ``zeroforge.weights``;
# these names stay importable from here, where the trainer and its callers look for them.
__all__ = [
    "BEST",
    "COMPLETE",
    "CONFIG_FILE",
    "LATEST",
    "STATE_JSON",
    "STATE_TENSORS",
    "WEIGHTS_FILE",
    "best_checkpoint",
    "check_run_dir",
    "checkpoints_dir",
    "flatten_state",
    "is_complete",
    "keep_as_best",
    "latest_checkpoint",
    "load_model_files",
    "load_run",
    "load_trainer_state",
    "mark_complete",
    "publish_final",
    "remove_partial_writes",
    "save_checkpoint",
    "save_model_files",
    "unflatten_state",
]

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


# ----------------------------------------------------------------------------- checkpoints


def load_run(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """``zeroforge.load(path, device=device)``: ``(model, tokenizer or None)`` from a run directory
    (its final model, else its latest checkpoint), a model folder, a GGUF file or named weights."""
    return load(path, device=device)


def best_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    return pointed_checkpoint(run_dir, BEST)


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


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    try:
        tree = json.loads((checkpoint / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(checkpoint / STATE_TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise DataError(f"{checkpoint}: unreadable trainer state ({str(err).splitlines()[0]})") from None
    return unflatten_state(tree, tensors)


def publish_final(run_dir: Path, checkpoint: Path, model: nn.Module, tokenizer: Any | None) -> None:
    """Make the run directory's top the final model: ``model`` (the trainer's, in memory) written in the
    Hugging Face layout where its family has one, so ``transformers.AutoModel*.from_pretrained(run_dir)``
    loads it; the checkpoint's other files (tokenizer, run.yaml, trainer state) hard-linked from
    ``checkpoint``. Each file appears by an atomic rename; ``config.json`` comes last."""
    hf = has_hf_format(model)
    for src in sorted(checkpoint.iterdir()):
        if not src.is_file() or (hf and src.name in (CONFIG_FILE, WEIGHTS_FILE)):
            continue
        tmp = run_dir / f".{src.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, run_dir / src.name)
    if not hf:
        return  # zeroforge's own layout: the checkpoint's config.json + weights, linked above
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".model-"))
    try:
        write_hf_model(tmp, model, tokenizer)  # the tokenizer's bos/eos/pad ids go into config.json
        for name in (WEIGHTS_FILE, CONFIG_FILE):  # config last: it says what the weights are
            os.chmod(tmp / name, FILE_MODE)
            os.replace(tmp / name, run_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_run_dir(args: TrainArgs) -> Path:
    """Before any work: the run directory (``train.out_dir``, else ``runs/<train.name>``) can be a
    folder this process writes, and holds no earlier run unless ``train.resume`` (training into it
    would mix two runs). Returns it."""
    if not args.out_dir and (Path(args.name).name != args.name or args.name in ("", ".", "..")):
        raise ConfigError(
            f"train.name: {args.name!r} is a name, not a path; set train.out_dir for a folder elsewhere"
        )
    run_dir = args.run_dir
    check_output_dir(run_dir, "train.out_dir" if args.out_dir else "train.name")
    if not args.resume and (is_complete(run_dir) or latest_checkpoint(run_dir) is not None):
        raise ConfigError(
            f"{run_dir}: already holds a run; set train.resume=true to continue it, "
            "or choose another train.name / train.out_dir"
        )
    return run_dir


# What a write killed midway (kill -9, power loss) leaves: a checkpoint or best copy being assembled,
# the final model being written, a file being replaced atomically. Nothing reads them; the next start
# of the run removes them.
PARTIAL_WRITES = (
    "checkpoints/.tmp-*",
    "checkpoints/.*.tmp",
    ".model-*",
    ".publish-*",
    ".*.tmp",
    "data/.*.tmp",
)


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete the temp files and folders of writes that never finished; returns what was removed."""
    removed = []
    for pattern in PARTIAL_WRITES:
        for path in sorted(run_dir.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    # save_pretrained assembles a folder beside the one it replaces
    for path in sorted(run_dir.absolute().parent.glob(f".{run_dir.absolute().name}.tmp-*")):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def mark_complete(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(run_dir / COMPLETE, summary)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETE).is_file()
