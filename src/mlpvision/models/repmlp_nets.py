"""Networks built on the RepMLP block (arXiv 2105.01883): the pure-MLP CIFAR network with its ablations and
its Wide ConvNet baseline (one layout, :class:`StageNet`), and RepMLP-ResNets (:class:`RepMLPResNet`).

Every conv + BN pair is a :class:`~mlpvision.layers.ConvBN`, so :func:`~mlpvision.reparam.reparameterize`
turns the pure-MLP network into FC layers only (1x1 convs are per-pixel FC layers) with no BatchNorm at all.
``create_model(name, deploy=True)`` builds that deploy form directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import MaxPool2x2, check_input, conv_bn, conv_bn_relu, linear_bn
from .base import ImageClassifier, make_head
from .registry import ModelConfig, register_model
from .repmlp import RepMLPBlock

__all__ = ["RepMLPResNet", "RepMLPResNetConfig", "StageNet", "StageNetConfig"]

PAPER = "RepMLP, arXiv 2105.01883"


@dataclass(frozen=True, kw_only=True)
class StageNetConfig(ModelConfig):
    channels: tuple[int, ...] = (16, 32, 64)  # width of each stage; 2x2 max-pool between stages
    depth: int = 2  # [spatial -> FC] pairs per stage (the paper: 2)
    layer: str = "repmlp"  # the spatial layer: "repmlp" or "conv" (conv-BN, for the baselines)
    conv_kernel: int = 3  # kernel of the spatial layer when layer="conv"
    groups: int = 2  # groups of FC3 and the LP convs (or of the spatial conv)
    partition: int = 8  # RepMLP partition side h = w
    kernels: tuple[int, ...] = (1, 3, 5, 7)  # Local Perceptron kernel sizes; () for no LP
    global_perceptron: bool = True  # use the Global Perceptron (where a stage has more than one partition)
    partition_perceptron: bool = True  # use FC3 + BN in the train form
    gp_reduction: int = 1  # GP hidden width C hp wp / gp_reduction
    fc_as_conv: int = 0  # k > 0 replaces FC3 by a k x k conv (the paper's "FC vs conv" ablation)
    hidden_dim: int = 512  # width of the FC between global pooling and the classifier
    stem_patch: int = 1  # stem: an FC on each p x p patch (stride p); 1 is the paper's per-pixel FC


class StageNet(ImageClassifier):
    """The RepMLP paper's CIFAR layout (Fig. 2), with RepMLP or a conv as its spatial layer.

    stem FC (1x1, or p x p patches with ``stem_patch``) -> per stage of width C, with ``depth`` = 2:
    [spatial(C) -> ReLU -> FC(C, C) -> spatial(C) -> ReLU -> FC(C, C')],
    with BN after every FC and conv and ReLU after every FC; a 2x2 max-pool between stages; then global average
    pool -> FC(C_last, hidden) -> BN -> ReLU -> classifier. Stage s sees maps of side img_size / 2^s.
    """

    def __init__(self, cfg: StageNetConfig) -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.img_size = cfg.num_classes, cfg.in_chans, cfg.img_size
        self.num_features = cfg.hidden_dim
        if cfg.layer not in ("repmlp", "conv"):
            raise ConfigError(f"layer must be 'repmlp' or 'conv', got {cfg.layer!r}")
        chans, deploy, p = list(cfg.channels), cfg.deploy, cfg.stem_patch
        if cfg.img_size % p:
            raise ConfigError(f"stem_patch {p} does not divide img_size {cfg.img_size}")
        if cfg.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {cfg.depth}")
        self.stem = conv_bn_relu(cfg.in_chans, chans[0], p, stride=p, padding=0, deploy=deploy)
        stages, size = [], cfg.img_size // p
        for i, c in enumerate(chans):
            c_next = chans[min(i + 1, len(chans) - 1)]
            layers = []
            for j in range(cfg.depth):  # the last FC of a stage widens to the next stage
                layers += [
                    self._spatial(cfg, c, size),
                    conv_bn_relu(c, c_next if j == cfg.depth - 1 else c, 1, deploy=deploy),
                ]
            if i + 1 < len(chans):
                layers.append(MaxPool2x2())
                size //= 2
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pre_logits = nn.Sequential(linear_bn(chans[-1], cfg.hidden_dim, deploy), nn.ReLU(inplace=True))
        self.head = make_head(cfg.hidden_dim, cfg.num_classes)
        # RepMLP layers are FC layers sized for one map; the conv baselines take any size
        self.fixed_input_size = cfg.layer == "repmlp"

    @staticmethod
    def _spatial(cfg: StageNetConfig, chans: int, size: int) -> nn.Sequential:
        if cfg.layer == "conv":
            return conv_bn_relu(chans, chans, cfg.conv_kernel, groups=cfg.groups, deploy=cfg.deploy)
        if size % cfg.partition:
            raise ConfigError(
                f"RepMLP partition {cfg.partition} does not divide a {size}x{size} stage map "
                f"(img_size {cfg.img_size}); choose a partition that divides every stage's size"
            )
        block = RepMLPBlock(
            chans,
            chans,
            size,
            cfg.partition,
            cfg.groups,
            cfg.kernels,
            cfg.global_perceptron,
            cfg.partition_perceptron,
            cfg.gp_reduction,
            cfg.fc_as_conv,
            cfg.deploy,
        )
        return nn.Sequential(block, nn.ReLU(inplace=True))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, (self.img_size, self.img_size) if self.fixed_input_size else None)
        return self.stages(self.stem(x))  # (B, C_last, H / 2^(S-1), W / 2^(S-1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(x.mean(dim=(2, 3)))  # (B, C, h, w) -> (B, hidden)
        return x if pre_logits else self.head(x)


@dataclass(frozen=True, kw_only=True)
class RepMLPResNetConfig(ModelConfig):
    block: str = "bottleneck"  # "bottleneck" (ResNet-50) or "basic" (ResNet-18)
    layers: tuple[int, ...] = (3, 4, 6, 3)  # blocks per stage (c2, c3, c4, c5)
    stem: str = "imagenet"  # "imagenet" (7x7 stride 2 + max-pool) or "cifar" (3x3 stride 1)
    repmlp_form: str = "bottleneck"  # "bottleneck": RepMLP between two 3x3 convs; "light": 1x1 -> RepMLP -> 1x1
    repmlp_stages: tuple[int, ...] = (1, 2)  # stages (0-based) whose stride-1 blocks get RepMLP: c3 and c4
    reductions: tuple[int, ...] = (1, 2, 4, 1)  # per stage: RepMLP width = block mid width / r (bottleneck form)
    light_reduction: int = 8  # light form: RepMLP width = block input width / light_reduction
    groups: int = 8  # FC3 and LP groups
    partition: int = 7  # RepMLP partition side h = w
    kernels: tuple[int, ...] = (1, 3, 5)  # Local Perceptron kernel sizes
    gp_reduction: int = 1  # GP hidden width C hp wp / gp_reduction


class _Residual(nn.Module):
    """``relu(branch(x) + shortcut(x))``."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.branch(x) + self.shortcut(x))


class RepMLPResNet(ImageClassifier):
    """A ResNet whose stride-1 blocks in chosen stages carry a RepMLP block (the paper's RepMLP-ResNet).

    Bottleneck form: 1x1 (in -> mid) -> 3x3 (mid -> mid / r) -> RepMLP -> ReLU -> 3x3 (mid / r -> mid)
    -> 1x1 (mid -> out), plus the shortcut. Light form: 1x1 (in -> in / 8) -> RepMLP -> ReLU -> 1x1 (-> out).
    All other blocks are plain ResNet blocks; every conv is a ConvBN, so deployment removes every BN.
    """

    def __init__(self, cfg: RepMLPResNetConfig) -> None:
        super().__init__()
        if cfg.block not in ("basic", "bottleneck") or cfg.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"block must be basic|bottleneck and stem imagenet|cifar, got {cfg.block}, {cfg.stem}")
        if cfg.repmlp_form not in ("bottleneck", "light"):
            raise ConfigError(f"repmlp_form must be 'bottleneck' or 'light', got {cfg.repmlp_form!r}")
        self.num_classes, self.in_chans, self.img_size = cfg.num_classes, cfg.in_chans, cfg.img_size
        expansion = 4 if cfg.block == "bottleneck" else 1
        d = cfg.deploy
        if cfg.stem == "imagenet":
            self.stem = nn.Sequential(conv_bn_relu(cfg.in_chans, 64, 7, 2, deploy=d), nn.MaxPool2d(3, 2, 1))
            size = (cfg.img_size + 1) // 2
            size = (size + 1) // 2
        else:
            self.stem = conv_bn_relu(cfg.in_chans, 64, 3, deploy=d)
            size = cfg.img_size
        stages, in_chans = [], 64
        for s, n in enumerate(cfg.layers):
            mid = 64 * 2**s
            blocks = []
            for i in range(n):
                stride = 2 if (s > 0 and i == 0) else 1
                if stride == 2:
                    size = (size + 1) // 2
                use_repmlp = stride == 1 and s in cfg.repmlp_stages
                blocks.append(self._block(cfg, in_chans, mid, expansion, stride, size, s, use_repmlp))
                in_chans = mid * expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chans
        self.head = make_head(in_chans, cfg.num_classes)

    @staticmethod
    def _block(cfg, in_chans, mid, expansion, stride, size, stage, use_repmlp) -> nn.Module:
        d = cfg.deploy
        out = mid * expansion
        shortcut = conv_bn(in_chans, out, 1, stride, deploy=d) if (stride != 1 or in_chans != out) else nn.Identity()

        def repmlp(chans: int) -> nn.Module:
            return RepMLPBlock(chans, chans, size, cfg.partition, cfg.groups, cfg.kernels, True, True,
                               cfg.gp_reduction, deploy=d)  # fmt: skip

        if use_repmlp and cfg.repmlp_form == "light":
            c = in_chans // cfg.light_reduction
            branch = [
                conv_bn_relu(in_chans, c, 1, deploy=d),
                repmlp(c),
                nn.ReLU(inplace=True),
                conv_bn(c, out, 1, deploy=d),
            ]
        elif cfg.block == "bottleneck":
            if use_repmlp:
                c = mid // cfg.reductions[stage]
                spatial = nn.Sequential(
                    conv_bn_relu(mid, c, 3, deploy=d),
                    repmlp(c),
                    nn.ReLU(inplace=True),
                    conv_bn_relu(c, mid, 3, deploy=d),
                )
            else:
                spatial = conv_bn_relu(mid, mid, 3, stride, deploy=d)
            branch = [conv_bn_relu(in_chans, mid, 1, deploy=d), spatial, conv_bn(mid, out, 1, deploy=d)]
        else:
            if use_repmlp:
                c = mid // cfg.reductions[stage]
                branch = [
                    conv_bn_relu(in_chans, c, 1, deploy=d),
                    repmlp(c),
                    nn.ReLU(inplace=True),
                    conv_bn(c, out, 1, deploy=d),
                ]
            else:
                branch = [conv_bn_relu(in_chans, mid, 3, stride, deploy=d), conv_bn(mid, out, 3, deploy=d)]
        return _Residual(nn.Sequential(*branch), shortcut)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, (self.img_size, self.img_size))
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.head(x)


