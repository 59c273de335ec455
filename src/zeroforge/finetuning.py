"""``zeroforge finetune``: adapt a pretrained model to labelled data or instructions, on the one trainer.

    zeroforge finetune --config recipes/finetune-sms-spam.yaml train.max_steps=300
    run_dir = zeroforge.finetune("recipes/finetune-sms-spam.yaml", ["finetune.method=lora"])

(The module is ``finetuning``, not ``finetune``: a submodule ``zeroforge.finetune`` would overwrite the
top-level function ``zeroforge.finetune`` once imported, as ``fitting`` explains for ``fit``.)

The seeds' recipe, step by step: choose a pretrained model (``model.pretrained``: named weights, an HF
folder, a GGUF file or a run directory), prepare the data (``data``: a named labelled dataset or a
CSV/TSV/JSONL file, optionally cleaned by a ``clean:`` section, de-duplicated, split train/val/test
with stratification), change the output layer (``finetune.task``), set the hyperparameters
(``train``), train while monitoring (validation every ``train.eval_every`` steps, early stopping on
``train.monitor``, e.g. val_f1, with the best checkpoint kept by ``train.keep_best``),
evaluate (accuracy, precision, recall, F1, ROC-AUC, a confusion matrix -> ``metrics.json``).

Tasks (``finetune.task``):

- ``classification``: a new Linear head on the pooled body (``models/classifier.py``);
- ``clm``: continued next-token training on a text corpus;
- ``sft``: instruction tuning on JSONL rows (or FLAN-style rows built from the labelled datasets,
  ``data.dataset: instructions``) with the loss on response tokens only (``data/sft.py``).

Methods (``finetune.method``): ``full`` (every weight), ``head`` (only the new head), ``freeze`` (the top
``freeze_top_n`` blocks, the final norm and the head), ``lora`` (low-rank adapters, ``modules/lora.py``).

The run directory is the trainer's (checkpoints, metrics.csv, loss.png, run.yaml) with the final model
published plainly: LoRA adapters merged (a language model in the Hugging Face layout that transformers
loads; the adapter alone in ``adapter/``), plus ``metrics.json`` (and ``confusion_matrix.png``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from zeroforge.config import DistributedArgs, TrainArgs, from_dict, parse_overrides, read_yaml, require
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_json
from zeroforge.modules.lora import LoRAConfig

Task = Literal["classification", "clm", "sft"]
Method = Literal["full", "head", "freeze", "lora"]

# ----------------------------------------------------------------------------- the recipe


@dataclass
class ModelArgs:
    """Which model to start from: pretrained weights (the usual case) or a fresh registry preset."""

    pretrained: str | None = None
    """Named weights (``all-minilm-l6-v2``, ``smollm2-135m-instruct``), an HF folder, a GGUF file or a
    run directory; its own tokenizer comes with it."""
    name: str | None = None
    """A registry preset trained from a random start (baselines, tests); needs ``tokenizer``."""
    tokenizer: str | None = None
    """With ``name``: a tokenizer folder, or ``gpt2``."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    config: dict[str, Any] = field(default_factory=dict)
    """Model config fields to override (``dropout: 0.1``)."""

    def __post_init__(self) -> None:
        require(
            (self.pretrained is None) != (self.name is None),
            "pretrained",
            "set exactly one of model.pretrained (weights) and model.name (a fresh preset)",
        )
        require(
            self.name is None or self.tokenizer is not None, "tokenizer", "model.name needs model.tokenizer"
        )


@dataclass
class InstructionArgs:
    """FLAN-style instruction rows from the labelled datasets (``data.dataset: instructions``)."""

    tasks: list[str] = field(default_factory=lambda: ["sms-spam", "rotten-tomatoes", "bbc-news"])
    """Tasks of ``zeroforge.data.instructions.TASKS``."""
    train: int = 600
    """Training rows per task (train phrasings, train-split examples)."""
    val: int = 40
    """Validation rows per task (held-out phrasings, val-split examples)."""
    test: int = 200
    """Test rows per task (held-out phrasings, test-split examples): the before/after accuracy."""

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(len(self.tasks) > 0, "tasks", "name at least one task")


