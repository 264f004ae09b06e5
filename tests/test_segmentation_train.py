"""Segmentation through the training engine: pixel metrics, joint augmentation, the task checks, a tiny run."""

from __future__ import annotations

import json
import math

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
