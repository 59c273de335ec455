"""Saliency for classifiers through Captum (Kokhlikyan et al. 2020): which inputs moved the score.

- Text (``SequenceClassifier``: a GPT, Llama or BERT body with a head): integrated gradients
  (Sundararajan et al. 2017) on the token embeddings, from a baseline that keeps [CLS]/[SEP] and puts
  [PAD] (id 0 without one) at every other position, and input x gradient (Shrikumar et al. 2016) on the
  same embeddings. A token's score is its attribution summed over the embedding width.
- Images (MLP/CNN classifiers on ``pixel_values``): integrated gradients on the pixels from a black
  (all-zero, normalised) image; the heat map is |attribution| summed over channels.

Integrated gradients are *complete*: the attributions sum to f(x) - f(baseline) for the explained class
score f (its logit); ``TextSaliency.completeness_gap`` is how far Captum's Riemann/Gauss-Legendre sum is
from that. The HTML/PNG colour each token red (for the class) or blue (against), scaled by the largest
|attribution|.
"""

from __future__ import annotations

import html
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zeroforge.errors import ConfigError, ZeroforgeError
from zeroforge.explain.attention import encode_text, new_figure, save_figure, token_strings
from zeroforge.io import atomic_write_json, atomic_write_text
from zeroforge.tokenizers import Tokenizer


def _captum() -> Any:
    try:
        import captum.attr
    except ImportError as err:
        raise ConfigError(
            "explain saliency: needs Captum (pip install 'zeroforge[explain]' or pip install captum)"
        ) from err
    return captum.attr


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The token embedding: the first ``nn.Embedding`` registered (``wte``, ``embed_tokens``,
    ``word_embeddings`` in GPT, Llama and BERT, each ahead of its position embeddings)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise ZeroforgeError(f"{type(model).__name__}: no token embedding to attribute to (not a text model)")


@dataclass
class TextSaliency:
    text: str
    tokens: list[str]
    label: str
    """The explained class (the predicted one unless a target was given)."""
    probability: float
    """The model's probability of ``label`` for this text."""
    integrated_gradients: list[float]
    input_x_gradient: list[float]
    score: float
    """f(x): the logit of ``label``."""
    baseline_score: float
    """f(baseline): the same logit for the [PAD] baseline."""
    completeness_gap: float
    """|sum(IG) - (f(x) - f(baseline))| / |f(x) - f(baseline)|."""
    labels: list[str] = field(default_factory=list)


def _label_names(model: nn.Module, n: int) -> list[str]:
    names = list(getattr(getattr(model, "config", None), "label_names", None) or [])
    return names if len(names) == n else [str(i) for i in range(n)]


def _target_index(target: str | int | None, names: list[str], predicted: int) -> int:
    if target is None:
        return predicted
    if str(target) in names:
        return names.index(str(target))
    raise ConfigError(f"--target: {target!r} is not one of the model's labels ({', '.join(names)})")


def text_saliency(
    model: nn.Module, tokenizer: Tokenizer, text: str, target: str | int | None = None, n_steps: int = 64
) -> TextSaliency:
    """Integrated gradients and input x gradient of one text's class logit over its tokens."""
    attr = _captum()
    ids = encode_text(model, tokenizer, text)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)  # (1, T)
    keep = {getattr(tokenizer, "cls_id", None), getattr(tokenizer, "sep_id", None)} - {None}
    pad = getattr(tokenizer, "pad_id", None) or 0
    baseline = torch.tensor([[i if i in keep else pad for i in ids]], device=device)  # (1, T)
    model.eval()

    def logits(input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids).logits.float()  # (B, n_labels)

    with torch.no_grad():
        scores = model(input_ids).logits
        if scores is None or scores.dim() != 2:
            raise ConfigError(
                f"explain saliency: needs a classifier (one score per class); {type(model).__name__} "
                "returns per-token logits (a language model)"
            )
        out, base = logits(input_ids)[0], logits(baseline)[0]
    names = _label_names(model, out.numel())
    c = _target_index(target, names, int(out.argmax()))
    layer = token_embedding(model)
    ig = attr.LayerIntegratedGradients(logits, layer).attribute(
        input_ids, baselines=baseline, target=c, n_steps=n_steps, internal_batch_size=16
    )  # (1, T, C)
    ixg = attr.LayerGradientXActivation(logits, layer).attribute(input_ids, target=c)  # (1, T, C)
    ig_tokens = ig.sum(-1)[0].detach().float().cpu()
    change = float(out[c] - base[c])
    return TextSaliency(
        text=text,
        tokens=token_strings(tokenizer, ids),
        label=names[c],
        probability=float(out.softmax(-1)[c]),
        integrated_gradients=ig_tokens.tolist(),
        input_x_gradient=ixg.sum(-1)[0].detach().float().cpu().tolist(),
        score=float(out[c]),
        baseline_score=float(base[c]),
        completeness_gap=abs(float(ig_tokens.sum()) - change) / max(abs(change), 1e-12),
        labels=names,
    )


