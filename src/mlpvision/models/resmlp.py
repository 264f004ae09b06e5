"""ResMLP (Touvron et al., "ResMLP: Feedforward networks for image classification with data-efficient
training", arXiv 2105.03404).

A Mixer whose token mixing is a single linear layer across patches (no activation) and whose LayerNorms are
replaced by Affine layers (``alpha * x + beta``: no statistics, foldable into the next linear). Each residual
branch is scaled by a learnable per-channel LayerScale initialised small (0.1 at depth 12, 1e-5 at 24, 1e-6
beyond), which keeps deep stacks trainable. No position embedding, no class token.

State-dict keys are identical to timm's ``resmlp_*`` models so weights interchange.

Deploy form (``reparameterize`` or ``deploy=True``), as the paper notes is possible at inference: each Affine is
folded into the linear layer that follows it where that layer acts on channels (the channel MLP's fc1, the head),
LayerScale into the linear layer before it (fc2), and the token branch's Affine, bias and LayerScale into one
per-channel scale and one per-(token, channel) bias around a bias-free cross-patch matmul. Per block that removes
three of the four multiplies and one of the adds; the function is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import Affine, Mlp, drop_path_or_identity, token_linear
from ..reparam import Reparameterizable
from .mixer import PatchMlpNet, stochastic_depth_rates
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family

__all__ = ["ResMLP", "ResMLPBlock", "ResMLPConfig"]

PAPER = "ResMLP, arXiv 2105.03404"


@dataclass(frozen=True, kw_only=True)
class ResMLPConfig(ModelConfig):
    patch_size: int = option(16, ge=1, le=MAX_SIDE)  # side of a square patch
    embed_dim: int = option(384, ge=1, le=MAX_WIDTH)  # width d of every token
    depth: int = option(12, ge=1, le=MAX_DEPTH)  # number of residual blocks
    mlp_ratio: float = option(4.0, gt=0, le=64)  # hidden width of the channel MLP is mlp_ratio * d
    init_values: float = option(0.1, ge=0, le=1000)  # LayerScale init (paper: 0.1 for depth 12, 1e-5 for 24, 1e-6 for
    # 36)
    norm: str = option("affine", choices=("affine", "layernorm"))  # "affine" (the paper) or "layernorm" (for the
    # ablation)
    drop_rate: float = option(0.0, ge=0, lt=1)  # dropout inside the channel MLP and before the head
    drop_path_rate: float = option(0.0, ge=0, lt=1)  # stochastic depth, rising linearly over the blocks


def _norm_layer(kind: str, dim: int) -> nn.Module:
    if kind == "affine":
        return Affine(dim)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=1e-6)
    raise ConfigError(f"norm must be 'affine' or 'layernorm', got {kind!r}")


class ResMLPBlock(Reparameterizable):
    """One ResMLP layer.

    ``Z = X + ls1 * (A · Aff(X)ᵀ)ᵀ`` with A a linear layer across the patches, then
    ``Y = Z + ls2 * MLP(Aff(Z))``. In deploy form ``Z = X + s * (A' · Xᵀ)ᵀ + T`` and ``Y = Z + MLP'(Z)``
    (with LayerNorms in place of the Affines, those stay and only the scales and biases fold).

    Args:
        dim: token width d.
        num_tokens: number of patches N (A is N x N).
        mlp_ratio: channel-MLP hidden width as a multiple of d.
        init_values: initial LayerScale value.
        norm: "affine" or "layernorm".
        drop: dropout inside the channel MLP.
        drop_path: stochastic depth probability.
        deploy: build the deploy form.
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        mlp_ratio: float = 4.0,
        init_values: float = 1e-4,
        norm: str = "affine",
        drop: float = 0.0,
        drop_path: float = 0.0,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        self.dim, self.num_tokens, self.mlp_ratio, self.norm_kind = dim, num_tokens, mlp_ratio, norm
        self.deploy = deploy
        folds = deploy and norm == "affine"
        self.norm1 = nn.Identity() if folds else _norm_layer(norm, dim)
        self.linear_tokens = nn.Linear(num_tokens, num_tokens, bias=not deploy)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.Identity() if folds else _norm_layer(norm, dim)
        self.mlp_channels = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        if deploy:  # the token branch's scale and bias
            self.token_scale = nn.Parameter(torch.ones(dim))
            self.token_bias = nn.Parameter(torch.zeros(num_tokens, dim))
        else:
            self.ls1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.ls2 = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = x + (self.token_scale * token_linear(self.linear_tokens, self.norm1(x)) + self.token_bias)
            return x + self.mlp_channels(self.norm2(x))
        x = x + self.drop_path(self.ls1 * token_linear(self.linear_tokens, self.norm1(x)))  # linear over N
        return x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))

    @torch.no_grad()
    def fuse(self) -> ResMLPBlock:
        if self.deploy:
            return self
        ref = self.ls1
        deployed = ResMLPBlock(self.dim, self.num_tokens, self.mlp_ratio, norm=self.norm_kind, deploy=True)
        deployed = deployed.to(device=ref.device, dtype=ref.dtype)
        tokens, fc1, fc2 = self.linear_tokens, self.mlp_channels.fc1, self.mlp_channels.fc2
        # token branch: ls1 * (A (a x + b) + c) = (ls1 a) * (A x) + ls1 * (b * rowsum(A) + c)
        scale, shift = self.ls1, torch.zeros_like(self.ls1)
        if isinstance(self.norm1, Affine):
            scale, shift = self.ls1 * self.norm1.alpha.flatten(), self.ls1 * self.norm1.beta.flatten()
        deployed.token_scale.copy_(scale)
        deployed.token_bias.copy_(tokens.weight.sum(1)[:, None] * shift + tokens.bias[:, None] * self.ls1)
        deployed.linear_tokens.weight.copy_(tokens.weight)
        # channel branch: ls2 * (W2 act(W1 (a z + b) + c1) + c2) = (ls2 W2) act((W1 a) z + W1 b + c1) + ls2 c2
        w1, b1 = fc1.weight, fc1.bias
        if isinstance(self.norm2, Affine):
            w1, b1 = w1 * self.norm2.alpha.flatten(), b1 + w1 @ self.norm2.beta.flatten()
        else:
            deployed.norm2.load_state_dict(self.norm2.state_dict())
        if not isinstance(self.norm1, Affine):
            deployed.norm1.load_state_dict(self.norm1.state_dict())
        deployed.mlp_channels.fc1.weight.copy_(w1)
        deployed.mlp_channels.fc1.bias.copy_(b1)
        deployed.mlp_channels.fc2.weight.copy_(fc2.weight * self.ls2[:, None])
        deployed.mlp_channels.fc2.bias.copy_(fc2.bias * self.ls2)
        return deployed.train(self.training)


