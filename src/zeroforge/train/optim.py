"""Optimizers and the learning-rate schedule of the one training loop.

The seeds' update rules, as torch implements them:
  SGD with momentum   v <- mu*v + g;               w <- w - lr*v
  Adam                m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  w <- w - lr*m_hat/(sqrt(v_hat)+eps)
  AdamW               Adam with decoupled weight decay: w <- w - lr*wd*w (Loshchilov & Hutter, 2019)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zeroforge.config import TrainArgs


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (Linear/Embedding/Conv weights); never decay biases or norm gains (1-D tensors)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, args: TrainArgs) -> torch.optim.Optimizer:
    groups = param_groups(model, args.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum)
    kernel = _adam_kernel([p for g in groups for p in g["params"]])
    if args.optimizer == "adam":
        # plain Adam folds weight decay into the gradient (L2), so it gets none here unless asked
        return torch.optim.Adam(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **kernel)
    return torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **kernel)


def _adam_kernel(params: list[nn.Parameter]) -> dict[str, bool]:
    """``fused=True`` (one kernel per tensor does the whole update in a single pass over weight,
    gradient and both moments) where torch has it: float tensors on CPU or CUDA. On a CPU the
    ``foreach`` path is a loop of one kernel per operation per tensor, ~5x slower than fused for
    GPT config (a) of bench/train_gpt.py (3 ms against 14 ms per step, one thread). FSDP2's sharded
    (DTensor) parameters take the fused kernel too. Other devices keep ``foreach``."""
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return {"fused": True} if fused else {"foreach": True}


def learning_rate(step: int, progress: float, args: TrainArgs) -> float:
    """Linear warmup for ``warmup_steps``, then the chosen decay over ``progress`` in [0, 1].

    ``progress`` is the fraction of the post-warmup run that is done: by steps when ``max_steps`` is
    set, by wall time when only ``max_minutes`` is (so a time budget still decays to ``min_lr``).
    Cosine decay: lr = min_lr + 0.5 * (1 + cos(pi * progress)) * (lr - min_lr)  (Loshchilov & Hutter, SGDR)
    """
    if step < args.warmup_steps:
        return args.lr * (step + 1) / (args.warmup_steps + 1)
    min_lr = args.lr / 10 if args.min_lr is None else args.min_lr
    progress = min(max(progress, 0.0), 1.0)
    if args.schedule == "constant":
        return args.lr
    if args.schedule == "linear":
        return args.lr + progress * (min_lr - args.lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (args.lr - min_lr)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
