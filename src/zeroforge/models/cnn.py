"""Convolutional networks: the convolution formula, the shared image-classifier contract, and a
LeNet-style ConvNet (LeCun et al. 1998). VGG, ResNet and EfficientNet-Lite live in ``cnn_vgg.py``, ``cnn_resnet.py`` and
``cnn_efficientnet.py`` and build on ``ImageClassifier`` from here.

A convolution layer computes, for every output channel o and position (i, j), the formula
(strictly a cross-correlation, which is what every framework calls convolution)::

    S(i, j) = (I * K)(i, j) = Σ_m Σ_n I(i + m, j + n) K(m, n)

summed over input channels too, with a stride s reading I(i·s + m, j·s + n) and zero padding around I.
``conv2d_formula`` writes exactly that; ``FormulaConv2d`` is an ``nn.Conv2d`` that uses it (tested equal to
torch's), and ``ConvNetConfig(conv="formula")`` builds a whole network on it.

Image classifiers take ``pixel_values`` (N, C, H, W) float images and optional ``labels`` (N,) class
ids, and return ``ModelOutput(logits (N, num_classes), loss=cross-entropy, metrics={"accuracy": ...})``.
The last layer is always ``model.fc`` so torchvision's transfer-learning step works unchanged::

    model.fc = nn.Linear(model.fc.in_features, 10)      # or: model.replace_head(10)
    model.freeze_backbone()                             # train only model.fc
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import DataError
from zeroforge.models.linear import check_hidden_layers
from zeroforge.models.output import ModelOutput
from zeroforge.modules.activations import ActivationName, make_activation
from zeroforge.modules.init import INITS, InitName, init_weights
from zeroforge.modules.losses import loss_and_metrics
from zeroforge.schema import require, require_positive

# ----------------------------------------------------------------------------- the formula


def conv2d_formula(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """S[b, o, i, j] = Σ_c Σ_m Σ_n I[b, c, i·s + m, j·s + n] K[o, c, m, n] + bias[o].

    x (B, C, H, W), weight (O, C, kh, kw) -> (B, O, H_out, W_out) with H_out = (H + 2p - kh) // s + 1.
    One term of the double sum per kernel offset (m, n), each a shifted view of the input.
    """
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))  # zeros around I
    _, _, H, W = x.shape
    n_out, C, kh, kw = weight.shape
    if x.shape[1] != C:
        raise DataError(f"conv2d_formula: input has {x.shape[1]} channels, the kernel expects {C}")
    Ho, Wo = (H - kh) // stride + 1, (W - kw) // stride + 1
    out = x.new_zeros(x.shape[0], n_out, Ho, Wo)
    for m in range(kh):
        for n in range(kw):
            # I(i·s + m, j·s + n) for every output position (i, j) at once
            patch = x[:, :, m : m + stride * (Ho - 1) + 1 : stride, n : n + stride * (Wo - 1) + 1 : stride]
            out = out + torch.einsum("bchw,oc->bohw", patch, weight[:, :, m, n])  # (B, O, Ho, Wo)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


class FormulaConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same init) computed by ``conv2d_formula``; square stride/padding only."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_formula(x, self.weight, self.bias, self.stride[0], self.padding[0])  # type: ignore[index]


# ----------------------------------------------------------------------------- shared classifier contract


class ImageClassifier(nn.Module):
    """Base of the CNN families: input checks, cross-entropy + accuracy, head swap, backbone freezing.

    A subclass sets ``self.config`` (with ``in_channels`` and ``num_classes``), ``self.fc`` (the final
    nn.Linear) and implements ``features(pixel_values) -> (N, fc.in_features)``.
    """

    config: Any
    fc: nn.Linear
    min_image_size: int = 1
    """The smallest height/width the network can take."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone_frozen = False

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """DataError unless pixel_values is a float (N, in_channels, H, W) batch large enough to classify."""
        c = self.config.in_channels
        if pixel_values.dim() != 4 or pixel_values.shape[1] != c:
            raise DataError(
                f"pixel_values: expected images of shape (N, {c}, H, W), got {tuple(pixel_values.shape)}"
                + (" (add the channel axis: x[:, None])" if pixel_values.dim() == 3 and c == 1 else "")
            )
        if not pixel_values.is_floating_point():
            raise DataError(
                f"pixel_values: expected float images, got {pixel_values.dtype} "
                "(scale uint8 pixels to [0, 1], e.g. zeroforge.data.images.to_float)"
            )
        h, w = pixel_values.shape[-2:]
        if min(h, w) < self.min_image_size:
            raise DataError(
                f"pixel_values: images of {h}x{w} are too small for {type(self).__name__} "
                f"(at least {self.min_image_size}x{self.min_image_size})"
            )
        return pixel_values

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        """pixel_values (N, C, H, W) -> logits (N, num_classes); labels (N,) -> cross-entropy loss."""
        logits = self.fc(self.features(self.check_pixels(pixel_values)))  # (N, num_classes)
        if labels is None:
            return ModelOutput(logits=logits)
        loss, metrics = loss_and_metrics(logits, labels, "cross_entropy")
        return ModelOutput(logits=logits, loss=loss, metrics=metrics)

    def replace_head(self, num_classes: int) -> nn.Linear:
        """A fresh ``fc = Linear(num_ftrs, num_classes)`` (torchvision's transfer-learning step); returns it."""
        if num_classes < 1:
            raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
        old = self.fc
        self.fc = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self.config.num_classes = num_classes
        return self.fc

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Train only ``fc``: every other parameter stops requiring grad, and every other layer stays in
        eval mode even under ``model.train()`` (BatchNorm keeps its pretrained statistics, dropout is off),
        so the backbone is a fixed feature extractor. ``frozen=False`` undoes it."""
        self.backbone_frozen = frozen
        for name, param in self.named_parameters():
            param.requires_grad = not frozen or name.startswith("fc.")
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if self.backbone_frozen and mode:
            for name, module in self.named_children():
                if name != "fc":
                    module.eval()
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- LeNet-style ConvNet


@dataclass
class ConvNetConfig:
    """Defaults are a LeNet-5-shaped ConvNet (LeCun et al. 1998) on 28x28 grey digits."""

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: list[int] = field(default_factory=lambda: [6, 16])
    """Output channels of each conv stage (conv -> [batch norm] -> activation -> 2x2 max-pool)."""
    kernel_size: int = 5
    padding: int = 0
    hidden_sizes: list[int] = field(default_factory=lambda: [120, 84])
    activation: ActivationName = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    """Dropout before each fully connected layer."""
    init: InitName = "default"
    conv: Literal["torch", "formula"] = "torch"
    """``formula`` computes every convolution with ``conv2d_formula`` (slow; for teaching and tests)."""

    def __post_init__(self) -> None:
        require_positive(self, "in_channels", "image_size", "num_classes", "kernel_size")
        require(self.padding >= 0, "padding", f"must be >= 0, got {self.padding}")
        require(
            len(self.channels) >= 1 and min(self.channels) >= 1,
            "channels",
            f"need >= 1 stage of >= 1 channels, got {self.channels}",
        )
        check_hidden_layers(self.hidden_sizes, self.activation)
        require(self.init in INITS, "init", f"expected one of {', '.join(INITS)}, got {self.init!r}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.conv in ("torch", "formula"), "conv", f"expected torch or formula, got {self.conv!r}")
        require(
            self.feature_size() >= 1,
            "image_size",
            f"{self.image_size} is too small for {len(self.channels)} conv+pool stages of kernel {self.kernel_size}",
        )

    def feature_size(self) -> int:
        """Height (= width) after the conv stages: each does s -> (s + 2p - k + 1) // 2."""
        s = self.image_size
        for _ in self.channels:
            s = (s + 2 * self.padding - self.kernel_size + 1) // 2
        return s


