"""Knowledge distillation's loss (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

z_s and z_t are the student's and the teacher's logits, T the temperature that softens both
distributions (the teacher's "dark knowledge": how it ranks the wrong classes), y the hard labels.
The T^2 factor keeps the soft term's gradients the same size whatever T (they scale as 1/T^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """(N, C) student and teacher logits, (N,) labels -> the scalar loss above (in fp32)."""
    s = student_logits.float()
    t = teacher_logits.detach().float()
    soft = F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )  # KL(p_t || p_s), mean over rows
    hard = F.cross_entropy(s, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard
