"""Linear regression, logistic/softmax regression and the MLP: shapes, the gradient formulas, agreement
with scikit-learn, config choices and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zeroforge as zf
from zeroforge.errors import ConfigError, DataError
from zeroforge.fitting import fit
from zeroforge.models.linear import MLP, LinearRegression, LogisticRegression
from zeroforge.modules.activations import Activation


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids oversubscribing a shared CPU (2 threads can be 20x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_linear_regression_is_wx_plus_b() -> None:
    model = zf.create_model("linear-regression", in_features=3)
    x = torch.randn(5, 3)
    out = model(features=x, labels=torch.zeros(5))
    w, b = model.linear.weight, model.linear.bias
    torch.testing.assert_close(out.logits, (x @ w.T + b).squeeze(1))
    torch.testing.assert_close(out.loss, (out.logits**2).mean())
    assert out.metrics == {}
    multi = zf.create_model("linear-regression", in_features=3, out_features=2)
    assert multi(features=x).logits.shape == (5, 2)


def test_softmax_regression_gradient_is_the_textbook_formula() -> None:
    # dL/dW = (1/N) (softmax(XW^T + b) - onehot(y))^T X  and  dL/db = mean(softmax - onehot)
    torch.manual_seed(0)
    model = zf.create_model("softmax-regression-mnist")
    x = torch.rand(8, 1, 28, 28)  # images are flattened to 784 features
    y = torch.randint(0, 10, (8,))
    out = model(features=x, labels=y)
    out.loss.backward()
    X = x.reshape(8, -1).double().numpy()
    W, b = model.linear.weight.detach().double().numpy(), model.linear.bias.detach().double().numpy()
    z = X @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(10)[y.numpy()]) / 8
    np.testing.assert_allclose(model.linear.weight.grad.numpy(), delta.T @ X, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(model.linear.bias.grad.numpy(), delta.sum(0), rtol=1e-4, atol=1e-7)
    assert out.metrics["accuracy"][1] == 8


def test_binary_logistic_regression_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression as SkLogReg

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    logits = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    y = (rng.random(400) < 1 / (1 + np.exp(-logits))).astype(np.int64)  # noisy labels: a finite optimum
    sk = SkLogReg(C=np.inf, tol=1e-10, max_iter=10_000).fit(x, y)  # no regularisation
    torch.manual_seed(0)
    model = zf.create_model("logistic-regression", in_features=4)
    fit(model, x, y, epochs=250, batch_size=None, lr=0.1, verbose=False)
    np.testing.assert_allclose(model.linear.weight.detach().numpy()[0], sk.coef_[0], atol=2e-3)
    assert model.linear.bias.item() == pytest.approx(sk.intercept_[0], abs=2e-3)
    probs = torch.sigmoid(model(features=torch.from_numpy(x)).logits).detach().numpy()
    np.testing.assert_allclose(probs, sk.predict_proba(x)[:, 1], atol=1e-3)


def test_logistic_hinge_is_a_linear_svm() -> None:
    model = zf.create_model("logistic-regression", in_features=2, loss="hinge")
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = model(features=x, labels=torch.tensor([-1, 1]))
    z = out.logits.detach()
    want = torch.clamp(1 - torch.tensor([-1.0, 1.0]) * z, min=0).mean()
    torch.testing.assert_close(out.loss.detach(), want)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "leaky_relu", "gelu"])
def test_mlp_activation_choice(activation: str) -> None:
    model = zf.create_model("mlp", in_features=6, hidden_sizes=[5, 4], out_features=3, activation=activation)
    acts = [m for m in model.modules() if isinstance(m, Activation)]
    assert [a.name for a in acts] == [activation, activation]
    x = torch.randn(7, 6)
    out = model(features=x, labels=torch.randint(0, 3, (7,)))
    assert out.logits.shape == (7, 3) and torch.isfinite(out.loss)
    # the forward is exactly fc(act(L2(act(L1 x))))
    l1, l2 = model.hidden[0], model.hidden[2]
    torch.testing.assert_close(out.logits, model.fc(acts[1](l2(acts[0](l1(x))))))


def test_mlp_initialisation_choice_sets_the_variance() -> None:
    torch.manual_seed(0)
    model = zf.create_model("mlp", in_features=1000, hidden_sizes=[800], out_features=10, init="he_normal")
    assert model.hidden[0].weight.var().item() == pytest.approx(2 / 1000, rel=0.02)
    assert model.hidden[0].bias.abs().sum().item() == 0.0
    model = zf.create_model(
        "mlp", in_features=1000, hidden_sizes=[800], out_features=10, init="xavier_uniform"
    )
    assert model.hidden[0].weight.var().item() == pytest.approx(2 / 1800, rel=0.02)


def test_mlp_regressor_and_binary_heads() -> None:
    reg = zf.create_model("mlp-regressor")
    out = reg(features=torch.randn(3, 4), labels=torch.randn(3))
    assert out.logits.shape == (3,) and out.metrics == {}
    binary = zf.create_model("mlp", in_features=4, out_features=1, loss="bce")
    out = binary(features=torch.randn(3, 4), labels=torch.tensor([0, 1, 1]))
    assert out.logits.shape == (3,) and out.metrics["accuracy"][1] == 3


def test_types_registered() -> None:
    assert isinstance(zf.create_model("linear-regression"), LinearRegression)
    assert isinstance(zf.create_model("logistic-regression"), LogisticRegression)
    assert isinstance(zf.create_model("mlp-mnist"), MLP)


def test_bad_config_and_input() -> None:
    with pytest.raises(ConfigError, match="model.activation: expected one of sigmoid, tanh"):
        zf.create_model("mlp", activation="swish")
    with pytest.raises(ConfigError, match="model.init: expected one of default"):
        zf.create_model("mlp", init="orthogonal")
    with pytest.raises(ConfigError, match="model.out_features: bce needs out_features=1"):
        zf.create_model("mlp", loss="bce")
    model = zf.create_model("mlp-mnist")
    with pytest.raises(
        DataError, match=r"features: expected 784 values per sample, got 100 \(batch shape \(2, 10, 10\)\)"
    ):
        model(features=torch.zeros(2, 10, 10))
    with pytest.raises(DataError, match="class 10 is out of range for 10 classes"):
        model(features=torch.zeros(2, 784), labels=torch.tensor([3, 10]))
    binary = zf.create_model("logistic-regression", in_features=2)
    with pytest.raises(DataError, match="2 is out of range for binary cross-entropy"):
        binary(features=torch.zeros(2, 2), labels=torch.tensor([0, 2]))
