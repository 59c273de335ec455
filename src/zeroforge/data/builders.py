"""Data builders: one registered callable per pretraining objective and per fine-tuning task.

A builder turns a recipe into what the one training loop needs (a batch source, validation batches)
and what the entry point needs to finish the model (the tokenizer, the config fields the data decides,
label names). Each is registered next to its data::

    @register_data_builder("clm")                       # data.objective: clm (data/text.py)
    @register_data_builder("classification", "task")    # finetune.task: classification (data/tasks.py)

``data_builder(recipe)`` finds the builder of a recipe: ``finetune.task`` when it fine-tunes, else
``data.objective``. The built-in builders' modules are named in ``BUILTIN`` and imported on first
use, so a builder is found whoever imported what; ``register_data_builder`` also adds one of your own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zeroforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from zeroforge.config import Recipe

Kind = Literal["objective", "task"]


@dataclass
class DataContext:
    """Where a builder runs: the run directory and rank, and for fine-tuning the model it feeds."""

    run_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    tokenizer: Any = None
    """Fine-tuning: the pretrained model's tokenizer (pretraining builders make their own)."""
    vocab_size: int | None = None
    """Fine-tuning: the rows of the model's embedding; every token id must index it."""
    progress: bool = False


@dataclass
class TrainingData:
    """What a builder returns."""

    train: Any
    """The BatchSource: ``next_batch()``, ``state_dict()``, ``load_state_dict()``."""
    val: list[dict[str, torch.Tensor]]
    description: str
    tokenizer: Any = None
    """The tokenizer the data was encoded with (None for images)."""
    model_fields: dict[str, Any] = field(default_factory=dict)
    """Model config fields the data decides (``vocab_size``, ``in_channels``, ``num_classes``...)."""
    steps_per_epoch: int | None = None
    label_names: list[str] | None = None
    test: Any = None
    """Fine-tuning: the test split (classification) or test rows (sft with instructions)."""


DataBuilder = Callable[["Recipe", DataContext], TrainingData]
_BUILDERS: dict[tuple[Kind, str], DataBuilder] = {}

# (kind, name) -> the module whose ``@register_data_builder`` defines it
BUILTIN: dict[tuple[Kind, str], str] = {
    ("objective", "clm"): "zeroforge.data.text",
    ("objective", "mlm_nsp"): "zeroforge.data.mlm",
    ("objective", "images"): "zeroforge.data.images",
    ("objective", "translation"): "zeroforge.data.translation",
    ("task", "classification"): "zeroforge.data.tasks",
    ("task", "sft"): "zeroforge.data.tasks",
    ("task", "clm"): "zeroforge.data.tasks",
    ("task", "distill"): "zeroforge.data.tasks",
}


def register_data_builder(name: str, kind: Kind = "objective") -> Callable[[DataBuilder], DataBuilder]:
    """Decorator: ``builder(recipe, ctx) -> TrainingData`` for ``data.objective`` (or ``finetune.task``) ``name``."""

    def add(builder: DataBuilder) -> DataBuilder:
        _BUILDERS[(kind, name)] = builder
        return builder

    return add


def data_builder(recipe: Recipe) -> DataBuilder:
    """The builder for ``recipe``: by ``finetune.task`` when it fine-tunes, else by ``data.objective``."""
    kind: Kind = "task" if recipe.finetune is not None else "objective"
    name = recipe.finetune.task if recipe.finetune is not None else recipe.data.objective
    if (kind, name) not in _BUILDERS and (kind, name) in BUILTIN:
        importlib.import_module(BUILTIN[(kind, name)])
    if kind == "objective" and name in ("clm", "mlm_nsp") and recipe.model.name is not None:
        if not hasattr(recipe.model_config(), "block_size"):  # an image or tabular model on text
            raise ConfigError(
                f"data.objective: {name} trains a language model on text and {recipe.model.name} is not "
                "one; for an image model set data.objective=images (e.g. recipes/lenet-mnist.yaml)"
            )
    builder = _BUILDERS.get((kind, name))
    if builder is None:
        known = sorted({n for k, n in [*_BUILDERS, *BUILTIN] if k == kind})
        where = "finetune.task" if kind == "task" else "data.objective"
        raise ConfigError(f"{where}: no data builder registered for {name!r} (known: {', '.join(known)})")
    return builder
