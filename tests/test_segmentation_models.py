"""Segmentation models: every seg_ variant forwards and trains, its deploy form (backbone and head fused) equals
the train form and reloads strictly, it exports to ONNX, and token backbones refuse another input size clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mlpvision
from mlpvision.errors import ConfigError, InputShapeError
from mlpvision.models import list_models
from mlpvision.models.segmentation import create_segmentation_model
from mlpvision.reparam import needs_fusion, reparameterize

from .helpers import assert_reparam_equivalent, randomize_bn_

SEG = [n for n in list_models("seg_*") if n != "seg_fpn"]


def test_the_variants_are_registered():
    assert {"seg_resnet18", "seg_repmlp_resnet", "seg_mixer", "seg_resmlp", "seg_repmlpnet"} <= set(SEG)


@pytest.mark.parametrize("name", SEG)
def test_forward_shape_and_every_parameter_learns(name):
    model = mlpvision.create_model(name)
    x = torch.randn(2, 1, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 11, 64, 64) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.randint(0, 11, (2, 64, 64))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("name", SEG)
def test_deploy_form_equals_train_form_and_reloads_strictly(name):
    model = randomize_bn_(mlpvision.create_model(name)).eval()
    deployed = assert_reparam_equivalent(model, torch.randn(2, 1, 64, 64), rtol=1e-4)
    assert not needs_fusion(deployed)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.decoder.modules())  # the head is fused too
    fresh = mlpvision.create_model(name, deploy=True)
    fresh.load_state_dict(deployed.state_dict(), strict=True)


def test_repmlp_resnet_backbone_deploys_to_fc_only_repmlp_and_has_more_parameters_than_resnet():
    model = mlpvision.create_model("seg_repmlp_resnet").eval()
    deployed = reparameterize(model)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "RepMLPBlock" in kinds or any("RepMLP" in k for k in kinds)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(mlpvision.create_model("seg_repmlp_resnet")) > count(mlpvision.create_model("seg_resnet18"))
    assert count(deployed) < count(model)


def test_onnx_export_equals_the_train_form(tmp_path):
    pytest.importorskip("onnxruntime")
    from mlpvision.deploy import OrtModel, export_onnx

    model = randomize_bn_(mlpvision.create_model("seg_repmlp_resnet")).eval()
    report = export_onnx(model, tmp_path / "seg.onnx", check_batch=2)
    assert report.reparameterized and report.max_abs_diff <= 1e-4 * report.output_scale
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(OrtModel(report.path)(x), model(x), rtol=1e-4, atol=1e-4 * report.output_scale)


@pytest.mark.parametrize("name", ["seg_mixer", "seg_resmlp"])
def test_token_backbones_refuse_another_size_and_build_for_it(name):
    model = mlpvision.create_model(name)
    with pytest.raises(InputShapeError, match="64"):
        model(torch.randn(1, 1, 32, 32))
    small = mlpvision.create_model(name, img_size=32)
    assert small(torch.randn(1, 1, 32, 32)).shape == (1, 11, 32, 32)


def test_resnet_backbone_takes_any_size():
    model = mlpvision.create_model("seg_resnet18").eval()
    assert model(torch.randn(1, 1, 96, 96)).shape == (1, 11, 96, 96)


def test_create_segmentation_model_on_any_backbone():
    model = create_segmentation_model("resnet18_32", 5, img_size=32, in_chans=3, feature_indices=(1, 2, 3))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5, 32, 32)
    assert model.config.backbone == "resnet18_32" and model.model_name == "seg_fpn"
    assert model.get_classifier() is model.head and model.pretrained_cfg["classifier"] == "head"
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ConfigError):
        create_segmentation_model("resnet18", 5, feature_indices=(3, 1))
    with pytest.raises(ConfigError):
        create_segmentation_model("seg_resnet18", 5)
