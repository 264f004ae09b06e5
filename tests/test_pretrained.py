"""timm's ``pretrained`` semantics, ``pretrained_cfg`` for every model, and the data config built from it."""

import logging

import pytest
import torch
from PIL import Image

import mlpvision
from mlpvision.data import create_transform, get_source, resolve_data_config
from mlpvision.errors import CheckpointError, ConfigError
from mlpvision.io import PRETRAINED_CFG_KEY, create_model, save_model, write_safetensors
from mlpvision.models.pretrained_cfg import CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD

from .helpers import randomize_

KEYS = {"input_size", "mean", "std", "interpolation", "crop_pct", "num_classes", "classifier", "first_conv"}


def test_every_registered_model_has_a_pretrained_cfg():
    for name in mlpvision.list_models():
        model = mlpvision.create_model(name, device="meta")
        cfg = model.pretrained_cfg
        assert set(cfg) >= KEYS, name
        assert cfg["input_size"] == (model.in_chans, model.img_size, model.img_size), name
        assert len(cfg["mean"]) == len(cfg["std"]) == model.in_chans, name
        assert cfg["num_classes"] == model.num_classes, name
        assert model.get_submodule(cfg["classifier"]) is model.get_classifier(), name
        model.get_submodule(cfg["first_conv"])  # names a real layer
        assert cfg["fixed_input_size"] == model.fixed_input_size, name


def test_pretrained_cfg_follows_the_build():
    cfg = mlpvision.create_model("resmlp_12_224", num_classes=10, in_chans=1, device="meta").pretrained_cfg
    assert cfg["input_size"] == (1, 224, 224) and cfg["num_classes"] == 10
    assert cfg["mean"] == (pytest.approx(0.449),)  # ImageNet's mean averaged for one channel (as timm)


