"""The image data sets: Fashion-MNIST (the default, read from local idx files), CIFAR-10/100 (read without running
pickled code), image folders and a small synthetic set. Nothing is ever downloaded."""

from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets import FashionMNIST as _TorchvisionFashionMNIST
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from ..errors import DataError
from .catalog import TensorImages, register_dataset

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FashionMNIST",
    "ImageFiles",
    "find_fashion_mnist",
    "image_folder_samples",
    "read_idx",
    "synthetic_dataset",
]

log = logging.getLogger(__name__)

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

    The decoded array is kept for the life of the process (keyed by path, size and modification time), so the
    many trainings of one process (the lab, the tests) decompress each file once; it is read-only.

    Raises:
        DataError: when the file is unreadable, truncated or not an idx file.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return _decode_idx(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)  # Fashion-MNIST's four files, ~55 MB decoded
def _decode_idx(path: Path, size: int, mtime_ns: int) -> np.ndarray:
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
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding Fashion-MNIST: ``data_dir`` when given, else Debian's install location."""
    folder = Path(data_dir) if data_dir is not None else DEBIAN_FASHION_MNIST
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} is a file; --data-dir takes the folder that holds the Fashion-MNIST files")
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


class ImageFiles(Dataset):
    """Images decoded from files on access (``imagefolder`` data), as uint8 (C, H, W) tensors."""

    def __init__(self, samples: list[tuple[str, int]], classes: tuple[str, ...], in_chans: int, size: int) -> None:
        self.samples, self.classes, self.in_chans, self.size = samples, classes, in_chans, size
        self.labels = torch.tensor([label for _, label in samples])
        self._prep = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                return self._prep(img.convert("L" if self.in_chans == 1 else "RGB")), label
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot decode image {path}: {e}") from None


