"""``zeroforge pretrain``: train a registry model from a random start on a recipe's data.

    zeroforge pretrain --config recipes/gpt-char-shakespeare.yaml train.max_minutes=2
    run_dir = zeroforge.pretrain("recipes/lenet-mnist.yaml", ["train.max_steps=200"])

(The module is ``pretraining``, not ``pretrain``: a submodule ``zeroforge.pretrain`` would overwrite
the top-level function ``zeroforge.pretrain`` once imported, as ``fitting`` explains for ``fit``.)

The recipe's ``data.objective`` names the data builder (``zeroforge.data.builders``): ``clm`` (next-token
prediction, data/text.py), ``mlm_nsp`` (BERT's masked LM + next sentence prediction, data/mlm.py) or
``images`` (supervised image classification, data/images.py). The builder decides the model fields the
data fixes (the vocabulary size, the image shape and class count); ``model.name`` with its inline
fields gives the rest. Then the one training loop runs and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from zeroforge.config import Recipe, load_recipe
from zeroforge.data.arrays import rename_input
from zeroforge.data.builders import DataContext, TrainingData, data_builder
from zeroforge.data.cache import META_FILE
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import check_output_dir, check_readable
from zeroforge.train.checkpoint import check_run_dir
from zeroforge.train.distributed import DistContext, failures, rank_zero_first, session
from zeroforge.train.loop import train
from zeroforge.train.runtime import resolve_device


def pretrain(
    config: str | os.PathLike[str] | Recipe | dict[str, Any] | None = None, overrides: list[str] | None = None
) -> Path:
    """Train the recipe's model from a random start (path, mapping, Recipe, or None for the default small
    GPT on Shakespeare); returns the run directory.

    Under torchrun with ``distributed.strategy`` ddp or fsdp every rank runs this; rank 0 prepares the
    data first (a shared cache is written once) and alone writes the run directory.
    """
    recipe = load_recipe(config, overrides)
    if recipe.finetune is not None:
        raise ConfigError("finetune: this recipe fine-tunes; run it with zeroforge finetune (or train)")
    check_paths(recipe)
    with session(recipe.distributed, resolve_device(recipe.train.device)) as ctx, failures(ctx):
        _pretrain(recipe, ctx)
    return recipe.train.run_dir


def check_paths(recipe: Recipe) -> None:
    """Before any data work: a ``data.source`` on disk can be read, the run directory and
    ``data.prepared_dir`` (when set) can be written, and the run directory holds no earlier run
    unless resuming."""
    if Path(recipe.data.source).exists():
        check_readable(recipe.data.source, "data.source")
    check_run_dir(recipe.train)
    if recipe.data.prepared_dir is not None:
        check_prepared_dir(recipe.data.prepared_dir, "data.prepared_dir")


def check_prepared_dir(path: str | os.PathLike[str], what: str) -> None:
    """A folder ``prepare`` may write: new, empty, or prepared data (meta.json) it may rebuild; never
    a folder of other files."""
    folder = check_output_dir(path, what)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / META_FILE).is_file():
        raise DataError(
            f"{what}: {folder} holds other files and is not a prepared data folder (no {META_FILE})"
        )


def clean_source(recipe: Recipe, ctx: DistContext) -> Path:
    """Run the recipe's ``clean:`` step on ``data.source`` (rank 0 only) -> the cleaned file's path.

    The cleaned file and ``clean_report.json``/``.txt`` are written into the run directory.
    """
    from zeroforge.data.clean import clean_step, cleaned_path

    with rank_zero_first(ctx):
        if ctx.is_main:
            clean_step(recipe.clean, recipe.data.source, recipe.train.run_dir)
    return cleaned_path(recipe.data.source, recipe.train.run_dir)


def build_data(recipe: Recipe, ctx: DistContext) -> TrainingData:
    """The recipe's data (after its ``clean:`` step), prepared by rank 0 first."""
    if recipe.clean is not None:
        recipe.data.source = str(clean_source(recipe, ctx))
    with rank_zero_first(ctx):
        return data_builder(recipe)(recipe, DataContext(recipe.train.run_dir, ctx.rank, ctx.world_size))


def set_model_fields(recipe: Recipe, fields: dict[str, Any]) -> None:
    """Put the fields the data decides into ``model`` where the recipe left them out (run.yaml then
    records them); a vocabulary smaller than the tokenizer's is an error."""
    known = {f.name for f in dataclasses.fields(recipe.model_config())}
    given = recipe.model.config
    for key, value in fields.items():
        if key not in known:
            continue
        if key not in given:
            given[key] = value
        elif key == "vocab_size" and given[key] < value:
            raise ConfigError(f"model.vocab_size: {given[key]} is smaller than the tokenizer's {value}")


def _pretrain(recipe: Recipe, ctx: DistContext) -> None:
    from zeroforge.registry import family_of

    args, name = recipe.train, recipe.model.name
    assert name is not None
    data = build_data(recipe, ctx)
    set_model_fields(recipe, data.model_fields)
    model_cfg = recipe.model_config()
    model_block = getattr(model_cfg, "block_size", None)
    if args.block_size is not None and model_block is not None and args.block_size > model_block:
        raise ConfigError(
            f"train.block_size: {args.block_size} is larger than the model's block_size {model_block}"
        )

    torch.manual_seed(args.seed)  # the same seed gives the same initial weights
    model = family_of(name).model_cls(model_cfg)
    if recipe.data.objective == "images":  # the batches carry pixel_values; an MLP reads features
        rename_input([data.train.inputs, *data.val], model)
    if ctx.rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model {name}: {n_params / 1e6:.2f}M parameters; data {data.description}")
        if ctx.world_size > 1:
            global_batch = args.batch_size * args.grad_accum * ctx.world_size
            print(
                f"{recipe.distributed.strategy} on {ctx.world_size} ranks: global batch = {args.batch_size} x "
                f"{args.grad_accum} (accumulation) x {ctx.world_size} (ranks) = {global_batch}"
            )
    result = train(
        model,
        data.train,
        args,
        val_batches=data.val,
        run_dir=args.run_dir,
        tokenizer=data.tokenizer,
        recipe=recipe.to_dict(),
        distributed=recipe.distributed,
    )
    if ctx.rank == 0 and result.val_loss is not None:
        scores = {"loss": result.val_loss, **result.val_metrics}
        print("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))


def prepare_recipe_data(config: str | os.PathLike[str], overrides: list[str] | None = None) -> str:
    """The data steps of a pretraining recipe alone (``zeroforge prepare --config``): its ``clean:`` step,
    then tokenising into ``data.prepared_dir``; returns the data's one-line description."""
    recipe = load_recipe(config, overrides)
    if recipe.finetune is not None:
        raise ConfigError("prepare --config: a fine-tuning recipe's data is prepared by the run itself")
    recipe.train.eval_batches = 1
    return build_data(recipe, DistContext()).description
