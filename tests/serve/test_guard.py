"""The request guard and the run-plot reader as plain functions: which requests are refused before a
route (size, API key, open paths), the cap on requests in flight, and a metrics.csv read as columns."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Gauge

from zeroforge.serve.guard import InFlight, refusal
from zeroforge.serve.pages import metrics_columns
from zeroforge.serve.protocol import ApiError


def test_refusal_by_size_and_key():
    assert refusal("/v1/models", {"content-length": "10"}, 100, None) is None
    assert refusal("/v1/models", {"content-length": "101"}, 100, None).status == 413
    assert refusal("/v1/models", {"content-length": "ten"}, 100, None).status == 413
    assert refusal("/v1/models", {}, 100, "k").status == 401
    assert refusal("/v1/models", {"authorization": "Bearer k"}, 100, "k") is None
    assert refusal("/v1/models", {"x-api-key": "k"}, 100, "k") is None
    assert refusal("/v1/models", {"authorization": "Bearer nope"}, 100, "k").code == "invalid_api_key"
    for open_path in ("/health", "/", "/runs", "/static/app.js"):
        assert refusal(open_path, {}, 100, "k") is None


def test_in_flight_cap_and_gauge():
    registry = CollectorRegistry()
    cap = InFlight(2, Gauge("in_flight", "requests being answered", registry=registry))
    cap.enter()
    cap.enter()
    with pytest.raises(ApiError) as err:
        cap.enter()
    assert err.value.status == 429 and registry.get_sample_value("in_flight") == 2
    cap.leave()
    cap.enter()
    assert cap.count == 2


def test_metrics_columns(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,note\n1,2.5,a\n2,,b\n")
    assert metrics_columns(path) == {"step": [1.0, 2.0], "loss": [2.5, None], "note": [None, None]}
    path.write_text("")
    assert metrics_columns(path) == {}
