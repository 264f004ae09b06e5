"""Fine-tuning and resolution transfer: reuse trained weights for new classes or a new input size.

MLP models are built for one input size because their token-mixing weights are sized for the number of patches.
For an input K times larger in each side (integer K), the MLP-Mixer paper (appendix C) keeps the patch size,
so the token sequence becomes K^2 times longer, and initialises the token-mixing layers block-diagonally: the
new sequence is treated as K x K spatial parts, each mixed by a copy of the trained weights. We apply the same
rule to ResMLP's cross-patch linear layer. With tokens in raster order the blocks are scattered, not contiguous:
part (a, b) holds the tokens of rows a*gh..(a+1)*gh-1 and columns b*gw..(b+1)*gw-1.

Done this way the expanded model, before any fine-tuning, computes on a K-times larger image exactly what the
original computes on each of its K x K tiles (the pooled features are their mean), and fine-tuning starts from
there. Other sizes are refused with a clear error.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import ConfigError, LimitError
from ..io import MODEL_NAME_KEY, load_checkpoint, read_metadata
from ..io import create_model as create_pretrained
from ..limits import current as current_limits
from ..models import create_model
from ..models.mixer import MlpMixer
from ..models.resmlp import ResMLP
from ..models.segmentation import SegmentationModel

__all__ = ["expand_token_mixing", "load_for_finetuning", "part_index"]


def part_index(grid: tuple[int, int], factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each token of the (factor * gh) x (factor * gw) raster: its part and its index inside the part."""
    gh, gw = grid
    rows = torch.arange(factor * gh).repeat_interleave(factor * gw)
    cols = torch.arange(factor * gw).repeat(factor * gh)
    part = (rows // gh) * factor + cols // gw
    local = (rows % gh) * gw + cols % gw
    return part, local


def _block_diag_in(weight: torch.Tensor, part: torch.Tensor, local: torch.Tensor, parts: int) -> torch.Tensor:
    """(H, S) acting on tokens -> (parts * H, parts * S): output block p reads only the tokens of part p."""
    h = weight.shape[0]
    out = weight.new_zeros(parts * h, len(part))
    for p in range(parts):
        cols = (part == p).nonzero().squeeze(1)
        out[p * h : (p + 1) * h, cols] = weight[:, local[cols]]
    return out


def _block_diag_out(weight: torch.Tensor, part: torch.Tensor, local: torch.Tensor, parts: int) -> torch.Tensor:
    """(S, H) producing tokens -> (parts * S, parts * H): token t of part p reads hidden block p only."""
    h = weight.shape[1]
    out = weight.new_zeros(len(part), parts * h)
    for p in range(parts):
        rows = (part == p).nonzero().squeeze(1)
        out[rows, p * h : (p + 1) * h] = weight[local[rows]]
    return out


@torch.no_grad()
def wider_token_mlp(token_mlp_dim: int, factor: int) -> int:
    """A Mixer's token-MLP hidden width after the expansion to a ``factor``-times larger input: K^2 D_S (the paper's
    block-diagonal initialisation holds one copy of the small MLP per tile)."""
    return token_mlp_dim * factor * factor


def expand_token_mixing(model: nn.Module, img_size: int) -> nn.Module:
    """A copy of a Mixer or ResMLP model, or of a segmentation model on such a backbone, for an input ``img_size``
    = K x its own (integer K >= 1). A segmentation model's backbone maps of a K-times larger image are, before any
    fine-tuning, its maps of each tile side by side; the decoder (convolutions) is copied as it is.

    Raises:
        ConfigError: another model, or a size that is not a multiple of the model's.
        LimitError: an expansion of more parameters than ``limits.max_params`` (a Mixer's token MLP grows as K^4),
            found on the meta device before anything is allocated.
    """
    seg = isinstance(model, SegmentationModel)
    core = model.backbone.model if seg else model
    if not isinstance(core, MlpMixer | ResMLP):
        raise ConfigError(
            f"{getattr(model, 'model_name', type(model).__name__)} cannot change its input size by the "
            "block-diagonal expansion, which is implemented for Mixer and ResMLP and segmentation models on them: "
            "train it at the new size from scratch (convnets take any size as they are)"
        )
    if img_size % model.img_size:
        raise ConfigError(
            f"resolution transfer needs an integer multiple of the trained size {model.img_size}, got {img_size}"
        )
    k = img_size // model.img_size
    if k == 1:
        return model
    parts = k * k
    grid = core.stem.grid_size
    part, local = part_index(grid, k)
    cfg = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
    cfg.update({"img_size": img_size, "num_classes": model.num_classes, "in_chans": model.in_chans})
    if isinstance(core, MlpMixer):
        wider = {"token_mlp_dim": wider_token_mlp(core.config.token_mlp_dim, k)}
        cfg.update({"backbone_args": {**dict(cfg["backbone_args"]), **wider}} if seg else wider)
    params = sum(p.numel() for p in create_model(model.model_name, device="meta", **cfg).parameters())
    limit = current_limits().max_params
    if params > limit:
        raise LimitError(
            f"{model.model_name} expanded to {img_size} px would have {params} parameters, more than the limit of "
            f"{limit} (--max-params): choose a smaller size"
        )
    new = create_model(model.model_name, **cfg)
    sd = model.state_dict()
    new_sd = new.state_dict()
    for key, value in sd.items():
        if ".mlp_tokens.fc1.weight" in key:
            new_sd[key] = _block_diag_in(value, part, local, parts)
        elif ".mlp_tokens.fc1.bias" in key:
            new_sd[key] = value.repeat(parts)
        elif ".mlp_tokens.fc2.weight" in key:
            new_sd[key] = _block_diag_out(value, part, local, parts)
        elif ".mlp_tokens.fc2.bias" in key or ".linear_tokens.bias" in key:
            new_sd[key] = value[local]
        elif ".linear_tokens.weight" in key:
            # (S, S) -> block-diagonal (K^2 S, K^2 S) in raster order: token t reads tokens of its own part
            same = part[:, None] == part[None, :]
            new_sd[key] = torch.where(same, value[local[:, None], local[None, :]], 0.0)
        else:
            new_sd[key] = value
    new.load_state_dict(new_sd, strict=True)
    return new


def load_for_finetuning(
    path: str | os.PathLike,
    model_name: str | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
    new_head: bool = False,
    in_chans: int | None = None,
    model_args: dict | None = None,
) -> nn.Module:
    """Loads weights to fine-tune: a new head when ``num_classes`` differs (or ``new_head``: the classes of
    another task), a new input size if asked.

    Args:
        path: a model file written by mlpvision (name and config in its metadata), or plain weights (a state dict
            with the zoo's keys, timm's included), which then need ``model_name``.
        model_name: the model the run expects; must match the file's when given.
        num_classes: classes of the new task.
        img_size: new input side (a multiple of the trained one for Mixer and ResMLP).
        new_head: replace the classifier even when the number of classes is the same.
        in_chans: plain weights only: the input channels of the new task (the stem is adapted, as timm does).
        model_args: plain weights only: config fields of the model the weights were trained as.
    """
    if read_metadata(path).get(MODEL_NAME_KEY) is None:
        if model_name is None:
            raise ConfigError(f"{path} holds plain weights without a model name: name the model (--model NAME)")
        kwargs = {k: v for k, v in {"num_classes": num_classes, "in_chans": in_chans}.items() if v is not None}
        model = create_pretrained(model_name, pretrained=path, **{**(model_args or {}), **kwargs})
        if img_size is not None and img_size != model.img_size:
            model = expand_token_mixing(model, img_size)
        return model.train()
    model = load_checkpoint(path)
    if model_name is not None and model.model_name != model_name:
        raise ConfigError(f"--init {path} holds {model.model_name}, but the run trains {model_name}")
    if img_size is not None and img_size != model.img_size:
        model = expand_token_mixing(model, img_size)
    if new_head or (num_classes is not None and num_classes != model.num_classes):
        num_classes = model.num_classes if num_classes is None else num_classes
        model.reset_classifier(num_classes)
        model.config = type(model.config)(**{**model.config.__dict__, "num_classes": num_classes})
    return model.train()
