"""Structural re-parameterization: train form == deploy form, for every block and model that has one."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import mlpvision
from mlpvision.errors import ConfigError
from mlpvision.layers import ConvBN, LinearBN
from mlpvision.models.repmlp import RepMLPBlock
from mlpvision.reparam import Reparameterizable, absorb_bn_into_next_linear, conv_to_fc, fuse_bn, reparameterize

from .helpers import assert_reparam_equivalent, randomize_bn_, zoo_params

REPARAM_MODELS = [
    n
    for n in mlpvision.list_models()
    if any(isinstance(m, Reparameterizable) for m in mlpvision.create_model(n, device="meta").modules())
]
SMALL_REPARAM = [n for n in REPARAM_MODELS if n.endswith(("_28", "_32"))]
PURE_MLP = ["repmlp_pure_28", "repmlp_pure_32", "repmlp_pure_nogp_32", "repmlp_pure_nopp_32", "repmlp_pure_nolp_32"]


def test_every_repmlp_and_stage_model_is_reparameterizable():
    assert set(PURE_MLP) | {"repmlp_resnet50_g8_224", "repmlp_resnet18_28", "wide_convnet_32"} <= set(REPARAM_MODELS)


@pytest.mark.parametrize("name", zoo_params(REPARAM_MODELS))
def test_deploy_form_equals_train_form_and_its_weights_load_into_the_deploy_model(name):
    torch.manual_seed(0)
    model = randomize_bn_(mlpvision.create_model(name))
    x = torch.randn(2, model.in_chans, model.img_size, model.img_size)
    # float32: with random weights the deepest models' outputs reach 1e21, where rounding alone comes to about 1e-5
    # of the output (seen on one thread); a wrong fusion is off by far more, and the float64 test checks to 1e-10
    deployed = assert_reparam_equivalent(model, x, rtol=1e-4)
    assert deployed.config.deploy
    assert not any(isinstance(m, Reparameterizable) and not m.deploy for m in deployed.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules()), "BN left"
    fresh = mlpvision.create_model(name, deploy=True, device="meta")  # built directly, as a deployment loads it
    fresh.load_state_dict(deployed.state_dict(), strict=True, assign=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x[:1]), deployed(x[:1]), rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in REPARAM_MODELS if n.startswith("repmlp_resnet50")])
def test_the_repmlp_resnet50_layouts_at_an_eighth_of_their_width_deploy_exactly(name):
    # make test's cover of the bottleneck and light RepMLP blocks, whose registered models run under make test-zoo
    torch.manual_seed(0)
    model = randomize_bn_(mlpvision.create_model(name, num_classes=4, width=8, img_size=112))
    deployed = assert_reparam_equivalent(model, torch.randn(2, 3, 112, 112), rtol=1e-4)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules()), "BN left"


@pytest.mark.parametrize("name", zoo_params(["resnet18_28", "resnet50"]))
def test_a_resnet_deploys_with_every_batchnorm_folded_into_its_conv(name):
    torch.manual_seed(0)
    model = randomize_bn_(mlpvision.create_model(name))
    x = torch.randn(2, model.in_chans, 32, 32)
    deployed = assert_reparam_equivalent(model, x, rtol=1e-5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    assert deployed.config.deploy and deployed.layer1[0].conv1.bias is not None
    fresh = mlpvision.create_model(name, deploy=True)  # the deploy form built directly holds the folded weights
    fresh.load_state_dict(deployed.state_dict(), strict=True)
    assert set(model.state_dict()) != set(fresh.state_dict())  # the train form keeps torchvision's keys


@pytest.mark.parametrize("name", SMALL_REPARAM)
def test_deploy_form_equals_train_form_float64(name):
    model = randomize_bn_(mlpvision.create_model(name)).double()
    x = torch.randn(2, model.in_chans, model.img_size, model.img_size, dtype=torch.float64)
    assert_reparam_equivalent(model, x, rtol=1e-10)


@pytest.mark.parametrize("name", PURE_MLP)
def test_deployed_pure_mlp_is_fc_only(name):
    deployed = reparameterize(mlpvision.create_model(name).eval())
    for mod_name, m in deployed.named_modules():
        assert not isinstance(m, nn.modules.batchnorm._BatchNorm), mod_name
        if isinstance(m, nn.Conv2d):  # 1x1 convs are per-pixel FC layers; FC3 is stored as a grouped 1x1
            assert m.kernel_size == (1, 1), mod_name


@pytest.mark.parametrize("name", SMALL_REPARAM)
def test_converting_twice_changes_nothing(name):
    once = reparameterize(randomize_bn_(mlpvision.create_model(name)).eval())
    twice = reparameterize(once)
    assert str(once) == str(twice)
    a, b = once.state_dict(), twice.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_inplace_and_copy():
    model = mlpvision.create_model("repmlp_pure_28").eval()
    copy = reparameterize(model)
    assert copy is not model and any(isinstance(m, RepMLPBlock) and not m.deploy for m in model.modules())
    same = reparameterize(model, inplace=True)
    assert same is model and all(m.deploy for m in model.modules() if isinstance(m, RepMLPBlock))


def test_training_mode_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"training mode.*model\.eval"):
        reparameterize(mlpvision.create_model("repmlp_pure_28"))


def test_partition_must_divide_the_map():
    with pytest.raises(ConfigError, match="partition 5x5 does not divide the 16x16 map"):
        RepMLPBlock(4, 4, 16, 5)
    with pytest.raises(ConfigError, match="does not divide a 36x36 stage map"):
        mlpvision.create_model("repmlp_pure_32", img_size=36)


def test_groups_must_divide_channels():
    with pytest.raises(ConfigError, match="groups=3"):
        RepMLPBlock(4, 6, 8, 4, groups=3)


def test_equivalent_weight_is_differentiable():
    block = RepMLPBlock(4, 4, 8, 4, groups=2, kernels=(1, 3))
    weight, bias = block.get_equivalent_weight_bias()
    (weight.sum() + bias.sum()).backward()
    for name, p in block.named_parameters():
        if name.startswith(("fc3", "lp")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---- the fusion math, property-tested -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    c_per_group=st.integers(1, 3),
    o_per_group=st.integers(1, 3),
    groups=st.integers(1, 3),
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    part=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    kernels=st.lists(st.sampled_from([1, 3, 5, 7]), max_size=3, unique=True),
    gp=st.booleans(),
    pp=st.booleans(),
    reduction=st.sampled_from([1, 2]),
)
def test_repmlp_block_reparameterization_property(
    c_per_group, o_per_group, groups, grid, part, kernels, gp, pp, reduction
):
    assume(pp or kernels)
    c, o = c_per_group * groups, o_per_group * groups
    h, w = part
    size = (grid[0] * h, grid[1] * w)
    block = RepMLPBlock(c, o, size, (h, w), groups, tuple(kernels), gp, pp, reduction)
    randomize_bn_(block).double().eval()
    x = torch.randn(2, c, *size, dtype=torch.float64)
    deployed = block.fuse().eval()
    assert deployed.deploy and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), block(x), rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    c_per_group=st.integers(1, 3),
    o_per_group=st.integers(1, 3),
    groups=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    k=st.sampled_from([1, 3, 5, 7]),
)
def test_conv_to_fc_matches_the_conv(c_per_group, o_per_group, groups, h, w, k):
    c, o = c_per_group * groups, o_per_group * groups
    kernel = torch.randn(o, c_per_group, k, k, dtype=torch.float64)
    bias = torch.randn(o, dtype=torch.float64)
    x = torch.randn(3, c, h, w, dtype=torch.float64)
    expected = F.conv2d(x, kernel, bias, padding=k // 2, groups=groups).flatten(1)  # (3, O h w)
    weight, fc_bias = conv_to_fc(kernel, bias, h, w, groups)
    assert weight.shape == (o * h * w, c * h * w // groups)
    # the grouped FC: group i of the input feeds group i of the output
    xg = x.flatten(1).reshape(3, groups, -1)
    wg = weight.reshape(groups, -1, weight.shape[1])
    got = torch.einsum("ngi,goi->ngo", xg, wg).reshape(3, -1) + fc_bias
    torch.testing.assert_close(got, expected)


def test_conv_bn_and_linear_bn_fuse_exactly():
    for module, x in [
        (ConvBN(3, 5, 3, stride=2, groups=1), torch.randn(2, 3, 9, 9)),
        (LinearBN(6, 4), torch.randn(5, 6)),
    ]:
        randomize_bn_(module).eval()
        fused = module.fuse()
        assert not isinstance(fused, Reparameterizable) and type(fused) in (nn.Conv2d, nn.Linear)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), module(x), rtol=1e-5, atol=1e-6)


def test_fuse_bn_and_absorb_bn_formulas():
    bn = randomize_bn_(nn.BatchNorm1d(4)).eval()
    w, b = torch.randn(4, 3), torch.randn(4)
    fw, fb = fuse_bn(w, bn, b)
    x = torch.randn(7, 3)
    torch.testing.assert_close(x @ fw.T + fb, bn(x @ w.T + b))
    bn2 = randomize_bn_(nn.BatchNorm2d(2)).eval()
    w1, b1 = torch.randn(5, 2 * 3), torch.randn(5)
    aw, ab = absorb_bn_into_next_linear(bn2, w1, b1, repeat=3)
    v = torch.randn(4, 2, 3, 1)
    torch.testing.assert_close(bn2(v).flatten(1) @ w1.T + b1, v.flatten(1) @ aw.T + ab)


# ---- sizes against the paper's Table 1 (CIFAR, 32 px) and Table 4 (ImageNet, 224 px) ---------------------------

# name: (params M, FLOPs M) as the paper reports them for the deployed model; "train" rows are the train form
PAPER_SIZES = {
    ("repmlp_pure_32", "deploy"): (22.41, 52.8),
    ("repmlp_pure_32", "train"): (22.91, 118.9),
    ("repmlp_pure_nolp_32", "deploy"): (22.41, 52.8),
    ("repmlp_pure_nogp_32", "deploy"): (22.08, 52.5),
    ("repmlp_pure_fc3conv9_32", "deploy"): (0.81, 66.2),
    ("repmlp_pure_conv9_32", "deploy"): (0.48, 65.8),
    ("wide_convnet_32", "deploy"): (0.50, 65.1),
    ("repmlp_resnet50_g8_224", "deploy"): (40.87, 3890),
    ("repmlp_resnet50_light_g8_224", "deploy"): (57.86, 2919),
    ("repmlpnet_t224", "deploy"): (38.3, 2800),  # RepMLPNet Table: 2.8B FLOPs, 6.7B for B224
    ("repmlpnet_b224", "deploy"): (68.2, 6700),
}


@pytest.mark.parametrize("name, form", sorted(PAPER_SIZES))
def test_sizes_match_the_paper(name, form):
    params, mflops = PAPER_SIZES[(name, form)]
    stats = mlpvision.count(mlpvision.create_model(name, device="meta", deploy=form == "deploy"))
    # the paper's FLOPs are multiply-accumulates; its figures have 2-4 significant digits
    assert stats.params / 1e6 == pytest.approx(params, rel=0.02)
    assert stats.macs / 1e6 == pytest.approx(mflops, rel=0.01)


def test_non_mlp_layers_tells_all_mlp_models_apart():
    from mlpvision.reparam import non_mlp_layers

    fast = mlpvision.create_model("repmlp_fast_28").eval()
    train_form = non_mlp_layers(fast)
    assert any("BatchNorm" in f for f in train_form) and any("kernel (3, 3)" in f for f in train_form)
    assert non_mlp_layers(reparameterize(fast)) == []  # deployed: 2x2 patch stem and 1x1 FCs only
    for name in ("mixer_t4_28", "resmlp_tiny_12_28", "mlp_28"):
        assert non_mlp_layers(mlpvision.create_model(name)) == []
    resnet = non_mlp_layers(reparameterize(mlpvision.create_model("resnet18_28").eval()))
    assert resnet and all("not a patch projection" in f or "BatchNorm" in f for f in resnet)


def test_a_deeper_stage_net_keeps_the_layout_and_deploys_all_mlp():
    from mlpvision.reparam import non_mlp_layers

    base = mlpvision.create_model("repmlp_fast_28")
    assert set(base.state_dict()) == set(mlpvision.create_model("repmlp_fast_28", depth=2).state_dict())
    deeper = mlpvision.create_model("repmlp_fast_28", depth=3)
    blocks = [sum(isinstance(m, RepMLPBlock) for m in stage.modules()) for stage in deeper.stages]
    assert blocks == [3, 3]  # three [RepMLP -> FC] pairs in each of the two stages
    deployed = assert_reparam_equivalent(randomize_bn_(deeper), torch.randn(2, 1, 28, 28), rtol=1e-4)
    assert non_mlp_layers(deployed) == []
    with pytest.raises(ConfigError, match="depth"):
        mlpvision.create_model("repmlp_fast_28", depth=0)
