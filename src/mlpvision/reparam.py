"""Structural re-parameterization: the math that merges convolutions and BatchNorms into plain layers.

A re-parameterizable module (:class:`Reparameterizable`) has a train form with extra branches and normalization
and a deploy form with one plain layer that computes the same function in eval mode. It exposes the deploy
layer's parameters as a differentiable function of its own (``get_equivalent_weight_bias``) and builds its
deploy-form module with ``fuse()``. :func:`reparameterize` walks a model and fuses every such module.

The fusions, each exact when BatchNorm uses its running statistics (eval mode):

* BN after a conv or linear layer: ``W' = W * gamma / sigma`` per output channel,
  ``b' = beta + (b - mu) * gamma / sigma``, with ``sigma = sqrt(var + eps)``.
* parallel convs of different kernel sizes: zero-pad each kernel to the largest and add.
* a conv on an h x w map as an FC layer (the identity trick): feed the identity matrix, arranged as a batch of
  one-hot images, through the conv; the responses are the FC's columns.
* BN before a linear layer: ``W' = W * scale`` per input column, ``b' = b + W @ shift``.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, ConfigError

__all__ = [
    "DeployCheck",
    "Reparameterizable",
    "absorb_bn_into_next_linear",
    "bn_scale_shift",
    "check_deploy_form",
    "conv_to_fc",
    "fuse_bn",
    "needs_fusion",
    "non_mlp_layers",
    "pad_kernel",
    "reparameterize",
]


class Reparameterizable(nn.Module):
    """Mixin for modules with a train form and an equivalent deploy form.

    ``deploy`` is True for a module already in deploy form (a class may build either form).
    """

    deploy: bool = False

    def get_equivalent_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the deploy-form layer, differentiable with respect to this module's parameters."""
        raise NotImplementedError

    def fuse(self) -> nn.Module:
        """The deploy-form module (a new module; this one is left unchanged)."""
        raise NotImplementedError


def bn_scale_shift(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale`` and ``shift`` such that eval-mode ``bn(x) == scale * x + shift``."""
    if bn.running_var is None or bn.running_mean is None:
        raise ConfigError("cannot fuse a BatchNorm that tracks no running statistics")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def fuse_bn(
    weight: torch.Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the single layer equal to ``bn(layer(x))`` in eval mode.

    Args:
        weight: conv (O, C, k, k) or linear (O, C) weight; output channels first.
        bn: the BatchNorm over the O outputs.
        bias: the layer's own bias (O,), if any.
    """
    scale, shift = bn_scale_shift(bn)
    fused_w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    fused_b = shift if bias is None else shift + bias * scale
    return fused_w, fused_b


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pads a square (O, C, k, k) kernel to (O, C, size, size), centred (k and size both odd)."""
    k = kernel.shape[-1]
    if k > size or (size - k) % 2:
        raise ValueError(f"cannot centre a {k}x{k} kernel in {size}x{size}")
    p = (size - k) // 2
    return F.pad(kernel, [p, p, p, p])


def _tap_shifts(k: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """(k, n, n) 0/1 matrices: ``[a, i, i2]`` is 1 where output position i reads input position i2 = i + a - k // 2
    through kernel tap a of a 'same'-padded stride-1 conv along an axis of length n (zero outside the map)."""
    i = torch.arange(n, device=like.device)
    taps = torch.arange(k, device=like.device)[:, None, None]
    return (i[None, None, :] == i[None, :, None] + taps - k // 2).to(like.dtype)


def conv_to_fc(kernel: torch.Tensor, bias: torch.Tensor | None, h: int, w: int, groups: int = 1):
    """The FC layer equal to a stride-1, 'same'-padded conv on an h x w map (zero padding at the borders).

    The FC acts on the flattened map (C * h * w,) in (C, h, w) order and produces (O * h * w,) in (O, h, w)
    order. With ``groups`` g the FC is grouped the same way (a grouped 1x1 conv on the flattened vector):
    its weight is (O * h * w, C * h * w / g).

    Args:
        kernel: (O, C / g, k, k) with k odd.
        bias: (O,) or None.
        h, w: the map size.
        groups: conv groups g.

    Returns:
        (weight, bias) of the FC, differentiable in ``kernel`` and ``bias``.
    """
    out_chans, in_per_group, k, _ = kernel.shape
    if out_chans % groups:
        raise ValueError(f"{out_chans} output channels do not split into {groups} groups")
    # output pixel (i, j) reads input pixel (i + a - k // 2, j + b - k // 2) through kernel tap (a, b): one 0/1
    # shift matrix per tap and axis places every tap, so each FC entry is one kernel entry (exact) or zero; this
    # costs C / g times less than convolving a batch of C h w one-hot images, and the same memory as the result
    weight = torch.einsum("ocab,aiI,bjJ->oijcIJ", kernel, _tap_shifts(k, h, kernel), _tap_shifts(k, w, kernel))
    weight = weight.reshape(out_chans * h * w, in_per_group * h * w)  # (O h w, C h w / g)
    fc_bias = None if bias is None else bias.repeat_interleave(h * w)
    return weight, fc_bias


def absorb_bn_into_next_linear(
    bn: nn.BatchNorm1d | nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor | None, repeat: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``linear(flatten(bn(x)))`` as one linear layer, in eval mode.

    Args:
        bn: BatchNorm over C channels.
        weight: (O, C * repeat) weight of the linear layer that follows; its inputs are the BN output flattened
            channel-major, so each channel's scale applies to ``repeat`` consecutive columns.
        bias: (O,) bias of that linear layer, or None.
        repeat: elements per channel in the flattened input (e.g. hp * wp pooled positions).
    """
    scale, shift = bn_scale_shift(bn)
    scale, shift = scale.repeat_interleave(repeat), shift.repeat_interleave(repeat)
    fused_b = weight @ shift
    if bias is not None:
        fused_b = fused_b + bias
    return weight * scale.unsqueeze(0), fused_b


def needs_fusion(model: nn.Module) -> bool:
    """Whether ``model`` holds a re-parameterizable module still in its train form (what :func:`reparameterize`
    would change)."""
    return any(isinstance(m, Reparameterizable) and not m.deploy for m in model.modules())


@dataclasses.dataclass(frozen=True)
class DeployCheck:
    """How closely a deploy form reproduced its train form on one input batch (eval mode)."""

    max_abs_diff: float  # largest |train - deploy| over the outputs
    output_scale: float  # largest |train| output

    @property
    def relative(self) -> float:
        return self.max_abs_diff / max(self.output_scale, 1e-12)


@torch.no_grad()
def check_deploy_form(
    model: nn.Module, deployed: nn.Module, x: torch.Tensor, rtol: float = 1e-4, what: str = "the deploy form"
) -> DeployCheck:
    """Asserts that ``deployed`` computes what ``model`` computes on ``x``: the largest output difference must
    stay within ``rtol`` of the largest output magnitude.

    The one "train and deploy agree" rule: model files, ONNX export, training and the tests all verify with it.

    Raises:
        CheckpointError: when they disagree (``what`` names the converted side in the message).
    """
    before, after = model(x).float(), deployed(x).float()
    check = DeployCheck((before - after).abs().max().item(), before.abs().max().item())
    if not check.max_abs_diff <= rtol * max(check.output_scale, 1e-12):
        raise CheckpointError(
            f"{what} differs from the model by {check.max_abs_diff:.3g} (output scale {check.output_scale:.3g})"
        )
    return check


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, Reparameterizable):
            if not child.deploy:
                setattr(module, name, child.fuse())
        else:
            _fuse_children(child)


