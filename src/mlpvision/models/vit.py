"""Vision Transformer baseline (Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv 2010.11929).

Patches plus a class token and a learned position embedding, then pre-norm blocks of multi-head
self-attention and an MLP. Attention costs O(N^2 d) in the number of tokens N, the contrast to Mixer's
linear cost. State-dict keys match timm's ``vit_*`` models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import PatchEmbed, PreNormBlock
from .base import ImageClassifier, make_head
from .features import TokenFeatures
from .mixer import stochastic_depth_rates
from .pretrained_cfg import IMAGENET_INCEPTION
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family

__all__ = ["Attention", "ViTBlock", "ViTConfig", "VisionTransformer"]

PAPER = "ViT, arXiv 2010.11929"


@dataclass(frozen=True, kw_only=True)
class ViTConfig(ModelConfig):
    patch_size: int = option(16, ge=1, le=MAX_SIDE)  # side of a square patch
    embed_dim: int = option(768, ge=1, le=MAX_WIDTH)  # token width
    depth: int = option(12, ge=1, le=MAX_DEPTH)  # number of transformer blocks
    num_heads: int = option(12, ge=1, le=1024)  # attention heads; must divide embed_dim
    mlp_ratio: float = option(4.0, gt=0, le=64)  # MLP hidden width as a multiple of embed_dim
    drop_rate: float = option(0.0, ge=0, lt=1)  # dropout after the position embedding, inside the MLP and before the
    # head
    attn_drop_rate: float = option(0.0, ge=0, lt=1)  # dropout on the attention weights
    drop_path_rate: float = option(0.0, ge=0, lt=1)  # stochastic depth, rising linearly over the blocks
    pos_embed: bool = True  # learned position embedding (without it the tokens are an unordered set)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (PyTorch's scaled-dot-product kernel)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, c / heads)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class ViTBlock(PreNormBlock):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, Attention(dim, num_heads, attn_drop, drop), mlp_ratio, drop, drop_path)


class VisionTransformer(TokenFeatures, ImageClassifier):
    """ViT with a class token, built from a :class:`ViTConfig`. Feature i is the output of block i without the
    class token, (B, D, H / p, W / p) as a map."""

    num_prefix_tokens = 1

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.img_size = cfg.img_size
        self.num_features = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        tokens = self.patch_embed.num_patches + 1
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, cfg.embed_dim)) if cfg.pos_embed else None
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.Sequential(
            *(
                ViTBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.drop_rate, cfg.attn_drop_rate, dpr)
                for dpr in stochastic_depth_rates(cfg.drop_path_rate, cfg.depth)
            )
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = make_head(cfg.embed_dim, cfg.num_classes)
        self._init_token_features(cfg.patch_size, self.patch_embed.grid_size, cfg.embed_dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) position embedding and linears, small class token, zero head."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
                if name == "head":
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=0.02)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, C_in, H, W) -> (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # -> (B, 1 + N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return self.pos_drop(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x[:, 0])  # the class token: (B, 1 + N, D) -> (B, D)
        return x if pre_logits else self.head(x)


# Small-image variant sized like the tiny Mixer (patch 4, width 128) so the two compare at equal shape.
_mini = partial(ViTConfig, patch_size=4, embed_dim=128, depth=6, num_heads=4)

VARIANTS = {
    "vit_tiny_patch16_224": Variant(ViTConfig(embed_dim=192, num_heads=3), "ViT-Ti/16", "vit_tiny_patch16_224"),
    "vit_small_patch16_224": Variant(ViTConfig(embed_dim=384, num_heads=6), "ViT-S/16", "vit_small_patch16_224"),
    "vit_base_patch16_224": Variant(ViTConfig(), "ViT-B/16", "vit_base_patch16_224"),
    "vit_mini_patch4_28": Variant(_mini(img_size=28, in_chans=1, num_classes=10), "mini ViT, 28x28x1"),
    "vit_mini_patch4_32": Variant(_mini(img_size=32, in_chans=3, num_classes=10), "mini ViT, 32x32x3"),
}
register_family(
    "vit", VisionTransformer, VARIANTS, PAPER, replace(IMAGENET_INCEPTION, first_conv="patch_embed.proj", crop_pct=0.9)
)
