"""Resolution transfer: the block-diagonal expansion equals the original model applied to each tile."""

import pytest
import torch

import mlpvision
from mlpvision.errors import ConfigError, LimitError
from mlpvision.train.finetune import expand_token_mixing, part_index

from .helpers import randomize_, randomize_bn_


def _tiles(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, kH, kW) -> (B k^2, C, H, W), tiles in raster order."""
    b, c, h, w = x.shape
    return x.reshape(b, c, k, h // k, k, w // k).permute(0, 2, 4, 1, 3, 5).reshape(b * k * k, c, h // k, w // k)


@pytest.mark.parametrize("name", ["mixer_t4_28", "resmlp_tiny_12_28"])
@pytest.mark.parametrize("k", [2, 3])
def test_expanded_model_equals_original_on_each_tile(name, k):
    small = randomize_(mlpvision.create_model(name, depth=2)).eval()
    big = expand_token_mixing(small, 28 * k).eval()
    assert big.img_size == 28 * k and big.num_tokens == k * k * small.num_tokens
    x = torch.randn(2, 1, 28 * k, 28 * k)
    with torch.no_grad():
        feats = big.forward_features(x)  # (B, k^2 S, C), raster order over the big grid
        tile_feats = small.forward_features(_tiles(x, k))  # (B k^2, S, C)
        part, local = part_index(small.stem.grid_size, k)
        expected = tile_feats.reshape(2, k * k, small.num_tokens, -1)[:, part, local]
        torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
        # pooled features are the mean over tiles, so the logits are the mean of the tiles' logits
        torch.testing.assert_close(big(x), small(_tiles(x, k)).reshape(2, k * k, -1).mean(1), rtol=1e-5, atol=1e-5)


def test_mixer_hidden_width_follows_the_paper():
    small = mlpvision.create_model("mixer_t4_28")
    big = expand_token_mixing(small, 56)
    assert big.config.token_mlp_dim == 4 * small.config.token_mlp_dim
    assert big.blocks[0].mlp_tokens.fc1.weight.shape == (4 * 64, 4 * 49)


@pytest.mark.parametrize("name", ["seg_mixer", "seg_resmlp"])
def test_expanded_segmentation_model_maps_each_tile_as_the_original_and_reloads(name, tmp_path):
    """A segmentation model on a token backbone, expanded 2x: its backbone maps of a 128 px image are the 64 px
    model's maps of the four tiles side by side (exactly), so its logits equal the tiles' away from the seams, where
    the decoder's 3x3 conv and the upsampling see the neighbouring tile; the file carries the wider token MLP."""
    small = randomize_bn_(mlpvision.create_model(name)).eval()
    big = expand_token_mixing(small, 128).eval()
    x = torch.randn(2, 1, 128, 128)
    tiles = _tiles(x, 2)  # (B 4, 1, 64, 64): top-left, top-right, bottom-left, bottom-right
    with torch.no_grad():
        for big_map, tile_maps in zip(big.backbone(x), small.backbone(tiles), strict=True):
            side = tile_maps.shape[-1]
            stitched = tile_maps.reshape(2, 2, 2, -1, side, side).permute(0, 3, 1, 4, 2, 5)
            torch.testing.assert_close(big_map, stitched.reshape(big_map.shape), rtol=1e-5, atol=1e-5)
        far = 64 - 2 * small.output_stride  # a feature pixel and the upsampling's reach from the seam
        top_left = small(tiles).reshape(2, 4, small.num_classes, 64, 64)[:, 0]
        torch.testing.assert_close(big(x)[..., :far, :far], top_left[..., :far, :far], rtol=1e-4, atol=1e-4)
        assert (big(x)[..., :64, :64] - top_left).abs().max() > 1e-3  # the seams do differ: the test can see them
    mlpvision.save_model(big, tmp_path / "big.safetensors")
    again = mlpvision.load_checkpoint(tmp_path / "big.safetensors").eval()
    assert again.img_size == 128
    with torch.no_grad():
        torch.testing.assert_close(again(x), big(x))
    with pytest.raises(ConfigError, match="cannot change its input size"):
        expand_token_mixing(mlpvision.create_model("seg_resnet18"), 128)
    with pytest.raises(LimitError, match=r"expanded to 1024 px would have \d+ parameters"):  # counted on meta
        expand_token_mixing(small, 64 * 16)


def test_non_integer_factor_and_other_models_are_refused():
    with pytest.raises(ConfigError, match="integer multiple"):
        expand_token_mixing(mlpvision.create_model("mixer_t4_28"), 42)
    with pytest.raises(ConfigError, match="cannot change its input size"):
        expand_token_mixing(mlpvision.create_model("vit_mini_patch4_28"), 56)


def test_fine_tuning_on_another_task_gets_a_new_head_even_with_as_many_classes(tmp_path):
    from mlpvision.io import save_model
    from mlpvision.train.finetune import load_for_finetuning

    model = mlpvision.create_model("mixer_t4_28", depth=1, embed_dim=16, token_mlp_dim=8, channel_mlp_dim=32)
    torch.nn.init.normal_(model.head.weight)
    path = save_model(model, tmp_path / "m.safetensors")
    assert load_for_finetuning(path, num_classes=10).head.weight.abs().sum() > 0  # the same task: kept
    assert load_for_finetuning(path, num_classes=10, new_head=True).head.weight.abs().sum() == 0  # reset
