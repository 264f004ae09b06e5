"""Building blocks shared by the model families: MLPs, Affine, patch embedding, drop path, input checks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from .errors import InputShapeError
from .reparam import Reparameterizable, fuse_bn

__all__ = [
    "Affine",
    "ConvBN",
    "DropPath",
    "LinearBN",
    "MaxPool2x2",
    "Mlp",
    "PatchEmbed",
    "PreNormBlock",
    "check_input",
    "conv_bn",
    "conv_bn_relu",
    "drop_path_or_identity",
    "lecun_normal_",
    "linear_bn",
    "to_2tuple",
]


def to_2tuple(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Returns ``(x, x)`` for an int and ``tuple(x)`` for a pair."""
    if isinstance(x, int):
        return (x, x)
    t = tuple(int(v) for v in x)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {x!r}")
    return t  # type: ignore[return-value]


def check_input(x: torch.Tensor, in_chans: int, img_size: tuple[int, int] | None) -> None:
    """Raises :class:`InputShapeError` unless ``x`` is (B, in_chans, H, W) with (H, W) == img_size.

    ``img_size=None`` accepts any spatial size (fully convolutional models).
    """
    if x.dim() != 4:
        raise InputShapeError(f"expected a batch of images shaped (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    if c != in_chans:
        raise InputShapeError(
            f"the model takes {in_chans} input channel(s) but the input has {c}; "
            f"build it with create_model(name, in_chans={c}) or convert the images"
        )
    if img_size is not None and (h, w) != tuple(img_size):
        raise InputShapeError(
            f"the model is built for a fixed input size of {img_size[0]}x{img_size[1]} but got {h}x{w}; "
            f"build it with create_model(name, img_size={h if h == w else (h, w)}) or resize the input"
        )


class DropPath(StochasticDepth):
    """Stochastic depth per sample (drops the whole residual branch), torchvision's implementation.

    Args:
        drop_prob: probability of dropping the branch for a sample during training.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__(p=drop_prob, mode="row")


def drop_path_or_identity(drop_prob: float) -> nn.Module:
    """A :class:`DropPath` when ``drop_prob > 0`` and an ``nn.Identity`` otherwise (no parameters either way)."""
    return DropPath(drop_prob) if drop_prob > 0 else nn.Identity()


class Mlp(nn.Module):
    """Two linear layers with an activation between them: ``fc2(drop(act(fc1(x))))``.

    Args:
        in_features: input width.
        hidden_features: width of the hidden layer.
        out_features: output width (defaults to ``in_features``).
        act_layer: activation class.
        drop: dropout after the activation and after ``fc2``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def token_linear(fc: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``fc`` applied along the token axis of ``x`` (B, S, C) -> (B, S', C): ``W @ x[b] + bias``.

    Equal to ``fc(x.transpose(1, 2)).transpose(1, 2)`` but multiplies from the left, so neither the input
    nor the output is transposed in memory (one batched matmul, bias added in the same call). Exported to
    ONNX it keeps the transposed form, whose weight-on-the-right MatMul ONNX Runtime can quantize.
    """
    if torch.onnx.is_in_onnx_export():
        return fc(x.transpose(1, 2)).transpose(1, 2)
    weight = fc.weight.expand(x.shape[0], -1, -1)  # (B, S', S), no copy
    if fc.bias is None:
        return torch.bmm(weight, x)
    return torch.baddbmm(fc.bias[:, None], weight, x)


def token_mlp(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    """``mlp`` applied along the token axis of ``x`` (B, S, C), the token-mixing MLP of Mixer."""
    return mlp.drop2(token_linear(mlp.fc2, mlp.drop1(mlp.act(token_linear(mlp.fc1, x)))))


class PreNormBlock(nn.Module):
    """Transformer-layout block around any token mixer: ``x + mixer(LN(x))`` then ``x + MLP(LN(x))``.

    Keys ``norm1``, ``attn`` (the mixer), ``norm2``, ``mlp`` follow timm's ViT blocks.

    Args:
        dim: token width.
        token_mixer: module mixing information across tokens, (B, N, dim) -> (B, N, dim).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: dropout inside the MLP.
        drop_path: stochastic depth probability of both branches.
    """

    def __init__(
        self, dim: int, token_mixer: nn.Module, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = token_mixer
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Affine(nn.Module):
    """ResMLP's Affine layer: ``alpha * x + beta`` per channel.

    It replaces LayerNorm: no statistics are computed, so it can be folded into the next linear layer.
    Channels are on the last axis of (N, L, dim) tokens, parameters shaped (1, 1, dim) as in timm so that
    weights interchange; ``channels_first``: on axis 1 of an (N, dim, H, W) map, shaped (1, dim, 1, 1) (an
    eval-mode BatchNorm without statistics).
    """

    def __init__(self, dim: int, channels_first: bool = False) -> None:
        super().__init__()
        shape = (1, dim, 1, 1) if channels_first else (1, 1, dim)
        self.alpha = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, self.alpha, x)


class PatchEmbed(nn.Module):
    """Splits an image into non-overlapping patches and projects each to ``embed_dim``.

    A Conv2d with kernel = stride = patch size is exactly a shared linear layer on flattened patches.
    The input size is fixed: token-mixing layers downstream are sized for ``num_patches``.

    Args:
        img_size: input height and width.
        patch_size: patch height and width; must divide ``img_size``.
        in_chans: input channels.
        embed_dim: output width per patch.
    """

    def __init__(
        self, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        if any(s % p for s, p in zip(self.img_size, self.patch_size, strict=True)):
            raise InputShapeError(
                f"patch size {self.patch_size} does not divide the image size {self.img_size}; "
                "choose an image size that is a multiple of the patch size"
            )
        self.in_chans = in_chans
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, self.img_size)
        x = self.proj(x)  # (B, C, H, W) -> (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # -> (B, N, D), tokens in raster order


class MaxPool2x2(nn.Module):
    """2x2 max-pool with stride 2 (odd trailing rows/columns dropped, as ``nn.MaxPool2d(2)``).

    Computed as the maximum of four strided views: the same values as ``F.max_pool2d(x, 2)`` and several times
    faster on CPU, where the pooling kernel of PyTorch runs single-threaded for channels-first tensors.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])  # (B, C, H, W) -> (B, C, H/2, W)
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])  # -> (B, C, H/2, W/2)


