"""transformers twins of our models: the same architecture built with transformers, carrying our weights.

The parity tests compare our logits with the twin's; bench/_common.py imports ``hf_gpt2`` from here
for the speed benchmarks. Import ``transformers`` only after ``pytest.importorskip("transformers")``
(it is a dev/bench dependency, never one of zeroforge's).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from zeroforge.models.bert import BertConfig
from zeroforge.models.gpt import GPT
from zeroforge.models.llama import Llama


class TwinMismatch(ValueError):
    """The twin cannot carry our weights as asked (another attention implementation, a shape)."""


def hf_gpt2(model: GPT, attn_implementation: str = "eager") -> Any:
    """transformers' GPT2LMHeadModel carrying ``model``'s weights (its Conv1D weights are our Linear's,
    transposed), dropout 0, in ``model``'s training mode.

    Raises TwinMismatch when transformers picks another attention implementation or a shape differs.
    """
    transformers.logging.set_verbosity_error()  # no advice about attention masks on unpadded batches
    cfg = model.config
    hf_config = transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        attn_implementation=attn_implementation,
    )
    hf = transformers.GPT2LMHeadModel(hf_config)
    if hf.config._attn_implementation != attn_implementation:
        raise TwinMismatch(f"transformers chose {hf.config._attn_implementation}, not {attn_implementation}")
    ours = model.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    with torch.no_grad():
        for key, value in hf.state_dict().items():
            source = ours[key].t() if key.endswith(conv1d) else ours[key]
            if source.shape != value.shape:
                raise TwinMismatch(f"{key}: ours {tuple(source.shape)} vs transformers {tuple(value.shape)}")
            value.copy_(source)
    return hf.train(model.training)


def hf_llama(model: Llama, attn_implementation: str = "eager") -> Any:
    """transformers' LlamaForCausalLM carrying ``model``'s weights (our parameter names are HF's), in
    eval mode; token ids 0 for pad, bos and eos."""
    c = model.config
    hf = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.n_embd,
            intermediate_size=c.intermediate_size,
            num_hidden_layers=c.n_layer,
            num_attention_heads=c.n_head,
            num_key_value_heads=c.n_kv_head,
            max_position_embeddings=c.block_size,
            rope_theta=c.rope_theta,
            rms_norm_eps=c.rms_norm_eps,
            tie_word_embeddings=c.tie_word_embeddings,
            attn_implementation=attn_implementation,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).eval()
    hf.load_state_dict(model.state_dict(), strict=True)
    return hf


def hf_bert_config(cfg: BertConfig, attn_implementation: str = "eager") -> Any:
    """transformers' BertConfig for our ``cfg`` (for BertForPreTraining, BertForSequenceClassification
    or BertModel), dropout 0. Our BERT's block names differ from HF's: copying weights needs a key map."""
    return transformers.BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=cfg.block_size,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=cfg.pad_token_id,
        num_labels=cfg.n_labels,
        attn_implementation=attn_implementation,
    )
