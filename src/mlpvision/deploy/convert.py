"""Model files from train form to deploy form: structural re-parameterization, verified, saved with the metadata
of the original (model name, config, data set)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..io import DATA_KEY, load_checkpoint, read_metadata, save_model
from ..reparam import check_deploy_form, reparameterize

__all__ = ["DeployReport", "deploy_checkpoint"]


@dataclasses.dataclass(frozen=True)
class DeployReport:
    """What :func:`deploy_checkpoint` did."""

    model: str
    params_before: int
    params_after: int
    max_abs_diff: float  # between train and deploy form on random input, in eval mode
    output_scale: float  # max |output| of the train form on that input
    path: Path


@torch.no_grad()
def deploy_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, batch_size: int = 4, rtol: float = 1e-4, seed: int = 0
) -> DeployReport:
    """Converts a train-form model file to its deploy form, verifies it, and saves it with its metadata.

    The conversion is checked on a random input batch: the largest output difference must stay below
    ``rtol`` times the output scale, else nothing is written.
    """
    model = load_checkpoint(src)
    deployed = reparameterize(model)
    gen = torch.Generator().manual_seed(seed)
    size = model.img_size
    x = torch.randn(batch_size, model.in_chans, size, size, generator=gen)
    check = check_deploy_form(model, deployed, x, rtol)
    data = read_metadata(src).get(DATA_KEY)
    out = save_model(deployed, dst, {DATA_KEY: data} if data else None)

    def params(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return DeployReport(model.model_name, params(model), params(deployed), check.max_abs_diff, check.output_scale, out)
