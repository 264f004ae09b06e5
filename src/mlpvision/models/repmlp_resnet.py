"""RepMLP-ResNets (arXiv 2105.01883, Sec. 3.4): ResNets whose stride-1 blocks in chosen stages carry a RepMLP block.

Every conv + BN pair is a :class:`~mlpvision.layers.ConvBN`, so :func:`~mlpvision.reparam.reparameterize`
removes every BatchNorm; ``create_model(name, deploy=True)`` builds that deploy form directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import check_input, conv_bn, conv_bn_relu
from .base import ImageClassifier, make_head
from .features import StagedFeatures
from .pretrained_cfg import IMAGENET_DEFAULT
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family
from .repmlp import RepMLPBlock

__all__ = ["RepMLPResNet", "RepMLPResNetConfig"]

PAPER = "RepMLP, arXiv 2105.01883"


@dataclass(frozen=True, kw_only=True)
class RepMLPResNetConfig(ModelConfig):
    block: str = option("bottleneck", choices=("basic", "bottleneck"))  # "bottleneck" (ResNet-50) or "basic"
    # (ResNet-18)
    layers: tuple[int, ...] = option((3, 4, 6, 3), ge=0, le=MAX_DEPTH, max_items=64)  # blocks per stage (c2, c3, c4,
    # c5)
    stem: str = option("imagenet", choices=("imagenet", "cifar"))  # "imagenet" (7x7 stride 2 + max-pool) or "cifar"
    # (3x3 stride 1)
    # "bottleneck": RepMLP between two 3x3 convs (bottleneck blocks; basic blocks: 1x1 -> RepMLP -> 1x1);
    # "inside": basic blocks keep their two 3x3 convs, narrowed to C/r around the RepMLP (the paper's form);
    # "light": 1x1 -> RepMLP -> 1x1
    repmlp_form: str = option("bottleneck", choices=("bottleneck", "inside", "light"))
    repmlp_stages: tuple[int, ...] = option((1, 2), ge=0, le=63, max_items=64)  # stages (0-based) whose stride-1 blocks
    # get RepMLP: c3 and c4
    reductions: tuple[int, ...] = option((1, 2, 4, 1), ge=1, le=MAX_WIDTH, max_items=64)  # per stage: RepMLP width =
    # block mid width / r (bottleneck form)
    light_reduction: int = option(8, ge=1, le=MAX_WIDTH)  # light form: RepMLP width = block input width /
    # light_reduction
    groups: int = option(8, ge=1, le=MAX_WIDTH)  # FC3 and LP groups
    partition: int = option(7, ge=1, le=MAX_SIDE)  # RepMLP partition side h = w
    kernels: tuple[int, ...] = option((1, 3, 5), ge=1, le=63, max_items=16)  # Local Perceptron kernel sizes
    gp_reduction: int = option(1, ge=1, le=MAX_WIDTH)  # GP hidden width C hp wp / gp_reduction
    width: int = option(64, ge=1, le=MAX_WIDTH)  # channels of the stem and the first stage (doubling per stage): 64 is
    # ResNet's


class _Residual(nn.Module):
    """``relu(branch(x) + shortcut(x))``."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.branch(x) + self.shortcut(x))


