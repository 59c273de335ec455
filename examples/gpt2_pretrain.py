"""Pretraining a language model with the GPT-2 architecture, from a random start, on Shakespeare.

GPT-2 is a stack of decoder blocks (causal self-attention + MLP, pre-LayerNorm) read by a next-token
loss: for a window of tokens x_1..x_T the model predicts x_{t+1} from x_1..x_t and is trained on the
mean of -log p(x_{t+1} | x_≤t) (cross-entropy). This script builds the "gpt2" preset (GPT-2's
50,257-token byte-level BPE vocabulary, learned positions, tied input/output embeddings) shrunk to 4
layers of width 128 so it trains on a CPU, writes the training loop out (AdamW, warmup + cosine
learning rate, gradient clipping), reports the validation loss and perplexity and samples from it.

Data: ``zeroforge.datasets`` "shakespeare" (the complete works, 5 MB of text), GPT-2's own tokenizer;
first 90% of the tokens for training, the last 10% for validation. For the recipe-driven version with
checkpoints, curves and a character tokenizer see ``zeroforge train --config recipes/gpt-char-shakespeare.yaml``.

    python examples/gpt2_pretrain.py            # 200 steps, ~12 minutes on 2 shared cores
    python examples/gpt2_pretrain.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse
import math

import torch

import zeroforge as zf
from zeroforge.tokenizers import build_tokenizer


def batch(
    tokens: torch.Tensor, batch_size: int, block_size: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """``batch_size`` random windows: input_ids x_1..x_T and labels x_2..x_{T+1} (already shifted)."""
    starts = torch.randint(len(tokens) - block_size - 1, (batch_size,), generator=gen)
    x = torch.stack([tokens[s : s + block_size] for s in starts])  # (B, T)
    y = torch.stack([tokens[s + 1 : s + block_size + 1] for s in starts])  # (B, T)
    return {"input_ids": x, "labels": y}


@torch.no_grad()
def validation_loss(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, n_batches: int) -> float:
    model.eval()
    gen = torch.Generator().manual_seed(1234)  # the same windows at every evaluation
    loss = sum(float(model(**batch(tokens, 16, block_size, gen)).loss) for _ in range(n_batches)) / n_batches
    model.train()
    return loss


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    text = zf.datasets.load_text("shakespeare")
    if quick:
        text = text[:100_000]
    tokenizer = build_tokenizer("gpt2")  # GPT-2's vocab.json + merges.txt
    tokens = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    split = int(0.9 * len(tokens))
    train_tokens, val_tokens = tokens[:split], tokens[split:]

    block_size = 64
    model = zf.create_model("gpt2", n_layer=4, n_head=4, n_embd=128, block_size=block_size, dropout=0.0)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {len(tokens):,} tokens")

    # Adam(W) with a short warmup then a cosine decay; a model trained from scratch this small takes a
    # larger peak rate (1e-3) than the 1e-4 used to continue training a pretrained GPT-2.
    steps, batch_size, warmup, peak_lr = (15, 4, 3, 2e-3) if quick else (200, 8, 20, 1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.1, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < warmup:
            return peak_lr * (step + 1) / warmup
        return 0.1 * peak_lr + 0.45 * peak_lr * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    gen, losses = torch.Generator().manual_seed(0), []
    initial_val = validation_loss(model, val_tokens, block_size, 1 if quick else 4)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(**batch(train_tokens, batch_size, block_size, gen)).loss  # cross-entropy of next tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d}  train loss {loss.item():.3f}")

    val_loss = validation_loss(model, val_tokens, block_size, 1 if quick else 20)
    print(f"validation loss {val_loss:.3f} (perplexity {math.exp(val_loss):.0f}); before training "
          f"{initial_val:.3f}; a uniform guess over the vocabulary: {math.log(tokenizer.vocab_size):.3f}")  # fmt: skip
    model.eval()
    print(zf.generate(model, tokenizer, "ROMEO:", max_new_tokens=40, temperature=0.8, top_k=40, seed=0))
    return {"losses": losses, "metric": -val_loss, "chance": -math.log(tokenizer.vocab_size)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 kB of text, 15 steps: the smoke test")
    main(parser.parse_args().quick)
