"""Data sets. Fashion-MNIST (the default) is read from local idx files; nothing is ever downloaded."""

from __future__ import annotations

import functools
import gzip
import math
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import FashionMNIST as _TorchvisionFashionMNIST
from torchvision.transforms import v2

from .errors import DataError

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "AugmentConfig",
    "Augmented",
    "BatchCropFlip",
    "DataInfo",
    "FashionMNIST",
    "TensorImages",
    "build_transform",
    "find_fashion_mnist",
    "load_split",
    "read_idx",
    "split_train_val",
    "synthetic_dataset",
    "training_set",
]

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


# ---- data sets for training and evaluation -------------------------------------------------------------------


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a data set."""

    name: str
    num_classes: int
    in_chans: int
    img_size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


# normalisation statistics of the training sets
_STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "synthetic": ((0.5,), (0.25,)),
}
PERMUTABLE = ("fashion-mnist", "cifar10", "cifar100")  # each has a "-permuted" twin (mlpvision.tasks)
DATASETS = (
    "fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic",
    *(f"{name}-permuted" for name in PERMUTABLE), "position-task", "global-task",  # the lab's probes
)  # fmt: skip


class TensorImages(Dataset):
    """Images held in memory as a uint8 tensor (N, C, H, W) with integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise DataError(f"expected uint8 images (N, C, H, W) and N labels, got {tuple(images.shape)}")
        self.images, self.labels, self.classes = images, labels.long(), classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class ImageFiles(Dataset):
    """Images decoded from files on access (``imagefolder`` data), as uint8 (C, H, W) tensors."""

    def __init__(self, samples: list[tuple[str, int]], classes: tuple[str, ...], in_chans: int, size: int) -> None:
        self.samples, self.classes, self.in_chans, self.size = samples, classes, in_chans, size
        self.labels = torch.tensor([label for _, label in samples])
        self._prep = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

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
    from torchvision.datasets import ImageFolder

    if data_dir is None:
        raise DataError("imagefolder needs --data-dir: a folder with train/ (and val/ or test/) class subfolders")
    root = Path(data_dir)
    folder = root / split if (root / split).is_dir() else (root if split == "train" else None)
    if folder is None:
        raise DataError(f"{root} has no {split}/ folder")
    try:
        ds = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{folder}: {e}") from None
    return ImageFiles(ds.samples, tuple(ds.classes), in_chans, size)


