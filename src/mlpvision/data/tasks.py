"""Controlled data sets that isolate one inductive bias each (the lab's probes).

- ``fashion-mnist-permuted`` (likewise ``cifar10-permuted``, ``cifar100-permuted``): the data set with one fixed
  random permutation of the pixel positions applied to every image of both splits (all channels alike).
  Neighbouring pixels are no longer related, so a local prior stops helping; a plain MLP, which never had one,
  learns exactly as well as before.
- ``position-task``: one shape on a noisy background; the label is the quadrant that holds it. The shape keeps
  3 pixels away from the border, so nothing local reveals where it is: only a model that knows absolute
  position (FC layers do by construction) can solve it.
- ``global-task``: four 7x7 striped patches in the corners, two with horizontal and two with vertical stripes;
  the label is whether the top-left and bottom-right patches match. Every image holds the same multiset of
  patches, so features pooled over the image say little (only units that also see the zero-padded border, one
  pixel away, can tell the corners apart): the model must relate two regions ~20 pixels apart.
All are deterministic given the split (seeded); the synthetic two are uint8 28x28x1.
"""

from __future__ import annotations

import functools

import torch

from .catalog import TensorImages, get_source, load_split, register_dataset

__all__ = [
    "CANVAS_MARGIN",
    "PERMUTABLE",
    "TASKS",
    "class_split",
    "global_task",
    "load_task",
    "on_canvas",
    "on_random_canvas",
    "patch_shuffle_permutation",
    "patch_shuffled",
    "permute_pixels",
    "permuted",
    "pixel_permutation",
    "position_task",
    "shift_images",
]

TASKS = ("position-task", "global-task")  # synthetic; the "-permuted" data sets are built by ``permuted``
PERMUTABLE = ("fashion-mnist", "cifar10", "cifar100")  # each has a "-permuted" twin
TASK_SIZES = {"train": 12000, "test": 2000}
MARGIN = 3  # pixels between a shape and the image border
CANVAS_MARGIN = 4  # zero padding of the "-canvas" data sets (the translation probe shifts up to this far)


def pixel_permutation(num_pixels: int, seed: int = 0) -> torch.Tensor:
    """The fixed permutation of ``num_pixels`` pixel positions used by the ``-permuted`` data sets."""
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


