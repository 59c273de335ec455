"""``zeroforge evaluate``: measure a trained model on data and write ``metrics.json``.

Language models: mean next-token cross-entropy over the whole validation split in non-overlapping
blocks, and perplexity = exp(loss).

Classifiers (runs of ``zeroforge finetune`` with task classification): accuracy, precision, recall
and F1 (per class, macro and weighted averages; for two classes also those of the positive class,
label id 1, and the ROC-AUC of its probability), a confusion-matrix PNG and ``metrics.json``, on the
run's own test split (rebuilt from its run.yaml) or on any labelled file or dataset (``data=``).
``compare_runs`` lines several runs' ``metrics.json`` up in one table.

Arrays held in memory (``evaluate_arrays``, Keras' ``evaluate``): any module's loss and metrics, each
sample weighted equally.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.data.arrays import as_arrays, iterate_batches, prepare_model, probe_model
from zeroforge.errors import DataError
from zeroforge.io import atomic_write_json
from zeroforge.modules.losses import LossName

# ----------------------------------------------------------------------------- arrays


@torch.no_grad()
def evaluate_arrays(
    model: nn.Module,
    x: Any,
    y: Any = None,
    *,
    loss: LossName | Callable[..., torch.Tensor] | None = None,
    batch_size: int = 1024,
    device: str | None = None,
) -> dict[str, float]:
    """Mean loss and metrics (``accuracy`` for classification) over every sample of (x, y), each sample
    weighted equally (a smaller last batch counts for its size). ``x`` may also be an (x, y) pair or a
    Dataset of (x, y) items."""
    if y is None and isinstance(x, tuple) and len(x) == 2:
        x, y = x
    xt, yt = as_arrays(x, y)
    if yt is None:
        raise DataError("y: evaluation needs labels")
    run, key = prepare_model(model, loss)
    dev = torch.device(device) if device else next(model.parameters(), torch.empty(0)).device
    probe_model(run, key, xt, yt, dev)
    was_training = model.training
    run.eval()
    sums: dict[str, list[float]] = {}
    try:
        for batch in iterate_batches({key: xt, "labels": yt}, batch_size):
            out = run(**{k: v.to(dev) for k, v in batch.items()})
            n = len(batch["labels"])
            _add(sums, "loss", float(out.loss) * n, n)
            for name, value in out.metrics.items():
                num, den = value if isinstance(value, tuple) else (float(value) * n, n)
                _add(sums, name, float(num), float(den))
    finally:
        run.train(was_training)
    return {name: num / den for name, (num, den) in sums.items()}


def _add(sums: dict[str, list[float]], name: str, num: float, den: float) -> None:
    acc = sums.setdefault(name, [0.0, 0.0])
    acc[0] += num
    acc[1] += den


# ----------------------------------------------------------------------------- run directories


def _load(model_or_run_dir: nn.Module | str | os.PathLike[str]) -> tuple[nn.Module, Path | None]:
    if isinstance(model_or_run_dir, nn.Module):
        return model_or_run_dir, None
    import zeroforge.models.causal_lm  # noqa: F401  (registers the fine-tuning families)
    import zeroforge.models.classifier  # noqa: F401
    from zeroforge.weights import load

    model, _tokenizer = load(model_or_run_dir)
    return model, Path(model_or_run_dir)


def _run_data_dir(run_dir: Path) -> Path:
    """The prepared token data a run trained on, from its run.yaml."""
    from zeroforge.config import read_run_recipe
    from zeroforge.data.text import ensure_prepared

    if not (run_dir / "run.yaml").is_file():
        raise DataError(
            f"{run_dir / 'run.yaml'}: missing (a zeroforge.fit run on arrays has none); evaluate it in "
            "Python on arrays prepared as for training: zeroforge.evaluate(model, (x, y))"
        )
    d = read_run_recipe(run_dir).data
    return ensure_prepared(
        d.source,
        tokenizer=d.tokenizer,
        vocab_size=d.vocab_size,
        val_fraction=d.val_fraction,
        out=d.prepared_dir,
    )


@torch.no_grad()
def language_model_loss(
    model: nn.Module,
    tokens: np.ndarray,
    block_size: int,
    batch_size: int = 16,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy over every token of ``tokens`` in non-overlapping blocks of ``block_size``
    (``progress``: a bar over the batches on stderr)."""
    from tqdm.auto import tqdm

    n_blocks = (len(tokens) - 1) // block_size
    if n_blocks < 1:
        raise DataError(f"only {len(tokens)} tokens: fewer than one block of {block_size} + 1")
    starts = np.arange(n_blocks) * block_size
    if max_batches is not None:
        starts = starts[: max_batches * batch_size]
    model.eval()
    total_loss, total_tokens = 0.0, 0
    offsets = np.arange(block_size + 1)
    batches = range(0, len(starts), batch_size)
    for i in tqdm(batches, desc="evaluate", unit="batch", disable=not progress, leave=False):
        idx = starts[i : i + batch_size, None] + offsets  # (B, T+1)
        chunk = torch.from_numpy(tokens[idx].astype(np.int64)).to(device)
        out = model(input_ids=chunk[:, :-1], labels=chunk[:, 1:])
        total_loss += out.loss.item() * chunk[:, 1:].numel()
        total_tokens += chunk[:, 1:].numel()
    loss = total_loss / total_tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": total_tokens}


