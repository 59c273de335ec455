"""Translate with an encoder-decoder run, and score a translation run on its held-out verses.

    model, tokenizer = zeroforge.load("runs/translate-en-es")
    translate(model, tokenizer, ["In the beginning was the Word."], num_beams=4)
    evaluate_translation("runs/translate-en-es", num_beams=(1, 4))   # BLEU / chrF, greedy and beam

Sources are translated in batches sorted by length (less padding), each with room for
``2 * source tokens + 10`` target tokens (capped by the model's positions), then put back in order.
A translation run directory holds its validation and test verses as ``{val,test}.{src,tgt,ref}``
(``data/translation.py`` writes them), so evaluation reads exactly the held-out books.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.beam import Hypothesis, beam_search, greedy_search
from zeroforge.data.translation import encode_source
from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.eval.bleu import translation_scores
from zeroforge.io import atomic_write_json, atomic_write_text

TRANSLATION_FAMILIES = ("seq2seq", "gru-seq2seq")


def is_translation_model(model: nn.Module) -> bool:
    from zeroforge.registry import family_for_model

    try:
        return family_for_model(model).name in TRANSLATION_FAMILIES
    except ZeroforgeError:
        return False


def _load(model_or_run: nn.Module | str | os.PathLike[str], tokenizer: Any = None) -> tuple[nn.Module, Any]:
    if isinstance(model_or_run, nn.Module):
        if tokenizer is None:
            from zeroforge.weights import tokenizer_of

            tokenizer = tokenizer_of(model_or_run)
        if tokenizer is None:
            raise ZeroforgeError("translate: pass the tokenizer the model was trained with")
        return model_or_run, tokenizer
    from zeroforge.weights import load

    model, tokenizer = load(model_or_run)
    if not is_translation_model(model):
        raise ZeroforgeError(
            f"{model_or_run}: not a translation model (families: {', '.join(TRANSLATION_FAMILIES)})"
        )
    if tokenizer is None:
        raise DataError(f"{model_or_run}: no tokenizer saved with the model")
    return model, tokenizer


@torch.no_grad()
def translate(
    model: nn.Module | str | os.PathLike[str],
    tokenizer: Any = None,
    texts: Sequence[str] = (),
    *,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    n_best: int = 1,
    batch_size: int = 32,
    max_source_tokens: int = 128,
    progress: bool = False,
) -> list[str] | list[list[tuple[str, float]]]:
    """Each text's translation (``n_best`` = 1), or its ``n_best`` (translation, score) pairs, best first.

    ``num_beams`` 1 is greedy search. An empty line is a one-line error naming it.
    """
    model, tokenizer = _load(model, tokenizer)
    model.eval()
    max_positions = getattr(model.config, "max_positions", 256)
    limit = min(max_source_tokens, max_positions)
    encoded = [encode_source(tokenizer, t, limit, where=f"line {i + 1}") for i, t in enumerate(texts)]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list[list[Hypothesis]] = [[] for _ in encoded]
    device = next(model.parameters()).device
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"translating (beam {num_beams})", unit="batch")
    pad = model.config.pad_token_id
    for idx in batches:
        S = max(len(encoded[i]) for i in idx)
        input_ids = torch.full((len(idx), S), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), S), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        max_new = [min(2 * len(encoded[i]) + 10, max_positions - 1) for i in idx]  # each source's own room
        if num_beams == 1 and n_best == 1:
            for i, tokens in zip(idx, greedy_search(model, input_ids, mask, max_new), strict=True):
                results[i] = [Hypothesis(tokens, 0.0, 0.0)]
        else:
            found = beam_search(model, input_ids, mask, num_beams, max_new, length_penalty, n_best=n_best)
            for i, hyps in zip(idx, found, strict=True):
                results[i] = hyps
    eos = model.config.eos_token_id

    def text(h: Hypothesis) -> str:
        return tokenizer.decode([t for t in h.tokens if t != eos]).strip()

    if n_best == 1:
        return [text(h[0]) for h in results]
    return [[(text(h), h.score) for h in hyps] for hyps in results]


def translate_file(
    model: nn.Module | str | os.PathLike[str],
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    **options: Any,
) -> list[str]:
    """Translate a UTF-8 file, one sentence per line; write ``out`` (atomically) when given."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"{source}: no such file")
    lines = source.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise DataError(f"{source}: empty (no lines to translate)")
    try:
        translations = translate(model, None, lines, **options)
    except DataError as err:
        raise DataError(f"{source}: {err}") from None
    if out is not None:
        atomic_write_text(out, "".join(t + "\n" for t in translations))
    return translations  # type: ignore[return-value]


