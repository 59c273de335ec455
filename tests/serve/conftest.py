"""Tiny random models saved to temporary folders, as ``zeroforge serve`` loads them: a chat model
(Llama, ChatML template), a BERT encoder and a BERT classifier."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from serving_models import bert_parts, chat_model, randomized  # noqa: E402  (tests/serve/serving_models.py)


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory) -> Path:
    from zeroforge.weights import save_pretrained

    model, tokenizer = chat_model()
    path = tmp_path_factory.mktemp("models") / "tiny-chat"
    save_pretrained(model, tokenizer, path)
    return path


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory) -> Path:
    from zeroforge.weights.files import save_model_files

    model, tokenizer = bert_parts()
    path = tmp_path_factory.mktemp("models") / "tiny-encoder"
    path.mkdir()
    save_model_files(path, model, tokenizer)
    return path


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory) -> Path:
    from zeroforge.models.classifier import SequenceClassifier
    from zeroforge.weights.files import save_model_files

    body, tokenizer = bert_parts()
    model = SequenceClassifier.from_body(body, 3, label_names=["neg", "neu", "pos"])
    randomized(model, seed=3)
    path = tmp_path_factory.mktemp("models") / "tiny-classifier"
    path.mkdir()
    save_model_files(path, model, tokenizer)
    return path
