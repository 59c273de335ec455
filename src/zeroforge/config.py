"""Recipes: YAML with sections ``model``, ``data``, ``train``, ``distributed`` (later ``finetune``).

Every section is a typed dataclass; unknown keys and bad values are one-line ``ConfigError``s that
name the field (``train.lr: must be > 0, got -1.0``). Dotted CLI overrides (``train.lr=3e-4``) are
parsed as YAML scalars and applied before validation.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zeroforge.errors import ConfigError

# ----------------------------------------------------------------------------- generic validation


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to ``hint`` where YAML is loose (int -> float), else raise ConfigError."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "3e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError.

    The dataclass's own ``__post_init__`` checks ranges; a ValueError it raises becomes a
    ConfigError prefixed with ``where``.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected one of: {', '.join(sorted(fields))})")
    kwargs = {name: _check_type(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(where) else f"{where}.{msg}") from None


def require(condition: bool, field_name: str, message: str) -> None:
    """For ``__post_init__``: ``require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")``."""
    if not condition:
        raise ValueError(f"{field_name}: {message}")


# ----------------------------------------------------------------------------- recipe sections


@dataclass
class DataArgs:
    """Where the training tokens come from."""

    source: str = "shakespeare"
    """A dataset name (``zeroforge.datasets``), a text file, or a folder of .txt files."""
    tokenizer: str = "char"
    """``char``, ``bpe`` (byte-level BPE trained on the corpus), ``gpt2`` (shipped GPT-2 BPE), ``wordpiece``
    (BERT's, trained on the training documents), or for ``mlm_nsp`` a vocab.txt / tokenizer.json path."""
    vocab_size: int = 4096
    """Target vocabulary size when training a BPE or WordPiece tokenizer."""
    prepared_dir: str | None = None
    """Where ``prepare`` writes the token files; default ``<cache>/prepared/<source>-<tokenizer>``."""
    val_fraction: float = 0.1
    """``clm``: the last fraction of the text is validation (contiguous, like nanoGPT).
    ``mlm_nsp``: this fraction of the documents (at least 2) is held out whole."""
    objective: Literal["clm", "mlm_nsp"] = "clm"
    """``clm`` = next-token prediction; ``mlm_nsp`` = BERT's masked LM + next sentence prediction."""
    lowercase: bool = True
    """WordPiece: lowercase and strip accents before tokenizing (an uncased model)."""
    mask_prob: float = 0.15
    """``mlm_nsp``: fraction of tokens selected for prediction (80% [MASK], 10% random, 10% kept)."""
    eval_mask_prob: float | None = None
    """``mlm_nsp``: the same for the held-out pairs; default ``mask_prob``. Training with more masking
    (Wettig et al. 2023: 15% is not optimal) while scoring at BERT's 15% keeps runs comparable."""
    whole_word_mask: bool = False
    """``mlm_nsp``: select whole words (a token with its ``##`` pieces) instead of single tokens."""
    dupe_factor: int = 5
    """``mlm_nsp``: differently cut and paired copies of the training documents (BERT's dupe_factor)."""

    def __post_init__(self) -> None:
        require(0 < self.val_fraction < 1, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        require(self.vocab_size >= 2, "vocab_size", f"must be >= 2, got {self.vocab_size}")
        require(0 < self.mask_prob < 1, "mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        require(
            self.eval_mask_prob is None or 0 < self.eval_mask_prob < 1,
            "eval_mask_prob",
            f"must be in (0, 1) or null, got {self.eval_mask_prob}",
        )
        require(self.dupe_factor >= 1, "dupe_factor", f"must be >= 1, got {self.dupe_factor}")


@dataclass
class TrainArgs:
    """The one training loop's settings (shared by every model)."""

    name: str = "run"
    """Run name; the run directory is ``out_dir`` or ``runs/<name>``."""
    out_dir: str | None = None
    max_steps: int | None = 1000
    """Optimizer steps; ``null`` to stop on ``max_minutes`` alone."""
    max_minutes: float | None = None
    """Wall-clock budget for training (evaluation excluded); the schedule then follows time."""
    batch_size: int = 12
    grad_accum: int = 1
    block_size: int | None = None
    """Training sequence length; default the model's block size."""
    optimizer: Literal["adamw", "adam", "sgd", "muon"] = "adamw"
    """``muon``: Muon for the blocks' matrices, AdamW for the rest (train/optim.py)."""
    lr: float = 1e-3
    adamw_lr_scale: float = 1.0
    """With ``optimizer: muon``: the AdamW side's learning rate (embeddings, heads, biases, norms)
    as a multiple of ``lr``; the schedule scales both alike."""
    min_lr: float | None = None
    """Floor of the cosine decay; default lr / 10."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    momentum: float = 0.9
    """SGD's momentum; Muon's too (0.95 is Muon's usual value)."""
    eps: float = 1e-8
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    """Clip the global gradient norm; 0 disables."""
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    eval_every: int = 250
    eval_batches: int = 20
    early_stopping_patience: int = 0
    """Stop after this many evaluations without improvement of ``monitor``; 0 disables."""
    monitor: str = "val_loss"
    """The validation metric that early stopping and ``keep_best`` watch: ``val_loss`` or any
    ``val_<metric>`` the model reports (``val_accuracy``, ``val_f1``, ``val_mlm_accuracy``...)."""
    monitor_mode: Literal["auto", "min", "max"] = "auto"
    """Whether lower or higher ``monitor`` is better; auto: lower for a loss, higher otherwise."""
    keep_best: bool = False
    """Keep the checkpoint with the best ``monitor`` value (``checkpoints/best-step-N``) and publish it,
    not the last step, as the run's final model."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    resume: bool = False
    seed: int = 1337
    device: str = "auto"
    compile: bool = False
    threads: int = 0
    """torch threads; 0 leaves torch's default."""
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.adamw_lr_scale > 0, "adamw_lr_scale", f"must be > 0, got {self.adamw_lr_scale}")
        require(
            self.adamw_lr_scale == 1.0 or self.optimizer == "muon",
            "adamw_lr_scale",
            f"only applies with optimizer muon (got optimizer {self.optimizer}); leave it at 1.0",
        )
        require(self.min_lr is None or self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.grad_accum >= 1, "grad_accum", f"must be >= 1, got {self.grad_accum}")
        require(
            self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}"
        )
        require(
            self.max_minutes is None or self.max_minutes > 0,
            "max_minutes",
            f"must be > 0, got {self.max_minutes}",
        )
        require(
            self.max_steps is not None or self.max_minutes is not None,
            "max_steps",
            "set max_steps or max_minutes (both are null)",
        )
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(
            self.monitor == "val_loss" or self.monitor.startswith("val_"),
            "monitor",
            f"expected val_loss or a val_<metric> name, got {self.monitor!r}",
        )
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        require(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        require(self.eval_batches >= 1, "eval_batches", f"must be >= 1, got {self.eval_batches}")
        require(
            self.block_size is None or self.block_size >= 1,
            "block_size",
            f"must be >= 1, got {self.block_size}",
        )

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


DEFAULT_MODEL = "gpt-char-small"


@dataclass
class DistributedArgs:
    """How one run spreads over the processes ``torchrun`` starts (see docs/distributed.md)."""

    strategy: Literal["single", "ddp", "fsdp"] = "single"
    """``single``: one process. ``ddp``: every rank holds the whole model, gradients are averaged.
    ``fsdp``: parameters, gradients and optimizer state are sharded over the ranks (FSDP2)."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Collective backend; ``auto`` = nccl on CUDA, gloo on CPU."""
    timeout_s: float = 600.0
    """Seconds a rank waits for the others (rendezvous or a collective) before failing with a message."""
    mixed_precision: Literal["fp32", "bf16"] = "fp32"
    """``fsdp``: dtype the gathered parameters compute in; gradients are reduced and stepped in fp32."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them (less memory)."""

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "timeout_s", f"must be > 0, got {self.timeout_s}")
        require(
            self.mixed_precision == "fp32" or self.strategy == "fsdp",
            "mixed_precision",
            f"{self.mixed_precision} needs strategy fsdp (for single/ddp use train.precision=bf16)",
        )


