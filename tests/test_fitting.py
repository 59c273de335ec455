"""zeroforge.fit / predict / evaluate_arrays: a thin Keras-style front on the one trainer.

Checked against closed forms (numpy.linalg.lstsq, hand-written gradient descent), on epoch/batch
bookkeeping, exact resume of the batch source, and the bad inputs users actually pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import zeroforge as zf
from zeroforge.errors import ConfigError, DataError
from zeroforge.fitting import ArrayBatches, History, evaluate_arrays, fit, predict


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids oversubscribing a shared CPU (2 threads can be 20x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def regression_data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


def lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(w1, w2, w3, b): the least-squares solution with an intercept column."""
    a = np.c_[x.astype(np.float64), np.ones(len(x))]
    return np.linalg.lstsq(a, y.astype(np.float64), rcond=None)[0]


def test_loss_falls_every_epoch_and_weights_reach_lstsq() -> None:
    x, y = regression_data()
    torch.manual_seed(0)
    model = zf.create_model("linear-regression", in_features=3)
    history = fit(model, x, y, epochs=250, batch_size=None, lr=0.05, verbose=False)
    losses = history.history["loss"]
    assert len(losses) == 250 and history.epochs[:3] == [1, 2, 3]
    assert all(b < a for a, b in zip(losses[:50], losses[1:51]))  # full-batch Adam: falls steadily at first
    assert losses[-1] < 0.02 < losses[0]
    ours = np.r_[model.linear.weight.detach().numpy()[0], model.linear.bias.item()]
    np.testing.assert_allclose(ours, lstsq(x, y), atol=1e-4)


def test_full_batch_sgd_is_exactly_gradient_descent() -> None:
    # batch_size=None: w <- w - lr * (2/N) X^T (Xw + b - y), the textbook update, step for step
    x, y = regression_data(40)
    model = zf.create_model("linear-regression", in_features=3)
    w0 = np.r_[model.linear.weight.detach().double().numpy()[0], model.linear.bias.item()]
    fit(model, x, y, epochs=5, batch_size=None, optimizer="sgd", momentum=0.0, lr=0.1, verbose=False)
    a = np.c_[x.astype(np.float64), np.ones(len(x))]
    w = w0
    for _ in range(5):
        w = w - 0.1 * (2 / len(x)) * a.T @ (a @ w - y)
    ours = np.r_[model.linear.weight.detach().numpy()[0], model.linear.bias.item()]
    np.testing.assert_allclose(ours, w, rtol=1e-5, atol=1e-6)


def test_batch_size_one_is_stochastic_gradient_descent() -> None:
    x, y = regression_data(12)
    model = zf.create_model("linear-regression", in_features=3)
    history = fit(model, x, y, epochs=2, batch_size=1, optimizer="sgd", lr=0.01, verbose=False)
    assert history.steps_per_epoch == 12 and history.result.step == 24
    # mini-batches: the last one of an epoch is smaller (10 = 4 + 4 + 2), as in Keras
    history = fit(model, x[:10], y[:10], epochs=3, batch_size=4, verbose=False)
    assert history.steps_per_epoch == 3 and history.result.step == 9 and len(history["loss"]) == 3


