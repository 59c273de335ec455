"""BERT-compatible bidirectional transformer encoder (Devlin et al. 2019), read top to bottom.

Token + position + segment embeddings -> LayerNorm -> n_layer post-LN blocks, as in the original
Transformer: x = LN(x + attn(x)), then x = LN(x + mlp(x)), where every token attends every real
(non-padding) token -> heads:

- ``BertForPreTraining`` (family ``bert``): masked-LM head tied to the word embeddings, and
  next-sentence prediction from the pooler (tanh(W h_[CLS] + b));
- ``BertForSequenceClassification`` (family ``bert-classifier``): a Linear on the pooled [CLS];
- ``sentence_embedding`` on both: the mean of the last hidden states over the attention mask.

The model contract is GPT's (models/gpt.py): ``hidden_states`` (the last block's output: BERT is
post-LN, so there is no separate ``final_norm``, which is None), ``blocks`` and ``output_layer``.

Parameter names follow Hugging Face's ``BertForPreTraining`` (``bert.embeddings.*``,
``bert.pooler.dense``, ``cls.predictions.*``, ``cls.seq_relationship``) except inside a block, where
the shared modules' names are used: HF ``attention.self.{query,key,value}`` -> ``attention.{query,key,value}``,
``attention.output.dense`` -> ``attention.out``, ``attention.output.LayerNorm`` -> ``ln_1``,
``intermediate.dense`` -> ``mlp.c_fc``, ``output.dense`` -> ``mlp.c_proj``, ``output.LayerNorm`` -> ``ln_2``.

References: Devlin et al. 2019 (BERT); google-research/bert modeling.py; Turc et al. 2019 (small BERTs).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import ZeroforgeError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.attention import attention, merge_heads, split_heads
from zeroforge.modules.init import normal_init_, sinusoidal_positions
from zeroforge.modules.losses import IGNORE_INDEX
from zeroforge.modules.masks import encoder_inputs
from zeroforge.modules.mlp import MLP
from zeroforge.modules.pooling import mean_pool
from zeroforge.schema import preset_config, require, require_choices, require_positive, require_token_ids


@dataclass
class BertConfig:
    """Defaults are bert-base (110M)."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    intermediate_size: int | None = None
    """Hidden width of the MLP; default 4 * n_embd (true of every published BERT size)."""
    block_size: int = 512
    """Longest sequence (the number of learned positions; HF's ``max_position_embeddings``)."""
    vocab_size: int = 30522
    type_vocab_size: int = 2
    """Segment ids: 0 for sentence A, 1 for sentence B."""
    dropout: float = 0.1
    """Hidden and attention-probability dropout (BERT uses 0.1 for both)."""
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    """Std of the N(0, std) initial Linear and Embedding weights (HF's name; BERT uses 0.02)."""
    # Initialisation options. BERT starts every head attending almost uniformly; these start some
    # heads attending to nearby tokens instead, a local-attention prior (cf. the local heads that
    # Clark et al. 2019, "What Does BERT Look At?", find in trained BERT). The weights train freely
    # afterwards, and checkpoints are unaffected.
    position_init: Literal["normal", "sinusoidal"] = "normal"
    """The learned position table's start: ``normal`` N(0, initializer_range) as BERT, or the
    Transformer's sin/cos encoding (Vaswani et al. 2017, section 3.5) times ``position_init_scale``,
    whose dot products are largest at offset 0 and fall with distance."""
    position_init_scale: float = 1.0
    """Multiplier of the sinusoidal table (whose entries have std 1/sqrt(2) at 1.0)."""
    position_init_cls: bool = True
    """Whether ``position_init`` also sets position 0, where [CLS] always sits. ``false`` leaves that
    row at BERT's N(0, initializer_range), outside the sinusoidal order, so a local head does not
    treat [CLS] as the first tokens' neighbour."""
    qk_init: Literal["normal", "tied"] = "normal"
    """``tied``: an attention layer starts with its key weights equal to its query weights, so a
    head's score q_i . k_j = x_i W W^T x_j is a similarity of the two inputs; with sinusoidal
    positions such a head starts out attending to nearby tokens."""
    qk_init_std: float | None = None
    """Std of the initial query (and tied key) weights; default ``initializer_range``."""
    qk_init_heads: int | None = None
    """With ``qk_init=tied``: how many heads of each tied layer start tied; the others keep BERT's
    init (attending everywhere, as [CLS] does for next-sentence prediction). Default: all heads."""
    qk_init_layers: int | None = None
    """With ``qk_init=tied``: how many of the first layers start with tied heads; the layers above keep
    BERT's init. Default: every layer."""
    nsp_loss_weight: float = 1.0
    """Pretraining loss = MLM loss + nsp_loss_weight * NSP loss (BERT: 1). NSP gets one label per
    pair against MLM's ~15% of its tokens, so a small model learns it more slowly."""
    pad_token_id: int = 0
    n_labels: int = 2
    """Classes of the sequence-classification head (``bert-classifier`` only)."""
    attention: Literal["sdpa", "naive"] = "sdpa"
    """``sdpa``: PyTorch's fused kernel; ``naive``: softmax(QK^T/sqrt(d_k))V written out (reference)."""

    def __post_init__(self) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd
        require_positive(self, "n_layer", "n_head", "n_embd", "intermediate_size", "block_size", "vocab_size")
        require(
            self.n_embd % self.n_head == 0,
            "n_embd",
            f"must be divisible by n_head ({self.n_head}), got {self.n_embd}",
        )
        require(self.type_vocab_size >= 1, "type_vocab_size", f"must be >= 1, got {self.type_vocab_size}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.layer_norm_eps > 0, "layer_norm_eps", f"must be > 0, got {self.layer_norm_eps}")
        require(self.initializer_range > 0, "initializer_range", f"must be > 0, got {self.initializer_range}")
        require_token_ids(self, "pad_token_id")
        require(self.n_labels >= 2, "n_labels", f"must be >= 2, got {self.n_labels}")
        require(self.nsp_loss_weight >= 0, "nsp_loss_weight", f"must be >= 0, got {self.nsp_loss_weight}")
        require_choices(self)  # position_init, qk_init, attention
        require(
            self.qk_init_heads is None or 0 <= self.qk_init_heads <= self.n_head,
            "qk_init_heads",
            f"must be in [0, n_head={self.n_head}] or null, got {self.qk_init_heads}",
        )
        require(
            self.qk_init_layers is None or 0 <= self.qk_init_layers <= self.n_layer,
            "qk_init_layers",
            f"must be in [0, n_layer={self.n_layer}] or null, got {self.qk_init_layers}",
        )
        require(
            self.qk_init_std is None or self.qk_init_std > 0,
            "qk_init_std",
            f"must be > 0 or null, got {self.qk_init_std}",
        )

    @property
    def max_position_embeddings(self) -> int:
        """HF's name for ``block_size``."""
        return self.block_size

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> BertConfig:
        """A preset's config (``BertConfig.from_name("bert-base", n_layer=4)``)."""
        return preset_config(cls, PRESETS, name, **overrides)


@dataclass
class BertOutput(ModelOutput):
    """``ModelOutput`` plus BERT's second head and the encoder states.

    ``logits``: MLM logits (B, T, V); with ``labels`` given, only the masked rows (N, V), N = number
    of labels != -100 (projecting every position onto the vocabulary costs more than the encoder).
    """

    nsp_logits: torch.Tensor | None = None  # (B, 2): index 0 = "B follows A", 1 = "B is random"
    hidden_states: torch.Tensor | None = None  # (B, T, C), the last layer


# ----------------------------------------------------------------------------- encoder


class BertEmbeddings(nn.Module):
    """word + absolute position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embeddings = nn.Embedding(config.block_size, config.n_embd)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.n_embd)
        self.LayerNorm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )  # (B, T, C)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head attention: three projections, the shared ``attention``, one output."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.out = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.impl = config.attention

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.n_head) for proj in (self.query, self.key, self.value))
        dropout_p = self.dropout if self.training else 0.0
        y = attention(
            q, k, v, mask=mask, is_causal=False, dropout_p=dropout_p, impl=self.impl
        )  # (B, nh, T, hs)
        return self.resid_dropout(self.out(merge_heads(y)))  # (B, T, C)


class BertLayer(nn.Module):
    """Post-LN block (Vaswani et al. 2017, as BERT): x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        assert config.intermediate_size is not None  # set by __post_init__
        self.attention = BertSelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config.n_embd, config.intermediate_size, True, config.dropout, "gelu")
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_1(x + self.attention(x, mask))
        return self.ln_2(x + self.mlp(x))


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.n_layer)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sequence summary NSP and classification read."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, C)


