"""Prediction: a model file classifies image files, prepared as it was trained (size, channels, normalisation);
and the demo job, a freshly built small model classifying a few Fashion-MNIST test images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data import (
    FashionMNIST,
    get_source,
    input_warnings,
    normalize,
    read_image,
    read_images,
    resolve_data_config,
)
from ..data.decode import image_size
from ..errors import ConfigError, LimitError
from ..io import saved_data
from ..limits import current as current_limits
from ..models import create_model
from .ort import model_device, open_model_file

__all__ = [
    "FilePrediction",
    "Prediction",
    "SegmentedFile",
    "classify_samples",
    "mask_colours",
    "predict_files",
    "predict_images",
    "segment_files",
    "slide_logits",
    "slide_mask",
]


@torch.no_grad()
def predict_images(model: nn.Module, images: torch.Tensor, top_k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k probabilities and class indices for a batch of normalised images."""
    model.eval()
    probs = model(images).softmax(dim=-1)
    return probs.topk(min(top_k, probs.shape[-1]), dim=-1)


@dataclass(frozen=True)
class FilePrediction:
    path: str
    guesses: list[tuple[str, float]]  # (class name, probability), most probable first
    warnings: list[str]  # why the model may misread this image (see mlpvision.data.input_warnings)


def predict_files(
    model_file: str | os.PathLike,
    paths: Sequence[str],
    top_k: int = 3,
    invert: bool = False,
    device: str | torch.device | None = None,
    model=None,
) -> list[FilePrediction]:
    """Classifies image files with a model file (``.safetensors``, or ONNX in float32 or int8), using the classes
    and normalisation it records.

    Each image is prepared as the training images were: grey or colour, resized and centre-cropped to the model's
    input, normalised with the training set's statistics; a file that records none (converted or plain weights) is
    prepared as its ``pretrained_cfg`` says (resize to size / crop_pct, centre crop, its mean and std). ``invert``
    turns dark-on-light pictures into the light-on-dark form of Fashion-MNIST first. ``device``: auto, cpu or cuda
    (PyTorch model files). ``model``: the file already opened (:func:`~mlpvision.deploy.open_model_file`).
    """
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    model = model if model is not None else open_model_file(model_file, device)
    if getattr(model, "dense", False):
        raise ConfigError(f"{model_file} is a segmentation model (a label per pixel): segment images with it")
    saved = saved_data(model_file)
    classes = saved.get("classes") or [str(i) for i in range(model.num_classes)]
    if len(classes) != model.num_classes:
        raise ConfigError(f"{model_file} names {len(classes)} classes but predicts {model.num_classes}")
    data_cfg = resolve_data_config(model, model_file)  # the file's training normalisation, else its pretrained_cfg
    mean, std = data_cfg.mean, data_cfg.std
    images = read_images(paths, model.img_size, model.in_chans, data_cfg.interpolation, data_cfg.crop_pct)
    if invert:
        images = 1.0 - images
    where = model_device(model)
    probs, idx = predict_images(model, normalize(images, mean, std).to(where), top_k)
    probs, idx = probs.cpu(), idx.cpu()
    return [
        FilePrediction(
            str(path), [(classes[int(c)], float(q)) for q, c in zip(p, i, strict=True)], input_warnings(x, mean, std)
        )
        for path, x, p, i in zip(paths, images, probs, idx, strict=True)
    ]


def mask_colours(num_classes: int) -> torch.Tensor:
    """A fixed colour per class, (num_classes, 3) uint8: class 0 (background) black, the others spread over the hue
    circle at full saturation, consecutive classes far apart."""
    import colorsys

    colours = [(0, 0, 0)]
    for c in range(1, num_classes):
        hue = ((c - 1) * 0.381966) % 1.0  # the golden-ratio step keeps neighbouring classes apart
        colours.append(tuple(round(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.85, 1.0)))
    return torch.tensor(colours, dtype=torch.uint8)


