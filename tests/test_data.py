import gzip

import numpy as np
import pytest
import torch

from mlpvision.data import FashionMNIST, read_idx
from mlpvision.errors import DataError

from .helpers import write_cifar10


def _idx(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _write_set(folder, n=5, gz=True, prefix="t10k"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
        data = _idx(arr)
        name = f"{prefix}-{kind}"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_reads_a_local_folder(tmp_path, gz):
    images, labels = _write_set(tmp_path, gz=gz)
    data = FashionMNIST(tmp_path, train=False)
    assert len(data) == 5
    assert np.array_equal(data.data.numpy(), images)
    assert np.array_equal(data.targets.numpy(), labels)
    img, label = data[2]
    assert img.size == (28, 28) and label == labels[2]


def test_read_idx_multibyte_big_endian(tmp_path):
    arr = np.arange(12, dtype=">i4").reshape(3, 4)
    (tmp_path / "x").write_bytes(_idx(arr))
    assert np.array_equal(read_idx(tmp_path / "x"), arr)


def test_read_idx_decodes_a_file_once_and_sees_it_change(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))))
    first = read_idx(path)
    assert read_idx(path) is first and not first.flags.writeable  # shared, so nobody may write to it
    path.write_bytes(gzip.compress(_idx(np.arange(8, dtype=np.uint8).reshape(2, 4))))  # new size: read again
    assert read_idx(path).shape == (2, 4)
    path.write_bytes(gzip.compress(_idx(np.arange(8, dtype=np.uint8).reshape(2, 4)))[:-5])
    with pytest.raises(DataError):  # and a broken file is an error every time, never a cached array
        read_idx(path)


def test_missing_folder_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(tmp_path / "nope")


def test_missing_file_is_named(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        FashionMNIST(tmp_path, train=False)


def test_truncated_file(tmp_path):
    _write_set(tmp_path, gz=False)
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated or corrupt"):
        FashionMNIST(tmp_path, train=False)


def test_not_an_idx_file(tmp_path):
    _write_set(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"hello world, not idx")
    with pytest.raises(DataError, match="not an idx file"):
        FashionMNIST(tmp_path, train=False)


def test_broken_gzip(tmp_path):
    _write_set(tmp_path)
    f = tmp_path / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:30])
    with pytest.raises(DataError, match="cannot read"):
        FashionMNIST(tmp_path, train=False)


def test_installed_fashion_mnist():
    # `make test` installs Debian's package first; a missing data set is a failure, not a skip
    train, test = FashionMNIST(train=True), FashionMNIST(train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.data.shape[1:] == (28, 28)
    assert np.bincount(test.targets.numpy()).tolist() == [1000] * 10


def test_batched_crop_flip_matches_per_image_reference():
    import torch
    import torch.nn.functional as F

    from mlpvision.data import AugmentConfig, training_set

    raw, info = __import__("mlpvision.data", fromlist=["load_split"]).load_split("synthetic", "train")
    ds = training_set(raw, torch.arange(64), info, AugmentConfig(crop_padding=3, hflip=0.5), seed=4)
    ds.set_epoch(2)
    idx = torch.tensor([5, 0, 63, 17])
    imgs = torch.stack([ds[int(i)][0] for i in idx])
    out = ds.batch_aug(imgs, idx)
    ba = ds.batch_aug
    assert ba.flip.any() and not ba.flip.all() and ba.dx.max() > 0
    for j, i in enumerate(idx):
        crop = F.pad(imgs[j], (3, 3, 3, 3))[:, ba.dy[i] : ba.dy[i] + 28, ba.dx[i] : ba.dx[i] + 28]
        if ba.flip[i]:
            crop = crop.flip(-1)
        ref = (crop.float() / 255 - info.mean[0]) / info.std[0]
        torch.testing.assert_close(out[j], ref)
    # the parameters depend on (seed, epoch) only
    before = ba.dx.clone()
    ds.set_epoch(3)
    assert not torch.equal(before, ba.dx)
    ds.set_epoch(2)
    assert torch.equal(before, ba.dx)


def test_batched_random_erasing():
    import torch

    from mlpvision.data import AugmentConfig, load_split, training_set

    raw, info = load_split("synthetic", "train")
    n = 400
    ds = training_set(raw, torch.arange(n), info, AugmentConfig(random_erasing=0.5), seed=1)
    assert ds.batch_aug is not None, "erasing alone must stay on the batched path"
    imgs = torch.full((n, 1, 28, 28), 255, dtype=torch.uint8)  # no pixel is 0 after normalisation
    idx = torch.arange(n)
    out = ds.batch_aug(imgs, idx)
    erased = out == 0
    frac = erased.flatten(1).float().mean(1)
    hit = frac > 0
    assert torch.equal(hit, ds.batch_aug.erase)  # exactly the drawn images, about half of them
    assert 0.35 < hit.float().mean() < 0.65
    assert frac[hit].min() >= 1 / 784 and frac[hit].max() <= 0.34
    for j in torch.nonzero(hit).flatten()[:20]:  # each erased region is one filled rectangle
        rows, cols = erased[j, 0].any(1), erased[j, 0].any(0)
        assert erased[j, 0].sum() == rows.sum() * cols.sum()
    # same erasing for an image whatever batch it is in
    sub = torch.tensor([7, 3, 250])
    assert torch.equal(ds.batch_aug(imgs[sub], sub), out[sub])


@pytest.mark.parametrize("layout", ["python", "binary"])
def test_cifar10_layouts(tmp_path, layout):
    from mlpvision.data import load_split

    expected = write_cifar10(tmp_path, layout)
    train, info = load_split("cifar10", "train", tmp_path)
    test, _ = load_split("cifar10", "test", tmp_path)
    assert (len(train), len(test), info.num_classes, info.in_chans, info.img_size) == (15, 3, 10, 3, 32)
    assert info.classes[3] == "c3"
    data, labels = expected["test_batch"]
    assert np.array_equal(test.images.reshape(3, -1).numpy(), data)
    assert test.labels.tolist() == labels


def test_cifar_pickle_cannot_run_code(tmp_path):
    import pickle

    from mlpvision.data import load_split

    write_cifar10(tmp_path, "python")
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Payload()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_split("cifar10", "test", tmp_path)
    assert not ran.exists()


def test_imagefolder(tmp_path):
    from PIL import Image

    from mlpvision.data import load_split

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 30), (200 if cls == "cat" else 20, 90, i * 50)).save(
                    tmp_path / split / cls / f"{i}.png"
                )
    train, info = load_split("imagefolder", "train", tmp_path, img_size=24, in_chans=3)
    val, _ = load_split("imagefolder", "test", tmp_path, img_size=24, in_chans=3)
    assert (len(train), len(val), info.classes, info.img_size) == (4, 4, ("cat", "dog"), 24)
    img, label = train[3]
    assert img.shape == (3, 24, 24) and img.dtype == torch.uint8 and label == 1


def test_resize_to_another_resolution():
    from mlpvision.data import load_split

    test, info = load_split("fashion-mnist", "test", img_size=56)
    assert test.images.shape == (10000, 1, 56, 56) and info.img_size == 56
