"""The papers' checkpoint layouts: checkpoints built here from each code base's documented key names and shapes
(random tensors, small variants) convert with a strict, complete load, compute what the original architecture
computes, and survive the round trip through a model file."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlpvision.errors import CheckpointError, ConfigError
from mlpvision.io import load_checkpoint, read_metadata
from mlpvision.io.foreign import convert_checkpoint, map_checkpoint, read_foreign_checkpoint
from mlpvision.models import create_model


def _randomize_bn_(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)


def _bn(prefix: str, n: int, g: torch.Generator) -> dict:
    return {
        f"{prefix}.weight": torch.rand(n, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(n, generator=g) * 0.1,
        f"{prefix}.running_mean": torch.randn(n, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(n, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(100),
    }


def _total(tensors: dict) -> float:
    return sum(float(v.double().abs().sum()) for k, v in tensors.items() if not k.endswith("num_batches_tracked"))


# ---- DeiT ResMLP --------------------------------------------------------------------------------------------------


def deit_resmlp(depth: int, dim: int, patch: int, tokens: int, classes: int, in_chans: int = 3) -> dict:
    """facebookresearch/deit resmlp_models.py: patch_embed.proj, blocks.i.{norm1,norm2}.{alpha,beta} (dim,),
    attn (tokens, tokens), mlp.fc1/fc2, gamma_1/gamma_2 (dim,), norm.alpha/beta, head."""
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {"patch_embed.proj.weight": r(dim, in_chans, patch, patch), "patch_embed.proj.bias": r(dim)}
    for i in range(depth):
        b = f"blocks.{i}."
        sd |= {b + "norm1.alpha": 1 + r(dim), b + "norm1.beta": r(dim), b + "attn.weight": r(tokens, tokens)}
        sd |= {b + "attn.bias": r(tokens), b + "norm2.alpha": 1 + r(dim), b + "norm2.beta": r(dim)}
        sd |= {b + "mlp.fc1.weight": r(4 * dim, dim), b + "mlp.fc1.bias": r(4 * dim)}
        sd |= {b + "mlp.fc2.weight": r(dim, 4 * dim), b + "mlp.fc2.bias": r(dim)}
        sd |= {b + "gamma_1": r(dim), b + "gamma_2": r(dim)}
    sd |= {"norm.alpha": 1 + r(dim), "norm.beta": r(dim), "head.weight": r(classes, dim), "head.bias": r(classes)}
    return sd


def deit_resmlp_forward(sd: dict, x: torch.Tensor, depth: int, patch: int) -> torch.Tensor:
    """The DeiT ResMLP forward, written from its definition."""
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)  # (B, N, d)
    for i in range(depth):
        b = f"blocks.{i}."
        y = sd[b + "norm1.alpha"] * x + sd[b + "norm1.beta"]
        y = F.linear(y.transpose(1, 2), sd[b + "attn.weight"], sd[b + "attn.bias"]).transpose(1, 2)
        x = x + sd[b + "gamma_1"] * y
        y = sd[b + "norm2.alpha"] * x + sd[b + "norm2.beta"]
        y = F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])), sd[b + "mlp.fc2.weight"])
        x = x + sd[b + "gamma_2"] * (y + sd[b + "mlp.fc2.bias"])
    x = (sd["norm.alpha"] * x + sd["norm.beta"]).mean(dim=1)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def test_deit_resmlp_converts_and_computes_the_same(tmp_path):
    sd = deit_resmlp(depth=12, dim=128, patch=4, tokens=64, classes=7)
    torch.save({"model": sd}, tmp_path / "resmlp.pth")
    r = convert_checkpoint("deit-resmlp", "resmlp_tiny_12_32", tmp_path / "resmlp.pth", tmp_path / "out.safetensors")
    assert (r.num_classes, r.deploy) == (7, False)
    model = load_checkpoint(r.path)  # strict, complete
    assert math.isclose(_total(model.state_dict()), _total(sd), rel_tol=1e-9)  # every tensor landed, once
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), deit_resmlp_forward(sd, x, 12, 4), atol=1e-5, rtol=1e-4)
    assert read_metadata(r.path)["mlpvision.converted_from"] == "deit-resmlp"
    assert model.pretrained_cfg["mean"] == (0.4914, 0.4822, 0.4465)  # the small variant's data set


# ---- JAX Mixer --------------------------------------------------------------------------------------------------


def jax_mixer(depth: int, dim: int, patch: int, tokens: int, ds: int, dc: int, classes: int | None) -> dict:
    """google-research/vision_transformer Flax Mixer params, flattened with '/': stem/kernel (p, p, in, C) HWIO,
    MixerBlock_i/{LayerNorm_0,LayerNorm_1}/{scale,bias}, {token,channel}_mixing/Dense_{0,1}/{kernel (in, out),bias},
    pre_head_layer_norm, head/kernel (C, classes)."""
    g = np.random.default_rng(2)
    r = lambda *s: (g.standard_normal(s) * 0.1).astype(np.float32)  # noqa: E731
    p = {"stem/kernel": r(patch, patch, 3, dim), "stem/bias": r(dim)}
    for i in range(depth):
        b = f"MixerBlock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_1"):
            p |= {f"{b}{ln}/scale": 1 + r(dim), f"{b}{ln}/bias": r(dim)}
        for name, inner, width in (("token_mixing", tokens, ds), ("channel_mixing", dim, dc)):
            p |= {f"{b}{name}/Dense_0/kernel": r(inner, width), f"{b}{name}/Dense_0/bias": r(width)}
            p |= {f"{b}{name}/Dense_1/kernel": r(width, inner), f"{b}{name}/Dense_1/bias": r(inner)}
    p |= {"pre_head_layer_norm/scale": 1 + r(dim), "pre_head_layer_norm/bias": r(dim)}
    if classes:
        p |= {"head/kernel": r(dim, classes), "head/bias": r(classes)}
    return p


def jax_mixer_forward(p: dict, x: torch.Tensor, depth: int, patch: int) -> torch.Tensor:
    """The Flax Mixer's forward, from its definition (with exact GELU, as ours)."""
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    x = x.permute(0, 2, 3, 1)  # NHWC, as Flax
    B, H, W, C = x.shape
    patches = x.reshape(B, H // patch, patch, W // patch, patch, C).permute(0, 1, 3, 2, 4, 5)
    x = torch.einsum("bhwijc,ijco->bhwo", patches, t["stem/kernel"]) + t["stem/bias"]
    x = x.reshape(B, -1, x.shape[-1])

    def mlp(y, name):
        y = F.gelu(y @ t[f"{name}/Dense_0/kernel"] + t[f"{name}/Dense_0/bias"])
        return y @ t[f"{name}/Dense_1/kernel"] + t[f"{name}/Dense_1/bias"]

    def ln(y, name):
        return F.layer_norm(y, y.shape[-1:], t[f"{name}/scale"], t[f"{name}/bias"], eps=1e-6)

    for i in range(depth):
        b = f"MixerBlock_{i}/"
        x = x + mlp(ln(x, b + "LayerNorm_0").transpose(1, 2), b + "token_mixing").transpose(1, 2)
        x = x + mlp(ln(x, b + "LayerNorm_1"), b + "channel_mixing")
    x = ln(x, "pre_head_layer_norm").mean(dim=1)
    return x @ t["head/kernel"] + t["head/bias"]


def test_jax_mixer_npz_converts_and_computes_the_same(tmp_path):
    p = jax_mixer(depth=8, dim=128, patch=4, tokens=64, ds=64, dc=512, classes=5)
    np.savez(tmp_path / "mixer.npz", **p)
    r = convert_checkpoint("jax-mixer", "mixer_t4_32", tmp_path / "mixer.npz", tmp_path / "m.safetensors")
    model = load_checkpoint(r.path)
    assert r.num_classes == 5 and model.num_classes == 5
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), jax_mixer_forward(p, x, 8, 4), atol=1e-4, rtol=1e-4)