def load_split(name: str, split: str, data_dir=None, img_size: int | None = None, in_chans: int | None = None):
    """The raw ``train`` or ``test`` split of a data set (uint8 images, no augmentation) and its :class:`DataInfo`.

    ``img_size`` resizes the images (bilinear, antialiased) when it differs from the data set's own size.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    train = split == "train"
    if name.endswith("-permuted"):  # a fixed pixel permutation keeps the pixel statistics of its base set
        from .tasks import permuted

        base, info = load_split(name.removesuffix("-permuted"), split, data_dir, img_size, in_chans)
        return permuted(base), replace(info, name=name)
    if name == "fashion-mnist":
        fm = FashionMNIST(data_dir, train=train)
        ds = TensorImages(fm.data.unsqueeze(1), fm.targets, tuple(fm.classes))
    elif name in ("position-task", "global-task"):
        from .tasks import load_task

        ds = load_task(name, train)
    elif name in ("cifar10", "cifar100"):
        ds = _cifar(name, data_dir, train)
    elif name == "synthetic":
        ds = synthetic_dataset(
            512 if train else 256, size=img_size or 28, in_chans=in_chans or 1, seed=0 if train else 1
        )
    else:
        folder_split = "train" if train else ("test" if Path(data_dir or ".", "test").is_dir() else "val")
        ds = _imagefolder(data_dir, folder_split, in_chans or 3, img_size or 224)
    if isinstance(ds, TensorImages) and img_size is not None and img_size != ds.images.shape[-1]:
        # train or fine-tune at another resolution: resize every image once, in memory
        ds.images = v2.functional.resize(ds.images, [img_size, img_size], antialias=True)
    first = ds[0][0]
    mean, std = _STATS.get(name, ((0.5,) * first.shape[0], (0.25,) * first.shape[0]))
    info = DataInfo(name, len(ds.classes), first.shape[0], first.shape[-1], ds.classes, mean, std)
    return ds, info


def split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into train and held-out validation indices."""
    if not 0 <= val_size < n:
        raise DataError(f"validation size {val_size} must be between 0 and the {n} training images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; evaluation only converts and normalises."""

    crop_padding: int = 0  # random crop after zero padding by this many pixels (0: off)
    hflip: float = 0.0  # probability of a horizontal flip
    auto_augment: str = "none"  # "none", "randaugment" or "trivialaugment"
    random_erasing: float = 0.0  # probability of erasing a random rectangle
    mixup: float = 0.0  # MixUp alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)


def build_transform(info: DataInfo, aug: AugmentConfig | None) -> v2.Compose:
    """uint8 (C, H, W) -> normalised float32, with ``aug`` applied when given (training)."""
    ops: list = []
    if aug is not None:
        if aug.crop_padding:
            ops.append(v2.RandomCrop(info.img_size, padding=aug.crop_padding))
        if aug.hflip:
            ops.append(v2.RandomHorizontalFlip(aug.hflip))
        if aug.auto_augment == "randaugment":
            ops.append(v2.RandAugment())
        elif aug.auto_augment == "trivialaugment":
            ops.append(v2.TrivialAugmentWide())
        elif aug.auto_augment != "none":
            raise DataError(f"auto_augment must be none, randaugment or trivialaugment, got {aug.auto_augment!r}")
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    if aug is not None and aug.random_erasing:
        ops.append(v2.RandomErasing(aug.random_erasing))
    return v2.Compose(ops)


class BatchCropFlip:
    """Random crop (after zero padding), horizontal flip and random erasing for a whole batch at once.

    The parameters of every image are drawn once per epoch from (seed, epoch) and looked up by image index, so
    the result is the same whatever the batch composition, the number of processes, or a resume. On small
    images this is an order of magnitude faster than per-image transforms.
    """

    # random erasing as torchvision's RandomErasing draws it: area fraction and log aspect ratio uniform in these
    # ranges, the rectangle clipped to the image (torchvision redraws instead), filled with 0 after normalisation
    ERASE_SCALE = (0.02, 0.33)
    ERASE_RATIO = (0.3, 3.3)

    def __init__(self, info: DataInfo, aug: AugmentConfig, n: int, seed: int) -> None:
        self.padding, self.hflip, self.n, self.seed = aug.crop_padding, aug.hflip, n, seed
        self.erasing = aug.random_erasing
        self.mean = torch.tensor(info.mean).reshape(1, -1, 1, 1)
        self.std = torch.tensor(info.std).reshape(1, -1, 1, 1)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.dy = torch.randint(0, 2 * self.padding + 1, (self.n,), generator=g)
        self.dx = torch.randint(0, 2 * self.padding + 1, (self.n,), generator=g)
        self.flip = torch.rand(self.n, generator=g) < self.hflip
        if self.erasing:
            self.erase = torch.rand(self.n, generator=g) < self.erasing
            self.erase_u = torch.rand(self.n, 4, generator=g)  # area, aspect ratio, top, left

    def _erase_mask(self, idx: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, 1, H, W) True where the images at ``idx`` are erased."""
        u = self.erase_u[idx]
        lo, hi = self.ERASE_SCALE
        area = (lo + (hi - lo) * u[:, 0]) * h * w
        log_lo, log_hi = math.log(self.ERASE_RATIO[0]), math.log(self.ERASE_RATIO[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        eh = (area * ratio).sqrt().round().clamp(1, h).long()
        ew = (area / ratio).sqrt().round().clamp(1, w).long()
        top = (u[:, 2] * (h - eh + 1)).long()
        left = (u[:, 3] * (w - ew + 1)).long()
        rows, cols = torch.arange(h), torch.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
        mask = in_rows[:, :, None] & in_cols[:, None, :] & self.erase[idx][:, None, None]
        return mask[:, None]

    def __call__(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) images at dataset positions ``idx`` -> augmented, normalised float32."""
        b, _, h, w = images.shape
        p = self.padding
        if p or self.hflip:
            padded = torch.nn.functional.pad(images, (p, p, p, p))
            rows = self.dy[idx][:, None] + torch.arange(h)  # (B, H) source rows
            cols = self.dx[idx][:, None] + torch.arange(w)  # (B, W) source columns
            cols = torch.where(self.flip[idx][:, None], cols.flip(1), cols)
            batch = torch.arange(b)[:, None, None]
            images = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        out = (images.float().div_(255) - self.mean) / self.std
        if self.erasing:
            out.masked_fill_(self._erase_mask(idx, h, w), 0.0)
        return out


class Augmented(Dataset):
    """A subset of a data set with a transform whose randomness depends only on (seed, epoch, index).

    Every image gets the same augmentation whatever the number of workers or processes and after a resume,
    which is what makes interrupted and distributed runs reproduce uninterrupted single-process ones.
    With ``batch_aug`` the items are raw uint8 images and the training loop applies ``batch_aug`` per batch.
    """

    def __init__(
        self,
        base: Dataset,
        indices: torch.Tensor | None,
        transform,
        seed: int = 0,
        random: bool = False,
        batch_aug: BatchCropFlip | None = None,
    ) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0
        self.random, self.batch_aug = random, batch_aug
        self.indices = indices if indices is not None else torch.arange(len(base))

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.batch_aug is not None:
            self.batch_aug.set_epoch(epoch)

    @property
    def labels(self) -> torch.Tensor:
        return self.base.labels[self.indices]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.base[int(self.indices[i])]
        if self.batch_aug is not None:
            return img, label
        if not self.random:
            return self.transform(img), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
            return self.transform(img), label


def training_set(base: Dataset, indices: torch.Tensor, info: DataInfo, aug: AugmentConfig, seed: int) -> Augmented:
    """The augmented training set: batched crop/flip/erasing when that is all ``aug`` asks for, else per-image."""
    if aug.auto_augment == "none":
        return Augmented(base, indices, None, seed, batch_aug=BatchCropFlip(info, aug, len(indices), seed))
    return Augmented(base, indices, build_transform(info, aug), seed, random=True)
