"""Sequence classification on a pretrained body: a new Linear head on a pooled hidden state.

The body is any GPT, Llama or BERT model; the head reads one vector per sequence:

- ``last``: the hidden state of the last real token (decoders: only it has seen the whole text).
  It is found from the attention mask, so left and right padding pick the same token;
- ``mean``: the mean over real tokens (Sentence-BERT's pooling; what all-MiniLM-L6-v2 was tuned with);
- ``cls``: BERT's pooler, tanh(W h_[CLS] + b), as ``BertForSequenceClassification``.

``SequenceClassifier.from_body(model, n_labels)`` wraps an already loaded model (its weights are
kept; ``model.without_output_layer()`` gives the body, without the LM or pretraining heads); the
registered family ``classifier`` rebuilds the same structure from its config, so a run directory's
checkpoint loads with ``create_model``. The body is used through the model contract only
(``hidden_states``, ``blocks``, ``final_norm``; models/gpt.py). With ``lora`` set in the config the body carries
LoRA adapters (``modules/lora.py``), so a LoRA run's checkpoints load too.

The head is named ``score`` as in Hugging Face's ``GPT2ForSequenceClassification`` /
``LlamaForSequenceClassification``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import ConfigError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.pooling import mean_pool
from zeroforge.registry import config_to_dict, create_model, family_for_model, family_of
from zeroforge.schema import require

Pooling = Literal["last", "mean", "cls"]

DECODERS = ("gpt", "llama")
ENCODERS = ("bert", "bert-classifier")


@dataclass
class ClassifierConfig:
    backbone: str = "bert"
    """The body's family or preset (``llama``, ``gpt``, ``bert``...)."""
    backbone_config: dict[str, Any] = field(default_factory=dict)
    """The body's config fields (as ``create_model(backbone, **backbone_config)`` takes them)."""
    n_labels: int = 2
    pooling: Pooling | None = None
    """None: the body's usual pooling, ``last`` for a decoder and ``cls`` for BERT (set when the model
    is built, so a saved config names it)."""
    dropout: float = 0.1
    """Dropout on the pooled vector before the head."""
    label_names: list[str] = field(default_factory=list)
    """Class names by id (kept with the checkpoint so evaluation reports them)."""
    lora: dict[str, Any] | None = None
    """``LoRAConfig`` fields when the body carries LoRA adapters (null once they are merged)."""

    def __post_init__(self) -> None:
        require(self.n_labels >= 2, "n_labels", f"must be >= 2, got {self.n_labels}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(
            not self.label_names or len(self.label_names) == self.n_labels,
            "label_names",
            f"expected {self.n_labels} names, got {len(self.label_names)}",
        )


def body_kind(family: str) -> Literal["decoder", "encoder"]:
    if family in DECODERS:
        return "decoder"
    if family in ENCODERS:
        return "encoder"
    raise ConfigError(
        f"model: a {family} model cannot be a classifier body (expected one of {', '.join(DECODERS + ENCODERS)})"
    )


def check_pooling(pooling: str, family: str) -> None:
    allowed = ("last", "mean") if body_kind(family) == "decoder" else ("cls", "mean")
    if pooling not in allowed:
        raise ConfigError(
            f"finetune.pooling: {pooling!r} does not suit a {family} body (expected {' or '.join(allowed)})"
        )


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, under left or right padding: (B, T) -> (B,)."""
    T = attention_mask.size(1)
    positions = torch.arange(T, device=attention_mask.device)  # (T,)
    return (attention_mask.long() * (positions + 1)).argmax(dim=-1)  # (B,) largest position with mask 1


def pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor | None,
    pooling: Pooling,
    pooler: nn.Module | None = None,
) -> torch.Tensor:
    """One vector per sequence from hidden states (B, T, C) -> (B, C)."""
    if pooling == "cls":
        return pooler(hidden) if pooler is not None else hidden[:, 0]
    if pooling == "mean":
        return mean_pool(hidden, attention_mask)
    if attention_mask is None:
        return hidden[:, -1]
    index = last_token_index(attention_mask)  # (B,)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), index]  # (B, C)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy as (correct, n); for two classes also F1 of class 1 as (2 TP, n_true + n_pred), which
    sums exactly over batches: F1 = 2TP / (2TP + FP + FN) = 2TP / (true count + predicted count)."""
    pred = logits.argmax(dim=-1)  # (B,)
    metrics: dict[str, Any] = {"accuracy": ((pred == labels).sum(), labels.numel())}
    if logits.size(-1) == 2:
        tp = ((pred == 1) & (labels == 1)).sum()
        metrics["f1"] = (2 * tp, (labels == 1).sum() + (pred == 1).sum())
    return metrics


