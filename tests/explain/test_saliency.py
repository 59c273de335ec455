"""Saliency through Captum: integrated gradients are complete (they sum to f(x) - f(baseline)), input x
gradient matches embedding * d logit / d embedding done by hand, and the HTML/PNG/JSON are written."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("captum")

from zeroforge.explain.saliency import (  # noqa: E402
    explain_text_saliency,
    image_saliency,
    text_saliency,
    token_embedding,
)
from zeroforge.models.classifier import SequenceClassifier  # noqa: E402
from zeroforge.registry import create_model  # noqa: E402
from zeroforge.tokenizers import CharTokenizer, train_wordpiece  # noqa: E402

TEXTS = ["free prize call now to claim", "see you at lunch tomorrow", "win cash now text back", "ok thanks"]


def _bert_classifier() -> tuple[SequenceClassifier, object]:
    tok = train_wordpiece(TEXTS * 5, vocab_size=80)
    body = create_model(
        "bert", n_layer=2, n_head=2, n_embd=16, intermediate_size=32, vocab_size=tok.vocab_size, block_size=32
    )
    model = SequenceClassifier.from_body(body, 2, pooling="mean", label_names=["ham", "spam"])
    return model, tok


def test_integrated_gradients_complete_bert() -> None:
    torch.manual_seed(0)
    model, tok = _bert_classifier()
    s = text_saliency(model, tok, "free cash prize now", n_steps=128)
    assert s.tokens[0] == "[CLS]" and s.tokens[-1] == "[SEP]"
    assert s.label in ("ham", "spam")
    change = s.score - s.baseline_score
    assert abs(change) > 1e-4  # a real difference to explain
    assert sum(s.integrated_gradients) == pytest.approx(change, rel=0.01)
    assert s.completeness_gap < 0.01


def test_integrated_gradients_complete_gpt_with_target() -> None:
    torch.manual_seed(1)
    tok = CharTokenizer.from_text("abcdefgh xyz")
    body = create_model("gpt", n_layer=2, n_head=2, n_embd=16, vocab_size=tok.vocab_size, block_size=32)
    model = SequenceClassifier.from_body(body, 3)
    s = text_saliency(model, tok, "abc xyz", target="2", n_steps=128)
    assert s.label == "2" and len(s.tokens) == 7
    assert sum(s.integrated_gradients) == pytest.approx(s.score - s.baseline_score, rel=0.01)


def test_input_x_gradient_by_hand() -> None:
    torch.manual_seed(2)
    model, tok = _bert_classifier()
    s = text_saliency(model, tok, "see you at lunch", n_steps=8)
    ids = torch.tensor([[tok.cls_id, *tok.encode("see you at lunch"), tok.sep_id]])
    model.eval()
    kept: list[torch.Tensor] = []

    def keep(module, args, out):  # type: ignore[no-untyped-def]
        out.retain_grad()
        kept.append(out)

    hook = token_embedding(model).register_forward_hook(keep)
    logit = model(ids).logits[0, ["ham", "spam"].index(s.label)]
    hook.remove()
    logit.backward()
    by_hand = (kept[0] * kept[0].grad).sum(-1)[0]
    torch.testing.assert_close(torch.tensor(s.input_x_gradient), by_hand.detach(), rtol=1e-4, atol=1e-6)


def test_unknown_target_is_one_line_error() -> None:
    from zeroforge.errors import ConfigError

    model, tok = _bert_classifier()
    with pytest.raises(ConfigError, match="--target: 'eggs' is not one of the model's labels"):
        text_saliency(model, tok, "ok", target="eggs")


def test_explain_text_saliency_files(tmp_path) -> None:
    torch.manual_seed(3)
    model, tok = _bert_classifier()
    s = explain_text_saliency(model, tok, "win cash now", tmp_path, n_steps=16)
    saved = json.loads((tmp_path / "saliency.json").read_text())
    assert saved["tokens"] == s.tokens and len(saved["integrated_gradients"]) == len(s.tokens)
    page = (tmp_path / "saliency.html").read_text()
    assert page.count("<span") == len(s.tokens) and "cash" in page
    assert (tmp_path / "saliency.png").read_bytes()[:4] == b"\x89PNG"


def test_image_integrated_gradients_complete() -> None:
    torch.manual_seed(4)
    model = create_model("convnet", image_size=16, channels=[4, 8], hidden_sizes=[16], padding=2)
    pixels = torch.randn(1, 16, 16)
    s = image_saliency(model, pixels, n_steps=256)
    assert s.integrated_gradients.shape == (1, 16, 16)
    assert float(s.integrated_gradients.sum()) == pytest.approx(s.score - s.baseline_score, rel=0.01)
