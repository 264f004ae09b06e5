"""Convolutional baselines: torchvision's ResNets behind the zoo's interface, and RepMLP's Wide ConvNet.

ResNet-18/50 are torchvision's own modules (keys identical to torchvision's and timm's), with an optional
CIFAR-style stem (3x3 stride-1 convolution, no max-pool) for 28 and 32 px images. The Wide ConvNet is the
baseline of the RepMLP paper (arXiv 2105.01883, Table 1): the layout of its pure-MLP CIFAR network with every
RepMLP replaced by a 3x3 conv-BN-ReLU and channels 32, 64, 128.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torchvision.models.resnet as tvr
from torch import nn

from ..errors import ConfigError
from ..layers import check_input, conv_bn_relu
from .base import ImageClassifier, make_head
from .registry import ModelConfig, register_model

__all__ = ["ResNet", "ResNetConfig", "WideConvNet", "WideConvNetConfig"]


@dataclass(frozen=True, kw_only=True)
class ResNetConfig(ModelConfig):
    block: str = "basic"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50 and deeper)
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage
    stem: str = "imagenet"  # "imagenet" (7x7 stride 2 + max-pool) or "cifar" (3x3 stride 1, no pool)
    zero_init_residual: bool = False  # zero the last BN of every residual branch


class ResNet(ImageClassifier, tvr.ResNet):
    """torchvision's ResNet with the zoo interface, any input channel count and a CIFAR stem option.

    Convolutional: any input size works; ``img_size`` is only the nominal size used for counting.
    """

    head_name = "fc"

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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, None)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, C, H/32, W/32) at the ImageNet stem

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.fc(x)


@dataclass(frozen=True, kw_only=True)
class WideConvNetConfig(ModelConfig):
    channels: tuple[int, ...] = (32, 64, 128)  # width of each stage; a 2x2 max-pool between stages
    kernel_size: int = 3  # kernel of the two spatial convolutions in each stage
    hidden_dim: int = 512  # width of the FC layer between global pooling and the classifier


class WideConvNet(ImageClassifier):
    """RepMLP's Wide ConvNet baseline.

    stem 1x1 conv (in -> C1); per stage s: conv k, 1x1, conv k, 1x1 (to the next stage's width), each
    conv-BN-ReLU; max-pool between stages; global average pool -> FC(C_last -> hidden)-BN-ReLU -> classifier.
    """

    def __init__(self, cfg: WideConvNetConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.img_size = cfg.img_size
        self.num_features = cfg.hidden_dim
        chans = list(cfg.channels)
        k = cfg.kernel_size
        self.stem = conv_bn_relu(cfg.in_chans, chans[0], 1)
        stages = []
        for i, c in enumerate(chans):
            c_next = chans[min(i + 1, len(chans) - 1)]
            layers = [conv_bn_relu(c, c, k), conv_bn_relu(c, c, 1), conv_bn_relu(c, c, k), conv_bn_relu(c, c_next, 1)]
            if i + 1 < len(chans):
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pre_logits = nn.Sequential(
            nn.Linear(chans[-1], cfg.hidden_dim), nn.BatchNorm1d(cfg.hidden_dim), nn.ReLU(inplace=True)
        )
        self.head = make_head(cfg.hidden_dim, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, None)
        return self.stages(self.stem(x))  # (B, C_last, H / 4, W / 4)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(x.mean(dim=(2, 3)))  # (B, C, h, w) -> (B, hidden)
        return x if pre_logits else self.head(x)


RESNET_PAPER = "ResNet, arXiv 1512.03385"
REPMLP_PAPER = "RepMLP, arXiv 2105.01883"

_cifar = partial(ResNetConfig, stem="cifar", num_classes=10)

for _name, _cfg, _timm, _desc in [
    ("resnet18", ResNetConfig(), "resnet18", "ResNet-18 (torchvision)"),
    ("resnet50", ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3)), "resnet50", "ResNet-50 (torchvision)"),
    ("resnet18_28", _cifar(img_size=28, in_chans=1), None, "ResNet-18, CIFAR stem, 28x28x1"),
    ("resnet18_32", _cifar(img_size=32), None, "ResNet-18, CIFAR stem, 32x32x3"),
]:
    register_model(_name, ResNet, _cfg, family="resnet", paper=RESNET_PAPER, description=_desc, timm_name=_timm)

for _name, _cfg, _desc in [
    ("wide_convnet_28", WideConvNetConfig(img_size=28, in_chans=1, num_classes=10), "Wide ConvNet, 28x28x1"),
    ("wide_convnet_32", WideConvNetConfig(img_size=32, num_classes=10), "Wide ConvNet, 32x32x3 (RepMLP Table 1)"),
]:
    register_model(_name, WideConvNet, _cfg, family="convnet", paper=REPMLP_PAPER, description=_desc)