class SequenceClassifier(nn.Module):
    """A pretrained body + pooling + Linear head; see the module docstring."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig, body: nn.Module | None = None) -> None:
        super().__init__()
        family = family_of(config.backbone).name
        if config.pooling is None:
            config.pooling = "last" if body_kind(family) == "decoder" else "cls"
        check_pooling(config.pooling, family)
        self.config = config
        self.kind = body_kind(family)
        if body is None:
            body = create_model(config.backbone, **config.backbone_config)
        width = body.config.n_embd
        self.backbone = body.without_output_layer()  # GPT/Llama: no lm_head; BERT: its encoder
        self.dropout = nn.Dropout(config.dropout)
        self.score = nn.Linear(width, config.n_labels)
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)
        if config.lora is not None:
            from zeroforge.modules.lora import LoRAConfig, apply_lora

            apply_lora(self.backbone, LoRAConfig(**config.lora))

    @classmethod
    def from_body(
        cls,
        model: nn.Module,
        n_labels: int,
        pooling: Pooling | None = None,
        dropout: float = 0.1,
        label_names: list[str] | None = None,
    ) -> SequenceClassifier:
        """Wrap a loaded GPT/Llama/BERT model (its weights are kept, its LM/pretraining heads dropped).

        ``pooling`` None: ``last`` for a decoder, ``cls`` for BERT."""
        family = family_for_model(model).name
        config = ClassifierConfig(
            backbone=family,
            backbone_config=config_to_dict(model.config),
            n_labels=n_labels,
            pooling=pooling,
            dropout=dropout,
            label_names=list(label_names or []),
        )
        return cls(config, body=model)

    @property
    def blocks(self) -> nn.ModuleList:
        """The body's transformer blocks, bottom to top (what ``freeze`` counts from the top)."""
        return self.backbone.blocks

    @property
    def final_norm(self) -> nn.Module | None:
        """The body's norm after its last block (None for post-LN BERT)."""
        return self.backbone.final_norm

    @property
    def output_layer(self) -> nn.Linear:
        """The classification head ``score``, pooled (B, C) -> (B, n_labels)."""
        return self.score

    @property
    def context_length(self) -> int:
        return self.backbone.config.block_size

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The body's last hidden states (B, T, C); ``token_type_ids`` (BERT's sentence A/B) for an
        encoder only."""
        if self.kind == "encoder":
            return self.backbone.hidden_states(input_ids, attention_mask, token_type_ids=token_type_ids)
        return self.backbone.hidden_states(input_ids, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (B, T), attention_mask (B, T) 1 = real token -> class logits (B, n_labels);
        labels (B,) -> cross-entropy, ``accuracy`` and (two classes) ``f1`` of class 1.
        ``teacher_logits`` (B, n_labels), in training batches of finetune task ``distill``: the loss is
        distillation's (modules/distillation.py) with ``self.distillation`` = (temperature, alpha)."""
        hidden = self.hidden_states(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        pooler = self.backbone.pooler if self.kind == "encoder" else None
        pooled = pool(hidden, attention_mask, self.config.pooling, pooler)  # (B, C)
        logits = self.score(self.dropout(pooled))  # (B, n_labels)
        if labels is None:
            return ModelOutput(logits=logits)
        labels = labels.view(-1)
        if teacher_logits is not None:
            from zeroforge.modules.distillation import distillation_loss

            temperature, alpha = getattr(self, "distillation", (2.0, 0.5))
            loss = distillation_loss(logits, teacher_logits, labels, temperature, alpha)
            return ModelOutput(logits=logits, loss=loss, metrics=classification_metrics(logits, labels))
        loss = F.cross_entropy(logits.float(), labels)
        return ModelOutput(logits=logits, loss=loss, metrics=classification_metrics(logits, labels))
