"""The HTTP server: OpenAI's API for one model, a playground page, metrics.

Routes (OpenAI's shapes; unknown request fields are ignored, as OpenAI does):

    POST /v1/chat/completions   the model's chat template; ``stream: true`` sends server-sent events
    POST /v1/completions        plain text continuation (also streamed)
    GET  /v1/models             the one model served
    POST /v1/embeddings         encoder models (the vectors of ``zeroforge.embed``)
    POST /v1/classify           classifier runs: the label and every label's probability
    GET  /health                liveness (no API key needed)
    GET  /metrics               Prometheus text: requests, queue depth, running rows, tokens/s, latency
    GET  /                      the playground (static files shipped in this package)
    GET  /runs                  live plots of the metrics.csv of every run under ``--runs``

Generation runs in ``BatchScheduler``'s thread; a handler only queues a request and awaits its
events, so the event loop never waits for the model. Every error is OpenAI's JSON
``{"error": {"message", "type", "param", "code"}}`` with status 400, 401, 404, 413 or 429.

This module holds the OpenAI routes and the glue to the scheduler; ``guard.py`` refuses requests before
they reach a route, ``pages.py`` serves the playground and the run plots, ``metrics.py`` the counters.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from zeroforge.errors import ZeroforgeError

try:
    import prometheus_client  # noqa: F401  (metrics.py needs it; checked here with the rest of the extra)
    from fastapi import FastAPI, Request
    from fastapi.responses import Response, StreamingResponse
    from starlette.background import BackgroundTask
except ImportError as err:
    raise ZeroforgeError(f"serve needs the [serve] extra (pip install 'zeroforge[serve]'): {err}") from None

import zeroforge.serve.protocol as proto
from zeroforge.serve.batching import BatchScheduler, Event, GenerationRequest, QueueFull, SamplingSettings
from zeroforge.serve.guard import Guard, InFlight, add_error_handlers, read_body
from zeroforge.serve.metrics import ServeMetrics
from zeroforge.serve.pages import add_pages
from zeroforge.serve.protocol import ApiError, choice, parse, usage

ModelKind = Literal["generate", "embed", "classify"]


@dataclass
class ServeLimits:
    """What one request may ask for; anything beyond is answered with an error, not served."""

    max_prompt_tokens: int = 2048
    max_tokens: int = 1024
    """The largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = 256
    """``max_tokens`` when a request does not say."""
    max_concurrent: int = 64
    """Requests in flight at once (running and waiting); more get 429."""
    max_batch: int = 16
    """Rows of the running batch (continuous batching); 1 serves one request at a time."""
    max_queue: int = 64
    """Generation requests waiting for a row; more get 429."""
    max_body_bytes: int = 1_000_000
    max_inputs: int = 256
    """Texts in one embeddings or classify request."""
    max_length: int | None = None
    """Prompt + max_tokens of one request, and the KV cache's length (default: 2048, at most the context)."""

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_tokens", "default_max_tokens", "max_concurrent", "max_batch"):
            if getattr(self, name) < 1:
                raise ZeroforgeError(f"serve: {name} must be >= 1, got {getattr(self, name)}")


def model_kind(model: nn.Module) -> ModelKind:
    """What a model serves: a classifier's labels, an encoder's embeddings, or generated text."""
    from zeroforge.models.classifier import SequenceClassifier

    if isinstance(model, SequenceClassifier):
        return "classify"
    if hasattr(model, "sentence_embedding"):  # the contract of zeroforge.embed
        return "embed"
    return "generate"