class BertBase(nn.Module):
    """The model contract as BERT's encoder (``BertModel``) and the task models on it (``BertWithHeads``)
    both expose it, computed by ``encoder_model``, the ``BertModel`` itself or the one a task model holds."""

    config: BertConfig
    lora_targets = ("query", "value")  # LoRA's default targets (modules/lora.py)
    final_norm = None  # post-LN: every block ends in its own LayerNorm (``blocks[-1].ln_2``)

    @property
    def encoder_model(self) -> BertModel:
        raise NotImplementedError

    @property
    def context_length(self) -> int:
        return self.config.block_size

    @property
    def blocks(self) -> nn.ModuleList:
        """The encoder layers, bottom to top."""
        return self.encoder_model.encoder.layer

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) -> the last layer's hidden states (B, T, C).

        attention_mask (B, T): 1 = real token, 0 = padding (on the right).
        segment_ids (B, T): packed rows, 1, 2, ... per example and 0 = padding (modules/masks.py);
        not BERT's sentence A/B ids, which are ``token_type_ids`` (default all 0, sentence A).
        """
        if input_ids.dim() != 2:
            raise ZeroforgeError(f"input_ids: expected shape (batch, seq_len), got {tuple(input_ids.shape)}")
        T = input_ids.size(1)
        if T > self.config.block_size:
            raise ZeroforgeError(
                f"sequence length {T} exceeds model block_size {self.config.block_size} "
                "(truncate the input, e.g. zeroforge.embed truncates with a warning)"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # (B, T) all sentence A
        positions, mask = encoder_inputs(input_ids, attention_mask, segment_ids, position_ids)
        bert = self.encoder_model
        x = bert.embeddings(input_ids, token_type_ids, positions)  # (B, T, C)
        return bert.encoder(x, mask)  # (B, T, C)

    def sentence_embedding(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean-pooled last hidden states (B, C) over the attention mask, not normalised
        (``zeroforge.embed`` normalises)."""
        return mean_pool(self.encoder_model(input_ids, attention_mask, token_type_ids), attention_mask)