def test_jax_mixer_without_head_gives_a_headless_model(tmp_path):
    np.savez(tmp_path / "m.npz", **jax_mixer(8, 128, 4, 64, 64, 512, classes=None))
    r = convert_checkpoint("jax-mixer", "mixer_t4_32", tmp_path / "m.npz", tmp_path / "m.safetensors")
    assert r.num_classes == 0 and load_checkpoint(r.path).num_classes == 0


# ---- RepMLPNet: official and mmpretrain ---------------------------------------------------------------------------


def official_repmlpnet(model, deploy: bool = False) -> dict:
    """An official RepMLPNet checkpoint (DingXiaoH/RepMLP repmlpnet.py) with the weights of ``model`` (our train
    form), written key by key from the official names: conv_embedding.{conv,bn}, stages.i.j.{prebn1,prebn2},
    repmlp_block.gp.fc{1,2} (1x1 convs), repmlp_block.fc3 (S h w, h w, 1, 1) + fc3_bn (S) + repconvK.{conv,bn},
    ffn_block.ffn_fc{1,2}.{conv,bn}, embeds.i.{conv,bn}, head_norm, head. ``deploy``: after the official
    locality_injection (fc3 with bias (S h w,), no fc3_bn, no repconvK)."""
    own = model.state_dict()
    sd = {}

    def copy(src, dst):
        for k, v in own.items():
            if k.startswith(src + "."):
                sd[dst + k[len(src) :]] = v.clone()

    copy("stem.0", "conv_embedding")
    for i, stage in enumerate(model.stages):
        for j, unit in enumerate(stage):
            o, b = f"stages.{i}.{j}.", f"stages.{i}.{j}.repmlp_block."
            copy(o + "mixer.norm", o + "prebn1")
            copy(o + "ffn.norm", o + "prebn2")
            for n in (1, 2):
                w = getattr(unit.mixer, f"gp_fc{n}")
                sd[f"{b}gp.fc{n}.weight"] = w.weight.detach().clone()[:, :, None, None]
                sd[f"{b}gp.fc{n}.bias"] = w.bias.detach().clone()
                copy(o + f"ffn.fc{n}", o + f"ffn_block.ffn_fc{n}")
            if deploy:
                weight, bias = unit.mixer.get_equivalent_weight_bias()  # FC3 + BN + LP, as locality_injection
                sd[b + "fc3.weight"] = weight.detach().reshape(unit.mixer.fc3.weight.shape).clone()
                sd[b + "fc3.bias"] = bias.detach().reshape(-1).clone()
            else:
                copy(o + "mixer.fc3", b + "fc3")
                copy(o + "mixer.fc3_bn", b + "fc3_bn")
                for k in unit.mixer.kernels:
                    copy(o + f"mixer.lp.conv{k}", b + f"repconv{k}")
    for i in range(len(model.downsamples)):
        copy(f"downsamples.{i}.0", f"embeds.{i}")
    copy("head_norm", "head_norm")
    copy("head", "head")
    return sd