@dataclass(frozen=True)
class SegmentedFile:
    path: str
    mask_png: str  # the predicted classes, one colour each (mask_colours)
    overlay_png: str  # the image with the coloured mask blended over its objects
    shares: list[tuple[str, float]]  # (class, share of the pixels), largest first, background included
    warnings: list[str]


@torch.no_grad()
def segment_files(
    model_file: str | os.PathLike,
    paths: Sequence[str],
    out_dir: str | os.PathLike,
    invert: bool = False,
    device: str | torch.device | None = None,
    model=None,
    slide: bool = False,
    stride: int | None = None,
) -> list[SegmentedFile]:
    """Segments image files with a segmentation model file (``.safetensors`` or ONNX); writes ``STEM_mask.png`` and
    ``STEM_overlay.png`` for each into ``out_dir``. Images are prepared as for classification (resized and
    centre-cropped to the model's input, normalised as its training images); the masks are at the model's input
    size. With ``slide`` each image is segmented at its own size instead, in windows of the model's input every
    ``stride`` pixels (:func:`slide_logits`), and its mask is the image's size: the choice for images larger than
    the input, and for models of one input size (Mixer, ResMLP), whose objects should then appear at the scale
    they were trained at. ``device``: auto, cpu or cuda (PyTorch model files); ``model``: the file already opened.

    Every output path is checked before anything is read or written: two images of one name, or an output that is
    a folder, are refused rather than overwritten or left half-written."""
    from pathlib import Path

    from PIL import Image

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give the folder the masks go to")
    first: dict[str, str] = {}
    for path in paths:
        stem = Path(path).stem
        if stem in first:
            raise ConfigError(
                f"{first[stem]} and {path} would both write {out / stem}_mask.png: segment them in separate runs"
            )
        first[stem] = str(path)
        for name in (f"{stem}_mask.png", f"{stem}_overlay.png"):
            if (out / name).exists() and not (out / name).is_file():
                raise ConfigError(f"{out / name} exists and is not a file")
    model = model if model is not None else open_model_file(model_file, device)
    if not getattr(model, "dense", False):
        raise ConfigError(f"{model_file} labels whole images, not pixels: classify images with it")
    saved = saved_data(model_file)
    classes = saved.get("classes") or [str(i) for i in range(model.num_classes)]
    if len(classes) != model.num_classes:
        raise ConfigError(f"{model_file} names {len(classes)} classes but predicts {model.num_classes}")
    data_cfg = resolve_data_config(model, model_file)
    mean, std = data_cfg.mean, data_cfg.std
    if stride is not None and not slide:
        raise ConfigError("a stride sets the windows of a sliding-window segmentation: slide, or give no stride")
    size, colours = model.img_size, mask_colours(model.num_classes)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)

    def write(path, image: torch.Tensor, mask: torch.Tensor) -> SegmentedFile:
        mask_png, overlay_png = out / f"{Path(path).stem}_mask.png", out / f"{Path(path).stem}_overlay.png"
        coloured, overlay, counts = _paint(image, mask, colours)
        Image.fromarray(coloured.numpy()).save(mask_png)
        Image.fromarray(overlay.numpy()).save(overlay_png)
        shares = sorted(((classes[c], float(v)) for c, v in enumerate(counts) if v > 0), key=lambda t: -t[1])
        return SegmentedFile(str(path), str(mask_png), str(overlay_png), shares, input_warnings(image, mean, std))

    if slide:  # one image at a time, each at its own size
        for path in paths:  # every image's windows counted from its header before any is segmented
            _check_slide(path, size, stride)
        results = []
        for path in paths:
            image = read_image(path, model.in_chans)
            image = 1.0 - image if invert else image
            h, w = image.shape[-2:]
            black = _pad_to(image, size)  # with black, as training pads its crops, before normalising
            mask = slide_mask(model, normalize(black[None], mean, std)[0], stride)[:h, :w]
            results.append(write(path, image, mask))
        return results
    images = read_images(paths, size, model.in_chans, data_cfg.interpolation, data_cfg.crop_pct)
    images = 1.0 - images if invert else images
    where = model_device(model)
    masks = model(normalize(images, mean, std).to(where)).argmax(dim=1).cpu()  # (B, H, W)
    return [write(path, image, mask) for path, image, mask in zip(paths, images, masks, strict=True)]


