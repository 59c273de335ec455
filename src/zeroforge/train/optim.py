"""Optimizers and the learning-rate schedule of the one training loop.

The update rules (SGD with momentum, Polyak 1964; Adam, Kingma & Ba 2015), as torch implements them (Muon: here, see ``Muon``):
  SGD with momentum   v <- mu*v + g;               w <- w - lr*v
  Adam                m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  w <- w - lr*m_hat/(sqrt(v_hat)+eps)
  AdamW               Adam with decoupled weight decay: w <- w - lr*wd*w (Loshchilov & Hutter, 2019)
  Muon                for a block's matrix W: M <- mu*M + (1-mu)*G;  U S V^T = (1-mu)*G + mu*M (Nesterov);
                      O <- NewtonSchulz5(U S V^T) ~ U V^T (orthogonalised: every direction one size);
                      W <- W - lr*0.2*sqrt(max(rows, cols))*O - lr*wd*W  (Jordan et al. 2024; the
                      0.2*sqrt scale matches AdamW's update size, Liu et al. 2025, so both share one lr).
                      Embeddings, the output head, biases and norm gains keep AdamW.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zeroforge.config import TrainArgs
from zeroforge.errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float, exclude: set[int] = frozenset()) -> list[dict]:
    """Decay matrices (Linear/Embedding/Conv weights); never decay biases or norm gains (1-D tensors).
    ``exclude``: ids of parameters another optimizer steps."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad and id(param) not in exclude:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, args: TrainArgs) -> torch.optim.Optimizer:
    groups = param_groups(model, args.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum)
    if args.optimizer == "muon":
        return _muon_with_adamw(model, args)
    kernel = _adam_kernel([p for g in groups for p in g["params"]])
    if args.optimizer == "adam":
        # plain Adam folds weight decay into the gradient (L2), so it gets none here unless asked
        return torch.optim.Adam(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **kernel)
    return torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **kernel)


def block_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights of the ``nn.Linear`` layers inside the model's repeated blocks (a module
    path with a list index, ``transformer.h.0.mlp.c_fc``): what Muon orthogonalises. The embeddings,
    the output head and any classifier sit outside the blocks; a weight also held elsewhere (tied) is
    left out."""
    seen: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        seen[id(param)] = seen.get(id(param), 0) + 1
    matrices = []
    for name, module in model.named_modules():
        in_block = any(part.isdigit() for part in name.split("."))
        weight = getattr(module, "weight", None)
        if (
            in_block
            and isinstance(module, nn.Linear)
            and isinstance(weight, nn.Parameter)
            and weight.requires_grad
            and seen[id(weight)] == 1
        ):
            matrices.append(weight)
    return matrices


# Newton-Schulz quintic coefficients (Jordan et al. 2024; torch.optim.Muon's defaults): the steepest
# slope at zero that still keeps every singular value within about [0.7, 1.2] after 5 steps
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(matrices: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """~U V^T of each (m, n) matrix U S V^T in a (batch, m, n) stack, m <= n, by the Newton-Schulz
    quintic X <- aX + (bA + cA^2)X with A = X X^T.

    torch.optim.Muon runs it in bf16 (fast on GPUs and on CPUs with bf16 instructions); on a CPU
    without them bf16 matrix products are emulated and its step was 7.5x slower than AdamW's whole
    training step for a 2-layer, 128-wide char GPT, so on a CPU it runs in fp32."""
    a, b, c = NS_COEFFICIENTS
    x = matrices.bfloat16() if matrices.is_cuda else matrices.float()
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.to(matrices.dtype)


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz, for 2-D weights: the update rule of torch.optim.Muon
    with ``adjust_lr_fn="match_rms_adamw"`` (tested against it). Matrices of one shape (a tall one
    transposed) are orthogonalised together in one batched product per Newton-Schulz step."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor, bool]]] = {}
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buf = state["momentum_buffer"]
                buf.lerp_(param.grad, 1 - mu)
                update = param.grad.lerp(buf, mu)  # Nesterov
                tall = param.size(0) > param.size(1)
                update = update.T if tall else update  # the Gram matrix is then the small side
                by_shape.setdefault((*update.shape, update.device), []).append((param, update, tall))
            for items in by_shape.values():
                ortho = orthogonalise(torch.stack([update for _, update, _ in items]))
                for (param, _, tall), o in zip(items, ortho):
                    scale = 0.2 * max(param.shape) ** 0.5  # the update's RMS then matches AdamW's (~0.2)
                    param.mul_(1 - lr * wd)
                    param.add_(o.T if tall else o, alpha=-lr * scale)
        return loss


class MuonWithAdamW:
    """Muon for the blocks' matrices and AdamW for every other parameter, stepped as one optimizer:
    the loop sets the lr (``set_learning_rate``: AdamW's is ``adamw_lr_scale`` times Muon's), steps,
    zeroes and checkpoints it."""

    def __init__(
        self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer, adamw_lr_scale: float = 1.0
    ) -> None:
        self.optimizers = (muon, adamw)
        self.adamw_lr_scale = adamw_lr_scale

    def set_lr(self, lr: float) -> None:
        """Muon's groups get ``lr``, AdamW's ``lr * adamw_lr_scale``."""
        for group in self.optimizers[0].param_groups:
            group["lr"] = lr
        for group in self.optimizers[1].param_groups:
            group["lr"] = lr * self.adamw_lr_scale

    @property
    def param_groups(self) -> list[dict]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.optimizers[0].state_dict(), "adamw": self.optimizers[1].state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"muon", "adamw"}:
            raise ValueError(f"optimizer state: expected Muon + AdamW parts, got keys {sorted(state)}")
        self.optimizers[0].load_state_dict(state["muon"])
        self.optimizers[1].load_state_dict(state["adamw"])


def _muon_with_adamw(model: nn.Module, args: TrainArgs) -> MuonWithAdamW:
    matrices = block_matrices(model)
    if not matrices:
        raise ConfigError(
            "train.optimizer: muon needs trainable Linear weights inside repeated blocks; this model has none"
        )
    groups = param_groups(model, args.weight_decay, exclude={id(p) for p in matrices})
    rest = [p for g in groups for p in g["params"]]
    muon = Muon(matrices, lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum)
    adamw = torch.optim.AdamW(
        groups,
        lr=args.lr * args.adamw_lr_scale,
        betas=(args.beta1, args.beta2),
        eps=args.eps,
        **_adam_kernel(rest),
    )
    return MuonWithAdamW(muon, adamw, args.adamw_lr_scale)


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
    if isinstance(optimizer, MuonWithAdamW):
        optimizer.set_lr(lr)
        return
    for group in optimizer.param_groups:
        group["lr"] = lr