def _rgb(value: float, scale: float) -> tuple[float, float, float]:
    """White at 0, red for positive, blue for negative attribution, full colour at |value| = scale."""
    a = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    return (1.0, 1.0 - a, 1.0 - a) if value >= 0 else (1.0 - a, 1.0 - a, 1.0)


def _display(token: str) -> tuple[str, bool]:
    """(text shown, joins the previous piece): WordPiece ``##`` pieces continue a word."""
    return (token[2:], True) if token.startswith("##") else (token, False)


def saliency_html(s: TextSaliency, method: str = "integrated_gradients") -> str:
    """The text as HTML spans coloured by attribution, with a title line."""
    values = getattr(s, method)
    scale = max((abs(v) for v in values), default=0.0)
    spans = []
    for tok, v in zip(s.tokens, values):
        shown, joins = _display(tok)
        r, g, b = (round(255 * c) for c in _rgb(v, scale))
        spans.append(
            ("" if joins or not spans else " ")
            + f'<span style="background: rgb({r},{g},{b})" title="{v:+.4f}">{html.escape(shown)}</span>'
        )
    head = html.escape(f"{method.replace('_', ' ')} for '{s.label}' (p = {s.probability:.3f})")
    return (
        '<!doctype html>\n<meta charset="utf-8">\n<div style="font-family: sans-serif; line-height: 2">'
        f"<p><b>{head}</b>; red: for the class, blue: against</p>\n<p>{''.join(spans)}</p></div>\n"
    )


