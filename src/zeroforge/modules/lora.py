"""LoRA: low-rank adapters on frozen Linear layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation").

A frozen weight W (out, in) is adapted by a rank-r update: h = W x + (alpha / r) * B A dropout(x),
with A (r, in) drawn like a Linear weight (Kaiming-uniform, a = sqrt(5)) and B (out, r) zero, so a
freshly adapted model computes exactly its base function. Only A and B train: for a d x d weight
that is 2rd parameters instead of d^2.

    apply_lora(model, LoRAConfig(rank=8, alpha=16, target_modules=["q_proj", "v_proj"]))
    mark_trainable(model, extra=["score"])   # adapters (+ a new head) train, the rest is frozen
    print(parameter_summary(model))          # trainable params: 73,728 || all params: ...
    merge_lora(model)                        # W <- W + (alpha/r) B A: no extra cost at inference
    unmerge_lora(model)                      # and back
    save_adapter(model, "out/adapter")       # adapter_model.safetensors + adapter_config.json
    load_adapter(model, "out/adapter")
    plain = merged_model(model)              # LoRALinear -> nn.Linear with merged weights

The adapter files follow ``peft``'s layout (``base_model.model.<module>.lora_A.weight`` and an
``adapter_config.json`` with ``r``, ``lora_alpha``, ``target_modules``...), and the module names
follow the model's own parameter names, which for Llama and GPT-2 are Hugging Face's: an adapter
trained here loads with ``peft.PeftModel.from_pretrained`` on the transformers model, and back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_bytes, atomic_write_json
from zeroforge.schema import require

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."


@dataclass
class LoRAConfig:
    """Which Linear layers get adapters, and their rank, scale and dropout."""

    rank: int = 8
    """r: the rank of the update B A."""
    alpha: float = 16.0
    """The update is scaled by alpha / r, so changing r does not change the learning rate it needs."""
    dropout: float = 0.0
    """Dropout on the adapter's input (the base path sees the input unchanged)."""
    target_modules: list[str] | None = None
    """Names of the Linear modules to adapt, matched against the last parts of each module's name
    (``q_proj`` matches ``model.layers.3.self_attn.q_proj``); ``all-linear`` adapts every Linear but
    the output layer; default: the model class's ``lora_targets``, its query and value projections
    (as in the paper's GPT-3 experiments and peft's defaults per architecture)."""

    def __post_init__(self) -> None:
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(
            self.target_modules is None or len(self.target_modules) > 0,
            "target_modules",
            "must name at least one module (or be null for the family's default)",
        )

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update; see the module docstring.

    The parameter names are peft's (``base_layer``, ``lora_A``, ``lora_B``) without its adapter-name
    level, so ``layer.lora_A.weight`` is ``lora_A.default.weight`` in a peft model.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base_layer = base
        self.in_features, self.out_features = base.in_features, base.out_features
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, **factory)  # A (r, in)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, **factory)  # B (out, r)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.merged = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # A as nn.Linear initialises its weight, B zero: B A = 0, the model starts as its base
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (merged or not), so code reading ``layer.weight`` keeps working."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, shape (out, in): what merging adds to the base weight."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # (..., out)
        if self.merged:
            return y
        update = self.lora_B(self.lora_A(self.lora_dropout(x)))  # (..., out), through rank r
        return y + update * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A; the forward then skips the adapter path."""
        if not self.merged:
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: the base weight as it was (up to float rounding)."""
        if self.merged:
            self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha}"


# ----------------------------------------------------------------------------- applying


def _matches(name: str, targets: list[str]) -> bool:
    """peft's rule: a target names the module's whole path or its last dotted parts."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _output_layers(model: nn.Module) -> set[str]:
    """Modules ``all-linear`` leaves alone: the vocabulary projection and classification heads."""
    return {
        name for name, _ in model.named_modules() if name.split(".")[-1] in ("lm_head", "score", "classifier")
    }


def target_names(model: nn.Module, config: LoRAConfig) -> list[str]:
    """The names of the Linear modules of ``model`` that ``config`` adapts (ConfigError if none).

    Without ``target_modules`` the model class names its defaults as ``lora_targets`` (GPT, Llama, BERT).
    """
    targets = config.target_modules
    if targets is None:
        default: tuple[str, ...] | None = getattr(type(model), "lora_targets", None)
        if default is None:
            raise ConfigError(
                f"finetune.lora.target_modules: no default for model {type(model).__name__}; "
                "name the Linear modules to adapt (e.g. [q_proj, v_proj] or [all-linear])"
            )
        targets = list(default)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name]
    if targets == ["all-linear"]:
        skip = _output_layers(model)
        found = [n for n in linears if n not in skip]
    else:
        found = [n for n in linears if _matches(n, targets)]
    if not found:
        examples = sorted({n.split(".")[-1] for n in linears})[:12]
        raise ConfigError(
            f"finetune.lora.target_modules: {targets} match no Linear module of {type(model).__name__} "
            f"(its Linear modules end in: {', '.join(examples)})"
        )
    return found


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Replace every targeted ``nn.Linear`` of ``model`` by a ``LoRALinear`` around it, in place.

    Returns the adapted module names. Freezing is separate (``mark_trainable``), so a model rebuilt
    from a checkpoint gets the same structure without touching ``requires_grad``.
    """
    names = target_names(model, config)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        setattr(parent, child, LoRALinear(base, config.rank, config.alpha, config.dropout))
    return names


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def mark_trainable(model: nn.Module, extra: list[str] | None = None) -> None:
    """Freeze everything but the adapters' A and B and the modules named in ``extra`` (a new head)."""
    for name, param in model.named_parameters():
        param.requires_grad = ".lora_A." in f".{name}" or ".lora_B." in f".{name}"
    for prefix in extra or []:
        module = model.get_submodule(prefix)
        for param in module.parameters():
            param.requires_grad = True


