"""ResNet-18 / ResNet-34 (He et al. 2016), written out: residual blocks y = relu(F(x) + shortcut(x)).

Stem (7x7/2 conv, 3x3/2 max-pool; or one 3x3/1 conv with ``small_input`` for 28-32 px images) ->
four stages of BasicBlocks (64, 128, 256, 512 channels; stride 2 entering stages 2-4) -> global
average pool -> fc. Layer names follow torchvision (conv1, bn1, layer1.0.conv1, downsample, fc), so
torchvision's fine-tuning step ``model.fc = nn.Linear(model.fc.in_features, 10)`` works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zeroforge.models.cnn import ImageClassifier
from zeroforge.schema import require, require_positive


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; the shortcut is the identity, or a 1x1 conv when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)  # (N, c_out, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)  # the residual connection: learn F(x) = H(x) - x


@dataclass
class ResNetConfig:
    """Defaults are ResNet-18 for ImageNet-sized inputs."""

    in_channels: int = 3
    num_classes: int = 1000
    image_size: int = 224
    """Nominal input size (any size >= 32, or >= 8 with small_input, works: global pooling)."""
    layers: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    """BasicBlocks per stage: [2, 2, 2, 2] is ResNet-18, [3, 4, 6, 3] is ResNet-34."""
    width: int = 64
    """Channels of the first stage; each later stage doubles them."""
    small_input: bool = False
    """A 3x3 stride-1 stem without max-pool (CIFAR/MNIST-sized images), instead of 7x7/2 + pool."""

    def __post_init__(self) -> None:
        require_positive(self, "in_channels", "num_classes", "image_size", "width")
        require(
            len(self.layers) >= 1 and min(self.layers) >= 1,
            "layers",
            f"need >= 1 stage of >= 1 blocks, got {self.layers}",
        )


class ResNet(ImageClassifier):
    config_class = ResNetConfig

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        if config.small_input:
            self.conv1 = nn.Conv2d(config.in_channels, w, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(config.in_channels, w, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        c_in = w
        for i, n_blocks in enumerate(config.layers):
            c_out = w * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, c_out, stride)] + [
                BasicBlock(c_out, c_out) for _ in range(n_blocks - 1)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.n_stages = len(config.layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, config.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He init with fan_out, as the paper's reference implementation
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(pixel_values))))  # (N, w, H/4, W/4) or (N, w, H, W)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)  # (N, w * 2^i, ...)
        return self.avgpool(x).flatten(1)  # (N, w * 2^(stages-1))


# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet18": ("resnet", dict(layers=[2, 2, 2, 2])),
    "resnet34": ("resnet", dict(layers=[3, 4, 6, 3])),
}
