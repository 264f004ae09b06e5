"""Segmentation data: scenes of Fashion-MNIST garments made in memory, and ``segfolder`` for users' own data.

``fashion-scenes``: each scene is a black canvas (64x64 by default) holding 1 to 4 garments, each at one of a few
scales (0.75, 1 and 1.25 times 28 pixels, scaled with the canvas) and at a random position that keeps it whole
on the canvas. The mask labels a pixel with the garment's class (1..10, Fashion-MNIST's class + 1) where the
garment's pixel exceeds :data:`GARMENT_THRESHOLD` (of 255), and background (0) elsewhere. Garments are pasted in
order and a later one occludes an earlier one where its pixels exceed the threshold; below the threshold the
brighter of the two pixels is kept and the label is left as it was, so a faint edge never relabels a pixel.

Every garment appears in at most one scene of a split (garments are drawn without replacement), so the
validation scenes the training engine holds out of the ``train`` scenes share no garment with the scenes it
trains on; ``train`` scenes are made of Fashion-MNIST training images only and ``test`` scenes of test images only.
:func:`fashion_scenes` also makes a ``val`` split explicitly, from a seeded held-out part of the training images.
Scenes are deterministic given (split, number, size, seed) and made in a few batched tensor operations.

``segfolder``: ``DATA_DIR/{train,val,test}/images/STEM.png`` (any image format an image folder takes) with
single-channel ``DATA_DIR/SPLIT/masks/STEM.png`` masks (grey or palette PNGs whose values are class indices,
:data:`IGNORE_INDEX` for pixels no loss or metric counts). An optional ``DATA_DIR/classes.txt`` names the classes
one per line; without it the classes are 0..the largest label in the training masks. The layout is checked when
it is loaded: every image has a mask of the same stem and size and the other way round, and every mask value is a
class or the ignore index; the first problem is one error naming the file. Files are decoded by
:func:`~mlpvision.data.decode.decode_image` (its pixel limit and EXIF orientation; masks keep their indices).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from ..errors import DataError, LimitError, brief
from ..io.files import open_regular
from .catalog import register_dataset, split_train_val
from .decode import decode_image
from .sources import FASHION_MNIST_CLASSES, FashionMNIST

__all__ = [
    "GARMENT_THRESHOLD",
    "IGNORE_INDEX",
    "SCENE_CLASSES",
    "SCENE_SIZES",
    "SceneConfig",
    "SegFolder",
    "SegmentationImages",
    "compose_scenes",
    "fashion_scenes",
    "segfolder",
    "shift_scenes",
]

GARMENT_THRESHOLD = 32  # a garment's pixel brighter than this (of 255) is labelled with its class
IGNORE_INDEX = 255  # a mask value that no loss or metric counts
SCENE_CLASSES = ("background", *FASHION_MNIST_CLASSES)
SCENE_SIZES = {"train": 10000, "val": 1000, "test": 2000}
SCENE_VAL_GARMENTS = 5000  # training images held out for the explicit "val" scenes
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are composed.

    Attributes:
        size: canvas side in pixels.
        min_objects: fewest garments in a scene.
        max_objects: most garments in a scene.
        scales: garment sides as multiples of 28 pixels on a 64-pixel canvas (scaled with the canvas).
        centred: every garment wholly inside the canvas's central box of half its side (the translation test trains
            there: a move by a quarter of the canvas keeps every garment whole).
        threshold: a garment's pixel above this (of 255) is labelled with its class.
    """

    size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    scales: tuple[float, ...] = (0.75, 1.0, 1.25)
    centred: bool = False
    threshold: int = GARMENT_THRESHOLD

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise DataError(f"scenes need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.size < 8 or max(self.sides) > self.size:
            raise DataError(f"a {self.size}-pixel canvas cannot hold garments of {max(self.sides)} pixels")
        if self.centred and max(self.sides) > self.size // 2:
            raise DataError(
                f"centred scenes keep garments inside the central {self.size // 2}-pixel box; garments of "
                f"{max(self.sides)} pixels do not fit (use smaller scales)"
            )
        if not 0 <= self.threshold < 255:
            raise DataError(f"the garment threshold must be within 0..254, got {self.threshold}")

    @property
    def sides(self) -> tuple[int, ...]:
        """The garments' sides in pixels, one per scale."""
        return tuple(max(4, round(28 * s * self.size / 64)) for s in self.scales)


class SegmentationImages(Dataset):
    """Images (N, C, H, W) uint8 with masks (N, H, W) of class indices, held in memory.

    ``dataset[i]`` is ``(image (C, H, W) uint8, mask (H, W) int64)``.
    """

    def __init__(
        self, images: torch.Tensor, masks: torch.Tensor, classes: tuple[str, ...], ignore_index: int = IGNORE_INDEX
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
            raise DataError(
                f"expected uint8 images (N, C, H, W) and masks (N, H, W), got {tuple(images.shape)} and "
                f"{tuple(masks.shape)}"
            )
        self.images, self.masks, self.classes, self.ignore_index = images, masks, classes, ignore_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i].long()


def compose_scenes(
    garments: torch.Tensor, labels: torch.Tensor, n: int, cfg: SceneConfig, seed: int
) -> SegmentationImages:
    """``n`` scenes of ``garments`` ((M, 28, 28) uint8, classes ``labels``), each garment used at most once.

    The work is a loop over garment slots and scales (at most 4 x 3 steps), each pasting one garment into
    every scene that has one in that slot at that scale at once.
    """
    g = torch.Generator().manual_seed(seed)
    count = torch.randint(cfg.min_objects, cfg.max_objects + 1, (n,), generator=g)
    total = int(count.sum())
    if total > len(garments):
        raise DataError(f"{n} scenes need {total} garments, only {len(garments)} are available")
    pick = torch.randperm(len(garments), generator=g)[:total]
    slot_garment = torch.full((n, cfg.max_objects), -1, dtype=torch.long)
    present = torch.arange(cfg.max_objects)[None, :] < count[:, None]  # (n, K)
    slot_garment[present] = pick
    scale = torch.randint(0, len(cfg.sides), (n, cfg.max_objects), generator=g)
    u = torch.rand(n, cfg.max_objects, 2, generator=g)  # where in its allowed range each garment goes
    size = cfg.size
    images = torch.zeros(n, size, size, dtype=torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    for k in range(cfg.max_objects):
        for s_index, side in enumerate(cfg.sides):
            rows = torch.nonzero(present[:, k] & (scale[:, k] == s_index)).flatten()
            if not len(rows):
                continue
            patch = garments[slot_garment[rows, k]].float()[:, None]  # (R, 1, 28, 28)
            patch = F.interpolate(patch, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            patch = patch[:, 0].round().clamp(0, 255).to(torch.uint8)  # (R, side, side)
            if cfg.centred:  # the garment wholly inside the central box of half the canvas's side
                lo = torch.full((), float(size // 4))
                hi = torch.full((), float(size // 4 + size // 2 - side))
            else:
                lo, hi = torch.zeros(()), torch.full((), float(size - side))
            top_left = (lo + u[rows, k] * (hi - lo + 1)).floor().long().clamp(0, size - side)  # (R, 2)
            ar = torch.arange(side)
            ys = (top_left[:, 0, None] + ar)[:, :, None].expand(-1, side, side)  # (R, side, side)
            xs = (top_left[:, 1, None] + ar)[:, None, :].expand(-1, side, side)
            r = rows[:, None, None].expand(-1, side, side)
            old = images[r, ys, xs]
            solid = patch > cfg.threshold
            images[r, ys, xs] = torch.where(solid, patch, torch.maximum(old, patch))
            cls = (labels[slot_garment[rows, k]] + 1).to(torch.uint8)[:, None, None].expand(-1, side, side)
            masks[r, ys, xs] = torch.where(solid, cls, masks[r, ys, xs])
    return SegmentationImages(images[:, None], masks, SCENE_CLASSES)


def fashion_scenes(
    split: str,
    n: int | None = None,
    cfg: SceneConfig = SceneConfig(),
    seed: int = 0,
    data_dir=None,
) -> SegmentationImages:
    """Scenes of one split: ``train`` and ``val`` from Fashion-MNIST's training images (``val`` from a seeded
    held-out part of them, which ``train`` scenes never use), ``test`` from its test images.

    Args:
        split: ``train``, ``val`` or ``test``.
        n: number of scenes (:data:`SCENE_SIZES` by default).
        cfg: how scenes are composed.
        seed: the scenes' seed (the split adds its own offset, so splits differ for one seed).
        data_dir: folder of the Fashion-MNIST files; the system's when None.
    """
    if split not in _SPLIT_SEEDS:
        raise DataError(f"unknown split {split!r}; choose train, val or test")
    base = _fashion_mnist(split != "test", None if data_dir is None else str(data_dir))
    images, labels = base
    if split != "test":
        train_idx, val_idx = split_train_val(len(images), SCENE_VAL_GARMENTS, seed=1234)
        keep = train_idx if split == "train" else val_idx
        images, labels = images[keep], labels[keep]
    n = SCENE_SIZES[split] if n is None else n
    return compose_scenes(images, labels, n, cfg, seed=1000 * seed + _SPLIT_SEEDS[split])


@functools.lru_cache(maxsize=2)
def _fashion_mnist(train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    fm = FashionMNIST(data_dir, train=train)
    return fm.data, fm.targets


def shift_scenes(scenes: SegmentationImages, dy: int, dx: int) -> SegmentationImages:
    """The scenes translated by (dy, dx) pixels, masks alike. Uncovered pixels are black in the images and the
    ignore index in the masks: the band the move uncovers is nobody's evidence, neither free background nor error."""
    from .tasks import shift_images

    images = shift_images(scenes.images, dy, dx)
    masks = shift_images(scenes.masks[:, None], dy, dx, fill=scenes.ignore_index)[:, 0]
    return SegmentationImages(images, masks, scenes.classes, scenes.ignore_index)


# ---------------------------------------------------------------------------------------------------- segfolder


def _read_mask(path: Path) -> np.ndarray:
    """A mask file -> (H, W) uint8 class indices (a palette PNG's indices, not its colours)."""
    array = np.asarray(decode_image(path, 1, labels=True))
    if array.max(initial=0) > 255 or array.min(initial=0) < 0:  # a 32-bit mask could hold -1 (it would wrap to 255)
        raise DataError(f"mask {path} has values outside 0..255: class indices and the ignore index are 0 to 255")
    return array.astype(np.uint8)


def _image_size(path: Path) -> tuple[int, int]:
    return decode_image(path, 1).size  # (width, height), upright


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"cannot list {folder}: {e.strerror or e}") from None
    files = {}
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.lower().endswith(IMG_EXTENSIONS):
            continue
        try:
            regular = entry.is_file()
        except OSError as e:  # a link loop, a folder it may not read
            raise DataError(f"cannot read {entry.path}: {e.strerror or e}") from None
        if not regular:
            continue
        stem = Path(entry.name).stem
        if stem in files:
            raise DataError(f"{folder} has two files with the stem {stem!r}")
        files[stem] = Path(entry.path)
    return files


MAX_CLASS_LIST_BYTES = 4 << 20


def _class_names(path: Path) -> tuple[str, ...]:
    """The class names of a ``classes.txt``, one per line: UTF-8, at most :data:`MAX_CLASS_LIST_BYTES`, each once."""
    with open_regular(path, "class list", DataError) as f:
        data = f.read(MAX_CLASS_LIST_BYTES + 1)
    if len(data) > MAX_CLASS_LIST_BYTES:
        raise LimitError(f"{path} is larger than {MAX_CLASS_LIST_BYTES} bytes: a class list names a class a line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start})") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"{path} names no classes")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path} names the class {brief(name)} twice")
        seen.add(name)
    return names


class SegFolder(Dataset):
    """A ``segfolder`` split, checked on load, decoded on access and resized to ``size`` x ``size`` (images
    bilinear, masks nearest)."""

    def __init__(
        self,
        folder: Path,
        in_chans: int,
        size: int | None,
        num_classes: int | None = None,
        ignore_index: int = IGNORE_INDEX,
        classes: tuple[str, ...] | None = None,
    ) -> None:
        images, masks = _files(folder / "images"), _files(folder / "masks")
        if not images:
            raise DataError(f"{folder / 'images'} holds no images")
        for stem, path in images.items():
            if stem not in masks:
                raise DataError(f"image {path} has no mask {folder / 'masks' / stem}.png")
        for stem, path in masks.items():
            if stem not in images:
                raise DataError(f"mask {path} has no image of the same stem in {folder / 'images'}")
        self.samples = [(images[s], masks[s]) for s in sorted(images)]
        top, labelled = 0, 0
        for image, mask in self.samples:
            m = _read_mask(mask)
            if _image_size(image) != (m.shape[1], m.shape[0]):
                raise DataError(
                    f"mask {mask} is {m.shape[1]}x{m.shape[0]} pixels but its image is {{}}x{{}}".format(
                        *_image_size(image)
                    )
                )
            labels = m[m != ignore_index]
            labelled += labels.size
            peak = int(labels.max(initial=0))
            if num_classes is not None and peak >= num_classes:
                raise DataError(
                    f"mask {mask} has the value {peak}: classes are 0..{num_classes - 1} and {ignore_index} is ignored"
                )
            top = max(top, peak)
        if not labelled:
            raise DataError(f"every pixel of every mask in {folder / 'masks'} is {ignore_index}, the ignore index: "
                            "nothing to learn or measure")  # fmt: skip
        n = num_classes if num_classes is not None else top + 1
        self.classes = classes or tuple(str(c) for c in range(n))
        self.in_chans, self.ignore_index = in_chans, ignore_index
        first = _image_size(self.samples[0][0])
        self.size = size or first[0]
        if size is None and any(_image_size(p) != first or first[0] != first[1] for p, _ in self.samples):
            raise DataError(f"{folder}: images of different or non-square sizes need --img-size")
        self._resize = v2.Resize((self.size, self.size), antialias=True)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.samples[i]
        image = v2.functional.pil_to_tensor(decode_image(image_path, self.in_chans))
        mask = torch.from_numpy(_read_mask(mask_path))[None]
        image = self._resize(image)
        mask = v2.functional.resize(mask, [self.size, self.size], v2.InterpolationMode.NEAREST_EXACT)
        return image, mask[0].long()


def segfolder(
    data_dir, split: str, in_chans: int = 3, size: int | None = None, ignore_index: int = IGNORE_INDEX
) -> SegFolder:
    """The ``split`` of a ``segfolder`` data set (the module docstring describes the layout)."""
    if data_dir is None:
        raise DataError("segfolder needs --data-dir: a folder with train/ (and val/ or test/) images/ and masks/")
    root = Path(data_dir)
    names_file = root / "classes.txt"
    classes = None
    if names_file.is_file():
        classes = _class_names(names_file)
    num_classes = len(classes) if classes else None
    if classes is None and split != "train":  # the classes are those the training masks hold
        num_classes = len(segfolder(root, "train", in_chans, size, ignore_index).classes)
    if not (root / split).is_dir():
        raise DataError(f"{root} has no {split}/ folder")
    return SegFolder(root / split, in_chans, size, num_classes, ignore_index, classes)


def _scenes_loader(train: bool, data_dir, img_size, in_chans) -> SegmentationImages:
    scenes = fashion_scenes("train" if train else "test", cfg=SceneConfig(size=img_size or 64), data_dir=data_dir)
    if in_chans not in (None, 1):
        scenes.images = scenes.images.expand(-1, in_chans, -1, -1).contiguous()
    return scenes


def _centred_scenes_loader(train: bool, data_dir, img_size, in_chans) -> SegmentationImages:
    # one or two garments at the two smaller scales, wholly inside the central box: room to move them whole
    cfg = SceneConfig(size=img_size or 64, max_objects=2, scales=(0.75, 1.0), centred=True)
    scenes = fashion_scenes("train" if train else "test", cfg=cfg, data_dir=data_dir)
    if in_chans not in (None, 1):
        scenes.images = scenes.images.expand(-1, in_chans, -1, -1).contiguous()
    return scenes


def _segfolder_loader(train: bool, data_dir, img_size, in_chans) -> SegFolder:
    split = "train" if train else ("test" if Path(data_dir or ".", "test").is_dir() else "val")
    return segfolder(data_dir, split, in_chans or 3, img_size)


# the scenes' statistics are those of the default training scenes (a test recomputes them)
register_dataset("fashion-scenes", _scenes_loader, (0.1182,), (0.2609,))
# centred scenes (every garment inside the central box: the translation test trains and tests there, and
# moves the test scenes) are normalised with the default scenes' statistics, so a shift changes nothing else
register_dataset("fashion-scenes-centred", _centred_scenes_loader, (0.1182,), (0.2609,))
register_dataset("segfolder", _segfolder_loader)