def evaluate_translation(
    run_dir: str | os.PathLike[str],
    split: str = "test",
    *,
    num_beams: Sequence[int] = (1, 4),
    length_penalty: float = 1.0,
    every: int = 1,
    batch_size: int = 32,
    samples: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """BLEU and chrF (sacrebleu) of a translation run on its ``split`` verses, for each beam width.

    ``every`` k scores every k-th verse (a quicker, evenly spread subset). ``samples`` are verse
    references ("Mark 1:1") whose source, reference and translations are printed. Writes
    ``translation_metrics.json`` and ``<split>.hyp.beam<k>`` into the run directory.
    """
    run = Path(run_dir)
    files = {ext: run / f"{split}.{ext}" for ext in ("src", "tgt", "ref")}
    for path in files.values():
        if not path.is_file():
            raise DataError(f"{path}: missing (a translation run writes its held-out verses there)")
    src, tgt, refs = (files[e].read_text(encoding="utf-8").splitlines() for e in ("src", "tgt", "ref"))
    if every < 1:
        raise ZeroforgeError(f"evaluate: every must be >= 1, got {every}")
    keep = range(0, len(src), every)
    wanted = set(samples)
    unknown = wanted - set(refs)
    if unknown:
        raise DataError(f"--sample: {sorted(unknown)[0]!r} is not a verse of {files['ref']}")
    model, tokenizer = _load(run)
    result: dict[str, Any] = {"split": split, "sentences": len(keep), "every": every}
    # the copy-source baseline: each English verse offered as its own translation (shared names,
    # numbers and punctuation score a little)
    result["copy_source"] = translation_scores([src[i] for i in keep], [tgt[i] for i in keep])
    copy = result["copy_source"]
    print(f"{split} copy-source: BLEU {copy['bleu']:.2f}  chrF {copy['chrf']:.2f}")
    sample_rows = [i for i, r in enumerate(refs) if r in wanted]
    printed: dict[str, dict[str, str]] = {
        refs[i]: {"source": src[i], "reference": tgt[i]} for i in sample_rows
    }
    for k in num_beams:
        hyps = translate(
            model,
            tokenizer,
            [src[i] for i in keep],
            num_beams=k,
            length_penalty=length_penalty,
            batch_size=batch_size,
            progress=progress,
        )
        scores = translation_scores(hyps, [tgt[i] for i in keep])
        name = "greedy" if k == 1 else f"beam{k}"
        result[name] = scores
        atomic_write_text(run / f"{split}.hyp.{name}", "".join(h + "\n" for h in hyps))
        if sample_rows:
            out = translate(
                model, tokenizer, [src[i] for i in sample_rows], num_beams=k, length_penalty=length_penalty
            )
            for i, text in zip(sample_rows, out, strict=True):
                printed[refs[i]][name] = text
        print(f"{split} {name}: BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}")
    for k in num_beams[:1]:
        name = "greedy" if k == 1 else f"beam{k}"
        print(
            f"  BLEU signature: {result[name]['bleu_signature']}\n  chrF signature: {result[name]['chrf_signature']}"
        )
    if printed:
        result["samples"] = printed
        for ref, rows in printed.items():
            print(f"\n{ref}")
            for key, value in rows.items():
                print(f"  {key:>9}: {value}")
    atomic_write_json(run / "translation_metrics.json", result)
    return result