class ResMLP(PatchMlpNet):
    """ResMLP built from a :class:`ResMLPConfig`."""

    def __init__(self, cfg: ResMLPConfig) -> None:
        num_tokens = (cfg.img_size // cfg.patch_size) ** 2
        blocks = [
            ResMLPBlock(
                cfg.embed_dim, num_tokens, cfg.mlp_ratio, cfg.init_values, cfg.norm, cfg.drop_rate, dpr, cfg.deploy
            )
            for dpr in stochastic_depth_rates(cfg.drop_path_rate, cfg.depth)
        ]
        folds = cfg.deploy and cfg.norm == "affine" and cfg.num_classes > 0  # the final Affine lives in the head
        super().__init__(cfg, blocks, nn.Identity() if folds else _norm_layer(cfg.norm, cfg.embed_dim), cfg.embed_dim)

    @torch.no_grad()
    def fold_into_deploy_form(self) -> None:
        """Folds the final Affine into the head (the mean over tokens commutes with it)."""
        if not isinstance(self.norm, Affine) or not isinstance(self.head, nn.Linear):
            return
        alpha, beta = self.norm.alpha.flatten(), self.norm.beta.flatten()
        self.head.bias.add_(self.head.weight @ beta)
        self.head.weight.mul_(alpha)
        self.norm = nn.Identity()


# Small-image variant: patch 4 (49 tokens on 28 px, 64 on 32 px), d = 128, depth 12 with the paper's
# depth-12 LayerScale init; 1.6 M parameters, trains in minutes per epoch on 2 CPU cores.
_tiny = partial(ResMLPConfig, patch_size=4, embed_dim=128, depth=12, init_values=0.1)

VARIANTS = {
    "resmlp_12_224": Variant(ResMLPConfig(depth=12, init_values=0.1), "ResMLP-S12", "resmlp_12_224"),
    "resmlp_24_224": Variant(ResMLPConfig(depth=24, init_values=1e-5), "ResMLP-S24", "resmlp_24_224"),
    "resmlp_36_224": Variant(ResMLPConfig(depth=36, init_values=1e-6), "ResMLP-S36", "resmlp_36_224"),
    "resmlp_big_24_p16_224": Variant(
        ResMLPConfig(depth=24, embed_dim=768, init_values=1e-6), "ResMLP-B24, patch 16 (the paper's B24)"
    ),
    "resmlp_big_24_224": Variant(
        ResMLPConfig(depth=24, embed_dim=768, patch_size=8, init_values=1e-6),
        "ResMLP-B24/8 (patch 8)",
        "resmlp_big_24_224",
    ),
    "resmlp_tiny_12_28": Variant(_tiny(img_size=28, in_chans=1, num_classes=10), "tiny ResMLP, 28x28x1"),
    "resmlp_tiny_12_32": Variant(_tiny(img_size=32, in_chans=3, num_classes=10), "tiny ResMLP, 32x32x3"),
    "resmlp_tiny_12_p8_64": Variant(
        _tiny(img_size=64, in_chans=1, patch_size=8, num_classes=11), "tiny ResMLP, 8x8 patches of 64x64x1 (scenes)"
    ),
}
register_family("resmlp", ResMLP, VARIANTS, PAPER)
