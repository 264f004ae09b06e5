"""The weight EMA (torch's ``AveragedModel``), its optional decay warm-up, and BatchNorm statistics recomputed
for the averaged weights."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

__all__ = ["build_ema", "recompute_bn_stats", "warmup_ema_fn"]


def build_ema(model: nn.Module, decay: float, warmup: bool) -> AveragedModel | None:
    """An EMA of ``model``'s weights and buffers with ``decay`` (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    avg_fn = warmup_ema_fn(decay) if warmup else get_ema_multi_avg_fn(decay)
    return AveragedModel(model, multi_avg_fn=avg_fn, use_buffers=True)


def warmup_ema_fn(decay: float):
    """EMA update whose decay ramps up as (1 + n) / (10 + n) to ``decay``.

    With a fixed decay d the average still holds d^n of the initial weights after n updates, and BatchNorm
    statistics averaged alongside lag even more: with d = 0.9995 the EMA of a BN network is useless for the first
    ~20 epochs of Fashion-MNIST. The ramp makes early averages span only the recent updates.
    """

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # integer buffers (BatchNorm's batch counters)
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1 - d))

    return update


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, loader: DataLoader) -> nn.Module:
    """Sets the running statistics of every BatchNorm in ``model`` to the mean of its batch statistics over
    ``loader``; returns ``model`` in eval mode.

    An EMA of a BatchNorm network averages the running statistics too, and they describe activations of weights
    from further back than the averaged weights do. Only the BatchNorms run in training mode here (torch's
    ``update_bn`` also switches on dropout and drop path, which would make the statistics random).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not norms:
        return model
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    device = next(model.parameters()).device
    for images, _ in loader:
        model(images.to(device))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()
