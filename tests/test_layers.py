"""Building blocks and counting, with property tests for the math."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mlpvision
from mlpvision.layers import Affine, MaxPool2x2, PatchEmbed
from mlpvision.models.external_attention import ExternalAttention


@settings(max_examples=100, deadline=None)
@given(
    patch=st.integers(1, 5),
    grid=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    chans=st.integers(1, 3),
    dim=st.integers(1, 8),
)
def test_patch_embed_is_a_linear_layer_on_flattened_patches(patch, grid, chans, dim):
    h, w = grid[0] * patch, grid[1] * patch
    embed = PatchEmbed((h, w), patch, chans, dim).double()
    x = torch.randn(2, chans, h, w, dtype=torch.double)
    # (B, C, H, W) -> (B, gh, gw, C, p, p) -> (B, N, C p p), tokens in raster order
    patches = x.reshape(2, chans, grid[0], patch, grid[1], patch).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(2, -1, chans * patch**2)
    expected = patches @ embed.proj.weight.reshape(dim, -1).T + embed.proj.bias
    torch.testing.assert_close(embed(x), expected)


@settings(max_examples=100, deadline=None)
@given(dim=st.integers(1, 16), heads=st.sampled_from([1, 2, 4]), memory=st.integers(1, 32), n=st.integers(1, 20))
def test_external_attention_double_normalisation(dim, heads, memory, n):
    dim *= heads
    ea = ExternalAttention(dim, memory, heads).double()
    x = torch.randn(2, n, dim, dtype=torch.double)
    xh = x.reshape(2, n, heads, dim // heads).transpose(1, 2)
    attn = ea.mk(xh).softmax(dim=2)
    torch.testing.assert_close((attn / attn.sum(dim=3, keepdim=True)).sum(dim=3), torch.ones(2, heads, n).double())
    attn = attn / (attn.sum(dim=3, keepdim=True) + ea.eps)  # the eps matters where a token's attention sum is small
    expected = ea.proj(ea.mv(attn).transpose(1, 2).reshape(2, n, dim))
    torch.testing.assert_close(ea(x), expected)


def test_affine_folds_into_the_next_linear():
    aff, lin = Affine(6), nn.Linear(6, 4)
    with torch.no_grad():
        aff.alpha.normal_(), aff.beta.normal_()
    folded = nn.Linear(6, 4)
    with torch.no_grad():
        folded.weight.copy_(lin.weight * aff.alpha.reshape(1, -1))
        folded.bias.copy_(lin.bias + lin.weight @ aff.beta.reshape(-1))
    x = torch.randn(3, 5, 6)
    torch.testing.assert_close(lin(aff(x)), folded(x))


def test_count_macs_of_known_layers():
    class Tiny(nn.Module):
        in_chans, img_size = 2, 8

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 64, 10)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    stats = mlpvision.count(Tiny())
    assert stats.macs == 64 * 4 * 2 * 9 + 256 * 10
    assert stats.params == 4 * 2 * 9 + 4 + 256 * 10 + 10
    assert stats.flops == 2 * stats.macs


def test_mixer_cost_is_linear_in_tokens_and_vit_is_not():
    # D_S is fixed, so every Mixer matmul scales with the number of patches S: 4x the tokens, 4x the MACs.
    # ViT's attention scores are S x S: its cost grows faster.
    def ratio(name):
        small, large = (mlpvision.create_model(name, img_size=s, device="meta") for s in (224, 448))
        return mlpvision.count(large).macs / mlpvision.count(small).macs

    assert abs(ratio("mixer_s16_224") - 4.0) < 0.01
    assert ratio("vit_small_patch16_224") > 4.3


@settings(max_examples=50, deadline=None)
@given(h=st.integers(2, 9), w=st.integers(2, 9), c=st.integers(1, 3))
def test_maxpool2x2_equals_torch_max_pool(h, w, c):
    x = torch.randn(2, c, h, w)
    torch.testing.assert_close(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2), rtol=0, atol=0)


def test_token_linear_and_token_mlp_equal_the_transposed_form():
    from mlpvision.layers import Mlp, token_linear, token_mlp

    fc, mlp = torch.nn.Linear(7, 5), Mlp(7, 9)
    x = torch.randn(3, 7, 4, requires_grad=True)
    ref = fc(x.transpose(1, 2)).transpose(1, 2)
    out = token_linear(fc, x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (x, fc.weight, fc.bias), g)
    ref_grads = torch.autograd.grad(ref, (x, fc.weight, fc.bias), g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(token_mlp(mlp, x[:, :, :]), mlp(x.transpose(1, 2)).transpose(1, 2))
