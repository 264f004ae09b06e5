"""MLP-Mixer (Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", arXiv 2105.01601).

An image is cut into S non-overlapping patches, each projected to C channels. Every block mixes information
across patches with a token-mixing MLP (shared by all channels, width D_S) and then within each patch with a
channel-mixing MLP (shared by all patches, width D_C); both are pre-LayerNorm residual branches. There is no
position embedding: the token-mixing weights are position-specific by construction. Cost is linear in S.

State-dict keys are identical to timm's ``MlpMixer`` so weights interchange.
:class:`PatchMlpNet` is the skeleton shared with ResMLP: stem → blocks → norm → pool → head.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import Mlp, PatchEmbed, drop_path_or_identity, lecun_normal_, token_mlp
from .base import ImageClassifier, make_head
from .features import TokenFeatures
from .pretrained_cfg import IMAGENET_INCEPTION
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family

__all__ = ["MixerBlock", "MixerConfig", "MlpMixer", "PatchMlpNet", "UntiedTokenMlp"]

PAPER = "MLP-Mixer, arXiv 2105.01601"


@dataclass(frozen=True, kw_only=True)
class MixerConfig(ModelConfig):
    patch_size: int = option(16, ge=1, le=MAX_SIDE)  # side of a square patch; tokens S = (img_size / patch_size)^2
    embed_dim: int = option(512, ge=1, le=MAX_WIDTH)  # hidden width C of every token
    depth: int = option(8, ge=1, le=MAX_DEPTH)  # number of Mixer blocks
    token_mlp_dim: int = option(256, ge=1, le=MAX_WIDTH)  # D_S, hidden width of the token-mixing MLP (paper: C / 2,
    # independent of S)
    channel_mlp_dim: int = option(2048, ge=1, le=MAX_WIDTH)  # D_C, hidden width of the channel-mixing MLP (paper: 4 C)
    drop_rate: float = option(0.0, ge=0, lt=1)  # dropout inside the MLPs and before the head
    drop_path_rate: float = option(0.0, ge=0, lt=1)  # stochastic depth, rising linearly from 0 to this over the blocks
    pos_embed: bool = False  # add a learned position embedding after the stem (the paper has none: the lab's test)
    token_mixing_groups: int = option(1, ge=1, le=MAX_WIDTH)  # channel groups, each with its own token-mixing MLP
    # (1: tied across all channels, as the paper; embed_dim: untied, one per channel, the paper's appendix ablation)


class UntiedTokenMlp(nn.Module):
    """Token-mixing MLPs untied across channels: each of ``groups`` channel groups has its own two layers over the
    S tokens (the MLP-Mixer paper's alternative to tying, at the same FLOPs and ``groups`` times the parameters).

    Args:
        num_tokens: number of patches S.
        hidden: hidden width D_S of each group's MLP.
        groups: channel groups G (each of C / G channels).
        drop: dropout after the activation and after the second layer.
    """

    def __init__(self, num_tokens: int, hidden: int, groups: int, drop: float = 0.0) -> None:
        super().__init__()
        self.groups = groups
        self.fc1_weight = nn.Parameter(torch.empty(groups, hidden, num_tokens))
        self.fc1_bias = nn.Parameter(torch.zeros(groups, hidden))
        self.fc2_weight = nn.Parameter(torch.empty(groups, num_tokens, hidden))
        self.fc2_bias = nn.Parameter(torch.zeros(groups, num_tokens))
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for w in (self.fc1_weight, self.fc2_weight):  # xavier-uniform per group, as a tied MLP's linears
            bound = (6.0 / (w.shape[1] + w.shape[2])) ** 0.5
            nn.init.uniform_(w, -bound, bound)
        nn.init.normal_(self.fc1_bias, std=1e-6)
        nn.init.normal_(self.fc2_bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.shape
        x = x.reshape(b, s, self.groups, c // self.groups)  # (B, S, G, C/G)
        h = torch.einsum("bsgc,gds->bgdc", x, self.fc1_weight) + self.fc1_bias[None, :, :, None]  # (B, G, D_S, C/G)
        h = self.drop(self.act(h))
        y = torch.einsum("bgdc,gsd->bsgc", h, self.fc2_weight) + self.fc2_bias.T[None, :, :, None]  # (B, S, G, C/G)
        return self.drop(y).reshape(b, s, c)


class MixerBlock(nn.Module):
    """One Mixer layer: token mixing then channel mixing, each a pre-norm residual MLP.

    Args:
        dim: token width C.
        num_tokens: number of patches S.
        token_mlp_dim: hidden width D_S of the token-mixing MLP.
        channel_mlp_dim: hidden width D_C of the channel-mixing MLP.
        drop: dropout inside the MLPs.
        drop_path: stochastic depth probability of both branches.
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        token_mlp_dim: int,
        channel_mlp_dim: int,
        drop: float = 0.0,
        drop_path: float = 0.0,
        token_mixing_groups: int = 1,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = (
            Mlp(num_tokens, token_mlp_dim, drop=drop)
            if token_mixing_groups == 1
            else UntiedTokenMlp(num_tokens, token_mlp_dim, token_mixing_groups, drop)
        )
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, channel_mlp_dim, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        y = token_mlp(self.mlp_tokens, y) if isinstance(self.mlp_tokens, Mlp) else self.mlp_tokens(y)
        x = x + self.drop_path(y)  # token mixing: MLP over S
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))  # channel mixing: MLP over C


