"""``zeroforge explain attention|saliency RUN``: load a run (or any model ``zeroforge.load`` reads) and
write its attention maps or saliency into ``RUN/explain`` (or ``--out``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from zeroforge.errors import ConfigError

What = Literal["attention", "saliency"]


def explain(
    model_path: str | os.PathLike[str],
    what: What,
    text: str | None = None,
    index: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    target: str | None = None,
    n_steps: int = 64,
) -> Path:
    """Attention maps for ``text``, or saliency for ``text`` (a text classifier) or validation image
    ``index`` (an image run); returns the folder written (default ``RUN/explain``)."""
    from zeroforge.tokenizers import require_tokenizer
    from zeroforge.weights import load

    if n_steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {n_steps}")
    model, tokenizer = load(model_path)
    name = Path(model_path).name
    default = Path(model_path) / "explain" if Path(model_path).is_dir() else Path(f"{name}-explain")
    out = Path(out_dir) if out_dir is not None else default
    if index is not None:
        if what != "saliency":
            raise ConfigError("--index: picks an image for saliency; attention takes --text")
        from zeroforge.explain.saliency import explain_image_run

        explain_image_run(model, model_path, index, out, target, n_steps)
        return out
    if text is None:
        raise ConfigError(f"explain {what}: give --text (or --index N for an image run's saliency)")
    tokenizer = require_tokenizer(tokenizer, str(model_path), f"explain {what}")
    if what == "attention":
        from zeroforge.explain.attention import explain_attention

        explain_attention(model, tokenizer, text, out, name)
    else:
        from zeroforge.explain.saliency import explain_text_saliency

        explain_text_saliency(model, tokenizer, text, out, target, n_steps)
    return out
