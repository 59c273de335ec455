"""The HTTP API in-process (Starlette's TestClient): OpenAI's shapes, streaming, usage counts, the
same text as ``zeroforge.generate`` and the same vectors as ``zeroforge.embed``, classifier
probabilities, metrics, and every bad request answered with OpenAI's JSON error while the server
keeps serving."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from zeroforge.chat import render_chat
from zeroforge.embedding import embed
from zeroforge.generation import generate
from zeroforge.serve import load_app
from zeroforge.weights import load

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the user asked"}]


@pytest.fixture(scope="module")
def chat(chat_dir):
    with TestClient(load_app(chat_dir, max_prompt_tokens=100, max_tokens=64, max_body_bytes=4000)) as client:
        yield client


@pytest.fixture(scope="module")
def reference(chat_dir):
    return load(chat_dir)


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]


def test_chat_completion_matches_generate_with_usage(chat, reference):
    model, tok = reference
    r = chat.post(
        "/v1/chat/completions",
        json={
            "model": "tiny-chat",
            "messages": MESSAGES,
            "max_tokens": 12,
            "temperature": 0,
            "logit_bias": {},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    prompt = render_chat(tok.chat_template, MESSAGES, True, bos_token="<|im_start|>", eos_token="<|im_end|>")
    expected = generate(model, tok, prompt, max_new_tokens=12, temperature=0)
    assert body["object"] == "chat.completion" and body["model"] == "tiny-chat"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": expected}
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(tok.encode(prompt))
    assert (
        1 <= usage["completion_tokens"] <= 12
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )


def test_streamed_chat_is_the_same_text_in_openai_chunks(chat):
    request = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    whole = chat.post("/v1/chat/completions", json=request).json()
    r = chat.post("/v1/chat/completions", json={**request, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 1  # token by token
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_completions_plain_and_streamed(chat, reference):
    model, tok = reference
    expected = generate(model, tok, "In the beginning", max_new_tokens=10, temperature=0)
    r = chat.post("/v1/completions", json={"prompt": "In the beginning", "max_tokens": 10, "temperature": 0})
    assert r.json()["choices"][0]["text"] == expected and r.json()["object"] == "text_completion"
    r = chat.post(
        "/v1/completions",
        json={"prompt": "In the beginning", "max_tokens": 10, "temperature": 0, "stream": True},
    )
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == expected
    seeded = {"prompt": "God", "max_tokens": 8, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    a, b = (chat.post("/v1/completions", json=seeded).json()["choices"][0]["text"] for _ in range(2))
    assert a == b == generate(model, tok, "God", 8, temperature=1.0, top_p=0.9, seed=7)
    stop = expected[2:5]
    r = chat.post(
        "/v1/completions",
        json={"prompt": "In the beginning", "max_tokens": 10, "temperature": 0, "stop": stop},
    )
    assert r.json()["choices"][0] == {
        "index": 0,
        "text": expected[: expected.find(stop)],
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_models_health_metrics(chat):
    assert chat.get("/health").json() == {"status": "ok", "model": "tiny-chat", "kind": "generate"}
    models = chat.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny-chat"] and models["object"] == "list"
    chat.post("/v1/completions", json={"prompt": "God", "max_tokens": 3})
    metrics = chat.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        "zeroforge_requests_total",
        "zeroforge_queue_depth",
        "zeroforge_tokens_per_second",
        "zeroforge_generated_tokens_total",
    ):
        assert name in text
    assert 'zeroforge_requests_total{route="/v1/completions",status="200"}' in text
    tokens = [line for line in text.splitlines() if line.startswith("zeroforge_generated_tokens_total ")]
    assert float(tokens[0].split()[1]) >= 3


BAD = [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None),
    ({"json": {"messages": MESSAGES, "max_tokens": -1}}, 400, "max_tokens"),
    ({"json": {"messages": MESSAGES, "max_tokens": 1000}}, 400, "max_tokens"),
    ({"json": {"messages": MESSAGES, "temperature": -0.5}}, 400, "temperature"),
    ({"json": {"messages": MESSAGES, "n": 2}}, 400, "n"),
    ({"json": {"messages": "hello"}}, 400, "messages"),
    ({"json": {"messages": [{"role": "user", "content": "the user asked " * 40}]}}, 400, "messages"),
    ({"json": {"messages": MESSAGES, "model": "../../etc/passwd"}}, 404, None),
    (
        {
            "content": b'{"messages": [], "pad": "' + b"x" * 5000 + b'"}',
            "headers": {"content-type": "application/json"},
        },
        413,
        None,
    ),
]


@pytest.mark.parametrize(("kwargs", "status", "param"), BAD)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(chat, kwargs, status, param):
    r = chat.post("/v1/chat/completions", **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    if param:
        assert error["param"] == param
    ok = chat.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 3})
    assert ok.status_code == 200


def test_unknown_routes_and_wrong_kinds(chat):
    r = chat.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = chat.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 400 and "use /v1/chat/completions" in r.json()["error"]["message"]
    assert chat.get("/static/../app.py").status_code == 404
    assert chat.get("/api/runs").status_code == 404  # started without --runs


def test_api_key_on_every_route_but_health(chat_dir, monkeypatch):
    with TestClient(load_app(chat_dir, api_key="s3cret")) as client:
        assert client.get("/health").status_code == 200
        for method, path in [("get", "/v1/models"), ("get", "/metrics"), ("post", "/v1/completions")]:
            r = getattr(client, method)(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            r = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
        r = client.post(
            "/v1/completions",
            json={"prompt": "God", "max_tokens": 2},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert r.status_code == 200


def test_queue_limit_is_429_and_the_server_recovers(chat_dir):
    with TestClient(load_app(chat_dir, max_batch=1, max_queue=0)) as client:
        scheduler = client.app.state.scheduler
        gate = threading.Event()  # decode steps wait here, so the first request keeps its row
        step = scheduler._step
        scheduler._step = lambda: (gate.wait(30), step())
        try:
            with client.stream(
                "POST",
                "/v1/completions",
                json={"prompt": "God", "max_tokens": 20, "temperature": 0, "stream": True},
            ) as first:
                deadline = time.monotonic() + 30
                while scheduler.running == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert scheduler.running == 1  # prefilled, now waiting at the gate: it holds the only row
                r = client.post("/v1/completions", json={"prompt": "God", "max_tokens": 2})
                assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
                gate.set()
                assert [line for line in first.iter_lines() if line][-1] == "data: [DONE]"
        finally:
            gate.set()
        assert client.post("/v1/completions", json={"prompt": "God", "max_tokens": 2}).status_code == 200


def test_embeddings_are_zeroforge_embed(encoder_dir):
    model, tok = load(encoder_dir)
    texts = ["In the beginning", "the user asked politely and the assistant answered"]
    with TestClient(load_app(encoder_dir)) as client:
        assert client.get("/api/info").json()["kind"] == "embed"
        r = client.post(
            "/v1/embeddings", json={"model": "tiny-encoder", "input": texts, "encoding_format": "float"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        got = np.array([d["embedding"] for d in body["data"]])
        np.testing.assert_allclose(got, embed(model, texts, tokenizer=tok).numpy(), atol=1e-6)
        assert body["usage"]["prompt_tokens"] == sum(len(tok.encode(t)) + 2 for t in texts)
        single = client.post("/v1/embeddings", json={"input": texts[0]}).json()
        np.testing.assert_allclose(single["data"][0]["embedding"], got[0], atol=1e-6)
        assert client.post("/v1/embeddings", json={"input": []}).status_code == 400
        assert client.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 400


def test_classify_gives_labels_and_probabilities(classifier_dir):
    from zeroforge.data.tables import LabelledData, encode_texts
    from zeroforge.eval.evaluate import classifier_probabilities

    model, tok = load(classifier_dir)
    texts = ["In the beginning God created", "politely", "the assistant answered the user"]
    data = LabelledData(texts, np.zeros(3, dtype=np.int64), ["neg", "neu", "pos"], source="t")
    expected = classifier_probabilities(
        model, encode_texts(data, tok, model.context_length), pad_id=tok.pad_id
    )
    with TestClient(load_app(classifier_dir)) as client:
        info = client.get("/api/info").json()
        assert info["kind"] == "classify" and info["labels"] == ["neg", "neu", "pos"]
        body = client.post("/v1/classify", json={"input": texts}).json()
    for row, probs in zip(body["data"], expected):
        assert list(row["probabilities"]) == ["neg", "neu", "pos"]
        np.testing.assert_allclose(list(row["probabilities"].values()), probs, atol=1e-6)
        assert row["label"] == ["neg", "neu", "pos"][int(np.argmax(probs))]
    assert len({row["label"] for row in body["data"]}) >= 1 and torch.is_tensor(torch.tensor(expected))


def test_runs_page_lists_and_reads_metrics(chat_dir, tmp_path):
    run = tmp_path / "runs" / "gpt-a"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("step,train_loss,val_loss\n1,4.5,\n2,4.0,4.2\n")
    (tmp_path / "runs" / "empty").mkdir()
    with TestClient(load_app(chat_dir, runs_dir=tmp_path / "runs")) as client:
        assert client.get("/api/runs").json() == {"runs": ["gpt-a"]}
        columns = client.get("/api/runs/gpt-a").json()["columns"]
        assert columns == {"step": [1.0, 2.0], "train_loss": [4.5, 4.0], "val_loss": [None, 4.2]}
        assert client.get("/api/runs/empty").status_code == 404
        assert client.get("/api/runs/..").status_code == 404
        assert "<canvas" in client.get("/runs").text


def test_cli_serve_binds_loopback_and_reads_the_key_from_the_environment(chat_dir, monkeypatch, capsys):
    import uvicorn

    from zeroforge.cli import main

    seen = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda app, host, port, log_level: seen.update(app=app, host=host, port=port)
    )
    monkeypatch.setenv("ZEROFORGE_API_KEY", "env-key")
    assert main(["serve", str(chat_dir), "--port", "8123", "--max-batch", "2"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    with TestClient(seen["app"]) as client:
        assert client.get("/v1/models").status_code == 401
        models = client.get("/v1/models", headers={"Authorization": "Bearer env-key"}).json()
        assert models["data"][0]["id"] == "tiny-chat" and client.app.state.scheduler.max_batch == 2
    assert main(["serve", str(chat_dir / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
