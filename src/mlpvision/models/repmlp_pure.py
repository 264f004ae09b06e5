"""The RepMLP paper's pure-MLP network for small images (arXiv 2105.01883, Fig. 2 and Table 1), its ablations and
its Wide ConvNet baseline: one layout, :class:`StageNet`, whose spatial layer is a RepMLP block or a conv.

Every conv + BN pair is a :class:`~mlpvision.layers.ConvBN`, so :func:`~mlpvision.reparam.reparameterize`
turns the pure-MLP network into FC layers only (1x1 convs are per-pixel FC layers) with no BatchNorm at all.
``create_model(name, deploy=True)`` builds that deploy form directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import MaxPool2x2, check_input, conv_bn_relu, linear_bn
from .base import ImageClassifier, make_head
from .features import StagedFeatures
from .pretrained_cfg import IMAGENET_DEFAULT
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family
from .repmlp import RepMLPBlock

__all__ = ["StageNet", "StageNetConfig"]

PAPER = "RepMLP, arXiv 2105.01883"


@dataclass(frozen=True, kw_only=True)
class StageNetConfig(ModelConfig):
    channels: tuple[int, ...] = option((16, 32, 64), ge=1, le=MAX_WIDTH, max_items=64)  # width of each stage; 2x2
    # max-pool between stages
    depth: int = option(2, ge=1, le=MAX_DEPTH)  # [spatial -> FC] pairs per stage (the paper: 2)
    layer: str = option("repmlp", choices=("repmlp", "conv"))  # the spatial layer: "repmlp" or "conv" (conv-BN, for the
    # baselines)
    conv_kernel: int = option(3, ge=1, le=63)  # kernel of the spatial layer when layer="conv"
    groups: int = option(2, ge=1, le=MAX_WIDTH)  # groups of FC3 and the LP convs (or of the spatial conv)
    partition: int = option(8, ge=1, le=MAX_SIDE)  # RepMLP partition side h = w
    kernels: tuple[int, ...] = option((1, 3, 5, 7), ge=1, le=63, max_items=16)  # Local Perceptron kernel sizes; () for
    # no LP
    global_perceptron: bool = True  # use the Global Perceptron (where a stage has more than one partition)
    partition_perceptron: bool = True  # use FC3 + BN in the train form
    gp_reduction: int = option(1, ge=1, le=MAX_WIDTH)  # GP hidden width C hp wp / gp_reduction
    fc_as_conv: int = option(0, ge=0, le=63)  # k > 0 replaces FC3 by a k x k conv (the paper's "FC vs conv" ablation)
    hidden_dim: int = option(512, ge=1, le=MAX_WIDTH)  # width of the FC between global pooling and the classifier
    stem_patch: int = option(1, ge=1, le=MAX_SIDE)  # stem: an FC on each p x p patch (stride p); 1 is the paper's
    # per-pixel FC


class StageNet(StagedFeatures, ImageClassifier):
    """The RepMLP paper's CIFAR layout (Fig. 2), with RepMLP or a conv as its spatial layer.

    stem FC (1x1, or p x p patches with ``stem_patch``) -> per stage of width C, with ``depth`` = 2:
    [spatial(C) -> ReLU -> FC(C, C) -> spatial(C) -> ReLU -> FC(C, C')],
    with BN after every FC and conv and ReLU after every FC; a 2x2 max-pool between stages; then global average
    pool -> FC(C_last, hidden) -> BN -> ReLU -> classifier. Stage s sees maps of side img_size / 2^s.

    Features: the output of each stage (``stages.s``, after its max-pool), at reductions p 2^(s+1) and p 2^(S-1)
    for the last stage (p the stem patch).
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
        n = len(chans)
        self.feature_info = [
            {"num_chs": chans[min(i + 1, n - 1)], "reduction": p * 2 ** min(i + 1, n - 1), "module": f"stages.{i}"}
            for i in range(n)
        ]
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

    def check_feature_input(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, (self.img_size, self.img_size) if self.fixed_input_size else None)

    def feature_stages(self) -> list[list[nn.Module]]:
        """[stem, stage 0's layers] -> stage 1's layers -> ...: (B, C_last, H / (p 2^(S-1)), W / (p 2^(S-1)))."""
        stages = [list(stage) for stage in self.stages]
        return [[self.stem, *stages[0]], *stages[1:]]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(x.mean(dim=(2, 3)))  # (B, C, h, w) -> (B, hidden)
        return x if pre_logits else self.head(x)


# ---- registry ------------------------------------------------------------------------------------------------

_pure = partial(StageNetConfig, num_classes=10)
_pure28 = partial(_pure, img_size=28, in_chans=1, partition=7)  # 28 -> 14 -> 7: partitions of 7 x 7
_pure32 = partial(_pure, img_size=32, in_chans=3, partition=8)  # the paper's CIFAR network: 32 -> 16 -> 8
_wide = {"layer": "conv", "conv_kernel": 3, "groups": 1, "channels": (32, 64, 128)}
_conv9 = {"layer": "conv", "conv_kernel": 9}

_SIZES = {28: (_pure28, "28x28x1"), 32: (_pure32, "32x32x3")}


def _both_sizes(layouts: dict[str, tuple[dict, str]]) -> dict[str, Variant]:
    """``{stem: (overrides, description)}`` -> the 28-px and 32-px variant of each layout."""
    return {
        f"{stem}_{n}": Variant(make(**over), f"{desc}, {shape}")
        for stem, (over, desc) in layouts.items()
        for n, (make, shape) in _SIZES.items()
    }


# The fast pure-MLP network: a 2x2 patch stem (an FC on non-overlapping patches) halves the resolution, then two
# stages at 14x14 (four 7x7 partitions with a Global Perceptron) and 7x7 (one partition); Local Perceptron kernels
# 1 and 3 (a 5x5 branch cost 20% more time for no gain within a 10-minute budget). About 5 times cheaper to train
# than the paper's layout at full resolution; deployed it is FC-only.
_fast = partial(_pure, stem_patch=2, channels=(32, 64), kernels=(1, 3), groups=4)
VARIANTS = {
    **_both_sizes(
        {
            "repmlp_pure": ({}, "pure-MLP RepMLP network (RepMLP Table 1)"),
            "repmlp_pure_nogp": ({"global_perceptron": False}, "pure-MLP RepMLP without Global Perceptron"),
            "repmlp_pure_nopp": ({"partition_perceptron": False}, "pure-MLP RepMLP without Partition Perceptron"),
            "repmlp_pure_nolp": ({"kernels": ()}, "pure-MLP RepMLP without Local Perceptron"),
            "repmlp_pure_fc3conv9": ({"fc_as_conv": 9}, "pure-MLP layout, FC3 replaced by a 9x9 conv"),
        }
    ),
    "repmlp_fast_28": Variant(_fast(img_size=28, in_chans=1, partition=7), "fast pure-MLP RepMLP net, 28x28x1"),
    "repmlp_fast_32": Variant(_fast(img_size=32, in_chans=3, partition=8), "fast pure-MLP RepMLP net, 32x32x3"),
}
CONVNET_VARIANTS = _both_sizes(
    {
        "repmlp_pure_conv9": (_conv9, "pure-MLP layout, RepMLP replaced by a 9x9 conv"),
        "wide_convnet": (_wide, "Wide ConvNet (RepMLP Table 1 baseline)"),
    }
)
_STEM = replace(IMAGENET_DEFAULT, first_conv="stem.0.conv")
register_family("repmlp", StageNet, VARIANTS, PAPER, _STEM)
register_family("convnet", StageNet, CONVNET_VARIANTS, PAPER, _STEM)
