"""``zeroforge finetune``: adapt a pretrained model to labelled data or instructions, on the one trainer.

    zeroforge finetune --config recipes/finetune-sms-spam.yaml train.max_steps=300
    run_dir = zeroforge.finetune("recipes/finetune-sms-spam.yaml", ["finetune.method=lora"])

(The module is ``finetuning``, not ``finetune``: a submodule ``zeroforge.finetune`` would overwrite the
top-level function ``zeroforge.finetune`` once imported, as ``fitting`` explains for ``fit``.)

The recipe is the one schema of ``zeroforge.config`` with a ``finetune:`` section. A run, step by step:
choose a pretrained model (``model.pretrained``: named weights, an HF folder, a GGUF file or a run
directory), prepare the data (``data.source``: a named labelled dataset or a CSV/TSV/JSONL file,
optionally cleaned by a ``clean:`` section, de-duplicated, split train/val/test with stratification;
``zeroforge.data.tasks`` builds each task's data), change the output layer (``finetune.task``), set the
hyperparameters (``train``), train while monitoring (validation every ``train.eval_every`` steps, early
stopping on ``train.monitor``, e.g. val_f1, with the best checkpoint kept by ``train.keep_best``),
evaluate (accuracy, precision, recall, F1, ROC-AUC, a confusion matrix -> ``metrics.json``).

Tasks (``finetune.task``):

- ``classification``: a new Linear head on the pooled body (``models/classifier.py``);
- ``clm``: continued next-token training on a text corpus;
- ``sft``: instruction tuning on JSONL rows (or FLAN-style rows built from the labelled datasets,
  ``data.source: instructions``) with the loss on response tokens only (``data/sft.py``).

Methods (``finetune.method``): ``full`` (every weight), ``head`` (only the new head), ``freeze`` (the top
``freeze_top_n`` blocks, the final norm and the head), ``lora`` (low-rank adapters, ``modules/lora.py``).

The run directory is the trainer's (checkpoints, metrics.csv, loss.png, run.yaml) with the final model
published plainly: LoRA adapters merged (a language model in the Hugging Face layout that transformers
loads; the adapter alone in ``adapter/``), plus ``metrics.json`` (and ``confusion_matrix.png``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.config import FinetuneArgs, ModelArgs, Recipe, load_recipe
from zeroforge.data.builders import DataContext, TrainingData, data_builder
from zeroforge.errors import ConfigError
from zeroforge.io import atomic_write_json
from zeroforge.modules.lora import parameter_summary
from zeroforge.train.checkpoint import check_run_dir
from zeroforge.train.loop import train
from zeroforge.train.runtime import rank_and_world

# ----------------------------------------------------------------------------- the model


def load_base(args: ModelArgs) -> tuple[nn.Module, Any]:
    """(model, tokenizer) to start from."""
    from zeroforge.tokenizers import build_tokenizer, load_tokenizer, require_tokenizer
    from zeroforge.weights import load_pretrained

    if args.pretrained is not None:
        model, tokenizer = load_pretrained(args.pretrained, dtype=args.dtype, **args.config)
        return model.train(), require_tokenizer(tokenizer, args.pretrained, "finetune")
    from zeroforge.registry import create_model

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
        if model.final_norm is not None:  # a pre-LN decoder's final norm feeds the head / output layer
            _set_trainable(model.final_norm, True)
        for name in head:
            _set_trainable(model.get_submodule(name), True)
    else:  # lora
        apply_lora(body, args.lora)
        model.config.lora = dataclasses.asdict(args.lora)  # checkpoints rebuild the adapters
        mark_trainable(model, extra=head)


def build_model(recipe: Recipe, base: nn.Module, label_names: list[str] | None) -> nn.Module:
    """The model the trainer runs: a classifier on ``base`` or ``base`` wrapped as a ``FinetunedLM``."""
    from zeroforge.models.causal_lm import FinetunedLM
    from zeroforge.models.classifier import SequenceClassifier

    ft = recipe.finetune
    assert ft is not None
    if ft.task in ("classification", "distill"):
        assert label_names is not None
        pooling = None if ft.pooling == "auto" else ft.pooling
        model: nn.Module = SequenceClassifier.from_body(
            base, len(label_names), pooling, ft.head_dropout, label_names
        )
        if ft.task == "distill":
            model.distillation = (ft.temperature, ft.alpha)  # used with batches' teacher_logits
    else:
        model = FinetunedLM.wrap(base)
    model.to(dtype=next(base.parameters()).dtype)
    apply_method(model, ft)
    return model


# ----------------------------------------------------------------------------- finetune


def finetune(
    config: str | os.PathLike[str] | Recipe | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Fine-tune as the recipe says; returns the run directory (see the module docstring)."""
    recipe = load_recipe(config, overrides, finetune=True)
    args, ft = recipe.train, recipe.finetune
    assert ft is not None
    rank, world = rank_and_world()
    run_dir = check_run_dir(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the new head's initial weights and the adapters' A

    base, tokenizer = load_base(recipe.model)
    check_vocab(base, tokenizer, "model")
    context = DataContext(run_dir, rank, world, tokenizer, vocab_rows(base), args.progress and rank == 0)
    data = data_builder(recipe)(recipe, context)
    model = build_model(recipe, base, data.label_names)
    if ft.task == "distill":
        data.train = TeacherLogits(data.train, load_teacher(ft.teacher, data.label_names))
    if ft.epochs is not None and data.steps_per_epoch is not None:
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


def publish(run_dir: Path, model: nn.Module, tokenizer: Any, recipe: Recipe) -> nn.Module:
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

    from zeroforge.eval.instructions import instruction_accuracy
    from zeroforge.models.causal_lm import FinetunedLM

    with model.plain_model() if isinstance(model, FinetunedLM) else contextlib.nullcontext(model) as lm:
        was_training = lm.training
        try:
            return instruction_accuracy(lm.eval(), tokenizer, rows, batch_size, max_new_tokens)
        finally:
            lm.train(was_training)


def _final_metrics(
    recipe: Recipe, model: nn.Module, tokenizer: Any, data: TrainingData, run_dir: Path, result: Any
) -> dict[str, Any]:
    ft = recipe.finetune
    out: dict[str, Any] = {
        "task": ft.task,
        "method": ft.method,
        "model": recipe.model.pretrained or recipe.model.name,
        "dataset": recipe.data.source,
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
    if ft.task in ("classification", "distill") and data.test is not None and len(data.test):
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
    elif ft.task == "sft" and data.test is not None and recipe.data.source == "instructions":
        scores = _instruction_scores(model, tokenizer, data.test, ft.eval_batch_size, ft.eval_max_new_tokens)
        _write_replies(run_dir / "test_replies.jsonl", data.test, scores.pop("replies"))
        out["after"] = scores
        print(f"instruction accuracy after: {scores['accuracy']:.4f}")
    elif ft.task == "clm" and result.val_loss is not None:
        out["val_perplexity"] = math.exp(min(result.val_loss, 700.0))
    return out


# ----------------------------------------------------------------------------- distillation


def load_teacher(path: str | None, label_names: list[str] | None) -> nn.Module:
    """The frozen teacher of task ``distill``: a classifier over the same labels."""
    import zeroforge.models.classifier  # noqa: F401  (registers the classifier family)
    from zeroforge.models.classifier import SequenceClassifier
    from zeroforge.weights import load

    assert path is not None  # FinetuneArgs requires it for distill
    teacher, _ = load(path)
    if not isinstance(teacher, SequenceClassifier):
        raise ConfigError(f"finetune.teacher: {path} holds a {type(teacher).__name__}, not a classifier")
    if label_names is not None and teacher.config.n_labels != len(label_names):
        raise ConfigError(
            f"finetune.teacher: {path} has {teacher.config.n_labels} labels, the data has {len(label_names)}"
        )
    for p in teacher.parameters():
        p.requires_grad = False
    return teacher.eval()


class TeacherLogits:
    """A batch source whose batches also carry ``teacher_logits``: the teacher's class logits for the
    same rows, computed without gradients (the student's loss is then distillation's)."""

    def __init__(self, source: Any, teacher: nn.Module) -> None:
        self.source, self.teacher = source, teacher

    def next_batch(self) -> dict[str, torch.Tensor]:
        batch = self.source.next_batch()
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            batch["teacher_logits"] = self.teacher(**inputs).logits.float()  # (B, n_labels)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state)

    def __getattr__(self, name: str) -> Any:  # anything else the loop asks of the source
        return getattr(self.source, name)


def _write_replies(path: Path, rows: list[dict[str, Any]], replies: list[str]) -> None:
    from zeroforge.data.instructions import write_jsonl

    write_jsonl([{**row, "reply": reply} for row, reply in zip(rows, replies)], path)


__all__ = ["apply_method", "build_model", "check_vocab", "finetune", "load_base", "publish"]
