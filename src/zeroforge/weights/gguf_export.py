"""GGUF (llama.cpp) files out: a Llama-family or GPT-2 model, its tokenizer and chat template.

    zeroforge export-gguf runs/my-llama out.gguf --type q8_0
    zeroforge.export_gguf("smollm2-135m-instruct", "smol-f16.gguf", "f16")

The reader (``gguf.py``) run backwards: tensor names are its ``GGUF_NAMES`` (Llama) and
``GPT2_GGUF_NAMES`` (GGUF architecture ``gpt2``) inverted, q/k rows of a Llama get llama.cpp's
permutation back (convert_hf_to_gguf.py ``LlamaModel.permute``), and the metadata keys are the
ones ``llama_config`` / ``gpt2_config`` read. Tensors are written by the ``gguf`` package's
``GGUFWriter`` and quantised by ``gguf.quants``: ``f32``, ``f16``, ``q8_0`` (blocks of 32, x = d q)
and ``q4_0`` (blocks of 32, x = d (q - 8)); norms, biases and other 1-D tensors stay F32, and a
matrix whose rows are not a multiple of 32 is written F16 (as llama.cpp's own converter does).

The tokenizer becomes ``tokenizer.ggml.*`` metadata (llama.cpp's ``gpt2`` byte-level BPE): tokens in
GPT-2's byte-to-unicode spelling, merges, token types (control for special tokens), the
pre-tokenizer name and the bos/eos/pad ids. A character tokenizer is written as a BPE vocabulary of
single characters (ASCII text tokenises the same in llama.cpp).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroforge.errors import DataError
from zeroforge.io import check_output_file
from zeroforge.weights.gguf import GGUF_NAMES, GPT2_GGUF_NAMES

TYPES = ("f32", "f16", "q8_0", "q4_0")
_LAYER = re.compile(r"\.(\d+)\.")


def _inverse(names: dict[str, str]) -> dict[str, str]:
    return {ours: gguf for gguf, ours in names.items()}


def _gguf_name(key: str, table: dict[str, str]) -> str:
    """Our (HF) parameter name -> the GGUF tensor name (``blk.3.attn_q.weight``)."""
    module, _, param = key.rpartition(".")
    index = _LAYER.search(f".{module}.")
    template = _LAYER.sub(".{i}.", f".{module}.")[1:-1]
    if template not in table:
        raise DataError(f"export-gguf: no GGUF name for tensor {key}")
    return f"{table[template].format(i=index.group(1) if index else '')}.{param}"


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs (the inverse of ``gguf._unpermute``)."""
    hs = w.size(0) // n_head
    return w.view(n_head, 2, hs // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------------- tensors


def llama_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """GGUF name -> tensor (PyTorch layout, rows first) of a ``Llama``."""
    config = model.config
    table = _inverse(GGUF_NAMES)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp uses token_embd when there is no output tensor
        value = value.detach().float().cpu()
        if ".q_proj." in key:
            value = _permute(value, config.n_head)
        elif ".k_proj." in key:
            value = _permute(value, config.n_kv_head)
        out[_gguf_name(key, table)] = value
    return out


def gpt2_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """GGUF name -> tensor of a ``GPT`` (llama.cpp's gpt2 architecture: every bias present, the output
    layer written out although it is the token embedding)."""
    table = _inverse(GPT2_GGUF_NAMES)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        out[_gguf_name(key, table)] = value.detach().float().cpu()
    for name, module in model.named_modules():  # bias=False: zeros compute the same function
        if isinstance(module, nn.Linear | nn.LayerNorm) and module.bias is None and name != "lm_head":
            out[_gguf_name(f"{name}.bias", table)] = torch.zeros(module.weight.shape[0])
    return out


# ----------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable spelling of every byte (openai/gpt-2 encoder.py ``bytes_to_unicode``)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_CONTROL, _NORMAL, _USER_DEFINED, _UNUSED = 3, 1, 4, 5


def _pre_name(pre_tokenizer: dict[str, Any] | None) -> str:
    """llama.cpp's pre-tokenizer name for an HF ``tokenizers`` pre-tokenizer (``tokenizer.gguf_bpe``'s inverse)."""
    if not pre_tokenizer:
        return "gpt-2"
    kinds = [p.get("type") for p in pre_tokenizer.get("pretokenizers", [pre_tokenizer])]
    if kinds == ["Digits", "ByteLevel"]:
        return "smollm"
    if kinds == ["Split", "ByteLevel"]:
        return "llama-bpe"
    if kinds == ["ByteLevel"]:
        return "gpt-2"  # llama.cpp's name for GPT-2's regex
    raise DataError(
        f"export-gguf: pre-tokenizer {kinds} has no llama.cpp name (supported: gpt-2, smollm, llama-bpe)"
    )


def tokenizer_metadata(tokenizer: Any, vocab_size: int) -> dict[str, Any]:
    """``tokenizer.ggml.*`` values for a zeroforge tokenizer: byte-level BPE (trained, GPT-2's or a
    pretrained model's) or characters."""
    if getattr(tokenizer, "kind", None) == "char":
        spell = _bytes_to_unicode()
        tokens = ["".join(spell[b] for b in c.encode("utf-8")) for c in tokenizer._itos]
        types = [_NORMAL] * len(tokens)
        if tokenizer.unk_id is not None:
            types[tokenizer.unk_id] = _CONTROL
        # llama.cpp requires a merge list; one merge of two letters changes nothing (its result is no
        # token, so llama.cpp and the reader both keep the letters)
        letters = [t for t in tokens if t.isascii() and t.isalpha()]
        merges = [f"{letters[0]} {letters[1]}"] if len(letters) >= 2 else [f"{tokens[0]} {tokens[-1]}"]
        meta = {"tokens": tokens, "types": types, "merges": merges, "pre": "gpt-2", "specials": {}}
        meta["specials"] = {"unk": tokenizer.unk_id}
    else:
        hf = getattr(tokenizer, "tokenizer", None)
        if hf is None:
            raise DataError(f"export-gguf: a {type(tokenizer).__name__} cannot be written to GGUF")
        spec = json.loads(hf.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise DataError(f"export-gguf: tokenizer model {model.get('type')!r} is not byte-level BPE")
        by_id = {i: t for t, i in model["vocab"].items()}
        specials = {}
        for added in spec.get("added_tokens") or []:
            by_id[added["id"]] = added["content"]
            specials[added["id"]] = bool(added.get("special"))
        size = max(by_id) + 1
        tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
        types = [
            (_CONTROL if specials[i] else _USER_DEFINED)
            if i in specials
            else _NORMAL
            if i in by_id
            else _UNUSED
            for i in range(size)
        ]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
        roles = {}
        for role in ("bos", "eos", "unk", "pad"):
            token = tokenizer.token(role) if hasattr(tokenizer, "token") else None
            if token is None and role == "eos":
                token = getattr(tokenizer, "eos_token", None)
            roles[role] = hf.token_to_id(token) if token is not None else None
        meta = {
            "tokens": tokens,
            "types": types,
            "merges": merges,
            "pre": _pre_name(spec.get("pre_tokenizer")),
        }
        meta["specials"] = roles
    if len(meta["tokens"]) > vocab_size:
        raise DataError(
            f"export-gguf: the tokenizer has {len(meta['tokens'])} tokens, more than the model's vocab_size {vocab_size}"
        )
    while len(meta["tokens"]) < vocab_size:  # rows the model has and the tokenizer never produces
        meta["tokens"].append(f"[PAD{len(meta['tokens'])}]")
        meta["types"].append(_UNUSED)
    meta["chat_template"] = getattr(tokenizer, "chat_template", None)
    return meta


# ----------------------------------------------------------------------------- the file


def _add_tensor(writer: Any, name: str, value: torch.Tensor, kind: str) -> None:
    from gguf import GGMLQuantizationType, quants

    array = value.numpy()
    if kind == "f32" or value.dim() < 2:
        writer.add_tensor(name, array.astype(np.float32))
        return
    qtype = {
        "f16": GGMLQuantizationType.F16,
        "q8_0": GGMLQuantizationType.Q8_0,
        "q4_0": GGMLQuantizationType.Q4_0,
    }[kind]
    if qtype != GGMLQuantizationType.F16 and array.shape[-1] % 32:
        qtype = GGMLQuantizationType.F16  # ggml's blocks are 32 wide
    if qtype == GGMLQuantizationType.F16:
        writer.add_tensor(name, array.astype(np.float16))
        return
    writer.add_tensor(name, quants.quantize(array, qtype), raw_dtype=qtype)  # byte rows -> element shape


def write_gguf(
    model: nn.Module, tokenizer: Any, out: Path, kind: str = "f16", name: str = "zeroforge"
) -> Path:
    """Write ``model`` (a ``Llama`` or ``GPT``) and ``tokenizer`` to the GGUF file ``out``."""
    from gguf import GGUFWriter, LlamaFileType

    from zeroforge.registry import family_for_model

    family = family_for_model(model).name
    c = model.config
    if family == "llama":
        arch, tensors = "llama", llama_tensors(model)
    elif family == "gpt":
        arch, tensors = "gpt2", gpt2_tensors(model)
    else:
        raise DataError(f"export-gguf: family {family!r} has no GGUF architecture (llama and gpt do)")
    file_type = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16}
    file_type.update(q8_0=LlamaFileType.MOSTLY_Q8_0, q4_0=LlamaFileType.MOSTLY_Q4_0)
    tok = tokenizer_metadata(tokenizer, c.vocab_size)

    writer = GGUFWriter(str(out), arch)
    writer.add_name(name)
    writer.add_file_type(int(file_type[kind]))
    writer.add_context_length(c.block_size)
    writer.add_embedding_length(c.n_embd)
    writer.add_block_count(c.n_layer)
    writer.add_head_count(c.n_head)
    if arch == "llama":
        writer.add_feed_forward_length(c.intermediate_size)
        writer.add_head_count_kv(c.n_kv_head)
        writer.add_rope_dimension_count(c.head_dim)
        if c.head_dim != c.n_embd // c.n_head:
            writer.add_key_length(c.head_dim)
            writer.add_value_length(c.head_dim)
        writer.add_rope_freq_base(c.rope_theta)
        writer.add_layer_norm_rms_eps(c.rms_norm_eps)
        writer.add_vocab_size(c.vocab_size)
    else:
        writer.add_feed_forward_length(4 * c.n_embd)
        writer.add_layer_norm_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tok["pre"])
    writer.add_token_list(tok["tokens"])
    writer.add_token_types(tok["types"])
    writer.add_token_merges(tok["merges"])
    for role, token_id in tok["specials"].items():
        if token_id is not None:
            getattr(
                writer,
                {
                    "bos": "add_bos_token_id",
                    "eos": "add_eos_token_id",
                    "unk": "add_unk_token_id",
                    "pad": "add_pad_token_id",
                }[role],
            )(int(token_id))
    writer.add_add_bos_token(False)
    if tok["chat_template"]:
        writer.add_chat_template(tok["chat_template"])
    for tensor_name, value in tensors.items():
        _add_tensor(writer, tensor_name, value, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    return out


def export_gguf(src: str | os.PathLike[str], out: str | os.PathLike[str], type: str = "f16") -> Path:
    """Load ``src`` (a run directory, model folder, GGUF file or named weights) and write it as the
    GGUF file ``out`` with tensors of ``type`` (f32, f16, q8_0, q4_0); returns ``out``. The file
    appears only once complete."""
    from zeroforge.modules.quantized import is_quantized
    from zeroforge.weights import load

    if type not in TYPES:
        raise DataError(f"--type: expected one of {', '.join(TYPES)}, got {type!r}")
    out = check_output_file(out, "out")
    model, tokenizer = load(src)
    if tokenizer is None:
        raise DataError(f"{src}: no tokenizer saved with the model; a GGUF file needs one")
    if is_quantized(model):
        raise DataError(
            f"{src}: a zeroforge-quantised model; export the float model with --type q8_0 or q4_0"
        )
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write_gguf(model, tokenizer, tmp, type, name=Path(str(src)).name)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
