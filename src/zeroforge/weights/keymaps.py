"""Per-family maps between zeroforge models and Hugging Face checkpoints: tensor names and configs.

One ``KeyMap`` per family, written out as tables rather than rules, so what is renamed can be read
off the page:

- ``renames``: our module path -> HF module path, with ``{i}`` for a layer index; every module
  not listed has the same path in both (GPT-2 and Llama use HF's names already);
- ``transposed``: modules whose HF weight is our Linear weight transposed (GPT-2's Conv1D);
- ``tied``: our parameters that are another parameter (not stored; HF drops them as well);
- ``optional``: prefixes of head parameters a checkpoint may lack (a ``BertModel`` has no MLM head);
  they keep their fresh initialisation and the loader warns;
- ``ignored``: HF tensors that carry no learned weight (buffers some versions saved).

``config_from_hf`` turns an HF ``config.json`` into our typed config's fields and rejects what our
model cannot reproduce; ``config_to_hf`` writes the fields ``transformers`` needs to build the same
network.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zeroforge.errors import ConfigError

_LAYER = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class KeyMap:
    family: str
    """zeroforge family (registry name)."""
    model_type: str
    """HF ``model_type`` in config.json."""
    architecture: str
    """HF class name written to ``architectures`` (what ``AutoModel*`` instantiates)."""
    config_from_hf: Callable[[dict[str, Any], str], dict[str, Any]]
    config_to_hf: Callable[[Any], dict[str, Any]]
    prefix: str
    """What every HF key of the full model starts with; a bare-backbone checkpoint lacks it."""
    renames: dict[str, str] = field(default_factory=dict)
    transposed: tuple[str, ...] = ()
    tied: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    """Regexes (``re.search``) of HF keys to skip."""
    legacy: tuple[tuple[str, str], ...] = ()
    """(regex, replacement) for names older checkpoints used (BERT's ``LayerNorm.gamma``)."""

    def hf_name(self, key: str) -> str:
        """Our parameter name -> the HF checkpoint's tensor name."""
        module, _, param = key.rpartition(".")
        template = _LAYER.sub(".{i}.", f".{module}.")[1:-1]  # "bert.encoder.layer.{i}.ln_1"
        if template in self.renames:
            index = _LAYER.search(f".{module}.")
            module = self.renames[template].format(i=index.group(1) if index else "")
        return f"{module}.{param}"

    def is_transposed(self, key: str) -> bool:
        return key.rpartition(".")[0].endswith(self.transposed) and key.endswith(".weight")

    def modern_name(self, hf_key: str) -> str:
        for pattern, replacement in self.legacy:
            hf_key = re.sub(pattern, replacement, hf_key)
        return hf_key

    def is_ignored(self, hf_key: str) -> bool:
        return any(re.search(pattern, hf_key) for pattern in self.ignored)


def _get(hf: dict[str, Any], key: str, where: str, default: Any = None) -> Any:
    if key in hf and hf[key] is not None:
        return hf[key]
    if default is None:
        raise ConfigError(f"{where}: missing field {key!r}")
    return default


def _expect(hf: dict[str, Any], key: str, allowed: tuple[Any, ...], where: str) -> None:
    """Fields our model does not parameterise must hold a value it reproduces."""
    if key in hf and hf[key] not in allowed:
        raise ConfigError(
            f"{where}: {key}={hf[key]!r} is not supported (zeroforge reproduces {' or '.join(map(repr, allowed))})"
        )


def _dropout(hf: dict[str, Any], *keys: str) -> float:
    return float(next((hf[k] for k in keys if isinstance(hf.get(k), int | float)), 0.0))


# ----------------------------------------------------------------------------- GPT-2


def _gpt2_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    n_embd = _get(hf, "n_embd", where)
    _expect(hf, "activation_function", ("gelu_new", "gelu_pytorch_tanh"), where)
    _expect(hf, "n_inner", (None, 4 * n_embd), where)
    _expect(hf, "layer_norm_epsilon", (1e-5,), where)
    _expect(hf, "scale_attn_weights", (True,), where)
    _expect(hf, "scale_attn_by_inverse_layer_idx", (False,), where)
    _expect(hf, "add_cross_attention", (False,), where)
    _expect(hf, "tie_word_embeddings", (True,), where)
    return dict(
        n_layer=_get(hf, "n_layer", where),
        n_head=_get(hf, "n_head", where),
        n_embd=n_embd,
        block_size=_get(hf, "n_positions", where),
        vocab_size=_get(hf, "vocab_size", where),
        dropout=_dropout(hf, "resid_pdrop", "embd_pdrop"),
        bias=True,
    )


def _gpt2_to_hf(c: Any) -> dict[str, Any]:
    return dict(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        n_positions=c.block_size,
        n_inner=None,
        vocab_size=c.vocab_size,
        activation_function="gelu_new",  # tanh-approximated GELU, ours "gelu_tanh"
        layer_norm_epsilon=1e-5,
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        scale_attn_weights=True,
        tie_word_embeddings=True,
    )


GPT2 = KeyMap(
    family="gpt",
    model_type="gpt2",
    architecture="GPT2LMHeadModel",
    config_from_hf=_gpt2_from_hf,
    config_to_hf=_gpt2_to_hf,
    prefix="transformer.",
    # HF's GPT-2 keeps OpenAI's Conv1D, y = x W + b with W (in, out): nn.Linear's weight transposed.
    transposed=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    tied=("lm_head.weight",),
    ignored=(r"\.attn\.(masked_)?bias$",),  # the causal-mask buffers older versions saved
)


# ----------------------------------------------------------------------------- BERT (MiniLM included)

_BERT_LAYER = {
    "bert.encoder.layer.{i}.attention.query": "bert.encoder.layer.{i}.attention.self.query",
    "bert.encoder.layer.{i}.attention.key": "bert.encoder.layer.{i}.attention.self.key",
    "bert.encoder.layer.{i}.attention.value": "bert.encoder.layer.{i}.attention.self.value",
    "bert.encoder.layer.{i}.attention.out": "bert.encoder.layer.{i}.attention.output.dense",
    "bert.encoder.layer.{i}.ln_1": "bert.encoder.layer.{i}.attention.output.LayerNorm",
    "bert.encoder.layer.{i}.mlp.c_fc": "bert.encoder.layer.{i}.intermediate.dense",
    "bert.encoder.layer.{i}.mlp.c_proj": "bert.encoder.layer.{i}.output.dense",
    "bert.encoder.layer.{i}.ln_2": "bert.encoder.layer.{i}.output.LayerNorm",
}


def _bert_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    _expect(hf, "hidden_act", ("gelu",), where)
    _expect(hf, "position_embedding_type", ("absolute",), where)
    _expect(hf, "is_decoder", (False,), where)
    _expect(hf, "add_cross_attention", (False,), where)
    fields = dict(
        n_layer=_get(hf, "num_hidden_layers", where),
        n_head=_get(hf, "num_attention_heads", where),
        n_embd=_get(hf, "hidden_size", where),
        intermediate_size=_get(hf, "intermediate_size", where),
        block_size=_get(hf, "max_position_embeddings", where),
        vocab_size=_get(hf, "vocab_size", where),
        type_vocab_size=_get(hf, "type_vocab_size", where, 2),
        dropout=_dropout(hf, "hidden_dropout_prob"),
        layer_norm_eps=float(_get(hf, "layer_norm_eps", where, 1e-12)),
        initializer_range=float(_get(hf, "initializer_range", where, 0.02)),
        pad_token_id=_get(hf, "pad_token_id", where, 0),
    )
    labels = hf.get("id2label") or {}
    n_labels = hf.get("num_labels", len(labels))
    if isinstance(n_labels, int) and n_labels >= 2:
        fields["n_labels"] = n_labels
    return fields


def _bert_to_hf(c: Any) -> dict[str, Any]:
    return dict(
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        hidden_size=c.n_embd,
        intermediate_size=c.intermediate_size,
        max_position_embeddings=c.block_size,
        vocab_size=c.vocab_size,
        type_vocab_size=c.type_vocab_size,
        hidden_act="gelu",  # exact erf GELU
        hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.dropout,
        layer_norm_eps=c.layer_norm_eps,
        initializer_range=c.initializer_range,
        pad_token_id=c.pad_token_id,
        position_embedding_type="absolute",
        tie_word_embeddings=True,
    )


def _bert_classifier_to_hf(c: Any) -> dict[str, Any]:
    labels = {str(i): f"LABEL_{i}" for i in range(c.n_labels)}
    return {**_bert_to_hf(c), "id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}


_BERT_IGNORED = (
    r"^(bert\.)?embeddings\.position_ids$",  # a buffer, not a weight
    r"^cls\.predictions\.decoder\.bias$",  # HF ties it to cls.predictions.bias
    r"^cls\.predictions\.decoder\.weight$",  # tied to the word embeddings
)

BERT = KeyMap(
    family="bert",
    model_type="bert",
    architecture="BertForPreTraining",
    config_from_hf=_bert_from_hf,
    config_to_hf=_bert_to_hf,
    prefix="bert.",
    renames=_BERT_LAYER,
    tied=("cls.predictions.decoder.weight",),
    optional=("cls.", "bert.pooler."),
    ignored=_BERT_IGNORED,
    legacy=((r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")),
)

BERT_CLASSIFIER = dataclasses.replace(
    BERT,
    family="bert-classifier",
    architecture="BertForSequenceClassification",
    config_to_hf=_bert_classifier_to_hf,
    tied=(),
    optional=("classifier.", "bert.pooler."),
    ignored=(*_BERT_IGNORED, r"^cls\."),  # a pretraining checkpoint's heads are not used
)


# ----------------------------------------------------------------------------- Llama


def _rope_theta(hf: dict[str, Any], where: str) -> float:
    # transformers >= 5 nests it in rope_parameters; older configs have rope_theta and rope_scaling
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind != "default":
        raise ConfigError(
            f"{where}: rope scaling {kind!r} is not supported (zeroforge implements default RoPE)"
        )
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _llama_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    _expect(hf, "hidden_act", ("silu",), where)
    _expect(hf, "attention_bias", (False,), where)
    _expect(hf, "mlp_bias", (False,), where)
    _expect(hf, "pretraining_tp", (1,), where)
    n_head = _get(hf, "num_attention_heads", where)
    return dict(
        n_layer=_get(hf, "num_hidden_layers", where),
        n_head=n_head,
        n_kv_head=_get(hf, "num_key_value_heads", where, n_head),
        n_embd=_get(hf, "hidden_size", where),
        intermediate_size=_get(hf, "intermediate_size", where),
        vocab_size=_get(hf, "vocab_size", where),
        block_size=_get(hf, "max_position_embeddings", where),
        head_dim=hf.get("head_dim"),
        rope_theta=_rope_theta(hf, where),
        rms_norm_eps=float(_get(hf, "rms_norm_eps", where, 1e-6)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


def _llama_to_hf(c: Any) -> dict[str, Any]:
    return dict(
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.n_kv_head,
        hidden_size=c.n_embd,
        intermediate_size=c.intermediate_size,
        vocab_size=c.vocab_size,
        max_position_embeddings=c.block_size,
        head_dim=c.head_dim,
        rope_theta=c.rope_theta,  # transformers 4.x
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},  # transformers 5.x
        rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
    )


LLAMA = KeyMap(
    family="llama",
    model_type="llama",
    architecture="LlamaForCausalLM",
    config_from_hf=_llama_from_hf,
    config_to_hf=_llama_to_hf,
    prefix="model.",
    tied=("lm_head.weight",),  # only when config.tie_word_embeddings (see ``tied_keys``)
    ignored=(r"rotary_emb\.inv_freq$",),  # a buffer older versions saved
)


# ----------------------------------------------------------------------------- lookup

KEYMAPS = {m.family: m for m in (GPT2, BERT, BERT_CLASSIFIER, LLAMA)}

# HF model_type -> architectures -> family; the first entry is the default for that model_type.
_HF_FAMILIES: dict[str, dict[str, str]] = {
    "gpt2": {"GPT2LMHeadModel": "gpt", "GPT2Model": "gpt"},
    "bert": {
        "BertForPreTraining": "bert",
        "BertModel": "bert",
        "BertForMaskedLM": "bert",
        "BertForSequenceClassification": "bert-classifier",
    },
    "llama": {"LlamaForCausalLM": "llama", "LlamaModel": "llama"},
}


def family_for_hf(hf: dict[str, Any], where: str) -> str:
    """The zeroforge family for an HF config.json, from ``model_type`` and ``architectures``."""
    model_type = hf.get("model_type")
    if model_type not in _HF_FAMILIES:
        known = ", ".join(sorted(_HF_FAMILIES))
        raise ConfigError(
            f"{where}: unknown model family model_type={model_type!r} (zeroforge loads: {known})"
        )
    by_arch = _HF_FAMILIES[model_type]
    archs = hf.get("architectures") or []
    return next((by_arch[a] for a in archs if a in by_arch), next(iter(by_arch.values())))


def keymap_for(family: str) -> KeyMap | None:
    """The family's map, or None for families with no HF counterpart (CNNs, RNNs, linear models)."""
    return KEYMAPS.get(family)


def tied_keys(keymap: KeyMap, config: Any) -> tuple[str, ...]:
    if keymap.family == "llama" and not config.tie_word_embeddings:
        return ()
    return keymap.tied