class BertModel(BertBase):
    """The encoder without heads: input ids -> last hidden states (B, T, C), plus the pooler."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)

    @property
    def encoder_model(self) -> BertModel:
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``hidden_states`` with HF BertModel's argument order."""
        return self.hidden_states(
            input_ids, attention_mask, position_ids=position_ids, token_type_ids=token_type_ids
        )


@torch.no_grad()
def _init_positions_and_attention(model: nn.Module, config: BertConfig) -> None:
    """``position_init`` and ``qk_init`` (see ``BertConfig``), after BERT's own initialisation."""
    bert = model.bert
    if config.position_init == "sinusoidal":
        table = bert.embeddings.position_embeddings.weight
        first = 0 if config.position_init_cls else 1  # row 0 is [CLS]'s position
        table[first:].copy_(sinusoidal_positions(*table.shape)[first:] * config.position_init_scale)
    if config.qk_init == "tied":
        std = config.qk_init_std or config.initializer_range
        heads = config.n_head if config.qk_init_heads is None else config.qk_init_heads
        rows = heads * (config.n_embd // config.n_head)  # the output rows of the first ``heads`` heads
        for layer in bert.encoder.layer[: config.qk_init_layers]:
            query, key = layer.attention.query.weight, layer.attention.key.weight  # (C, C): (out, in)
            query[:rows].normal_(0.0, std)
            key[:rows].copy_(query[:rows])  # W_k = W_q for these heads, then trained apart


class BertWithHeads(BertBase):
    """What the task models share: the encoder as ``self.bert`` (HF's parameter prefix) and the model
    contract (``BertBase``); each subclass adds its heads, then initialises."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)

    @property
    def encoder_model(self) -> BertModel:
        return self.bert

    def without_output_layer(self) -> BertModel:
        """The encoder (``self.bert``, its pooler included) as the body of a new task head."""
        return self.bert

    def init_weights(self) -> None:
        """BERT's initialisation of every module, then ``position_init`` and ``qk_init``; subclasses
        call it once their heads exist."""
        self.apply(functools.partial(normal_init_, std=self.config.initializer_range))
        _init_positions_and_attention(self, self.config)


# ----------------------------------------------------------------------------- pretraining heads


class BertPredictionTransform(nn.Module):
    """dense -> GELU -> LayerNorm, applied before the tied vocabulary projection."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)
        self.act = nn.GELU()
        self.LayerNorm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """MLM head: transform, then logits = h E^T + b with E the word embeddings (tied)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionTransform(config)
        self.decoder = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x)) + self.bias  # (..., V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.n_embd, 2)


class BertForPreTraining(BertWithHeads):
    """BERT with its two pretraining heads: masked LM and next-sentence prediction."""

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.cls = BertPreTrainingHeads(config)
        self.init_weights()
        # Weight tying (Press & Wolf 2017): the MLM output projection is the word embedding.
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    @property
    def output_layer(self) -> BertLMPredictionHead:
        """The masked-LM head, hidden states (..., C) -> vocabulary logits (..., V)."""
        return self.cls.predictions

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count (tied weights once); ``non_embedding`` drops position and segment tables."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = self.bert.embeddings
            n -= emb.position_embeddings.weight.numel() + emb.token_type_embeddings.weight.numel()
        return n

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> BertOutput:
        """input_ids (B, T) -> MLM logits (B, T, V) and NSP logits (B, 2).

        attention_mask (B, T): 1 = real token, 0 = padding (on the right).
        token_type_ids (B, T): 0 for [CLS] A [SEP], 1 for B [SEP]; default all 0.
        labels (B, T): original ids at masked positions, -100 elsewhere -> MLM loss, and ``logits``
        becomes (N, V) for the N masked positions only (row-major order).
        next_sentence_label (B,): 0 = B follows A, 1 = B is random -> NSP loss.
        The loss is the sum of the given objectives' mean losses (BERT's pretraining loss).
        """
        hidden = self.hidden_states(input_ids, attention_mask, position_ids, token_type_ids=token_type_ids)
        nsp_logits = self.cls.seq_relationship(self.bert.pooler(hidden))  # (B, 2)
        metrics: dict[str, Any] = {}
        losses = []
        if labels is None:
            logits = self.cls.predictions(hidden)  # (B, T, V)
        else:
            selected = labels != IGNORE_INDEX  # (B, T)
            targets = labels[selected]  # (N,)
            logits = self.cls.predictions(hidden[selected])  # (N, V)
            n = targets.numel()
            mlm_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
            losses.append(mlm_sum / max(n, 1))
            correct = (logits.argmax(-1) == targets).sum()
            metrics["mlm_loss"] = (mlm_sum.detach(), n)
            metrics["mlm_accuracy"] = (correct, n)
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
            B = nsp_logits.size(0)
            metrics["nsp_loss"] = (nsp_loss.detach() * B, B)
            metrics["nsp_accuracy"] = ((nsp_logits.argmax(-1) == next_sentence_label.view(-1)).sum(), B)
            losses.append(nsp_loss * self.config.nsp_loss_weight)
        loss = sum(losses[1:], losses[0]) if losses else None
        return BertOutput(
            logits=logits, loss=loss, metrics=metrics, nsp_logits=nsp_logits, hidden_states=hidden
        )


# ----------------------------------------------------------------------------- classification


class BertForSequenceClassification(BertWithHeads):
    """BERT with a Linear on the pooled [CLS] state: ``n_labels``-way sequence classification."""

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.n_embd, config.n_labels)
        self.init_weights()

    @property
    def output_layer(self) -> nn.Linear:
        """The classification head, pooled [CLS] (B, C) -> class logits (B, n_labels)."""
        return self.classifier

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> BertOutput:
        """input_ids (B, T) -> class logits (B, n_labels); labels (B,) -> cross-entropy and accuracy."""
        hidden = self.hidden_states(input_ids, attention_mask, position_ids, token_type_ids=token_type_ids)
        logits = self.classifier(self.dropout(self.bert.pooler(hidden)))  # (B, n_labels)
        loss, metrics = None, {}
        if labels is not None:
            labels = labels.view(-1)
            loss = F.cross_entropy(logits.float(), labels)
            metrics["accuracy"] = ((logits.argmax(-1) == labels).sum(), labels.numel())
        return BertOutput(logits=logits, loss=loss, metrics=metrics, hidden_states=hidden)


# ----------------------------------------------------------------------------- presets

# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert-base": ("bert", dict(n_layer=12, n_head=12, n_embd=768)),  # 110M (bert-base-uncased)
    "bert-large": ("bert", dict(n_layer=24, n_head=16, n_embd=1024)),  # 340M
    # all-MiniLM-L6-v2's encoder (Wang et al. 2020, MiniLM distilled): 6 layers, 384 wide, 12 heads, 22.7M
    "MiniLM-L6-H384": ("bert", dict(n_layer=6, n_head=12, n_embd=384)),
    # Turc et al. 2019 "Well-Read Students Learn Better" small BERTs (google/bert_uncased_L-*_H-*_A-*)
    "bert-tiny": ("bert", dict(n_layer=2, n_head=2, n_embd=128)),
    "bert-mini": ("bert", dict(n_layer=4, n_head=4, n_embd=256)),
    "bert-small": ("bert", dict(n_layer=4, n_head=8, n_embd=512)),
    # for tests
    "bert-test": ("bert", dict(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=64, dropout=0.0)),
}
