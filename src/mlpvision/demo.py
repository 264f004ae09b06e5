"""The demo job: a registered small model classifies a few Fashion-MNIST test images (data -> model -> output)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import FashionMNIST
from .models import create_model

__all__ = ["Prediction", "classify_samples"]


@dataclass(frozen=True)
class Prediction:
    index: int  # position in the test set
    label: str  # true class
    predicted: str  # most probable class
    confidence: float  # its probability


@torch.no_grad()
def classify_samples(
    model_name: str = "mixer_t4_28", num_images: int = 8, data_dir=None, seed: int = 0
) -> list[Prediction]:
    """Classifies ``num_images`` test images picked at random (seeded) with a freshly built model.

    Images are scaled to [0, 1] and normalised with Fashion-MNIST's mean and std.
    """
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=10, in_chans=1, img_size=28).eval()
    data = FashionMNIST(data_dir, train=False)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=gen)[:num_images]
    x = data.data[idx].unsqueeze(1).float().div(255)  # (B, 28, 28) uint8 -> (B, 1, 28, 28) in [0, 1]
    x = (x - 0.2860) / 0.3530  # Fashion-MNIST training-set mean and std
    probs = model(x).softmax(dim=-1)
    conf, pred = probs.max(dim=-1)
    return [
        Prediction(int(i), data.classes[int(data.targets[i])], data.classes[int(p)], float(c))
        for i, p, c in zip(idx, pred, conf, strict=True)
    ]
