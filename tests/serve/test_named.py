"""Shipped weights behind the server, by name: SmolLM2-135M-Instruct answers a chat question, and
all-MiniLM-L6-v2's embeddings are ``zeroforge.embed``'s (both read through ``zeroforge.datasets``)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

import zeroforge
from zeroforge.serve import load_app

pytestmark = pytest.mark.network


def test_smollm2_chat_by_name():
    with TestClient(load_app("smollm2-135m-instruct")) as client:
        question = [{"role": "user", "content": "What is the capital of France?"}]
        body = client.post(
            "/v1/chat/completions", json={"messages": question, "max_tokens": 12, "temperature": 0}
        )
        body = body.json()
    assert body["model"] == "smollm2-135m-instruct"
    assert (
        "Paris" in body["choices"][0]["message"]["content"] and body["choices"][0]["finish_reason"] == "stop"
    )


def test_minilm_embeddings_by_name():
    texts = ["A man is eating food.", "A man is eating a piece of bread."]
    with TestClient(load_app("all-minilm-l6-v2")) as client:
        data = client.post("/v1/embeddings", json={"input": texts}).json()["data"]
    got = np.array([d["embedding"] for d in data])
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, zeroforge.embed("all-minilm-l6-v2", texts).numpy(), atol=1e-6)