def plot_text_saliency(s: TextSaliency, path: Path, per_line: int = 14) -> None:
    """Both methods as rows of coloured token boxes (red: for the class, blue: against)."""
    methods = ("integrated_gradients", "input_x_gradient")
    n_lines = max(1, -(-len(s.tokens) // per_line))
    fig = new_figure(10.0, 0.6 + 0.45 * n_lines * len(methods) + 0.4 * len(methods))
    axes = fig.subplots(len(methods), 1, squeeze=False)[:, 0]
    for ax, method in zip(axes, methods):
        values = getattr(s, method)
        scale = max((abs(v) for v in values), default=0.0)
        ax.set_xlim(0, per_line)
        ax.set_ylim(n_lines, 0)
        ax.axis("off")
        ax.set_title(f"{method.replace('_', ' ')}: '{s.label}' (p = {s.probability:.3f})", fontsize=9)
        for i, (tok, v) in enumerate(zip(s.tokens, values)):
            row, col = divmod(i, per_line)
            ax.text(
                col + 0.5, row + 0.5, tok[:12], ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": _rgb(v, scale), "edgecolor": "0.8"},
            )  # fmt: skip
    save_figure(fig, path, dpi=90)


def explain_text_saliency(
    model: nn.Module,
    tokenizer: Tokenizer,
    text: str,
    out_dir: str | os.PathLike[str],
    target: str | None = None,
    n_steps: int = 64,
) -> TextSaliency:
    """``saliency.json``, ``saliency.html`` (integrated gradients) and ``saliency.png`` (both methods)."""
    s = text_saliency(model, tokenizer, text, target, n_steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "saliency.json", asdict(s))
    atomic_write_text(out / "saliency.html", saliency_html(s))
    plot_text_saliency(s, out / "saliency.png")
    return s


# ----------------------------------------------------------------------------- images


@dataclass
class ImageSaliency:
    label: str
    probability: float
    integrated_gradients: torch.Tensor
    """(C, H, W) attributions on the (normalised) pixels."""
    score: float
    baseline_score: float
    completeness_gap: float


def image_saliency(
    model: nn.Module,
    pixels: torch.Tensor,
    target: str | int | None = None,
    n_steps: int = 64,
    label_names: list[str] | None = None,
) -> ImageSaliency:
    """pixels (C, H, W), as the model reads them (normalised) -> integrated gradients from black."""
    from zeroforge.data.arrays import input_key

    attr = _captum()
    model.eval()
    x = pixels[None].to(next(model.parameters()).device).float()  # (1, C, H, W)
    baseline = torch.zeros_like(x)
    key = input_key(model)  # pixel_values (CNNs) or features (an MLP)

    def logits(pixel_values: torch.Tensor) -> torch.Tensor:
        return model(**{key: pixel_values}).logits.float()

    with torch.no_grad():
        out, base = logits(x)[0], logits(baseline)[0]
    names = (
        label_names if label_names and len(label_names) == out.numel() else _label_names(model, out.numel())
    )
    c = _target_index(target, names, int(out.argmax()))
    ig = attr.IntegratedGradients(logits).attribute(
        x, baselines=baseline, target=c, n_steps=n_steps, internal_batch_size=16
    )[0]
    change = float(out[c] - base[c])
    return ImageSaliency(
        label=names[c],
        probability=float(out.softmax(-1)[c]),
        integrated_gradients=ig.detach().float().cpu(),
        score=float(out[c]),
        baseline_score=float(base[c]),
        completeness_gap=abs(float(ig.sum()) - change) / max(abs(change), 1e-12),
    )


def plot_image_saliency(pixels: torch.Tensor, s: ImageSaliency, path: Path, title: str = "") -> None:
    """The image, the |IG| heat map (summed over channels), and the map over the image."""
    img = pixels.float().cpu()
    img = (img - img.min()) / (img.max() - img.min() + 1e-12)  # (C, H, W) in [0, 1] for display
    shown = img[0] if img.size(0) == 1 else img.permute(1, 2, 0)
    heat = s.integrated_gradients.abs().sum(0)  # (H, W)
    fig = new_figure(7.5, 2.9)
    axes = fig.subplots(1, 3)
    cmap = "gray" if img.size(0) == 1 else None
    axes[0].imshow(shown.numpy(), cmap=cmap)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(heat.numpy(), cmap="inferno")
    axes[1].set_title("|integrated gradients|", fontsize=9)
    axes[2].imshow(shown.numpy(), cmap=cmap)
    axes[2].imshow(heat.numpy(), cmap="inferno", alpha=0.55)
    axes[2].set_title(f"'{s.label}' (p = {s.probability:.3f})", fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=90)


def explain_image_run(
    model: nn.Module,
    run_dir: str | os.PathLike[str],
    index: int,
    out_dir: str | os.PathLike[str],
    target: str | None = None,
    n_steps: int = 64,
) -> ImageSaliency:
    """Integrated gradients for validation image ``index`` of an image run (rebuilt from run.yaml, as
    ``zeroforge evaluate`` does) -> ``saliency.png`` and ``saliency.json`` in ``out_dir``."""
    from zeroforge.config import read_run_recipe
    from zeroforge.data.builders import DataContext
    from zeroforge.data.images import image_classification_data

    recipe = read_run_recipe(run_dir)
    data = image_classification_data(recipe, DataContext(Path(run_dir)))
    pixels = torch.cat([b["pixel_values"] for b in data.val])
    labels = torch.cat([b["labels"] for b in data.val])
    if not 0 <= index < len(pixels):
        raise ConfigError(
            f"--index: must be in [0, {len(pixels)}) (the run's validation images), got {index}"
        )
    names = list(data.label_names or [])
    s = image_saliency(model, pixels[index], target, n_steps, names)
    truth = names[int(labels[index])] if names else str(int(labels[index]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_image_saliency(
        pixels[index], s, out / "saliency.png", title=f"validation image {index} (true: {truth})"
    )
    summary = {k: v for k, v in asdict(s).items() if k != "integrated_gradients"}
    atomic_write_json(out / "saliency.json", {"index": index, "true_label": truth, **summary})
    return s
