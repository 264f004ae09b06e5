"""Parameter and multiply-accumulate counts (MACs) of a model, measured with torch's flop counter."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ..layers import to_2tuple

__all__ = ["ModelStats", "count", "flop_counter"]

_aten = torch.ops.aten


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode, plus the fused CPU attention kernel it has no formula for.

    On real CPU tensors ``scaled_dot_product_attention`` dispatches to a fused flash kernel that torch's counter
    would count as zero (on the meta device it decomposes into counted matmuls); both now count the same.
    """
    return FlopCounterMode(
        display=False,
        custom_mapping={
            _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
            _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
        },
    )


@dataclass(frozen=True)
class ModelStats:
    """What :func:`count` measured for one image."""

    params: int  # trainable and frozen parameters
    macs: int  # multiply-accumulates of one forward pass of one image (matmuls and convolutions)
    img_size: tuple[int, int]  # the input size the MACs were counted at

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def as_dict(self) -> dict:
        return asdict(self)


def count(model: nn.Module, img_size: int | tuple[int, int] | None = None) -> ModelStats:
    """Counts parameters and the MACs of one forward pass on one image.

    Works on models built on the ``meta`` device (no memory, no compute), which is how the zoo counts its
    largest models. MACs cover matrix multiplies, convolutions and attention, as papers count FLOPs;
    elementwise operations (norms, activations) are not counted.

    Args:
        model: any zoo model (uses its ``in_chans`` and ``img_size``).
        img_size: input side or (H, W); the model's own size when None.
    """
    params = sum(p.numel() for p in model.parameters())
    size = to_2tuple(img_size if img_size is not None else model.img_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.zeros(1, model.in_chans, *size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), flop_counter() as counter:
            model(x)
    finally:
        model.train(was_training)
    return ModelStats(params=params, macs=counter.get_total_flops() // 2, img_size=size)
