"""Every model in the zoo: sizes against the papers and timm, and the uniform interface on small models."""

import pytest
import torch

import mlpvision
from mlpvision.errors import InputShapeError

from .helpers import SMALL_MODELS

timm = pytest.importorskip("timm")

# Golden figures from the papers (millions of parameters and of MACs at the model's size). Mixer's paper
# counts exclude the head; everything else includes it. Mixer-H/14 and the patch-16 ResMLP-B24 are not in
# timm, so the paper is their only reference.
PAPER_PARAMS_M = {
    "mixer_h14_224": (431, "no_head"),
    "resmlp_12_224": (15.4, "head"),
    "resmlp_24_224": (30.0, "head"),
    "resmlp_36_224": (44.7, "head"),
    "resmlp_big_24_p16_224": (115.7, "head"),
    "resmlp_big_24_224": (129.1, "head"),
    "wide_convnet_32": (0.50, "head"),
}
PAPER_MACS_G = {
    "mixer_s16_224": 3.78,
    "mixer_b16_224": 12.6,
    "resmlp_12_224": 3.0,
    "resmlp_24_224": 6.0,
    "resmlp_36_224": 8.9,
    "resmlp_big_24_p16_224": 23.0,
    "resmlp_big_24_224": 100.2,
    "wide_convnet_32": 0.0651,
}
# timm's own counts (with a 1000-class head), as timm reports them
TIMM_PARAMS_M = {
    "mixer_s32_224": 19.10,
    "mixer_s16_224": 18.53,
    "mixer_b32_224": 60.29,
    "mixer_b16_224": 59.88,
    "mixer_l16_224": 208.2,
    "resmlp_12_224": 15.35,
    "resmlp_24_224": 30.02,
    "resmlp_36_224": 44.69,
    "resmlp_big_24_224": 129.14,
}
TIMM_NAMED = [n for n in mlpvision.list_models() if mlpvision.get_spec(n).timm_name]


def _meta(name, **kw):
    return mlpvision.create_model(name, device="meta", **kw)


@pytest.mark.parametrize("name", TIMM_NAMED)
def test_same_params_keys_and_shapes_as_timm(name):
    ours = _meta(name)
    with torch.device("meta"):
        ref = timm.create_model(mlpvision.get_spec(name).timm_name, pretrained=False)
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    assert mlpvision.count(ours).params == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS_M))
def test_params_match_timm_table(name):
    assert mlpvision.count(_meta(name)).params / 1e6 == pytest.approx(TIMM_PARAMS_M[name], abs=0.006)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_params_within_2_percent_of_paper(name):
    target, kind = PAPER_PARAMS_M[name]
    model = _meta(name, num_classes=0) if kind == "no_head" else _meta(name)
    assert mlpvision.count(model).params / 1e6 == pytest.approx(target, rel=0.02)


@pytest.mark.parametrize("name", sorted(PAPER_MACS_G))
def test_macs_within_2_percent_of_paper(name):
    assert mlpvision.count(_meta(name)).macs / 1e9 == pytest.approx(PAPER_MACS_G[name], rel=0.02)


@pytest.mark.parametrize("name", mlpvision.list_models("mixer_*"))
def test_mixer_widths_follow_the_paper(name):
    # D_S = C / 2 and D_C = 4 C: the token-MLP width never depends on the number of patches
    m = _meta(name)
    c, s = m.num_features, m.num_tokens
    blk = m.blocks[0]
    assert blk.mlp_tokens.fc1.weight.shape == (c // 2, s)
    assert blk.mlp_channels.fc1.weight.shape == (4 * c, c)


def test_mixer_s16_shapes_from_reference():
    sd = _meta("mixer_s16_224").state_dict()
    assert sd["blocks.0.mlp_tokens.fc1.weight"].shape == (256, 196)
    assert sd["blocks.0.mlp_channels.fc1.weight"].shape == (2048, 512)


def test_resmlp_layerscale_init_follows_depth():
    for name, init in [("resmlp_12_224", 0.1), ("resmlp_24_224", 1e-5), ("resmlp_36_224", 1e-6)]:
        m = _meta(name)
        assert m.config.init_values == init
    m = mlpvision.create_model("resmlp_tiny_12_28")
    assert torch.all(m.blocks[0].ls1 == 0.1)


def test_only_the_stem_is_a_conv_in_mlp_models():
    for name in mlpvision.list_models("mixer_*") + mlpvision.list_models("resmlp_*"):
        convs = [n for n, mod in _meta(name).named_modules() if isinstance(mod, torch.nn.Conv2d)]
        assert convs == ["stem.proj"], name


# ---- the uniform interface, on models small enough to run -------------------------------------------------


def _input(model, batch=2):
    return torch.randn(batch, model.in_chans, model.img_size, model.img_size)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_forward_shape_finite_and_interface(name):
    model = mlpvision.create_model(name).eval()
    x = _input(model, 3)
    out = model(x)
    assert out.shape == (3, model.num_classes)
    assert torch.isfinite(out).all()
    feats = model.forward_features(x)
    assert torch.equal(model.forward_head(feats), out)
    assert model.forward_head(feats, pre_logits=True).shape == (3, model.num_features)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_every_parameter_gets_a_gradient(name):
    model = mlpvision.create_model(name, num_classes=10).train()
    # the zero-initialised head would block the gradient to everything below it
    torch.nn.init.normal_(model.get_classifier().weight, std=0.1)
    loss = torch.nn.functional.cross_entropy(model(_input(model, 4)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad, f"{name}: no gradient for {no_grad}"


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_reset_classifier(name):
    model = mlpvision.create_model(name).eval()
    x = _input(model)
    model.reset_classifier(5)
    assert model.num_classes == 5 and model(x).shape == (2, 5)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_batch_of_one_equals_batched(name):
    from .helpers import randomize_

    model = randomize_(mlpvision.create_model(name)).eval()
    x = _input(model, 4)
    batched = model(x)
    single = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(single, batched, rtol=1e-4, atol=1e-5)


FIXED_SIZE = [n for n in SMALL_MODELS if mlpvision.create_model(n, device="meta").fixed_input_size]


@pytest.mark.parametrize("name", FIXED_SIZE)
def test_fixed_size_models_reject_other_sizes(name):
    model = mlpvision.create_model(name)
    x = torch.randn(1, model.in_chans, model.img_size + 4, model.img_size + 4)
    with pytest.raises(InputShapeError, match=rf"fixed input size of {model.img_size}x{model.img_size}") as e:
        model(x)
    assert f"img_size={model.img_size + 4}" in str(e.value)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_wrong_channel_count_is_a_clear_error(name):
    model = mlpvision.create_model(name)
    x = torch.randn(1, model.in_chans + 1, model.img_size, model.img_size)
    with pytest.raises(InputShapeError, match=f"takes {model.in_chans} input channel"):
        model(x)


@pytest.mark.parametrize("name", ["resnet18_28", "wide_convnet_28", "repmlp_pure_conv9_28"])
def test_convnets_take_any_size(name):
    model = mlpvision.create_model(name).eval()
    assert not model.fixed_input_size
    assert model(torch.randn(2, 1, 40, 36)).shape == (2, 10)


def test_patch_size_must_divide_image():
    with pytest.raises(InputShapeError, match="does not divide"):
        mlpvision.create_model("mixer_s16_224", img_size=100)


def test_drop_path_only_in_training():
    model = mlpvision.create_model("mixer_t4_28", drop_path_rate=0.5)
    from .helpers import randomize_

    randomize_(model)
    x = torch.randn(8, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))
