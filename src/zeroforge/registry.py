"""register_model / create_model / list_models, timm-style.

A *family* is a model class plus its typed config dataclass (``gpt`` -> ``GPT``, ``GPTConfig``).
A *preset* is a named set of config values for a family (``gpt2``, ``gpt-char-small``).
``create_model(name, **overrides)`` accepts either.

The registry holds the table of zeroforge's families (``FAMILIES``: name -> ``"module:ModelClass"``)
and imports those modules itself, lazily and in one place (``_load_families``): a model file imports
nothing above ``modules/``, and every family -- the fine-tuning wrappers included -- is known in a
fresh process. Each model class names its config dataclass as ``config_class``; each model module
may hold ``PRESETS`` (preset name -> (family, config values)). ``register_model`` and
``register_preset`` add families and presets defined outside zeroforge.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from zeroforge.errors import ConfigError
from zeroforge.schema import from_dict

FAMILIES: dict[str, str] = {
    "gpt": "zeroforge.models.gpt:GPT",
    "llama": "zeroforge.models.llama:Llama",
    "bert": "zeroforge.models.bert:BertForPreTraining",
    "bert-classifier": "zeroforge.models.bert:BertForSequenceClassification",
    "linear-regression": "zeroforge.models.linear:LinearRegression",
    "logistic-regression": "zeroforge.models.linear:LogisticRegression",
    "mlp": "zeroforge.models.linear:MLP",
    "convnet": "zeroforge.models.cnn:ConvNet",
    "vgg": "zeroforge.models.cnn_vgg:VGG",
    "resnet": "zeroforge.models.cnn_resnet:ResNet",
    "efficientnet-lite": "zeroforge.models.cnn_efficientnet:EfficientNetLite",
    "rnn-lm": "zeroforge.models.rnn:RecurrentLM",
    "classifier": "zeroforge.models.classifier:SequenceClassifier",
    "finetuned-lm": "zeroforge.models.causal_lm:FinetunedLM",
}


@dataclass(frozen=True)
class Family:
    name: str
    model_cls: type[nn.Module]
    config_cls: type


_FAMILIES: dict[str, Family] = {}
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}
_loaded = False


def register_model(family: str, config_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator for a family defined outside zeroforge:
    ``@register_model("my-gpt", MyConfig) class MyGPT(nn.Module)``."""

    def wrap(model_cls: type[nn.Module]) -> type[nn.Module]:
        _FAMILIES[family] = Family(family, model_cls, config_cls)
        return model_cls

    return wrap


def register_preset(name: str, family: str, **values: Any) -> None:
    """Name a set of config values for ``family``: ``create_model(name)`` then builds it."""
    _PRESETS[name] = (family, values)


def _load_families() -> None:
    """Import every module of ``FAMILIES``, register its classes and read its ``PRESETS``."""
    global _loaded
    if _loaded:
        return
    modules: dict[str, Any] = {}
    for family, target in FAMILIES.items():
        module_name, class_name = target.split(":")
        if module_name not in modules:
            modules[module_name] = importlib.import_module(module_name)
        model_cls = getattr(modules[module_name], class_name)
        _FAMILIES.setdefault(family, Family(family, model_cls, model_cls.config_class))
    for module in modules.values():
        for name, (family, values) in getattr(module, "PRESETS", {}).items():
            _PRESETS.setdefault(name, (family, values))
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