def _paint(image: torch.Tensor, mask: torch.Tensor, colours: torch.Tensor, rows: int = 512):
    """The coloured mask (H, W, 3), the overlay of it on ``image`` (C, H, W) in [0, 1] and the share of each
    class, computed a band of ``rows`` at a time (a large image's float copies stay a band's size)."""
    h, w = mask.shape
    coloured = torch.empty(h, w, 3, dtype=torch.uint8)
    overlay = torch.empty(h, w, 3, dtype=torch.uint8)
    counts = torch.zeros(len(colours), dtype=torch.float64)
    for r in range(0, h, rows):
        band = mask[r : r + rows].long()
        coloured[r : r + rows] = paint = colours[band]
        rgb = (image[:, r : r + rows].expand(3, -1, -1) * 255).round().to(torch.uint8).permute(1, 2, 0)
        alpha = (band > 0).unsqueeze(-1) * 0.55
        overlay[r : r + rows] = (rgb * (1 - alpha) + paint * alpha).round().to(torch.uint8)
        counts += torch.bincount(band.flatten(), minlength=len(colours)).double()
    return coloured, overlay, counts / mask.numel()


def _check_slide(path, size: int, stride: int | None) -> None:
    """Refuses an image whose sliding-window segmentation would exceed the limits, from its header alone."""
    h, w = image_size(path)[::-1]
    _slide_grid(h, w, size, stride, where=f"{path}: ")


