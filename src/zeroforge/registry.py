"""register_model / create_model / list_models, timm-style.

A *family* is a model class plus its typed config dataclass (``gpt`` -> ``GPT``, ``GPTConfig``).
A *preset* is a named set of config values for a family (``gpt2``, ``gpt-char-small``).
``create_model(name, **overrides)`` accepts either.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from zeroforge.errors import ConfigError

# Modules whose import registers families; imported lazily on first registry use.
_FAMILY_MODULES = [
    "zeroforge.models.gpt",
    "zeroforge.models.bert",
    "zeroforge.models.llama",
    "zeroforge.models.linear",
    "zeroforge.models.cnn",
    "zeroforge.models.cnn_vgg",
    "zeroforge.models.cnn_resnet",
    "zeroforge.models.cnn_efficientnet",
    "zeroforge.models.rnn",
]


@dataclass(frozen=True)
class Family:
    name: str
    model_cls: type[nn.Module]
    config_cls: type


_FAMILIES: dict[str, Family] = {}
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}
_loaded = False


def register_model(family: str, config_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``@register_model("gpt", GPTConfig) class GPT(nn.Module)``."""

    def wrap(model_cls: type[nn.Module]) -> type[nn.Module]:
        _FAMILIES[family] = Family(family, model_cls, config_cls)
        return model_cls

    return wrap


def register_preset(name: str, family: str, **values: Any) -> None:
    _PRESETS[name] = (family, values)


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_models() -> list[str]:
    """Every family and preset name that ``create_model`` accepts."""
    _load_families()
    return sorted(set(_FAMILIES) | set(_PRESETS))


def family_of(name: str) -> Family:
    _load_families()
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name in _PRESETS:
        return _FAMILIES[_PRESETS[name][0]]
    raise ConfigError(f"model.name: unknown model {name!r} (known: {', '.join(list_models())})")


def family_for_model(model: nn.Module) -> Family:
    _load_families()
    for fam in _FAMILIES.values():
        if type(model) is fam.model_cls:
            return fam
    raise ConfigError(f"{type(model).__name__} is not a registered zeroforge model")


def model_config(name: str, **overrides: Any) -> Any:
    """The typed config for a family or preset, with ``overrides`` applied and validated."""
    from zeroforge.schema import from_dict

    fam = family_of(name)
    values = dict(_PRESETS[name][1]) if name in _PRESETS else {}
    values.update(overrides)
    return from_dict(fam.config_cls, values, where="model")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a freshly initialised model: ``create_model("gpt2", n_layer=4)``."""
    fam = family_of(name)
    return fam.model_cls(model_config(name, **overrides))


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
