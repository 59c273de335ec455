"""The classic models: one neuron y = f(Wx + b) and stacks of them, on the one trainer.

- ``linear-regression``: ŷ = Wx + b, mean squared error (the least-squares fit numpy.linalg.lstsq solves).
- ``logistic-regression``: p(y=1|x) = σ(w·x + b) with binary cross-entropy when ``num_classes == 2``;
  softmax regression p(y=k|x) = softmax(Wx + b)_k with cross-entropy for more classes. ``loss="hinge"``
  turns either into a linear SVM.
- ``mlp``: Linear -> activation -> ... -> Linear, with a selectable activation, initialisation and loss.

Every model takes ``features`` (N, *) — flattened to (N, in_features), so a (N, 1, 28, 28) image batch
works as well as (N, 784) — and optional ``labels``, and returns ``ModelOutput(logits, loss, metrics)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from zeroforge.errors import DataError
from zeroforge.models.output import ModelOutput
from zeroforge.modules.activations import ACTIVATIONS, ActivationName, make_activation
from zeroforge.modules.init import INITS, InitName, init_weights
from zeroforge.modules.losses import LOSSES, LossName, loss_and_metrics
from zeroforge.schema import require


def flatten_features(features: torch.Tensor, in_features: int) -> torch.Tensor:
    """(N, *) -> (N, in_features), or a DataError that names the shape it got."""
    if features.dim() < 1:
        raise DataError("features: expected a batch (N, in_features), got a scalar")
    x = features.reshape(features.shape[0], -1) if features.dim() != 2 else features
    if x.shape[1] != in_features:
        raise DataError(
            f"features: expected {in_features} values per sample, got {x.shape[1]} "
            f"(batch shape {tuple(features.shape)})"
        )
    return x if x.is_floating_point() else x.float()


def _check_common(in_features: int, init: str) -> None:
    require(in_features >= 1, "in_features", f"must be >= 1, got {in_features}")
    require(init in INITS, "init", f"expected one of {', '.join(INITS)}, got {init!r}")


def check_hidden_layers(hidden_sizes: list[int], activation: str) -> None:
    """The hidden Linear layers of an MLP (here, or a ConvNet's head): their widths and activation."""
    require(
        all(h >= 1 for h in hidden_sizes),
        "hidden_sizes",
        f"must all be >= 1, got {hidden_sizes}",
    )
    require(
        activation in ACTIVATIONS,
        "activation",
        f"expected one of {', '.join(ACTIVATIONS)}, got {activation!r}",
    )


# ----------------------------------------------------------------------------- linear regression


@dataclass
class LinearRegressionConfig:
    in_features: int = 1
    out_features: int = 1
    """Targets per sample; 1 gives logits of shape (N,)."""
    bias: bool = True
    init: InitName = "default"

    def __post_init__(self) -> None:
        _check_common(self.in_features, self.init)
        require(self.out_features >= 1, "out_features", f"must be >= 1, got {self.out_features}")


class LinearRegression(nn.Module):
    """ŷ = Wx + b, trained on the mean squared error (1/N) Σ (ŷ_i - y_i)²."""

    config_class = LinearRegressionConfig

    def __init__(self, config: LinearRegressionConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.in_features, config.out_features, bias=config.bias)
        init_weights(self, config.init)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        """features (N, *) -> logits (N,) for one target, else (N, out_features)."""
        y = self.linear(flatten_features(features, self.config.in_features))  # (N, out)
        if self.config.out_features == 1:
            y = y.squeeze(-1)  # (N,)
        if labels is None:
            return ModelOutput(logits=y)
        loss, metrics = loss_and_metrics(y, labels, "mse")
        return ModelOutput(logits=y, loss=loss, metrics=metrics)


# ----------------------------------------------------------------------------- logistic / softmax regression


@dataclass
class LogisticRegressionConfig:
    in_features: int = 2
    num_classes: int = 2
    """2: binary logistic regression with one logit (sigmoid + BCE); more: softmax regression."""
    bias: bool = True
    init: InitName = "default"
    loss: Literal["cross_entropy", "hinge"] = "cross_entropy"
    """``cross_entropy`` (BCE for two classes) is logistic regression; ``hinge`` makes a linear SVM."""

    def __post_init__(self) -> None:
        _check_common(self.in_features, self.init)
        require(self.num_classes >= 2, "num_classes", f"must be >= 2, got {self.num_classes}")
        require(
            self.loss in ("cross_entropy", "hinge"),
            "loss",
            f"expected cross_entropy or hinge, got {self.loss!r}",
        )


class LogisticRegression(nn.Module):
    """Binary: z = w·x + b, p = σ(z). Softmax (C > 2): z = Wx + b, p = softmax(z)."""

    config_class = LogisticRegressionConfig

    def __init__(self, config: LogisticRegressionConfig) -> None:
        super().__init__()
        self.config = config
        n_out = 1 if config.num_classes == 2 else config.num_classes
        self.linear = nn.Linear(config.in_features, n_out, bias=config.bias)
        init_weights(self, config.init)

    @property
    def loss_name(self) -> LossName:
        if self.config.loss == "hinge":
            return "hinge"
        return "bce" if self.config.num_classes == 2 else "cross_entropy"

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        """features (N, *) -> logits (N,) for two classes (the log-odds of class 1), else (N, C)."""
        z = self.linear(flatten_features(features, self.config.in_features))  # (N, 1) or (N, C)
        if self.config.num_classes == 2:
            z = z.squeeze(-1)  # (N,)
        if labels is None:
            return ModelOutput(logits=z)
        loss, metrics = loss_and_metrics(z, labels, self.loss_name)
        return ModelOutput(logits=z, loss=loss, metrics=metrics)


# ----------------------------------------------------------------------------- MLP


@dataclass
class MLPConfig:
    in_features: int = 784
    hidden_sizes: list[int] = field(default_factory=lambda: [128])
    out_features: int = 10
    """Classes for ``cross_entropy``/``hinge``; 1 for ``bce``; targets per sample for ``mse``."""
    activation: ActivationName = "relu"
    negative_slope: float = 0.01
    """Slope α for x < 0 when ``activation`` is ``leaky_relu`` (also sets He init's gain 2/(1+α²))."""
    init: InitName = "default"
    dropout: float = 0.0
    loss: LossName = "cross_entropy"

    def __post_init__(self) -> None:
        _check_common(self.in_features, self.init)
        require(self.out_features >= 1, "out_features", f"must be >= 1, got {self.out_features}")
        check_hidden_layers(self.hidden_sizes, self.activation)
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.loss in LOSSES, "loss", f"expected one of {', '.join(LOSSES)}, got {self.loss!r}")
        require(
            self.loss != "cross_entropy" or self.out_features >= 2,
            "out_features",
            f"cross_entropy needs >= 2 classes, got {self.out_features} (use loss=bce for one logit)",
        )
        require(self.loss != "bce" or self.out_features == 1, "out_features", "bce needs out_features=1")