class ConvNet(ImageClassifier):
    """[conv -> act -> maxpool] * stages -> flatten -> [Linear -> act] * hidden -> fc."""

    config_class = ConvNetConfig

    def __init__(self, config: ConvNetConfig) -> None:
        super().__init__()
        self.config = config
        conv_cls = FormulaConv2d if config.conv == "formula" else nn.Conv2d
        stages: list[nn.Module] = []
        c_in = config.in_channels
        for c_out in config.channels:
            stages.append(conv_cls(c_in, c_out, config.kernel_size, padding=config.padding))
            if config.batch_norm:
                stages.append(nn.BatchNorm2d(c_out))
            stages += [make_activation(config.activation), nn.MaxPool2d(2, 2)]
            c_in = c_out
        self.convs = nn.Sequential(*stages)
        s = config.feature_size()
        sizes = [c_in * s * s, *config.hidden_sizes]
        dense: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            if config.dropout > 0:
                dense.append(nn.Dropout(config.dropout))
            dense += [nn.Linear(n_in, n_out), make_activation(config.activation)]
        if config.dropout > 0:
            dense.append(nn.Dropout(config.dropout))
        self.dense = nn.Sequential(*dense)
        self.fc = nn.Linear(sizes[-1], config.num_classes)
        init_weights(self, config.init)

    def check_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # the flatten size is fixed by image_size, so other sizes cannot work: say so up front
        pixel_values = super().check_pixels(pixel_values)
        size = self.config.image_size
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise DataError(
                f"pixel_values: expected {size}x{size} images (config image_size), "
                f"got {pixel_values.shape[-2]}x{pixel_values.shape[-1]}"
            )
        return pixel_values

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.convs(pixel_values)  # (N, C_last, s, s)
        return self.dense(x.flatten(1))  # (N, hidden[-1])


# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # LeNet-5's layout (LeCun et al. 1998): conv(1->6, 5) pool conv(6->16, 5) pool, fc 16*5*5 -> 120 -> 84 -> 10 (32x32 input)
    "lenet": ("convnet", dict(image_size=32)),
    # a wider ConvNet for MNIST / Fashion-MNIST (batch norm, dropout, He init)
    "convnet-mnist": (
        "convnet",
        dict(
            channels=[32, 64],
            kernel_size=3,
            padding=1,
            hidden_sizes=[128],
            batch_norm=True,
            dropout=0.25,
            init="he_normal",
        ),
    ),
}
