"""The segmentation data: Fashion-MNIST scenes and the segfolder layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mlpvision.data import SceneConfig, fashion_scenes, get_source, load_split, segfolder, shift_scenes
from mlpvision.data.segmentation import GARMENT_THRESHOLD, compose_scenes
from mlpvision.errors import DataError

SMALL = SceneConfig(size=32)


def _garments(m: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Solid squares, garment i of brightness 100 + i and class i % 10: each pasted garment is identifiable."""
    garments = torch.zeros(m, 28, 28, dtype=torch.uint8)
    garments[:, 4:24, 4:24] = (100 + torch.arange(m)).to(torch.uint8)[:, None, None]
    return garments, torch.arange(m) % 10


def test_scenes_are_deterministic_and_seeded():
    a, b = fashion_scenes("test", 20, SMALL, seed=0), fashion_scenes("test", 20, SMALL, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    c = fashion_scenes("test", 20, SMALL, seed=1)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (20, 1, 32, 32) and a.masks.shape == (20, 32, 32)
    assert len(a.classes) == 11 and a.classes[0] == "background"


def test_labels_follow_the_threshold_and_the_last_garment_occludes():
    scenes = fashion_scenes("train", 50, SceneConfig(size=48), seed=3)
    fg = scenes.masks > 0
    assert (scenes.images[:, 0][fg] > GARMENT_THRESHOLD).all()
    assert 0 < fg.float().mean() < 0.6
    # solid squares: a pixel's brightness names the garment that is on top, so its label must be that garment's
    garments, labels = _garments()
    made = compose_scenes(garments, labels, 10, SceneConfig(size=64, scales=(1.0,)), seed=0)
    on = made.masks > 0
    top = made.images[:, 0][on].long() - 100
    assert torch.equal(made.masks[on].long(), labels[top] + 1)


def test_every_garment_is_used_at_most_once():
    garments, labels = _garments(40)
    made = compose_scenes(garments, labels, 15, SceneConfig(size=64, scales=(1.0,), max_objects=2), seed=0)
    for i in range(15):
        seen = set(torch.unique(made.images[i]).tolist()) - {0}
        for j in range(i):
            assert not seen & (set(torch.unique(made.images[j]).tolist()) - {0})
    with pytest.raises(DataError, match="garments"):
        compose_scenes(garments, labels, 100, SceneConfig(size=64), seed=0)


def test_centred_scenes_keep_garments_whole_inside_the_central_box_and_a_move_keeps_them_whole():
    cfg = SceneConfig(size=64, scales=(0.75, 1.0), centred=True)
    scenes = fashion_scenes("val", 60, cfg)
    ys, xs = torch.nonzero(scenes.masks.sum(0)).unbind(1)
    assert ys.min() >= 16 and xs.min() >= 16 and ys.max() < 48 and xs.max() < 48
    assert ys.min() == 16 and ys.max() == 47  # the whole box is used
    garment_pixels = (scenes.masks > 0).sum()
    for dy, dx in ((16, 0), (-16, 0), (0, 16), (0, -16)):  # the lab's move: every garment pixel stays on the canvas
        assert (shift_scenes(scenes, dy, dx).masks.clamp(max=11) > 0).sum() - band(dy, dx) * 60 == garment_pixels
    moved = shift_scenes(scenes, 8, -8)
    assert torch.equal(moved.masks[:, 8:, :-8], scenes.masks[:, :-8, 8:])
    assert torch.equal(moved.images[:, :, 8:, :-8], scenes.images[:, :, :-8, 8:])
    assert (moved.masks[:, :8] == scenes.ignore_index).all() and (moved.masks[:, :, -8:] == scenes.ignore_index).all()
    assert (moved.images[:, :, :8] == 0).all()
    with pytest.raises(DataError, match="central 32-pixel box"):
        SceneConfig(size=64, scales=(1.25,), centred=True)


def band(dy: int, dx: int, size: int = 64) -> int:
    """Pixels a move by (dy, dx) uncovers on a square canvas."""
    return size * size - (size - abs(dy)) * (size - abs(dx))


def test_scene_config_refuses_impossible_scenes():
    with pytest.raises(DataError):
        SceneConfig(size=16, scales=(3.0,))
    with pytest.raises(DataError):
        SceneConfig(min_objects=3, max_objects=2)


@pytest.mark.slow
def test_registered_statistics_are_those_of_the_training_scenes():
    scenes = fashion_scenes("train")
    x = scenes.images.float() / 255
    source = get_source("fashion-scenes")
    assert source.mean[0] == pytest.approx(x.mean().item(), abs=5e-4)
    assert source.std[0] == pytest.approx(x.std().item(), abs=5e-4)


def test_load_split_gives_scenes_at_the_asked_size():
    ds, info = load_split("fashion-scenes", "test", img_size=32)
    assert info.num_classes == 11 and info.img_size == 32 and info.in_chans == 1
    image, mask = ds[0]
    assert image.shape == (1, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.long


def _write(root, split, stem, image, mask, palette=False):
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / split / "images" / f"{stem}.png")
    m = Image.fromarray(mask)
    if palette:
        m = m.convert("P")
        m.putpalette([255 - v for v in range(256) for _ in range(3)])  # colours unlike the indices
    m.save(root / split / "masks" / f"{stem}.png")


def _folder(tmp_path, n=3, size=12):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(n):
            mask = rng.integers(0, 3, (size, size), dtype=np.uint8)
            mask[0, 0] = 255
            _write(tmp_path, split, f"s{i}", rng.integers(0, 255, (size, size, 3), dtype=np.uint8), mask, i == 0)
    return tmp_path


def test_segfolder_reads_images_masks_and_palette_indices(tmp_path):
    root = _folder(tmp_path)
    ds = segfolder(root, "train", in_chans=3)
    assert len(ds) == 3 and ds.classes == ("0", "1", "2")
    image, mask = ds[0]
    assert image.shape == (3, 12, 12) and mask.shape == (12, 12)
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255} and mask[0, 0] == 255
    ds, info = load_split("segfolder", "test", root, img_size=24, in_chans=1)
    assert info.num_classes == 3 and ds[1][0].shape == (1, 24, 24) and ds[1][1].shape == (24, 24)
    assert set(ds[1][1].unique().tolist()) <= {0, 1, 2, 255}  # nearest resizing keeps labels


