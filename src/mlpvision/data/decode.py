"""Decoding one image file, the same way for prediction, evaluation and training folders, within limits.

An image file is untrusted input: only the formats an image folder lists are opened, only regular files (a FIFO
would hang), the pixel count is read from the header and compared with ``limits.max_pixels`` before any pixel is
decoded (Pillow's own decompression-bomb limit is set to the same value, and its limits on compressed text and
colour-profile chunks apply), and whatever a broken or hostile file makes the decoder raise is one
:class:`~mlpvision.errors.DataError` naming the file. The picture is then turned upright by its EXIF orientation,
and 16-bit grey images are scaled to 8 bits (not clipped to white).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, LimitError
from ..io.files import open_regular
from ..limits import current as current_limits

__all__ = ["FORMATS", "decode_image", "image_size"]

# the formats of the extensions an image folder lists (torchvision's IMG_EXTENSIONS); no other decoder is tried
FORMATS = ("PNG", "JPEG", "BMP", "PPM", "TIFF", "WEBP", "GIF")
_LABEL_MODES = ("L", "P", "1", "I;16", "I;16B", "I;16L", "I;16N", "I")  # single-channel: class indices
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _to_eight_bits(img: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) grey -> 8-bit grey by scaling, where Pillow's ``convert("L")`` clips at 255."""
    array = np.asarray(img, dtype=np.float64)
    top = 65535.0 if img.mode != "I" or array.max(initial=0) <= 65535 else float(array.max())
    return Image.fromarray(np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8), mode="L")


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The image at ``path`` opened (header read, no pixel decoded) once its pixel count is within the limit; every
    failure inside the block, the caller's decoding included, is a :class:`LimitError` or :class:`DataError`."""
    limit = current_limits().max_pixels
    Image.MAX_IMAGE_PIXELS = limit  # Pillow refuses at twice this and warns above it; we refuse above it
    with open_regular(path, "image", DataError) as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a damaged tag is skipped by Pillow; only the bomb warning matters
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f, formats=FORMATS) as img:
                    w, h = img.size
                    if w * h > limit:
                        raise LimitError(
                            f"image {path} is {w}x{h} pixels, more than the limit of {limit}; pass --max-pixels N "
                            "to read it"
                        )
                    yield img
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise LimitError(
                f"image {path} has more pixels than the limit of {limit}; pass --max-pixels N to read it"
            ) from None
        except (LimitError, DataError):
            raise
        except UnidentifiedImageError:
            raise DataError(f"cannot read image {path}: not an image in {', '.join(FORMATS)} format") from None
        except Exception as e:  # whatever a hostile file makes a decoder raise is bad input
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise DataError(f"cannot read image {path}: damaged or unsupported ({reason})") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image at ``path`` from its header, upright (EXIF orientation applied), checked as
    :func:`decode_image` checks it, without decoding a pixel."""
    with _opened(path) as img:
        w, h = img.size
        return (h, w) if img.getexif().get(ExifTags.Base.Orientation) in _TURNED else (w, h)


def decode_image(path: str | os.PathLike, in_chans: int, labels: bool = False) -> Image.Image:
    """The image at ``path`` decoded, upright, as 8-bit grey (``in_chans`` 1) or RGB (otherwise).

    With ``labels`` the file is a segmentation mask: its values are class indices, kept as they are (a palette
    image's indices, not its colours; no 16-bit scaling), and a file with colour channels is refused.

    Raises:
        LimitError: more pixels than ``limits.max_pixels`` (``--max-pixels`` raises it).
        DataError: not a regular file, not an image of a supported format, or a file the decoder fails on.
    """
    with _opened(path) as img:
        img = ImageOps.exif_transpose(img) or img
        if labels:
            if img.mode not in _LABEL_MODES:
                raise DataError(
                    f"mask {path} has mode {img.mode}: masks are single-channel (grey or palette) images of class "
                    "indices"
                )
            img.load()
            return img
        if img.mode in _SIXTEEN_BIT:
            img = _to_eight_bits(img)
        img = img.convert("L" if in_chans == 1 else "RGB")
        img.load()
        return img
