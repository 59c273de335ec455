"""The encoder-decoder Transformer in Hugging Face's MarianMT layout, both ways.

    save_marian(model, tokenizer, "out/")      # config.json + model.safetensors + tokenizer files
    model, tokenizer = load_marian("out/")     # what save_marian wrote, or a MarianMTModel folder
                                               # with the same tokenizer files (zeroforge.load too)

``transformers.MarianMTModel.from_pretrained("out/")`` then computes what our model computes
(tests/test_marian.py compares greedy translations token for token). Marian is a post-LN
Transformer with sinusoidal positions (sin half, cos half: ``models/seq2seq.py``'s layout), one
token table shared by encoder, decoder and output layer, and a ``final_logits_bias``; a model
saved this way must be built like that (``norm="post"``, ``positions="sinusoidal"``,
``share_embeddings`` and ``tie_output``). The tokenizer is saved as a fast tokenizer
(tokenizer.json), not Marian's SentencePiece files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_json, write_folder
from zeroforge.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, sinusoids

_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
_LAYER = {  # our name inside a layer -> Marian's
    "self_attn.q_proj": "self_attn.q_proj",
    "self_attn.k_proj": "self_attn.k_proj",
    "self_attn.v_proj": "self_attn.v_proj",
    "self_attn.out_proj": "self_attn.out_proj",
    "self_attn_layer_norm": "self_attn_layer_norm",
    "encoder_attn.q_proj": "encoder_attn.q_proj",
    "encoder_attn.k_proj": "encoder_attn.k_proj",
    "encoder_attn.v_proj": "encoder_attn.v_proj",
    "encoder_attn.out_proj": "encoder_attn.out_proj",
    "encoder_attn_layer_norm": "encoder_attn_layer_norm",
    "mlp.c_fc": "fc1",
    "mlp.c_proj": "fc2",
    "final_layer_norm": "final_layer_norm",
}


def _check_marian_shape(config: Seq2SeqConfig) -> None:
    wrong = [
        f"{name}={getattr(config, name)!r} (Marian: {want!r})"
        for name, want in (
            ("norm", "post"),
            ("positions", "sinusoidal"),
            ("share_embeddings", True),
            ("tie_output", True),
            ("layer_norm_eps", 1e-5),
        )
        if getattr(config, name) != want
    ]
    if wrong:
        raise ConfigError(f"save_marian: this model is not a Marian Transformer: {'; '.join(wrong)}")


def marian_config(config: Seq2SeqConfig) -> dict[str, Any]:
    _check_marian_shape(config)
    return {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "vocab_size": config.vocab_size,
        "decoder_vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "encoder_layers": config.n_encoder_layer,
        "decoder_layers": config.n_decoder_layer,
        "encoder_attention_heads": config.n_head,
        "decoder_attention_heads": config.n_head,
        "encoder_ffn_dim": config.d_ff,
        "decoder_ffn_dim": config.d_ff,
        "activation_function": _ACTIVATIONS[config.activation],
        "max_position_embeddings": config.max_positions,
        "scale_embedding": config.scale_embedding,
        "dropout": config.dropout,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "forced_eos_token_id": None,
        "bos_token_id": None,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "is_encoder_decoder": True,
    }


def marian_state_dict(model: Seq2SeqTransformer) -> dict[str, torch.Tensor]:
    """Our parameters under Marian's names (each tensor its own copy: safetensors stores no aliases)."""
    c = model.config
    table = model.encoder_embed.embed_tokens.weight.detach()
    out = {
        name: table.clone()
        for name in (
            "model.shared.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
        )
    }
    out["lm_head.weight"] = model.output_layer.weight.detach().clone()
    out["final_logits_bias"] = model.final_logits_bias.detach().clone()[None]  # (1, V)
    positions = sinusoids(c.max_positions, c.d_model)
    out["model.encoder.embed_positions.weight"] = positions.clone()
    out["model.decoder.embed_positions.weight"] = positions.clone()
    for side, layers in (("encoder", model.encoder_layers), ("decoder", model.decoder_layers)):
        for key, tensor in layers.state_dict().items():
            index, _, rest = key.partition(".")
            module, _, leaf = rest.rpartition(".")
            out[f"model.{side}.layers.{index}.{_LAYER[module]}.{leaf}"] = tensor.detach().clone()
    return out


