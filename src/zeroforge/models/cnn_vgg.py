"""VGG-11 (Simonyan & Zisserman 2015, configuration "A"), small-input variant.

Five stages of 3x3 convolutions (64, 128, 256-256, 512-512, 512-512 channels), each followed by a 2x2
max-pool; with batch norm after every conv (as in the common CIFAR variant). For small images the
original 7x7x512 -> 4096 -> 4096 classifier becomes global average pooling -> 512 -> fc, and the pools
round up (``ceil_mode``) so 28x28 inputs reach 1x1 instead of vanishing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zeroforge.models.cnn import ImageClassifier
from zeroforge.modules.init import init_weight_, init_weights
from zeroforge.schema import require, require_positive


@dataclass
class VGGConfig:
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32
    """Nominal input size (any size works thanks to ceil-mode pools and global pooling)."""
    stages: list[list[int]] = field(default_factory=lambda: [[64], [128], [256, 256], [512, 512], [512, 512]])
    """Conv widths per stage; each stage ends with a 2x2 max-pool. The default is VGG-11."""
    hidden_size: int = 512
    batch_norm: bool = True
    dropout: float = 0.5

    def __post_init__(self) -> None:
        require_positive(self, "in_channels", "num_classes", "image_size", "hidden_size")
        require(
            len(self.stages) >= 1 and all(len(s) >= 1 and min(s) >= 1 for s in self.stages),
            "stages",
            f"need >= 1 stage, each a non-empty list of widths >= 1, got {self.stages}",
        )
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


class VGG(ImageClassifier):
    config_class = VGGConfig

    def __init__(self, config: VGGConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for stage in config.stages:
            for c_out in stage:
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not config.batch_norm))
                if config.batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(c_in, config.hidden_size), nn.ReLU(inplace=True), nn.Dropout(config.dropout)
        )
        self.fc = nn.Linear(config.hidden_size, config.num_classes)
        init_weights(self, "he_normal")  # He et al. 2015: VGG trains from scratch with it, no stage-wise init
        init_weight_(self.fc.weight, "normal", std=0.01)  # small logits at the start
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.convs(pixel_values)  # (N, 512, ceil(H/32), ceil(W/32))
        return self.classifier(self.pool(x).flatten(1))  # (N, hidden)


# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "vgg11": ("vgg", dict()),
}
