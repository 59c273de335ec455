"""``zeroforge train``: run any recipe. One with a ``finetune:`` section fine-tunes (``finetuning``),
any other trains its model from a random start (``pretraining``: language models, BERT, and classic
and vision models such as an MLP, LeNet or ResNet on MNIST).

    zeroforge train --config recipes/lenet-mnist.yaml train.max_steps=500
    run_dir = zeroforge.run_recipe("recipes/finetune-sms-spam.yaml", ["finetune.method=lora"])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zeroforge.config import Recipe, load_recipe
from zeroforge.finetuning import finetune
from zeroforge.pretraining import pretrain


def run_recipe(
    config: str | os.PathLike[str] | Recipe | dict[str, Any] | None = None, overrides: list[str] | None = None
) -> Path:
    """Train as the recipe says; returns the run directory."""
    recipe = load_recipe(config, overrides)
    return finetune(recipe) if recipe.finetune is not None else pretrain(recipe)
