"""embed: L2-normalised mean pooling equal to the per-text computation (and to transformers' BERT
states, which tests/models/test_bert.py matches), batching/padding invariance, run dirs, CLI, errors."""

import json

import numpy as np
import pytest
import torch

import zeroforge
from zeroforge.cli import main
from zeroforge.embedding import embed
from zeroforge.errors import ZeroforgeError
from zeroforge.models.bert import BertConfig, BertForPreTraining
from zeroforge.registry import create_model
from zeroforge.tokenizers import build_tokenizer, train_wordpiece
from zeroforge.train.checkpoint import save_model_files

TEXT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void. "
    "But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun. "
) * 10

TEXTS = [
    "In the beginning",
    "and the earth was without form, and void; and darkness",
    "soft!",
    "",
    "Juliet is the sun",
]


@pytest.fixture(scope="module")
def tok():
    return train_wordpiece([TEXT], vocab_size=120)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    m = BertForPreTraining(
        BertConfig(n_layer=2, n_head=2, n_embd=16, block_size=24, vocab_size=tok.vocab_size)
    )
    with torch.no_grad():  # weights far from the small init so pooling differences show
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m.eval()


def reference(model, tok, text: str) -> np.ndarray:
    """One text alone, no padding: mean of the last hidden states over its tokens, divided by the norm."""
    ids = torch.tensor([[tok.cls_id, *tok.encode(text)[: model.config.block_size - 2], tok.sep_id]])
    with torch.no_grad():
        hidden = model.bert(ids)[0].double().numpy()  # (T, C)
    v = hidden.mean(axis=0)
    return v / np.linalg.norm(v)


def test_embeddings_equal_the_per_text_computation(model, tok):
    out = embed(model, TEXTS, tokenizer=tok)
    assert out.shape == (len(TEXTS), 16) and out.dtype == torch.float32
    for row, text in zip(out, TEXTS):
        np.testing.assert_allclose(row.double().numpy(), reference(model, tok, text), atol=1e-5)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(TEXTS)))
    assert model.training is False


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_batching_and_padding_do_not_change_embeddings(model, tok, batch_size):
    torch.testing.assert_close(
        embed(model, TEXTS, batch_size=batch_size, tokenizer=tok),
        embed(model, TEXTS, tokenizer=tok),
        atol=1e-6,
        rtol=1e-5,
    )
    torch.testing.assert_close(
        embed(model, TEXTS[1], tokenizer=tok)[0], embed(model, TEXTS, tokenizer=tok)[1], atol=1e-6, rtol=1e-5
    )


def test_long_texts_are_truncated_with_a_counting_warning(model, tok):
    long = "the earth " * 40
    with pytest.warns(UserWarning, match=r"2 of 3 text\(s\) longer than 22 tokens were truncated"):
        out = embed(model, [long, "soft!", long + "and more"], tokenizer=tok)
    np.testing.assert_allclose(out[0].double().numpy(), reference(model, tok, long), atol=1e-5)


def test_from_a_run_directory_the_api_and_the_cli(model, tok, tmp_path, capsys):
    save_model_files(tmp_path, model, tok)
    expected = embed(model, TEXTS[:3], tokenizer=tok)
    torch.testing.assert_close(zeroforge.embed(str(tmp_path), TEXTS[:3]), expected)
    assert main(["embed", str(tmp_path), "--text", TEXTS[0], "--text", TEXTS[1], "--similarity"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dim"] == 16
    np.testing.assert_allclose(printed["embeddings"], expected[:2].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        printed["cosine_similarity"], (expected[:2] @ expected[:2].T).numpy(), atol=1e-3
    )
    assert main(["embed", str(tmp_path / "missing"), "--text", "x"]) == 2


def test_errors(model, tok):
    with pytest.raises(ZeroforgeError, match="pass tokenizer="):
        embed(model, ["x"])
    with pytest.raises(ZeroforgeError, match="GPT has no sentence embeddings"):
        embed(create_model("gpt-tiny"), ["x"], tokenizer=tok)
    with pytest.raises(ZeroforgeError, match="needs a WordPiece"):
        embed(model, ["x"], tokenizer=build_tokenizer("char", TEXT))
    assert embed(model, [], tokenizer=tok).shape == (0, 16)
