"""Training-epoch time of ``zeroforge.scratch`` (NumPy) against the same model in PyTorch eager, one run.

    .venv/bin/python bench/scratch_speed.py --repeats 3

Two models on MNIST, float32, Adam, one thread each side (OMP/OpenBLAS/MKL set to 1 before numpy and
torch load): the MLP 784-256-10 (batch 128) and the LeNet of ``examples/scratch_cnn_mnist.py``
(batch 64), each over the first ``--mlp-samples`` / ``--cnn-samples`` training images (all 60,000 by
default). The sides alternate epoch by epoch so both see the same machine load; the table gives each
side's median and the ratio.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / torch load their BLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import load_average, machine_header  # noqa: E402
from zeroforge.data.images import load_images  # noqa: E402
from zeroforge.scratch import Tensor, optim  # noqa: E402
from zeroforge.scratch import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from scratch_cnn_mnist import build_lenet  # noqa: E402
from scratch_mlp_mnist import MLPConfig, build_mlp  # noqa: E402


def scratch_epoch(
    model_factory: Callable, x: np.ndarray, y: np.ndarray, batch_size: int
) -> Callable[[], None]:
    model = model_factory()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> None:
        rng = np.random.default_rng(0)
        optim.train_epoch(
            lambda i: F.cross_entropy(model(Tensor(x[i])), y[i]), optimizer, len(x), batch_size, rng
        )

    return epoch


def torch_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


def torch_lenet() -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def torch_epoch(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch() -> None:
        rng = np.random.default_rng(0)
        for index in optim.batches(len(x), batch_size, rng):  # the same shuffled batches as the scratch side
            i = torch.from_numpy(index)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[i]), yt[i])
            loss.backward()
            optimizer.step()

    return epoch


def compare(name: str, ours: Callable[[], None], theirs: Callable[[], None], repeats: int) -> str:
    times: dict[str, list[float]] = {"scratch": [], "torch": []}
    for _ in range(repeats):
        for side, run in (("scratch", ours), ("torch", theirs)):
            start = time.perf_counter()
            run()
            times[side].append(time.perf_counter() - start)
    s, t = statistics.median(times["scratch"]), statistics.median(times["torch"])
    return f"| {name} | {s:.2f} | {t:.2f} | {s / t:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mlp-samples", type=int, default=60_000)
    parser.add_argument("--cnn-samples", type=int, default=60_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine_header("zeroforge.scratch epoch time vs PyTorch eager"))
    print(f"numpy {np.__version__}; repeats {args.repeats}, alternating scratch / torch")
    data = load_images("mnist", "train")
    images = data.images[: max(args.mlp_samples, args.cnn_samples)].astype(np.float32) / 255.0
    labels = data.labels[: len(images)]
    mlp_x, mlp_y = images[: args.mlp_samples].reshape(-1, 784), labels[: args.mlp_samples]
    cnn_x, cnn_y = images[: args.cnn_samples], labels[: args.cnn_samples]
    print("| model (samples per epoch) | scratch s | torch eager s | ratio |\n|---|---|---|---|", flush=True)
    torch.manual_seed(0)
    print(compare(f"MLP 784-256-10 ({len(mlp_x)})", scratch_epoch(lambda: build_mlp(MLPConfig()), mlp_x, mlp_y, 128),
                  torch_epoch(torch_mlp(), mlp_x, mlp_y, 128), args.repeats), flush=True)  # fmt: skip
    print(compare(f"LeNet-5 CNN ({len(cnn_x)})", scratch_epoch(build_lenet, cnn_x, cnn_y, 64),
                  torch_epoch(torch_lenet(), cnn_x, cnn_y, 64), args.repeats), flush=True)  # fmt: skip
    print(f"load average (1/5/15 min) at end: {load_average()}")


if __name__ == "__main__":
    main()
