"""The classic-model results of docs/results.md, each one command on a CPU (2 threads by default).

    python bench/classic_results.py linear          # linear regression through fit vs numpy.linalg.lstsq
    python bench/classic_results.py logistic        # softmax + binary logistic regression vs scikit-learn (MNIST)
    python bench/classic_results.py mlp             # MLP on MNIST (>= 98%)
    python bench/classic_results.py cnn-mnist       # ConvNet on MNIST (>= 99.2%)
    python bench/classic_results.py cnn-fashion     # ConvNet on Fashion-MNIST (>= 91%)
    python bench/classic_results.py efficientnet    # EfficientNet-Lite0 head-only transfer to Fashion-MNIST
    python bench/classic_results.py lstm-vs-gpt     # char LSTM vs GPT of ~0.81M parameters on Shakespeare
    python bench/classic_results.py all

``--quick`` runs every step on a small slice in seconds (a check that the script works, not a result).
Each run writes ``bench/results/classic/<run>.json`` (metrics, wall time, the command, the machine)
and prints a markdown row for docs/results.md. Test sets are used once, at the end; no run selects
anything on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zeroforge as zf
from zeroforge.data import images
from zeroforge.fitting import evaluate_arrays, fit, predict
from zeroforge.io import atomic_write_json

OUT = Path(__file__).resolve().parent / "results" / "classic"
QUICK = False


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def save(run: str, record: dict[str, Any]) -> None:
    record = {
        "run": run,
        "quick": QUICK,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **record,
    }
    record["machine"] = machine()
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / f"{run}{'-quick' if QUICK else ''}.json", record)
    shown = {k: v for k, v in record.items() if k not in ("machine", "command", "run", "quick", "history")}
    print(f"| {run} | {json.dumps(shown)} | `python bench/{record['command']}` |")


def take(n: int, *arrays: Any) -> list[Any]:
    """The first n samples of each array in quick mode, else the arrays."""
    return [a[:n] for a in arrays] if QUICK else list(arrays)


def mnist_like(name: str) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """(x_train, y_train, x_test, y_test): float images standardised with the training set's mean/std."""
    train, test = images.load_images(name, "train"), images.load_images(name, "test")
    x_train, x_test = images.to_float(train.images), images.to_float(test.images)
    mean, std = images.channel_stats(x_train)
    return (
        images.normalize(x_train, mean, std),
        train.labels,
        images.normalize(x_test, mean, std),
        test.labels,
    )


# ----------------------------------------------------------------------------- runs


def run_linear() -> None:
    """Diabetes (442 patients, 10 standardised features; ships with scikit-learn) and a synthetic
    20,000 x 20 problem: full-batch gradient descent through fit, compared with the lstsq solution."""
    from sklearn.datasets import load_diabetes

    def standardise(a: np.ndarray) -> np.ndarray:
        return ((a - a.mean(0)) / a.std(0)).astype(np.float32)

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(20_000, 20))
    ys = xs @ rng.normal(size=20) + 0.5 * rng.normal(size=len(xs))
    diabetes = load_diabetes()
    problems = {
        "diabetes": (standardise(diabetes.data), standardise(diabetes.target[:, None])[:, 0]),
        "synthetic-20k-x-20": (standardise(xs), standardise(ys[:, None])[:, 0]),
    }
    results = {}
    for name, (x, y) in problems.items():
        x, y = take(2000, x, y)
        torch.manual_seed(0)
        model = zf.create_model("linear-regression", in_features=x.shape[1])
        t0 = time.perf_counter()
        # heavy-ball gradient descent on the full batch converges linearly to the least-squares optimum
        epochs = 50 if QUICK else 1500
        history = fit(
            model, x, y, epochs=epochs, batch_size=None, optimizer="sgd", lr=0.1, momentum=0.9, verbose=False
        )
        seconds = time.perf_counter() - t0
        a = np.c_[x.astype(np.float64), np.ones(len(x))]
        exact = np.linalg.lstsq(a, y.astype(np.float64), rcond=None)[0]
        ours = np.r_[model.linear.weight.detach().double().numpy()[0], model.linear.bias.item()]
        results[name] = {
            "samples": len(x),
            "features": x.shape[1],
            "epochs": epochs,
            "max_abs_weight_diff_vs_lstsq": float(np.abs(ours - exact).max()),
            "mse_fit": history["loss"][-1],
            "mse_lstsq": float(np.mean((a @ exact - y) ** 2)),
            "seconds": round(seconds, 2),
        }
    save("linear", {"results": results})


def run_logistic() -> None:
    """Multinomial (10 digits) and binary (4 vs 9) logistic regression on MNIST pixels in [0, 1]:
    zeroforge (fit, Adam) against scikit-learn's LogisticRegression (lbfgs, default C=1), same split."""
    from sklearn.linear_model import LogisticRegression

    train, test = images.load_images("mnist", "train"), images.load_images("mnist", "test")
    x_train = train.images.reshape(len(train), -1).astype(np.float32) / 255
    x_test = test.images.reshape(len(test), -1).astype(np.float32) / 255
    binary_tr, binary_te = np.isin(train.labels, (4, 9)), np.isin(test.labels, (4, 9))
    tasks = {
        "softmax-10-digits": (x_train, train.labels, x_test, test.labels, 10),
        "binary-4-vs-9": (
            x_train[binary_tr],
            (train.labels[binary_tr] == 9).astype(np.int64),
            x_test[binary_te],
            (test.labels[binary_te] == 9).astype(np.int64),
            2,
        ),
    }
    results = {}
    for name, (xtr, ytr, xte, yte, classes) in tasks.items():
        xtr, ytr = take(3000, xtr, ytr)
        torch.manual_seed(0)
        model = zf.create_model("logistic-regression", in_features=784, num_classes=classes)
        t0 = time.perf_counter()
        epochs = 1 if QUICK else 30
        fit(model, xtr, ytr, epochs=epochs, batch_size=128, lr=1e-3, verbose=not QUICK)
        ours_s = time.perf_counter() - t0
        ours = evaluate_arrays(model, xte, yte)["accuracy"]
        t0 = time.perf_counter()
        sk = LogisticRegression(max_iter=50 if QUICK else 1000).fit(xtr, ytr)
        sk_s = time.perf_counter() - t0
        theirs = float((sk.predict(xte) == yte).mean())
        results[name] = {
            "test_accuracy": round(ours, 4),
            "sklearn_test_accuracy": round(theirs, 4),
            "difference_points": round(100 * (ours - theirs), 2),
            "seconds": round(ours_s, 1),
            "sklearn_seconds": round(sk_s, 1),
            "epochs": epochs,
        }
    save("logistic", {"results": results})