class MLP(nn.Module):
    """x -> [Linear -> activation -> dropout] * len(hidden_sizes) -> Linear -> logits."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.in_features, *config.hidden_sizes]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), make_activation(config.activation, config.negative_slope)]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(sizes[-1], config.out_features)
        init_weights(
            self,
            config.init,
            negative_slope=config.negative_slope if config.activation == "leaky_relu" else 0.0,
        )

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        """features (N, *) -> logits (N, out_features), or (N,) when out_features == 1."""
        h = self.hidden(flatten_features(features, self.config.in_features))  # (N, hidden[-1])
        logits = self.fc(h)  # (N, out)
        if self.config.out_features == 1:
            logits = logits.squeeze(-1)  # (N,)
        if labels is None:
            return ModelOutput(logits=logits)
        loss, metrics = loss_and_metrics(logits, labels, self.config.loss)
        return ModelOutput(logits=logits, loss=loss, metrics=metrics)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------- presets

# preset name -> (family, config values), read by the registry
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # MNIST (28 x 28 = 784 pixels, 10 digits)
    "softmax-regression-mnist": ("logistic-regression", dict(in_features=784, num_classes=10)),
    "mlp-mnist": (
        "mlp",
        dict(in_features=784, hidden_sizes=[512, 256], out_features=10, dropout=0.2, init="he_uniform"),
    ),
    # a one-hidden-layer regressor, Keras' Dense(10, relu, input_shape=(4,)) -> Dense(1), mean squared error
    "mlp-regressor": ("mlp", dict(in_features=4, hidden_sizes=[10], out_features=1, loss="mse")),
}
