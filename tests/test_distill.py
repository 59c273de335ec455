"""Knowledge distillation: the loss against its formula (and its limits), and finetune task distill
end to end on a tiny classifier teacher and a smaller student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tests.test_finetune import char_tokenizer, classification_recipe, sentiment_csv  # noqa: F401

from zeroforge.errors import ConfigError
from zeroforge.finetuning import TeacherLogits, finetune
from zeroforge.modules.distillation import distillation_loss


def test_loss_is_hinton_formula() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(8, 3), torch.randn(8, 3)
    y = torch.randint(0, 3, (8,))
    T, alpha = 3.0, 0.7
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, -1))).sum(-1).mean()  # KL(p_t || p_s)
    expected = alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, t, y, T, alpha), expected)
    torch.testing.assert_close(distillation_loss(s, t, y, T, 0.0), F.cross_entropy(s, y))  # hard only
    assert distillation_loss(t, t, y, T, 1.0).abs() < 1e-6  # a student equal to its teacher: no soft loss
    s.requires_grad_(True)
    distillation_loss(s, t, y, T, 1.0).backward()
    torch.testing.assert_close(
        s.grad, (torch.softmax(s / T, -1) - p_t).detach() * T / 8
    )  # T^2 * (p_s - p_t) / (T N)


def test_distill_task_end_to_end(tmp_path: Path, char_tokenizer: Path) -> None:  # noqa: F811
    data = sentiment_csv(tmp_path / "reviews.csv", n=120)
    teacher = finetune(classification_recipe(tmp_path, char_tokenizer, data))
    student = classification_recipe(tmp_path, char_tokenizer, data, "full")
    student["model"]["config"].update(n_layer=1)
    student["train"].update(out_dir=str(tmp_path / "student"), max_steps=40)
    student["finetune"].update(task="distill", teacher=str(teacher), temperature=2.0, alpha=0.5)
    run = finetune(student)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "distill" and "accuracy" in metrics and "f1" in metrics
    import zeroforge

    model, _ = zeroforge.load(run)
    assert len(model.blocks) == 1 and not hasattr(model, "distillation")  # a plain classifier is published


def test_teacher_logits_are_added_to_training_batches(tmp_path: Path) -> None:
    class Source:
        def next_batch(self) -> dict[str, torch.Tensor]:
            return {
                "input_ids": torch.ones(2, 3, dtype=torch.long),
                "labels": torch.zeros(2, dtype=torch.long),
            }

        def state_dict(self) -> dict:
            return {"at": 1}

    class Teacher(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> object:
            return type("Out", (), {"logits": input_ids[:, :2].float() * 5})()

    batch = TeacherLogits(Source(), Teacher()).next_batch()
    assert batch["teacher_logits"].shape == (2, 2) and float(batch["teacher_logits"][0, 0]) == 5.0
    assert TeacherLogits(Source(), Teacher()).state_dict() == {"at": 1}


def test_distill_needs_a_teacher(tmp_path: Path, char_tokenizer: Path) -> None:  # noqa: F811
    config = classification_recipe(tmp_path, char_tokenizer, sentiment_csv(tmp_path / "r.csv", n=20))
    config["finetune"]["task"] = "distill"
    with pytest.raises(ConfigError, match="teacher"):
        finetune(config)
