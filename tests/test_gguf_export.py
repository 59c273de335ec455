"""GGUF export: files that gguf.GGUFReader reads with the expected metadata and tensor types, that
zeroforge's own loader turns back into the same model (f16 logits within 1e-3), and a lossless f16
round trip GGUF -> zeroforge -> GGUF -> zeroforge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.tiny_corpus import TINY_TEXT

from zeroforge.cli import main
from zeroforge.registry import create_model
from zeroforge.tokenizers.bpe import PretrainedTokenizer, train_bpe
from zeroforge.tokenizers.char import CharTokenizer
from zeroforge.weights.gguf import load_gguf
from zeroforge.weights.gguf_export import write_gguf

gguf = pytest.importorskip("gguf")
PROMPT = "First Citizen:\nAll:"


def _llama_with_chat_tokenizer() -> tuple[torch.nn.Module, PretrainedTokenizer]:
    bpe = train_bpe(TINY_TEXT, 300)
    bpe.tokenizer.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    tok = PretrainedTokenizer(bpe.tokenizer, {"eos": "<|im_end|>", "bos": "<|im_start|>"}, template)
    torch.manual_seed(0)
    model = create_model(
        "llama", n_layer=2, n_head=4, n_kv_head=2, n_embd=64, intermediate_size=128,
        vocab_size=tok.vocab_size, block_size=64,
    )  # fmt: skip
    return model.eval(), tok


def _gpt_char() -> tuple[torch.nn.Module, CharTokenizer]:
    tok = CharTokenizer.from_text(TINY_TEXT)
    torch.manual_seed(0)
    model = create_model("gpt", n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=tok.vocab_size)
    return model.eval(), tok


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_f16_read_back_by_gguf_and_by_zeroforge(tmp_path: Path, family: str) -> None:
    model, tok = _llama_with_chat_tokenizer() if family == "llama" else _gpt_char()
    path = write_gguf(model, tok, tmp_path / "m.gguf", "f16")
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    assert meta["general.architecture"] == ("llama" if family == "llama" else "gpt2")
    assert (
        meta["tokenizer.ggml.model"] == "gpt2"
        and len(meta["tokenizer.ggml.tokens"]) == model.config.vocab_size
    )
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "F16" and types["output_norm.weight"] == "F32"
    if family == "llama":
        assert meta["tokenizer.chat_template"] == tok.chat_template
        assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_id
        assert meta["llama.attention.head_count_kv"] == 2
        assert "output.weight" not in types  # tied: llama.cpp uses token_embd
    else:
        assert types["blk.0.attn_qkv.bias"] == "F32" and types["blk.1.ffn_down.weight"] == "F16"
    loaded, loaded_tok = load_gguf(path)
    ids = torch.tensor([tok.encode(PROMPT)])
    assert loaded_tok.encode(PROMPT) == ids[0].tolist()  # the same ids from the embedded vocabulary
    with torch.no_grad():
        diff = (loaded(input_ids=ids).logits - model(input_ids=ids).logits).abs().max()
    assert diff < 1e-3


@pytest.mark.parametrize("kind", ["q8_0", "q4_0"])
def test_quantised_types_and_closeness(tmp_path: Path, kind: str) -> None:
    model, tok = _llama_with_chat_tokenizer()
    path = write_gguf(model, tok, tmp_path / "m.gguf", kind)
    reader = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == kind.upper() and types["blk.0.attn_norm.weight"] == "F32"
    assert path.stat().st_size < (write_gguf(model, tok, tmp_path / "f.gguf", "f16")).stat().st_size
    loaded, _ = load_gguf(path)
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        ref, out = model(input_ids=ids).logits, loaded(input_ids=ids).logits
    assert (out - ref).norm() / ref.norm() < (0.02 if kind == "q8_0" else 0.2)


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_f16_round_trip_is_lossless(tmp_path: Path, family: str) -> None:
    model, tok = _llama_with_chat_tokenizer() if family == "llama" else _gpt_char()
    first = write_gguf(model, tok, tmp_path / "a.gguf", "f16")
    once, once_tok = load_gguf(first)
    second = write_gguf(once, once_tok, tmp_path / "b.gguf", "f16")
    twice, _ = load_gguf(second)
    a, b = gguf.GGUFReader(str(first)), gguf.GGUFReader(str(second))
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors):
        assert ta.tensor_type == tb.tensor_type and np.array_equal(
            np.asarray(ta.data), np.asarray(tb.data)
        ), ta.name
    for (ka, va), (kb, vb) in zip(once.state_dict().items(), twice.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_export_gguf_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, tiny_corpus: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    tiny = [
        "model.name=gpt-tiny",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.block_size=8",
        "train.progress=false",
    ]
    assert main(["pretrain", f"data.source={tiny_corpus}", *tiny, "train.name=g"]) == 0
    assert main(["export-gguf", "runs/g", "g.gguf", "--type", "q8_0"]) == 0
    assert "exported runs/g -> g.gguf (q8_0" in capsys.readouterr().out
    import zeroforge

    model, tok = zeroforge.load("g.gguf")
    assert type(model).__name__ == "GPT" and tok is not None
    capsys.readouterr()
    assert main(["quantize", "runs/g", "gq", "--bits", "8"]) == 0
    capsys.readouterr()
    assert main(["export-gguf", "gq", "x.gguf"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "zeroforge-quantised model" in err and not Path("x.gguf").exists()


@pytest.mark.network
def test_smollm2_f16_export_keeps_logits_and_chat_template(tmp_path: Path) -> None:
    import zeroforge

    model, tok = zeroforge.load("smollm2-135m-instruct")
    path = zeroforge.export_gguf("smollm2-135m-instruct", tmp_path / "smol.gguf", "f16")
    loaded, loaded_tok = zeroforge.load(path)
    assert loaded_tok.chat_template == tok.chat_template
    ids = torch.tensor([tok.encode("The capital of France is")])
    assert loaded_tok.encode("The capital of France is") == ids[0].tolist()
    with torch.no_grad():
        ref, out = model(input_ids=ids).logits, loaded(input_ids=ids).logits
    # 30 layers of f16-rounded weights (the tiny models above hold 1e-3 absolute)
    assert (out - ref).abs().max() < 2e-3 * ref.abs().max()
    assert torch.equal(out.argmax(-1), ref.argmax(-1))
