"""timm's weights load strictly into our Mixer, ResMLP and ViT and give the same outputs."""

import pytest
import torch

import mlpvision

from .helpers import randomize_

timm = pytest.importorskip("timm")
from timm.models.mlp_mixer import Affine as TimmAffine  # noqa: E402
from timm.models.mlp_mixer import MlpMixer as TimmMixer  # noqa: E402
from timm.models.mlp_mixer import ResBlock as TimmResBlock  # noqa: E402


def _compare(ours, ref, x):
    randomize_(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval(), ref.eval()
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.abs().max() > 1e-3  # randomized: the output is not trivially zero
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_small_mixer_matches_timm():
    # a non-square token/channel ratio so that swapped widths would not load
    ours = mlpvision.create_model("mixer_t4_28", depth=3)
    ref = TimmMixer(
        num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=3, embed_dim=128, mlp_ratio=(0.5, 4.0)
    )
    _compare(ours, ref, torch.randn(3, 1, 28, 28))


def test_small_resmlp_matches_timm():
    from functools import partial

    ours = mlpvision.create_model("resmlp_tiny_12_28", depth=3)
    ref = TimmMixer(
        num_classes=10,
        img_size=28,
        in_chans=1,
        patch_size=4,
        num_blocks=3,
        embed_dim=128,
        mlp_ratio=4,
        block_layer=partial(TimmResBlock, init_values=0.1),
        norm_layer=TimmAffine,
        stem_norm=False,
    )
    _compare(ours, ref, torch.randn(3, 1, 28, 28))


@pytest.mark.parametrize("name", ["mixer_s32_224", "resmlp_12_224", "vit_tiny_patch16_224", "resnet18"])
def test_full_size_model_matches_timm(name):
    ours = mlpvision.create_model(name)
    ref = timm.create_model(name, pretrained=False)
    _compare(ours, ref, torch.randn(2, 3, 224, 224))


def test_timm_state_dict_loads_through_pretrained(tmp_path):
    from safetensors.torch import save_file

    ref = randomize_(timm.create_model("resmlp_12_224", pretrained=False)).eval()
    path = tmp_path / "resmlp_12_224.safetensors"
    save_file(ref.state_dict(), str(path))
    ours = mlpvision.create_model("resmlp_12_224", pretrained=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
