"""The RepMLP block (Ding et al., "RepMLP: Re-parameterizing Convolutions into Fully-connected Layers for
Image Recognition", arXiv 2105.01883).

An FC layer sees a whole h x w partition at once: global capacity and positional prior, but no locality.
RepMLP trains three perceptrons side by side:

* **Global Perceptron** (GP): average-pools each partition to a pixel, BN, FC1 -> ReLU -> FC2, and adds the
  result to every pixel of the partition, so partitions learn about each other.
* **Partition Perceptron** (PP): FC3, a (grouped) FC from the C x h x w partition to O x h x w, then BN.
* **Local Perceptron** (LP): convolutions of several kernel sizes (+ BN each) on the same partition.

The LP convs and every BN are linear in eval mode, so after training they merge into FC3 (and the GP's BN
into FC1): the deployed block is FC-only yet carries the local prior the convs learned. Partitions share
weights; with (h, w) == (H, W) the block is one FC over the whole map and has no GP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputShapeError
from ..layers import ConvBN, to_2tuple
from ..reparam import Reparameterizable, absorb_bn_into_next_linear, conv_to_fc, fuse_bn, pad_kernel

__all__ = ["GlobalPerceptron", "RepMLPBlock"]


class GlobalPerceptron(nn.Module):
    """Per-partition summaries mixed by a 2-layer FC: (N, C, H, W) -> (N, C, hp, 1, wp, 1), added to the input.

    Args:
        channels: C.
        grid: (hp, wp), the number of partitions along H and W.
        partition: (h, w).
        reduction: FC1 maps C * hp * wp to C * hp * wp / reduction.
        deploy: build the deploy form (BN absorbed into FC1).
    """

    def __init__(
        self, channels: int, grid: tuple[int, int], partition: tuple[int, int], reduction: int = 1, deploy: bool = False
    ) -> None:
        super().__init__()
        self.channels, self.grid = channels, grid
        n = channels * grid[0] * grid[1]
        self.pool = nn.AvgPool2d(partition)
        self.bn = nn.Identity() if deploy else nn.BatchNorm2d(channels)
        self.fc1 = nn.Linear(n, max(n // reduction, 1))
        self.fc2 = nn.Linear(max(n // reduction, 1), n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.bn(self.pool(x)).flatten(1)  # (N, C, H, W) -> (N, C, hp, wp) -> (N, C hp wp)
        v = self.fc2(F.relu(self.fc1(v)))
        return v.reshape(-1, self.channels, self.grid[0], 1, self.grid[1], 1)


class RepMLPBlock(Reparameterizable):
    """RepMLP v1 block: (N, C, H, W) -> (N, O, H, W), in train form or deploy form.

    Args:
        in_chans: C.
        out_chans: O.
        img_size: (H, W) of the input map (fixed, like any FC).
        partition: (h, w); must divide (H, W).
        groups: g, groups of FC3 and of the LP convs (must divide C and O).
        kernels: LP kernel sizes (odd); empty for no Local Perceptron.
        global_perceptron: use the GP (only where (h, w) != (H, W)).
        partition_perceptron: use FC3 + BN; without it the train form is LP only (the deploy form is still an FC).
        gp_reduction: GP hidden width is C * hp * wp / gp_reduction.
        fc_as_conv: 0 for a true FC3; k > 0 replaces FC3 by a k x k conv + BN (the paper's "FC vs conv" ablation;
            the deploy form is then a conv, not an FC).
        deploy: build the deploy form (GP FC1/FC2 and one biased FC3, no conv, no BN).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        img_size: int | tuple[int, int],
        partition: int | tuple[int, int],
        groups: int = 1,
        kernels: tuple[int, ...] = (1, 3, 5, 7),
        global_perceptron: bool = True,
        partition_perceptron: bool = True,
        gp_reduction: int = 1,
        fc_as_conv: int = 0,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        (H, W), (h, w) = to_2tuple(img_size), to_2tuple(partition)
        if H % h or W % w:
            raise ConfigError(f"RepMLP partition {h}x{w} does not divide the {H}x{W} map")
        if in_chans % groups or out_chans % groups:
            raise ConfigError(f"groups={groups} must divide both in_chans={in_chans} and out_chans={out_chans}")
        if any(k % 2 == 0 or k < 1 for k in kernels) or (fc_as_conv and fc_as_conv % 2 == 0):
            raise ConfigError(f"kernel sizes must be odd and positive, got {kernels} and fc_as_conv={fc_as_conv}")
        if not partition_perceptron and not kernels:
            raise ConfigError("a RepMLP block needs the Partition Perceptron or the Local Perceptron (or both)")
        self.in_chans, self.out_chans = in_chans, out_chans
        self.img_size, self.partition, self.grid = (H, W), (h, w), (H // h, W // w)
        self.groups, self.kernels = groups, tuple(kernels)
        self.partition_perceptron, self.fc_as_conv, self.deploy = partition_perceptron, fc_as_conv, deploy
        self.gp_reduction = gp_reduction
        self.has_gp = global_perceptron and (h, w) != (H, W)
        self.gp = GlobalPerceptron(in_chans, self.grid, (h, w), gp_reduction, deploy) if self.has_gp else None

        if fc_as_conv:
            k = max((fc_as_conv, *kernels)) if deploy else fc_as_conv
            self.fc3 = (
                nn.Conv2d(in_chans, out_chans, k, padding=k // 2, groups=groups)
                if deploy
                else ConvBN(in_chans, out_chans, k, groups=groups)
            )
        elif deploy or partition_perceptron:
            # FC3 is a grouped FC on the flattened partition, stored as a grouped 1x1 conv weight
            self.fc3 = nn.Conv2d(in_chans * h * w, out_chans * h * w, 1, groups=groups, bias=deploy)
            self.fc3_bn = None if deploy else nn.BatchNorm1d(out_chans * h * w)
        if not deploy:
            self.lp = nn.ModuleDict({f"conv{k}": ConvBN(in_chans, out_chans, k, groups=groups) for k in kernels})
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        # a deploy-form block gets its weights from a train-form block or a file: the QR would be wasted
        if isinstance(getattr(self, "fc3", None), nn.Conv2d) and not self.fc_as_conv and not self.deploy:
            # orthogonal per group, as for an FC layer; the default conv init assumes a small fan-in
            w = self.fc3.weight.view(self.groups, -1, self.fc3.weight.shape[1])
            for i in range(self.groups):
                nn.init.orthogonal_(w[i])

    def extra_repr(self) -> str:
        parts = [f"{self.in_chans}->{self.out_chans}", f"map={self.img_size}", f"partition={self.partition}"]
        parts += [f"groups={self.groups}", f"kernels={self.kernels}", f"gp={self.has_gp}", f"deploy={self.deploy}"]
        return ", ".join(parts)

    def _partition_fc(self, parts: torch.Tensor) -> torch.Tensor:
        """FC3 on partitions: (N', C, h, w) -> (N', O, h, w)."""
        n, (h, w), g = parts.shape[0], self.partition, self.groups
        weight = self.fc3.weight.flatten(1)  # (O h w, C h w / g)
        if g == 1:
            y = F.linear(parts.reshape(n, -1), weight, self.fc3.bias)
        elif torch.onnx.is_in_onnx_export():
            # one 2-D MatMul per group: ONNX Runtime packs (and int8-quantizes) a 2-D constant weight once, at
            # load time; a batched 3-D weight is re-packed on every call
            x, o, bias = parts.reshape(n, g, -1), weight.shape[0] // g, self.fc3.bias
            outs = [
                F.linear(x[:, i], weight[i * o : (i + 1) * o], None if bias is None else bias[i * o : (i + 1) * o])
                for i in range(g)
            ]
            y = torch.cat(outs, dim=1)
        else:
            # one matmul per group, batched: much faster on CPU than a grouped 1x1 conv on (N', C h w, 1, 1)
            xg = parts.reshape(n, g, -1).transpose(0, 1)  # (g, N', C h w / g)
            wg = weight.reshape(g, -1, weight.shape[1]).transpose(1, 2)  # (g, C h w / g, O h w / g)
            if self.fc3.bias is None:
                y = torch.bmm(xg, wg)
            else:
                y = torch.baddbmm(self.fc3.bias.reshape(g, 1, -1), xg, wg)
            y = y.transpose(0, 1).reshape(n, -1)  # (N', O h w)
        if not self.deploy:
            y = self.fc3_bn(y)
        return y.reshape(n, self.out_chans, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        if (self.in_chans, *self.img_size) != (C, H, W):
            expected = f"(N, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]})"
            raise InputShapeError(f"RepMLP block expects {expected}, got {tuple(x.shape)}")
        (hp, wp), (h, w) = self.grid, self.partition
        x6 = x.reshape(N, C, hp, h, wp, w)
        if self.gp is not None:
            x6 = x6 + self.gp(x)  # one global value per partition and channel, broadcast over its pixels
        parts = x6.permute(0, 2, 4, 1, 3, 5).reshape(N * hp * wp, C, h, w)  # every partition becomes a sample

        if self.fc_as_conv:
            out = self.fc3(parts)
        elif hasattr(self, "fc3"):
            out = self._partition_fc(parts)
        else:
            out = 0
        if not self.deploy:
            for conv in self.lp.values():
                out = out + conv(parts)
        # (N hp wp, O, h, w) -> (N, O, hp, h, wp, w) -> (N, O, H, W)
        return out.reshape(N, hp, wp, self.out_chans, h, w).permute(0, 3, 1, 4, 2, 5).reshape(N, -1, H, W)

    # ---- re-parameterization --------------------------------------------------------------------------------

    def _local_kernel_bias(self, size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The LP branches (with BN) as one (O, C / g, size, size) kernel and bias, or None without LP."""
        if self.deploy or not self.kernels:
            return None
        fused = [m.get_equivalent_weight_bias() for m in self.lp.values()]
        kernel = sum(pad_kernel(k, size) for k, _ in fused)
        bias = sum(b for _, b in fused)
        return kernel, bias

    def get_equivalent_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the deploy-form FC3 (or, with ``fc_as_conv``, of the deploy conv).

        FC3's weight is (O h w, C h w / g) in (channel, row, column) order of the flattened partition.
        """
        if self.deploy:
            return (self.fc3.weight if self.fc_as_conv else self.fc3.weight.flatten(1)), self.fc3.bias
        h, w = self.partition
        if self.fc_as_conv:
            size = max((self.fc_as_conv, *self.kernels))
            weight, bias = self.fc3.get_equivalent_weight_bias()
            weight = pad_kernel(weight, size)
            local = self._local_kernel_bias(size)
            if local is not None:
                weight, bias = weight + local[0], bias + local[1]
            return weight, bias
        weight = bias = 0
        if self.partition_perceptron:
            weight, bias = fuse_bn(self.fc3.weight.flatten(1), self.fc3_bn)
        local = self._local_kernel_bias(max(self.kernels, default=1))
        if local is not None:
            lw, lb = conv_to_fc(local[0], local[1], h, w, self.groups)
            weight, bias = weight + lw, bias + lb
        return weight, bias

    @torch.no_grad()
    def fuse(self) -> RepMLPBlock:
        """The deploy-form block (no conv, no BN unless ``fc_as_conv``); itself when already deployed."""
        if self.deploy:
            return self
        ref = next(self.parameters())
        deployed = RepMLPBlock(
            self.in_chans,
            self.out_chans,
            self.img_size,
            self.partition,
            self.groups,
            self.kernels,
            self.has_gp,
            self.partition_perceptron,
            self.gp_reduction,
            self.fc_as_conv,
            deploy=True,
        ).to(device=ref.device, dtype=ref.dtype)
        weight, bias = self.get_equivalent_weight_bias()
        deployed.fc3.weight.copy_(weight.reshape(deployed.fc3.weight.shape))
        deployed.fc3.bias.copy_(bias)
        if self.gp is not None:
            repeat = self.grid[0] * self.grid[1]
            w1, b1 = absorb_bn_into_next_linear(self.gp.bn, self.gp.fc1.weight, self.gp.fc1.bias, repeat)
            deployed.gp.fc1.weight.copy_(w1)
            deployed.gp.fc1.bias.copy_(b1)
            deployed.gp.fc2.load_state_dict(self.gp.fc2.state_dict())
        return deployed.train(self.training)
