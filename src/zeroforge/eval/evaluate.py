"""``zeroforge evaluate``: measure a trained model on data and write ``metrics.json``.

Language models: mean next-token cross-entropy over the whole validation split in non-overlapping
blocks, and perplexity = exp(loss).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.errors import DataError
from zeroforge.io import atomic_write_json


def _load(model_or_run_dir: nn.Module | str | os.PathLike[str]) -> tuple[nn.Module, Path | None]:
    if isinstance(model_or_run_dir, nn.Module):
        return model_or_run_dir, None
    from zeroforge.train.checkpoint import load_run

    model, _tokenizer = load_run(model_or_run_dir)
    return model, Path(model_or_run_dir)


def _run_data_dir(run_dir: Path) -> Path:
    """The prepared token data a run trained on, from its run.yaml."""
    import yaml

    from zeroforge.config import recipe_from_dict
    from zeroforge.data.text import ensure_prepared

    run_yaml = run_dir / "run.yaml"
    if not run_yaml.is_file():
        raise DataError(f"{run_yaml}: missing; pass --data to say what to evaluate on")
    recipe = recipe_from_dict(yaml.safe_load(run_yaml.read_text(encoding="utf-8")), where=str(run_yaml))
    d = recipe.data
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
) -> dict[str, float]:
    """Mean cross-entropy over every token of ``tokens`` in non-overlapping blocks of ``block_size``."""
    n_blocks = (len(tokens) - 1) // block_size
    if n_blocks < 1:
        raise DataError(f"only {len(tokens)} tokens: fewer than one block of {block_size} + 1")
    starts = np.arange(n_blocks) * block_size
    if max_batches is not None:
        starts = starts[: max_batches * batch_size]
    model.eval()
    total_loss, total_tokens = 0.0, 0
    offsets = np.arange(block_size + 1)
    for i in range(0, len(starts), batch_size):
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
    split: str = "val",
    batch_size: int = 16,
    block_size: int | None = None,
    max_batches: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a model -> metrics dict.

    - ``evaluate(model, (x, y))`` (arrays, tensors or a Dataset): the model's loss and metrics over the
      samples, each sample weighted equally (``zeroforge.fitting.evaluate_arrays``);
    - ``evaluate(lm_or_run_dir, data=None)``: a language model's loss and perplexity over a prepared
      data dir's split (default: the run's own data). Given a run directory, the metrics are also
      written to ``<run_dir>/metrics.json``.
    """
    from zeroforge.data.text import load_prepared

    if isinstance(model_or_run_dir, nn.Module) and isinstance(
        data, tuple | list | np.ndarray | torch.Tensor | torch.utils.data.Dataset
    ):
        from zeroforge.fitting import evaluate_arrays

        return evaluate_arrays(model_or_run_dir, data, batch_size=batch_size, device=device)

    model, run_dir = _load(model_or_run_dir)
    model.to(device)
    if data is None:
        if run_dir is None:
            raise DataError("evaluate: pass data= when evaluating an in-memory model")
        data_dir = _run_data_dir(run_dir)
    else:
        data_dir = Path(data)
        if not (data_dir / "meta.json").is_file():
            from zeroforge.data.text import ensure_prepared

            data_dir = ensure_prepared(str(data))
    meta, _tok = load_prepared(data_dir)
    bin_path = data_dir / f"{split}.bin"
    if not bin_path.is_file():
        raise DataError(f"{bin_path}: missing (split must be train or val)")
    tokens = np.memmap(bin_path, dtype=np.dtype(meta["dtype"]), mode="r")
    block = block_size or model.config.block_size
    metrics = language_model_loss(model, tokens, block, batch_size, max_batches, device)
    metrics = {f"{split}_{k}": v for k, v in metrics.items()}
    metrics["data"] = str(data_dir)
    if run_dir is not None:
        atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics
