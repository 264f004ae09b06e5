"""Data for a trained model: its test (or training) split ready to evaluate, and image files prepared the way the
model was trained (size, channels, normalisation), read from what the model file records."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import torch

from ..errors import CheckpointError, DataError, LimitError, MlpVisionError
from ..io import CONFIG_KEY, MODEL_NAME_KEY, file_metadata, saved_data
from ..io.files import parse_json
from ..limits import current as current_limits
from ..models import resolve_config
from .augment import Augmented, build_transform
from .catalog import DataInfo, load_split
from .decode import decode_image
from .preprocess import DataConfig, create_transform, resolve_data_config
from .sources import ImageFiles

__all__ = [
    "calibration_images",
    "evaluation_set",
    "input_warnings",
    "model_input",
    "normalize",
    "plain_split",
    "read_image",
    "read_images",
    "segmentation_evaluation_set",
]


def plain_split(
    name: str, split: str = "test", data_dir=None, img_size: int | None = None, in_chans: int | None = None
) -> tuple[Augmented, DataInfo]:
    """The ``train`` or ``test`` split of data set ``name``, converted and normalised, without augmentation; at
    ``img_size`` and ``in_chans`` when given (image folders are decoded so, in-memory images resized)."""
    raw, info = load_split(name, split, data_dir, img_size, in_chans)
    return Augmented(raw, None, build_transform(info, None)), info


def model_input(model_file: str | os.PathLike) -> tuple[int | None, int | None]:
    """The input side and channels a model file's stored config records, or (None, None) when it records none."""
    meta = file_metadata(model_file)
    name = meta.get(MODEL_NAME_KEY)
    if name is None:
        return None, None
    config = parse_json(meta.get(CONFIG_KEY, "{}"), f"{model_file}: the stored config", CheckpointError)
    if not isinstance(config, dict):
        raise CheckpointError(f"{model_file}: the config stored in the file is not a mapping of option: value")
    try:
        cfg = resolve_config(name, **config)
    except MlpVisionError as e:
        raise CheckpointError(f"{model_file}: {e}") from None
    return cfg.img_size, cfg.in_chans


def evaluation_set(
    model_file: str | os.PathLike, data: str | None = None, data_dir=None, split: str = "test"
) -> tuple[Augmented, DataInfo]:
    """The split to evaluate a model file on: ``data`` when given, else the data set the file records having been
    trained on (Fashion-MNIST for a file that records none).

    A file trained here is evaluated on images prepared as in its training (its data set's normalisation). A file
    that records no normalisation (converted or plain weights) gets its ``pretrained_cfg``'s: image files resized
    to size / crop_pct with its interpolation and centre-cropped, then standardised with its mean and std.
    """
    saved = saved_data(model_file)
    name = data or saved.get("name") or "fashion-mnist"
    split = "train" if split == "train" else "test"
    if saved.get("mean"):
        img_size, in_chans = model_input(model_file)
        return plain_split(name, split, data_dir, img_size, in_chans)
    cfg = resolve_data_config(model_file=model_file)
    in_chans, size = cfg.input_size[0], cfg.input_size[-1]
    raw, info = load_split(name, split, data_dir, size, in_chans)
    if isinstance(raw, ImageFiles):
        raw.set_preprocessing(create_transform(replace(cfg, input_size=(in_chans, size, size)), normalize=False))
    if info.in_chans == len(cfg.mean):
        info = replace(info, mean=cfg.mean, std=cfg.std)
    return Augmented(raw, None, build_transform(info, None)), info


def segmentation_evaluation_set(
    model_file: str | os.PathLike,
    img_size: int,
    in_chans: int,
    data: str | None = None,
    data_dir=None,
    split: str = "test",
) -> tuple[Augmented, DataInfo, int]:
    """The split a segmentation model file is evaluated on, at the model's input size and channels, normalised as
    its training images were; also the data set's ignore index.

    Scenes are made at the model's size; a ``segfolder`` is resized to it (images bilinear, masks nearest).
    """
    saved = saved_data(model_file)
    name = data or saved.get("name") or "fashion-scenes"
    raw, info = load_split(name, "train" if split == "train" else "test", data_dir, img_size, in_chans)
    if saved.get("mean") and len(saved["mean"]) == info.in_chans:
        info = replace(info, mean=tuple(saved["mean"]), std=tuple(saved["std"]))
    return Augmented(raw, None, build_transform(info, None)), info, getattr(raw, "ignore_index", 255)


def read_images(
    paths: Sequence[str | os.PathLike],
    img_size: int,
    in_chans: int,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
) -> torch.Tensor:
    """Image files -> a float batch (B, in_chans, img_size, img_size) in [0, 1]: grey or RGB as the model takes,
    the shorter side resized to img_size / crop_pct (``interpolation``), then centre-cropped to the input size.

    Raises:
        DataError: a file that is not a readable image (see :func:`~mlpvision.data.decode.decode_image`).
        LimitError: an image of more pixels than ``limits.max_pixels``.
    """
    cfg = DataConfig((in_chans, img_size, img_size), (0.0,) * in_chans, (1.0,) * in_chans, interpolation, crop_pct)
    prep = create_transform(cfg, normalize=False)
    limit, side = current_limits().max_pixels, img_size / crop_pct

    def read(path) -> torch.Tensor:
        image = decode_image(path, in_chans)
        w, h = image.size
        resized = round(w * side / min(w, h)) * round(h * side / min(w, h))  # before the centre crop
        if resized > limit:  # a sliver of an image: its long side would grow past the limit
            raise LimitError(
                f"{path}: a {w}x{h} image, whose shorter side resized to {side:.0f} would make {resized} pixels, "
                f"more than the limit of {limit} (--max-pixels)"
            )
        return prep(image)

    return torch.stack([read(path) for path in paths])


def read_image(path: str | os.PathLike, in_chans: int) -> torch.Tensor:
    """An image file at its own size -> a float image (in_chans, H, W) in [0, 1], grey or RGB as the model takes
    (for sliding-window segmentation). Errors as :func:`read_images`'."""
    from torchvision.transforms import v2

    return v2.functional.to_dtype(v2.functional.to_image(decode_image(path, in_chans)), torch.float32, scale=True)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> normalised with a training set's per-channel mean and std."""
    shape = (1, -1, 1, 1)
    return (images - torch.tensor(list(mean)).reshape(shape)) / torch.tensor(list(std)).reshape(shape)


def calibration_images(model_file: str | os.PathLike, n: int, data_dir=None, seed: int = 0) -> torch.Tensor:
    """``n`` training images (seeded, normalised) of the data set a model file records, for int8 calibration.

    Training images, never test images: the test split stays unseen by everything that shapes the deployed model.
    """
    if n < 1:
        raise DataError(f"--calibration-images must be at least 1, got {n}")
    train, _ = evaluation_set(model_file, None, data_dir, "train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([train[int(i)][0] for i in idx])


# How far an image may be from a training set before a prediction on it is flagged: per-image mean and spread
# after normalisation (the training set has 0 and 1 over all its pixels; Fashion-MNIST's test images lie within
# -0.73..1.21 and 0.20..1.32), and, for grey data sets with dark backgrounds, the brightness of the image's border.
TYPICAL_MEAN, TYPICAL_SPREAD, DARK_BORDER = (-1.0, 1.5), (0.1, 1.6), 0.6


def input_warnings(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> list[str]:
    """Why a model trained on images with statistics (``mean``, ``std``) may misread ``image`` ((C, H, W) in
    [0, 1]): a light background where the training images are light on black, or statistics far from theirs."""
    warnings = []
    if image.shape[0] == 1 and mean[0] < 0.35:  # a grey data set of light objects on a dark background
        frame = torch.ones_like(image, dtype=torch.bool)
        frame[:, 2:-2, 2:-2] = False  # the two outermost rows and columns
        if image[frame].mean() > DARK_BORDER:
            warnings.append("its background is light, the training images are light objects on black: try --invert")
    z = normalize(image[None], mean, std)
    m, s = z.mean().item(), z.std(correction=0).item()  # of the pixels themselves (one pixel has spread 0)
    if not (TYPICAL_MEAN[0] <= m <= TYPICAL_MEAN[1] and TYPICAL_SPREAD[0] <= s <= TYPICAL_SPREAD[1]):
        warnings.append(
            f"it is far from the training images (mean {m:.2f} and spread {s:.2f} after normalisation, where "
            "theirs are 0 and 1): the prediction may mean little"
        )
    return warnings
