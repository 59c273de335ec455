"""GGUF: dequantisation vs the gguf package, a tiny written GGUF vs transformers' gguf_file loader
(logits, tokenizer, chat template), errors, and the shipped SmolLM2-135M-Instruct (slow).

The tiny file is made here the way llama.cpp's convert_hf_to_gguf.py makes one from a random
transformers LlamaForCausalLM: llama.* metadata, q/k rows permuted, each tensor type in use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroforge.errors import DataError
from zeroforge.weights import gguf as zg
from zeroforge.weights import load_pretrained, save_pretrained

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402

TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TEXTS = ["Hello world, hello there!", "  two  spaces and\nnewlines\n\n", "<|im_start|>user\nhi<|im_end|>"]


# ----------------------------------------------------------------------------- dequantisation


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1])
def test_dequantize_matches_gguf_package(qtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 96)) * rng.uniform(0.01, 3.0, (6, 1))).astype(np.float32)
    raw = gguf.quants.quantize(x, qtype)
    ours = zg.dequantize(raw, int(qtype), (6, 96))
    ref = gguf.quants.dequantize(raw, qtype)
    assert ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy(), ref.reshape(6, 96).astype(np.float32))
    if qtype in (Q.Q4_0, Q.Q4_1):  # 4 bits: error within half a step of the block's range
        assert np.abs(ours.numpy() - x).max() < 0.2 * np.abs(x).max()


def llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf.py LlamaModel.permute (the transformation zeroforge undoes)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp_permute():
    w = torch.randn(3 * 16, 40)
    assert torch.equal(zg._unpermute(llama_cpp_permute(w, 3), 3), w)
    assert not torch.equal(llama_cpp_permute(w, 3), w)


# ----------------------------------------------------------------------------- a tiny GGUF file

transformers = pytest.importorskip("transformers")

QTYPES = {  # one of each supported type, on tensors whose rows are multiples of 32
    "token_embd": Q.Q8_0,
    "attn_q": Q.Q4_0,
    "attn_k": Q.Q4_1,
    "attn_v": Q.Q8_0,
    "attn_output": Q.F16,
    "ffn_gate": Q.Q4_1,
    "ffn_up": Q.Q4_0,
    "ffn_down": Q.Q8_0,
    "output": Q.F16,
}
HF_TO_GGUF = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def tiny_vocab() -> tuple[list[str], list[str], list[int]]:
    """A byte-level BPE trained on a few sentences, plus two ChatML control tokens."""
    from zeroforge.tokenizers import train_bpe

    tok = train_bpe(" ".join(TEXTS[:2]) * 20 + " the quick brown fox jumps over the lazy dog" * 20, 300)
    model = json.loads(tok.tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    tokens += ["<|im_start|>", "<|im_end|>"]
    types = [3 if t.startswith("<|") else 1 for t in tokens]
    return tokens, merges, types


def write_tiny_gguf(path: Path, qtypes: dict[str, Q] = QTYPES) -> transformers.LlamaConfig:
    tokens, merges, types = tiny_vocab()
    cfg = transformers.LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_chat_template(TEMPLATE)
    g = torch.Generator().manual_seed(1)
    for name, p in hf.state_dict().items():
        value = p.float() + 0.3 * torch.randn(p.shape, generator=g)  # far from init: every weight matters
        module, layer = name.removesuffix(".weight"), None
        if module.startswith("model.layers."):
            _, _, layer, module = module.split(".", 3)
        kind = HF_TO_GGUF[module]
        if kind == "attn_q":
            value = llama_cpp_permute(value, 4)
        elif kind == "attn_k":
            value = llama_cpp_permute(value, 2)
        gname = f"blk.{layer}.{kind}.weight" if layer is not None else f"{kind}.weight"
        qtype = qtypes.get(kind, Q.F32)
        arr = value.numpy().astype(np.float32)
        if qtype == Q.F32:
            w.add_tensor(gname, arr)
        elif qtype == Q.F16:
            w.add_tensor(gname, arr.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return cfg


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    return path


@pytest.fixture(scope="module")
def reference(tiny_gguf):
    pytest.importorskip("accelerate")  # transformers' gguf_file loader needs it
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    return model, tok


def test_tiny_gguf_logits_match_transformers(tiny_gguf, reference):
    model, tok = load_pretrained(tiny_gguf)
    assert model.config.n_kv_head == 2 and not model.config.tie_word_embeddings
    x = torch.randint(0, model.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x).logits, reference[0](x).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_tiny_gguf_tokenizer_and_template_match_transformers(tiny_gguf, reference):
    _, tok = load_pretrained(tiny_gguf)
    ref = reference[1]
    for text in TEXTS:
        assert tok.encode(text) == ref(text, add_special_tokens=False).input_ids, text
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_id == ref.eos_token_id and tok.token("bos") == ref.bos_token
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    from zeroforge.tokenizers.chat_template import render_chat

    ours = render_chat(tok.chat_template, messages, add_generation_prompt=True)
    assert ours == ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_digits_are_split_one_by_one_as_llama_cpp_smollm(tiny_gguf):
    _, tok = load_pretrained(tiny_gguf)
    pieces = [tok.decode([i]) for i in tok.encode("year 2024")]
    assert pieces[-4:] == ["2", "0", "2", "4"]


def test_dtype_is_applied_after_dequantisation(tiny_gguf):
    fp32, _ = load_pretrained(tiny_gguf)
    bf16, _ = load_pretrained(tiny_gguf, dtype="bfloat16")
    assert bf16.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(bf16.lm_head.weight, fp32.lm_head.weight.to(torch.bfloat16))


def test_gguf_converts_to_an_hf_folder_transformers_loads(tiny_gguf, reference, tmp_path):
    model, tok = load_pretrained(tiny_gguf)
    out = save_pretrained(model, tok, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    x = torch.tensor([tok.encode(TEXTS[0])])
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, reference[0](x).logits, atol=1e-5, rtol=1e-5)
    assert hf_tok(TEXTS[2], add_special_tokens=False).input_ids == tok.encode(TEXTS[2])
    messages = [{"role": "user", "content": "hi"}]
    assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_convert_cli_writes_the_hf_folder(tiny_gguf, tmp_path, capsys):
    from zeroforge.cli import build_parser

    args = build_parser().parse_args(["convert", str(tiny_gguf), str(tmp_path / "out")])
    assert args.func(args) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"


# ----------------------------------------------------------------------------- errors


def test_unsupported_quantisation_type_is_named(tmp_path):
    path = tmp_path / "q5.gguf"
    write_tiny_gguf(path, {**QTYPES, "ffn_up": Q.Q5_0})
    with pytest.raises(DataError, match=r"tensor blk\.0\.ffn_up\.weight uses quantisation type Q5_0") as err:
        load_pretrained(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_not_a_gguf_file_and_truncated_gguf(tmp_path, tiny_gguf):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(DataError, match="not a GGUF file"):
        load_pretrained(bad)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.gguf"):
        load_pretrained(cut)


# ----------------------------------------------------------------------------- the shipped SmolLM2 (slow)


@pytest.fixture(scope="module")
def smollm2():
    return load_pretrained("smollm2-135m-instruct")


@pytest.mark.network
@pytest.mark.slow
def test_smollm2_logits_match_transformers_gguf(smollm2):
    # Both dequantise the same Q4_1/Q8_0 blocks to fp32, so only summation order differs.
    from zeroforge.weights import resolve

    pytest.importorskip("accelerate")  # transformers' gguf_file loader needs it
    path = resolve("smollm2-135m-instruct")
    model, tok = smollm2
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = "The capital of France is Paris. The quick brown fox jumps over the lazy dog."
    ids = tok.encode(text)
    assert ids == hf_tok(text, add_special_tokens=False).input_ids
    with torch.no_grad():
        ours, theirs = model(torch.tensor([ids])).logits, hf(torch.tensor([ids])).logits
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-4)


@pytest.mark.network
@pytest.mark.slow
def test_smollm2_greedy_answer_and_chat_template(smollm2):
    from zeroforge.chat import ChatSession
    from zeroforge.generation import generate

    model, tok = smollm2
    assert model.config.n_layer == 30 and model.config.n_kv_head == 3
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert generate(model, tok, "The capital of France is", max_new_tokens=3, temperature=0).startswith(
        " Paris"
    )
    session = ChatSession(model, tok, max_new_tokens=20)
    session.messages.append({"role": "user", "content": "hi"})
    assert session.prompt().startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


@pytest.mark.network
@pytest.mark.slow
def test_smollm2_real_tensors_dequantise_like_gguf_package():
    from zeroforge.weights import resolve

    reader = zg._open(resolve("smollm2-135m-instruct"))
    seen = set()
    for t in reader.tensors:
        if t.tensor_type in seen:
            continue
        seen.add(t.tensor_type)
        shape = tuple(reversed(t.shape.tolist()))
        ours = zg.dequantize(t.data, int(t.tensor_type), shape)
        np.testing.assert_array_equal(
            ours.numpy(), gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
        )
    assert {Q.Q4_1, Q.Q8_0, Q.F32} <= seen
