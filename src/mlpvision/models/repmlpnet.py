"""RepMLPNet (Ding et al., "RepMLPNet: Hierarchical Vision MLP with Re-parameterized Locality", arXiv 2112.11081).

RepMLP v2 drops the ResNet host and builds a hierarchical MLP from one unit, ``x + TokenMixer(BN(x))`` then
``+ FFN(BN(.))``. The token mixer is an FC over each h x w partition of a channel (FC3), with weights shared by
"share-sets": channel c uses the matrix of set ``c mod S``, so FC3 holds ``S * (h w)^2`` parameters whatever the
width. Its Local Perceptron, convolutions of the S set-channels (one kernel per set), is merged into FC3 after
training (Locality Injection); its Global Perceptron is a squeeze-excitation gate on the channels.

Deployed (``reparameterize`` or ``deploy=True``) every conv other than the non-overlapping patch projections and
every BatchNorm is gone: the FFN's pre-norm folds into its first FC, the head's norm (a BatchNorm2d on the last
map, before global pooling, as in the official release) into the classifier, and the
token mixer's pre-norm into FC3 and the gate when each channel has its own FC3 (S = C). With shared sets (S < C) a
per-channel affine (ResMLP's ``Affine``, on channels first) stays, as the channels of a set share one matrix but not
one scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputShapeError
from ..fields import option
from ..layers import Affine, ConvBN, check_input, conv_bn_relu, drop_path_or_identity
from ..reparam import Reparameterizable, absorb_bn_into_next_linear, bn_scale_shift, conv_to_fc, fuse_bn, pad_kernel
from .base import ImageClassifier, make_head
from .features import StagedFeatures
from .mixer import stochastic_depth_rates
from .pretrained_cfg import IMAGENET_DEFAULT
from .registry import MAX_DEPTH, MAX_SIDE, MAX_WIDTH, ModelConfig, Variant, register_family

__all__ = ["RepMLPNet", "RepMLPNetConfig", "ShareSetMixer"]

PAPER = "RepMLPNet, arXiv 2112.11081"


class ShareSetMixer(Reparameterizable):
    """The RepMLPNet token mixer with its pre-norm: (N, C, H, W) -> (N, C, H, W).

    ``gate(y) * (FC3(y) + LP(y))`` with ``y = BN(x)``: FC3 maps each h x w partition of each channel to an h x w
    partition with the (h w, h w) matrix of the channel's set, then BN over the S sets; the LP is one k x k conv
    per set (+ BN) for each kernel size; the gate is ``sigmoid(FC(ReLU(FC(mean of y))))`` per channel.

    Args:
        channels: C.
        img_size: (H, W) of the input map.
        partition: (h, w), dividing (H, W).
        sets: S, dividing C.
        kernels: LP kernel sizes (odd); empty for none.
        gp_reduction: the gate's hidden width is C / gp_reduction.
        deploy: build the deploy form.
    """

    def __init__(
        self,
        channels: int,
        img_size: tuple[int, int],
        partition: tuple[int, int],
        sets: int,
        kernels: tuple[int, ...] = (1, 3),
        gp_reduction: int = 4,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        (H, W), (h, w) = img_size, partition
        if H % h or W % w:
            raise ConfigError(f"partition {h}x{w} does not divide the {H}x{W} map")
        if sets < 1 or channels % sets:
            raise ConfigError(f"share-sets S={sets} must divide the {channels} channels")
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ConfigError(f"Local Perceptron kernel sizes must be odd and positive, got {kernels}")
        self.channels, self.img_size, self.partition, self.sets = channels, (H, W), (h, w), sets
        self.kernels, self.gp_reduction, self.deploy = tuple(kernels), gp_reduction, deploy
        if deploy:
            self.norm = nn.Identity() if sets == channels else Affine(channels, channels_first=True)
        else:
            self.norm = nn.BatchNorm2d(channels)
        hidden = max(channels // gp_reduction, 1)
        self.gp_fc1, self.gp_fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)
        n = h * w
        # FC3 of each set, stored as a grouped 1x1 conv weight (S n, n, 1, 1); its bias is per set and position
        self.fc3 = nn.Conv2d(sets * n, sets * n, 1, groups=sets, bias=False)
        if deploy:
            self.fc3_bias = nn.Parameter(torch.zeros(sets, n))
        else:
            self.fc3_bn = nn.BatchNorm2d(sets)
            self.lp = nn.ModuleDict({f"conv{k}": ConvBN(sets, sets, k, groups=sets) for k in kernels})
            with torch.no_grad():
                for i in range(sets):  # orthogonal per set, as for an FC layer
                    nn.init.orthogonal_(self.fc3.weight.view(sets, n, n)[i])

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, map={self.img_size}, partition={self.partition}, sets={self.sets}, "
            f"kernels={self.kernels}, deploy={self.deploy}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        if (self.channels, *self.img_size) != (C, H, W):
            expected = f"(N, {self.channels}, {self.img_size[0]}, {self.img_size[1]})"
            raise InputShapeError(f"RepMLPNet token mixer expects {expected}, got {tuple(x.shape)}")
        (h, w), S = self.partition, self.sets
        hp, wp = H // h, W // w
        y = self.norm(x)
        gate = torch.sigmoid(self.gp_fc2(F.relu(self.gp_fc1(y.mean(dim=(2, 3))))))  # (N, C)
        # every partition of every run of S channels becomes a sample: (M, S, h w), M = N hp wp C / S
        parts = y.reshape(N, C, hp, h, wp, w).permute(0, 2, 4, 1, 3, 5).reshape(-1, S, h * w)
        weight = self.fc3.weight.view(S, h * w, h * w)  # (S, out, in)
        out = torch.bmm(parts.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)  # (M, S, h w)
        if self.deploy:
            out = out + self.fc3_bias  # (S, h w): per set (per channel when S = C) and position
        else:
            out = self.fc3_bn(out.reshape(-1, S, h, w))
            img = parts.reshape(-1, S, h, w)
            for conv in self.lp.values():
                out = out + conv(img)
        out = out.reshape(N, hp, wp, C, h, w).permute(0, 3, 1, 4, 2, 5).reshape(N, C, H, W)
        return out * gate[:, :, None, None]

    # ---- re-parameterization --------------------------------------------------------------------------------

    def get_equivalent_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """FC3 with its BN and the Local Perceptron merged: weight (S, h w, h w), bias (S, h w).

        The token mixer's pre-norm is not included (see :meth:`fuse`).
        """
        if self.deploy:
            n = self.partition[0] * self.partition[1]
            return self.fc3.weight.view(self.sets, n, n), self.fc3_bias
        (h, w), S = self.partition, self.sets
        weight, bias = fuse_bn(self.fc3.weight.view(S, h * w, h * w), self.fc3_bn)
        bias = bias[:, None].expand(S, h * w)
        if self.kernels:
            size = max(self.kernels)
            fused = [conv.get_equivalent_weight_bias() for conv in self.lp.values()]
            kernel = sum(pad_kernel(k, size) for k, _ in fused)  # (S, 1, size, size)
            lw, lb = conv_to_fc(kernel, sum(b for _, b in fused), h, w, groups=S)  # (S h w, h w), (S h w)
            weight, bias = weight + lw.view(S, h * w, h * w), bias + lb.view(S, h * w)
        return weight, bias

    @torch.no_grad()
    def fuse(self) -> ShareSetMixer:
        """The deploy form: one FC3 per set; the pre-norm folded into FC3 and the gate when S = C."""
        if self.deploy:
            return self
        C, S = self.channels, self.sets
        ref = self.fc3.weight
        deployed = ShareSetMixer(C, self.img_size, self.partition, S, self.kernels, self.gp_reduction, deploy=True)
        deployed = deployed.to(device=ref.device, dtype=ref.dtype)
        weight, bias = self.get_equivalent_weight_bias()
        scale, shift = bn_scale_shift(self.norm)
        # the gate sees mean(BN(x)) = scale * mean(x) + shift: fold into its first FC when the norm goes away
        if S == C:
            # channel c: W_c (scale_c x + shift_c) + b_c = (scale_c W_c) x + (b_c + shift_c W_c 1)
            bias = bias + shift[:, None] * weight.sum(dim=2)
            weight = weight * scale[:, None, None]
            w1, b1 = absorb_bn_into_next_linear(self.norm, self.gp_fc1.weight, self.gp_fc1.bias)
            deployed.gp_fc1.weight.copy_(w1)
            deployed.gp_fc1.bias.copy_(b1)
        else:
            deployed.norm.alpha.copy_(scale.view(1, C, 1, 1))
            deployed.norm.beta.copy_(shift.view(1, C, 1, 1))
            deployed.gp_fc1.load_state_dict(self.gp_fc1.state_dict())
        deployed.fc3.weight.copy_(weight.reshape(deployed.fc3.weight.shape))
        deployed.fc3_bias.copy_(bias)
        deployed.gp_fc2.load_state_dict(self.gp_fc2.state_dict())
        return deployed.train(self.training)


class PreNormFFN(Reparameterizable):
    """``FC2(GELU(FC1(BN(x))))`` per pixel (1x1 convs, each followed by BN in the train form)."""

    def __init__(self, channels: int, ratio: int = 4, deploy: bool = False) -> None:
        super().__init__()
        self.channels, self.ratio, self.deploy = channels, ratio, deploy
        hidden = channels * ratio
        if deploy:
            self.norm = nn.Identity()
            self.fc1, self.fc2 = nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, channels, 1)
        else:
            self.norm = nn.BatchNorm2d(channels)
            self.fc1, self.fc2 = ConvBN(channels, hidden, 1), ConvBN(hidden, channels, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))

    @torch.no_grad()
    def fuse(self) -> PreNormFFN:
        if self.deploy:
            return self
        ref = self.fc1.conv.weight
        deployed = PreNormFFN(self.channels, self.ratio, deploy=True).to(device=ref.device, dtype=ref.dtype)
        w1, b1 = self.fc1.get_equivalent_weight_bias()
        w1, b1 = absorb_bn_into_next_linear(self.norm, w1.flatten(1), b1)
        deployed.fc1.weight.copy_(w1.view_as(deployed.fc1.weight))
        deployed.fc1.bias.copy_(b1)
        w2, b2 = self.fc2.get_equivalent_weight_bias()
        deployed.fc2.weight.copy_(w2)
        deployed.fc2.bias.copy_(b2)
        return deployed.train(self.training)


class RepMLPNetUnit(nn.Module):
    """``y = x + mixer(x)``, then ``y + ffn(y)`` (each branch with its pre-norm and optional drop path)."""

    def __init__(self, mixer: ShareSetMixer, ffn: PreNormFFN, drop_path: float = 0.0) -> None:
        super().__init__()
        self.mixer, self.ffn = mixer, ffn
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(x))
        return x + self.drop_path(self.ffn(x))


@dataclass(frozen=True, kw_only=True)
class RepMLPNetConfig(ModelConfig):
    patch_size: int = option(4, ge=1, le=MAX_SIDE)  # stem: an FC on each non-overlapping p x p patch
    channels: tuple[int, ...] = option((64, 128, 256, 512), ge=1, le=MAX_WIDTH, max_items=64)  # width per stage; a 2x2
    # patch FC (stride 2) between stages
    depths: tuple[int, ...] = option((2, 2, 6, 2), ge=0, le=MAX_DEPTH, max_items=64)  # units per stage
    sets: tuple[int, ...] = option((1, 4, 16, 128), ge=1, le=MAX_WIDTH, max_items=64)  # FC3 share-sets S per stage (S =
    # C: one FC3 per channel)
    partitions: tuple[int, ...] = option((), ge=1, le=MAX_SIDE, max_items=64)  # partition side h = w per stage; () =
    # each stage's whole map (the paper)
    kernels: tuple[int, ...] = option((1, 3), ge=1, le=63, max_items=16)  # Local Perceptron kernel sizes; () for none
    gp_reduction: int = option(4, ge=1, le=MAX_WIDTH)  # Global Perceptron hidden width C / gp_reduction
    ffn_ratio: int = option(4, ge=1, le=64)  # FFN hidden width C * ffn_ratio
    drop_path_rate: float = option(0.0, ge=0, lt=1)  # stochastic depth, rising linearly to this over the units


class RepMLPNet(StagedFeatures, ImageClassifier):
    """A hierarchical vision MLP of RepMLPNet units (see the module docstring).

    stem patch FC (+BN, ReLU) -> per stage: ``depths[i]`` units at width ``channels[i]``, then a 2x2 patch FC to the
    next stage's width -> BN on the last map (``head_norm``, BatchNorm2d, as the official release) -> global
    average pool -> classifier. ``pre_logits`` gives the pooled features before the head norm, the same in the
    train form and in the deploy form (where the head norm lives in the classifier).
    Stage i sees maps of side img_size / (patch_size * 2^i).

    Features: the output of each stage (``stages.i``, before the next downsampling), (B, channels[i],
    H / (p 2^i), W / (p 2^i)); ``forward_intermediates(norm=True)`` applies the head norm to the last one (as
    mmpretrain's ``final_norm``).
    """

    def __init__(self, cfg: RepMLPNetConfig) -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.img_size = cfg.num_classes, cfg.in_chans, cfg.img_size
        chans, n = list(cfg.channels), len(cfg.channels)
        if not (len(cfg.depths) == len(cfg.sets) == n) or (cfg.partitions and len(cfg.partitions) != n):
            raise ConfigError("channels, depths, sets (and partitions, if given) need one entry per stage")
        size = cfg.img_size // cfg.patch_size
        if size * cfg.patch_size != cfg.img_size or size % 2 ** (n - 1):
            raise ConfigError(
                f"img_size {cfg.img_size} must be patch_size {cfg.patch_size} times a multiple of {2 ** (n - 1)}"
            )
        d = cfg.deploy
        self.stem = conv_bn_relu(cfg.in_chans, chans[0], cfg.patch_size, stride=cfg.patch_size, padding=0, deploy=d)
        rates = stochastic_depth_rates(cfg.drop_path_rate, sum(cfg.depths))
        stages, downs = [], []
        for i, (c, depth, sets) in enumerate(zip(chans, cfg.depths, cfg.sets, strict=True)):
            part = cfg.partitions[i] if cfg.partitions else size
            units = []
            for _ in range(depth):
                mixer = ShareSetMixer(c, (size, size), (part, part), sets, cfg.kernels, cfg.gp_reduction, deploy=d)
                units.append(RepMLPNetUnit(mixer, PreNormFFN(c, cfg.ffn_ratio, deploy=d), rates.pop(0)))
            stages.append(nn.Sequential(*units))
            if i + 1 < n:
                downs.append(conv_bn_relu(c, chans[i + 1], 2, stride=2, padding=0, deploy=d))
                size //= 2
        self.stages, self.downsamples = nn.ModuleList(stages), nn.ModuleList(downs)
        self.num_features = chans[-1]
        # the last map's norm; the deploy form folds it into the classifier (see fold_into_deploy_form)
        self.head_norm = nn.Identity() if d else nn.BatchNorm2d(chans[-1])
        self.head = make_head(chans[-1], cfg.num_classes)
        self.feature_info = [
            {"num_chs": c, "reduction": cfg.patch_size * 2**i, "module": f"stages.{i}"} for i, c in enumerate(chans)
        ]

    @torch.no_grad()
    def fold_into_deploy_form(self) -> None:
        """Called by :func:`~mlpvision.reparam.reparameterize`: folds the head norm into the classifier.

        In eval mode the norm is a per-channel affine map, which commutes with the global average pool, so
        ``head(pool(BN(x))) = head'(pool(x))`` with the norm absorbed into the classifier's columns.
        """
        if isinstance(self.head_norm, nn.BatchNorm2d) and isinstance(self.head, nn.Linear):
            weight, bias = absorb_bn_into_next_linear(self.head_norm, self.head.weight, self.head.bias)
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        self.head_norm = nn.Identity()

    def check_feature_input(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, (self.img_size, self.img_size))

    def feature_stages(self) -> list[list[nn.Module]]:
        """[stem, stage 0's units] -> [downsample 0, stage 1's units] -> ...; each unit a checkpoint unit."""
        stages = [[self.stem, *self.stages[0]]]
        return stages + [[down, *stage] for down, stage in zip(self.downsamples, self.stages[1:], strict=True)]

    def final_feature_norm(self) -> nn.Module | None:
        return self.head_norm if isinstance(self.head_norm, nn.BatchNorm2d) else None

    def _folded_final_norm(self) -> bool:
        return not isinstance(self.head_norm, nn.BatchNorm2d)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits or self.num_classes <= 0:
            return x.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C), the head norm is the classifier's
        return self.head(self.head_norm(x).mean(dim=(2, 3)))  # BN over (B, h, w) per channel, then pool


# ---- registry ------------------------------------------------------------------------------------------------

_b = {"channels": (96, 192, 384, 768), "depths": (2, 2, 12, 2), "sets": (1, 4, 32, 128)}
# small images: 2x2 patches, 14x14 and 7x7 stages of two units, one FC3 per channel (S = C, so no affine stays when
# deployed) on 7x7 partitions; a training step costs about as much as repmlp_fast_28 at depth 3 (LP kernels 1, 3)
_small = {
    "img_size": 28,
    "in_chans": 1,
    "num_classes": 10,
    "patch_size": 2,
    "channels": (64, 128),
    "depths": (2, 2),
    "sets": (64, 128),
    "partitions": (7, 7),
    "drop_path_rate": 0.1,
}
_d = {"channels": (80, 160, 320, 640), "depths": (2, 2, 18, 2), "sets": (1, 4, 16, 128)}
_l = {"channels": (96, 192, 384, 768), "depths": (2, 2, 18, 2), "sets": (1, 4, 32, 256)}
VARIANTS = {
    "repmlpnet_t224": Variant(RepMLPNetConfig(), "RepMLPNet-T224: 64-512 wide, 2/2/6/2 units, S 1/4/16/128"),
    "repmlpnet_b224": Variant(RepMLPNetConfig(**_b), "RepMLPNet-B224: 96-768 wide, 2/2/12/2 units, S 1/4/32/128"),
    # the 256 px variants of the official release: partitions are the whole stage map (64, 32, 16, 8)
    "repmlpnet_t256": Variant(RepMLPNetConfig(img_size=256), "RepMLPNet-T256 (the T224 layout at 256 px)"),
    "repmlpnet_b256": Variant(RepMLPNetConfig(img_size=256, **_b), "RepMLPNet-B256 (the B224 layout at 256 px)"),
    "repmlpnet_d256": Variant(
        RepMLPNetConfig(img_size=256, **_d), "RepMLPNet-D256: 80-640 wide, 2/2/18/2 units, S 1/4/16/128"
    ),
    "repmlpnet_l256": Variant(
        RepMLPNetConfig(img_size=256, **_l), "RepMLPNet-L256: 96-768 wide, 2/2/18/2 units, S 1/4/32/256"
    ),
    "repmlpnet_28": Variant(
        RepMLPNetConfig(**_small), "small RepMLPNet for 28x28x1, one FC3 per channel on 7x7 partitions"
    ),
    "repmlpnet_32": Variant(
        RepMLPNetConfig(**{**_small, "img_size": 32, "in_chans": 3, "partitions": (8, 8)}), "small RepMLPNet, 32x32x3"
    ),
    "repmlpnet_64": Variant(
        RepMLPNetConfig(**{**_small, "img_size": 64, "patch_size": 4, "partitions": (8, 8), "num_classes": 11}),
        "small RepMLPNet for 64x64x1 (scenes): 4x4 patches, 16x16 and 8x8 stages, 8x8 partitions",
    ),
}
register_family("repmlp", RepMLPNet, VARIANTS, PAPER, replace(IMAGENET_DEFAULT, first_conv="stem.0.conv"))