def to_mmpretrain(sd: dict) -> dict:
    """The same weights under mmpretrain's names: backbone.patch_embed.{projection,norm}, backbone.stages.i.j.
    {norm1,norm2}, gp.conv{1,2}.conv, backbone.downsample_layers.i.{conv,bn}, backbone.final_norm, head.fc."""
    out = {}
    for k, v in sd.items():
        k = k.replace("conv_embedding.conv", "backbone.patch_embed.projection")
        k = k.replace("conv_embedding.bn", "backbone.patch_embed.norm")
        k = k.replace("prebn1", "norm1").replace("prebn2", "norm2")
        k = k.replace("gp.fc1.", "gp.conv1.conv.").replace("gp.fc2.", "gp.conv2.conv.")
        if k.startswith("stages."):
            k = "backbone." + k
        k = k.replace("embeds.", "backbone.downsample_layers.") if k.startswith("embeds.") else k
        k = k.replace("head_norm.", "backbone.final_norm.") if k.startswith("head_norm.") else k
        k = k.replace("head.", "head.fc.") if k.startswith("head.") else k
        out[k] = v
    return out


SMALL_NET = {"channels": (16, 32), "sets": (16, 32)}  # repmlpnet_32 at a quarter of its width


@pytest.fixture(scope="module")
def repmlpnet():
    torch.manual_seed(0)
    model = create_model("repmlpnet_32", num_classes=6, **SMALL_NET)
    _randomize_bn_(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("head"):
                p.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize("layout", ["official-repmlpnet", "mmpretrain-repmlpnet"])
@pytest.mark.parametrize("deploy", [False, True])
def test_repmlpnet_layouts_convert_to_the_same_function(repmlpnet, tmp_path, layout, deploy):
    sd = official_repmlpnet(repmlpnet, deploy=deploy)
    if layout == "mmpretrain-repmlpnet":
        sd = to_mmpretrain(sd)
    torch.save({"state_dict": sd, "meta": {"epoch": 3}}, tmp_path / "ckpt.pth")
    r = convert_checkpoint(layout, "repmlpnet_32", tmp_path / "ckpt.pth", tmp_path / "out.safetensors", **SMALL_NET)
    assert r.deploy == deploy and r.num_classes == 6
    model = load_checkpoint(r.path)
    assert model.config.deploy == deploy
    if not deploy:
        assert math.isclose(_total(model.state_dict()), _total(sd), rel_tol=1e-9)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), repmlpnet(x), atol=1e-4, rtol=1e-4)


