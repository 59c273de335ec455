"""Sentence embeddings: mean of a BERT-family model's last hidden states over the attention mask,
L2-normalised (Sentence-BERT, Reimers & Gurevych 2019; the recipe of all-MiniLM-L6-v2), so the dot
product of two embeddings is their cosine similarity.

    vectors = zeroforge.embed("runs/bert-mlm-nsp-kjv", ["In the beginning", "And God said"])  # (2, d)
    zeroforge embed runs/bert-mlm-nsp-kjv --text "In the beginning" --text "And God said"

Each text is encoded as ``[CLS] text [SEP]``; a text longer than the model's positions is cut to
fit, with one warning that counts the texts cut.

(The module is ``embedding``, not ``embed``: a submodule named like the public function would
replace ``zeroforge.embed`` by the module as soon as anything imported it.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import ZeroforgeError


def encode_for_embedding(tokenizer: Any, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """``[CLS] ids [SEP]`` per text, cut to ``max_len`` ids (a warning counts the texts cut)."""
    from zeroforge.tokenizers import WordPieceTokenizer

    if not isinstance(tokenizer, WordPieceTokenizer):
        raise ZeroforgeError(
            f"embed: needs a WordPiece (BERT) tokenizer with [CLS] and [SEP], got {tokenizer.kind!r}"
        )
    tokenizer.require("[CLS]", "[SEP]", "[PAD]")
    budget = max_len - 2
    encoded, cut = [], 0
    for ids in tokenizer.encode_batch(list(texts)):
        cut += len(ids) > budget
        encoded.append([tokenizer.cls_id, *ids[:budget], tokenizer.sep_id])
    if cut:
        warnings.warn(
            f"embed: {cut} of {len(texts)} text(s) longer than {budget} tokens were truncated "
            f"(the model has {max_len} positions)",
            stacklevel=4,  # the caller of embed (under torch.no_grad's wrapper)
        )
    return encoded


@torch.no_grad()
def embed(
    model_or_path: nn.Module | str | os.PathLike[str],
    texts: str | Sequence[str],
    batch_size: int = 32,
    tokenizer: Any | None = None,
) -> torch.Tensor:
    """L2-normalised mean-pooled sentence embeddings, (n, d) float32 on the CPU.

    ``model_or_path``: a run or model directory (its tokenizer is read from it) or a model that has
    ``sentence_embedding(input_ids, attention_mask)`` (BERT), with ``tokenizer`` given.
    Texts are batched by length so little compute goes to padding; rows follow ``texts``' order.
    """
    if isinstance(model_or_path, nn.Module):
        model = model_or_path
        if tokenizer is None:
            from zeroforge.weights import tokenizer_of

            tokenizer = tokenizer_of(model)  # the tokenizer zeroforge.load returned with it
        if tokenizer is None:
            raise ZeroforgeError("embed: pass tokenizer= with a model object (or give a run directory)")
    else:
        from zeroforge.tokenizers import require_tokenizer
        from zeroforge.weights import load

        model, saved_tokenizer = load(model_or_path)
        tokenizer = tokenizer or require_tokenizer(saved_tokenizer, model_or_path, "embed")
    if not hasattr(model, "sentence_embedding"):
        raise ZeroforgeError(
            f"embed: {type(model).__name__} has no sentence embeddings (use a BERT-family model)"
        )
    if batch_size < 1:
        raise ZeroforgeError(f"embed: batch_size must be >= 1, got {batch_size}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    encoded = encode_for_embedding(tokenizer, texts, model.config.block_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.zeros(len(texts), model.config.n_embd)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        T = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
            attention_mask[r, : len(encoded[i])] = 1
        pooled = model.sentence_embedding(input_ids.to(device), attention_mask.to(device))  # (b, d)
        out[rows] = F.normalize(pooled.float(), dim=-1).cpu()
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- CLI
