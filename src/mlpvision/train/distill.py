"""Knowledge distillation: the loss against a frozen teacher's logits, and the teacher (one model or an ensemble).

ResMLP and DeiT train their students with *hard* distillation: cross-entropy with the teacher's decision on each
augmented image, added to the label loss. A convnet teacher hands the student its local prior and its tolerance of
small shifts, which an MLP cannot infer from little data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..io import load_checkpoint

__all__ = ["TeacherEnsemble", "distillation_loss", "load_teacher"]


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, mode: str = "hard", tau: float = 1.0
) -> torch.Tensor:
    """The student's loss against the teacher on one batch.

    Args:
        logits: student logits, (B, classes).
        teacher_logits: teacher logits for the same images, (B, classes).
        mode: ``hard`` (DeiT: cross-entropy with the teacher's argmax) or ``soft`` (Hinton: KL divergence between
            the temperature-softened distributions, scaled by ``tau**2`` so gradients keep their size).
        tau: the soft temperature.
    """
    if mode == "hard":
        return F.cross_entropy(logits, teacher_logits.argmax(dim=1))
    if mode != "soft":
        raise ValueError(f"distillation mode must be hard or soft, got {mode!r}")
    student, teacher = F.log_softmax(logits / tau, 1), F.log_softmax(teacher_logits / tau, 1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * tau**2


class TeacherEnsemble(nn.Module):
    """Several teachers as one: the mean of their logits (usually more accurate than any one member)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float() for m in self.members]).mean(0)  # (K, B, classes) -> (B, classes)


def load_teacher(files: list[str], device: torch.device, num_classes: int | None = None) -> nn.Module | None:
    """The frozen distillation teacher: one model file, or an ensemble of several (None for no file); each must
    predict ``num_classes`` classes (the student's) when given."""
    if not files:
        return None
    members = [load_checkpoint(f, device=device) for f in files]
    for f, m in zip(files, members, strict=True):
        if num_classes is not None and getattr(m, "num_classes", num_classes) != num_classes:
            raise ConfigError(f"teacher {f} predicts {m.num_classes} classes, the data set has {num_classes}")
    teacher = members[0] if len(members) == 1 else TeacherEnsemble(members)
    return teacher.eval().requires_grad_(False)
