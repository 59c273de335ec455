"""GGUF (llama.cpp) files in: metadata -> ``LlamaConfig``, quantised tensors -> float weights, and the
embedded tokenizer and chat template.

A GGUF file is a header of typed key/values (``llama.block_count``, ``tokenizer.ggml.tokens``...)
followed by tensors stored in ggml's block formats. The ``gguf`` package (llama.cpp's own reader)
parses the container; the dequantisation of the formats below is written out here, one formula each
(ggml-quants.c ``dequantize_row_*``), and tested against ``gguf.quants.dequantize``:

- F32, F16, BF16: plain floats;
- Q8_0: blocks of 32 int8 q and one fp16 scale d: x = d * q;
- Q4_0: blocks of 32 4-bit q (two per byte: low nibbles are elements 0-15, high nibbles 16-31)
  and d: x = d * (q - 8);
- Q4_1: like Q4_0 with a minimum m instead of the fixed offset: x = d * q + m.

Any other type is an error that names it. llama.cpp's converter permutes the rows of q and k so its
RoPE can rotate interleaved pairs; ``_unpermute`` restores HF's rotate-half layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.errors import DataError
from zeroforge.weights.hf import Stored, load_state, new_model
from zeroforge.weights.keymaps import LLAMA
from zeroforge.weights.tokenizer import PretrainedTokenizer, gguf_bpe

# ggml type -> (elements per block, bytes per block); type numbers from ggml.h ``enum ggml_type``
F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30
_BLOCKS = {Q4_0: (32, 18), Q4_1: (32, 20), Q8_0: (32, 34)}
SUPPORTED = {F32: "F32", F16: "F16", BF16: "BF16", Q8_0: "Q8_0", Q4_0: "Q4_0", Q4_1: "Q4_1"}

# GGUF tensor name -> HF Llama module path ({i}: layer); ".weight" follows both
GGUF_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{i}.attn_norm": "model.layers.{i}.input_layernorm",
    "blk.{i}.attn_q": "model.layers.{i}.self_attn.q_proj",
    "blk.{i}.attn_k": "model.layers.{i}.self_attn.k_proj",
    "blk.{i}.attn_v": "model.layers.{i}.self_attn.v_proj",
    "blk.{i}.attn_output": "model.layers.{i}.self_attn.o_proj",
    "blk.{i}.ffn_norm": "model.layers.{i}.post_attention_layernorm",
    "blk.{i}.ffn_gate": "model.layers.{i}.mlp.gate_proj",
    "blk.{i}.ffn_up": "model.layers.{i}.mlp.up_proj",
    "blk.{i}.ffn_down": "model.layers.{i}.mlp.down_proj",
}

# GGUF tensor name -> our GPT module path (HF GPT-2's; its Conv1D weights are ours transposed)
GPT2_GGUF_NAMES = {
    "token_embd": "transformer.wte",
    "position_embd": "transformer.wpe",
    "output_norm": "transformer.ln_f",
    "output": "lm_head",
    "blk.{i}.attn_norm": "transformer.h.{i}.ln_1",
    "blk.{i}.attn_qkv": "transformer.h.{i}.attn.c_attn",
    "blk.{i}.attn_output": "transformer.h.{i}.attn.c_proj",
    "blk.{i}.ffn_norm": "transformer.h.{i}.ln_2",
    "blk.{i}.ffn_up": "transformer.h.{i}.mlp.c_fc",
    "blk.{i}.ffn_down": "transformer.h.{i}.mlp.c_proj",
}


# ----------------------------------------------------------------------------- dequantisation


def _fp16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 stored at bytes [start, start+2) of every block, as fp32 (n_blocks, 1)."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _nibbles(packed: torch.Tensor) -> torch.Tensor:
    """(n, 16) bytes -> (n, 32) 4-bit values: the 16 low nibbles, then the 16 high ones."""
    return torch.cat((packed & 0x0F, packed >> 4), dim=-1).float()


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...], name: str = "tensor") -> torch.Tensor:
    """ggml-encoded ``raw`` bytes/values -> fp32 tensor of ``shape`` (PyTorch order: rows first)."""
    count = int(np.prod(shape))
    if ggml_type in (F32, F16):
        return torch.from_numpy(np.array(raw).reshape(shape)).float()
    if ggml_type == BF16:
        return torch.from_numpy(np.array(raw).view(np.int16).reshape(shape)).view(torch.bfloat16).float()
    if ggml_type not in _BLOCKS:
        raise DataError(f"{name}: unsupported quantisation type {ggml_type}")
    elements, nbytes = _BLOCKS[ggml_type]
    blocks = torch.from_numpy(np.array(raw, dtype=np.uint8).reshape(-1, nbytes))  # (n_blocks, bytes)
    d = _fp16(blocks, 0)  # (n_blocks, 1): the block's scale
    if ggml_type == Q8_0:
        x = d * blocks[:, 2:].contiguous().view(torch.int8).float()  # x = d * q
    elif ggml_type == Q4_0:
        x = d * (_nibbles(blocks[:, 2:]) - 8.0)  # x = d * (q - 8)
    else:  # Q4_1
        x = d * _nibbles(blocks[:, 4:]) + _fp16(blocks, 2)  # x = d * q + m
    assert x.numel() == count and x.size(1) == elements
    return x.reshape(shape)


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation (convert_hf_to_gguf.py ``LlamaModel.permute``): within a
    head its rows are (pair, half) interleaved; HF's rotate-half wants (half, pair)."""
    hs = w.size(0) // n_head
    return w.view(n_head, hs // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------------- metadata


def _open(path: Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise DataError(f"{path}: reading GGUF needs the gguf package (pip install gguf)") from None
    if not path.is_file():
        raise DataError(f"{path}: no such GGUF file")
    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError, TypeError) as err:
        text = str(err).strip().splitlines()
        raise DataError(
            f"{path}: not a readable GGUF file ({text[0] if text else type(err).__name__})"
        ) from None


def metadata(reader: Any) -> dict[str, Any]:
    """Every key/value of the header as Python values (strings, numbers, lists)."""
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def gpt2_config(meta: dict[str, Any], vocab_rows: int, where: str) -> dict[str, Any]:
    """GGUF ``gpt2.*`` metadata -> ``GPTConfig`` fields (what zeroforge's GPT reproduces is checked)."""

    def get(key: str) -> Any:
        value = meta.get(f"gpt2.{key}")
        if value is None:
            raise DataError(f"{where}: GGUF metadata has no gpt2.{key}")
        return value

    n_embd = int(get("embedding_length"))
    if int(meta.get("gpt2.feed_forward_length", 4 * n_embd)) != 4 * n_embd:
        raise DataError(f"{where}: gpt2.feed_forward_length must be 4 * embedding_length for zeroforge's GPT")
    if abs(float(meta.get("gpt2.attention.layer_norm_epsilon", 1e-5)) - 1e-5) > 1e-9:
        raise DataError(f"{where}: gpt2.attention.layer_norm_epsilon must be 1e-5 for zeroforge's GPT")
    return dict(
        n_layer=int(get("block_count")),
        n_head=int(get("attention.head_count")),
        n_embd=n_embd,
        block_size=int(get("context_length")),
        vocab_size=vocab_rows,
        bias=True,
    )


def llama_config(meta: dict[str, Any], has_output: bool, vocab_rows: int, where: str) -> dict[str, Any]:
    """GGUF ``llama.*`` metadata -> ``LlamaConfig`` fields."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise DataError(f"{where}: GGUF architecture {arch!r} is not supported (zeroforge loads llama)")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"llama.{key}", default)
        if value is None:
            raise DataError(f"{where}: GGUF metadata has no llama.{key}")
        return value

    if meta.get("llama.rope.scaling.type", "none") not in ("none", None):
        raise DataError(f"{where}: GGUF rope scaling {meta['llama.rope.scaling.type']!r} is not supported")
    n_embd, n_head = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(meta.get("llama.attention.key_length", n_embd // n_head))
    if int(meta.get("llama.rope.dimension_count", head_dim)) != head_dim:
        raise DataError(f"{where}: partial rotary embeddings (llama.rope.dimension_count) are not supported")
    return dict(
        n_layer=int(get("block_count")),
        n_head=n_head,
        n_kv_head=int(get("attention.head_count_kv", n_head)),
        n_embd=n_embd,
        intermediate_size=int(get("feed_forward_length")),
        vocab_size=int(meta.get("llama.vocab_size", vocab_rows)),
        block_size=int(get("context_length")),
        head_dim=head_dim,
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        tie_word_embeddings=not has_output,
    )


def tokenizer_from_metadata(meta: dict[str, Any], where: str) -> PretrainedTokenizer:
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise DataError(
            f"{where}: GGUF tokenizer model {kind!r} is not supported (zeroforge builds byte-level BPE, 'gpt2')"
        )
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise DataError(f"{where}: GGUF metadata has no tokenizer.ggml.tokens")
    specials = {
        "bos": meta.get("tokenizer.ggml.bos_token_id"),
        "eos": meta.get("tokenizer.ggml.eos_token_id"),
        "unk": meta.get("tokenizer.ggml.unknown_token_id"),
        "pad": meta.get("tokenizer.ggml.padding_token_id"),
    }
    return gguf_bpe(
        list(tokens),
        list(meta.get("tokenizer.ggml.merges") or []),
        list(meta.get("tokenizer.ggml.token_type") or []),
        str(meta.get("tokenizer.ggml.pre", "default")),
        specials,
        meta.get("tokenizer.chat_template"),
        where,
    )


# ----------------------------------------------------------------------------- the model


def _hf_name(
    gguf_name: str, table: dict[str, str] = GGUF_NAMES, params: tuple[str, ...] = ("weight",)
) -> str | None:
    stem, _, param = gguf_name.rpartition(".")
    parts = stem.split(".")
    index = ""
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit():
        index, stem = parts[1], f"blk.{{i}}.{parts[2]}"
    module = table.get(stem)
    return None if module is None or param not in params else f"{module.format(i=index)}.{param}"


def _stored(path: Path, t: Any, shape: tuple[int, ...], transform: Any = None) -> Stored:
    """One GGUF tensor as a lazily dequantised ``Stored`` (``transform`` applied after)."""
    qtype = int(t.tensor_type)
    if qtype not in SUPPORTED:
        qname = getattr(t.tensor_type, "name", str(qtype))
        raise DataError(
            f"{path}: tensor {t.name} uses quantisation type {qname}, which zeroforge cannot dequantise "
            f"(supported: {', '.join(SUPPORTED.values())})"
        )
    raw_shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # ggml lists the fastest dimension first

    def load() -> torch.Tensor:
        w = dequantize(t.data, qtype, raw_shape, f"{path}: tensor {t.name}")
        return w if transform is None else transform(w)

    return Stored(path, shape, load)


def gpt2_tensors(reader: Any, path: Path) -> dict[str, Stored]:
    """HF-named GPT-2 tensors of a GGUF file (gpt2 architecture): Conv1D weights in HF's (in, out)."""
    from zeroforge.weights.keymaps import GPT2

    out: dict[str, Stored] = {}
    for t in reader.tensors:
        name = _hf_name(t.name, GPT2_GGUF_NAMES, ("weight", "bias"))
        if name is None:
            raise DataError(f"{path}: unexpected tensor {t.name} (not part of a gpt2 model)")
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))
        if GPT2.is_transposed(name):
            out[name] = _stored(path, t, shape[::-1], lambda w: w.t().contiguous())
        else:
            out[name] = _stored(path, t, shape)
    return out


def gguf_tensors(reader: Any, config: Any, path: Path) -> dict[str, Stored]:
    """HF-named, lazily dequantised tensors of a GGUF file (q/k rows un-permuted)."""
    out: dict[str, Stored] = {}
    for t in reader.tensors:
        name = _hf_name(t.name)
        if name is None:
            raise DataError(f"{path}: unexpected tensor {t.name} (not part of a llama model)")
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # ggml lists the fastest dimension first
        n_head = config.n_head if ".q_proj." in name else config.n_kv_head if ".k_proj." in name else 0
        out[name] = _stored(path, t, shape, (lambda w, n=n_head: _unpermute(w, n)) if n_head else None)
    return out


def load_gguf(
    path: str | os.PathLike[str],
    dtype: torch.dtype | None = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, PretrainedTokenizer]:
    """``(model, tokenizer)`` from a GGUF file: each tensor dequantised to fp32, then stored in ``dtype``."""
    from zeroforge.models.llama import Llama
    from zeroforge.registry import model_config

    path = Path(path)
    reader = _open(path)
    meta = metadata(reader)
    names = {t.name: t for t in reader.tensors}
    embed = names.get("token_embd.weight")
    if embed is None:
        raise DataError(f"{path}: missing tensor token_embd.weight")
    if meta.get("general.architecture") == "gpt2":
        return _load_gpt2(path, reader, meta, int(embed.shape[-1]), dtype, device)
    fields = llama_config(meta, "output.weight" in names, int(embed.shape[-1]), str(path))
    config = model_config("llama", **fields)
    tokenizer = tokenizer_from_metadata(meta, str(path))
    model = new_model(Llama, config, dtype or torch.float32)
    load_state(model, LLAMA, gguf_tensors(reader, config, path), f"{path} metadata")
    return model.to(device=device, dtype=dtype or torch.float32).eval(), tokenizer


def _load_gpt2(
    path: Path, reader: Any, meta: dict[str, Any], vocab_rows: int, dtype: torch.dtype | None, device: Any
) -> tuple[nn.Module, PretrainedTokenizer]:
    """A GGUF file of llama.cpp's gpt2 architecture -> zeroforge's ``GPT`` (biases kept)."""
    from zeroforge.models.gpt import GPT
    from zeroforge.registry import model_config
    from zeroforge.weights.keymaps import GPT2

    config = model_config("gpt", **gpt2_config(meta, vocab_rows, str(path)))
    tokenizer = tokenizer_from_metadata(meta, str(path))
    model = new_model(GPT, config, dtype or torch.float32)
    load_state(model, GPT2, gpt2_tensors(reader, path), f"{path} metadata")
    return model.to(device=device, dtype=dtype or torch.float32).eval(), tokenizer
