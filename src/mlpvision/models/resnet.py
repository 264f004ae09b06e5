"""ResNet baselines: torchvision's ResNets behind the zoo's interface.

ResNet-18/50 are torchvision's own modules (keys identical to torchvision's and timm's), with an optional
CIFAR-style stem (3x3 stride-1 convolution, no max-pool) for 28 and 32 px images. RepMLP's Wide ConvNet lives
beside the pure-MLP network it is compared with, in ``repmlp_pure.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
import torchvision.models.resnet as tvr
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import check_input
from ..reparam import fuse_bn
from .base import ImageClassifier
from .features import StagedFeatures
from .pretrained_cfg import IMAGENET_DEFAULT
from .registry import MAX_DEPTH, ModelConfig, Variant, register_family

__all__ = ["ResNet", "ResNetConfig"]


@dataclass(frozen=True, kw_only=True)
class ResNetConfig(ModelConfig):
    block: str = option("basic", choices=("basic", "bottleneck"))  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50
    # and deeper)
    layers: tuple[int, ...] = option((2, 2, 2, 2), ge=0, le=MAX_DEPTH, max_items=64)  # blocks per stage
    stem: str = option("imagenet", choices=("imagenet", "cifar"))  # "imagenet" (7x7 stride 2 + max-pool) or "cifar"
    # (3x3 stride 1, no pool)
    zero_init_residual: bool = False  # zero the last BN of every residual branch


class ResNet(StagedFeatures, ImageClassifier, tvr.ResNet):
    """torchvision's ResNet with the zoo interface, any input channel count and a CIFAR stem option.

    Convolutional: any input size works; ``img_size`` is only the nominal size used for counting. Features, as
    timm's: ``act1`` (the stem's ReLU, before the max-pool) and ``layer1`` to ``layer4``, at reductions 2, 4, 8, 16,
    32 with the ImageNet stem (1, 1, 2, 4, 8 with the CIFAR stem).
    """

    head_name = "fc"
    fixed_input_size = False

    def __init__(self, cfg: ResNetConfig) -> None:
        blocks = {"basic": tvr.BasicBlock, "bottleneck": tvr.Bottleneck}
        if cfg.block not in blocks:
            raise ConfigError(f"block must be 'basic' or 'bottleneck', got {cfg.block!r}")
        if cfg.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {cfg.stem!r}")
        tvr.ResNet.__init__(
            self,
            blocks[cfg.block],
            list(cfg.layers),
            num_classes=max(cfg.num_classes, 1),
            zero_init_residual=cfg.zero_init_residual,
        )
        self.in_chans = cfg.in_chans
        self.img_size = cfg.img_size
        self.num_features = self.fc.in_features
        self.num_classes = cfg.num_classes
        if cfg.stem == "cifar":
            self.conv1 = nn.Conv2d(cfg.in_chans, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        elif cfg.in_chans != 3:
            self.conv1 = nn.Conv2d(cfg.in_chans, 64, 7, 2, 3, bias=False)
        if self.conv1.in_channels != 3 or cfg.stem == "cifar":
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if cfg.num_classes <= 0:
            self.fc = nn.Identity()
        self.act1 = self.relu  # timm's name of the stem's activation (the first feature); the same module
        expansion = tvr.Bottleneck.expansion if cfg.block == "bottleneck" else tvr.BasicBlock.expansion
        first = 1 if cfg.stem == "cifar" else 2
        self.feature_info = [{"num_chs": 64, "reduction": first, "module": "act1"}] + [
            {
                "num_chs": 64 * 2**i * expansion,
                "reduction": first * 2 ** (i + (cfg.stem != "cifar")),
                "module": f"layer{i + 1}",
            }
            for i in range(len(cfg.layers))
        ]
        if cfg.deploy:  # the fused form: every conv carries its BatchNorm as a bias, the norms are identities
            for parent, conv_name, bn_name in self._conv_bn_pairs():
                conv = getattr(parent, conv_name)
                setattr(parent, conv_name, _conv_like(conv, bias=True))
                setattr(parent, bn_name, nn.Identity())

    def check_feature_input(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, None)

    def _conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(parent, conv attribute, norm attribute) of every conv followed by its BatchNorm: the stem, each block's
        convs and each projection shortcut."""
        pairs = [(self, "conv1", "bn1")]
        for i in range(len(self.feature_info) - 1):
            for block in getattr(self, f"layer{i + 1}"):
                pairs += [(block, f"conv{k}", f"bn{k}") for k in (1, 2, 3) if hasattr(block, f"conv{k}")]
                if block.downsample is not None:
                    pairs.append((block.downsample, "0", "1"))
        return pairs

    @torch.no_grad()
    def fold_into_deploy_form(self) -> None:
        """Called by :func:`~mlpvision.reparam.reparameterize`: folds every BatchNorm into the conv before it (eval
        statistics), leaving convs with biases and no norms: the form ``deploy=True`` builds."""
        for parent, conv_name, bn_name in self._conv_bn_pairs():
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            if isinstance(bn, nn.BatchNorm2d):
                fused = _conv_like(conv, bias=True)
                weight, bias = fuse_bn(conv.weight, bn, conv.bias)
                fused.weight.copy_(weight)
                fused.bias.copy_(bias)
                setattr(parent, conv_name, fused)
                setattr(parent, bn_name, nn.Identity())

    def feature_stages(self) -> list[list[nn.Module]]:
        """stem -> [max-pool, layer1 blocks] -> layer2 blocks -> ...: (B, C, H/32, W/32) at the end (ImageNet stem)."""
        layers = [list(getattr(self, f"layer{i + 1}")) for i in range(len(self.feature_info) - 1)]
        return [[nn.Sequential(self.conv1, self.bn1, self.act1)], [self.maxpool, *layers[0]], *layers[1:]]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.fc(x)


def _conv_like(conv: nn.Conv2d, bias: bool) -> nn.Conv2d:
    """A fresh conv with ``conv``'s shape, hyper-parameters, device and dtype, with or without a bias."""
    return nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=bias,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )


RESNET_PAPER = "ResNet, arXiv 1512.03385"

_cifar = partial(ResNetConfig, stem="cifar", num_classes=10)

VARIANTS = {
    "resnet18": Variant(ResNetConfig(), "ResNet-18 (torchvision)", "resnet18"),
    "resnet50": Variant(ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3)), "ResNet-50 (torchvision)", "resnet50"),
    "resnet18_28": Variant(_cifar(img_size=28, in_chans=1), "ResNet-18, CIFAR stem, 28x28x1"),
    "resnet18_32": Variant(_cifar(img_size=32), "ResNet-18, CIFAR stem, 32x32x3"),
}
register_family(
    "resnet", ResNet, VARIANTS, RESNET_PAPER, replace(IMAGENET_DEFAULT, interpolation="bilinear", first_conv="conv1")
)