def test_segfolder_errors_name_the_file(tmp_path):
    root = _folder(tmp_path)
    (root / "val" / "masks" / "s1.png").unlink()
    with pytest.raises(DataError, match=r"s1\.png has no mask"):
        segfolder(root, "val")
    _write(root, "val", "s1", np.zeros((12, 12, 3), np.uint8), np.full((12, 12), 7, np.uint8))
    with pytest.raises(DataError, match=r"s1\.png has the value 7"):
        segfolder(root, "val")
    _write(root, "val", "s1", np.zeros((10, 12, 3), np.uint8), np.zeros((12, 12), np.uint8))
    with pytest.raises(DataError, match=r"s1\.png is 12x12 pixels but its image is 12x10"):
        segfolder(root, "val")
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(root / "val" / "masks" / "extra.png")
    with pytest.raises(DataError, match=r"extra\.png"):
        segfolder(root, "val")
    with pytest.raises(DataError, match="needs --data-dir"):
        segfolder(None, "train")


def test_segfolder_masks_go_through_the_guarded_decoder(tmp_path):
    root = _folder(tmp_path)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(root / "val" / "masks" / "s1.png")  # RGB: not a mask
    with pytest.raises(DataError, match=r"s1\.png has mode RGB"):
        segfolder(root, "val")
    (root / "val" / "masks" / "s1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*s1\.png"):
        segfolder(root, "val")


def test_segfolder_refuses_what_would_fail_later_or_wrap_silently(tmp_path):
    """A negative mask value (it would wrap to an index), masks that label nothing, a link loop among the images,
    and a class list that is not UTF-8, too large, or names a class twice: each one DataError naming the file."""
    from mlpvision.errors import LimitError

    root = _folder(tmp_path)
    Image.fromarray(np.full((12, 12), -2, np.int32), mode="I").save(root / "val" / "masks" / "s1.tif")
    (root / "val" / "masks" / "s1.png").unlink()
    with pytest.raises(DataError, match=r"s1\.tif has values outside 0\.\.255"):
        segfolder(root, "val")
    _write(root, "val", "s1", np.zeros((12, 12, 3), np.uint8), np.full((12, 12), 255, np.uint8))
    (root / "val" / "masks" / "s1.tif").unlink()
    for stem in ("s0", "s2"):
        if (root / "val" / "masks" / f"{stem}.png").exists():
            Image.fromarray(np.full((12, 12), 255, np.uint8)).save(root / "val" / "masks" / f"{stem}.png")
    with pytest.raises(DataError, match="ignore index: nothing to learn"):
        segfolder(root, "val")
    (root / "train" / "images" / "loop.png").symlink_to(root / "train" / "images" / "loop.png")
    with pytest.raises(DataError, match=r"cannot read .*loop\.png"):
        segfolder(root, "train")
    (root / "train" / "images" / "loop.png").unlink()
    names = root / "classes.txt"
    for content, error, why in (
        (b"bg\n\xff\xfe\n", DataError, "not UTF-8"),
        (b"bg\nshirt\nbg\n", DataError, "names the class 'bg' twice"),
        (b"x\n" * (3 << 21), LimitError, "larger than"),
    ):
        names.write_bytes(content)
        with pytest.raises(error, match=why):
            segfolder(root, "train")