def synthetic_dataset(n: int, num_classes: int = 4, size: int = 28, in_chans: int = 1, seed: int = 0) -> TensorImages:
    """A small learnable data set: class k is a bright square at one of ``num_classes`` positions, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = torch.randint(0, 60, (n, in_chans, size, size), generator=g, dtype=torch.uint8)
    side = max(size // 4, 2)
    for k in range(num_classes):
        r, c = divmod(k, 2)
        y0, x0 = (size // 2) * (r % 2) + 2, (size // 2) * c + 2
        images[labels == k, :, y0 : y0 + side, x0 : x0 + side] = 220
    return TensorImages(images, labels, tuple(f"class{k}" for k in range(num_classes)))


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a file cannot make it import or call anything else."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol-2 pickles store bytes
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"cannot read CIFAR file {path}: {e}") from None


def _cifar_files(ten: bool, train: bool) -> list[str]:
    if ten:
        return [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return ["train"] if train else ["test"]


def _cifar(name: str, data_dir, train: bool) -> TensorImages:
    """CIFAR-10/100 from the official python layout (read without executing pickled code) or binary layout."""
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir: a folder holding the extracted CIFAR archive")
    root = Path(data_dir)
    ten = name == "cifar10"
    py = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    binary = root / ("cifar-10-batches-bin" if ten else "cifar-100-binary")
    if py.is_dir():
        parts = [_read_cifar_pickle(py / f) for f in _cifar_files(ten, train)]
        data = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        labels = np.concatenate([np.asarray(p["labels" if ten else "fine_labels"]) for p in parts])
        meta = _read_cifar_pickle(py / ("batches.meta" if ten else "meta"))
        classes = tuple(meta["label_names" if ten else "fine_label_names"])
    elif binary.is_dir():
        head = 1 if ten else 2  # CIFAR-100 records carry (coarse, fine) labels
        files = [binary / f"{f}.bin" for f in _cifar_files(ten, train)]
        try:
            raw = np.concatenate([np.fromfile(f, dtype=np.uint8) for f in files])
        except OSError as e:
            raise DataError(f"cannot read {binary}: {e}") from None
        if raw.size % (head + 3072):
            raise DataError(f"{binary}: file size is not a whole number of CIFAR records")
        records = raw.reshape(-1, head + 3072)
        data, labels = records[:, head:], records[:, head - 1]
        names = binary / ("batches.meta.txt" if ten else "fine_label_names.txt")
        lines = names.read_text().splitlines() if names.is_file() else []
        classes = tuple(line.strip() for line in lines if line.strip())
    else:
        raise DataError(f"{name} not found in {root}: expected {py.name}/ or {binary.name}/ (the extracted archive)")
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{name} in {root} has unexpected shapes {data.shape} and {labels.shape}")
    num_classes = 10 if ten else 100
    classes = classes if len(classes) == num_classes else tuple(str(i) for i in range(num_classes))
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorImages(images, torch.from_numpy(labels.astype(np.int64)), classes)


def _imagefolder(data_dir, split: str, in_chans: int, size: int) -> ImageFiles:
    if data_dir is None:
        raise DataError("imagefolder needs --data-dir: a folder with train/ (and val/ or test/) class subfolders")
    root = Path(data_dir)
    folder = root / split if (root / split).is_dir() else (root if split == "train" else None)
    if folder is None:
        raise DataError(f"{root} has no {split}/ folder")
    samples, classes = image_folder_samples(folder)
    return ImageFiles(samples, classes, in_chans, size)


def image_folder_samples(folder: Path) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
    """The (image file, class index) pairs of ``folder``'s class subfolders, and the class names (sorted).

    Files are found at any depth inside a class folder, but a folder reached through a symbolic link is not entered:
    a link can lead out of the class (its images would get this class's label) or back up into the tree (a loop
    that lists the same images again and again). What is skipped is logged.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of class subfolders")
    classes = tuple(sorted(e.name for e in os.scandir(folder) if e.is_dir()))
    if not classes:
        raise DataError(f"{folder} has no class subfolders (expected {folder}/CLASS/IMAGE files)")
    samples, skipped = [], []
    for index, name in enumerate(classes):
        for root, dirs, files in os.walk(folder / name, followlinks=False):
            skipped += [os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d))]
            for f in sorted(files):
                if f.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(root, f), index))
            dirs.sort()
    if skipped:
        log.warning("%s: not following %d linked folder(s): %s", folder, len(skipped), ", ".join(skipped[:3]))
    if not samples:
        raise DataError(f"{folder}: no image files in its class subfolders ({', '.join(IMG_EXTENSIONS)})")
    return sorted(samples), classes


def _fashion_mnist(train: bool, data_dir, img_size, in_chans) -> TensorImages:
    fm = FashionMNIST(data_dir, train=train)
    return TensorImages(fm.data.unsqueeze(1), fm.targets, tuple(fm.classes))


def _image_folder_split(train: bool, data_dir, img_size, in_chans) -> ImageFiles:
    split = "train" if train else ("test" if Path(data_dir or ".", "test").is_dir() else "val")
    return _imagefolder(data_dir, split, in_chans or 3, img_size or 224)


def _synthetic(train: bool, data_dir, img_size, in_chans) -> TensorImages:
    return synthetic_dataset(512 if train else 256, size=img_size or 28, in_chans=in_chans or 1, seed=0 if train else 1)


# normalisation statistics are those of each training set
register_dataset("fashion-mnist", _fashion_mnist, (0.2860,), (0.3530,))
register_dataset(
    "cifar10",
    lambda train, data_dir, *_: _cifar("cifar10", data_dir, train),
    (0.4914, 0.4822, 0.4465),
    (0.2470, 0.2435, 0.2616),
)
register_dataset(
    "cifar100",
    lambda train, data_dir, *_: _cifar("cifar100", data_dir, train),
    (0.5071, 0.4865, 0.4409),
    (0.2673, 0.2564, 0.2762),
)
register_dataset("imagefolder", _image_folder_split)
register_dataset("synthetic", _synthetic, (0.5,), (0.25,))
