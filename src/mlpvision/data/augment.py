"""Training-time augmentation whose randomness depends only on (seed, epoch, index): batched crop / flip / random
erasing for small in-memory images, torchvision's v2 transforms for the rest; evaluation only normalises."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import DataError
from ..fields import check_config, option
from .catalog import DataInfo

__all__ = ["AugmentConfig", "Augmented", "BatchCropFlip", "build_transform", "training_set"]


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; evaluation only converts and normalises."""

    crop_padding: int = option(0, ge=0, le=1024)  # random crop after zero padding by this many pixels (0: off)
    hflip: float = option(0.0, ge=0, le=1)  # probability of a horizontal flip
    auto_augment: str = option("none", choices=("none", "randaugment", "trivialaugment"))  # a random policy of
    # torchvision's
    random_erasing: float = option(0.0, ge=0, le=1)  # probability of erasing a random rectangle
    mixup: float = option(0.0, ge=0, le=100)  # MixUp alpha (0: off)
    cutmix: float = option(0.0, ge=0, le=100)  # CutMix alpha (0: off)

    def __post_init__(self) -> None:
        check_config(self, "augmentation option(s)")


def build_transform(info: DataInfo, aug: AugmentConfig | None) -> v2.Compose:
    """uint8 (C, H, W) -> normalised float32, with ``aug`` applied when given (training)."""
    ops: list = []
    if aug is not None:
        if aug.crop_padding:
            ops.append(v2.RandomCrop(info.img_size, padding=aug.crop_padding))
        if aug.hflip:
            ops.append(v2.RandomHorizontalFlip(aug.hflip))
        if aug.auto_augment == "randaugment":
            ops.append(v2.RandAugment())
        elif aug.auto_augment == "trivialaugment":
            ops.append(v2.TrivialAugmentWide())
        elif aug.auto_augment != "none":
            raise DataError(f"auto_augment must be none, randaugment or trivialaugment, got {aug.auto_augment!r}")
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    if aug is not None and aug.random_erasing:
        ops.append(v2.RandomErasing(aug.random_erasing))
    return v2.Compose(ops)


class BatchCropFlip:
    """Random crop (after zero padding), horizontal flip and random erasing for a whole batch at once.

    The parameters of every image are drawn once per epoch from (seed, epoch) and looked up by image index, so
    the result is the same whatever the batch composition, the number of processes, or a resume. On small
    images this is an order of magnitude faster than per-image transforms.
    """

    # random erasing as torchvision's RandomErasing draws it: area fraction and log aspect ratio uniform in these
    # ranges, the rectangle clipped to the image (torchvision redraws instead), filled with 0 after normalisation
    ERASE_SCALE = (0.02, 0.33)
    ERASE_RATIO = (0.3, 3.3)

    def __init__(self, info: DataInfo, aug: AugmentConfig, n: int, seed: int) -> None:
        self.padding, self.hflip, self.n, self.seed = aug.crop_padding, aug.hflip, n, seed
        self.erasing = aug.random_erasing
        self.mean = torch.tensor(info.mean).reshape(1, -1, 1, 1)
        self.std = torch.tensor(info.std).reshape(1, -1, 1, 1)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.dy = torch.randint(0, 2 * self.padding + 1, (self.n,), generator=g)
        self.dx = torch.randint(0, 2 * self.padding + 1, (self.n,), generator=g)
        self.flip = torch.rand(self.n, generator=g) < self.hflip
        if self.erasing:
            self.erase = torch.rand(self.n, generator=g) < self.erasing
            self.erase_u = torch.rand(self.n, 4, generator=g)  # area, aspect ratio, top, left

    def _erase_mask(self, idx: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, 1, H, W) True where the images at ``idx`` are erased."""
        u = self.erase_u[idx]
        lo, hi = self.ERASE_SCALE
        area = (lo + (hi - lo) * u[:, 0]) * h * w
        log_lo, log_hi = math.log(self.ERASE_RATIO[0]), math.log(self.ERASE_RATIO[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        eh = (area * ratio).sqrt().round().clamp(1, h).long()
        ew = (area / ratio).sqrt().round().clamp(1, w).long()
        top = (u[:, 2] * (h - eh + 1)).long()
        left = (u[:, 3] * (w - ew + 1)).long()
        rows, cols = torch.arange(h), torch.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
        mask = in_rows[:, :, None] & in_cols[:, None, :] & self.erase[idx][:, None, None]
        return mask[:, None]

    def __call__(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) images at dataset positions ``idx`` -> augmented, normalised float32."""
        b, _, h, w = images.shape
        p = self.padding
        if p or self.hflip:
            padded = torch.nn.functional.pad(images, (p, p, p, p))
            rows = self.dy[idx][:, None] + torch.arange(h)  # (B, H) source rows
            cols = self.dx[idx][:, None] + torch.arange(w)  # (B, W) source columns
            cols = torch.where(self.flip[idx][:, None], cols.flip(1), cols)
            batch = torch.arange(b)[:, None, None]
            images = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        out = (images.float().div_(255) - self.mean) / self.std
        if self.erasing:
            out.masked_fill_(self._erase_mask(idx, h, w), 0.0)
        return out


class Augmented(Dataset):
    """A subset of a data set with a transform whose randomness depends only on (seed, epoch, index).

    Every image gets the same augmentation whatever the number of workers or processes and after a resume,
    which is what makes interrupted and distributed runs reproduce uninterrupted single-process ones.
    With ``batch_aug`` the items are raw uint8 images and the training loop applies ``batch_aug`` per batch.
    """

    def __init__(
        self,
        base: Dataset,
        indices: torch.Tensor | None,
        transform,
        seed: int = 0,
        random: bool = False,
        batch_aug: BatchCropFlip | None = None,
    ) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0
        self.random, self.batch_aug = random, batch_aug
        self.indices = indices if indices is not None else torch.arange(len(base))

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.batch_aug is not None:
            self.batch_aug.set_epoch(epoch)

    @property
    def labels(self) -> torch.Tensor:
        return self.base.labels[self.indices]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.base[int(self.indices[i])]
        if self.batch_aug is not None:
            return img, label
        if not self.random:
            return self.transform(img), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
            return self.transform(img), label


def training_set(base: Dataset, indices: torch.Tensor, info: DataInfo, aug: AugmentConfig, seed: int) -> Augmented:
    """The augmented training set: batched crop/flip/erasing when that is all ``aug`` asks for, else per-image."""
    if aug.auto_augment == "none":
        return Augmented(base, indices, None, seed, batch_aug=BatchCropFlip(info, aug, len(indices), seed))
    return Augmented(base, indices, build_transform(info, aug), seed, random=True)
