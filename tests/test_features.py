"""The backbone interface over the registry: feature_info, forward_intermediates, features_only and gradient
checkpointing, against timm where timm has the model."""

import math

import pytest
import torch
from torch import nn

import mlpvision
from mlpvision.errors import ConfigError
from mlpvision.models.features import FeatureExtractor, feature_take_indices
from mlpvision.reparam import reparameterize

from .helpers import SMALL_MODELS, randomize_bn_

# one model per family and layout (the registry's small variants), to keep the file quick
FEATURE_MODELS = [
    "mixer_t4_28",
    "resmlp_tiny_12_28",
    "vit_mini_patch4_28",
    "eanet_tiny_28",
    "resnet18_28",
    "repmlp_resnet18_28",
    "repmlpnet_28",
    "repmlp_fast_28",
    "wide_convnet_32",
    "cnn_local_28",
]
TOKEN_MODELS = FEATURE_MODELS[:4]


def _input(model, batch=2):
    return torch.randn(batch, model.in_chans, model.img_size, model.img_size)


def _expected_shape(model, info, batch=2):
    side = math.ceil(model.img_size / info["reduction"])  # strided convs round up
    return (batch, info["num_chs"], side, side)


def test_every_small_model_but_the_flat_mlp_describes_its_features():
    for name in SMALL_MODELS:
        model = mlpvision.create_model(name, device="meta")
        assert bool(model.feature_info) == (not name.startswith("mlp_")), name
        for info in model.feature_info:
            assert set(info) == {"num_chs", "reduction", "module"}
            model.get_submodule(info["module"])  # the named module exists


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_intermediates_have_the_described_shapes_and_end_in_the_features(name):
    model = mlpvision.create_model(name).eval()
    x = _input(model)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert len(maps) == len(model.feature_info)
        for y, info in zip(maps, model.feature_info, strict=True):
            assert tuple(y.shape) == _expected_shape(model, info)
        torch.testing.assert_close(final, model.forward_features(x))
        extractor = mlpvision.create_model(name, features_only=True)
        extractor.model.load_state_dict(model.state_dict())
        out = extractor.eval()(x)
    assert isinstance(extractor, FeatureExtractor)
    assert [tuple(o.shape)[1] for o in out] == extractor.feature_info.channels()
    chosen = extractor.out_indices
    for o, i in zip(out, chosen, strict=True):
        torch.testing.assert_close(o, maps[i])


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_token_maps_are_the_tokens_in_raster_order(name):
    model = mlpvision.create_model(name).eval()
    x = _input(model)
    with torch.no_grad():
        nchw = model.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
        nlc = model.forward_intermediates(x, indices=[1], output_fmt="NLC", intermediates_only=True)[0]
        normed = model.forward_intermediates(x, indices=[1], norm=True, output_fmt="NLC", intermediates_only=True)[0]
    p = model.num_prefix_tokens
    h, w = model.grid_size
    assert nlc.shape[1] == p + h * w
    torch.testing.assert_close(nchw[:, :, 1, 2], nlc[:, p + 1 * w + 2])  # token (row 1, column 2)
    torch.testing.assert_close(normed, model.norm(nlc))


def test_indices_follow_timm():
    assert feature_take_indices(5, None) == [0, 1, 2, 3, 4]
    assert feature_take_indices(5, 2) == [3, 4]
    assert feature_take_indices(5, (0, -1)) == [0, 4]
    with pytest.raises(ConfigError, match="out of range"):
        feature_take_indices(5, (5,))
    with pytest.raises(ConfigError, match="last 6"):
        feature_take_indices(5, 6)
    model = mlpvision.create_model("mixer_t4_28", features_only=True)
    assert model.out_indices == [5, 6, 7]  # the last three blocks, timm's default for token models
    model = mlpvision.create_model("resnet18_28", features_only=True, out_indices=(1, -1))
    assert model.feature_info.reduction() == [1, 8] and model.feature_info.module_name() == ["layer1", "layer4"]


def test_stop_early_computes_only_what_is_asked():
    model = mlpvision.create_model("mixer_t4_28").eval()
    calls = []
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
    model.forward_intermediates(_input(model), indices=[2], stop_early=True, intermediates_only=True)
    assert calls == [0, 1, 2]


def test_a_flat_mlp_has_no_feature_maps():
    with pytest.raises(ConfigError, match="no spatial feature maps"):
        mlpvision.create_model("mlp_28", features_only=True)
    with pytest.raises(ConfigError, match="features_only"):
        mlpvision.create_model("mixer_t4_28", out_indices=(1,))
    with pytest.raises(ConfigError, match="output_fmt"):
        mlpvision.create_model("mixer_t4_28").forward_intermediates(torch.randn(1, 1, 28, 28), output_fmt="NHWC")


@pytest.mark.parametrize("name", ["repmlp_fast_28", "repmlpnet_28", "repmlp_resnet18_28", "resmlp_tiny_12_28"])
def test_deploy_forms_keep_the_same_features(name):
    model = randomize_bn_(mlpvision.create_model(name)).eval()
    deployed = reparameterize(model)
    x = _input(model)
    with torch.no_grad():
        a = model.forward_intermediates(x, intermediates_only=True)
        b = deployed.forward_intermediates(x, intermediates_only=True)
    assert deployed.feature_info == model.feature_info
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4 * float(u.abs().max()))