def save_marian(model: Seq2SeqTransformer, tokenizer: Any | None, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` (+ ``tokenizer``) as a MarianMT folder; the files appear together or not at all."""
    from safetensors.torch import save_file

    if not isinstance(model, Seq2SeqTransformer):
        raise ConfigError(f"save_marian: expected a seq2seq Transformer, got {type(model).__name__}")
    config = marian_config(model.config)

    def write(tmp: Path) -> None:
        atomic_write_json(tmp / "config.json", config)
        generation = {
            "decoder_start_token_id": config["decoder_start_token_id"],
            "eos_token_id": config["eos_token_id"],
            "pad_token_id": config["pad_token_id"],
            "forced_eos_token_id": None,
        }
        atomic_write_json(tmp / "generation_config.json", generation)
        tensors = {k: v.contiguous() for k, v in marian_state_dict(model).items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)

    return write_folder(directory, write)


def load_marian(directory: str | os.PathLike[str]) -> tuple[Seq2SeqTransformer, Any]:
    """A MarianMT folder -> (our post-LN Transformer, its tokenizer or None), in eval mode."""
    from safetensors.torch import load_file

    from zeroforge.tokenizers import has_tokenizer, load_tokenizer

    folder = Path(directory)
    config_path = folder / "config.json"
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{config_path}: cannot read a Marian config ({err})") from None
    if hf.get("model_type") != "marian":
        raise DataError(f"{config_path}: model_type {hf.get('model_type')!r}, expected 'marian'")
    if hf.get("encoder_attention_heads") != hf.get("decoder_attention_heads") or hf.get(
        "encoder_ffn_dim"
    ) != hf.get("decoder_ffn_dim"):
        raise DataError(f"{config_path}: encoder and decoder differ in heads or ffn width (not supported)")
    activation = {v: k for k, v in _ACTIVATIONS.items()}.get(hf.get("activation_function", "gelu"))
    if activation is None:
        raise DataError(
            f"{config_path}: activation_function {hf.get('activation_function')!r} is not supported"
        )
    config = Seq2SeqConfig(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        n_head=hf["encoder_attention_heads"],
        n_encoder_layer=hf["encoder_layers"],
        n_decoder_layer=hf["decoder_layers"],
        d_ff=hf["encoder_ffn_dim"],
        dropout=0.0,
        max_positions=hf["max_position_embeddings"],
        positions="sinusoidal",
        norm="post",
        activation=activation,  # type: ignore[arg-type]
        share_embeddings=True,
        tie_output=True,
        scale_embedding=bool(hf.get("scale_embedding", False)),
        pad_token_id=hf["pad_token_id"],
        eos_token_id=hf["eos_token_id"],
        decoder_start_token_id=hf.get("decoder_start_token_id", hf["pad_token_id"]),
    )
    model = Seq2SeqTransformer(config)
    tensors = load_file(str(folder / "model.safetensors"))
    expected = marian_state_dict(model)
    missing = sorted(
        k for k in expected if k not in tensors and "embed_positions" not in k and k != "lm_head.weight"
    )
    if missing:
        raise DataError(f"{folder / 'model.safetensors'}: no tensor {missing[0]!r}")
    inverse = {v: k for k, v in _LAYER.items()}
    own: dict[str, torch.Tensor] = {"encoder_embed.embed_tokens.weight": tensors["model.shared.weight"]}
    own["final_logits_bias"] = tensors.get("final_logits_bias", torch.zeros(1, config.vocab_size))[0]
    for side in ("encoder", "decoder"):
        prefix = f"model.{side}.layers."
        for key, tensor in tensors.items():
            if key.startswith(prefix):
                index, _, rest = key[len(prefix) :].partition(".")
                module, _, leaf = rest.rpartition(".")
                own[f"{side}_layers.{index}.{inverse[module]}.{leaf}"] = tensor
    for name, tensor in model.state_dict().items():
        if name in own and tensor.shape != own[name].shape:
            raise DataError(
                f"{folder}: {name} has shape {tuple(own[name].shape)}, expected {tuple(tensor.shape)}"
            )
    model.load_state_dict(own, strict=False)
    unset = {n for n in model.state_dict() if n not in own} - {
        "decoder_embed.embed_tokens.weight",
        "output_layer.weight",
    }
    if unset:
        raise DataError(f"{folder}: no weights for {sorted(unset)[0]}")
    tokenizer = load_tokenizer(folder) if has_tokenizer(folder) else None
    return model.eval(), tokenizer
