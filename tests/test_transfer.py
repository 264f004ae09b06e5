"""Resolution transfer: the block-diagonal expansion equals the original model applied to each tile."""

import pytest
import torch

import mlpvision
from mlpvision.errors import ConfigError
from mlpvision.train.finetune import expand_token_mixing, part_index

from .helpers import randomize_


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