class PatchMlpNet(TokenFeatures, ImageClassifier):
    """Patch stem → a stack of blocks → norm → global average pool → linear head.

    Subclasses build ``blocks`` and ``norm`` for their family and pass them in. Provides the uniform model
    interface (``forward_features``, ``forward_head``, ``reset_classifier``), timm's initialisation, and the
    backbone interface of :class:`~mlpvision.models.features.TokenFeatures`: feature i is the output of block i,
    (B, C, H / p, W / p) as a map.
    """

    def __init__(self, cfg: ModelConfig, blocks: list[nn.Module], norm: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.img_size = cfg.img_size
        self.num_features = embed_dim
        self.stem = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, embed_dim)
        with_pos = getattr(cfg, "pos_embed", False)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.stem.num_patches, embed_dim)) if with_pos else None
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm
        self.head_drop = nn.Dropout(getattr(cfg, "drop_rate", 0.0))
        self.head = make_head(embed_dim, cfg.num_classes)
        self._init_token_features(cfg.patch_size, self.stem.grid_size, embed_dim)
        self.init_weights()

    @property
    def num_tokens(self) -> int:
        return self.stem.num_patches

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's Mixer init: xavier-uniform linears, near-zero MLP biases, LeCun-normal stem, zero head."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                if name == "head":
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)
                    continue
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    if "mlp" in name:
                        nn.init.normal_(m.bias, std=1e-6)
                    else:
                        nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                lecun_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, C_in, H, W) -> (B, S, C)
        return x if self.pos_embed is None else x + self.pos_embed

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x.mean(dim=1))  # (B, S, C) -> (B, C)
        return x if pre_logits else self.head(x)


def stochastic_depth_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Drop-path probability per block, rising linearly from 0 to ``drop_path_rate``."""
    return [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]


class MlpMixer(PatchMlpNet):
    """MLP-Mixer built from a :class:`MixerConfig`."""

    def __init__(self, cfg: MixerConfig) -> None:
        if cfg.token_mixing_groups < 1 or cfg.embed_dim % cfg.token_mixing_groups:
            raise ConfigError(
                f"token_mixing_groups must divide embed_dim ({cfg.embed_dim}), got {cfg.token_mixing_groups}"
            )
        num_tokens = (cfg.img_size // cfg.patch_size) ** 2
        blocks = [
            MixerBlock(
                cfg.embed_dim,
                num_tokens,
                cfg.token_mlp_dim,
                cfg.channel_mlp_dim,
                cfg.drop_rate,
                dpr,
                token_mixing_groups=cfg.token_mixing_groups,
            )
            for dpr in stochastic_depth_rates(cfg.drop_path_rate, cfg.depth)
        ]
        super().__init__(cfg, blocks, nn.LayerNorm(cfg.embed_dim, eps=1e-6), cfg.embed_dim)


def _paper(depth: int, dim: int, patch: int) -> MixerConfig:
    """A paper variant (Table 1): D_S = C / 2 and D_C = 4 C for every size."""
    return MixerConfig(patch_size=patch, embed_dim=dim, depth=depth, token_mlp_dim=dim // 2, channel_mlp_dim=4 * dim)


# Small-image variants: patch 4 gives 7x7 = 49 tokens on 28 px (8x8 = 64 on 32 px), C = 128 keeps an epoch of
# Fashion-MNIST to about a minute on 2 CPU cores; D_S = C / 2 and D_C = 4 C as in the paper.
_tiny = partial(MixerConfig, patch_size=4, embed_dim=128, depth=8, token_mlp_dim=64, channel_mlp_dim=512)

VARIANTS = {
    "mixer_s32_224": Variant(_paper(8, 512, 32), "Mixer-S/32", "mixer_s32_224"),
    "mixer_s16_224": Variant(_paper(8, 512, 16), "Mixer-S/16", "mixer_s16_224"),
    "mixer_b32_224": Variant(_paper(12, 768, 32), "Mixer-B/32", "mixer_b32_224"),
    "mixer_b16_224": Variant(_paper(12, 768, 16), "Mixer-B/16", "mixer_b16_224"),
    "mixer_l32_224": Variant(_paper(24, 1024, 32), "Mixer-L/32", "mixer_l32_224"),
    "mixer_l16_224": Variant(_paper(24, 1024, 16), "Mixer-L/16", "mixer_l16_224"),
    "mixer_h14_224": Variant(_paper(32, 1280, 14), "Mixer-H/14"),
    "mixer_t4_28": Variant(_tiny(img_size=28, in_chans=1, num_classes=10), "tiny Mixer, 28x28x1 (Fashion-MNIST)"),
    "mixer_t4_32": Variant(_tiny(img_size=32, in_chans=3, num_classes=10), "tiny Mixer, 32x32x3 (CIFAR)"),
    "mixer_t8_64": Variant(
        _tiny(img_size=64, in_chans=1, patch_size=8, num_classes=11), "tiny Mixer, 8x8 patches of 64x64x1 (scenes)"
    ),
}
register_family("mixer", MlpMixer, VARIANTS, PAPER, IMAGENET_INCEPTION)
