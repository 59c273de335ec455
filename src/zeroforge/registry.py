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
    "seq2seq": "zeroforge.models.seq2seq:Seq2SeqTransformer",
    "gru-seq2seq": "zeroforge.models.rnn_seq2seq:GRUSeq2Seq",
}


# What each family is, for ``zeroforge models``: (group, one line).
FAMILY_NOTES: dict[str, tuple[str, str]] = {
    "gpt": ("language models", "GPT-2 decoder: learned positions, LayerNorm, GELU MLP"),
    "llama": ("language models", "Llama decoder: RoPE, RMSNorm, SwiGLU, grouped-query attention"),
    "rnn-lm": ("language models", "RNN / LSTM / GRU character language model"),
    "bert": ("encoders", "BERT with masked-LM and next-sentence heads (MiniLM is one)"),
    "bert-classifier": ("encoders", "BERT with a Linear on the pooled [CLS] state"),
    "convnet": ("vision", "LeNet-style conv -> pool stages, then a dense head"),
    "vgg": ("vision", "VGG: stacks of 3x3 convolutions"),
    "resnet": ("vision", "ResNet: residual blocks with batch norm"),
    "efficientnet-lite": ("vision", "EfficientNet-Lite: inverted residual blocks, ReLU6"),
    "linear-regression": ("classic", "y = Wx + b on the mean squared error"),
    "logistic-regression": ("classic", "logistic / softmax regression"),
    "mlp": ("classic", "multilayer perceptron"),
    "classifier": ("fine-tuning wrappers", "a pretrained body + pooling + Linear head"),
    "finetuned-lm": ("fine-tuning wrappers", "a GPT/Llama for continued LM training and SFT (LoRA)"),
    "seq2seq": ("translation", "encoder-decoder Transformer: cross-attention, tied embeddings, beam search"),
    "gru-seq2seq": ("translation", "GRU encoder-decoder with Bahdanau (additive) attention"),
}

# Real weights shipped as registry packages, loaded by name with ``zeroforge.load`` (weights/):
# weights name -> the preset whose architecture they fill.
SHIPPED_WEIGHTS: dict[str, str] = {
    "all-minilm-l6-v2": "MiniLM-L6-H384",
    "smollm2-135m-instruct": "smollm2-135m",
    "efficientnet-lite0": "efficientnet-lite0",
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
    if name in SHIPPED_WEIGHTS:
        raise ConfigError(
            f"model.name: {name!r} names shipped weights; load them with zeroforge.load({name!r}) "
            f"(a recipe: model.pretrained={name}), or build its architecture with random weights "
            f"as create_model({SHIPPED_WEIGHTS[name]!r})"
        )
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


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``zeroforge models``."""

    name: str
    family: str
    group: str
    parameters: int | None
    """Counted on the meta device (no memory); None for a family without preset values."""
    context: str
    """Tokens of context (``block_size``), or the input image size, or "" where neither applies."""
    weights: str
    """The name of the shipped real weights for this architecture, or ""."""
    note: str


def _count_parameters(family: Family, config: Any) -> int | None:
    import torch

    try:
        with torch.device("meta"):  # shapes only: even gpt2-xl is counted without allocating it
            model = family.model_cls(config)
    except Exception:  # a family that needs more than its defaults (a wrapper) is listed uncounted
        return None
    return sum(p.numel() for p in model.parameters())


def describe_models() -> list[ModelInfo]:
    """Every preset (and every family without one) with its family, size, context and weights."""
    _load_families()
    weights_of = {preset: weights for weights, preset in SHIPPED_WEIGHTS.items()}
    rows = []
    with_presets = {family for family, _ in _PRESETS.values()}
    names = sorted(_PRESETS) + sorted(f for f in _FAMILIES if f not in with_presets)
    for name in names:
        fam = family_of(name)
        group, note = FAMILY_NOTES.get(fam.name, ("other", ""))
        try:
            config = model_config(name)
        except ConfigError:  # a family whose config has required fields
            config = None
        count = _count_parameters(fam, config) if config is not None else None
        context = ""
        if getattr(config, "block_size", None):
            context = f"{config.block_size} tokens"
        elif getattr(config, "image_size", None):
            context = f"{config.image_size}x{config.image_size} px"
        rows.append(ModelInfo(name, fam.name, group, count, context, weights_of.get(name, ""), note))
    return rows


def _human(count: int | None) -> str:
    if count is None:
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}{suffix}"
    return str(count)


def models_table() -> str:
    """``zeroforge models``: presets grouped by kind (language models, encoders, vision, classic) and
    family, each with its parameters, context and the name of real weights where they ship."""
    rows = describe_models()
    groups = list(dict.fromkeys(group for group, _ in FAMILY_NOTES.values()))
    groups += sorted({r.group for r in rows} - set(groups))
    width = max(len(r.name) for r in rows)
    lines = []
    for group in groups:
        families = list(dict.fromkeys(r.family for r in rows if r.group == group))
        if not families:
            continue
        lines.append(f"{group}:")
        for family in families:
            note = FAMILY_NOTES.get(family, ("", ""))[1]
            lines.append(f"  {family}: {note}" if note else f"  {family}:")
            for r in (r for r in rows if r.family == family):
                weights = f"  real weights: zeroforge.load({r.weights!r})" if r.weights else ""
                row = f"    {r.name:<{width}} {_human(r.parameters):>7} params  {r.context:<13}{weights}"
                lines.append(row.rstrip())
        lines.append("")
    lines.append(
        "create_model(NAME) builds a model with random weights; zeroforge.load(WEIGHTS) loads real ones."
    )
    return "\n".join(lines)
