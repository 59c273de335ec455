"""A binary classifier 10 -> 10 -> 1 ending in a sigmoid, trained with ``nn.BCELoss``, PyTorch style.

The model outputs a probability p = σ(z) and ``nn.BCELoss`` computes -[y log p + (1 - y) log(1 - p)]
on it; PyTorch clamps log p at -100, so a saturated sigmoid cannot produce an infinite loss. (The
logit form, ``Linear`` output + ``nn.BCEWithLogitsLoss`` or ``zeroforge.fit(loss="bce")``, is the more
stable choice: ``examples/binary_keras.py``.) Note that ``zf.fit(loss="bce")`` expects logits: pass
a model ending in a sigmoid to it with ``loss=nn.BCELoss()`` (a callable) instead.

Data: the Wisconsin breast-cancer table (scikit-learn), its ten "mean" features, 25% held out; the
split and standardisation are ``examples/binary_keras.py``'s.

    python examples/binary_pytorch.py            # a few seconds, test accuracy 93%
    python examples/binary_pytorch.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from binary_keras import load_table  # noqa: E402  the same table, split and scaling


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 10)
        self.fc2 = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        return torch.sigmoid(self.fc2(x)).squeeze(1)  # (N,) probabilities


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = (torch.as_tensor(a) for a in load_table())
    model = Net()
    criterion = nn.BCELoss()
    optimizer = torch.optim.Adam(model.parameters())  # lr 1e-3

    losses = []
    for _epoch in range(5 if quick else 30):
        running_loss, order = 0.0, torch.randperm(len(x_train))
        for batch in order.split(32):
            optimizer.zero_grad()
            loss = criterion(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(batch)
        losses.append(running_loss / len(x_train))

    with torch.no_grad():
        predicted = (model(x_test) > 0.5).float()  # probability above one half -> class 1
    accuracy = float((predicted == y_test).float().mean())
    majority = float(max(y_test.mean(), 1 - y_test.mean()))
    print(f"loss per epoch: first {losses[0]:.4f}, last {losses[-1]:.4f}")
    print(f"test accuracy {100 * accuracy:.2f}% (majority class: {100 * majority:.2f}%)")
    return {"losses": losses, "metric": accuracy, "chance": majority}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 epochs: the smoke test's setting")
    main(parser.parse_args().quick)
