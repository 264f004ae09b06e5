"""The resource limits of this process: how large an input may be before it is refused unread.

One place for every limit a user may need to raise, so that prediction, evaluation and training read images,
model files and data sets under the same rules; the command line's ``--max-pixels``, ``--max-params`` (and
``predict``'s ``--max-windows``) set them
for one command (:func:`set_limits`). The fixed caps of each decoder (YAML size and aliases, model-file headers,
idx sizes) live beside the decoder; the README lists them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Limits", "current", "limited", "set_limits"]


@dataclass(frozen=True)
class Limits:
    """The limits a user may raise."""

    # pixels of one image (width x height), checked from the header before decoding: 64 Mi is a 8192 x 8192 image,
    # about 200 MB decoded as RGB; a "decompression bomb" (a small file of a huge image) is refused unread
    max_pixels: int = 64 * 2**20
    # parameters of a model rebuilt from a stored config: the largest registered model has 432 M
    max_params: int = 500_000_000
    # bytes an idx or CIFAR file may decode to: Fashion-MNIST's largest is 47 MB, CIFAR-100's training set 150 MB
    max_data_bytes: int = 2 << 30
    # model calls of a sliding-window segmentation of one image: an 8192 x 8192 image in 64-pixel windows every 42
    # pixels needs 38 416
    max_windows: int = 100_000


_current = Limits()


def current() -> Limits:
    """The limits in force."""
    return _current


def set_limits(**changes: int | None) -> Limits:
    """Changes limits for the rest of the process (``None`` keeps one); returns the previous ones."""
    global _current
    previous = _current
    given = {k: v for k, v in changes.items() if v is not None}
    for k, v in given.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"limit {k} must be a positive whole number, got {v!r}")
    _current = dataclasses.replace(_current, **given)
    return previous


@contextlib.contextmanager
def limited(**changes: int | None) -> Iterator[Limits]:
    """``with limited(max_pixels=...):`` runs a block under other limits, restoring them afterwards."""
    global _current
    previous = set_limits(**changes)
    try:
        yield _current
    finally:
        _current = previous