def train_and_test(
    run: str,
    model: torch.nn.Module,
    data: tuple[Any, Any, Any, Any],
    epochs: int,
    lr: float,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    schedule: str = "cosine",
) -> None:
    x_train, y_train, x_test, y_test = data
    x_train, y_train = take(2000, x_train, y_train)
    x_test, y_test = take(1000, x_test, y_test)
    epochs = 1 if QUICK else epochs
    t0 = time.perf_counter()
    history = fit(
        model,
        x_train,
        y_train,
        epochs=epochs,
        batch_size=128,
        lr=lr,
        schedule=schedule,
        augment=augment,
        verbose=True,
    )
    seconds = time.perf_counter() - t0
    test = evaluate_arrays(model, x_test, y_test)
    OUT.mkdir(parents=True, exist_ok=True)
    history.plot(OUT / f"{run}{'-quick' if QUICK else ''}.png", title=run)
    save(
        run,
        {
            "test_accuracy": round(test["accuracy"], 4),
            "test_loss": round(test["loss"], 4),
            "epochs": epochs,
            "train_seconds": round(seconds, 1),
            "seconds_per_epoch": round(seconds / epochs, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "history": history.history,
        },
    )


def run_mlp() -> None:
    torch.manual_seed(0)
    train_and_test("mlp", zf.create_model("mlp-mnist"), mnist_like("mnist"), epochs=20, lr=1e-3)


def run_cnn_mnist() -> None:
    torch.manual_seed(0)
    # small random shifts (pad 2, crop back to 28); no flips: a mirrored digit is another symbol
    model = zf.create_model("convnet-mnist")
    train_and_test(
        "cnn-mnist", model, mnist_like("mnist"), epochs=12, lr=2e-3, augment=images.Augment(crop_padding=2)
    )


def run_cnn_fashion() -> None:
    torch.manual_seed(0)
    model = zf.create_model("convnet-mnist")
    augment = images.Augment(crop_padding=2, flip=True)  # clothes may be mirrored
    train_and_test("cnn-fashion", model, mnist_like("fashion-mnist"), epochs=20, lr=2e-3, augment=augment)


TRAIN_IMAGES = 10_000


def run_efficientnet(resolution: int) -> None:
    """Head-only transfer: the pretrained backbone is a fixed feature extractor (eval mode, no grads),
    so its 1280-d features are computed once; then only the new 10-way head is trained with fit."""
    from zeroforge import datasets
    from zeroforge.models.cnn_efficientnet import MEAN, STD, EfficientNetLite

    train, test = images.load_images("fashion-mnist", "train"), images.load_images("fashion-mnist", "test")
    # the first TRAIN_IMAGES training images (the set is shuffled, so every class is there); the full
    # test set, as for the CNN. Feature extraction dominates: about 10 ms an image at 96 px, 1 thread.
    n_train = 512 if QUICK else TRAIN_IMAGES
    train_images, y_train = train.images[:n_train], train.labels[:n_train]
    test_images, y_test = take(256, test.images, test.labels)
    model = EfficientNetLite.from_pretrained(datasets.asset_file("efficientnet-lite0"), num_classes=10)
    model.freeze_backbone()
    model.eval()

    def prepare(pixels: np.ndarray) -> torch.Tensor:
        x = images.resize(images.to_rgb(images.to_float(pixels)), resolution)  # (N, 3, R, R)
        return images.normalize(x, MEAN, STD)

    @torch.no_grad()
    def features(pixels: np.ndarray) -> torch.Tensor:
        parts = [model.features(prepare(pixels[i : i + 256])) for i in range(0, len(pixels), 256)]
        return torch.cat(parts)  # (N, 1280)

    t0 = time.perf_counter()
    f_train, f_test = features(train_images), features(test_images)
    extract_s = time.perf_counter() - t0
    torch.manual_seed(0)
    t0 = time.perf_counter()
    epochs = 1 if QUICK else 30
    fit(
        model.fc,
        f_train,
        y_train,
        loss="cross_entropy",
        epochs=epochs,
        batch_size=256,
        lr=1e-3,
        verbose=not QUICK,
    )
    head_s = time.perf_counter() - t0
    accuracy = evaluate_arrays(model.fc, f_test, y_test, loss="cross_entropy")["accuracy"]
    # the trained head inside the whole model gives the same predictions on raw images
    check = predict(model, prepare(test_images[:64])).argmax(1)
    assert np.array_equal(check, predict(model.fc, f_test[:64]).argmax(1))
    save(
        "efficientnet",
        {
            "test_accuracy": round(accuracy, 4),
            "resolution": resolution,
            "train_images": len(train_images),
            "feature_seconds": round(extract_s, 1),
            "head_seconds": round(head_s, 1),
            "total_seconds": round(extract_s + head_s, 1),
            "trainable_parameters": model.num_parameters(trainable_only=True),
            "epochs": epochs,
        },
    )


def run_lstm_vs_gpt(minutes: float) -> None:
    """Both recipes for the same wall-clock budget; validation loss against training time in one plot."""
    from zeroforge.eval.plots import plot_series, read_metrics_csv

    minutes = 0.1 if QUICK else minutes
    root = Path(__file__).resolve().parent.parent
    curves, record = {}, {}
    for label, recipe in (("GPT", "gpt-char-shakespeare-10min.yaml"), ("LSTM", "lstm-char-shakespeare.yaml")):
        out = OUT / "runs" / f"{label.lower()}{'-quick' if QUICK else ''}"
        overrides = [
            # the GPT at the LSTM's size, context and batch (the 10-minute recipe's optimizer and schedule)
            *(["model.n_layer=4", "model.block_size=64", "train.batch_size=12"] if label == "GPT" else []),
            f"train.max_minutes={minutes}",
            f"train.out_dir={out}",
            "train.eval_every=100",
            "train.resume=false",
        ]
        if out.exists():
            import shutil

            shutil.rmtree(out)
        torch.manual_seed(0)
        run_dir = zf.pretrain(str(root / "recipes" / recipe), overrides)
        rows = [r for r in read_metrics_csv(run_dir / "metrics.csv") if r.get("val_loss") is not None]
        model, _ = zf.load_run(run_dir)
        n = sum(p.numel() for p in model.parameters())
        curves[f"{label} ({n / 1e6:.2f}M params)"] = (
            [r["elapsed_s"] for r in rows],
            [r["val_loss"] for r in rows],
        )
        record[label] = {
            "parameters": n,
            "steps": rows[-1]["step"],
            "final_val_loss": rows[-1]["val_loss"],
            "best_val_loss": min(r["val_loss"] for r in rows),
            "train_minutes": minutes,
        }
    png = plot_series(
        curves,
        OUT / f"lstm_vs_gpt{'-quick' if QUICK else ''}.png",
        xlabel="training time (s, evaluation excluded)",
        ylabel="validation loss (nats/char)",
        title="Shakespeare, character level",
    )
    save("lstm-vs-gpt", {"results": record, "plot": str(png.relative_to(OUT.parents[2]))})


def main() -> None:
    global QUICK
    runs = ["linear", "logistic", "mlp", "cnn-mnist", "cnn-fashion", "efficientnet", "lstm-vs-gpt"]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", choices=[*runs, "all"])
    parser.add_argument(
        "--quick", action="store_true", help="tiny slices, one epoch: checks the script works"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default 2, the documented setting)"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="lstm-vs-gpt: training minutes per model")
    parser.add_argument(
        "--resolution", type=int, default=96, help="efficientnet: input size (28x28 upsampled)"
    )
    args = parser.parse_args()
    QUICK = args.quick
    torch.set_num_threads(args.threads)
    table: dict[str, Callable[[], None]] = {
        "linear": run_linear,
        "logistic": run_logistic,
        "mlp": run_mlp,
        "cnn-mnist": run_cnn_mnist,
        "cnn-fashion": run_cnn_fashion,
        "efficientnet": lambda: run_efficientnet(args.resolution),
        "lstm-vs-gpt": lambda: run_lstm_vs_gpt(args.minutes),
    }
    for run in runs if args.run == "all" else [args.run]:
        t0 = time.perf_counter()
        table[run]()
        print(f"{run}: {time.perf_counter() - t0:.1f} s wall", flush=True)


if __name__ == "__main__":
    main()