def test_an_unmapped_key_is_named(repmlpnet, tmp_path):
    sd = official_repmlpnet(repmlpnet)
    sd["stages.0.0.repmlp_block.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"stages\.0\.0\.repmlp_block\.extra\.weight"):
        map_checkpoint("official-repmlpnet", "repmlpnet_32", sd, **SMALL_NET)
    sd.pop("stages.0.0.repmlp_block.extra.weight")
    sd.pop("stages.1.1.prebn2.weight")
    with pytest.raises(CheckpointError, match=r"missing: stages\.1\.1\.ffn\.norm\.weight"):
        map_checkpoint("official-repmlpnet", "repmlpnet_32", sd, **SMALL_NET)


def test_a_layout_for_another_family_is_refused():
    with pytest.raises(ConfigError, match="RepMLPNet"):
        map_checkpoint("official-repmlpnet", "mixer_t4_32", {})


# ---- RepMLP-ResNet ---------------------------------------------------------------------------------------------

# our branch positions -> the official block's names (bottleneck: conv1-conv3; RepMLP bottleneck: btnk_*; light)
_PLAIN = {"branch.0.0": "conv1", "branch.1.0": "conv2", "branch.2": "conv3"}
_BTNK = {
    "branch.0.0": "btnk_conv1",
    "branch.1.0.0": "btnk_conv2",
    "branch.1.1": "btnk_repmlp",
    "branch.1.3.0": "btnk_conv4",
    "branch.2": "btnk_conv5",
}
_LIGHT = {"branch.0.0": "light_conv1", "branch.1": "light_repmlp", "branch.3": "light_conv3"}
_REPMLP = {"gp.fc1": "fc1_fc2.fc1", "gp.fc2": "fc1_fc2.fc2", "gp.bn": "avg.bn", "lp.conv": "repconv"}


def official_repmlp_resnet(model) -> dict:
    """An official RepMLP-ResNet-50 checkpoint (repmlp_resnet.py / repmlp_blocks.py names) of ``model``'s weights."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("stem.0.0."):
            sd["stage0.0." + k[len("stem.0.0.") :]] = v
            continue
        if k.startswith("head."):
            sd["linear." + k[5:]] = v
            continue
        _, s, i, rest = k.split(".", 3)
        block = model.stages[int(s)][int(i)]
        has_mlp = any(type(m).__name__ == "RepMLPBlock" for m in block.modules())
        light = has_mlp and len(block.branch) == 4
        table = _LIGHT if light else (_BTNK if has_mlp else _PLAIN)
        name = rest
        if rest.startswith("shortcut."):
            name = rest
        else:
            prefix = next(p for p in sorted(table, key=len, reverse=True) if rest.startswith(p + "."))
            tail = rest[len(prefix) + 1 :]
            if table[prefix].endswith("repmlp"):
                for ours, theirs in _REPMLP.items():
                    tail = tail.replace(ours, theirs)
            name = f"{table[prefix]}.{tail}"
        sd[f"stage{int(s) + 1}.{i}.{name}"] = v
    return sd


@pytest.mark.parametrize("name", ["repmlp_resnet50_g8_224", "repmlp_resnet50_light_g4_224"])
def test_official_repmlp_resnet_converts(tmp_path, name):
    small = {"width": 8, "img_size": 112}  # the ResNet-50 layout at 1/8 width: c3 at 14 px, c4 at 7 px
    torch.manual_seed(0)
    ours = create_model(name, num_classes=4, **small)
    _randomize_bn_(ours)
    ours.eval()
    sd = official_repmlp_resnet(ours)
    assert any(".btnk_repmlp.fc1_fc2.fc1.weight" in k or ".light_repmlp.avg.bn.weight" in k for k in sd)
    torch.save(sd, tmp_path / "r.pth")
    r = convert_checkpoint("official-repmlp-resnet", name, tmp_path / "r.pth", tmp_path / "r.safetensors", **small)
    model = load_checkpoint(r.path)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ours(x))
    if "light" in name:
        return  # the deploy-form layout is the same for both block forms
    # its deploy form (the official convert.py output keeps the names, with biased convs and fc3) converts too
    from mlpvision.reparam import reparameterize

    deployed = reparameterize(ours)
    dsd = {}
    for k, v in official_repmlp_resnet(deployed).items():
        k = k.replace(".weight", ".conv.weight").replace(".bias", ".conv.bias") if "repmlp" not in k else k
        dsd[k.replace("fc1_fc2.fc1.conv.", "fc1_fc2.fc1.")] = v
    dsd = {k.replace("linear.conv.", "linear."): v for k, v in dsd.items()}
    torch.save(dsd, tmp_path / "d.pth")
    r = convert_checkpoint("official-repmlp-resnet", name, tmp_path / "d.pth", tmp_path / "d.safetensors", **small)
    assert r.deploy
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(r.path)(x), ours(x), atol=1e-4, rtol=1e-4)


# ---- reading ------------------------------------------------------------------------------------------------------


def test_a_pickle_with_code_is_refused_in_one_line(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(CheckpointError, match="weights-only") as e:
        read_foreign_checkpoint(tmp_path / "evil.pth")
    assert "\n" not in str(e.value)


def test_an_object_array_in_npz_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="npz"):
        read_foreign_checkpoint(tmp_path / "o.npz")


@pytest.mark.parametrize(("name", "millions"), [("repmlpnet_b224", 68.24), ("repmlpnet_b256", 96.45)])
def test_repmlpnet_sizes_match_the_released_checkpoints(name, millions):
    # mmpretrain's model index lists the converted official checkpoints at these parameter counts
    model = create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)


def test_the_convert_command(tmp_path, capsys):
    from mlpvision.cli import main
    from mlpvision.cli.convert import LAYOUTS
    from mlpvision.io.foreign import SOURCES

    assert set(LAYOUTS) == set(SOURCES)
    torch.save({"model": deit_resmlp(12, 128, 4, 64, 10)}, tmp_path / "r.pth")
    args = ["convert", "--from", "deit-resmlp", "--model", "resmlp_tiny_12_32", str(tmp_path / "r.pth")]
    assert main([*args, str(tmp_path / "r.safetensors")]) == 0
    assert "10 classes" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "r.safetensors").num_classes == 10
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert main([*args[:-1], str(tmp_path / "bad.pth"), str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pth" in err
    assert not (tmp_path / "b.safetensors").exists()
