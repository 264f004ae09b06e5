"""Data sets. Fashion-MNIST (the default) is read from local idx files; nothing is ever downloaded."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import FashionMNIST as _TorchvisionFashionMNIST

from .errors import DataError

__all__ = ["FASHION_MNIST_CLASSES", "FashionMNIST", "find_fashion_mnist", "read_idx"]

# where Debian's package dataset-fashion-mnist installs the four idx files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = tuple(_TorchvisionFashionMNIST.classes)
_INSTALL_HINT = (
    "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or pass "
    "--data-dir pointing at a folder with the four Fashion-MNIST idx files (gzipped or not)"
)
# idx type codes -> numpy big-endian dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an idx file (the MNIST format), gzipped or not, validating its header against its size.

    Raises:
        DataError: when the file is unreadable, truncated or not an idx file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise DataError(f"{path} is not an idx file (bad header)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: {len(raw)} bytes, its header promises {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding Fashion-MNIST: ``data_dir`` when given, else Debian's install location."""
    folder = Path(data_dir) if data_dir is not None else DEBIAN_FASHION_MNIST
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} does not exist; {_INSTALL_HINT}")
    return folder


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has no {stem}(.gz); {_INSTALL_HINT}")


class FashionMNIST(_TorchvisionFashionMNIST):
    """torchvision's Fashion-MNIST data set read from local idx files (gzipped or not), never downloaded.

    Args:
        data_dir: folder with the four idx files; Debian's install location when None.
        train: the 60 000-image training set, else the 10 000-image test set.
        transform: applied to each PIL image.
        target_transform: applied to each label.
    """

    def __init__(self, data_dir=None, train: bool = True, transform=None, target_transform=None) -> None:
        self._folder = find_fashion_mnist(data_dir)
        super().__init__(
            str(self._folder), train=train, transform=transform, target_transform=target_transform, download=False
        )

    @property
    def raw_folder(self) -> str:
        return str(self._folder)

    def _check_exists(self) -> bool:
        prefix = "train" if self.train else "t10k"
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            _idx_file(self._folder, f"{prefix}-{kind}")  # raises a DataError naming the missing file
        return True

    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = "train" if self.train else "t10k"
        images = read_idx(_idx_file(self._folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(self._folder, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise DataError(f"{self._folder}: unexpected Fashion-MNIST shapes {images.shape} and {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{self._folder}: {len(images)} images but {len(labels)} labels")
        if labels.size and labels.max() >= len(self.classes):
            raise DataError(f"{self._folder}: label {labels.max()} out of range")
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
