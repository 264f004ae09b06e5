"""Feature maps for dense tasks, and gradient checkpointing: timm's backbone interface, shared by every family.

A model exposes

* ``feature_info``: one dict per feature it can return, in forward order: ``num_chs`` (channels), ``reduction``
  (input side / map side) and ``module`` (the submodule whose output it is), as in timm;
* ``forward_intermediates(x, indices=None, norm=False, stop_early=False, output_fmt="NCHW",
  intermediates_only=False)``: the final features and the selected intermediate maps, with timm's meaning
  (``indices``: an int n takes the last n features, a sequence takes those positions, negative from the end,
  None takes all);
* ``set_grad_checkpointing(enable=True)``: recompute each block's activations in the backward pass instead of
  keeping them (lower peak memory, identical gradients; BatchNorm statistics are updated once, not twice).

Two layouts share the work here. Hierarchical models (ResNets, RepMLP-ResNets, RepMLPNet, the RepMLP CIFAR nets,
the conv baselines) return one map per stage, (B, C_i, H / r_i, W / r_i). Token models (Mixer, ResMLP, ViT,
External Attention) return the tokens after chosen blocks, reshaped to (B, C, H / p, W / p) (``"NCHW"``) or as
they are, (B, N, C) (``"NLC"``); a class token is dropped from the maps.

``create_model(name, features_only=True, out_indices=...)`` wraps a model in :class:`FeatureExtractor`, whose
forward returns the list of maps and whose ``feature_info`` describes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError

__all__ = [
    "FeatureExtractor",
    "FeatureInfo",
    "GradCheckpointing",
    "StagedFeatures",
    "TokenFeatures",
    "checkpointed",
    "feature_take_indices",
    "run_blocks",
    "run_units",
    "wrap_features",
]

OUTPUT_FORMATS = ("NCHW", "NLC")


def feature_take_indices(num_features: int, indices: int | Sequence[int] | None = None) -> list[int]:
    """Absolute positions of the features to take, with timm's meaning of ``indices``.

    Args:
        num_features: how many features the model has.
        indices: None for all; an int n for the last n; a sequence of positions (negative counts from the end).

    Raises:
        ConfigError: an index out of range.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ConfigError(
                f"cannot take the last {indices} features: the model has {num_features} (1 to {num_features})"
            )
        return list(range(num_features - indices, num_features))
    taken = []
    for i in indices:
        j = num_features + i if i < 0 else i
        if not 0 <= j < num_features:
            raise ConfigError(f"feature index {i} is out of range: the model has {num_features} features")
        taken.append(j)
    if not taken:
        raise ConfigError("out_indices is empty: take at least one feature")
    return taken


class FeatureInfo:
    """The features a :class:`FeatureExtractor` returns: channels, reduction and module of each, in order."""

    def __init__(self, info: Sequence[dict], out_indices: Sequence[int]) -> None:
        self.info = [dict(info[i]) for i in out_indices]
        self.out_indices = list(out_indices)

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self.info]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self.info]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self.info]

    def get_dicts(self) -> list[dict]:
        return [dict(f) for f in self.info]

    def __len__(self) -> int:
        return len(self.info)

    def __getitem__(self, i: int) -> dict:
        return self.info[i]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


# ---- gradient checkpointing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorms inside ``module`` normalise with batch statistics but leave their running statistics alone.

    The recomputation of a checkpointed block runs its forward a second time; without this, every BatchNorm in
    it would fold the same batch into its running statistics twice.
    """
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def checkpointed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without keeping its inner activations: they are recomputed in the backward pass.

    The random state (dropout, drop path) is replayed, so gradients equal those of a plain call; BatchNorm
    running statistics are updated once, by the first forward.
    """
    return checkpoint(
        module,
        x,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _running_stats_frozen(module)),
    )


def run_blocks(blocks: nn.Module, x: torch.Tensor, checkpointing: bool = False, every: int = 1) -> torch.Tensor:
    """Runs an ``nn.Sequential`` of blocks; with ``checkpointing`` each run of ``every`` consecutive blocks is one
    checkpoint (a unit must not be split where a layer works in place on its input, e.g. an in-place ReLU)."""
    return run_units(list(blocks), x, checkpointing, every)