def test_every_epoch_visits_every_sample_once_in_a_new_order() -> None:
    ids = torch.arange(10)
    source = ArrayBatches({"features": ids}, batch_size=3, seed=0)
    epochs = [torch.cat([source.next_batch()["features"] for _ in range(4)]) for _ in range(3)]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(10))
    assert epochs[0].tolist() != epochs[1].tolist()
    plain = ArrayBatches({"features": ids}, batch_size=4, shuffle=False)
    assert [plain.next_batch()["features"].tolist() for _ in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batch_source_resumes_exactly() -> None:
    ids = torch.arange(11)
    a = ArrayBatches({"features": ids}, batch_size=3, seed=5)
    for _ in range(6):  # into the second epoch
        a.next_batch()
    state = a.state_dict()
    want = [a.next_batch()["features"].tolist() for _ in range(9)]
    b = ArrayBatches({"features": ids}, batch_size=3, seed=123)
    b.load_state_dict(state)
    assert [b.next_batch()["features"].tolist() for _ in range(9)] == want


def test_plain_module_with_named_loss_validation_history_and_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))  # any nn.Module: tensor in, tensor out
    history = fit(
        net, x[:150], y[:150], val=(x[150:], y[150:]), loss="cross_entropy", epochs=15, lr=0.02, verbose=False
    )
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history["val_accuracy"][-1] > 0.9 and history["loss"][-1] < history["loss"][0]
    # validation metrics are the exact ones evaluate_arrays computes after training
    final = evaluate_arrays(net, x[150:], y[150:], loss="cross_entropy")
    assert final["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert final["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
    png = history.plot(tmp_path / "h.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert isinstance(history, History)


def test_predict_types_and_eval_mode() -> None:
    torch.manual_seed(0)
    model = zf.create_model("mlp", in_features=4, hidden_sizes=[8], out_features=3, dropout=0.5)
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    out = predict(model, x, batch_size=3)
    assert isinstance(out, np.ndarray) and out.shape == (10, 3)
    model.eval()
    np.testing.assert_allclose(
        out, model(features=torch.from_numpy(x)).logits.detach().numpy(), rtol=1e-6, atol=1e-6
    )
    model.train()
    again = predict(
        model, torch.from_numpy(x)
    )  # dropout is off while predicting, and training mode comes back
    assert isinstance(again, torch.Tensor) and model.training
    np.testing.assert_allclose(again.numpy(), out, rtol=1e-6, atol=1e-6)


def test_evaluate_weights_every_sample_equally() -> None:
    x, y = regression_data(10)
    model = zf.create_model("linear-regression", in_features=3)
    pred = predict(model, x)
    want = float(np.mean((pred - y) ** 2))
    assert evaluate_arrays(model, x, y, batch_size=3)["loss"] == pytest.approx(want, rel=1e-5)  # 3+3+3+1
    assert evaluate_arrays(model, (x, y))["loss"] == pytest.approx(want, rel=1e-5)


def test_dataset_input() -> None:
    x, y = regression_data(30)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    model = zf.create_model("linear-regression", in_features=3)
    history = fit(model, data, epochs=2, batch_size=8, verbose=False)
    assert len(history["loss"]) == 2
    assert isinstance(predict(model, data), torch.Tensor)


def test_image_model_gets_pixel_values() -> None:
    torch.manual_seed(0)
    model = zf.create_model("convnet", channels=[2, 3], hidden_sizes=[8])
    x = torch.rand(6, 1, 28, 28)
    y = torch.randint(0, 10, (6,))
    history = fit(model, x, y, epochs=1, batch_size=3, verbose=False)
    assert history.result.step == 2
    with pytest.raises(
        DataError, match=r"pixel_values: expected images of shape \(N, 1, H, W\), got \(6, 28, 28\)"
    ):
        fit(model, x[:, 0], y, epochs=1, verbose=False)
    with pytest.raises(DataError, match=r"expected 28x28 images \(config image_size\), got 32x32"):
        fit(model, torch.rand(6, 1, 32, 32), y, epochs=1, verbose=False)


def test_bad_input_is_named() -> None:
    x, y = regression_data(20)
    model = zf.create_model("linear-regression", in_features=3)
    with pytest.raises(DataError, match="x and its labels differ in length: 20 samples vs 19 labels"):
        fit(model, x, y[:19], verbose=False)
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(DataError, match=r"x: contains NaN values \(first in sample 7\)"):
        fit(model, bad, y, verbose=False)
    with pytest.raises(DataError, match="val: contains inf values"):
        fit(model, x, y, val=(np.full_like(x, np.inf), y), verbose=False)
    with pytest.raises(DataError, match="features: expected 3 values per sample, got 4"):
        fit(model, np.zeros((20, 4), np.float32), y, verbose=False)
    clf = zf.create_model("mlp", in_features=3, hidden_sizes=[4], out_features=5)
    with pytest.raises(
        DataError, match=r"y: label 5 is out of range for the model's 5 outputs \(expected 0..4\)"
    ):
        fit(clf, x, np.arange(20) % 6, verbose=False)
    with pytest.raises(DataError, match="y: fit needs labels"):
        fit(model, x, verbose=False)
    with pytest.raises(DataError, match="x: expected a numeric array"):
        fit(model, np.array(["a", "b"]), np.array([1.0, 2.0]), verbose=False)
    with pytest.raises(ConfigError, match="batch_size: must be >= 1 or None"):
        fit(model, x, y, batch_size=0, verbose=False)
    with pytest.raises(ConfigError, match="loss: expected one of mse, cross_entropy, bce, hinge"):
        fit(model, x, y, loss="l2", verbose=False)
    with pytest.raises(ConfigError, match="optimizer: expected adam, adamw or sgd"):
        fit(model, x, y, optimizer="lbfgs", verbose=False)


def test_run_dir_keeps_a_loadable_model(tmp_path: Path) -> None:
    x, y = regression_data(30)
    model = zf.create_model("linear-regression", in_features=3)
    fit(model, x, y, epochs=3, batch_size=8, verbose=False, run_dir=tmp_path / "run")
    from zeroforge.train.checkpoint import load_model_files

    loaded = load_model_files(tmp_path / "run")  # (load_run also wants a tokenizer, which a regression lacks)
    np.testing.assert_allclose(predict(loaded, x), predict(model, x), rtol=1e-6)
    assert (tmp_path / "run" / "metrics.csv").is_file()
    with pytest.raises(ConfigError, match="run_dir: checkpoints need a zeroforge model"):
        fit(nn.Linear(3, 1), x, y, epochs=1, verbose=False, run_dir=tmp_path / "other")


def test_augment_touches_training_inputs_only() -> None:
    calls = []

    def zero(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x * 0

    source = ArrayBatches({"features": torch.ones(4, 2), "labels": torch.ones(4)}, 3, transform=zero)
    first, last = source.next_batch(), source.next_batch()
    assert calls == [(3, 2), (1, 2)] and first["features"].abs().sum() == 0 and first["labels"].sum() == 3
    assert last["labels"].shape == (1,)
    x, y = regression_data(12)
    model = zf.create_model("linear-regression", in_features=3)
    w0, b0 = model.linear.weight.detach().clone(), model.linear.bias.item()
    history = fit(model, x, y, val=(x, y), epochs=2, batch_size=4, augment=zero, lr=0.1, verbose=False)
    # trained on zeroed inputs the weight gradient is exactly 0, so only the bias moves;
    # validation sees the real inputs
    assert torch.equal(model.linear.weight.detach(), w0) and model.linear.bias.item() != b0
    assert len(history["val_loss"]) == 2


def test_a_fit_run_dir_loads_without_a_tokenizer(tmp_path):
    import zeroforge as zf
    from zeroforge.train.checkpoint import load_run

    x = torch.randn(32, 3)
    y = x @ torch.tensor([1.0, -1.0, 2.0])
    model = zf.create_model("linear-regression", in_features=3)
    zf.fit(model, x, y, epochs=2, batch_size=8, run_dir=tmp_path / "run")
    loaded, tokenizer = load_run(tmp_path / "run")
    assert tokenizer is None
    torch.testing.assert_close(zf.predict(loaded, x), zf.predict(model, x))


def test_history_is_per_epoch_while_the_log_has_about_ten_rows_an_epoch(tmp_path: Path) -> None:
    from zeroforge.eval.plots import read_metrics_csv

    x, y = regression_data(80)
    model = zf.create_model("linear-regression", in_features=3)
    history = fit(model, x, y, epochs=2, batch_size=4, verbose=False, run_dir=tmp_path / "run")
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    assert history.steps_per_epoch == 20 and [r["step"] for r in rows] == list(range(2, 41, 2))
    # an epoch's training loss is the mean of its ten equal windows: the mean over its 20 batches
    for epoch in (0, 1):
        window = [r["train_loss"] for r in rows[10 * epoch : 10 * epoch + 10]]
        assert history["loss"][epoch] == pytest.approx(np.mean(window), rel=1e-5)
    assert len(history["loss"]) == 2 and history.epochs == [1, 2]


def test_evaluate_on_a_fit_run_says_how_in_one_line(tmp_path: Path, capsys) -> None:
    from zeroforge.cli import main

    x, y = regression_data(16)
    fit(
        zf.create_model("linear-regression", in_features=3),
        x,
        y,
        epochs=1,
        verbose=False,
        run_dir=tmp_path / "r",
    )
    for extra, expected in (
        ([], "zeroforge.evaluate(model, (x, y))"),
        (["--data", "mnist"], "an image dataset"),
    ):
        assert main(["evaluate", str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err


def test_bce_on_a_model_that_ends_in_a_sigmoid_is_refused_and_bceloss_trains_it() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())
    with pytest.raises(ConfigError, match="ends in nn.Sigmoid"):
        fit(model, x, y, loss="bce", epochs=1, verbose=False)
    history = fit(model, x, y, loss=nn.BCELoss(), epochs=30, lr=0.05, verbose=False)
    assert history["loss"][-1] < history["loss"][0]