def permute_pixels(images: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> the same images with their H*W pixel positions reordered by ``perm``."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)


def shift_images(images: torch.Tensor, dy: int, dx: int, fill: float = 0.0) -> torch.Tensor:
    """Translates a batch (N, C, H, W) by (dy, dx) pixels; uncovered pixels get ``fill``."""
    out = torch.full_like(images, fill)
    h, w = images.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = images[..., ys, xs]
    return out


def _noise(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 60, (n, 1, size, size), generator=g, dtype=torch.uint8)


def _shape(kind: int, side: int) -> torch.Tensor:
    """A ``side x side`` uint8 mask: 0 filled square, 1 hollow square, 2 plus sign."""
    m = torch.zeros(side, side, dtype=torch.bool)
    if kind == 0:
        m[:] = True
    elif kind == 1:
        m[[0, -1], :] = True
        m[:, [0, -1]] = True
    else:
        m[side // 2 - 1 : side // 2 + 1, :] = True
        m[:, side // 2 - 1 : side // 2 + 1] = True
    return m


def position_task(n: int, seed: int, size: int = 28) -> TensorImages:
    """Label = the quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) holding the shape."""
    g = torch.Generator().manual_seed(seed)
    images = _noise(n, size, g)
    labels = torch.randint(0, 4, (n,), generator=g)
    half = size // 2
    for i in range(n):
        side = int(torch.randint(5, 9, (), generator=g))
        mask = _shape(int(torch.randint(0, 3, (), generator=g)), side)
        row, col = divmod(int(labels[i]), 2)
        lo_y, hi_y = (MARGIN, half - side) if row == 0 else (half, size - MARGIN - side)
        lo_x, hi_x = (MARGIN, half - side) if col == 0 else (half, size - MARGIN - side)
        y = int(torch.randint(lo_y, hi_y + 1, (), generator=g))
        x = int(torch.randint(lo_x, hi_x + 1, (), generator=g))
        images[i, 0, y : y + side, x : x + side][mask] = 220
    return TensorImages(images, labels, ("top-left", "top-right", "bottom-left", "bottom-right"))


def _stripes(horizontal: bool, side: int) -> torch.Tensor:
    idx = torch.arange(side)
    lines = (idx % 2 == 0)[:, None].expand(side, side)
    return lines if horizontal else lines.T


def global_task(n: int, seed: int, size: int = 28, side: int = 7) -> TensorImages:
    """Label 1 when the top-left and bottom-right patches have the same stripes, else 0.

    Corners hold two horizontal and two vertical patches in every image: if the main diagonal matches, the
    other diagonal holds the other orientation twice; otherwise each diagonal holds one of each.
    """
    g = torch.Generator().manual_seed(seed)
    images = _noise(n, size, g)
    labels = torch.randint(0, 2, (n,), generator=g)
    corners = [(1, 1), (1, size - 1 - side), (size - 1 - side, 1), (size - 1 - side, size - 1 - side)]  # TL TR BL BR
    for i in range(n):
        tl = bool(torch.randint(0, 2, (), generator=g))
        if labels[i]:  # TL == BR, the off-diagonal holds the other orientation twice
            kinds = [tl, not tl, not tl, tl]
        else:  # TL != BR, the off-diagonal holds one of each, in random order
            tr = bool(torch.randint(0, 2, (), generator=g))
            kinds = [tl, tr, not tr, not tl]
        for (y, x), horizontal in zip(corners, kinds, strict=True):
            images[i, 0, y : y + side, x : x + side][_stripes(horizontal, side)] = 220
    return TensorImages(images, labels, ("different", "same"))


def patch_shuffle_permutation(size: int, patch: int = 4, seed: int = 0) -> torch.Tensor:
    """The pixel order of the patch + pixel shuffle: one fixed permutation of the ``patch`` x ``patch`` patches of a
    ``size`` x ``size`` image, and one fixed permutation of the pixels inside every patch (the same in all)."""
    g = torch.Generator().manual_seed(seed)
    grid = size // patch
    patches = torch.randperm(grid * grid, generator=g)  # target patch t takes source patch patches[t]
    inside = torch.randperm(patch * patch, generator=g)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    t_patch = (ys // patch) * grid + xs // patch
    t_inside = (ys % patch) * patch + xs % patch
    src_patch, src_inside = patches[t_patch], inside[t_inside]
    sy = (src_patch // grid) * patch + src_inside // patch
    sx = (src_patch % grid) * patch + src_inside % patch
    return (sy * size + sx).flatten()


def patch_shuffled(base: TensorImages, patch: int = 4) -> TensorImages:
    """``base`` with the fixed patch + pixel shuffle applied to every image."""
    perm = patch_shuffle_permutation(base.images.shape[-1], patch)
    return TensorImages(permute_pixels(base.images, perm), base.labels, base.classes)


def on_canvas(base: TensorImages, margin: int = CANVAS_MARGIN) -> TensorImages:
    """``base`` zero-padded by ``margin`` pixels on every side: a shift of up to ``margin`` never cuts the object."""
    images = torch.nn.functional.pad(base.images, (margin,) * 4)
    return TensorImages(images, base.labels, base.classes)


def on_random_canvas(base: TensorImages, margin: int = CANVAS_MARGIN, seed: int = 0) -> TensorImages:
    """``base`` on the canvas of :func:`on_canvas`, each image moved by its own random offset of up to ``margin``
    pixels in each direction (seeded: image i of a split always sits at the same place), never cut."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * margin + 1, (len(base.images), 2), generator=g)
    n, c, h, w = base.images.shape
    images = torch.zeros(n, c, h + 2 * margin, w + 2 * margin, dtype=base.images.dtype)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        images[i, :, dy : dy + h, dx : dx + w] = base.images[i]
    return TensorImages(images, base.labels, base.classes)


def class_split(base: TensorImages, classes: range) -> TensorImages:
    """The images of ``classes`` only, relabelled 0, 1, ... in that order (a new task on part of a data set)."""
    keep = torch.isin(base.labels, torch.tensor(list(classes)))
    labels = base.labels[keep] - classes.start
    return TensorImages(base.images[keep], labels, tuple(base.classes[c] for c in classes))


def permuted(base: TensorImages) -> TensorImages:
    """``base`` with the fixed pixel permutation of its image size applied to every image."""
    perm = pixel_permutation(base.images.shape[-2] * base.images.shape[-1])
    return TensorImages(permute_pixels(base.images, perm), base.labels, base.classes)


def load_task(name: str, train: bool) -> TensorImages:
    """The ``train`` or test split of one of the synthetic :data:`TASKS` (a fresh copy each call)."""
    base = _task(name, train)
    return TensorImages(base.images.clone(), base.labels.clone(), base.classes)


@functools.lru_cache(maxsize=2 * len(TASKS))  # made once per process: 12 000 images take about a second
def _task(name: str, train: bool) -> TensorImages:
    split = "train" if train else "test"
    seed = {"train": 0, "test": 1}[split] + (100 if name == "global-task" else 0)
    make = position_task if name == "position-task" else global_task
    return make(TASK_SIZES[split], seed)


def _derived_loader(base: str, derive, resize: bool = True):
    """Loads ``base`` and derives a data set from it; ``resize``: at the asked size (else at its own)."""

    def load(train: bool, data_dir, img_size, in_chans) -> TensorImages:
        split = "train" if train else "test"
        return derive(load_split(base, split, data_dir, img_size if resize else None, in_chans)[0])

    return load


def _translated_loader(base: str):
    def load(train: bool, data_dir, img_size, in_chans) -> TensorImages:
        split = "train" if train else "test"
        return on_random_canvas(load_split(base, split, data_dir, None, in_chans)[0], seed=0 if train else 1)

    return load


for _base in PERMUTABLE:
    _source = get_source(_base)
    # the pixel statistics of a permutation stay the base's; a canvas is mostly zero padding, its own statistics
    # would differ, but normalising it as the base keeps the object's pixels where a model trained on the base
    # expects them
    register_dataset(f"{_base}-permuted", _derived_loader(_base, permuted), _source.mean, _source.std)
    register_dataset(f"{_base}-patchshuffle", _derived_loader(_base, patch_shuffled), _source.mean, _source.std)
    register_dataset(f"{_base}-canvas", _derived_loader(_base, on_canvas, resize=False), _source.mean, _source.std)
    register_dataset(
        f"{_base}-translated", _translated_loader(_base), _source.mean, _source.std
    )  # objects placed at random on the canvas: a different draw for the training and the test split
_fm = get_source("fashion-mnist")
register_dataset(
    "fashion-mnist-first5", _derived_loader("fashion-mnist", lambda d: class_split(d, range(5))), _fm.mean, _fm.std
)
register_dataset(
    "fashion-mnist-last5", _derived_loader("fashion-mnist", lambda d: class_split(d, range(5, 10))), _fm.mean, _fm.std
)
for _name in TASKS:
    register_dataset(_name, lambda train, *_, name=_name: load_task(name, train))
