"""External Attention (Guo et al., "Beyond Self-attention: External Attention using Two Linear Layers for
Visual Tasks", arXiv 2105.02358).

Self-attention compares every token with every other token (O(N^2)). External attention compares each token
with S learnable memory slots shared by the whole data set: ``A = DoubleNorm(F M_kᵀ)``, ``out = A M_v``, two
linear layers and O(N S d) cost, linear in the number of tokens. The double normalisation is a softmax over
the token axis followed by an l1 normalisation over the memory axis.

The small model here is a transformer layout with external attention in place of self-attention:
patch stem + learned position embedding, then pre-norm blocks ``x + EA(LN(x))``, ``x + MLP(LN(x))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import PatchEmbed, PreNormBlock
from .base import ImageClassifier, make_head
from .features import TokenFeatures
from .mixer import stochastic_depth_rates
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family

__all__ = ["EANet", "EANetConfig", "ExternalAttention", "ExternalAttentionBlock"]

PAPER = "External Attention, arXiv 2105.02358"


class ExternalAttention(nn.Module):
    """Multi-head external attention on tokens (B, N, d).

    Args:
        dim: token width d.
        memory_size: number of memory slots S per head.
        num_heads: heads; each attends over its own d / heads slice (1 is the paper's basic form).
        eps: added to the l1 denominator.
    """

    def __init__(self, dim: int, memory_size: int = 64, num_heads: int = 1, eps: float = 1e-9) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.eps = eps
        self.mk = nn.Linear(dim // num_heads, memory_size, bias=False)  # memory keys M_k
        self.mv = nn.Linear(memory_size, dim // num_heads, bias=False)  # memory values M_v
        self.proj = nn.Linear(dim, dim) if num_heads > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        x = x.reshape(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, heads, N, d / heads)
        attn = self.mk(x).softmax(dim=2)  # (B, heads, N, S), normalised over the tokens N
        attn = attn / (attn.sum(dim=3, keepdim=True) + self.eps)  # then l1-normalised over the memory S
        x = self.mv(attn).transpose(1, 2).reshape(b, n, d)
        return self.proj(x)


class ExternalAttentionBlock(PreNormBlock):
    """Pre-norm block: ``x + EA(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(
        self,
        dim: int,
        memory_size: int,
        num_heads: int = 1,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, ExternalAttention(dim, memory_size, num_heads), mlp_ratio, drop, drop_path)


@dataclass(frozen=True, kw_only=True)
class EANetConfig(ModelConfig):
    patch_size: int = option(4, ge=1, le=MAX_SIDE)  # side of a square patch
    embed_dim: int = option(128, ge=1, le=MAX_WIDTH)  # token width
    depth: int = option(6, ge=1, le=MAX_DEPTH)  # number of blocks
    memory_size: int = option(64, ge=1, le=MAX_WIDTH)  # memory slots S (the paper's default)
    num_heads: int = option(4, ge=1, le=1024)  # external-attention heads
    mlp_ratio: float = option(4.0, gt=0, le=64)  # MLP hidden width as a multiple of embed_dim
    drop_rate: float = option(0.0, ge=0, lt=1)  # dropout inside the MLP and before the head
    drop_path_rate: float = option(0.0, ge=0, lt=1)  # stochastic depth, rising linearly over the blocks
    pos_embed: bool = True  # learned position embedding (without it the model is a bag of patches)


class EANet(TokenFeatures, ImageClassifier):
    """A small external-attention transformer built from an :class:`EANetConfig`. Feature i is the output of
    block i, (B, d, H / p, W / p) as a map."""

    def __init__(self, cfg: EANetConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.img_size = cfg.img_size
        self.num_features = cfg.embed_dim
        self.stem = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        # attention over shared memories is blind to token order, so position is given explicitly
        self.pos_embed = nn.Parameter(torch.zeros(1, self.stem.num_patches, cfg.embed_dim)) if cfg.pos_embed else None
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(
            *(
                ExternalAttentionBlock(cfg.embed_dim, cfg.memory_size, cfg.num_heads, cfg.mlp_ratio, cfg.drop_rate, dpr)
                for dpr in stochastic_depth_rates(cfg.drop_path_rate, cfg.depth)
            )
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = make_head(cfg.embed_dim, cfg.num_classes)
        self._init_token_features(cfg.patch_size, self.stem.grid_size, cfg.embed_dim)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, C_in, H, W) -> (B, N, d)
        return x if self.pos_embed is None else x + self.pos_embed

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x.mean(dim=1))  # (B, N, d) -> (B, d)
        return x if pre_logits else self.head(x)


_tiny = partial(EANetConfig, num_classes=10)

VARIANTS = {
    "eanet_tiny_28": Variant(_tiny(img_size=28, in_chans=1), "external-attention net, 28x28x1"),
    "eanet_tiny_32": Variant(_tiny(img_size=32, in_chans=3), "external-attention net, 32x32x3"),
}
register_family("external_attention", EANet, VARIANTS, PAPER)