def evaluate(
    model_or_run_dir: nn.Module | str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    *,
    split: str | None = None,
    batch_size: int = 16,
    block_size: int | None = None,
    max_batches: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a model -> metrics dict.

    - ``evaluate(model, (x, y))`` (arrays, tensors or a Dataset): the model's loss and metrics over the
      samples, each sample weighted equally (``evaluate_arrays``);
    - ``evaluate(classifier_run_dir, data=None)``: a fine-tuned classifier on its run's ``split``
      (default test), or on ``data`` (a labelled file or dataset name) -> accuracy, P/R/F1, ROC-AUC,
      confusion matrix (``metrics.json`` and ``confusion_matrix.png`` in the run directory);
    - ``evaluate(lm_or_run_dir, data=None)``: a language model's loss and perplexity over a prepared
      data dir's split (default: the run's own data, split val). Given a run directory, the metrics are
      also written to ``<run_dir>/metrics.json``.
    """
    from zeroforge.data.text import load_prepared

    if isinstance(model_or_run_dir, nn.Module) and isinstance(
        data, tuple | list | np.ndarray | torch.Tensor | torch.utils.data.Dataset
    ):
        return evaluate_arrays(model_or_run_dir, data, batch_size=batch_size, device=device)

    model, run_dir = _load(model_or_run_dir)
    from zeroforge.translation import evaluate_translation, is_translation_model

    if is_translation_model(model):  # BLEU / chrF on the run's held-out verses, greedy and beam 4
        if run_dir is None:
            raise DataError("evaluate: pass a translation run directory (its held-out verses are there)")
        return evaluate_translation(run_dir, split or "test")
    from zeroforge.models.classifier import SequenceClassifier

    if isinstance(model, SequenceClassifier):
        if run_dir is None:
            raise DataError(
                "evaluate: pass a classifier's run directory (its tokenizer and recipe are there)"
            )
        return _evaluate_classifier_run(model, run_dir, data, split or "test", batch_size, device)
    from zeroforge.models.bert import BertForPreTraining

    if isinstance(model, BertForPreTraining):
        if run_dir is None or data is not None:
            raise DataError(
                "evaluate: a BERT pretraining model is evaluated on its run directory's held-out pairs"
            )
        return _evaluate_mlm_nsp_run(model, run_dir, batch_size, device)
    if run_dir is not None and data is None and _is_image_run(run_dir):
        return _evaluate_image_run(model, run_dir, split or "val", device)
    split = split or "val"
    model.to(device)
    if data is None:
        if run_dir is None:
            raise DataError("evaluate: pass data= when evaluating an in-memory model")
        data_dir = _run_data_dir(run_dir)
    else:
        data_dir = Path(data)
        from zeroforge.data.images import IMAGE_DATASETS

        if str(data) in IMAGE_DATASETS:
            raise DataError(
                f"--data {data}: an image dataset; --data reads text. Evaluate an image model in Python on "
                "images scaled as in training: zeroforge.evaluate(model, (x, y)) (a zeroforge train run "
                "is evaluated on its own data: zeroforge evaluate RUN --split test)"
            )
        if not (data_dir / "meta.json").is_file():
            from zeroforge.data.text import ensure_prepared

            data_dir = ensure_prepared(str(data))
    meta, _tok = load_prepared(data_dir)
    bin_path = data_dir / f"{split}.bin"
    if not bin_path.is_file():
        raise DataError(f"{bin_path}: missing (split must be train or val)")
    tokens = np.memmap(bin_path, dtype=np.dtype(meta["dtype"]), mode="r")
    block = block_size or model.config.block_size
    if max_batches is None:
        from zeroforge.train.bookkeeping import step_cap

        max_batches = step_cap()  # $ZEROFORGE_MAX_STEPS: a quick check reads only the first batches
    metrics = language_model_loss(model, tokens, block, batch_size, max_batches, device, progress=True)
    metrics = {f"{split}_{k}": v for k, v in metrics.items()}
    metrics["data"] = str(data_dir)
    if run_dir is not None:
        atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def _evaluate_mlm_nsp_run(model: nn.Module, run_dir: Path, batch_size: int, device: str) -> dict[str, Any]:
    """A BERT pretraining run on every held-out sentence pair (its run.yaml's prepared data), with the
    fixed validation masks: MLM loss and accuracy, NSP accuracy, and the most-frequent-token baseline."""
    from zeroforge.config import read_run_recipe
    from zeroforge.data.mlm import build_mlm_nsp_data
    from zeroforge.train.runtime import evaluate_batches

    recipe = read_run_recipe(run_dir)  # the held-out pairs are rebuilt from the run's recipe
    block = recipe.train.block_size or model.config.block_size
    data = build_mlm_nsp_data(recipe.data, block, batch_size, None, recipe.train.seed)
    stats = evaluate_batches(model, data.val, torch.device(device), None)
    baseline = data.meta["baseline"]
    pairs = sum(int(b["input_ids"].shape[0]) for b in data.val)
    metrics: dict[str, Any] = {f"val_{k}": v for k, v in stats.items()}
    metrics.update(
        pairs=pairs,
        baseline_token=baseline["token"],
        baseline_mlm_accuracy=baseline["val_mlm_accuracy"],
        mlm_accuracy_over_baseline=stats["mlm_accuracy"] / baseline["val_mlm_accuracy"],
        data=str(recipe.data.source),
    )
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def _is_image_run(run_dir: Path) -> bool:
    from zeroforge.config import read_run_recipe

    if not (run_dir / "run.yaml").is_file():
        return False
    recipe = read_run_recipe(run_dir)
    return recipe.finetune is None and recipe.data.objective == "images"


def _evaluate_image_run(model: nn.Module, run_dir: Path, split: str, device: str) -> dict[str, Any]:
    """An image-classification run on its held-out images (``val``) or its dataset's test split
    (``test``), rebuilt from run.yaml as the run built them (the same split, normalisation and batches,
    so ``val`` reproduces metrics.csv's last validation): loss, accuracy, P/R/F1 and a confusion matrix
    -> ``metrics.json`` and ``confusion_matrix.png``."""
    from zeroforge.config import read_run_recipe
    from zeroforge.data.arrays import input_key, rename_input
    from zeroforge.data.builders import DataContext
    from zeroforge.data.images import image_classification_data
    from zeroforge.eval.plots import plot_confusion_matrix
    from zeroforge.train.runtime import evaluate_batches

    recipe = read_run_recipe(run_dir)
    data = image_classification_data(recipe, DataContext(run_dir))
    batches = {"val": data.val, "test": data.test}.get(split)
    if batches is None:
        has = "val or test" if data.test is not None else f"val ({recipe.data.source} has no test split)"
        raise DataError(f"evaluate --split {split}: an image run is evaluated on {has}")
    rename_input(batches, model)
    model = model.to(device).eval()
    stats = evaluate_batches(model, batches, torch.device(device), None)
    key = input_key(model)
    with torch.no_grad():
        probs = np.concatenate(
            [model(**{key: b[key].to(device)}).logits.float().softmax(-1).cpu().numpy() for b in batches]
        )
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    names = list(data.label_names or [str(i) for i in range(probs.shape[1])])
    metrics = {f"{split}_{k}": v for k, v in stats.items()}
    metrics.update(split=split, data=recipe.data.source, **classification_metrics(labels, probs, names))
    plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        names,
        run_dir / "confusion_matrix.png",
        title=f"{run_dir.name} ({split}, n={metrics['n']})",
    )
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


# ----------------------------------------------------------------------------- classifiers


@torch.no_grad()
def classifier_probabilities(
    model: nn.Module, encoded: Any, batch_size: int = 64, pad_id: int = 0, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Class probabilities (N, K) for ``encoded`` (``data.tables.EncodedData``), in its order."""
    from zeroforge.data.tables import fixed_batches

    batches, order = fixed_batches(encoded, batch_size, pad_id)
    was_training = model.training
    model.eval()
    try:
        parts = []
        for batch in batches:
            logits = model(
                batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
            parts.append(torch.softmax(logits.float(), dim=-1).cpu())
    finally:
        model.train(was_training)
    probs = torch.cat(parts).numpy()  # (N, K) in length order
    out = np.empty_like(probs)
    out[order] = probs
    return out


def classification_metrics(labels: np.ndarray, probs: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Accuracy, P/R/F1 per class and averaged, confusion matrix; for two classes the positive class's
    (id 1) precision/recall/F1 and the ROC-AUC of its probability."""
    from zeroforge.eval import metrics as m

    pred = probs.argmax(axis=1)
    k = len(label_names)
    report = m.classification_report(labels, pred, label_names=label_names)
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "accuracy": report["accuracy"],
        "precision_macro": report["macro"]["precision"],
        "recall_macro": report["macro"]["recall"],
        "f1_macro": report["macro"]["f1"],
        "f1_weighted": report["weighted"]["f1"],
    }
    if k == 2:
        positive = report["classes"][label_names[1]]
        out.update(
            positive_class=label_names[1],
            precision=positive["precision"],
            recall=positive["recall"],
            f1=positive["f1"],
        )
        if len(np.unique(labels)) == 2:
            out["roc_auc"] = m.roc_auc(labels, probs[:, 1])
    out["per_class"] = report["classes"]
    out["confusion_matrix"] = m.confusion_matrix(labels, pred, labels=list(range(k))).tolist()
    out["label_names"] = list(label_names)
    return out


def evaluate_classifier(
    model: nn.Module,
    tokenizer: Any,
    data: Any,
    max_length: int,
    batch_size: int = 64,
    out_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """A classifier's metrics on ``data`` (``LabelledData`` whose label ids are the model's); with
    ``out_dir`` also ``confusion_matrix.png`` there. Returns the metrics (``split`` names the data)."""
    from zeroforge.data.tables import encode_texts
    from zeroforge.data.tasks import pad_id_of

    device = next(model.parameters()).device
    encoded = encode_texts(data, tokenizer, max_length, int(model.backbone.config.vocab_size))
    probs = classifier_probabilities(model, encoded, batch_size, pad_id_of(tokenizer), device)
    names = list(model.config.label_names) or [str(i) for i in range(model.config.n_labels)]
    metrics = {"split": split, **classification_metrics(np.asarray(data.labels), probs, names)}
    if out_dir is not None:
        from zeroforge.eval.plots import plot_confusion_matrix

        plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            names,
            Path(out_dir) / "confusion_matrix.png",
            title=f"{Path(out_dir).name} ({split}, n={metrics['n']})",
        )
    return metrics


def _evaluate_classifier_run(
    model: nn.Module,
    run_dir: Path,
    data: str | os.PathLike[str] | None,
    split: str,
    batch_size: int,
    device: str,
) -> dict[str, Any]:
    import json

    from zeroforge.config import read_run_recipe
    from zeroforge.data.tables import load_labelled
    from zeroforge.data.tasks import labelled_splits
    from zeroforge.tokenizers import load_tokenizer

    recipe = read_run_recipe(run_dir)
    tokenizer = load_tokenizer(run_dir)
    names = list(model.config.label_names)
    d = recipe.data
    if data is None:
        parts = labelled_splits(recipe, run_dir)
        if split not in parts or not len(parts[split]):
            raise DataError(f"{run_dir}: the run has no {split} split (its data.splits are {d.splits})")
        labelled, where = parts[split], f"{d.source} ({split} split)"
    else:
        labelled = load_labelled(
            data,
            text_column=d.text_column,
            label_column=d.label_column,
            encoding=d.encoding,
            labels=names or None,
        )
        labelled, where, split = labelled, str(data), Path(str(data)).name
    model.to(device)
    metrics = evaluate_classifier(model, tokenizer, labelled, d.max_length, batch_size, run_dir, split)
    metrics["data"] = where
    previous = (
        json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        if (run_dir / "metrics.json").is_file()
        else {}
    )
    keep = {
        k: previous[k]
        for k in ("task", "method", "model", "dataset", "train_steps", "train_seconds")
        if k in previous
    }
    metrics = {**keep, **metrics}
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


# ----------------------------------------------------------------------------- comparing runs

COMPARE_COLUMNS = (
    ("val_loss", "val loss", "{:.4f}"),
    ("val_perplexity", "perplexity", "{:.2f}"),
    ("val_accuracy", "val accuracy", "{:.4f}"),
    ("val_mlm_accuracy", "MLM accuracy", "{:.4f}"),
    ("val_nsp_accuracy", "NSP accuracy", "{:.4f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("f1_macro", "macro F1", "{:.4f}"),
    ("roc_auc", "ROC-AUC", "{:.4f}"),
    ("n", "n", "{}"),
    ("train_seconds", "train s", "{:.0f}"),
)


def compare_runs(run_dirs: list[str | os.PathLike[str]], evaluate_missing: bool = True) -> str:
    """A text table of several runs' ``metrics.json`` (a classifier run without one is evaluated first)."""
    import json

    rows = []
    for run in run_dirs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            if not evaluate_missing:
                raise DataError(f"{path}: missing (run zeroforge evaluate {run} first)")
            evaluate(run)
        metrics = json.loads(path.read_text(encoding="utf-8"))
        after = metrics.get("after") if isinstance(metrics.get("after"), dict) else None
        if after is not None:  # sft with instructions: held-out instruction accuracy before -> after
            before = metrics.get("before", {}).get("accuracy")
            metrics = {**metrics, "accuracy": after["accuracy"], "before": before, "n": after.get("n")}
        rows.append((str(run), metrics))
    columns = [c for c in COMPARE_COLUMNS if any(c[0] in m for _, m in rows)]
    if any("before" in m for _, m in rows):
        columns.insert(0, ("before", "before", "{:.4f}"))
    if any("method" in m for _, m in rows):  # fine-tuning runs name their method; others have none
        columns.insert(0, ("method", "method", "{}"))
    header = ["run", *[title for _, title, _ in columns]]
    table = [header]
    for run, m in rows:
        cells = [run]
        for key, _, fmt in columns:
            value = m.get(key)
            cells.append("" if value is None else fmt.format(value))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