def _slide_grid(h: int, w: int, size: int, stride: int | None, where: str = "") -> tuple[list[int], list[int]]:
    """The window rows and columns of an h x w image, checked against the limits."""
    stride = max(1, 2 * size // 3) if stride is None else stride
    if not 1 <= stride <= size:
        raise ConfigError(f"the stride must lie in 1..{size} (the model's input), got {stride}")
    limits = current_limits()
    ph, pw = max(h, size), max(w, size)
    if ph * pw > limits.max_pixels:
        raise LimitError(
            f"{where}a {w}x{h} image padded to {pw}x{ph} for {size}-pixel windows is more than {limits.max_pixels} "
            "pixels (--max-pixels)"
        )
    tops, lefts = _starts(ph, size, stride), _starts(pw, size, stride)
    if len(tops) * len(lefts) > limits.max_windows:
        raise LimitError(
            f"{where}a {w}x{h} image in {size}-pixel windows every {stride} pixels is {len(tops) * len(lefts)} "
            f"windows, more than the limit of {limits.max_windows} (--max-windows)"
            + (f": raise the stride (at most {size})" if stride < size else "")
        )
    return tops, lefts


@torch.no_grad()
def slide_logits(model, image: torch.Tensor, stride: int | None = None, batch: int = 16) -> torch.Tensor:
    """Per-pixel logits of a normalised image (C, H, W) of any size from a model of one input size S: the mean of
    the logits of S x S windows placed every ``stride`` pixels (1..S; default 2S/3, so neighbours overlap by a
    third), the last row and column of windows flush with the image's edges, so every pixel is covered. An image
    smaller than S is padded at the bottom and right with zeros and its logits cropped back. Returns
    (num_classes, H, W) on the CPU, num_classes floats per pixel: :func:`slide_mask` keeps the classes alone.
    Windows go through the model ``batch`` at a time.

    Raises:
        ConfigError: a stride outside 1..S.
        LimitError: more windows than ``limits.max_windows``, or a padded image of more than ``limits.max_pixels``.
    """
    return torch.cat([band for _, band in _slide_bands(model, image, stride, batch)], dim=1)


@torch.no_grad()
def slide_mask(model, image: torch.Tensor, stride: int | None = None, batch: int = 16) -> torch.Tensor:
    """The classes (H, W) of :func:`slide_logits`, computed a row of windows at a time: besides the mask it holds
    the logits of one band of rows (num_classes x (S + stride) x W floats), not of the whole image."""
    _, h, w = image.shape
    mask = torch.empty(h, w, dtype=torch.uint8 if model.num_classes <= 256 else torch.int64)
    for row, band in _slide_bands(model, image, stride, batch):
        mask[row : row + band.shape[1]] = band.argmax(0).to(mask.dtype)
    return mask


def _slide_bands(model, image: torch.Tensor, stride: int | None, batch: int):
    """Yields (first row, averaged logits (K, rows, W)) down the image, each band as soon as no later row of
    windows reaches it."""
    size = model.img_size
    _, h, w = image.shape
    tops, lefts = _slide_grid(h, w, size, stride)
    padded = _pad_to(image, size)
    ph, pw = padded.shape[-2:]
    where = model_device(model)
    total = torch.zeros(model.num_classes, 0, pw)  # the sums of rows base .. base + len, and their counts
    count = torch.zeros(1, 0, pw)
    base = 0
    for i, top in enumerate(tops):
        grow = top + size - base - total.shape[1]
        if grow > 0:
            total = torch.cat([total, total.new_zeros(total.shape[0], grow, pw)], dim=1)
            count = torch.cat([count, count.new_zeros(1, grow, pw)], dim=1)
        r = top - base
        for j in range(0, len(lefts), batch):
            chunk = lefts[j : j + batch]
            windows = torch.stack([padded[:, top : top + size, x : x + size] for x in chunk])
            for x, logits in zip(chunk, model(windows.to(where)).float().cpu(), strict=True):
                total[:, r : r + size, x : x + size] += logits
                count[:, r : r + size, x : x + size] += 1
        done = tops[i + 1] if i + 1 < len(tops) else ph  # rows above the next row of windows are final
        k = done - base
        keep = min(k, h - base)  # the padding's rows are dropped
        if keep > 0:
            yield base, total[:, :keep, :w] / count[:, :keep, :w]
        total, count, base = total[:, k:], count[:, k:], done


def _pad_to(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) padded with zeros at the bottom and right to at least ``size`` x ``size``."""
    h, w = image.shape[-2:]
    return torch.nn.functional.pad(image, (0, max(w, size) - w, 0, max(h, size) - h))


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one side: every ``stride`` pixels, plus one flush with the end when the steps miss it."""
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else [*starts, length - size]


@dataclass(frozen=True)
class Prediction:
    index: int  # position in the test set
    label: str  # true class
    predicted: str  # most probable class
    confidence: float  # its probability


@torch.no_grad()
def classify_samples(
    model_name: str | nn.Module = "mixer_t4_28", num_images: int = 8, data_dir=None, seed: int = 0
) -> list[Prediction]:
    """Classifies ``num_images`` Fashion-MNIST test images picked at random (seeded) with ``model_name``: a
    model (e.g. one just trained), or the name of a registered model, built fresh (untrained).

    Images are scaled to [0, 1] and normalised with Fashion-MNIST's training-set mean and std.
    """
    torch.manual_seed(seed)
    if isinstance(model_name, nn.Module):
        model = model_name.eval()
    else:
        model = create_model(model_name, num_classes=10, in_chans=1, img_size=28).eval()
    data = FashionMNIST(data_dir, train=False)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=gen)[:num_images]
    source = get_source("fashion-mnist")
    x = data.data[idx].unsqueeze(1).float().div(255)  # (B, 28, 28) uint8 -> (B, 1, 28, 28) in [0, 1]
    x = (x - source.mean[0]) / source.std[0]
    probs = model(x).softmax(dim=-1)
    conf, pred = probs.max(dim=-1)
    return [
        Prediction(int(i), data.classes[int(data.targets[i])], data.classes[int(p)], float(c))
        for i, p, c in zip(idx, pred, conf, strict=True)
    ]