# ---- registry ------------------------------------------------------------------------------------------------

_pure = partial(StageNetConfig, num_classes=10)
_pure28 = partial(_pure, img_size=28, in_chans=1, partition=7)  # 28 -> 14 -> 7: partitions of 7 x 7
_pure32 = partial(_pure, img_size=32, in_chans=3, partition=8)  # the paper's CIFAR network: 32 -> 16 -> 8
_wide = {"layer": "conv", "conv_kernel": 3, "groups": 1, "channels": (32, 64, 128)}
_conv9 = {"layer": "conv", "conv_kernel": 9}

_STAGE_NETS = {
    # name suffix: (overrides, family, description)
    "repmlp_pure": ({}, "repmlp", "pure-MLP RepMLP network (RepMLP Table 1)"),
    "repmlp_pure_nogp": ({"global_perceptron": False}, "repmlp", "pure-MLP RepMLP without Global Perceptron"),
    "repmlp_pure_nopp": ({"partition_perceptron": False}, "repmlp", "pure-MLP RepMLP without Partition Perceptron"),
    "repmlp_pure_nolp": ({"kernels": ()}, "repmlp", "pure-MLP RepMLP without Local Perceptron"),
    "repmlp_pure_fc3conv9": ({"fc_as_conv": 9}, "repmlp", "pure-MLP layout, FC3 replaced by a 9x9 conv"),
    "repmlp_pure_conv9": (_conv9, "convnet", "pure-MLP layout, RepMLP replaced by a 9x9 conv"),
    "wide_convnet": (_wide, "convnet", "Wide ConvNet (RepMLP Table 1 baseline)"),
}
for _stem, (_over, _family, _desc) in _STAGE_NETS.items():
    for _size, _make in ((28, _pure28), (32, _pure32)):
        _extra = ", 28x28x1" if _size == 28 else ", 32x32x3"
        register_model(
            f"{_stem}_{_size}", StageNet, _make(**_over), family=_family, paper=PAPER, description=_desc + _extra
        )