@torch.no_grad()
def reparameterize(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Converts every re-parameterizable part of ``model`` to its deploy form.

    The model must be in eval mode: fusion uses BatchNorm's running statistics, and the converted model equals
    the original only in eval mode. Converting an already converted model changes nothing. A model with a
    ``fold_into_deploy_form()`` method (a fusion across its parts) has it called last. A model config with
    a ``deploy`` field is updated, so that a converted checkpoint records its form.

    Args:
        model: any model; modules that are not :class:`Reparameterizable` are kept as they are.
        inplace: convert ``model`` itself instead of a copy.
    """
    if model.training:
        raise ConfigError(
            "cannot re-parameterize a model in training mode: BatchNorm statistics are still moving; "
            "call model.eval() first"
        )
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, Reparameterizable):
        raise ConfigError("reparameterize() converts the modules inside a model; call .fuse() on a single block")
    _fuse_children(model)
    fold = getattr(model, "fold_into_deploy_form", None)  # a model's own fusions across its parts
    if callable(fold):
        fold()
    cfg = getattr(model, "config", None)
    if dataclasses.is_dataclass(cfg) and any(f.name == "deploy" for f in dataclasses.fields(cfg)):
        model.config = dataclasses.replace(cfg, deploy=True)
    return model


def non_mlp_layers(model: nn.Module) -> list[str]:
    """Names of the layers that keep ``model`` from being all-MLP, each with the reason.

    All-MLP here means: no normalization with batch statistics and no convolution other than a non-overlapping
    patch projection (kernel = stride, no padding or dilation; 1x1 convolutions are per-pixel FC layers).
    A deployed RepMLP network passes; its train form and any ResNet do not.
    """
    found = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            found.append(f"{name}: {type(m).__name__}")
        elif isinstance(m, nn.modules.conv._ConvNd):
            padded = m.padding != "valid" if isinstance(m.padding, str) else any(m.padding)
            if m.kernel_size != m.stride or padded or any(d != 1 for d in m.dilation):
                found.append(
                    f"{name}: {type(m).__name__} kernel {m.kernel_size}, stride {m.stride}, padding {m.padding}, "
                    f"dilation {m.dilation} (not a patch projection)"
                )
    return found