class RepMLPResNet(StagedFeatures, ImageClassifier):
    """A ResNet whose stride-1 blocks in chosen stages carry a RepMLP block (the paper's RepMLP-ResNet).

    Bottleneck form: 1x1 (in -> mid) -> 3x3 (mid -> mid / r) -> RepMLP -> ReLU -> 3x3 (mid / r -> mid)
    -> 1x1 (mid -> out), plus the shortcut. Light form: 1x1 (in -> in / 8) -> RepMLP -> ReLU -> 1x1 (-> out).
    All other blocks are plain ResNet blocks; every conv is a ConvBN, so deployment removes every BN.

    Features: the stem's output before its max-pool (``stem.0``, reduction 2) and the four stages (4, 8, 16, 32)
    with the ImageNet stem; the stem and the stages (1, 1, 2, 4, 8) with the CIFAR stem.
    """

    def __init__(self, cfg: RepMLPResNetConfig) -> None:
        super().__init__()
        if cfg.block not in ("basic", "bottleneck") or cfg.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"block must be basic|bottleneck and stem imagenet|cifar, got {cfg.block}, {cfg.stem}")
        if cfg.repmlp_form not in ("bottleneck", "inside", "light"):
            raise ConfigError(f"repmlp_form must be 'bottleneck', 'inside' or 'light', got {cfg.repmlp_form!r}")
        self.num_classes, self.in_chans, self.img_size = cfg.num_classes, cfg.in_chans, cfg.img_size
        expansion = 4 if cfg.block == "bottleneck" else 1
        d = cfg.deploy
        if cfg.stem == "imagenet":
            self.stem = nn.Sequential(conv_bn_relu(cfg.in_chans, cfg.width, 7, 2, deploy=d), nn.MaxPool2d(3, 2, 1))
            size = (cfg.img_size + 1) // 2
            size = (size + 1) // 2
        else:
            self.stem = conv_bn_relu(cfg.in_chans, cfg.width, 3, deploy=d)
            size = cfg.img_size
        stages, in_chans = [], cfg.width
        for s, n in enumerate(cfg.layers):
            mid = cfg.width * 2**s
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
        imagenet = cfg.stem == "imagenet"
        first = 2 if imagenet else 1
        self.feature_info = [{"num_chs": cfg.width, "reduction": first, "module": "stem.0" if imagenet else "stem"}]
        self.feature_info += [
            {"num_chs": cfg.width * 2**s * expansion, "reduction": first * 2 ** (s + imagenet), "module": f"stages.{s}"}
            for s in range(len(cfg.layers))
        ]

    @staticmethod
    def _block(cfg, in_chans, mid, expansion, stride, size, stage, use_repmlp) -> nn.Module:
        d = cfg.deploy
        out = mid * expansion
        shortcut = conv_bn(in_chans, out, 1, stride, deploy=d) if (stride != 1 or in_chans != out) else nn.Identity()

        def repmlp(chans: int) -> nn.Module:
            return RepMLPBlock(
                chans, chans, size, cfg.partition, cfg.groups, cfg.kernels, True, True, cfg.gp_reduction, deploy=d
            )

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
        elif use_repmlp and cfg.repmlp_form == "inside":  # the basic block's 3x3 convs, narrowed around the RepMLP
            c = mid // cfg.reductions[stage]
            relu = nn.ReLU(inplace=True)
            branch = [conv_bn_relu(in_chans, c, 3, deploy=d), repmlp(c), relu, conv_bn(c, out, 3, deploy=d)]
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

    def check_feature_input(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, (self.img_size, self.img_size))

    def feature_stages(self) -> list[list[nn.Module]]:
        """stem (before its max-pool) -> [max-pool, stage 0's blocks] -> stage 1's blocks -> ..."""
        stages = [list(stage) for stage in self.stages]
        if isinstance(self.stem, nn.Sequential) and isinstance(self.stem[-1], nn.MaxPool2d):  # the ImageNet stem
            return [[self.stem[0]], [self.stem[1], *stages[0]], *stages[1:]]
        return [[self.stem], *stages]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.head(x)


# Small RepMLP-ResNet: ResNet-18 with a CIFAR stem; the stride-1 block of stages 2 and 3 (16x16 and 8x8 maps
# at 32 px, 14x14 and 7x7 at 28 px) becomes 1x1 (C -> C/r) -> RepMLP -> 1x1, with r = 4 and 8 (32 channels).
_small = partial(
    RepMLPResNetConfig,
    block="basic",
    layers=(2, 2, 2, 2),
    stem="cifar",
    reductions=(1, 4, 8, 1),
    groups=4,
    kernels=(1, 3, 5),
    num_classes=10,
)
VARIANTS = {
    # FC3 groups: the bottleneck form has g = 8 in the paper (Table 4) and in the official code. The Light Block is
    # g = 8 in the paper's Table 4 (57.86 M parameters deployed) but g = 4 in the official code and its released
    # checkpoint (RepMLP-Res50-light-224, 86.1 M): both are here, each named after its groups.
    "repmlp_resnet50_g8_224": Variant(RepMLPResNetConfig(), "RepMLP-Res50, bottleneck form, FC3 groups 8, c3+c4"),
    "repmlp_resnet50_light_g8_224": Variant(
        RepMLPResNetConfig(repmlp_form="light"), "RepMLP-Res50, Light Block, FC3 groups 8 (paper Table 4), c3+c4"
    ),
    "repmlp_resnet50_light_g4_224": Variant(
        RepMLPResNetConfig(repmlp_form="light", groups=4),
        "RepMLP-Res50, Light Block, FC3 groups 4 (the official code's), c3+c4",
    ),
    "repmlp_resnet18_28": Variant(_small(img_size=28, in_chans=1, partition=7), "small RepMLP-ResNet-18, 28x28x1"),
    "repmlp_resnet18_32": Variant(_small(img_size=32, partition=8), "small RepMLP-ResNet-18, 32x32x3"),
    # 64 px scenes with the ImageNet stem: c3 and c4 maps are 8x8 and 4x4; the paper's form (the block's 3x3 convs
    # narrowed to C/2 around the RepMLP), RepMLP on 4x4 partitions, LP kernels 1, 3, one FC3 group: more
    # parameters than ResNet-18 (16.0 M against 11.2 M), as RepMLP-Res50 has more than ResNet-50
    "repmlp_resnet18_64": Variant(
        _small(
            img_size=64,
            in_chans=1,
            stem="imagenet",
            repmlp_form="inside",
            reductions=(1, 2, 2, 1),
            groups=1,
            partition=4,
            kernels=(1, 3),
            num_classes=11,
        ),
        "small RepMLP-ResNet-18 (the paper's form), ImageNet stem, 64x64x1 (scenes)",
    ),
}
register_family(
    "repmlp",
    RepMLPResNet,
    VARIANTS,
    PAPER,
    replace(IMAGENET_DEFAULT, interpolation="bilinear", first_conv="stem.0.0.conv"),
)
