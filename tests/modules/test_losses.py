"""Written-out losses vs torch.nn.functional and scikit-learn, in value and gradient; bad labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeroforge.errors import ConfigError, DataError
from zeroforge.modules import losses as L


def _pair(fn_ours, fn_ref, *inputs: torch.Tensor) -> None:  # noqa: ANN001
    """Same value and same gradient w.r.t. the first input."""
    a = inputs[0].double().clone().requires_grad_(True)
    b = inputs[0].double().clone().requires_grad_(True)
    ours, ref = fn_ours(a, *inputs[1:]), fn_ref(b, *inputs[1:])
    torch.testing.assert_close(ours.double(), ref.double(), rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_mse() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(32, 3, generator=g), torch.randn(32, 3, generator=g).double()
    _pair(L.mse, F.mse_loss, pred, target)


def test_cross_entropy_2d_3d_ignore_index_and_large_logits() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 7, generator=g) * 50  # large logits: log-sum-exp must not overflow
    labels = torch.randint(0, 7, (16,), generator=g)
    _pair(L.cross_entropy, F.cross_entropy, logits, labels)
    seq = torch.randn(4, 5, 11, generator=g)
    seq_labels = torch.randint(0, 11, (4, 5), generator=g)
    seq_labels[0, :2] = -100
    _pair(
        L.cross_entropy,
        lambda z, y: F.cross_entropy(z.reshape(-1, 11), y.reshape(-1), ignore_index=-100),
        seq,
        seq_labels,
    )


def test_binary_cross_entropy_from_logits() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(64, generator=g) * 30
    y = torch.randint(0, 2, (64,), generator=g).double()
    _pair(L.binary_cross_entropy, F.binary_cross_entropy_with_logits, z, y)
    soft = torch.rand(64, generator=g).double()  # probabilities are valid targets too
    _pair(L.binary_cross_entropy, F.binary_cross_entropy_with_logits, z, soft)


def test_hinge_binary_matches_sklearn_and_multiclass_matches_torch() -> None:
    from sklearn.metrics import hinge_loss

    g = torch.Generator().manual_seed(3)
    scores = torch.randn(50, generator=g) * 2
    labels01 = torch.randint(0, 2, (50,), generator=g)
    want = hinge_loss((2 * labels01 - 1).numpy(), scores.numpy())
    assert L.hinge(scores, labels01).item() == pytest.approx(want, rel=1e-6)
    assert L.hinge(scores, 2 * labels01 - 1).item() == pytest.approx(want, rel=1e-6)  # {-1, +1} as well
    multi = torch.randn(20, 5, generator=g)
    targets = torch.randint(0, 5, (20,), generator=g)
    _pair(L.hinge, F.multi_margin_loss, multi, targets)


def test_accuracy_metric_is_an_exact_pair() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    _, metrics = L.loss_and_metrics(logits, torch.tensor([0, 1, 1]), "cross_entropy")
    correct, count = metrics["accuracy"]
    assert (int(correct), count) == (2, 3)
    _, metrics = L.loss_and_metrics(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([1.0, 1.0, 0.0]), "bce")
    assert (int(metrics["accuracy"][0]), metrics["accuracy"][1]) == (1, 3)
    value, metrics = L.loss_and_metrics(torch.zeros(3), torch.zeros(3), "mse")
    assert metrics == {} and value.item() == 0.0


def test_bad_labels_are_clear_errors() -> None:
    with pytest.raises(DataError, match="class 7 is out of range for 5 classes"):
        L.cross_entropy(torch.zeros(2, 5), torch.tensor([1, 7]))
    with pytest.raises(DataError, match="class -1 is out of range"):
        L.cross_entropy(torch.zeros(2, 5), torch.tensor([-1, 0]))
    with pytest.raises(DataError, match="integer class ids"):
        L.cross_entropy(torch.zeros(2, 5), torch.tensor([0.0, 1.0]))
    with pytest.raises(DataError, match="3 is out of range for binary cross-entropy"):
        L.binary_cross_entropy(torch.zeros(2), torch.tensor([0.0, 3.0]))
    with pytest.raises(DataError, match=r"binary hinge loss needs labels in \{0, 1\} or \{-1, \+1\}"):
        L.hinge(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(DataError, match="does not match predictions"):
        L.mse(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ConfigError, match="loss: expected one of mse, cross_entropy, bce, hinge"):
        L.get_loss("l1")  # type: ignore[arg-type]
