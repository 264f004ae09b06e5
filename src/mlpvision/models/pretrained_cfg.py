"""``pretrained_cfg``: how the images a model's weights expect are prepared, as timm describes it.

Every registered model carries one (``model.pretrained_cfg``, a dict with timm's keys): input size, mean and std,
interpolation, ``crop_pct`` (the centre crop's share of the resized image's shorter side), classifier and first
layer names, number of classes. ImageNet-size variants take their family's ImageNet preprocessing (the papers'
released weights were trained with it); the small 28 px and 32 px variants take the statistics of Fashion-MNIST or
CIFAR-10 and no resize margin. ``mlpvision.data.resolve_data_config`` turns it into a transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGENET_DEFAULT",
    "IMAGENET_INCEPTION",
    "DataDefaults",
    "build_pretrained_cfg",
    "fit_channels",
]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# the statistics of the small variants' data sets (the same numbers as mlpvision.data's sources; a test checks it)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SMALL_IMAGES = 64  # variants built for inputs below this side are the small-image ones


@dataclass(frozen=True)
class DataDefaults:
    """A family's preprocessing for ImageNet-size inputs, and the names of its first layer and classifier."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"  # resize filter: "bicubic", "bilinear" or "nearest"
    crop_pct: float = 0.875  # centre crop / resized shorter side (224 from 256)
    first_conv: str = "stem.proj"  # the layer whose weight ``in_chans`` adaptation changes
    dataset: str = "imagenet-1k"


IMAGENET_DEFAULT = DataDefaults(IMAGENET_MEAN, IMAGENET_STD)
IMAGENET_INCEPTION = DataDefaults((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # [-1, 1] inputs (the JAX-trained models)


def fit_channels(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Per-channel statistics for ``in_chans`` channels: averaged for one channel, repeated for more (as timm)."""
    if len(values) == in_chans:
        return tuple(values)
    if in_chans == 1:
        return (sum(values) / len(values),)
    return tuple(values[i % len(values)] for i in range(in_chans))


def build_pretrained_cfg(
    config: Any, defaults: DataDefaults, default_size: int, classifier: str, fixed_input_size: bool
) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a model built from ``config`` (a :class:`~mlpvision.models.ModelConfig`).

    Args:
        config: the resolved config (its ``img_size``, ``in_chans`` and ``num_classes`` are used).
        defaults: the family's ImageNet preprocessing.
        default_size: the variant's registered input side; small variants (below 64 px) take the statistics of
            Fashion-MNIST (one channel) or CIFAR-10 (three) with no resize margin.
        classifier: the name of the classifier module (``head``, ``fc``).
        fixed_input_size: whether the model only takes ``img_size`` inputs.
    """
    if default_size < SMALL_IMAGES:
        grey = config.in_chans == 1
        mean, std = (FASHION_MNIST_MEAN, FASHION_MNIST_STD) if grey else (CIFAR10_MEAN, CIFAR10_STD)
        interpolation, crop_pct, dataset = "bilinear", 1.0, "fashion-mnist" if grey else "cifar10"
    else:
        mean, std = defaults.mean, defaults.std
        interpolation, crop_pct, dataset = defaults.interpolation, defaults.crop_pct, defaults.dataset
    return {
        "input_size": (config.in_chans, config.img_size, config.img_size),
        "fixed_input_size": fixed_input_size,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "crop_mode": "center",
        "mean": fit_channels(mean, config.in_chans),
        "std": fit_channels(std, config.in_chans),
        "num_classes": config.num_classes,
        "first_conv": defaults.first_conv,
        "classifier": classifier,
        "dataset": dataset,
    }
