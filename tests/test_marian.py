"""The Hugging Face MarianMT layout: transformers.MarianMTModel loads a tiny random zeroforge model and
translates with the same greedy tokens; load_marian reads the folder back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zeroforge.beam import greedy_search
from zeroforge.errors import ConfigError
from zeroforge.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from zeroforge.weights.marian import load_marian, save_marian

transformers = pytest.importorskip("transformers")


def marian_shaped(seed: int = 0, activation: str = "relu") -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    config = Seq2SeqConfig.from_name("transformer-tiny", norm="post", activation=activation)
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 0.5)  # a non-zero bias, so its mapping is checked too
        model.output_layer.weight.mul_(4.0)  # peaked distributions: greedy is not decided by rounding
    return model


SRC = torch.tensor([[5, 6, 7, 8, 9, 1], [10, 11, 12, 1, 0, 0]])
MASK = (SRC != 0).long()


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformers_marian_computes_what_we_compute(tmp_path: Path, activation: str) -> None:
    model = marian_shaped(activation=activation)
    save_marian(model, None, tmp_path / "marian")
    theirs = transformers.MarianMTModel.from_pretrained(tmp_path / "marian").eval()
    dec = torch.tensor([[0, 20, 21, 22], [0, 30, 31, 32]])
    with torch.no_grad():
        ours_logits = model(SRC, MASK, dec).logits
        their_logits = theirs(input_ids=SRC, attention_mask=MASK, decoder_input_ids=dec).logits
    torch.testing.assert_close(their_logits, ours_logits, atol=1e-4, rtol=1e-4)
    ours = greedy_search(model, SRC, MASK, max_new_tokens=12)
    generated = theirs.generate(
        input_ids=SRC, attention_mask=MASK, do_sample=False, num_beams=1, max_new_tokens=12, min_new_tokens=0
    )
    for row, tokens in zip(generated.tolist(), ours, strict=True):
        assert row[0] == model.config.decoder_start_token_id
        assert row[1 : 1 + len(tokens)] == tokens


def test_load_marian_round_trips(tmp_path: Path) -> None:
    model = marian_shaped(seed=3)
    save_marian(model, None, tmp_path / "m")
    loaded, tokenizer = load_marian(tmp_path / "m")
    assert tokenizer is None
    dec = torch.tensor([[0, 20, 21], [0, 30, 31]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(SRC, MASK, dec).logits, model(SRC, MASK, dec).logits)


def test_a_pre_ln_model_is_not_a_marian(tmp_path: Path) -> None:
    model = Seq2SeqTransformer(Seq2SeqConfig.from_name("transformer-tiny"))
    with pytest.raises(ConfigError, match="not a Marian Transformer: norm='pre' \\(Marian: 'post'\\)"):
        save_marian(model, None, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_folder_with_tokenizer_loads_in_zeroforge_and_transformers(tmp_path: Path) -> None:
    from zeroforge.data.translation import train_translation_bpe
    from zeroforge.weights import load

    texts = ["In the beginning God created the heavens.", "EN el principio crió Dios los cielos."] * 10
    tok = train_translation_bpe(texts, vocab_size=280)
    torch.manual_seed(0)
    config = Seq2SeqConfig.from_name("transformer-tiny", norm="post", vocab_size=tok.vocab_size)
    save_marian(Seq2SeqTransformer(config), tok, tmp_path / "m")
    model, loaded_tok = load(tmp_path / "m")
    assert isinstance(model, Seq2SeqTransformer) and loaded_tok is not None
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "m")
    for text in texts[:2]:
        assert (
            theirs(text, add_special_tokens=False)["input_ids"] == tok.encode(text) == loaded_tok.encode(text)
        )
