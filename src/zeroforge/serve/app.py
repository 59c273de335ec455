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
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from torch import nn

from zeroforge.errors import ZeroforgeError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from starlette.background import BackgroundTask
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as err:
    raise ZeroforgeError(f"serve needs the [serve] extra (pip install 'zeroforge[serve]'): {err}") from None

import zeroforge.serve.protocol as proto
from zeroforge.serve.batching import BatchScheduler, Event, GenerationRequest, QueueFull, SamplingSettings

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


class ApiError(Exception):
    """An error answered as OpenAI's JSON error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def model_kind(model: nn.Module) -> ModelKind:
    """What a model serves: a classifier's labels, an encoder's embeddings, or generated text."""
    from zeroforge.models.classifier import SequenceClassifier

    if isinstance(model, SequenceClassifier):
        return "classify"
    if hasattr(model, "sentence_embedding"):  # the contract of zeroforge.embed
        return "embed"
    return "generate"


STATIC = resources.files("zeroforge.serve") / "static"


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

    registry = CollectorRegistry()
    requests_total = Counter(
        "zeroforge_requests", "HTTP requests answered", ["route", "status"], registry=registry
    )
    tokens_total = Counter("zeroforge_generated_tokens", "Tokens generated", registry=registry)
    latency = Histogram("zeroforge_request_latency_seconds", "Time to the last token", registry=registry)
    first_token = Histogram(
        "zeroforge_time_to_first_token_seconds", "Time to the first token", registry=registry
    )
    in_flight = Gauge("zeroforge_requests_in_flight", "Requests being answered", registry=registry)
    if scheduler is not None:
        queued = Gauge("zeroforge_queue_depth", "Generation requests waiting for a row", registry=registry)
        queued.set_function(lambda: scheduler.queued)
        running = Gauge("zeroforge_running_sequences", "Rows of the running batch in use", registry=registry)
        running.set_function(lambda: scheduler.running)
        rate = Gauge(
            "zeroforge_tokens_per_second", "Tokens generated per second, last 10 s", registry=registry
        )
        rate.set_function(scheduler.tokens_per_second)
    state = {"in_flight": 0}

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

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = [str(x) for x in first.get("loc", ()) if x != "body"]
        if first.get("type") == "json_invalid":
            message = "the request body is not valid JSON"
        else:
            message = f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid')}"
        return JSONResponse(ApiError(400, message, param=".".join(where) or None).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if err.status_code == 404 else None
        message = (
            f"no route {request.method} {request.url.path}" if err.status_code == 404 else str(err.detail)
        )
        return JSONResponse(ApiError(err.status_code, message, code=code).body(), status_code=err.status_code)

    # ------------------------------------------------------------------ middleware: size, key, counts

    open_paths = {"/health", "/", "/runs", "/favicon.ico"}

    def refusal(path: str, headers: dict[str, str]) -> ApiError | None:
        """Why a request is refused before it reaches a route: its size, or its API key."""
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return ApiError(413, f"the request body is over the limit of {limits.max_body_bytes} bytes")
        if api_key and path not in open_paths and not path.startswith("/static/"):
            given = headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else headers.get("x-api-key", "")
            if given != api_key:
                return ApiError(
                    401, "invalid or missing API key (Authorization: Bearer KEY)", code="invalid_api_key"
                )
        return None

    class Guard:
        """Refuses oversized and unauthenticated requests and counts every answer by route and status.
        A plain ASGI middleware: it passes ``receive`` through untouched, so a route still sees the
        client hang up (Starlette's ``BaseHTTPMiddleware`` would hide that)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            path = scope["path"]
            route = (
                path if path.startswith(("/v1/", "/api/")) or path in open_paths | {"/metrics"} else "other"
            )
            status = [500]

            async def counted(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            try:
                error = refusal(path, headers)
                if error is None:
                    await self.app(scope, receive, counted)
                else:
                    await JSONResponse(error.body(), status_code=error.status)(scope, receive, counted)
            finally:
                requests_total.labels(route, str(status[0])).inc()

    app.add_middleware(Guard)

    async def read_body(request: Request) -> Any:
        """The JSON body, read with the size limit enforced also where no Content-Length was sent."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise ApiError(413, f"the request body is over the limit of {limits.max_body_bytes} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def parse(cls: Any, data: dict[str, Any]) -> Any:
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise ApiError(400, f"{where}: {first['msg']}", param=where or None) from None

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

    def enter() -> None:
        """Count a request in flight; over ``max_concurrent`` it is answered 429. ``leave`` undoes it."""
        if state["in_flight"] >= limits.max_concurrent:
            raise ApiError(
                429,
                f"too many requests in flight (limit {limits.max_concurrent}); retry later",
                type="rate_limit_error",
            )
        state["in_flight"] += 1
        in_flight.inc()

    def leave() -> None:
        state["in_flight"] -= 1
        in_flight.dec()

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
                    tokens_total.inc(event.completion_tokens)
                    latency.observe(time.perf_counter() - request.submitted)
                    if request.first_token_at is not None:
                        first_token.observe(request.first_token_at - request.submitted)
                    yield event
                    return
                yield event
        finally:
            if not finished:
                request.cancel()

    def usage(prompt: int, completion: int) -> dict[str, int]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def generate(
        http_request: Request, ids: list[int], settings: SamplingSettings, stream: bool, chat: bool
    ) -> Any:
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        obj = "chat.completion" if chat else "text_completion"
        now = int(time.time())
        enter()  # left when the answer is complete: below, or at the end of the stream
        try:
            request, events = await start(ids, settings)
        except BaseException:
            leave()
            raise

        def choice(text: str | None, finish: str | None, delta: bool) -> dict[str, Any]:
            if not chat:
                return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            if delta:
                return {
                    "index": 0,
                    "delta": {} if text is None else {"content": text},
                    "finish_reason": finish,
                }
            return {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}

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
                leave()
            if end.finish_reason == "error":
                raise ApiError(500, f"generation failed: {end.error}", type="server_error")
            return {
                "id": ident,
                "object": obj,
                "created": now,
                "model": model_id,
                "choices": [choice("".join(pieces), end.finish_reason, delta=False)],
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
                        yield chunk([choice(event.text, None, delta=True)])
                    if event.finish_reason is not None:
                        final = choice(None if chat else "", event.finish_reason, delta=True)
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
                leave()

        return StreamingResponse(
            sse(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
            background=BackgroundTask(release),
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        from zeroforge.chat import render_chat

        body = parse(proto.ChatCompletionRequest, await read_body(request))
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
        body = parse(proto.CompletionRequest, await read_body(request))
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
        enter()
        try:
            async with encoder_lock:
                return await asyncio.to_thread(fn, *args)
        except ZeroforgeError as err:
            raise ApiError(400, str(err), param="input") from None
        finally:
            leave()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        from zeroforge.embedding import embed

        body = parse(proto.EmbeddingRequest, await read_body(request))
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
        body = parse(proto.ClassifyRequest, await read_body(request))
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
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

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

    # ------------------------------------------------------------------ playground and run plots

    def page(name: str) -> FileResponse:
        with resources.as_file(STATIC / name) as path:
            return FileResponse(path)

    @app.get("/")
    async def index() -> FileResponse:
        return page("index.html")

    @app.get("/runs")
    async def runs_page() -> FileResponse:
        return page("runs.html")

    @app.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        if name not in {"app.js", "runs.js", "style.css"}:  # only the shipped files, never a path
            raise ApiError(404, f"no static file {name!r}", code="not_found")
        return page(name)

    def run_dirs() -> dict[str, Path]:
        if runs_root is None:
            raise ApiError(404, "this server was started without --runs", code="not_found")
        found = {p.parent.name: p.parent for p in runs_root.glob("*/metrics.csv")}
        if (runs_root / "metrics.csv").is_file():
            found[runs_root.name] = runs_root
        return dict(sorted(found.items()))

    @app.get("/api/runs")
    async def list_runs() -> dict[str, Any]:
        return {"runs": list(run_dirs())}

    @app.get("/api/runs/{name}")
    async def run_metrics(name: str) -> dict[str, Any]:
        dirs = run_dirs()
        if name not in dirs:  # a name from the listing, never a path from the request
            raise ApiError(404, f"no run {name!r} under the runs directory", code="not_found")
        with open(dirs[name] / "metrics.csv", newline="") as f:
            rows = list(csv.reader(f))
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        columns: dict[str, list[float | None]] = {h: [] for h in header}
        for row in body:
            for h, value in zip(header, row):
                try:
                    columns[h].append(float(value))
                except ValueError:
                    columns[h].append(None)
        return {"run": name, "columns": columns}

    return app
