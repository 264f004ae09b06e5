"""The catalogue of data sets: each registers a loader under its name, and :func:`load_split` returns the raw
``train`` or ``test`` split of any of them (uint8 images, no augmentation) with its :class:`DataInfo`.

Sources register themselves when :mod:`mlpvision.data` is imported (Fashion-MNIST, CIFAR, image folders and
synthetic data in ``sources``, the lab's probes in ``tasks``); the catalogue knows none of them by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import DataError

__all__ = [
    "DataInfo",
    "DataSource",
    "TensorImages",
    "dataset_names",
    "get_source",
    "load_split",
    "register_dataset",
    "seeded_subset",
    "split_train_val",
]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a data set."""

    name: str
    num_classes: int
    in_chans: int
    img_size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


class TensorImages(Dataset):
    """Images held in memory as a uint8 tensor (N, C, H, W) with integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise DataError(f"expected uint8 images (N, C, H, W) and N labels, got {tuple(images.shape)}")
        if labels.is_floating_point() or labels.is_complex():
            raise DataError(f"labels must be whole numbers (class indices), got {labels.dtype}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise DataError(f"label {bad} is out of range: {len(classes)} classes take labels 0..{len(classes) - 1}")
        self.images, self.labels, self.classes = images, labels.long(), classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


# load(train, data_dir, img_size, in_chans) -> a data set of (uint8 image (C, H, W), label) with ``classes``
Loader = Callable[[bool, "str | os.PathLike | None", "int | None", "int | None"], Dataset]


@dataclass(frozen=True)
class DataSource:
    """A registered data set: how to load a split, and the training set's normalisation statistics."""

    name: str
    load: Loader
    mean: tuple[float, ...] | None = None  # None: 0.5 per channel
    std: tuple[float, ...] | None = None  # None: 0.25 per channel


_SOURCES: dict[str, DataSource] = {}


def register_dataset(
    name: str, load: Loader, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> DataSource:
    """Adds a data set to the catalogue; a name can be registered only once."""
    if name in _SOURCES:
        raise ValueError(f"data set {name!r} is already registered")
    _SOURCES[name] = source = DataSource(name, load, mean, std)
    return source


def dataset_names() -> tuple[str, ...]:
    """Every registered data set, in registration order."""
    return tuple(_SOURCES)


def get_source(name: str) -> DataSource:
    """The registered source of ``name``; an unknown name is a :class:`DataError` listing the known ones."""
    if name not in _SOURCES:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(_SOURCES)}")
    return _SOURCES[name]


def load_split(
    name: str, split: str, data_dir=None, img_size: int | None = None, in_chans: int | None = None
) -> tuple[Dataset, DataInfo]:
    """The raw ``train`` or ``test`` split of a data set (uint8 images, no augmentation) and its :class:`DataInfo`.

    ``img_size`` resizes in-memory images (bilinear, antialiased) when it differs from the data set's own size;
    image folders are decoded at ``img_size`` and ``in_chans``.
    """
    source = get_source(name)
    ds = source.load(split == "train", data_dir, img_size, in_chans)
    if isinstance(ds, TensorImages) and img_size is not None and img_size != ds.images.shape[-1]:
        # train or fine-tune at another resolution: resize every image once, in memory
        ds.images = v2.functional.resize(ds.images, [img_size, img_size], antialias=True)
    first = ds[0][0]  # (C, H, W)
    chans = first.shape[0]
    mean, std = source.mean or (0.5,) * chans, source.std or (0.25,) * chans
    info = DataInfo(name, len(ds.classes), chans, first.shape[-1], tuple(ds.classes), mean, std)
    return ds, info


def seeded_subset(indices: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` of ``indices`` drawn at random from ``seed``, in the drawn order."""
    return indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))[:n]]


def split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into train and held-out validation indices (each sorted)."""
    if not 0 <= val_size < n:
        raise DataError(f"validation size {val_size} must be between 0 and the {n} training images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values
