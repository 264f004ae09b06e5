"""What a run learns, as one object the engine asks: the loss of a batch, its training hits, how a model is
evaluated, which figure picks the best model, and the columns it adds to the metrics and the summary.

``classify`` (one label per image: cross-entropy, top-1) and ``segment`` (one label per pixel: pixel
cross-entropy that skips the ignore index, mean IoU) share everything else of the engine: checkpoints, resume,
the run-folder lock, EMA, DDP, time limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..errors import ConfigError
from .evaluate import EvalResult, SegEvalResult, evaluate, evaluate_segmentation

__all__ = ["TASKS", "Classification", "Segmentation", "check_fit", "get_task"]


def check_fit(model: nn.Module, sample_target, num_classes: int | None, data_name: str) -> None:
    """Refuses a model and a data set that do not fit each other: a segmentation model (per-pixel logits) on data
    with one label per image or the reverse, or another number of classes. Training, evaluation and fine-tuning
    all pair a model with data through it."""
    per_pixel = torch.is_tensor(sample_target) and sample_target.dim() == 2
    dense = bool(getattr(model, "dense", False))
    name = getattr(model, "model_name", type(model).__name__)
    if per_pixel and not dense:
        raise ConfigError(f"{data_name} has a label per pixel (masks) but {name} labels whole images")
    if dense and not per_pixel:
        raise ConfigError(f"{name} labels every pixel but {data_name} has one label per image")
    if num_classes is not None and getattr(model, "num_classes", num_classes) != num_classes:
        raise ConfigError(f"{name} predicts {model.num_classes} classes but {data_name} has {num_classes}")


@dataclass(frozen=True)
class Classification:
    """One label per image."""

    name: str = "classify"
    score_name: str = "top1"  # the validation figure the best model is chosen on
    train_hits_name: str = "train_top1"

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)

    def augment(self, images: torch.Tensor, labels: torch.Tensor, aug, fill: torch.Tensor):
        return images, labels  # the data set's own augmentation already ran

    def hits(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
        """(right predictions, predictions) of a training batch."""
        return int((logits.argmax(1) == labels).sum()), len(labels)

    def evaluate(
        self, model: nn.Module, loader: DataLoader, num_classes: int, device, amp: bool = False, progress=None
    ):
        return evaluate(model, loader, num_classes, device, amp, progress=progress)

    def columns(self, prefix: str, result: EvalResult) -> dict:
        return {f"{prefix}_loss": result.loss, f"{prefix}_top1": result.top1, f"{prefix}_top5": result.top5}

    def summary(self, final: EvalResult, best: EvalResult) -> dict:
        return {"test_top1_final": final.top1, "test_top1_best": best.top1, "test_top5_best": best.top5}

    def check(self, model: nn.Module, sample_target, num_classes: int | None = None, data_name: str = "") -> None:
        if torch.is_tensor(sample_target) and sample_target.dim() > 0:
            raise ConfigError("this data set has per-pixel labels: train it with --task segment and a seg_ model")
        if getattr(model, "dense", False):
            raise ConfigError(f"{model.model_name} is a segmentation model: train it with --task segment on masks")
        check_fit(model, sample_target, num_classes, data_name or "the data set")


@dataclass(frozen=True)
class Segmentation:
    """One label per pixel; pixels labelled ``ignore_index`` count in neither the loss nor the metrics."""

    ignore_index: int = 255
    name: str = "segment"
    score_name: str = "miou"
    train_hits_name: str = "train_pixel_acc"

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        # (B, K, H, W) logits against (B, H, W) class indices
        return F.cross_entropy(logits.float(), targets, ignore_index=self.ignore_index, label_smoothing=label_smoothing)

    def hits(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
        keep = labels != self.ignore_index
        return int((logits.argmax(1)[keep] == labels[keep]).sum()), int(keep.sum())

    def augment(self, images: torch.Tensor, masks: torch.Tensor, aug, fill: torch.Tensor):
        """A random horizontal flip and a random crop of the zero-padded image, mask alike, for each image of a
        batch of normalised images (B, C, H, W) and masks (B, H, W); ``fill`` (C,) is black after normalisation,
        padded mask pixels are ignored. Draws from the global generator (seeded per step by the engine)."""
        b, c, h, w = images.shape
        if aug.hflip > 0:
            flip = torch.rand(b) < aug.hflip
            images, masks = images.clone(), masks.clone()
            images[flip], masks[flip] = images[flip].flip(-1), masks[flip].flip(-1)
        p = aug.crop_padding
        if p > 0:
            # one black value per channel, or one for all (a grey data set's statistics on channel-repeated images)
            padded = fill.to(images).reshape(1, -1, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[..., p : p + h, p : p + w] = images
            padded_masks = torch.full((b, h + 2 * p, w + 2 * p), self.ignore_index, dtype=masks.dtype)
            padded_masks[:, p : p + h, p : p + w] = masks
            dy, dx = torch.randint(0, 2 * p + 1, (2, b)).tolist()
            images = torch.stack(
                [padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))]
            )
            masks = torch.stack(
                [padded_masks[i, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))]
            )
        return images, masks

    def evaluate(
        self, model: nn.Module, loader: DataLoader, num_classes: int, device, amp: bool = False, progress=None
    ):
        return evaluate_segmentation(
            model, loader, num_classes, device, amp, ignore_index=self.ignore_index, progress=progress
        )

    def columns(self, prefix: str, result: SegEvalResult) -> dict:
        return {f"{prefix}_loss": result.loss, f"{prefix}_miou": result.miou, f"{prefix}_pixel_acc": result.pixel_acc}

    def summary(self, final: SegEvalResult, best: SegEvalResult) -> dict:
        return {
            "test_miou_final": final.miou,
            "test_miou_best": best.miou,
            "test_pixel_acc_best": best.pixel_acc,
            "test_per_class_iou_best": best.per_class_iou,
        }

    def check(self, model: nn.Module, sample_target, num_classes: int | None = None, data_name: str = "") -> None:
        if not (torch.is_tensor(sample_target) and sample_target.dim() == 2):
            raise ConfigError("--task segment needs a data set with per-pixel masks (fashion-scenes or segfolder)")
        if not getattr(model, "dense", False):
            name = getattr(model, "model_name", type(model).__name__)
            raise ConfigError(f"--task segment needs a segmentation model (seg_*), not {name}")
        check_fit(model, sample_target, num_classes, data_name or "the data set")


TASKS = {"classify": Classification(), "segment": Segmentation()}


def get_task(name: str, ignore_index: int | None = None):
    """The task called ``name`` (``classify`` or ``segment``)."""
    if name not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    task = TASKS[name]
    if ignore_index is not None and isinstance(task, Segmentation):
        task = Segmentation(ignore_index)
    return task
