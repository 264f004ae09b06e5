"""Evaluation: accuracy, per-class accuracy and confusion matrix of a model on a data set."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..io import save_figure
from ..plotting import pyplot

__all__ = ["EvalResult", "evaluate", "save_confusion_png"]


@dataclass
class EvalResult:
    """Metrics of one pass over a data set (accuracies in percent)."""

    loss: float
    top1: float
    top5: float
    num_images: int
    per_class: list[float] = field(default_factory=list)  # top-1 per true class
    confusion: list[list[int]] = field(default_factory=list)  # [true][predicted] counts

    def as_dict(self) -> dict:
        return {
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "num_images": self.num_images,
            "per_class": self.per_class,
            "confusion": self.confusion,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
) -> EvalResult:
    """Runs ``model`` in eval mode over ``loader`` (images, integer labels) and gathers the metrics."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top5_hits, n = 0.0, 0, 0
    device = torch.device(device)
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        k = min(5, num_classes)
        top5_hits += (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum().item()
        pred = logits.argmax(dim=1)
        confusion += torch.bincount(labels.cpu() * num_classes + pred.cpu(), minlength=num_classes**2).reshape(
            num_classes, num_classes
        )
        n += len(labels)
    model.train(was_training)
    if n == 0:
        return EvalResult(float("nan"), float("nan"), float("nan"), 0)
    per_class_total = confusion.sum(dim=1).clamp(min=1)
    per_class = (100.0 * confusion.diag() / per_class_total).tolist()
    return EvalResult(
        loss=loss_sum / n,
        top1=100.0 * confusion.diag().sum().item() / n,
        top5=100.0 * top5_hits / n,
        num_images=n,
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def save_confusion_png(
    confusion: list[list[int]], classes: tuple[str, ...] | list[str], path: str | os.PathLike
) -> Path:
    """Plots a row-normalised confusion matrix with counts."""
    plt = pyplot()
    cm = torch.tensor(confusion, dtype=torch.float64)
    norm = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path, dpi=120)
    return path
