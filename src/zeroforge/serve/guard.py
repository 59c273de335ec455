"""What stands between a client and a route: the refusals before routing (body size, API key), the count
of every answer by route and status, the body read under the size limit, the cap on requests in flight,
and the handlers that answer every error as OpenAI's JSON error object."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge
from starlette.exceptions import HTTPException as StarletteHTTPException

from zeroforge.serve.protocol import ApiError

OPEN_PATHS = frozenset({"/health", "/", "/runs", "/favicon.ico"})
"""Paths answered without the API key (besides ``/static/``): liveness and the pages."""


def too_large(max_body_bytes: int) -> ApiError:
    return ApiError(413, f"the request body is over the limit of {max_body_bytes} bytes")


def refusal(path: str, headers: dict[str, str], max_body_bytes: int, api_key: str | None) -> ApiError | None:
    """Why a request is refused before it reaches a route: its size, or its API key."""
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
        return too_large(max_body_bytes)
    if api_key and path not in OPEN_PATHS and not path.startswith("/static/"):
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

    def __init__(self, app: Any, max_body_bytes: int, api_key: str | None, answers: Counter) -> None:
        self.app, self.max_body_bytes, self.api_key, self.answers = app, max_body_bytes, api_key, answers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path.startswith(("/v1/", "/api/")) or path in OPEN_PATHS | {"/metrics"} else "other"
        status = [500]

        async def counted(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            error = refusal(path, headers, self.max_body_bytes, self.api_key)
            if error is None:
                await self.app(scope, receive, counted)
            else:
                await JSONResponse(error.body(), status_code=error.status)(scope, receive, counted)
        finally:
            self.answers.labels(route, str(status[0])).inc()


async def read_body(request: Request, max_body_bytes: int) -> dict[str, Any]:
    """The JSON body, read with the size limit enforced also where no Content-Length was sent."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise too_large(max_body_bytes)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


class InFlight:
    """Counts the requests being answered; over ``limit`` a request is answered 429."""

    def __init__(self, limit: int, gauge: Gauge) -> None:
        self.limit, self.gauge, self.count = limit, gauge, 0

    def enter(self) -> None:
        """Count one more request; ``leave`` undoes it."""
        if self.count >= self.limit:
            raise ApiError(
                429, f"too many requests in flight (limit {self.limit}); retry later", type="rate_limit_error"
            )
        self.count += 1
        self.gauge.inc()

    def leave(self) -> None:
        self.count -= 1
        self.gauge.dec()


def add_error_handlers(app: FastAPI) -> None:
    """Answer ``ApiError``, FastAPI's validation errors and Starlette's HTTP errors as OpenAI's JSON."""

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