# The fast pure-MLP network: a 2x2 patch stem (an FC on non-overlapping patches) halves the resolution, then two
# stages at 14x14 (four 7x7 partitions with a Global Perceptron) and 7x7 (one partition); Local Perceptron kernels
# 1 and 3 (a 5x5 branch cost 20% more time for no gain within a 10-minute budget). About 5 times cheaper to train
# than the paper's layout at full resolution; deployed it is FC-only.
_fast = partial(_pure, stem_patch=2, channels=(32, 64), kernels=(1, 3), groups=4)
for _name, _cfg, _desc in [
    ("repmlp_fast_28", _fast(img_size=28, in_chans=1, partition=7), "fast pure-MLP RepMLP net, 28x28x1"),
    ("repmlp_fast_32", _fast(img_size=32, in_chans=3, partition=8), "fast pure-MLP RepMLP net, 32x32x3"),
]:
    register_model(_name, StageNet, _cfg, family="repmlp", paper=PAPER, description=_desc)

# Small RepMLP-ResNet: ResNet-18 with a CIFAR stem; the stride-1 block of stages 2 and 3 (16x16 and 8x8 maps
# at 32 px, 14x14 and 7x7 at 28 px) becomes 1x1 (C -> C/r) -> RepMLP -> 1x1, with r = 4 and 8 (32 channels).
_small = partial(
    RepMLPResNetConfig, block="basic", layers=(2, 2, 2, 2), stem="cifar", reductions=(1, 4, 8, 1), groups=4,
    kernels=(1, 3, 5), num_classes=10,
)  # fmt: skip
for _name, _cfg, _desc in [
    ("repmlp_resnet50_224", RepMLPResNetConfig(), "RepMLP-Res50, bottleneck form, g8, c3+c4"),
    ("repmlp_resnet50_light_224", RepMLPResNetConfig(repmlp_form="light"), "RepMLP-Res50, Light Block, g8, c3+c4"),
    ("repmlp_resnet18_28", _small(img_size=28, in_chans=1, partition=7), "small RepMLP-ResNet-18, 28x28x1"),
    ("repmlp_resnet18_32", _small(img_size=32, partition=8), "small RepMLP-ResNet-18, 32x32x3"),
]:
    register_model(_name, RepMLPResNet, _cfg, family="repmlp", paper=PAPER, description=_desc)