def lecun_normal_(tensor: torch.Tensor) -> torch.Tensor:
    """LeCun normal init (truncated normal with variance 1 / fan_in), as JAX uses for the Mixer stem."""
    fan_in = nn.init._calculate_fan_in_and_fan_out(tensor)[0]
    # std of a standard normal truncated to [-2, 2] is 0.87962566; divide so the variance is 1 / fan_in
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class ConvBN(nn.Sequential, Reparameterizable):
    """Conv2d without bias followed by BatchNorm2d (keys ``conv.*``, ``bn.*``); fuses into one biased Conv2d.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        kernel_size: square kernel side.
        stride: convolution stride.
        groups: convolution groups.
        padding: zero padding; by default kernel_size // 2, which keeps the size of odd kernels at stride 1.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def get_equivalent_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fuse_bn(self.conv.weight, self.bn)

    def fuse(self) -> nn.Conv2d:
        c = self.conv
        like = {"device": c.weight.device, "dtype": c.weight.dtype}
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups, **like)
        weight, bias = self.get_equivalent_weight_bias()
        fused.weight.data.copy_(weight.detach())
        fused.bias.data.copy_(bias.detach())
        return fused


class LinearBN(nn.Sequential, Reparameterizable):
    """Linear followed by BatchNorm1d (keys ``fc.*``, ``bn.*``); fuses into one Linear."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)

    def get_equivalent_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fuse_bn(self.fc.weight, self.bn, self.fc.bias)

    def fuse(self) -> nn.Linear:
        w = self.fc.weight
        fused = nn.Linear(self.fc.in_features, self.fc.out_features, device=w.device, dtype=w.dtype)
        weight, bias = self.get_equivalent_weight_bias()
        fused.weight.data.copy_(weight.detach())
        fused.bias.data.copy_(bias.detach())
        return fused


def conv_bn(
    in_chans: int,
    out_chans: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    deploy: bool = False,
    padding: int | None = None,
) -> nn.Module:
    """A :class:`ConvBN`, or in deploy form the biased Conv2d it fuses into (same keys as ``ConvBN.fuse()``)."""
    if deploy:
        padding = kernel_size // 2 if padding is None else padding
        return nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups)
    return ConvBN(in_chans, out_chans, kernel_size, stride, groups, padding)


def conv_bn_relu(*args, **kwargs) -> nn.Sequential:
    """:func:`conv_bn` (same arguments) then ReLU, as one module with keys ``0.*`` and ``1``."""
    return nn.Sequential(conv_bn(*args, **kwargs), nn.ReLU(inplace=True))


def linear_bn(in_features: int, out_features: int, deploy: bool = False) -> nn.Module:
    """A :class:`LinearBN`, or in deploy form the Linear it fuses into."""
    return nn.Linear(in_features, out_features) if deploy else LinearBN(in_features, out_features)
