"""``zeroforge serve``: one model behind OpenAI's HTTP API, with a playground page and metrics.

    zeroforge serve smollm2-135m-instruct            # http://127.0.0.1:8000/
    zeroforge serve runs/bert-mlm-nsp-kjv --port 8001 --api-key secret
    zeroforge serve runs/gpt-char-shakespeare --runs runs/   # also plots runs/*/metrics.csv live

``app.py`` holds the OpenAI routes, ``guard.py`` the request guard (body size, API key, counts),
``pages.py`` the playground and run-plot routes, ``metrics.py`` the Prometheus metrics, ``protocol.py``
OpenAI's request and answer shapes, ``batching.py`` the continuous-batching scheduler that runs the
model, ``static/`` the playground's files. docs/serving.md says how to call it and how to deploy it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zeroforge.errors import ZeroforgeError

__all__ = ["serve_model", "load_app"]

API_KEY_ENV = "ZEROFORGE_API_KEY"


def load_app(
    model: str | os.PathLike[str],
    api_key: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    **limits: Any,
) -> Any:
    """The FastAPI app serving ``model`` (anything ``zeroforge.load`` reads), named after it.
    ``limits``: ``ServeLimits`` fields (``max_batch=16``, ``max_tokens=1024``...)."""
    import zeroforge.models.causal_lm  # noqa: F401  (registers the fine-tuned families)
    import zeroforge.models.classifier  # noqa: F401
    from zeroforge.serve.app import ServeLimits, create_app
    from zeroforge.weights import NAMED, load

    loaded, tokenizer = load(model, device=device)
    model_id = str(model) if str(model) in NAMED and not Path(model).exists() else Path(model).resolve().name
    return create_app(loaded, tokenizer, model_id, ServeLimits(**limits), api_key=api_key, runs_dir=runs_dir)


def serve_model(
    model: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    log_level: str = "info",
    **limits: Any,
) -> None:
    """Serve ``model`` until interrupted (uvicorn). ``api_key`` defaults to $ZEROFORGE_API_KEY."""
    try:
        import uvicorn
    except ImportError:
        raise ZeroforgeError("serve needs the [serve] extra: pip install 'zeroforge[serve]'") from None
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    app = load_app(model, api_key=api_key, runs_dir=runs_dir, device=device, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
