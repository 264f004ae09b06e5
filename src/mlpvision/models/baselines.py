"""Two reference points for the inductive-bias lab, at the ends of the prior spectrum.

- :class:`PlainMLP`: the image flattened into one vector and passed through fully-connected layers. It has
  global reach and knows every pixel's position, but no notion of which pixels are neighbours: permuting the
  pixels (the same way in every image) leaves what it can learn unchanged.
- :class:`LocalConvNet`: a few 3x3 conv layers and global average pooling. Strong local prior, a small
  receptive field (1 + 2 x layers pixels) and, after pooling, almost no knowledge of absolute position.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..fields import option
from ..layers import check_input, conv_bn_relu
from .base import ImageClassifier, make_head
from .features import GradCheckpointing, StagedFeatures, run_blocks
from .pretrained_cfg import IMAGENET_DEFAULT
from .registry import MAX_WIDTH, ModelConfig, Variant, register_family

__all__ = ["LocalConvNet", "LocalConvNetConfig", "PlainMLP", "PlainMLPConfig"]


@dataclass(frozen=True, kw_only=True)
class PlainMLPConfig(ModelConfig):
    hidden: tuple[int, ...] = option((1024, 1024), ge=1, le=MAX_WIDTH, max_items=64)  # widths of the hidden FC layers
    drop_rate: float = option(0.1, ge=0, lt=1)  # dropout after every hidden layer


class PlainMLP(GradCheckpointing, ImageClassifier):
    """Flatten -> [Linear -> GELU -> Dropout] x len(hidden) -> classifier.

    No spatial map survives the flattening, so it has no ``feature_info`` and cannot be a ``features_only``
    backbone; gradient checkpointing recomputes each hidden layer.
    """

    feature_info: tuple = ()  # no maps: features_only refuses it

    def __init__(self, cfg: PlainMLPConfig) -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.img_size = cfg.num_classes, cfg.in_chans, cfg.img_size
        layers: list[nn.Module] = []
        width = cfg.in_chans * cfg.img_size**2
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(cfg.drop_rate)]
            width = h
        self.layers = nn.Sequential(*layers)
        self.num_features = width
        self.head = make_head(width, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, (self.img_size, self.img_size))
        # (B, C, H, W) -> (B, C H W) -> (B, hidden); a hidden layer is three modules: Linear, GELU, Dropout
        return run_blocks(self.layers, x.flatten(1), self.grad_checkpointing, every=3)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)


@dataclass(frozen=True, kw_only=True)
class LocalConvNetConfig(ModelConfig):
    channels: tuple[int, ...] = option((32, 64), ge=1, le=MAX_WIDTH, max_items=64)  # one 3x3 conv-BN-ReLU layer per
    # entry (stride 1)


class LocalConvNet(StagedFeatures, ImageClassifier):
    """[3x3 conv -> BN -> ReLU] x len(channels) -> global average pool -> classifier. Features: each layer's map
    (``layers.i``, reduction 1)."""

    fixed_input_size = False

    def __init__(self, cfg: LocalConvNetConfig) -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.img_size = cfg.num_classes, cfg.in_chans, cfg.img_size
        layers, c_in = [], cfg.in_chans
        for c in cfg.channels:
            layers.append(conv_bn_relu(c_in, c, 3, deploy=cfg.deploy))
            c_in = c
        self.layers = nn.Sequential(*layers)
        self.num_features = c_in
        self.head = make_head(c_in, cfg.num_classes)
        self.feature_info = [
            {"num_chs": c, "reduction": 1, "module": f"layers.{i}"} for i, c in enumerate(cfg.channels)
        ]

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * len(self.layers)

    def check_feature_input(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, None)

    def feature_stages(self) -> list[list[nn.Module]]:
        return [[layer] for layer in self.layers]  # each conv-BN-ReLU is one stage and one checkpoint unit

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)
        return x if pre_logits else self.head(x)


def _small_images(prefix: str, config: type[ModelConfig], description: str) -> dict[str, Variant]:
    """The Fashion-MNIST (28x28x1) and CIFAR (32x32x3) variants of a baseline, ten classes each."""
    return {
        f"{prefix}_{n}": Variant(config(img_size=n, in_chans=c, num_classes=10), f"{description}, {n}x{n}x{c}")
        for n, c in ((28, 1), (32, 3))
    }


_MLP_DATA = replace(IMAGENET_DEFAULT, first_conv="layers.0")
register_family(
    "mlp", PlainMLP, _small_images("mlp", PlainMLPConfig, "plain MLP on the flattened image (2 x 1024)"), data=_MLP_DATA
)
register_family(
    "convnet",
    LocalConvNet,
    _small_images("cnn_local", LocalConvNetConfig, "two 3x3 conv layers + global pooling (5x5 receptive field)"),
    data=replace(IMAGENET_DEFAULT, first_conv="layers.0.0.conv"),
)
