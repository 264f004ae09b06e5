"""The parts of a training recipe that decide each step: optimizer and parameter groups, warm-up + cosine
schedule, MixUp / CutMix, the shuffled batches of an epoch and the seed of each step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2

from ..layers import Affine
from .config import TrainConfig

__all__ = ["build_mixing", "build_optimizer", "build_scheduler", "epoch_batches", "step_seed", "total_steps"]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on biases (of any shape: an untied token mixing holds one per channel) and on
    normalization/affine/LayerScale parameters (1-D); ResMLP's Affine, shaped (1, 1, C), unless ``affine_decay``."""
    kept = (
        set() if cfg.affine_decay else {id(p) for m in model.modules() if isinstance(m, Affine) for p in m.parameters()}
    )
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    decay = [p for name, p in params if p.dim() > 1 and not name.endswith("bias") and id(p) not in kept]
    no_decay = [p for name, p in params if p.dim() <= 1 or name.endswith("bias") or id(p) in kept]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)  # fused: one kernel for all


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """Linear warm-up then cosine decay to ``min_lr`` at the last step, stepped once per optimizer step."""
    total = total_steps(cfg, steps_per_epoch)
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1), eta_min=cfg.min_lr)
    if warmup <= 0:
        return cosine
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[warmup])


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: the epochs', or ``max_steps`` when that comes first."""
    total = cfg.epochs * steps_per_epoch
    return min(total, cfg.max_steps) if cfg.max_steps > 0 else total


def build_mixing(cfg: TrainConfig, num_classes: int) -> Callable | None:
    """torchvision's MixUp / CutMix (one of them per batch when both are on), or None."""
    ops = []
    if cfg.aug.mixup > 0:
        ops.append(v2.MixUp(alpha=cfg.aug.mixup, num_classes=num_classes))
    if cfg.aug.cutmix > 0:
        ops.append(v2.CutMix(alpha=cfg.aug.cutmix, num_classes=num_classes))
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The shuffled global batches of one epoch (the last partial batch is dropped)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + step) * 1009 + rank
