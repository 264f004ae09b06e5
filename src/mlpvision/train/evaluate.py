"""Evaluation: accuracy, per-class accuracy and confusion matrix of a classifier on a data set; mean IoU, pixel
accuracy, per-class IoU and the pixel confusion matrix of a segmentation model."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..io import save_figure
from ..plotting import pyplot

__all__ = [
    "EvalResult",
    "SegEvalResult",
    "evaluate",
    "evaluate_segmentation",
    "iou_from_confusion",
    "pixel_confusion",
    "save_confusion_png",
]


@dataclass
class EvalResult:
    """Metrics of one pass over a data set (accuracies in percent)."""

    loss: float
    top1: float
    top5: float
    num_images: int
    per_class: list[float] = field(default_factory=list)  # top-1 per true class
    confusion: list[list[int]] = field(default_factory=list)  # [true][predicted] counts

    @property
    def score(self) -> float:
        """The figure the best model is chosen on."""
        return self.top1

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
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Runs ``model`` in eval mode over ``loader`` (images, integer labels) and gathers the metrics;
    ``progress(images done, images in all)`` is called after each batch."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top5_hits, n = 0.0, 0, 0
    device = torch.device(device)
    total = len(loader.dataset) if hasattr(loader.dataset, "__len__") else 0
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
        if progress is not None:
            progress(n, max(total, n))
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
    confusion: list[list[int]],
    classes: tuple[str, ...] | list[str],
    path: str | os.PathLike,
    title: str | None = None,
    normalize: bool = True,
) -> Path:
    """Plots a confusion matrix (rows: true class, columns: predicted) with a colour bar.

    Args:
        confusion: counts, ``[true][predicted]``.
        classes: the class names, in label order.
        path: the PNG to write.
        title: the figure's title (say model, data and split), followed by the number of images.
        normalize: colour and label each cell by the fraction of its true class (rows sum to 100%), so that
            classes of different sizes compare; False: by image counts.
    """
    plt = pyplot()
    cm = torch.tensor(confusion, dtype=torch.float64)
    norm = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)
    shown = 100 * norm if normalize else cm
    n = len(classes)
    side = 1.6 + 0.62 * n
    fig, ax = plt.subplots(figsize=(side + 1.4, side))
    image = ax.imshow(shown.numpy(), cmap="Blues", vmin=0, vmax=100 if normalize else max(float(cm.max()), 1))
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("% of the true class" if normalize else "images")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        top = float(shown.max()) or 1.0
        for i in range(n):
            for j in range(n):
                value = shown[i, j].item()
                small = normalize and 0 < value < 9.5  # 0.4% is not 0
                text = f"{value:.1f}" if small else f"{value:.0f}"
                color = "white" if value > 0.55 * top else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    total = int(cm.sum().item())
    what = "row-normalised, %" if normalize else "counts"
    ax.set_title(f"{title}\n{total} images, {what}" if title else f"{total} images, {what}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path, dpi=120)
    return path


# ---- segmentation ----------------------------------------------------------------------------------------------


def iou_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class intersection over union from a [true][predicted] confusion matrix of pixel counts; NaN for a
    class that is neither present nor predicted (it does not count in the mean)."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def pixel_confusion(logits: torch.Tensor, masks: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """[true][predicted] pixel counts of one batch: logits (B, K, H, W), masks (B, H, W); ignored pixels skipped."""
    keep = masks != ignore_index
    truth, pred = masks[keep].cpu(), logits.argmax(dim=1)[keep].cpu()
    return torch.bincount(truth * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass
class SegEvalResult:
    """Metrics of one pass of a segmentation model over a data set (percent), ignored pixels excluded.

    ``miou`` is the mean over classes of intersection / union, over the classes present in the ground truth or
    the predictions; ``pixel_acc`` the share of labelled pixels predicted right.
    """

    loss: float
    miou: float
    pixel_acc: float
    num_images: int
    per_class_iou: list[float] = field(default_factory=list)  # NaN for a class neither present nor predicted
    confusion: list[list[int]] = field(default_factory=list)  # [true][predicted] pixel counts

    @property
    def score(self) -> float:
        """The figure the best model is chosen on."""
        return self.miou

    def as_dict(self) -> dict:
        return {
            "loss": self.loss,
            "miou": self.miou,
            "pixel_acc": self.pixel_acc,
            "num_images": self.num_images,
            "per_class_iou": self.per_class_iou,
            "confusion": self.confusion,
        }


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    ignore_index: int = 255,
    progress: Callable[[int, int], None] | None = None,
) -> SegEvalResult:
    """Runs ``model`` in eval mode over ``loader`` (images, masks (B, H, W)) and gathers pixel metrics;
    ``progress(images done, images in all)`` is called after each batch."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, pixels, n = 0.0, 0, 0
    device = torch.device(device)
    total = len(loader.dataset) if hasattr(loader.dataset, "__len__") else 0
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="sum").item()
        pixels += int((masks != ignore_index).sum())
        confusion += pixel_confusion(logits, masks, num_classes, ignore_index)
        n += len(images)
        if progress is not None:
            progress(n, max(total, n))
    model.train(was_training)
    if pixels == 0:
        return SegEvalResult(float("nan"), float("nan"), float("nan"), n)
    iou = iou_from_confusion(confusion)
    return SegEvalResult(
        loss=loss_sum / pixels,
        miou=100.0 * float(iou.nanmean()),
        pixel_acc=100.0 * confusion.diag().sum().item() / pixels,
        num_images=n,
        per_class_iou=(100.0 * iou).tolist(),
        confusion=confusion.tolist(),
    )