def test_small_variants_carry_their_data_sets_statistics():
    fm, c10 = get_source("fashion-mnist"), get_source("cifar10")
    assert (tuple(fm.mean), tuple(fm.std)) == (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    assert (tuple(c10.mean), tuple(c10.std)) == (CIFAR10_MEAN, CIFAR10_STD)
    assert mlpvision.create_model("mixer_t4_28", device="meta").pretrained_cfg["mean"] == FASHION_MNIST_MEAN


def test_timm_and_our_imagenet_preprocessing_agree():
    timm = pytest.importorskip("timm")
    # timm's default weights of each (ResNet-50: torchvision's, as ours)
    for name, tag in (
        ("mixer_b16_224", "mixer_b16_224"),
        ("resmlp_12_224", "resmlp_12_224"),
        ("resnet50", "resnet50.tv_in1k"),
    ):
        ours = mlpvision.create_model(name, device="meta").pretrained_cfg
        theirs = timm.create_model(tag, pretrained=False).pretrained_cfg
        assert ours["mean"] == pytest.approx(tuple(theirs["mean"])) and ours["std"] == pytest.approx(
            tuple(theirs["std"])
        )
        for key in ("input_size", "crop_pct", "interpolation", "num_classes", "classifier", "first_conv"):
            assert ours[key] == theirs[key], (name, key)


# ---- pretrained=... ------------------------------------------------------------------------------------------------


@pytest.fixture
def plain_weights(tmp_path):
    model = randomize_(mlpvision.create_model("resmlp_tiny_12_32"))
    path = tmp_path / "plain.safetensors"
    write_safetensors(model.state_dict(), path)  # no metadata: timm-style plain weights
    return model, path


def test_pretrained_true_says_weights_are_local_files():
    with pytest.raises(ConfigError, match="local files"):
        create_model("resmlp_12_224", pretrained=True)
    assert create_model("mixer_t4_28", pretrained=False).num_classes == 10


def test_another_num_classes_keeps_everything_but_the_head(plain_weights, caplog):
    source, path = plain_weights
    with caplog.at_level(logging.WARNING):
        model = create_model("resmlp_tiny_12_32", pretrained=path, num_classes=3)
    assert "head.weight" in caplog.text and "skipped" in caplog.text
    assert model.head.out_features == 3 and not model.head.weight.any()  # a new head, from zero
    ref = source.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            torch.testing.assert_close(v, ref[k])
    headless = create_model("resmlp_tiny_12_32", pretrained=path, num_classes=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(headless.eval()(x), source.eval().forward_head(source.forward_features(x), True))


def test_one_input_channel_sums_the_stem(plain_weights):
    source, path = plain_weights
    grey = create_model("resmlp_tiny_12_32", pretrained=path, in_chans=1)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():  # a grey image is the colour model's input with three equal channels
        torch.testing.assert_close(grey.eval()(x), source.eval()(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)
    five = create_model("resmlp_tiny_12_32", pretrained=path, in_chans=5)
    assert five.stem.proj.weight.shape[1] == 5


def test_other_mismatches_are_still_refused(plain_weights, tmp_path):
    _, path = plain_weights
    with pytest.raises(CheckpointError, match="shape mismatch"):
        create_model("resmlp_tiny_12_32", pretrained=path, embed_dim=64)
    save_model(mlpvision.create_model("mixer_t4_32"), tmp_path / "mixer.safetensors")
    with pytest.raises(CheckpointError, match="holds weights of mixer_t4_32"):
        create_model("resmlp_tiny_12_32", pretrained=tmp_path / "mixer.safetensors")


def test_features_only_with_pretrained(plain_weights):
    source, path = plain_weights
    backbone = create_model("resmlp_tiny_12_32", pretrained=path, features_only=True, out_indices=(-1,))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        (last,) = backbone.eval()(x)
        ref = source.eval().forward_intermediates(x, indices=[-1], intermediates_only=True)[0]
    torch.testing.assert_close(last, ref)


def test_train_init_takes_plain_weights(plain_weights, tmp_path):
    from mlpvision.train.finetune import load_for_finetuning

    source, path = plain_weights
    model = load_for_finetuning(path, "resmlp_tiny_12_32", num_classes=4, in_chans=3)
    assert model.num_classes == 4 and model.training
    torch.testing.assert_close(model.stem.proj.weight, source.stem.proj.weight)
    with pytest.raises(ConfigError, match="--model"):
        load_for_finetuning(path, None)


# ---- the data config -----------------------------------------------------------------------------------------------


def test_data_config_of_a_model_and_its_transform():
    cfg = resolve_data_config(mlpvision.create_model("resmlp_12_224", device="meta"))
    assert (cfg.crop_pct, cfg.interpolation, cfg.mean) == (0.875, "bicubic", (0.485, 0.456, 0.406))
    image = Image.new("RGB", (320, 256), (255, 128, 0))
    x = create_transform(cfg)(image)
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(
        x[:, 0, 0], (torch.tensor([1.0, 128 / 255, 0.0]) - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    )
    assert resolve_data_config(mlpvision.create_model("resmlp_12_224", device="meta"), crop_pct=1.0).crop_pct == 1.0


def test_a_file_trained_here_keeps_its_own_normalisation(tmp_path):
    from mlpvision.io import data_metadata

    model = mlpvision.create_model("mixer_t4_28")
    save_model(model, tmp_path / "m.safetensors", data_metadata("x", [str(i) for i in range(10)], [0.1], [0.2]))
    cfg = resolve_data_config(model, tmp_path / "m.safetensors")
    assert (cfg.mean, cfg.std, cfg.crop_pct, cfg.source) == ((0.1,), (0.2,), 1.0, "file")
    save_model(
        model,
        tmp_path / "c.safetensors",
        {
            PRETRAINED_CFG_KEY: '{"input_size": [1, 28, 28], "mean": [0.3], '
            '"std": [0.4], "interpolation": "bicubic", "crop_pct": 0.9}'
        },
    )
    cfg = resolve_data_config(model_file=tmp_path / "c.safetensors")
    assert (cfg.mean, cfg.std, cfg.crop_pct, cfg.interpolation) == ((0.3,), (0.4,), 0.9, "bicubic")


def test_fine_tuning_plain_weights_normalises_as_they_expect(tmp_path):
    from mlpvision.data import DataInfo
    from mlpvision.io import data_metadata
    from mlpvision.train import TrainConfig
    from mlpvision.train.loop import init_normalisation

    info = DataInfo("synthetic", 4, 1, 28, ("a", "b", "c", "d"), (0.5,), (0.25,))
    model = mlpvision.create_model("resmlp_tiny_12_28")
    write_safetensors(model.state_dict(), tmp_path / "plain.safetensors")
    cfg = TrainConfig(model="resmlp_tiny_12_28", data="synthetic", init=str(tmp_path / "plain.safetensors"))
    assert init_normalisation(cfg, info).mean == FASHION_MNIST_MEAN  # the model's pretrained_cfg
    save_model(model, tmp_path / "own.safetensors", data_metadata("synthetic", "abcd", [0.5], [0.25]))
    cfg = TrainConfig(model="resmlp_tiny_12_28", data="synthetic", init=str(tmp_path / "own.safetensors"))
    assert init_normalisation(cfg, info) == info  # a file trained here: the data set's own statistics
