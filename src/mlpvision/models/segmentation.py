"""Semantic segmentation: any backbone of the zoo (through ``features_only``) with a light FPN-style decoder.

The decoder (a Feature Pyramid Network's top-down path, Lin et al., arXiv 1612.03144, used for segmentation as in
"Panoptic FPN", arXiv 1901.02446, reduced to one output level):

1. a lateral 1x1 conv + BN brings each backbone map i, (B, C_i, H / r_i, W / r_i), to ``decoder_dim`` channels;
2. top-down: from the coarsest map, each sum is upsampled (nearest) to the next finer map's size and added to it;
3. a 3x3 conv + BN + ReLU fuses the finest sum; a 1x1 conv classifies every position into ``num_classes``;
4. the logits are upsampled (bilinear) to the input size: (B, num_classes, H, W).

Why this head: it is the smallest decoder that uses every scale a hierarchical backbone gives (the fine maps carry
the garments' outlines, the coarse ones what they are) and costs little next to the backbone (1x1 laterals, one
3x3 conv), so a comparison of backbones under it compares backbones. UPerNet adds a pyramid-pooling module and a
3x3 conv per level: several times the decoder cost, for context a 64-pixel scene does not need. Every conv of
the head is a conv + BN pair, so the deploy form fuses them (:func:`~mlpvision.reparam.reparameterize` fuses the
backbone's re-parameterisable parts, RepMLP's among them, and the head's in the same walk).

Token backbones (Mixer, ResMLP) give maps of one scale (H / p); their pyramid has one level per chosen block and
the top-down sum simply adds them. Their token-mixing layers are built for one number of tokens, so a model built
for 64x64 takes 64x64 inputs only: another size is an :class:`~mlpvision.errors.InputShapeError` naming the size
the model was built for. The honest choices at another size ``S``, all three offered:

* build the model for it: ``create_model("seg_mixer", img_size=S)`` and train at S (weights of another size do not
  load, as the token-mixing shapes differ);
* the block-diagonal expansion (``mlpvision.train.finetune.expand_token_mixing``; ``mlpvision train --init FILE
  --img-size S`` for S = K x the trained size), which starts the larger model from the trained one: its backbone
  maps of the larger image are the trained model's maps of each tile side by side (a Mixer's token MLP K^2 times
  wider, the ``token_mlp_dim`` its config's ``backbone_args`` then carry), ready to fine-tune;
* a sliding window (``mlpvision.deploy.slide_logits``; ``mlpvision predict --slide``): the trained model itself on
  overlapping S-sized windows of an image of any size, logits averaged where windows overlap. Objects should
  appear at the scale the model was trained at.

Convolutional and RepMLP-ResNet backbones keep their own rules (a ResNet takes any size; RepMLP needs maps that its
partitions divide, a RepMLP-ResNet checks the size it was built for).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..fields import option
from ..layers import conv_bn, conv_bn_relu
from .registry import MAX_DEPTH, MAX_WIDTH, ModelConfig, Variant, create_model, register_family

__all__ = ["FPNDecoder", "SegmentationConfig", "SegmentationModel", "create_segmentation_model"]


@dataclass(frozen=True, kw_only=True)
class SegmentationConfig(ModelConfig):
    """A backbone of the zoo and the decoder on its feature maps.

    ``num_classes`` counts the background (the scenes have 11: background and 10 garments); ``img_size`` and
    ``in_chans`` are the backbone's (it is built with them).
    """

    backbone: str = "resnet18"  # a registered model name, built with features_only
    feature_indices: tuple[int, ...] = option((), ge=0, le=MAX_DEPTH, max_items=16)  # features to decode; (): default
    decoder_dim: int = option(64, ge=1, le=MAX_WIDTH)  # channels of the laterals and the fused map
    backbone_args: dict = field(default_factory=dict)  # the backbone's config overrides, e.g. {"width": 32}


class FPNDecoder(nn.Module):
    """Laterals (1x1 conv + BN) on each map, the top-down nearest-upsample-and-sum, and a 3x3 conv + BN + ReLU.

    Args:
        channels: channels of each input map, finest first.
        dim: decoder width.
        deploy: build the fused (conv with bias) form.
    """

    def __init__(self, channels: list[int], dim: int, deploy: bool = False) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(conv_bn(c, dim, 1, deploy=deploy) for c in channels)
        self.fuse = conv_bn_relu(dim, dim, 3, deploy=deploy)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i), finest first] -> (B, dim, H_0, W_0)."""
        x = self.lateral[-1](features[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features[:-1]), strict=True):
            x = lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="nearest")
        return self.fuse(x)


