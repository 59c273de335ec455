"""Attention maps of GPT, Llama and BERT (and every model built on them) for one text.

``attention_maps`` runs the model once inside ``modules.attention.capture_attention``: every attention
call also returns its probabilities softmax(QK^T / sqrt(d_k) + mask), one (n_head, T, T) map per layer.
``head_summary`` condenses each head into the numbers used to read them (Clark et al. 2019, "What Does
BERT Look At?"): entropy, mean distance attended, share on the first token ([CLS] for BERT) and the
previous-token score. ``explain_attention`` writes the grid of heads as PNG, the maps as JSON and the
summary as a Markdown table.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.errors import ZeroforgeError
from zeroforge.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from zeroforge.modules.attention import capture_attention
from zeroforge.tokenizers import HFTokenizer, Tokenizer


def encode_text(model: nn.Module, tokenizer: Tokenizer, text: str) -> list[int]:
    """``text`` as the model saw text in training: ``[CLS] ids [SEP]`` for a WordPiece (BERT)
    tokenizer, the bare ids otherwise; cut to the model's context."""
    ids = tokenizer.encode(text)
    cls_id, sep_id = getattr(tokenizer, "cls_id", None), getattr(tokenizer, "sep_id", None)
    limit = int(getattr(model, "context_length", len(ids) + 2))
    if cls_id is not None and sep_id is not None:
        ids = [cls_id, *ids[: limit - 2], sep_id]
    ids = ids[:limit]
    if not ids:
        raise ZeroforgeError(f"--text {text!r}: the tokenizer maps it to no tokens")
    return ids


def token_strings(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each id's own piece (``##ing``, ``[CLS]``, a character), for axis labels."""
    if isinstance(tokenizer, HFTokenizer):
        return [tokenizer.tokenizer.id_to_token(i) or "?" for i in ids]
    return [tokenizer.decode([i]) for i in ids]


@torch.no_grad()
def attention_maps(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """input_ids (T,) or (1, T) -> attention probabilities (n_layer, n_head, T, T), float32 on the CPU.

    The model runs once in eval mode (its ``hidden_states``, so a GPT body without its LM head works
    too); its outputs are exactly those of a run without capture."""
    ids = input_ids.view(1, -1).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with capture_attention() as maps:
            model.hidden_states(ids)
    finally:
        model.train(was_training)
    if not maps:
        raise ZeroforgeError(f"{type(model).__name__}: this model has no attention layers to show")
    return torch.stack([m[0].float().cpu() for m in maps])  # (L, nh, T, T)


@dataclass
class HeadStats:
    layer: int
    head: int
    entropy: float
    """Mean over queries of -sum_j a_ij ln a_ij (nats): 0 = one key, ln(keys) = uniform."""
    mean_distance: float
    """Mean over queries of sum_j a_ij |i - j|: how far a head looks, in tokens."""
    first_token: float
    """Mean attention on position 0 ([CLS] for BERT, the first token for a decoder)."""
    previous_token: float
    """Mean attention of query i on key i - 1 (i >= 1)."""


def head_summary(maps: torch.Tensor) -> list[HeadStats]:
    """maps (L, nh, T, T) -> one ``HeadStats`` per (layer, head)."""
    L, nh, T, _ = maps.shape
    pos = torch.arange(T, dtype=torch.float32)
    distance = (pos[:, None] - pos[None, :]).abs()  # (T, T)
    ent = -(maps * maps.clamp_min(1e-12).log()).sum(-1).mean(-1)  # (L, nh)
    dist = (maps * distance).sum(-1).mean(-1)  # (L, nh)
    first = maps[..., 0].mean(-1)  # (L, nh)
    prev = maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) if T > 1 else torch.zeros(L, nh)
    return [
        HeadStats(i, h, float(ent[i, h]), float(dist[i, h]), float(first[i, h]), float(prev[i, h]))
        for i in range(L)
        for h in range(nh)
    ]


def summary_table(stats: list[HeadStats]) -> str:
    """The head summary as a Markdown table."""
    lines = [
        "| layer | head | entropy (nats) | mean distance | on first token | on previous token |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(
            f"| {s.layer} | {s.head} | {s.entropy:.3f} | {s.mean_distance:.2f} | "
            f"{s.first_token:.3f} | {s.previous_token:.3f} |"
        )
    return "\n".join(lines) + "\n"


def save_figure(fig: Any, path: Path, dpi: int = 80) -> None:
    """Render a matplotlib Figure to PNG in memory, then write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_attention_grid(maps: torch.Tensor, tokens: list[str], path: Path, title: str = "") -> None:
    """A grid of heatmaps, one row per layer and one column per head; queries down, keys across."""
    L, nh, T, _ = maps.shape
    cell = min(3.0, max(2.2, 0.11 * T))
    fig = new_figure(max(6.0, cell * nh + 0.6), cell * L + 0.6)
    axes = fig.subplots(L, nh, squeeze=False)
    labels = [t if t.strip() else repr(t)[1:-1].replace(" ", "\u2423") for t in tokens]  # visible blanks
    for i in range(L):
        for h in range(nh):
            ax = axes[i][h]
            ax.imshow(maps[i, h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"layer {i} head {h}", fontsize=7)
            if T <= 48:
                size = max(3.0, min(6.0, 200 / T))
                ax.set_xticks(range(T), labels, rotation=90, fontsize=size)
                ax.set_yticks(range(T), labels, fontsize=size)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def explain_attention(
    model: nn.Module, tokenizer: Tokenizer, text: str, out_dir: str | os.PathLike[str], name: str = ""
) -> dict[str, Any]:
    """Write ``attention.png`` (grid of heads), ``attention.json`` (tokens, maps, summary) and
    ``attention_heads.md`` (the head summary) into ``out_dir``; returns the JSON's content."""
    ids = encode_text(model, tokenizer, text)
    maps = attention_maps(model, torch.tensor(ids))
    tokens = token_strings(tokenizer, ids)
    stats = head_summary(maps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    L, nh, T, _ = maps.shape
    report = {
        "text": text,
        "tokens": tokens,
        "ids": ids,
        "n_layer": L,
        "n_head": nh,
        "attention": [
            [[[round(float(a), 5) for a in row] for row in head] for head in layer] for layer in maps
        ],
        "heads": [asdict(s) for s in stats],
    }
    atomic_write_json(out / "attention.json", report)
    atomic_write_text(out / "attention_heads.md", summary_table(stats))
    plot_attention_grid(maps, tokens, out / "attention.png", title=f"{name}: {text[:48]!r}")
    return report