# ---- against timm ---------------------------------------------------------------------------------------------


def test_feature_info_matches_timm():
    timm = pytest.importorskip("timm")
    for ours, theirs in (
        ("mixer_s16_224", "mixer_s16_224"),
        ("resmlp_12_224", "resmlp_12_224"),
        ("resnet18", "resnet18"),
    ):
        a = mlpvision.create_model(ours, device="meta").feature_info
        b = timm.create_model(theirs, pretrained=False).feature_info
        assert [(f["module"], f["num_chs"], f["reduction"]) for f in a] == [
            (f["module"], f["num_chs"], f["reduction"]) for f in b
        ]


def test_mixer_intermediates_equal_timms_with_the_same_weights():
    timm = pytest.importorskip("timm")
    from timm.models.mlp_mixer import MlpMixer as TimmMixer

    ref = TimmMixer(num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=3, embed_dim=128).eval()
    ours = mlpvision.create_model("mixer_t4_28", depth=3).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        a_final, a = ours.forward_intermediates(x, indices=2, norm=True)
        b_final, b = ref.forward_intermediates(x, indices=2, norm=True)
    torch.testing.assert_close(a_final, b_final)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v)
    assert timm is not None


# ---- gradient checkpointing ------------------------------------------------------------------------------------


def _one_step(name: str, checkpointing: bool):
    torch.manual_seed(0)
    overrides = {"drop_path_rate": 0.2} if name.startswith(("mixer", "resmlp", "vit", "eanet", "repmlpnet")) else {}
    model = mlpvision.create_model(name, **overrides)
    randomize_bn_(model) if not name.startswith(("mixer", "vit", "eanet")) else None
    model.train()
    model.set_grad_checkpointing(checkpointing)
    torch.manual_seed(1)
    x = _input(model, batch=4)
    model(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, {n: b.clone() for n, b in model.named_buffers()}


@pytest.mark.parametrize("name", [*FEATURE_MODELS, "mlp_28"])
def test_checkpointing_gives_identical_gradients_and_statistics(name):
    g0, b0 = _one_step(name, False)
    g1, b1 = _one_step(name, True)
    assert g0.keys() == g1.keys() and len(g0) > 0
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-5, atol=1e-7, msg=k)
    for k in b0:  # BatchNorm folds each batch into its running statistics once, not again when recomputing
        torch.testing.assert_close(b1[k], b0[k], msg=k)


def test_checkpointing_keeps_fewer_activations():
    from mlpvision.deploy.bench import peak_memory_mb

    model = mlpvision.create_model("mixer_t4_28").train()
    x = torch.randn(32, 1, 28, 28)

    def step():
        model(x).sum().backward()

    plain = peak_memory_mb(step)
    model.set_grad_checkpointing(True)
    assert peak_memory_mb(step) < 0.6 * plain


def test_checkpointing_reaches_a_features_only_model():
    model = mlpvision.create_model("repmlpnet_28", features_only=True)
    model.set_grad_checkpointing()
    assert model.model.grad_checkpointing
    sum(o.sum() for o in model(torch.randn(2, 1, 28, 28))).backward()
    assert all(p.grad is not None for p in model.model.stages.parameters())


# ---- RepMLPNet's head: BatchNorm2d on the last map, before pooling (the official form) ---------------------------


def test_repmlpnet_head_normalises_the_map_before_pooling():
    model = mlpvision.create_model("repmlpnet_28")
    assert isinstance(model.head_norm, nn.BatchNorm2d)
    torch.manual_seed(0)
    x = torch.randn(6, 128, 7, 7) * 3 + 1
    model.train()
    with torch.no_grad():
        nn.init.normal_(model.head.weight)
        logits = model.forward_head(x)
        # in training the statistics are over N x H x W, which a BatchNorm1d after pooling would not give
        expected = model.head(
            nn.functional.batch_norm(x, None, None, model.head_norm.weight, model.head_norm.bias, True).mean((2, 3))
        )
        pooled_first = model.head(
            nn.functional.batch_norm(x.mean((2, 3)), None, None, model.head_norm.weight, model.head_norm.bias, True)
        )
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, pooled_first, atol=1e-3)


def test_repmlpnet_head_norm_folds_into_the_classifier():
    model = randomize_bn_(mlpvision.create_model("repmlpnet_28")).eval()
    assert model.head_norm.running_var.std() > 0.1  # randomized: the fold is not trivially right
    deployed = reparameterize(model)
    assert isinstance(deployed.head_norm, nn.Identity)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=1e-4, atol=1e-4)
        last = model.forward_intermediates(x, indices=[-1], norm=True, intermediates_only=True)[0]
        torch.testing.assert_close(last, model.head_norm(model.forward_features(x)))
    with pytest.raises(ConfigError, match="folded"):
        deployed.forward_intermediates(x, norm=True)
    # the keys did not change with the norm's form: files written before still load
    assert {k for k in model.state_dict() if k.startswith("head_norm.")} == {
        f"head_norm.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