class SegmentationModel(nn.Module):
    """A backbone's feature maps -> FPN decoder -> per-pixel logits (B, num_classes, H, W).

    Submodules: ``backbone`` (a :class:`~mlpvision.models.features.FeatureExtractor`), ``decoder``
    (:class:`FPNDecoder`), ``head`` (the 1x1 classifier).
    """

    fixed_input_size = True
    dense = True  # per-pixel logits: evaluation and prediction treat it as a segmenter

    def __init__(self, cfg: SegmentationConfig) -> None:
        super().__init__()
        if cfg.num_classes < 1:
            raise ConfigError("a segmentation model needs num_classes >= 1 (background included)")
        if cfg.backbone.startswith("seg_"):
            raise ConfigError(f"the backbone must be a classification model, not {cfg.backbone}")
        fixed = {"num_classes", "in_chans", "img_size", "deploy", "features_only", "out_indices"} & set(
            cfg.backbone_args
        )
        if fixed:
            raise ConfigError(
                f"backbone_args may not set {', '.join(sorted(fixed))}: the segmentation config sets them"
            )
        self.backbone = create_model(
            cfg.backbone,
            num_classes=0,
            in_chans=cfg.in_chans,
            img_size=cfg.img_size,
            deploy=cfg.deploy,
            features_only=True,
            out_indices=list(cfg.feature_indices) or None,
            **dict(cfg.backbone_args),
        )
        # the backbone's final norm prepares its classifier's input; the decoder reads the maps before it (and
        # normalises each in its laterals), so the norm is dropped rather than kept as untrained weights
        for attr in ("norm", "head_norm"):
            if isinstance(getattr(self.backbone.model, attr, None), nn.Module):
                setattr(self.backbone.model, attr, nn.Identity())
        info = self.backbone.feature_info
        order = sorted(range(len(info)), key=lambda i: info.reduction()[i])  # finest first
        if order != list(range(len(info))):
            raise ConfigError(f"feature_indices {cfg.feature_indices} must select features from fine to coarse")
        self.decoder = FPNDecoder(info.channels(), cfg.decoder_dim, deploy=cfg.deploy)
        self.head = nn.Conv2d(cfg.decoder_dim, cfg.num_classes, 1)
        self.num_classes, self.num_features = cfg.num_classes, cfg.decoder_dim
        self.in_chans, self.img_size = cfg.in_chans, cfg.img_size
        self.output_stride = info.reduction()[0]
        self.fixed_input_size = getattr(self.backbone.model, "fixed_input_size", True)

    def fold_into_deploy_form(self) -> None:
        """Called by :func:`~mlpvision.reparam.reparameterize`: the backbone's own fusions across its parts (a
        ResNet's BatchNorms folded into its convs)."""
        fold = getattr(self.backbone.model, "fold_into_deploy_form", None)
        if callable(fold):
            fold()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> decoder map (B, decoder_dim, H / r, W / r), r the finest feature's reduction."""
        return self.decoder(self.backbone(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Decoder map -> logits at its resolution (B, num_classes, H / r, W / r) (the map itself with pre_logits)."""
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> per-pixel logits (B, num_classes, H, W)."""
        logits = self.forward_head(self.forward_features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A new, untrained 1x1 classifier of ``num_classes`` outputs."""
        if num_classes < 1:
            raise ConfigError("a segmentation model needs num_classes >= 1")
        self.head = nn.Conv2d(self.num_features, num_classes, 1)
        self.num_classes = num_classes


def create_segmentation_model(backbone: str, num_classes: int, **kwargs) -> SegmentationModel:
    """A segmentation model (registered as ``seg_fpn``, its config naming the backbone) on any registered
    ``backbone``; ``kwargs`` are other :class:`SegmentationConfig` fields (``img_size``, ``in_chans``,
    ``feature_indices``, ``decoder_dim``, ``deploy``). The backbone's own defaults apply where none is given."""
    return create_model("seg_fpn", backbone=backbone, num_classes=num_classes, **kwargs)


# 64x64 grey scenes, 11 classes (background + 10 garments); each backbone small enough to train on a CPU
_scene = {"img_size": 64, "in_chans": 1, "num_classes": 11}
VARIANTS = {
    "seg_fpn": Variant(
        SegmentationConfig(num_classes=11), "FPN decoder on the backbone its config names (create_segmentation_model)"
    ),
    "seg_resnet18": Variant(
        SegmentationConfig(backbone="resnet18", feature_indices=(1, 2, 3, 4), **_scene),
        "ResNet-18 (ImageNet stem: maps at 1/4 .. 1/32) + FPN decoder, 64x64x1 scenes",
    ),
    "seg_repmlp_resnet": Variant(
        SegmentationConfig(backbone="repmlp_resnet18_64", feature_indices=(1, 2, 3, 4), **_scene),
        "RepMLP-ResNet-18 (RepMLP in c3 and c4, 4x4 partitions) + FPN decoder, 64x64x1 scenes",
    ),
    "seg_mixer": Variant(
        SegmentationConfig(backbone="mixer_t8_64", feature_indices=(3, 5, 7), **_scene),
        "tiny Mixer (8x8 patches: 64 tokens) + FPN decoder on blocks 4, 6, 8, 64x64x1 scenes",
    ),
    "seg_resmlp": Variant(
        SegmentationConfig(backbone="resmlp_tiny_12_p8_64", feature_indices=(5, 8, 11), **_scene),
        "tiny ResMLP-12 (8x8 patches) + FPN decoder on blocks 6, 9, 12, 64x64x1 scenes",
    ),
    "seg_repmlpnet": Variant(
        SegmentationConfig(backbone="repmlpnet_64", **_scene),
        "small RepMLPNet (maps at 1/4, 1/8; 8x8 partitions) + FPN decoder, 64x64x1 scenes",
    ),
}
register_family("segmentation", SegmentationModel, VARIANTS, "FPN, arXiv 1612.03144; Panoptic FPN, arXiv 1901.02446")
