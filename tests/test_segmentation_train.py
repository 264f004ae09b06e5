"""Segmentation through the training engine: pixel metrics, joint augmentation, the task checks, a tiny run."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from mlpvision.data import AugmentConfig
from mlpvision.errors import ConfigError
from mlpvision.io import load_checkpoint
from mlpvision.train import TrainConfig, train
from mlpvision.train.evaluate import iou_from_confusion, pixel_confusion
from mlpvision.train.task import Segmentation, get_task


def test_iou_from_a_hand_made_confusion():
    confusion = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])  # class 2 neither present nor predicted
    iou = iou_from_confusion(confusion)
    assert iou[0].item() == pytest.approx(3 / (4 + 5 - 3)) and iou[1].item() == pytest.approx(4 / (5 + 6 - 4))
    assert math.isnan(iou[2].item())


def test_pixel_confusion_skips_ignored_pixels():
    masks = torch.tensor([[[0, 1], [255, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    confusion = pixel_confusion(logits, masks, 2, 255)
    assert confusion.tolist() == [[0, 1], [0, 2]]


def test_segmentation_loss_ignores_the_ignore_index():
    task = get_task("segment")
    logits = torch.randn(2, 3, 4, 4)
    masks = torch.randint(0, 3, (2, 4, 4))
    ignored = masks.clone()
    ignored[:, :2] = 255
    expected = torch.nn.functional.cross_entropy(logits[:, :, 2:], masks[:, 2:])
    assert task.loss(logits, ignored, 0.0).item() == pytest.approx(expected.item(), rel=1e-5)
    right, count = task.hits(logits, ignored)
    assert count == 16 and 0 <= right <= 16


def test_joint_augmentation_moves_image_and_mask_alike():
    task = Segmentation()
    masks = torch.randint(0, 5, (8, 12, 12))
    images = masks[:, None].float().repeat(1, 2, 1, 1)  # the image shows its own mask
    torch.manual_seed(0)
    out, out_masks = task.augment(images, masks, AugmentConfig(crop_padding=3, hflip=0.5), torch.tensor([-7.0, -7.0]))
    keep = out_masks != 255
    assert torch.equal(out[:, 0][keep], out_masks[keep].float())
    assert (out[:, 0][~keep] == -7).all() and (~keep).any()
    assert not torch.equal(out_masks, masks)


def test_joint_augmentation_pads_channel_repeated_grey_images_with_the_one_black_value():
    """A colour model on grey scenes: the images are repeated to 3 channels, the statistics stay one value."""
    masks = torch.randint(0, 5, (4, 8, 8))
    images = torch.zeros(4, 3, 8, 8)
    torch.manual_seed(0)
    out, out_masks = Segmentation().augment(images, masks, AugmentConfig(crop_padding=2), torch.tensor([-3.0]))
    assert out.shape == images.shape and (out[(out_masks == 255)[:, None].expand_as(out)] == -3).all()


def test_config_refuses_what_segmentation_cannot_augment():
    with pytest.raises(ConfigError, match="mixup"):
        TrainConfig(task="segment", aug=AugmentConfig(mixup=0.2)).validate()
    with pytest.raises(ConfigError, match="task must be"):
        TrainConfig(task="detect").validate()


TINY = {
    "task": "segment",
    "model": "seg_mixer",
    "model_args": {"img_size": 32, "decoder_dim": 16},
    "data": "fashion-scenes",
    "img_size": 32,
    "epochs": 2,
    "batch_size": 8,
    "train_subset": 24,
    "val_size": 8,
    "test_subset": 8,
    "warmup_epochs": 0.0,
    "plots": False,
}


def test_a_tiny_segmentation_run_trains_evaluates_and_deploys(tmp_path):
    summary = train(TrainConfig.from_recipe({**TINY, "out": str(tmp_path / "run"), "ema_decay": 0.9}))
    assert summary["epochs_done"] == 2 and 0 <= summary["test_miou_best"] <= 100
    assert len(summary["test_per_class_iou_best"]) == 11 and 0 <= summary["test_pixel_acc_best"] <= 100
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"train_pixel_acc", "val_miou", "val_pixel_acc"} <= set(history[-1])
    model = load_checkpoint(summary["files"]["best"])
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 11, 32, 32)


def test_the_task_must_fit_the_model_and_the_data(tmp_path):
    with pytest.raises(ConfigError, match="segmentation model"):
        train(TrainConfig.from_recipe({**TINY, "model": "mixer_t4_32", "model_args": {}, "out": str(tmp_path / "a")}))
    with pytest.raises(ConfigError, match="per-pixel"):
        train(TrainConfig.from_recipe({**TINY, "task": "classify", "out": str(tmp_path / "b")}))
    with pytest.raises(ConfigError, match="per-pixel masks"):
        train(TrainConfig.from_recipe({**TINY, "data": "synthetic", "out": str(tmp_path / "c")}))
    # a segmentation model asked to classify whole images, and a head of another class count than the masks'
    with pytest.raises(ConfigError, match="seg_mixer is a segmentation model"):
        train(TrainConfig.from_recipe({**TINY, "task": "classify", "data": "synthetic", "out": str(tmp_path / "d")}))
    args = {**TINY["model_args"], "num_classes": 4}
    with pytest.raises(ConfigError, match=r"predicts 4 classes but .* has 11"):
        train(TrainConfig.from_recipe({**TINY, "model_args": args, "out": str(tmp_path / "e")}))
    assert not any((tmp_path / d).exists() for d in "abcde")  # refused: no run folder is left behind


def test_eval_refuses_a_model_and_data_of_different_tasks(cli_run, tmp_path, capsys):
    """A segmentation model on images with one label each, and a classifier on masks: one error line each."""
    from mlpvision.cli import main

    classifier = tmp_path / "cls"
    recipe = {**TINY, "task": "classify", "model": "mixer_t4_28", "model_args": {"depth": 1}, "data": "synthetic"}
    train(TrainConfig.from_recipe({**recipe, "img_size": None, "epochs": 1, "out": str(classifier)}))
    pairs = ((cli_run / "best.safetensors", "synthetic", "per image"), (classifier / "best.safetensors",
             "fashion-scenes", "per pixel"))  # fmt: skip
    for checkpoint, data, why in pairs:
        assert main(["eval", "--checkpoint", str(checkpoint), "--data", data]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0] and why in err[0], err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A tiny segmentation run through ``mlpvision train --task segment``."""
    from mlpvision.cli import main

    out = tmp_path_factory.mktemp("seg") / "run"
    argv = ["train", "--task", "segment", "--model", "seg_mixer", "--data", "fashion-scenes", "--img-size", "32"]
    argv += ["--model-arg", "img_size=32", "--model-arg", "decoder_dim=16", "--epochs", "1", "--batch-size", "8"]
    argv += [
        "--train-subset",
        "16",
        "--val-size",
        "8",
        "--test-subset",
        "8",
        "--no-plots",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out


def test_a_token_backbone_fine_tunes_at_twice_its_size_from_its_block_diagonal_expansion(cli_run, tmp_path):
    """``--init`` a 32 px seg_mixer with ``--img-size 64``: the run starts from the expanded model (each 32 px tile
    mixed by the trained weights), trains at 64 and saves a model of the wider token MLP that loads."""
    from mlpvision.cli import main

    small = load_checkpoint(cli_run / "best.safetensors")
    out = tmp_path / "big"
    argv = ["train", "--task", "segment", "--model", "seg_mixer", "--data", "fashion-scenes", "--img-size", "64"]
    argv += ["--init", str(cli_run / "best.safetensors"), "--epochs", "1", "--batch-size", "8", "--train-subset"]
    argv += ["8", "--val-size", "8", "--test-subset", "8", "--no-plots", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    big = load_checkpoint(out / "best.safetensors")
    assert big.img_size == 64 and big(torch.randn(1, 1, 64, 64)).shape == (1, 11, 64, 64)
    hidden = small.backbone.model.config.token_mlp_dim
    assert big.backbone.model.config.token_mlp_dim == 4 * hidden == big.config.backbone_args["token_mlp_dim"]


def test_eval_reports_mean_iou_of_a_segmentation_model(cli_run, capsys):
    from mlpvision.cli import main

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(cli_run / "best.safetensors"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((cli_run / "summary.json").read_text())
    assert result["data"] == "fashion-scenes" and len(result["per_class_iou"]) == 11
    assert 0 <= result["miou"] <= 100 and 0 <= result["pixel_acc"] <= 100
    assert result["num_images"] == 2000  # the whole test split, where the run's summary used a subset
    assert "test_miou_best" in summary
    pytest.importorskip("onnxruntime")
    onnx_file = cli_run / "best.onnx"
    assert main(["export", "--checkpoint", str(cli_run / "best.safetensors"), "--onnx", str(onnx_file)]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(onnx_file), "--json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert from_onnx["miou"] == pytest.approx(result["miou"], abs=0.05)


def test_predict_writes_a_coloured_mask_and_an_overlay(cli_run, tmp_path, capsys):
    from PIL import Image

    from mlpvision.cli import main
    from mlpvision.data import fashion_scenes
    from mlpvision.data.segmentation import SceneConfig

    scene = fashion_scenes("test", 1, SceneConfig(size=32)).images[0, 0].numpy()
    Image.fromarray(scene).save(tmp_path / "scene.png")
    files = [cli_run / "model.safetensors"]
    if importlib.util.find_spec("onnxruntime"):  # the exported file takes the same path
        files.append(tmp_path / "seg.onnx")
        assert main(["export", "--checkpoint", str(files[0]), "--onnx", str(files[1])]) == 0
    for i, model_file in enumerate(files):
        out = tmp_path / f"pred{i}"
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(model_file), "--out", str(out), str(tmp_path / "scene.png")]) == 0
        assert "scene_mask.png" in capsys.readouterr().out
        mask, overlay = Image.open(out / "scene_mask.png"), Image.open(out / "scene_overlay.png")
        assert mask.size == overlay.size == (32, 32) and mask.mode == overlay.mode == "RGB"
    if len(files) == 2:  # the ONNX file paints the same mask as the weights it was exported from
        assert (
            np.asarray(Image.open(tmp_path / "pred0" / "scene_mask.png"))
            == np.asarray(Image.open(tmp_path / "pred1" / "scene_mask.png"))
        ).all()


class _WindowProbe(torch.nn.Module):
    """A "model" of input 8 whose logits are a 1x1 conv of the pixels plus a bias that depends on the position in
    the window: the sliding window's mean over the windows covering a pixel is then checkable by brute force."""

    img_size, num_classes = 8, 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1)
        self.bias = torch.nn.Parameter(torch.randn(3, 8, 8))

    def forward(self, x):
        assert x.shape[-2:] == (8, 8)
        return self.conv(x) + self.bias


@pytest.mark.parametrize(("h", "w", "stride"), [(21, 30, None), (8, 8, None), (5, 13, 3), (17, 9, 8), (12, 12, 1)])
def test_slide_logits_average_every_window_covering_a_pixel(h, w, stride):
    from mlpvision.deploy import slide_logits

    torch.manual_seed(0)
    model, image = _WindowProbe(), torch.randn(2, h, w)
    got = slide_logits(model, image, stride, batch=4)
    assert got.shape == (3, h, w)
    stride = stride or 5  # two thirds of 8
    padded = torch.nn.functional.pad(image, (0, max(w, 8) - w, 0, max(h, 8) - h))
    ph, pw = padded.shape[-2:]
    tops = sorted({*range(0, ph - 8 + 1, stride), ph - 8})
    lefts = sorted({*range(0, pw - 8 + 1, stride), pw - 8})
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                seen = [
                    model(padded[None, :, t : t + 8, x : x + 8])[0, :, i - t, j - x]
                    for t in tops
                    for x in lefts
                    if t <= i < t + 8 and x <= j < x + 8
                ]
                assert seen, (i, j)
                torch.testing.assert_close(got[:, i, j], torch.stack(seen).mean(0), rtol=1e-5, atol=1e-5)


def test_slide_mask_is_the_argmax_of_the_logits_band_by_band_and_bad_strides_are_refused():
    from mlpvision.deploy import slide_logits, slide_mask
    from mlpvision.errors import ConfigError, LimitError
    from mlpvision.limits import limited

    torch.manual_seed(1)
    model, image = _WindowProbe(), torch.randn(2, 37, 23)
    for stride in (None, 1, 3, 8):
        mask = slide_mask(model, image, stride, batch=3)
        assert mask.dtype == torch.uint8 and torch.equal(mask.long(), slide_logits(model, image, stride).argmax(0))
    for stride in (0, -1, 9):
        with pytest.raises(ConfigError, match=r"1\.\.8"):
            slide_logits(model, image, stride)
    with pytest.raises(LimitError, match="154449 windows"):  # (400 - 8 + 1)^2 calls of the model, none made
        slide_logits(model, torch.zeros(2, 400, 400), stride=1)
    with limited(max_pixels=100), pytest.raises(LimitError, match="padded to 13x8"):  # a thin image's padding
        slide_logits(model, torch.zeros(2, 5, 13))


def test_predict_slides_over_an_image_of_its_own_size(cli_run, tmp_path, capsys):
    """``--slide``: a 32 px model segments a 70x45 image in windows and writes masks of the image's size; the
    flags that cannot apply are refused in one line."""
    from PIL import Image

    from mlpvision.cli import main
    from mlpvision.data import fashion_scenes
    from mlpvision.data.segmentation import SceneConfig

    scene = fashion_scenes("test", 1, SceneConfig(size=80)).images[0, 0].numpy()[:45, :70]
    Image.fromarray(scene).save(tmp_path / "wide.png")
    model, out = str(cli_run / "model.safetensors"), tmp_path / "slid"
    args = ["predict", "--checkpoint", model, "--out", str(out), "--slide", str(tmp_path / "wide.png")]
    assert main(args) == 0
    mask, overlay = Image.open(out / "wide_mask.png"), Image.open(out / "wide_overlay.png")
    assert mask.size == overlay.size == (70, 45)
    assert main([*args, "--stride", "32"]) == 0  # windows side by side, the last ones flush with the edges
    if importlib.util.find_spec("onnxruntime"):  # the exported file slides the same windows to the same mask
        onnx_file, onnx_out = tmp_path / "seg.onnx", tmp_path / "slid_onnx"
        assert main(["export", "--checkpoint", model, "--onnx", str(onnx_file)]) == 0
        assert (
            main(["predict", "--checkpoint", str(onnx_file), "--out", str(onnx_out), *args[-2:], "--stride", "32"]) == 0
        )
        assert (np.asarray(Image.open(onnx_out / "wide_mask.png")) == np.asarray(Image.open(mask.filename))).all()
    for extra, why in [(["--stride", "33"], "1..32"), (["--stride", "0"], "1..32")]:
        capsys.readouterr()
        assert main([*args, *extra]) == 2
        assert why in capsys.readouterr().err
    capsys.readouterr()
    assert main([a for a in args if a != "--slide"] + ["--stride", "8"]) == 2
    assert "add --slide" in capsys.readouterr().err
    # every image's windows are counted from its header before any image is segmented
    Image.fromarray(scene[:32, :32]).save(tmp_path / "small.png")
    out2 = tmp_path / "limited"
    small_first = ["predict", "--checkpoint", model, "--out", str(out2), "--slide", str(tmp_path / "small.png")]
    assert main([*small_first, str(tmp_path / "wide.png"), "--max-windows", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wide.png" in err[0] and "--max-windows" in err[0], err
    assert not out2.exists() or not any(out2.iterdir())
    # a one-pixel image is padded to a window and segmented; its statistics warn without a NaN
    Image.fromarray(scene[:1, :1]).save(tmp_path / "dot.png")
    assert main(["predict", "--checkpoint", model, "--out", str(out), "--slide", str(tmp_path / "dot.png")]) == 0
    assert Image.open(out / "dot_mask.png").size == (1, 1)
    captured = capsys.readouterr()
    assert "nan" not in captured.err and "Warning" not in captured.err, captured.err


def test_a_segfolder_trains(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for sub in ("images", "masks"):
            (tmp_path / "data" / split / sub).mkdir(parents=True)
        for i in range(n):
            mask = np.zeros((16, 16), np.uint8)
            y, x = rng.integers(0, 8, 2)
            mask[y : y + 8, x : x + 8] = 1 + i % 2
            mask[0, :] = 255
            image = (mask == 1) * 200 + (mask == 2) * 100
            Image.fromarray(np.stack([image] * 3, -1).astype(np.uint8)).save(
                tmp_path / "data" / split / "images" / f"{i}.png"
            )
            Image.fromarray(mask).save(tmp_path / "data" / split / "masks" / f"{i}.png")
    cfg = {
        "task": "segment",
        "model": "seg_fpn",
        "model_args": {"backbone": "resnet18_32", "feature_indices": [1, 2], "decoder_dim": 8},
        "data": "segfolder",
        "data_dir": str(tmp_path / "data"),
        "img_size": 16,
        "epochs": 1,
        "batch_size": 4,
        "val_size": 0,
        "warmup_epochs": 0.0,
        "plots": False,
        "out": str(tmp_path / "run"),
    }
    summary = train(TrainConfig.from_recipe(cfg))
    assert len(summary["test_per_class_iou_best"]) == 3 and 0 <= summary["test_miou_best"] <= 100


def test_predict_checks_every_output_before_writing_one(cli_run, tmp_path, capsys):
    """Two images of one name, an --out that is a file, an output path that is a folder, a sliver of an image whose
    resize would pass the pixel limit: one error line each, and no mask written."""
    from PIL import Image

    from mlpvision.cli import main

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.new("L", (32, 32), 90).save(tmp_path / folder / "x.png")
    Image.new("L", (1, 40000), 90).save(tmp_path / "sliver.png")
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "masks" / "x_overlay.png").mkdir(parents=True)
    model = str(cli_run / "best.safetensors")
    cases = [
        ([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")], tmp_path / "out1", "both write"),
        ([str(tmp_path / "a" / "x.png")], tmp_path / "file", "is a file"),
        ([str(tmp_path / "a" / "x.png")], tmp_path / "masks", "is not a file"),
        ([str(tmp_path / "sliver.png")], tmp_path / "out2", "the limit"),
    ]
    for images, out, why in cases:
        assert main(["predict", "--checkpoint", model, "--out", str(out), *images, "--max-pixels", "1000000"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and "Traceback" not in err[0], err
    assert not list(tmp_path.glob("out*/*.png")) and not (tmp_path / "masks" / "x_mask.png").exists()