def run_units(units: list[nn.Module], x: torch.Tensor, checkpointing: bool = False, every: int = 1) -> torch.Tensor:
    """Applies ``units`` in order; with ``checkpointing`` (and gradients on) each run of ``every`` is checkpointed."""
    if not (checkpointing and torch.is_grad_enabled()):
        for unit in units:
            x = unit(x)
        return x
    for i in range(0, len(units), every):
        part = units[i : i + every]
        x = checkpointed(part[0] if len(part) == 1 else nn.Sequential(*part), x)
    return x


class GradCheckpointing:
    """Mixin: the ``set_grad_checkpointing`` switch (the family's forward reads ``grad_checkpointing``)."""

    grad_checkpointing: bool = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them (timm's switch).

        Gradients are identical; peak training memory drops to about one block's activations plus the block
        inputs (see docs/grad_checkpointing.md for measured figures).
        """
        self.grad_checkpointing = bool(enable)


def _check_format(output_fmt: str) -> None:
    if output_fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")


# ---- token models -----------------------------------------------------------------------------------------------


class TokenFeatures(GradCheckpointing):
    """Features of a plain stack of token blocks: ``embed_tokens`` -> ``blocks`` -> ``norm``.

    The family provides ``embed_tokens(x)`` ((B, C_in, H, W) -> (B, prefix + N, C), with any position embedding and
    class token), ``blocks`` (an ``nn.Sequential``), ``norm``, ``num_prefix_tokens`` (1 with a class token), and
    calls :meth:`_init_token_features` once its stem is built. Feature i is the output of ``blocks.i``, at
    reduction = patch size.
    """

    num_prefix_tokens = 0
    default_out_indices: int | tuple[int, ...] = 3  # the last three blocks, as timm's token models

    def _init_token_features(self, patch_size: int, grid: tuple[int, int], dim: int) -> None:
        self.patch_size, self.grid_size = patch_size, grid
        self.feature_info = [
            {"num_chs": dim, "reduction": patch_size, "module": f"blocks.{i}"} for i in range(len(self.blocks))
        ]

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = run_blocks(self.blocks, self.embed_tokens(x), self.grad_checkpointing)  # (B, prefix + N, C)
        return self.norm(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The tokens after the chosen blocks, and the final features.

        Args:
            x: images (B, C_in, H, W).
            indices: which blocks (see :func:`feature_take_indices`); None for all.
            norm: pass each intermediate through the final norm first.
            stop_early: stop after the last chosen block (only with ``intermediates_only``).
            output_fmt: ``"NCHW"``: each map (B, C, H / p, W / p), prefix tokens dropped; ``"NLC"``: the tokens
                (B, prefix + N, C) as the blocks see them.
            intermediates_only: return only the list of intermediates.

        Returns:
            The intermediates, or (final features (B, prefix + N, C) after the norm, intermediates).
        """
        _check_format(output_fmt)
        take = feature_take_indices(len(self.blocks), indices)
        last = max(take) if (stop_early and intermediates_only) else len(self.blocks) - 1
        B = x.shape[0]
        x = self.embed_tokens(x)
        out = []
        for i, block in enumerate(self.blocks):
            if i > last:
                break
            x = checkpointed(block, x) if self.grad_checkpointing and torch.is_grad_enabled() else block(x)
            if i in take:
                out.append(self.norm(x) if norm else x)
        if output_fmt == "NCHW":
            h, w = self.grid_size
            p = self.num_prefix_tokens
            out = [y[:, p:].reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous() for y in out]  # (B, C, h, w)
        if intermediates_only:
            return out
        return self.norm(x), out


# ---- hierarchical models ----------------------------------------------------------------------------------------


class StagedFeatures(GradCheckpointing):
    """Features of a model that is a sequence of stages, one map per stage.

    The family provides ``feature_stages()``: one list of units per stage, which applied in order compute
    ``forward_features`` (a unit is what gradient checkpointing recomputes: a residual block, a conv-BN-ReLU), and
    ``feature_info`` with one entry per stage. A family with a norm on its last map that belongs to the backbone
    (RepMLPNet's head norm) overrides :meth:`final_feature_norm`.
    """

    default_out_indices: int | tuple[int, ...] | None = None  # every stage

    def feature_stages(self) -> list[list[nn.Module]]:
        raise NotImplementedError

    def final_feature_norm(self) -> nn.Module | None:
        """The norm ``forward_intermediates(norm=True)`` applies to the last stage's map (None: there is none)."""
        return None

    def check_feature_input(self, x: torch.Tensor) -> None:
        """Raises a clear error for an input of the wrong shape (families override; the default accepts all)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_feature_input(x)
        for stage in self.feature_stages():
            x = run_units(stage, x, self.grad_checkpointing)
        return x

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The maps after the chosen stages, and the final features.

        Args:
            x: images (B, C_in, H, W).
            indices: which stages (positions in ``feature_info``; see :func:`feature_take_indices`); None for all.
            norm: apply the model's final feature norm (if it has one, see :meth:`final_feature_norm`) to the
                last stage's map.
            stop_early: stop after the last chosen stage (only with ``intermediates_only``).
            output_fmt: ``"NCHW"``: maps (B, C_i, H / r_i, W / r_i); ``"NLC"``: the same flattened to
                (B, H W / r_i^2, C_i).
            intermediates_only: return only the list of intermediates.

        Returns:
            The intermediates, or (final features (B, C, h, w) as ``forward_features`` gives them, intermediates).
        """
        _check_format(output_fmt)
        self.check_feature_input(x)
        stages = self.feature_stages()
        take = feature_take_indices(len(stages), indices)
        last = max(take) if (stop_early and intermediates_only) else len(stages) - 1
        final_norm = self.final_feature_norm() if norm else None
        if norm and final_norm is None and self._folded_final_norm():
            raise ConfigError(
                "this deploy-form model folded its final norm into the classifier; use norm=False or the train form"
            )
        out = []
        for i, stage in enumerate(stages[: last + 1]):
            x = run_units(stage, x, self.grad_checkpointing)
            if i in take:
                out.append(final_norm(x) if final_norm is not None and i == len(stages) - 1 else x)
        if output_fmt == "NLC":
            out = [y.flatten(2).transpose(1, 2) for y in out]  # (B, C, h, w) -> (B, h w, C)
        return out if intermediates_only else (x, out)

    def _folded_final_norm(self) -> bool:
        return False


# ---- features_only ----------------------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
    """A model as a backbone: ``forward(x)`` returns the list of feature maps chosen by ``out_indices``.

    Args:
        model: a zoo model (its ``forward_intermediates`` and ``feature_info`` are used).
        out_indices: which features (see :func:`feature_take_indices`); the family's default when None
            (every stage of hierarchical models, the last three blocks of token models, as timm).
        norm: apply the model's final norm to the features (see ``forward_intermediates``).
        output_fmt: ``"NCHW"`` (the default) or ``"NLC"``.

    Attributes:
        feature_info: a :class:`FeatureInfo` of the returned maps: ``channels()``, ``reduction()``,
            ``module_name()``. Map i is (B, channels()[i], ceil(H / reduction()[i]), ceil(W / reduction()[i]))
            (strided convolutions round up; fixed-size MLP models divide exactly).
        model: the wrapped model (its state-dict keys appear under ``model.``).
    """

    def __init__(
        self,
        model: nn.Module,
        out_indices: int | Sequence[int] | None = None,
        norm: bool = False,
        output_fmt: str = "NCHW",
    ) -> None:
        super().__init__()
        info = getattr(model, "feature_info", None)
        if not info:
            name = getattr(model, "model_name", type(model).__name__)
            raise ConfigError(f"{name} has no spatial feature maps (features_only needs a conv, token or stage model)")
        _check_format(output_fmt)
        if out_indices is None:
            out_indices = model.default_out_indices
        self.out_indices = feature_take_indices(len(info), out_indices)
        self.feature_info = FeatureInfo(info, self.out_indices)
        self.norm, self.output_fmt = norm, output_fmt
        self.model = model
        for attr in ("model_name", "config", "pretrained_cfg", "in_chans", "img_size"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C_in, H, W) -> [map (B, C_i, H / r_i, W / r_i) for each chosen feature] (or (B, N_i, C_i) for NLC)."""
        return self.model.forward_intermediates(
            x,
            indices=self.out_indices,
            norm=self.norm,
            stop_early=True,
            output_fmt=self.output_fmt,
            intermediates_only=True,
        )


def wrap_features(model: nn.Module, out_indices: Any = None, feature_cfg: dict | None = None) -> FeatureExtractor:
    """``model`` as a :class:`FeatureExtractor` (``feature_cfg`` may set ``norm`` and ``output_fmt``)."""
    cfg = dict(feature_cfg or {})
    unknown = sorted(set(cfg) - {"norm", "output_fmt"})
    if unknown:
        raise ConfigError(f"feature_cfg takes norm and output_fmt, not {', '.join(unknown)}")
    return FeatureExtractor(model, out_indices, **cfg)
