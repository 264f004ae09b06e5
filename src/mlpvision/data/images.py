"""Data for a trained model: its test (or training) split ready to evaluate, and image files prepared the way the
model was trained (size, channels, normalisation), read from what the model file records."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from ..errors import DataError
from ..io import saved_data
from .augment import Augmented, build_transform
from .catalog import DataInfo, load_split

__all__ = ["evaluation_set", "load_images", "plain_split"]

MAX_PIXELS = 64 * 2**20  # larger images are refused before they are decoded (a "decompression bomb")


def plain_split(name: str, split: str = "test", data_dir=None) -> tuple[Augmented, DataInfo]:
    """The ``train`` or ``test`` split of data set ``name``, converted and normalised, without augmentation."""
    raw, info = load_split(name, split, data_dir)
    return Augmented(raw, None, build_transform(info, None)), info


def evaluation_set(
    model_file: str | os.PathLike, data: str | None = None, data_dir=None, split: str = "test"
) -> tuple[Augmented, DataInfo]:
    """The split to evaluate a model file on: ``data`` when given, else the data set the file records having been
    trained on (Fashion-MNIST for a file that records none)."""
    name = data or saved_data(model_file).get("name") or "fashion-mnist"
    return plain_split(name, "train" if split == "train" else "test", data_dir)


def load_images(
    paths: Sequence[str | os.PathLike],
    img_size: int,
    in_chans: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Image files -> a normalised float batch (B, in_chans, img_size, img_size): grey or RGB as the model takes,
    resized (shorter side) and centre-cropped to its input size, then normalised with its training statistics.

    Raises:
        DataError: a file that is not a readable image, or one too large to decode safely.
    """
    prep = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(img_size, antialias=True),
            v2.CenterCrop(img_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
    mode = "L" if in_chans == 1 else "RGB"
    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(
                        f"image {path} is {img.width}x{img.height} pixels, more than the {MAX_PIXELS >> 20} M "
                        "pixels mlpvision decodes"
                    )
                images.append(prep(img.convert(mode)))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {path}: {e}") from None
    return torch.stack(images)