@dataclass
class FinetuneDataArgs:
    """The examples: what to read, how to split and cut them."""

    dataset: str = "sms-spam"
    """classification: a named labelled dataset (``zeroforge.data.tables.NAMED``) or a CSV/TSV/JSONL file;
    sft: a JSONL file or ``instructions``; clm: a text dataset name, file or folder."""
    format: Literal["auto", "csv", "tsv", "jsonl"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    header: bool = True
    """CSV/TSV: the first row names the columns (else columns are ``0``, ``1``, ...)."""
    labels: list[str] | None = None
    """The label set and its order (ids); a row with another label is an error. Default: the sorted labels seen."""
    splits: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """train / val / test fractions (stratified by label for classification; clm: the last val+test of the text)."""
    seed: int = 0
    """Seed of the split (fixed apart from ``train.seed`` so runs with other training seeds share a test set)."""
    max_length: int = 128
    """Tokens per example (longer ones are cut; for ``pack`` the length of a packed row)."""
    max_examples: int | None = None
    """Use at most this many training examples (a stratified sample), for quick runs."""
    drop_duplicates: bool = True
    """Drop repeated texts (normalised) before splitting, so no text is in both train and test."""
    eval_batch_size: int = 64
    pack: bool = False
    """sft: pack several examples per row (block-diagonal attention, no cross-example attention)."""
    group_by_length: bool = False
    """Training batches of similar-length examples (less padding; each epoch still sees every example once)."""
    instructions: InstructionArgs = field(default_factory=InstructionArgs)

    def __post_init__(self) -> None:
        require(self.max_length >= 3, "max_length", f"must be >= 3, got {self.max_length}")
        require(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        require(
            self.max_examples is None or self.max_examples >= 2,
            "max_examples",
            f"must be >= 2, got {self.max_examples}",
        )
        require(
            2 <= len(self.splits) <= 3
            and all(f >= 0 for f in self.splits)
            and math.isclose(sum(self.splits), 1.0),
            "splits",
            f"expected 2 or 3 fractions (train, val[, test]) that sum to 1, got {self.splits}",
        )
        require(self.splits[1] > 0, "splits", f"the validation fraction must be > 0, got {self.splits}")


@dataclass
class FinetuneArgs:
    """What changes in the model, and how it is judged."""

    task: Task = "classification"
    method: Method = "full"
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    freeze_top_n: int = 2
    """method ``freeze``: the top N transformer blocks train (with the final norm and the head)."""
    pooling: Literal["auto", "last", "mean", "cls"] = "auto"
    """classification: ``last`` token (decoders), ``cls`` (BERT's pooler) or ``mean``; auto = last / cls."""
    head_dropout: float = 0.1
    epochs: float | None = None
    """Train for this many passes over the training data (sets train.max_steps)."""
    eval_before: bool = False
    """sft with instructions: also score the model before training (the before/after comparison)."""
    eval_batch_size: int = 16
    """Prompts per batch when scoring instruction accuracy by generation."""
    eval_max_new_tokens: int = 24
    """Tokens a reply may take when scoring instructions (a chatty model names its answer late)."""

    def __post_init__(self) -> None:
        require(self.freeze_top_n >= 1, "freeze_top_n", f"must be >= 1, got {self.freeze_top_n}")
        require(0.0 <= self.head_dropout < 1.0, "head_dropout", f"must be in [0, 1), got {self.head_dropout}")
        require(self.epochs is None or self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        require(
            self.method != "head" or self.task == "classification", "method", "head needs task classification"
        )


@dataclass
class FinetuneRecipe:
    """A fine-tuning run: sections ``model``, ``data``, ``train``, ``finetune``, ``clean``, ``distributed``."""

    model: ModelArgs = field(default_factory=lambda: ModelArgs(pretrained="all-minilm-l6-v2"))
    data: FinetuneDataArgs = field(default_factory=FinetuneDataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    clean: dict[str, Any] | None = None
    """``zeroforge clean`` options run on the labelled data before splitting (docs/cleaning.md)."""
    distributed: DistributedArgs = field(default_factory=DistributedArgs)

    def __post_init__(self) -> None:
        task = self.finetune.task
        if self.data.pack and task == "classification":
            raise ConfigError("data.pack: packing is for sft and clm, not classification")
        if self.clean is not None:
            if task != "classification":
                raise ConfigError("clean: the clean step runs on labelled tables (task classification)")
            from zeroforge.data.clean import load_clean_config

            load_clean_config(self.clean)  # unknown keys and bad values fail now, not mid-run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = ("model", "data", "train", "finetune", "clean", "distributed")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> FinetuneRecipe:
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r} (expected: {', '.join(SECTIONS)})")
    return from_dict(
        FinetuneRecipe, {k: v for k, v in data.items() if v is not None or k == "clean"}, "recipe"
    )


def load_finetune_recipe(
    config: str | os.PathLike[str] | dict[str, Any] | None = None, overrides: list[str] | None = None
) -> FinetuneRecipe:
    """A recipe from a YAML file (or a dict, or None for the defaults) with dotted overrides applied."""
    source = ""
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, dict):
        data = copy.deepcopy(config)
    else:
        source = f"{config}: "
        data = read_yaml(config)
    data = _merge(data, parse_overrides(overrides or []))
    try:
        recipe = recipe_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{source}{str(err).removeprefix('recipe.')}") from None
    return recipe


# ----------------------------------------------------------------------------- the model


def load_base(args: ModelArgs) -> tuple[nn.Module, Any]:
    """(model, tokenizer) to start from."""
    from zeroforge.weights import load_pretrained

    if args.pretrained is not None:
        model, tokenizer = load_pretrained(args.pretrained, dtype=args.dtype, **args.config)
        return model.train(), tokenizer
    from zeroforge.registry import create_model
    from zeroforge.tokenizers import build_tokenizer, load_tokenizer

    tokenizer = build_tokenizer("gpt2") if args.tokenizer == "gpt2" else load_tokenizer(str(args.tokenizer))
    assert args.name is not None
    config = {"vocab_size": tokenizer.vocab_size, **args.config}
    model = create_model(args.name, **config)
    return model.to(dtype=getattr(torch, args.dtype)), tokenizer


def vocab_rows(model: nn.Module) -> int:
    return int(model.config.vocab_size)


def check_vocab(model: nn.Module, tokenizer: Any, where: str) -> None:
    """The tokenizer's ids must index the model's embedding."""
    if tokenizer.vocab_size > vocab_rows(model):
        raise ConfigError(
            f"{where}: the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding has "
            f"{vocab_rows(model)} rows (model.tokenizer does not belong to this model)"
        )


def _set_trainable(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad = flag


def apply_method(model: nn.Module, args: FinetuneArgs) -> None:
    """Freeze what ``args.method`` keeps fixed; add LoRA adapters for ``lora``.

    ``model`` is a ``SequenceClassifier`` (head ``score``) or a ``FinetunedLM`` (no new head).
    """
    from zeroforge.models.classifier import SequenceClassifier
    from zeroforge.modules.lora import apply_lora, mark_trainable

    classifier = isinstance(model, SequenceClassifier)
    body = model.backbone if classifier else model.model
    head = ["score"] if classifier else []
    if args.method == "full":
        _set_trainable(model, True)
    elif args.method == "head":
        _set_trainable(model, False)
        _set_trainable(model.score, True)
    elif args.method == "freeze":
        blocks = model.blocks
        if args.freeze_top_n > len(blocks):
            raise ConfigError(
                f"finetune.freeze_top_n: {args.freeze_top_n} exceeds the model's {len(blocks)} blocks"
            )
        _set_trainable(model, False)
        for block in list(blocks)[-args.freeze_top_n :]:
            _set_trainable(block, True)
        if not classifier:  # a decoder's final norm feeds the (frozen, tied) output layer
            _set_trainable(model.final_norm, True)
        elif model.kind == "decoder":
            norm = body.transformer.ln_f if hasattr(body, "transformer") else body.model.norm
            _set_trainable(norm, True)
        for name in head:
            _set_trainable(model.get_submodule(name), True)
    else:  # lora
        from zeroforge.registry import family_of

        family = family_of(model.config.backbone if classifier else model.config.base).name
        apply_lora(body, args.lora, family)
        model.config.lora = dataclasses.asdict(args.lora)  # checkpoints rebuild the adapters
        mark_trainable(model, extra=head)


def build_model(recipe: FinetuneRecipe, base: nn.Module, label_names: list[str] | None) -> nn.Module:
    """The model the trainer runs: a classifier on ``base`` or ``base`` wrapped as a ``FinetunedLM``."""
    from zeroforge.models.causal_lm import FinetunedLM
    from zeroforge.models.classifier import SequenceClassifier

    ft = recipe.finetune
    if ft.task == "classification":
        assert label_names is not None
        pooling = None if ft.pooling == "auto" else ft.pooling
        model: nn.Module = SequenceClassifier.from_body(
            base, len(label_names), pooling, ft.head_dropout, label_names
        )
    else:
        if ft.pooling != "auto":
            raise ConfigError(f"finetune.pooling: only for task classification (task is {ft.task})")
        model = FinetunedLM.wrap(base)
    model.to(dtype=next(base.parameters()).dtype)
    apply_method(model, ft)
    return model


# ----------------------------------------------------------------------------- the data


@dataclass
class PreparedData:
    """What the trainer and the final evaluation need from a task's data."""

    train: Any
    """The BatchSource."""
    val: list[dict[str, torch.Tensor]]
    steps_per_epoch: int
    description: str
    label_names: list[str] | None = None
    test: Any = None
    """classification: the test split (LabelledData); sft with instructions: the test rows."""


def labelled_splits(recipe: FinetuneRecipe, run_dir: Path | None, progress: bool = False) -> dict[str, Any]:
    """The classification data split as a run splits it: (cleaned,) de-duplicated, stratified.

    With a ``clean:`` section the labelled data is written as a CSV into ``<run_dir>/data`` and cleaned
    there (``clean_step``); a later call (evaluation) reuses the cleaned file.
    """
    from zeroforge.data.tables import drop_duplicates, load_labelled, split, write_table

    d = recipe.data
    data = load_labelled(
        d.dataset,
        text_column=d.text_column,
        label_column=d.label_column,
        fmt=d.format,
        encoding=d.encoding,
        labels=d.labels,
        header=d.header,
    )
    if recipe.clean is not None:
        if run_dir is None:
            raise ConfigError("clean: needs a run directory to write the cleaned data to")
        from zeroforge.data.clean import clean_step

        name = Path(str(d.dataset)).stem or "data"
        cleaned = run_dir / "data" / f"{name}.clean.csv"
        if not cleaned.is_file():
            raw = write_table(data, run_dir / "data" / f"{name}.csv")
            clean_config = {"text_column": "text", **recipe.clean}
            cleaned = clean_step(clean_config, raw, run_dir, progress=progress)
        data = load_labelled(cleaned, labels=data.label_names)
    if d.drop_duplicates:
        data, _ = drop_duplicates(data)
    parts = split(data, d.splits, d.seed)
    if d.max_examples is not None and len(parts["train"]) > d.max_examples:
        from zeroforge.data.tables import stratified_split

        frac = d.max_examples / len(parts["train"])
        keep, _ = stratified_split(parts["train"].labels, [frac, 1 - frac], d.seed)
        parts["train"] = parts["train"].subset(keep)
    return parts


def _classification_data(
    recipe: FinetuneRecipe, tokenizer: Any, vocab: int, run_dir: Path | None, rank: int, world: int
) -> PreparedData:
    from zeroforge.data.tables import ClassificationBatches, encode_texts, fixed_batches

    d, args = recipe.data, recipe.train
    parts = labelled_splits(recipe, run_dir, progress=args.progress and rank == 0)
    pad = _pad_id(tokenizer)
    train = encode_texts(parts["train"], tokenizer, d.max_length, vocab)
    val = encode_texts(parts["val"], tokenizer, d.max_length, vocab)
    source = ClassificationBatches(train, args.batch_size, pad, args.seed, rank, world, d.group_by_length)
    val_batches, _ = fixed_batches(val, d.eval_batch_size, pad)
    counts = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    description = f"{d.dataset}: {counts} ({train.truncated} training texts cut to {d.max_length} tokens)"
    return PreparedData(
        source, val_batches, source.steps_per_epoch, description, train.label_names, parts.get("test")
    )


def _pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id (its pad token, else eos, else 0): padded positions are masked, so
    any id works; a real pad keeps the batches readable."""
    value = getattr(tokenizer, "pad_id", None)
    if isinstance(value, int):
        return value
    token = tokenizer.token("pad") if hasattr(tokenizer, "token") else None
    if token is not None:
        return int(tokenizer.tokenizer.token_to_id(token))
    return tokenizer.eos_id if getattr(tokenizer, "eos_id", None) is not None else 0


def sft_rows(recipe: FinetuneRecipe, run_dir: Path | None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Instruction rows per split: built from the labelled datasets (``instructions``, written to
    ``<run_dir>/data/*.jsonl``) or read from a JSONL file and split at random (``data.seed``)."""
    from zeroforge.data.sft import read_jsonl, split_rows

    d = recipe.data
    if d.dataset == "instructions":
        from zeroforge.data.instructions import build_instructions, write_jsonl

        ins = d.instructions
        counts = {"train": ins.train, "val": ins.val, "test": ins.test}
        splits = list(d.splits) if len(d.splits) == 3 else [*d.splits, 0.0]
        built = build_instructions(ins.tasks, counts, splits, d.seed)
        out = {}
        for name, rows in built.items():
            if run_dir is not None:
                write_jsonl(rows, run_dir / "data" / f"{name}.jsonl")
            out[name] = [(f"{name}.jsonl:{i + 1}", row) for i, row in enumerate(rows)]
        return out
    rows = read_jsonl(d.dataset)
    parts = split_rows(rows, d.splits, d.seed)
    return dict(zip(("train", "val", "test"), parts))


def _sft_data(
    recipe: FinetuneRecipe, tokenizer: Any, vocab: int, run_dir: Path | None, rank: int, world: int
) -> PreparedData:
    from zeroforge.data.sft import SFTBatches, encode_rows, eval_batches

    d, args = recipe.data, recipe.train
    rows = sft_rows(recipe, run_dir)
    pad = _pad_id(tokenizer)
    packed = d.max_length if d.pack else None
    train, dropped = encode_rows(rows["train"], tokenizer, d.max_length, vocab)
    val, _ = encode_rows(rows["val"], tokenizer, d.max_length, vocab)
    source = SFTBatches(train, args.batch_size, pad, args.seed, packed, rank, world, d.group_by_length)
    n_targets = sum(e.n_targets for e in train)
    description = (
        f"{d.dataset}: {len(train)} train / {len(val)} val examples, {n_targets} response tokens"
        + (f", packed into {len(source.units)} rows of {d.max_length}" if packed else "")
        + (f" ({dropped} rows had no answer within max_length)" if dropped else "")
    )
    test = [row for _, row in rows.get("test", [])] or None
    return PreparedData(
        source,
        eval_batches(val, d.eval_batch_size, pad, packed),
        source.steps_per_epoch,
        description,
        test=test,
    )


def _clm_data(
    recipe: FinetuneRecipe, tokenizer: Any, vocab: int, run_dir: Path | None, rank: int, world: int
) -> PreparedData:
    """A text corpus tokenized with the model's tokenizer; the last val(+test) fraction is validation."""
    from zeroforge import datasets
    from zeroforge.data.text import TokenBlocks, eval_batches, token_dtype

    d, args = recipe.data, recipe.train
    text = datasets.load_text(d.dataset)
    tokens = tokenizer.encode_corpus(text)
    if len(tokens) and int(tokens.max()) >= vocab:
        raise DataError(
            f"{d.dataset}: token id {int(tokens.max())} is outside the model's vocabulary of {vocab}"
        )
    n_val = max(int(len(tokens) * (1.0 - d.splits[0])), d.max_length + 2)
    if len(tokens) - n_val <= d.max_length + 1:
        raise DataError(f"{d.dataset}: {len(tokens)} tokens are too few for blocks of {d.max_length}")
    folder = (run_dir or Path(".")) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab)
    for name, part in (("train", tokens[:-n_val]), ("val", tokens[-n_val:])):
        path = folder / f"{name}.bin"
        if rank == 0:
            np.asarray(part, dtype=dtype).tofile(path)
    source = TokenBlocks(folder / "train.bin", dtype, d.max_length, args.batch_size, args.seed, rank, world)
    n_eval = max(1, min(args.eval_batches, (n_val - 1) // (d.max_length * d.eval_batch_size) or 1))
    val = eval_batches(folder / "val.bin", dtype, d.max_length, d.eval_batch_size, n_eval)
    steps = max(1, (len(tokens) - n_val) // (d.max_length * args.batch_size))
    return PreparedData(source, val, steps, f"{d.dataset}: {len(tokens) - n_val} train / {n_val} val tokens")


DATA_BUILDERS = {"classification": _classification_data, "sft": _sft_data, "clm": _clm_data}


# ----------------------------------------------------------------------------- finetune


def finetune(
    config: str | os.PathLike[str] | FinetuneRecipe | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Fine-tune as the recipe says; returns the run directory (see the module docstring)."""
    from zeroforge.modules.lora import parameter_summary
    from zeroforge.train.loop import rank_and_world, train

    recipe = config if isinstance(config, FinetuneRecipe) else load_finetune_recipe(config, overrides)
    args, ft = recipe.train, recipe.finetune
    rank, world = rank_and_world()
    run_dir = args.run_dir
    from zeroforge.train.checkpoint import is_complete, latest_checkpoint

    if not args.resume and (is_complete(run_dir) or latest_checkpoint(run_dir) is not None):
        raise ConfigError(
            f"{run_dir}: already holds a run; set train.resume=true to continue it, or choose another train.name"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the new head's initial weights and the adapters' A

    base, tokenizer = load_base(recipe.model)
    check_vocab(base, tokenizer, "model")
    vocab = vocab_rows(base)
    data = DATA_BUILDERS[ft.task](recipe, tokenizer, vocab, run_dir, rank, world)
    model = build_model(recipe, base, data.label_names)
    if ft.epochs is not None:
        args.max_steps = max(1, math.ceil(ft.epochs * data.steps_per_epoch / args.grad_accum))
    if rank == 0:
        print(f"finetune {ft.task} ({ft.method}) from {recipe.model.pretrained or recipe.model.name}")
        print(f"data {data.description}")
        print(parameter_summary(model))

    metrics: dict[str, Any] = {}
    if ft.task == "sft" and ft.eval_before and data.test is not None and rank == 0:
        metrics["before"] = _instruction_scores(
            model, tokenizer, data.test, ft.eval_batch_size, ft.eval_max_new_tokens
        )
        print(f"instruction accuracy before: {metrics['before']['accuracy']:.4f}")

    result = train(
        model,
        data.train,
        args,
        val_batches=data.val,
        run_dir=run_dir,
        tokenizer=tokenizer,
        recipe=recipe.to_dict(),
        distributed=recipe.distributed,
    )
    if rank != 0:
        return run_dir
    final = publish(run_dir, model, tokenizer, recipe)
    metrics.update(_final_metrics(recipe, final, tokenizer, data, run_dir, result))
    atomic_write_json(run_dir / "metrics.json", metrics)
    return run_dir


def publish(run_dir: Path, model: nn.Module, tokenizer: Any, recipe: FinetuneRecipe) -> nn.Module:
    """Replace the trainer's final model by the plain one: adapters saved alone (``adapter/``) and
    merged; a language model is written in the Hugging Face layout. Returns the published model."""
    from zeroforge.models.causal_lm import FinetunedLM
    from zeroforge.modules.lora import lora_layers, merged_model, save_adapter
    from zeroforge.train.checkpoint import COMPLETE, save_model_files

    model = model.cpu().eval()
    if lora_layers(model):
        extra = ["score"] if not isinstance(model, FinetunedLM) else None
        save_adapter(model, run_dir / "adapter", recipe.finetune.lora, extra, recipe.model.pretrained)
    summary = (run_dir / COMPLETE).read_text(encoding="utf-8") if (run_dir / COMPLETE).is_file() else None
    if isinstance(model, FinetunedLM):
        final = model.merged()
        from zeroforge.weights import save_pretrained

        save_pretrained(final, tokenizer, run_dir)
    else:
        if lora_layers(model):
            merged_model(model.backbone)
            model.config.lora = None
        final = model
        _replace_model_files(run_dir, lambda folder: save_model_files(folder, final, None, hf=False))
    if summary is not None:  # the trainer marked the run complete; it still is, with the plain model
        from zeroforge.io import atomic_write_text

        atomic_write_text(run_dir / COMPLETE, summary)
    return final


def _replace_model_files(run_dir: Path, write: Any) -> None:
    """config.json + model.safetensors written into a temp folder, then renamed over the run's."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".publish-"))
    try:
        write(tmp)
        for name in ("model.safetensors", "config.json"):  # config last: it says what the weights are
            os.replace(tmp / name, run_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _instruction_scores(
    model: nn.Module, tokenizer: Any, rows: list[dict[str, Any]], batch_size: int, max_new_tokens: int
) -> dict[str, Any]:
    import contextlib

    from zeroforge.data.instructions import instruction_accuracy
    from zeroforge.models.causal_lm import FinetunedLM

    with model.plain_model() if isinstance(model, FinetunedLM) else contextlib.nullcontext(model) as lm:
        was_training = lm.training
        try:
            return instruction_accuracy(lm.eval(), tokenizer, rows, batch_size, max_new_tokens)
        finally:
            lm.train(was_training)


def _final_metrics(
    recipe: FinetuneRecipe, model: nn.Module, tokenizer: Any, data: PreparedData, run_dir: Path, result: Any
) -> dict[str, Any]:
    ft = recipe.finetune
    out: dict[str, Any] = {
        "task": ft.task,
        "method": ft.method,
        "model": recipe.model.pretrained or recipe.model.name,
        "dataset": recipe.data.dataset,
        "train_steps": result.step,
        "train_seconds": round(result.elapsed_s, 1),
        "stopped_by": result.stopped_by,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "monitor": recipe.train.monitor,
        "best_step": result.best_step,
        "best_score": result.best_score,
        "kept_best": recipe.train.keep_best,
    }
    if ft.task == "classification" and data.test is not None and len(data.test):
        from zeroforge.eval.evaluate import evaluate_classifier

        out.update(
            evaluate_classifier(
                model,
                tokenizer,
                data.test,
                recipe.data.max_length,
                recipe.data.eval_batch_size,
                run_dir,
                "test",
            )
        )
    elif ft.task == "sft" and data.test is not None and recipe.data.dataset == "instructions":
        scores = _instruction_scores(model, tokenizer, data.test, ft.eval_batch_size, ft.eval_max_new_tokens)
        _write_replies(run_dir / "test_replies.jsonl", data.test, scores.pop("replies"))
        out["after"] = scores
        print(f"instruction accuracy after: {scores['accuracy']:.4f}")
    elif ft.task == "clm" and result.val_loss is not None:
        out["val_perplexity"] = math.exp(min(result.val_loss, 700.0))
    return out


def _write_replies(path: Path, rows: list[dict[str, Any]], replies: list[str]) -> None:
    from zeroforge.data.instructions import write_jsonl

    write_jsonl([{**row, "reply": reply} for row, reply in zip(rows, replies)], path)


# ----------------------------------------------------------------------------- CLI


def _cmd_finetune(args: argparse.Namespace) -> int:
    run_dir = finetune(args.config, args.overrides)
    print(f"run directory: {run_dir}")
    return 0


def add_cli(sub: Any) -> None:
    """``zeroforge finetune --config recipe.yaml key=value ...``."""
    help = "fine-tune a pretrained model (classification, continued LM training, SFT; full/head/freeze/lora)"
    p = sub.add_parser("finetune", help=help, description=help)
    p.add_argument("--config", default=None, help="finetune recipe YAML (recipes/finetune-*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. finetune.method=lora train.lr=2e-4")
    p.set_defaults(func=_cmd_finetune)


__all__ = [
    "FinetuneArgs",
    "FinetuneDataArgs",
    "FinetuneRecipe",
    "InstructionArgs",
    "ModelArgs",
    "add_cli",
    "apply_method",
    "build_model",
    "finetune",
    "labelled_splits",
    "load_finetune_recipe",
    "publish",
    "sft_rows",
]