def create_app(
    model: nn.Module,
    tokenizer: Any,
    model_id: str,
    limits: ServeLimits | None = None,
    api_key: str | None = None,
    runs_dir: str | Path | None = None,
) -> Any:
    """A FastAPI app serving ``model`` under the name ``model_id``. Close it with ``app.state.close()``
    (the lifespan does so when uvicorn stops)."""
    limits = limits or ServeLimits()
    kind = model_kind(model)
    if tokenizer is None:
        raise ZeroforgeError(f"serve: {model_id} has no tokenizer; serving text needs one")
    model.eval()
    scheduler = (
        BatchScheduler(model, tokenizer, limits.max_batch, limits.max_queue, limits.max_length)
        if kind == "generate"
        else None
    )
    runs_root = Path(runs_dir).resolve() if runs_dir is not None else None
    encoder_lock = asyncio.Lock()  # embeddings/classification run one batch at a time in a worker thread
    created = int(time.time())

    metrics = ServeMetrics(scheduler)
    in_flight = InFlight(limits.max_concurrent, metrics.in_flight)

    def close() -> None:
        if scheduler is not None:
            scheduler.close()

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        close()

    app = FastAPI(title=f"zeroforge: {model_id}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.close = close
    app.state.scheduler = scheduler
    app.state.kind = kind
    add_error_handlers(app)
    app.add_middleware(Guard, max_body_bytes=limits.max_body_bytes, api_key=api_key, answers=metrics.answers)
    add_pages(app, runs_root)

    async def body_of(request: Request, request_type: type[Any]) -> Any:
        """The request's JSON body read as ``request_type`` (one of ``protocol``'s requests)."""
        return parse(request_type, await read_body(request, limits.max_body_bytes))

    def check_model(name: str | None) -> None:
        if name not in (None, "", model_id):
            raise ApiError(
                404,
                f"model {name!r} is not served here (this server serves {model_id!r})",
                code="model_not_found",
            )

    def need(wanted: ModelKind, route: str) -> None:
        if kind != wanted:
            uses = {
                "generate": "/v1/chat/completions or /v1/completions",
                "embed": "/v1/embeddings",
                "classify": "/v1/classify",
            }
            raise ApiError(
                400, f"{route}: {model_id} is a {kind} model; use {uses[kind]}", code="unsupported_model"
            )

    # ------------------------------------------------------------------ generation

    def settings_of(body: Any) -> SamplingSettings:
        if body.n != 1:
            raise ApiError(400, f"n: only n=1 is supported, got {body.n}", param="n")
        max_tokens = (
            body.max_completion_tokens
            if getattr(body, "max_completion_tokens", None) is not None
            else body.max_tokens
        )
        if max_tokens is None:
            max_tokens = min(limits.default_max_tokens, limits.max_tokens)
        if max_tokens > limits.max_tokens:
            raise ApiError(
                400, f"max_tokens: at most {limits.max_tokens}, got {max_tokens}", param="max_tokens"
            )
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        try:
            return SamplingSettings(
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=None if body.top_p in (None, 1.0) else body.top_p,
                top_k=body.top_k,
                stop=stop[:4],
                seed=body.seed,
            )
        except ZeroforgeError as err:
            param = str(err).split(":")[0]
            raise ApiError(400, str(err), param=param) from None

    def encode(text: str) -> list[int]:
        from zeroforge.generation import encode_prompt

        try:
            ids = encode_prompt(tokenizer, text, getattr(tokenizer, "eos_id", None))
        except ZeroforgeError as err:
            raise ApiError(400, str(err)) from None
        if len(ids) > limits.max_prompt_tokens:
            raise ApiError(
                400,
                f"the prompt has {len(ids)} tokens; this server accepts at most {limits.max_prompt_tokens}",
                param="messages",
                code="context_length_exceeded",
            )
        return ids

    async def start(
        ids: list[int], settings: SamplingSettings
    ) -> tuple[GenerationRequest, asyncio.Queue[Event]]:
        assert scheduler is not None
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        request = GenerationRequest(
            ids, settings, lambda event: loop.call_soon_threadsafe(events.put_nowait, event)
        )
        try:
            scheduler.submit(request)
        except QueueFull as err:
            raise ApiError(429, str(err), type="rate_limit_error") from None
        except ZeroforgeError as err:
            raise ApiError(400, str(err), param="max_tokens", code="context_length_exceeded") from None
        return request, events

    async def events_of(request: GenerationRequest, events: asyncio.Queue[Event]) -> AsyncIterator[Event]:
        """The request's events up to its end; leaving early (a disconnect) cancels its row."""
        finished = False
        try:
            while True:
                event = await events.get()
                if event.finish_reason is not None:
                    finished = True
                    metrics.finished(request, event)
                    yield event
                    return
                yield event
        finally:
            if not finished:
                request.cancel()

    async def generate(
        http_request: Request, ids: list[int], settings: SamplingSettings, stream: bool, chat: bool
    ) -> Any:
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        obj = "chat.completion" if chat else "text_completion"
        now = int(time.time())
        in_flight.enter()  # left when the answer is complete: below, or at the end of the stream
        try:
            request, events = await start(ids, settings)
        except BaseException:
            in_flight.leave()
            raise

        if not stream:

            async def watch() -> None:  # a client that hangs up stops its sequence
                while not await http_request.is_disconnected():
                    await asyncio.sleep(0.1)
                request.cancel()

            watcher = asyncio.create_task(watch())
            try:
                pieces, end = [], Event()
                async for event in events_of(request, events):
                    pieces.append(event.text)
                    end = event
            finally:
                watcher.cancel()
                in_flight.leave()
            if end.finish_reason == "error":
                raise ApiError(500, f"generation failed: {end.error}", type="server_error")
            return {
                "id": ident,
                "object": obj,
                "created": now,
                "model": model_id,
                "choices": [choice("".join(pieces), end.finish_reason, chat, delta=False)],
                "usage": usage(len(ids), end.completion_tokens),
            }

        def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
            body = {
                "id": ident,
                "object": obj + ("" if not chat else ".chunk"),
                "created": now,
                "model": model_id,
            }
            body["choices"] = choices
            body.update(extra or {})
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def sse() -> AsyncIterator[str]:
            try:
                if chat:
                    yield chunk(
                        [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
                    )
                async for event in events_of(request, events):
                    if event.finish_reason == "error":
                        yield f"data: {json.dumps(ApiError(500, f'generation failed: {event.error}', type='server_error').body())}\n\n"
                        break
                    if event.text:
                        yield chunk([choice(event.text, None, chat, delta=True)])
                    if event.finish_reason is not None:
                        final = choice(None if chat else "", event.finish_reason, chat, delta=True)
                        yield chunk([final], {"usage": usage(len(ids), event.completion_tokens)})
                yield "data: [DONE]\n\n"
            finally:
                release()

        released = False

        def release() -> None:
            """Once per request: at the end of the stream, or after the response when the client left
            before the stream began (then the generator above never ran)."""
            nonlocal released
            if not released:
                released = True
                request.cancel()  # no effect on a request that already finished
                in_flight.leave()

        return StreamingResponse(
            sse(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
            background=BackgroundTask(release),
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        from zeroforge.chat import render_chat

        body = await body_of(request, proto.ChatCompletionRequest)
        check_model(body.model)
        need("generate", "/v1/chat/completions")
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise ApiError(
                400, f"{model_id} has no chat template; use /v1/completions", code="no_chat_template"
            )
        settings = settings_of(body)
        specials = getattr(tokenizer, "specials", {})
        variables = {f"{role}_token": token for role, token in specials.items()}
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            prompt = render_chat(template, messages, add_generation_prompt=True, **variables)
        except ZeroforgeError as err:
            raise ApiError(400, str(err), param="messages") from None
        return await generate(request, encode(prompt), settings, body.stream, chat=True)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Any:
        body = await body_of(request, proto.CompletionRequest)
        check_model(body.model)
        need("generate", "/v1/completions")
        if isinstance(body.prompt, list):
            if len(body.prompt) != 1:
                raise ApiError(400, "prompt: one prompt per request (a string)", param="prompt")
            body.prompt = body.prompt[0]
        settings = settings_of(body)
        return await generate(request, encode(body.prompt), settings, body.stream, chat=False)

    # ------------------------------------------------------------------ encoders and classifiers

    def texts_of(value: Any) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts or len(texts) > limits.max_inputs:
            raise ApiError(400, f"input: 1 to {limits.max_inputs} texts, got {len(texts)}", param="input")
        return texts

    async def on_model(fn: Any, *args: Any) -> Any:
        in_flight.enter()
        try:
            async with encoder_lock:
                return await asyncio.to_thread(fn, *args)
        except ZeroforgeError as err:
            raise ApiError(400, str(err), param="input") from None
        finally:
            in_flight.leave()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        from zeroforge.embedding import embed

        body = await body_of(request, proto.EmbeddingRequest)
        check_model(body.model)
        need("embed", "/v1/embeddings")
        texts = texts_of(body.input)
        vectors = await on_model(lambda: embed(model, texts, tokenizer=tokenizer))
        n_tokens = sum(len(ids) + 2 for ids in tokenizer.encode_batch(texts))
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors.tolist())
            ],
            "model": model_id,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }

    label_names = list(getattr(getattr(model, "config", None), "label_names", None) or [])

    def classify_texts(texts: list[str]) -> Any:
        import numpy as np

        from zeroforge.data.tables import LabelledData, encode_texts
        from zeroforge.eval.evaluate import classifier_probabilities

        names = label_names or [f"LABEL_{i}" for i in range(model.config.n_labels)]
        data = LabelledData(texts, np.zeros(len(texts), dtype=np.int64), names, source="input")
        encoded = encode_texts(data, tokenizer, model.context_length)
        return names, classifier_probabilities(model, encoded, pad_id=getattr(tokenizer, "pad_id", None) or 0)

    @app.post("/v1/classify")
    async def classify(request: Request) -> dict[str, Any]:
        body = await body_of(request, proto.ClassifyRequest)
        check_model(body.model)
        need("classify", "/v1/classify")
        names, probs = await on_model(classify_texts, texts_of(body.input))
        data = []
        for i, row in enumerate(probs.tolist()):
            best = max(range(len(row)), key=row.__getitem__)
            data.append({"index": i, "label": names[best], "probabilities": dict(zip(names, row))})
        return {"object": "list", "model": model_id, "data": data}

    # ------------------------------------------------------------------ service routes

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_id, "kind": kind}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": model_id, "object": "model", "created": created, "owned_by": "zeroforge"}
        return {"object": "list", "data": [entry]}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return metrics.exposition()

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {
            "model": model_id,
            "kind": kind,
            "chat": bool(getattr(tokenizer, "chat_template", None)),
            "labels": label_names,
            "runs": runs_root is not None,
            "limits": {"max_tokens": limits.max_tokens, "default_max_tokens": limits.default_max_tokens},
        }

    return app