@dataclass
class Recipe:
    """A whole run: ``model`` (a registry name plus config fields), ``data``, ``train``, ``distributed``."""

    model: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_MODEL})
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    clean: dict[str, Any] | None = None
    """Optional cleaning step run on ``data.source`` first (``zeroforge.data.clean``'s config); the
    cleaned file and its report go into the run directory."""

    def model_config(self) -> Any:
        from zeroforge.registry import model_config

        values = dict(self.model)
        name = values.pop("name", None)
        if not name:
            raise ConfigError("model.name: missing (e.g. name: gpt-char-small)")
        return model_config(name, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"model", "data", "train", "distributed", "clean"}


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.n_layer=6"]`` -> nested dict, values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections model, data, train")
    return data


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown section {unknown[0]!r} (expected: {', '.join(sorted(SECTIONS))})"
        )
    model = data.get("model") or {"name": DEFAULT_MODEL}
    if not isinstance(model, dict):
        raise ConfigError(f"{where}: model: expected a mapping")
    recipe = Recipe(
        model=dict(model),
        data=from_dict(DataArgs, data.get("data"), "data"),
        train=from_dict(TrainArgs, data.get("train"), "train"),
        distributed=from_dict(DistributedArgs, data.get("distributed"), "distributed"),
        clean=data.get("clean"),
    )
    recipe.model_config()  # validate model keys now, not mid-run
    if recipe.clean is not None:
        from zeroforge.data.clean import load_clean_config

        if not isinstance(recipe.clean, dict):
            raise ConfigError(f"{where}: clean: expected a mapping of cleaning options")
        load_clean_config(recipe.clean)  # unknown cleaning keys fail now, not after the data step
    return recipe


def load_recipe(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (or the built-in default when ``path`` is None), apply dotted overrides."""
    data = read_yaml(path) if path else {"model": {"name": DEFAULT_MODEL}}
    data = _merge(data, parse_overrides(overrides or []))
    try:
        return recipe_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def save_yaml(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    from zeroforge.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
