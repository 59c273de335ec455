"""The fine-tuning tasks' data (``finetune.task``), encoded with the pretrained model's tokenizer.

- ``classification``: a labelled table (a named dataset or a CSV/TSV/JSONL file), optionally cleaned
  by the recipe's ``clean:`` step, de-duplicated and split train/val/test stratified by label;
- ``sft``: instruction rows (a JSONL file, or FLAN-style rows built from the labelled datasets,
  ``data.source: instructions``) with the loss on response tokens only;
- ``clm``: a text corpus for continued next-token training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zeroforge.data.builders import DataContext, TrainingData, register_data_builder
from zeroforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from zeroforge.config import Recipe


def _context(ctx: DataContext) -> tuple[Any, int, Path | None, int, int]:
    assert ctx.tokenizer is not None and ctx.vocab_size is not None, (
        "fine-tuning data needs the model's tokenizer"
    )
    return ctx.tokenizer, ctx.vocab_size, ctx.run_dir, ctx.rank, ctx.world_size


def labelled_splits(recipe: Recipe, run_dir: Path | None, progress: bool = False) -> dict[str, Any]:
    """The classification data split as a run splits it: (cleaned,) de-duplicated, stratified.

    With a ``clean:`` section the labelled data is written as a CSV into ``<run_dir>/data`` and cleaned
    there (``clean_step``); a later call (evaluation) reuses the cleaned file.
    """
    from zeroforge.data.tables import drop_duplicates, load_labelled, split, write_table

    d = recipe.data
    data = load_labelled(
        d.source,
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

        name = Path(str(d.source)).stem or "data"
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


@register_data_builder("classification", "task")
@register_data_builder("distill", "task")  # the same labelled data; finetuning adds the teacher's logits
def classification_data(recipe: Recipe, ctx: DataContext) -> TrainingData:
    """Labelled texts (split, encoded with the model's tokenizer) in batches of padded rows."""
    tokenizer, vocab, run_dir, rank, world = _context(ctx)
    from zeroforge.data.tables import ClassificationBatches, encode_texts, fixed_batches

    d, args = recipe.data, recipe.train
    parts = labelled_splits(recipe, run_dir, progress=ctx.progress)
    pad = pad_id_of(tokenizer)
    train = encode_texts(parts["train"], tokenizer, d.max_length, vocab)
    val = encode_texts(parts["val"], tokenizer, d.max_length, vocab)
    source = ClassificationBatches(train, args.batch_size, pad, args.seed, rank, world, d.group_by_length)
    val_batches, _ = fixed_batches(val, d.eval_batch_size, pad)
    counts = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    description = f"{d.source}: {counts} ({train.truncated} training texts cut to {d.max_length} tokens)"
    return TrainingData(
        source,
        val_batches,
        description,
        tokenizer,
        steps_per_epoch=source.steps_per_epoch,
        label_names=train.label_names,
        test=parts.get("test"),
    )


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's padding id (its pad token, else eos, else 0): padded positions are masked, so
    any id works; a real pad keeps the batches readable."""
    return next((i for i in (tokenizer.pad_id, tokenizer.eos_id) if i is not None), 0)


def sft_rows(recipe: Recipe, run_dir: Path | None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Instruction rows per split: built from the labelled datasets (``instructions``, written to
    ``<run_dir>/data/*.jsonl``) or read from a JSONL file and split at random (``data.seed``)."""
    from zeroforge.data.sft import read_jsonl, split_rows

    d = recipe.data
    if d.source == "instructions":
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
    rows = read_jsonl(d.source)
    parts = split_rows(rows, d.splits, d.seed)
    return dict(zip(("train", "val", "test"), parts))


@register_data_builder("sft", "task")
def sft_data(recipe: Recipe, ctx: DataContext) -> TrainingData:
    """Instruction rows with the loss on response tokens only, optionally packed."""
    tokenizer, vocab, run_dir, rank, world = _context(ctx)
    from zeroforge.data.sft import SFTBatches, encode_rows, eval_batches

    d, args = recipe.data, recipe.train
    rows = sft_rows(recipe, run_dir)
    pad = pad_id_of(tokenizer)
    packed = d.max_length if d.pack else None
    train, dropped = encode_rows(rows["train"], tokenizer, d.max_length, vocab)
    val, _ = encode_rows(rows["val"], tokenizer, d.max_length, vocab)
    source = SFTBatches(train, args.batch_size, pad, args.seed, packed, rank, world, d.group_by_length)
    n_targets = sum(e.n_targets for e in train)
    description = (
        f"{d.source}: {len(train)} train / {len(val)} val examples, {n_targets} response tokens"
        + (f", packed into {len(source.units)} rows of {d.max_length}" if packed else "")
        + (f" ({dropped} rows had no answer within max_length)" if dropped else "")
    )
    test = [row for _, row in rows.get("test", [])] or None
    val_batches = eval_batches(val, d.eval_batch_size, pad, packed)
    return TrainingData(
        source, val_batches, description, tokenizer, steps_per_epoch=source.steps_per_epoch, test=test
    )


@register_data_builder("clm", "task")
def clm_data(recipe: Recipe, ctx: DataContext) -> TrainingData:
    """A text corpus tokenized with the model's tokenizer; the last val(+test) fraction is validation."""
    tokenizer, vocab, run_dir, rank, world = _context(ctx)
    from zeroforge import datasets
    from zeroforge.data.text import TokenBlocks, eval_batches, token_dtype

    d, args = recipe.data, recipe.train
    text = datasets.load_text(d.source)
    tokens = tokenizer.encode_corpus(text)
    if len(tokens) and int(tokens.max()) >= vocab:
        raise DataError(
            f"{d.source}: token id {int(tokens.max())} is outside the model's vocabulary of {vocab}"
        )
    n_val = max(int(len(tokens) * (1.0 - d.splits[0])), d.max_length + 2)
    if len(tokens) - n_val <= d.max_length + 1:
        raise DataError(f"{d.source}: {len(tokens)} tokens are too few for blocks of {d.max_length}")
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
    description = f"{d.source}: {len(tokens) - n_val} train / {n_val} val tokens"
    return TrainingData(source, val, description, tokenizer, steps_per_epoch=steps)