def merge_lora(model: nn.Module) -> None:
    for _, layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for _, layer in lora_layers(model):
        layer.unmerge()


def merged_model(model: nn.Module) -> nn.Module:
    """Merge every adapter and put its base ``nn.Linear`` back in its place (peft's merge_and_unload).

    ``model`` is changed in place and returned: plain modules with the original parameter names, so
    ``save_pretrained`` writes a checkpoint that needs no LoRA code to load.
    """
    for name, layer in lora_layers(model):
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base_layer)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied weight counts once."""
    params = list(model.parameters())  # parameters() yields a shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def parameter_summary(model: nn.Module) -> str:
    """peft's ``print_trainable_parameters`` line."""
    trainable, total = count_parameters(model)
    return (
        f"trainable params: {trainable:,} || all params: {total:,} || "
        f"trainable%: {100.0 * trainable / max(total, 1):.4f}"
    )


# ----------------------------------------------------------------------------- adapter files


def adapter_state_dict(model: nn.Module, extra: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The adapters' weights (+ the modules in ``extra``) under peft's names:
    ``base_model.model.<module>.lora_A.weight`` (peft drops the adapter name when saving)."""
    out: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(model):
        out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.weight.detach().cpu().contiguous()
        out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.weight.detach().cpu().contiguous()
    for prefix in extra or []:
        for pname, param in model.get_submodule(prefix).named_parameters():
            out[f"{PEFT_PREFIX}{prefix}.{pname}"] = param.detach().cpu().contiguous()
    return out


def save_adapter(
    model: nn.Module,
    directory: str | os.PathLike[str],
    config: LoRAConfig,
    extra: list[str] | None = None,
    base_model: str | None = None,
) -> Path:
    """``adapter_model.safetensors`` + ``adapter_config.json`` (peft's files) into ``directory``.

    ``extra``: fully trained modules stored beside the adapters (peft's ``modules_to_save``).
    """
    from safetensors.torch import save

    layers = lora_layers(model)
    if not layers:
        raise ConfigError("save_adapter: the model has no LoRA layers (call apply_lora first)")
    if any(layer.merged for _, layer in layers):
        raise ConfigError("save_adapter: the adapters are merged into the base weights; unmerge_lora first")
    directory = Path(directory)
    tensors = adapter_state_dict(model, extra)
    atomic_write_bytes(directory / ADAPTER_WEIGHTS, save(tensors, metadata={"format": "pt"}))
    targets = sorted({name.split(".")[-1] for name, _ in layers})
    peft_config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets,
        "modules_to_save": list(extra) if extra else None,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    atomic_write_json(directory / ADAPTER_CONFIG, peft_config)
    return directory


def read_adapter_config(directory: str | os.PathLike[str]) -> LoRAConfig:
    """The ``LoRAConfig`` of a saved adapter (ours or peft's)."""
    from zeroforge.io import read_json_object

    path = Path(directory) / ADAPTER_CONFIG
    raw = read_json_object(path, "not an adapter folder")
    if raw.get("peft_type", "LORA") != "LORA":
        raise DataError(f"{path}: not a LoRA adapter config (peft_type {raw.get('peft_type')!r})")
    targets = raw.get("target_modules")
    try:
        return LoRAConfig(
            rank=int(raw["r"]),
            alpha=float(raw["lora_alpha"]),
            dropout=float(raw.get("lora_dropout", 0.0)),
            target_modules=[targets] if isinstance(targets, str) else targets,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: bad adapter config ({err})") from None


def load_adapter(model: nn.Module, directory: str | os.PathLike[str], apply: bool = True) -> LoRAConfig:
    """Load an adapter folder into ``model``; with ``apply`` the LoRA layers are added first when the
    model has none. Every adapter tensor must find its layer and shape (DataError naming it)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_adapter_config(directory)
    if apply and not lora_layers(model):
        apply_lora(model, config)
    path = directory / ADAPTER_WEIGHTS
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
    params = dict(model.named_parameters())
    expected = {f"{PEFT_PREFIX}{n}" for n in params if ".lora_A." in n or ".lora_B." in n}
    with torch.no_grad():
        for key, value in tensors.items():
            name = key.removeprefix(PEFT_PREFIX).replace(".default.", ".")
            if name not in params:
                raise DataError(f"{path}: tensor {key} has no parameter {name} in {type(model).__name__}")
            if tuple(params[name].shape) != tuple(value.shape):
                raise DataError(
                    f"{path}: tensor {key} has shape {tuple(value.shape)}, the model's is {tuple(params[name].shape)}"
                )
            params[name].copy_(value)
            expected.discard(f"{PEFT_PREFIX}{name}")
    if expected:
        raise DataError(f"{path}: missing adapter tensor {sorted(expected)[0]}")
    return config


__all__ = [
    "LoRAConfig",
    "LoRALinear",
    "adapter_state_dict",
    "apply_lora",
    "count_parameters",
    "load_adapter",
    "lora_layers",
    "mark_trainable",
    "merge_lora",
    "merged_model",
    "parameter_summary",
    "read_adapter_config",
    "save_adapter",
    "target_names",
    "unmerge_lora",
]
