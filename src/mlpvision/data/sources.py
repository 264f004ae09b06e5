"""The image data sets: Fashion-MNIST (the default, read from local idx files), CIFAR-10/100 (read without running
pickled code), image folders and a small synthetic set. Nothing is ever downloaded."""

from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import FashionMNIST as _TorchvisionFashionMNIST
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from ..errors import DataError, LimitError, brief, printable
from ..io.files import open_regular, read_bounded
from ..limits import current as current_limits
from .catalog import TensorImages, register_dataset
from .decode import decode_image

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FashionMNIST",
    "ImageFiles",
    "checked_labels",
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
    # the header is read first (through the decompressor when gzipped) and the size it declares checked against
    # the limit, so a small gzip file cannot make this decompress gigabytes
    limit = current_limits().max_data_bytes
    try:
        with open_regular(path, "idx file", DataError) as f:
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
            head = stream.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES or not 1 <= head[3] <= 4:
                raise DataError(f"{path} is not an idx file (bad header)")
            dtype, ndim = np.dtype(_IDX_DTYPES[head[2]]), head[3]
            dims = stream.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{path} is truncated (inside its header)")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if expected > limit:
                raise LimitError(
                    f"{path}: its header declares {expected} bytes of data, more than the limit of {limit}"
                )
            if not gzipped and size != 4 + 4 * ndim + expected:
                raise DataError(
                    f"{path} is truncated or corrupt: {size} bytes, its header promises {4 + 4 * ndim + expected}"
                )
            raw = stream.read(expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: its header promises {expected} bytes of data, not {len(raw)}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


def checked_labels(labels: np.ndarray, num_classes: int, where: str) -> torch.Tensor:
    """``labels`` as int64 class indices, refused with one line naming ``where`` when a label is not a whole number
    (a float label would be truncated to a class) or lies outside ``0 .. num_classes - 1``."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        whole = (
            labels.dtype.kind == "f" and bool(np.all(np.isfinite(labels))) and bool(np.all(labels == np.rint(labels)))
        )
        if not whole:
            raise DataError(f"{where}: labels must be whole numbers (class indices), found {labels.dtype} values")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError(f"{where}: label {bad} is out of range: {num_classes} classes take labels 0..{num_classes - 1}")
    return torch.from_numpy(labels.astype(np.int64))


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
        if images.dtype != np.uint8:
            raise DataError(f"{self._folder}: Fashion-MNIST images must be bytes (uint8), found {images.dtype}")
        where = f"{self._folder}/{prefix}-labels-idx1-ubyte"
        return torch.from_numpy(images.copy()), checked_labels(labels, len(self.classes), where)


class ImageFiles(Dataset):
    """Images decoded from files on access (``imagefolder`` data), as uint8 (C, H, W) tensors."""

    def __init__(self, samples: list[tuple[str, int]], classes: tuple[str, ...], in_chans: int, size: int) -> None:
        self.samples, self.classes, self.in_chans, self.size = samples, classes, in_chans, size
        self.labels = torch.tensor([label for _, label in samples])
        self._prep = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    def set_preprocessing(self, transform) -> None:
        """Replaces the resize and crop (PIL image -> (C, size, size) tensor), e.g. by a model's data config's."""
        self._prep = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self._prep(decode_image(path, self.in_chans)), label


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
    limit = current_limits().max_data_bytes
    with open_regular(path, "CIFAR file", DataError) as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise LimitError(f"CIFAR file {path} is larger than the limit of {limit} bytes")
        try:
            data = _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except Exception as e:  # whatever a crafted pickle makes the unpickler raise is bad input
            raise DataError(f"cannot read CIFAR file {path}: {printable(str(e), 120)}") from None
    if not isinstance(data, dict):
        raise DataError(f"CIFAR file {path} does not hold a mapping (the python layout's batches do)")
    return data


def _cifar_field(part: dict, key: str, path: Path):
    if key not in part:
        raise DataError(f"CIFAR file {path} has no {key!r} entry")
    return part[key]


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
        files = [py / f for f in _cifar_files(ten, train)]
        parts = [_read_cifar_pickle(f) for f in files]
        try:
            data = np.concatenate(
                [np.asarray(_cifar_field(p, "data", f), dtype=np.uint8) for p, f in zip(parts, files, strict=True)]
            )
            key = "labels" if ten else "fine_labels"
            labels = np.concatenate(
                [np.asarray(_cifar_field(p, key, f)).reshape(-1) for p, f in zip(parts, files, strict=True)]
            )
        except (ValueError, TypeError, OverflowError) as e:
            raise DataError(f"{py}: CIFAR images or labels of an unexpected form ({printable(str(e), 100)})") from None
        meta_file = py / ("batches.meta" if ten else "meta")
        names = _cifar_field(_read_cifar_pickle(meta_file), "label_names" if ten else "fine_label_names", meta_file)
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{meta_file}: the class names are not a list of strings")
        classes = tuple(names)
    elif binary.is_dir():
        head = 1 if ten else 2  # CIFAR-100 records carry (coarse, fine) labels
        files = [binary / f"{f}.bin" for f in _cifar_files(ten, train)]
        limit = current_limits().max_data_bytes
        raw = np.concatenate([np.frombuffer(read_bounded(f, "CIFAR file", limit, DataError), np.uint8) for f in files])
        if raw.size % (head + 3072):
            raise DataError(f"{binary}: file size is not a whole number of CIFAR records")
        records = raw.reshape(-1, head + 3072)
        data, labels = records[:, head:], records[:, head - 1]
        names = binary / ("batches.meta.txt" if ten else "fine_label_names.txt")
        text = read_bounded(names, "CIFAR class list", 1 << 20, DataError) if names.is_file() else b""
        lines = text.decode("utf-8", errors="replace").splitlines()
        classes = tuple(line.strip() for line in lines if line.strip())
    else:
        raise DataError(f"{name} not found in {root}: expected {py.name}/ or {binary.name}/ (the extracted archive)")
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{name} in {root} has unexpected shapes {data.shape} and {labels.shape}")
    num_classes = 10 if ten else 100
    classes = classes if len(classes) == num_classes else tuple(str(i) for i in range(num_classes))
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorImages(images, checked_labels(labels, num_classes, f"{name} in {root}"), classes)


def _imagefolder(data_dir, split: str, in_chans: int, size: int) -> ImageFiles:
    if data_dir is None:
        raise DataError("imagefolder needs --data-dir: a folder with train/ (and val/ or test/) class subfolders")
    root = Path(data_dir)
    train_folder = root / "train" if (root / "train").is_dir() else root
    if split == "train":
        samples, classes = image_folder_samples(train_folder)
        return ImageFiles(samples, classes, in_chans, size)
    if not (root / split).is_dir():
        raise DataError(f"{root} has no {split}/ folder")
    # the labels of every split are the training classes, matched by name (never by position)
    classes = _class_folders(train_folder)
    samples, split_classes = image_folder_samples(root / split)
    unknown = [c for c in split_classes if c not in classes]
    if unknown:
        raise DataError(
            f"{root / split}: class folder(s) {', '.join(map(brief, unknown[:3]))} are not classes of "
            f"{train_folder} ({len(classes)} classes); every {split}/ class must be a training class"
        )
    index = {name: classes.index(name) for name in split_classes}
    return ImageFiles([(path, index[split_classes[i]]) for path, i in samples], classes, in_chans, size)


def _hidden(name: str) -> bool:
    """A name a file browser hides (``.ipynb_checkpoints``, ``.DS_Store``) or a notebook leaves behind."""
    return name.startswith((".", "__"))


def _class_folders(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of class subfolders")
    classes = tuple(sorted(e.name for e in os.scandir(folder) if e.is_dir() and not _hidden(e.name)))
    if not classes:
        raise DataError(f"{folder} has no class subfolders (expected {folder}/CLASS/IMAGE files)")
    return classes


def image_folder_samples(folder: Path) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
    """The (image file, class index) pairs of ``folder``'s class subfolders, and the class names (sorted).

    Files are found at any depth inside a class folder, but a folder reached through a symbolic link is not entered:
    a link can lead out of the class (its images would get this class's label) or back up into the tree (a loop
    that lists the same images again and again). Hidden entries (names starting with ``.`` or ``__``, such as
    ``.ipynb_checkpoints``) are neither classes nor images. What is skipped is logged.
    """
    classes = _class_folders(folder)
    samples, skipped = [], []
    for index, name in enumerate(classes):
        for root, dirs, files in os.walk(folder / name, followlinks=False):
            skipped += [os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d))]
            dirs[:] = sorted(d for d in dirs if not _hidden(d))
            for f in sorted(files):
                if f.lower().endswith(IMG_EXTENSIONS) and not _hidden(f):
                    samples.append((os.path.join(root, f), index))
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
