"""A tiny character-level GPT on the Shakespeare corpus, trained with ``zeroforge.scratch`` (NumPy only).

    OMP_NUM_THREADS=1 python examples/scratch_char_transformer.py --minutes 10

Token + learned position embeddings, pre-norm transformer blocks (causal multi-head self-attention,
GELU MLP), final LayerNorm, linear head; next-character cross-entropy, Adam. Training stops after
``--minutes``; the validation loss (last 10% of the text) is printed as it goes and at the end.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from zeroforge.scratch import Tensor, nn, no_grad, optim
from zeroforge.scratch import functional as F


@dataclass
class CharGPTConfig:
    block_size: int = 64
    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    batch_size: int = 32
    lr: float = 3e-3
    minutes: float = 10.0
    eval_every: int = 100
    eval_batches: int = 20
    max_steps: int | None = None
    seed: int = 0


class CharGPT(nn.Module):
    def __init__(self, vocab_size: int, config: CharGPTConfig) -> None:
        rng = np.random.default_rng(config.seed)
        f32 = np.float32
        self.token_embedding = nn.Embedding(vocab_size, config.dim, rng, f32)
        self.position_embedding = nn.Embedding(config.block_size, config.dim, rng, f32)
        for emb in (self.token_embedding, self.position_embedding):  # GPT-2's N(0, 0.02)
            emb.weight = nn.normal(emb.weight.shape, 0.02, rng, f32)
        self.blocks = [
            nn.TransformerBlock(config.dim, config.num_heads, rng, f32) for _ in range(config.num_layers)
        ]
        self.ln_f = nn.LayerNorm(config.dim, dtype=f32)
        self.head = nn.Linear(config.dim, vocab_size, rng=rng, dtype=f32)

    def forward(self, ids: np.ndarray) -> Tensor:
        """ids (B, T) -> logits (B, T, vocab)."""
        t = ids.shape[1]
        x = self.token_embedding(ids) + self.position_embedding(np.arange(t))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def sample_batch(data: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator) -> tuple:
    starts = rng.integers(0, len(data) - block_size - 1, size=batch_size)
    window = starts[:, None] + np.arange(block_size)
    return data[window], data[window + 1]  # inputs and next-character targets, (B, T) each


def estimate_loss(model: CharGPT, data: np.ndarray, config: CharGPTConfig, batches: int) -> float:
    rng = np.random.default_rng(1234)  # the same batches at every evaluation
    losses = []
    with no_grad():
        for _ in range(batches):
            x, y = sample_batch(data, config.block_size, config.batch_size, rng)
            losses.append(F.cross_entropy(model(x), y).item())
    return float(np.mean(losses))


def train(config: CharGPTConfig, text: str) -> float:
    """Train until ``config.minutes`` (or ``max_steps``) pass; returns the final validation loss."""
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in chars])[np.searchsorted(chars, list(text))]
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    model = CharGPT(len(chars), config)
    optimizer = optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    print(f"{model.num_parameters()} parameters, vocabulary {len(chars)}, {len(train_ids)} training characters",
          flush=True)  # fmt: skip
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < 60 * config.minutes and (
        config.max_steps is None or step < config.max_steps
    ):
        x, y = sample_batch(train_ids, config.block_size, config.batch_size, rng)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        step += 1
        if step % config.eval_every == 0:
            val = estimate_loss(model, val_ids, config, config.eval_batches)
            elapsed = time.perf_counter() - start
            print(
                f"step {step}: train loss {loss.item():.3f}  val loss {val:.3f}  ({elapsed:.0f} s)",
                flush=True,
            )
    final = estimate_loss(model, val_ids, config, 2 * config.eval_batches)
    print(
        f"final validation loss {final:.3f} after {step} steps, {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=CharGPTConfig.minutes)
    args = parser.parse_args()
    from zeroforge.datasets import load_text

    train(CharGPTConfig(minutes=args.minutes), load_text("shakespeare"))


if __name__ == "__main__":
    main()
