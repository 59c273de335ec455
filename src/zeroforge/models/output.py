"""The one output type every zeroforge model returns from ``forward(**batch)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# A metric is either a scalar (averaged over batches by the trainer) or a
# (numerator, denominator) pair that the trainer sums over batches before dividing,
# so e.g. accuracy over masked tokens is exact however many tokens each batch masks.
Metric = torch.Tensor | float | tuple[torch.Tensor | float, torch.Tensor | float]


@dataclass
class ModelOutput:
    """``logits`` always; ``loss`` when labels were given; ``metrics`` for the trainer to log.

    ``cache`` is the decoding state (KV cache or recurrent state) when the caller passed one.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)
    cache: Any = None
