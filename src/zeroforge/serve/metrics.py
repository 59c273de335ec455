"""The Prometheus metrics of one server, in a registry of its own (two apps in one process stay apart):
answers by route and status, requests in flight, generated tokens, latency, time to the first token,
and, for a generating model, the scheduler's queue depth, running rows and tokens per second."""

from __future__ import annotations

import time

from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from zeroforge.serve.batching import BatchScheduler, Event, GenerationRequest


class ServeMetrics:
    def __init__(self, scheduler: BatchScheduler | None) -> None:
        self.registry = registry = CollectorRegistry()
        self.answers = Counter(
            "zeroforge_requests", "HTTP requests answered", ["route", "status"], registry=registry
        )
        self.tokens = Counter("zeroforge_generated_tokens", "Tokens generated", registry=registry)
        self.latency = Histogram(
            "zeroforge_request_latency_seconds", "Time to the last token", registry=registry
        )
        self.first_token = Histogram(
            "zeroforge_time_to_first_token_seconds", "Time to the first token", registry=registry
        )
        self.in_flight = Gauge("zeroforge_requests_in_flight", "Requests being answered", registry=registry)
        if scheduler is not None:
            queued = Gauge(
                "zeroforge_queue_depth", "Generation requests waiting for a row", registry=registry
            )
            queued.set_function(lambda: scheduler.queued)
            running = Gauge(
                "zeroforge_running_sequences", "Rows of the running batch in use", registry=registry
            )
            running.set_function(lambda: scheduler.running)
            rate = Gauge(
                "zeroforge_tokens_per_second", "Tokens generated per second, last 10 s", registry=registry
            )
            rate.set_function(scheduler.tokens_per_second)

    def finished(self, request: GenerationRequest, last: Event) -> None:
        """Record a generation that ended with the event ``last``."""
        self.tokens.inc(last.completion_tokens)
        self.latency.observe(time.perf_counter() - request.submitted)
        if request.first_token_at is not None:
            self.first_token.observe(request.first_token_at - request.submitted)

    def exposition(self) -> Response:
        """Prometheus's text format, the answer of ``GET /metrics``."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
