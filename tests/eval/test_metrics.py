"""Every metric against scikit-learn on random and edge-case labels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroforge.errors import ZeroforgeError
from zeroforge.eval.metrics import (
    ConfusionAccumulator,
    accuracy,
    classification_report,
    confusion_matrix,
    format_report,
    perplexity,
    precision_recall_f1,
    roc_auc,
)

skm = pytest.importorskip("sklearn.metrics")

AVERAGES = [None, "macro", "micro", "weighted"]
ZERO_DIVISIONS = [0.0, 1.0, np.nan]


def sk_prf(y_true, y_pred, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on 0/0; we compare the values it returns
        return skm.precision_recall_fscore_support(y_true, y_pred, **kw)


def assert_prf_equal(ours, theirs) -> None:
    for a, b in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(
            np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-12, equal_nan=True
        )
    if theirs[3] is None:
        assert ours.support is None
    else:
        np.testing.assert_array_equal(ours.support, theirs[3])


def random_labels(seed: int, n: int = 60, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    # a noisy classifier: right 60% of the time, so every cell of the confusion matrix gets used
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    return y_true, y_pred


# ----------------------------------------------------------------------------- accuracy / confusion


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_confusion_match_sklearn(seed: int) -> None:
    y_true, y_pred = random_labels(seed)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=0)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred))
    # labels reorders rows/columns, adds absent classes (7) and drops samples outside them (class 4)
    labels = [3, 0, 7, 1, 2]
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, labels=labels), skm.confusion_matrix(y_true, y_pred, labels=labels)
    )


def test_inputs_may_be_lists_tensors_floats_or_strings() -> None:
    y_true, y_pred = random_labels(0)
    expected = skm.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(
        confusion_matrix(torch.from_numpy(y_true), torch.from_numpy(y_pred)), expected
    )
    np.testing.assert_array_equal(confusion_matrix(y_true.tolist(), y_pred.astype(float)), expected)
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    # string labels are mapped through the sorted label set, as sklearn does
    s_true, s_pred = names[::-1][y_true], names[::-1][y_pred]
    np.testing.assert_array_equal(confusion_matrix(s_true, s_pred), skm.confusion_matrix(s_true, s_pred))
    assert_prf_equal(precision_recall_f1(s_true, s_pred), sk_prf(s_true, s_pred))


# ----------------------------------------------------------------------------- precision / recall / F1


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
def test_prf_matches_sklearn(seed: int, average, zero_division: float) -> None:
    y_true, y_pred = random_labels(seed, n=25, k=6)  # small n: some classes missing from one side
    ours = precision_recall_f1(y_true, y_pred, average=average, zero_division=zero_division)
    assert_prf_equal(ours, sk_prf(y_true, y_pred, average=average, zero_division=zero_division))


@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
@pytest.mark.parametrize(
    "y_true, y_pred, labels",
    [
        ([0, 1, 1, 2], [0, 1, 1, 2], [0, 1, 2, 3, 9]),  # 3 and 9 absent from both sides
        ([0, 0, 1, 1], [0, 2, 2, 1], None),  # class 2 only predicted
        ([0, 2, 2, 1], [0, 0, 1, 1], None),  # class 2 never predicted
        ([4, 4, 4], [4, 4, 4], None),  # a single class overall
        ([4, 4, 4], [4, 4, 4], [1, 4]),  # single class plus an absent one
        ([0, 1, 2, 3, 1], [1, 1, 2, 0, 3], [2, 0]),  # a subset of the classes, out of order
        ([0, 1, 2, 3, 1], [1, 1, 2, 0, 3], [5, 6]),  # only absent classes: every count is 0
        ([1, 1, 0], [2, 2, 2], [0]),  # the only selected class has no predictions at all
    ],
)
def test_prf_edge_cases_match_sklearn(y_true, y_pred, labels, average, zero_division) -> None:
    ours = precision_recall_f1(y_true, y_pred, average=average, labels=labels, zero_division=zero_division)
    theirs = sk_prf(y_true, y_pred, average=average, labels=labels, zero_division=zero_division)
    assert_prf_equal(ours, theirs)


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
@pytest.mark.parametrize(
    "y_true, y_pred, pos_label",
    [
        ([0, 1, 1, 0, 1], [0, 1, 0, 1, 1], 1),
        ([0, 1, 1, 0, 1], [0, 1, 0, 1, 1], 0),
        ([0, 0, 0], [0, 0, 0], 1),  # pos_label absent: precision and recall are 0/0
        ([1, 1, 1], [1, 0, 1], 1),
        (["ham", "spam", "spam"], ["spam", "spam", "ham"], "spam"),
    ],
)
def test_prf_binary_matches_sklearn(y_true, y_pred, pos_label, zero_division) -> None:
    ours = precision_recall_f1(
        y_true, y_pred, average="binary", pos_label=pos_label, zero_division=zero_division
    )
    theirs = sk_prf(y_true, y_pred, average="binary", pos_label=pos_label, zero_division=zero_division)
    assert_prf_equal(ours, theirs)


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=30),
    average=st.sampled_from(AVERAGES),
    zero_division=st.sampled_from(ZERO_DIVISIONS),
    extra=st.lists(st.integers(0, 7), max_size=4, unique=True),
)
def test_prf_property_matches_sklearn(pairs, average, zero_division, extra) -> None:
    y_true, y_pred = zip(*pairs)
    labels = sorted(set(y_true) | set(y_pred) | set(extra)) if extra else None
    ours = precision_recall_f1(y_true, y_pred, average=average, labels=labels, zero_division=zero_division)
    assert_prf_equal(
        ours, sk_prf(y_true, y_pred, average=average, labels=labels, zero_division=zero_division)
    )


# ----------------------------------------------------------------------------- report / accumulator


def sk_report(y_true, y_pred, labels, names, zero_division):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skm.classification_report(
            y_true, y_pred, labels=labels, target_names=names, output_dict=True, zero_division=zero_division
        )


def assert_report_matches(ours: dict, theirs: dict, names: list[str]) -> None:
    for name in names:
        for ours_key, their_key in [("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")]:
            assert ours["classes"][name][ours_key] == pytest.approx(theirs[name][their_key], nan_ok=True)
        assert ours["classes"][name]["support"] == theirs[name]["support"]
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"])
    for ours_key, their_key in [("macro", "macro avg"), ("weighted", "weighted avg")]:
        for m in ("precision", "recall", "support"):
            assert ours[ours_key][m] == pytest.approx(theirs[their_key][m], nan_ok=True)
        assert ours[ours_key]["f1"] == pytest.approx(theirs[their_key]["f1-score"], nan_ok=True)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
def test_classification_report_matches_sklearn(seed: int, zero_division: float) -> None:
    y_true, y_pred = random_labels(seed, n=20, k=4)
    names = ["north", "south", "east", "west", "nowhere"]  # class 4 never occurs: support 0
    ours = classification_report(y_true, y_pred, label_names=names, zero_division=zero_division)
    assert_report_matches(ours, sk_report(y_true, y_pred, list(range(5)), names, zero_division), names)
    plain = classification_report(y_true, y_pred)
    present = sorted(set(y_true) | set(y_pred))
    assert list(plain["classes"]) == [str(c) for c in present]
    text = format_report(ours)
    assert "nowhere" in text and f"{ours['accuracy']:.3f}" in text and "weighted" in text


@pytest.mark.parametrize("seed", range(3))
def test_accumulator_equals_one_shot(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    k = 5
    acc = ConfusionAccumulator(k, label_names=list("abcde"))
    all_pred, all_true = [], []
    for _ in range(4):
        logits = torch.randn(3, 7, k, generator=gen)  # (B, T, C) as an LM or tagger would give
        target = torch.randint(0, k, (3, 7), generator=gen)  # (B, T)
        target[0, :2] = -100  # ignored positions (padding / unmasked tokens)
        acc.update(logits, target)
        keep = target != -100
        all_pred.append(logits.argmax(-1)[keep])
        all_true.append(target[keep])
    y_pred, y_true = torch.cat(all_pred), torch.cat(all_true)
    np.testing.assert_array_equal(
        acc.confusion_matrix(), skm.confusion_matrix(y_true, y_pred, labels=range(k))
    )
    assert acc.compute() == classification_report(y_true, y_pred, label_names=list("abcde"))
    # class ids work as well as logits, and reset starts over
    acc.reset()
    acc.update(y_pred, y_true)
    assert acc.compute() == classification_report(y_true, y_pred, label_names=list("abcde"))


def test_accumulator_rejects_bad_batches() -> None:
    acc = ConfusionAccumulator(3)
    with pytest.raises(ZeroforgeError, match="no samples"):
        acc.compute()
    with pytest.raises(ZeroforgeError, match="class ids"):
        acc.update(torch.tensor([0, 3]), torch.tensor([0, 1]))
    with pytest.raises(ZeroforgeError, match="shape"):
        acc.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ZeroforgeError, match="num_classes"):
        acc.update(torch.zeros(2, 4), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- ROC AUC / perplexity


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    # rounded scores so many positives and negatives tie
    scores = np.round(y * 0.3 + rng.random(80), 1)
    assert roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    # labels {-1, 1} and strings: the larger label is the positive class, as in sklearn
    assert roc_auc(2 * y - 1, scores) == pytest.approx(skm.roc_auc_score(2 * y - 1, scores), abs=1e-12)
    s = np.where(y == 1, "spam", "ham")
    assert roc_auc(s, torch.tensor(scores)) == pytest.approx(skm.roc_auc_score(s, scores), abs=1e-12)


def test_roc_auc_extremes() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ZeroforgeError, match="two classes"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ZeroforgeError, match="nan"):
        roc_auc([0, 1], [0.1, float("nan")])


def test_perplexity() -> None:
    # cross-entropy of a uniform guess over V tokens is ln V, so its perplexity is V
    logits = torch.zeros(4, 50)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2, 3, 4]))
    assert perplexity(loss) == pytest.approx(50.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(1e4) == math.inf
    assert math.isnan(perplexity(float("nan")))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: accuracy([0, 1], [0]), "differ in length"),
        (lambda: accuracy([], []), "empty"),
        (lambda: confusion_matrix([[0, 1]], [[0, 1]]), "1-D"),
        (lambda: accuracy([0.5, 1.0], [0, 1]), "whole numbers"),
        (lambda: accuracy(["a", "b"], [0, 1]), "mix string and integer"),
        (lambda: precision_recall_f1([0, 1], [0, 1], average="samples"), "average"),
        (lambda: precision_recall_f1([0, 1, 2], [0, 1, 2], average="binary"), "binary"),
        (lambda: precision_recall_f1([0, 1], [0, 1], average="binary", pos_label=5), "pos_label"),
        (lambda: precision_recall_f1([0, 1], [0, 1], zero_division=0.5), "zero_division"),
        (lambda: precision_recall_f1([0, 1], [0, 1], labels=[1, 1]), "duplicates"),
        (lambda: classification_report([0, 3], [0, 1], label_names=["a", "b"]), "label_names"),
    ],
)
def test_bad_input_is_a_one_line_error(call, message: str) -> None:
    with pytest.raises(ZeroforgeError, match=message) as err:
        call()
    assert "\n" not in str(err.value)
