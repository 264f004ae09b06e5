"""The papers' released checkpoints, mapped onto the zoo's models and written as model files.

Five layouts are read (key names and shapes as the original code bases define them):

* ``official-repmlpnet``: DingXiaoH/RepMLP ``repmlpnet.py`` (``conv_embedding``, ``stages.i.j.prebn1``,
  ``repmlp_block.gp.fc1`` as 1x1 convs, ``repmlp_block.fc3`` / ``fc3_bn`` / ``repconvK``, ``ffn_block.ffn_fc1``,
  ``embeds``, ``head_norm``, ``head``); train form, or the deploy form after its ``locality_injection`` (a biased
  ``fc3``, no ``fc3_bn`` nor ``repconvK``), which becomes our deploy form.
* ``mmpretrain-repmlpnet``: mmpretrain's RepMLPNet classifier (``backbone.patch_embed.projection``,
  ``backbone.stages.i.j.norm1``, ``gp.conv1.conv``, ``backbone.downsample_layers``, ``backbone.final_norm``,
  ``head.fc``), train or deploy form.
* ``official-repmlp-resnet``: DingXiaoH/RepMLP's RepMLP-ResNet-50 (``stage0``..``stage4``; ``conv1``..``conv3``,
  ``btnk_conv1``..``btnk_conv5`` / ``btnk_repmlp``, ``light_conv1`` / ``light_repmlp`` / ``light_conv3``;
  the RepMLP's ``fc1_fc2``, ``avg.bn``, ``fc3``, ``fc3_bn``, ``repconvK``; ``linear``), train or deploy form.
* ``deit-resmlp``: facebookresearch/deit ``resmlp_models.py`` (``patch_embed``, ``attn``, ``mlp``, ``gamma_1``,
  Affine ``alpha`` / ``beta`` of shape (dim,)).
* ``jax-mixer``: google-research/vision_transformer's Flax Mixer ``.npz`` (``stem/kernel`` HWIO,
  ``MixerBlock_i/token_mixing/Dense_0/kernel`` (in, out), ``LayerNorm_0/scale``, ``pre_head_layer_norm``,
  ``head``). Flax's ``gelu`` is the tanh approximation; ours is exact (as timm's): outputs differ slightly.

``.pth`` files are read with ``torch.load(weights_only=True)`` (no code is unpickled), ``.npz`` files with
``allow_pickle=False``. Every source key must map, and the result must load strictly: the first key that does
not is named in a one-line :class:`~mlpvision.errors.CheckpointError`. The number of classes is read from the
checkpoint's classifier (0 when it has none).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..models import create_model, get_spec
from ..models.mixer import MlpMixer
from ..models.repmlp_resnet import RepMLPResNet
from ..models.repmlpnet import RepMLPNet, ShareSetMixer
from ..models.resmlp import ResMLP
from ..reparam import reparameterize
from .model_file import PRETRAINED_CFG_KEY, save_model
from .weights import load_into

__all__ = ["SOURCES", "ConvertResult", "convert_checkpoint", "map_checkpoint", "read_foreign_checkpoint"]

log = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]
# (pattern, replacement, reshape): the first rule whose pattern matches the whole key renames it
Rule = tuple[str, str, Callable[[torch.Tensor], torch.Tensor] | None]


# ---- reading ------------------------------------------------------------------------------------------------------

_CONTAINERS = ("state_dict", "model", "module", "model_ema", "state_dict_ema")


def _unwrap(obj: object, path: Path) -> Tensors:
    """The tensor mapping inside a checkpoint (``{"model": ...}``, ``{"state_dict": ...}``), ``module.`` removed."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds no mapping of tensor names to tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (looked inside {', '.join(_CONTAINERS)})")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel / DistributedDataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_foreign_checkpoint(path: str | os.PathLike) -> Tensors:
    """Reads a ``.pth`` / ``.pt`` / ``.bin`` (torch, tensors only) or ``.npz`` (numpy, no pickle) checkpoint.

    Raises:
        CheckpointError: a missing file, a file that is not a checkpoint, or one that holds anything but tensors,
            numbers and containers (a pickle of code is refused by ``weights_only``, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        except (ValueError, OSError) as e:
            raise CheckpointError(f"{path} is not a readable .npz of arrays ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable weights-only torch checkpoint ({first})") from None
    return _unwrap(obj, path)


# ---- mapping ------------------------------------------------------------------------------------------------------


def _apply_rules(tensors: Tensors, rules: list[Rule], source: str) -> Tensors:
    out = {}
    compiled = [(re.compile(p), r, f) for p, r, f in rules]
    for key, value in tensors.items():
        for pattern, replacement, reshape in compiled:
            if pattern.fullmatch(key):
                out[pattern.sub(replacement, key)] = reshape(value) if reshape is not None else value
                break
        else:
            raise CheckpointError(f"{source}: cannot map checkpoint key {key!r} ({tuple(value.shape)})")
    return out


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)  # a 1x1 conv weight (O, I, 1, 1) as a linear weight (O, I)


_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_UNIT = r"stages\.(\d+)\.(\d+)\."

REPMLPNET_RULES: list[Rule] = [
    (r"conv_embedding\.conv\.weight", r"stem.0.conv.weight", None),
    (rf"conv_embedding\.bn\.{_BN}", r"stem.0.bn.\1", None),
    (r"embeds\.(\d+)\.conv\.weight", r"downsamples.\1.0.conv.weight", None),
    (rf"embeds\.(\d+)\.bn\.{_BN}", r"downsamples.\1.0.bn.\2", None),
    (rf"{_UNIT}prebn1\.{_BN}", r"stages.\1.\2.mixer.norm.\3", None),
    (rf"{_UNIT}prebn2\.{_BN}", r"stages.\1.\2.ffn.norm.\3", None),
    (rf"{_UNIT}repmlp_block\.gp\.fc([12])\.weight", r"stages.\1.\2.mixer.gp_fc\3.weight", _flat),
    (rf"{_UNIT}repmlp_block\.gp\.fc([12])\.bias", r"stages.\1.\2.mixer.gp_fc\3.bias", None),
    (rf"{_UNIT}repmlp_block\.fc3\.weight", r"stages.\1.\2.mixer.fc3.weight", None),
    (rf"{_UNIT}repmlp_block\.fc3\.bias", r"stages.\1.\2.mixer.fc3.bias", None),  # deploy form: handled below
    (rf"{_UNIT}repmlp_block\.fc3_bn\.{_BN}", r"stages.\1.\2.mixer.fc3_bn.\3", None),
    (rf"{_UNIT}repmlp_block\.repconv(\d+)\.conv\.weight", r"stages.\1.\2.mixer.lp.conv\3.conv.weight", None),
    (rf"{_UNIT}repmlp_block\.repconv(\d+)\.bn\.{_BN}", r"stages.\1.\2.mixer.lp.conv\3.bn.\4", None),
    (rf"{_UNIT}ffn_block\.ffn_fc([12])\.conv\.weight", r"stages.\1.\2.ffn.fc\3.conv.weight", None),
    (rf"{_UNIT}ffn_block\.ffn_fc([12])\.bn\.{_BN}", r"stages.\1.\2.ffn.fc\3.bn.\4", None),
    (rf"head_norm\.{_BN}", r"head_norm.\1", None),
    (r"head\.(weight|bias)", r"head.\1", None),
]

# mmpretrain's names -> the official release's names (then REPMLPNET_RULES)
MMPRETRAIN_TO_OFFICIAL: list[Rule] = [
    (r"backbone\.patch_embed\.projection\.weight", r"conv_embedding.conv.weight", None),
    (rf"backbone\.patch_embed\.norm\.{_BN}", r"conv_embedding.bn.\1", None),
    (rf"backbone\.{_UNIT}norm([12])\.{_BN}", r"stages.\1.\2.prebn\3.\4", None),
    (
        rf"backbone\.{_UNIT}repmlp_block\.gp\.conv([12])\.conv\.(weight|bias)",
        r"stages.\1.\2.repmlp_block.gp.fc\3.\4",
        None,
    ),
    (rf"backbone\.{_UNIT}(repmlp_block\.(fc3|fc3_bn|repconv\d+)\..+)", r"stages.\1.\2.\3", None),
    (rf"backbone\.{_UNIT}(ffn_block\.ffn_fc[12]\.(conv|bn)\..+)", r"stages.\1.\2.\3", None),
    (r"backbone\.downsample_layers\.(\d+)\.(conv|bn)\.(.+)", r"embeds.\1.\2.\3", None),
    (rf"backbone\.final_norm\.{_BN}", r"head_norm.\1", None),
    (r"head\.fc\.(weight|bias)", r"head.\1", None),
]

RESMLP_RULES: list[Rule] = [
    (r"patch_embed\.proj\.(weight|bias)", r"stem.proj.\1", None),
    (r"blocks\.(\d+)\.norm([12])\.(alpha|beta)", r"blocks.\1.norm\2.\3", lambda t: t.reshape(1, 1, -1)),
    (r"blocks\.(\d+)\.attn\.(weight|bias)", r"blocks.\1.linear_tokens.\2", None),
    (r"blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"blocks.\1.mlp_channels.\2.\3", None),
    (r"blocks\.(\d+)\.gamma_([12])", r"blocks.\1.ls\2", None),
    (r"norm\.(alpha|beta)", r"norm.\1", lambda t: t.reshape(1, 1, -1)),
    (r"head\.(weight|bias)", r"head.\1", None),
]


def _t(t: torch.Tensor) -> torch.Tensor:
    return t.t().contiguous()  # Flax Dense kernel (in, out) -> torch Linear weight (out, in)


MIXER_RULES: list[Rule] = [
    (r"stem/kernel", r"stem.proj.weight", lambda t: t.permute(3, 2, 0, 1).contiguous()),  # HWIO -> OIHW
    (r"stem/bias", r"stem.proj.bias", None),
    (r"MixerBlock_(\d+)/LayerNorm_0/scale", r"blocks.\1.norm1.weight", None),
    (r"MixerBlock_(\d+)/LayerNorm_0/bias", r"blocks.\1.norm1.bias", None),
    (r"MixerBlock_(\d+)/LayerNorm_1/scale", r"blocks.\1.norm2.weight", None),
    (r"MixerBlock_(\d+)/LayerNorm_1/bias", r"blocks.\1.norm2.bias", None),
    (r"MixerBlock_(\d+)/token_mixing/Dense_([01])/kernel", r"blocks.\1.mlp_tokens.fc\2.weight", _t),
    (r"MixerBlock_(\d+)/token_mixing/Dense_([01])/bias", r"blocks.\1.mlp_tokens.fc\2.bias", None),
    (r"MixerBlock_(\d+)/channel_mixing/Dense_([01])/kernel", r"blocks.\1.mlp_channels.fc\2.weight", _t),
    (r"MixerBlock_(\d+)/channel_mixing/Dense_([01])/bias", r"blocks.\1.mlp_channels.fc\2.bias", None),
    (r"pre_head_layer_norm/scale", r"norm.weight", None),
    (r"pre_head_layer_norm/bias", r"norm.bias", None),
    (r"head/kernel", r"head.weight", _t),
    (r"head/bias", r"head.bias", None),
]


def _renumber_dense(key: str) -> str:
    """Flax numbers the two Dense layers of an MLP 0 and 1; ours are fc1 and fc2."""
    return re.sub(r"\.fc([01])\.", lambda m: f".fc{int(m.group(1)) + 1}.", key)


# RepMLP-ResNet: the official block's submodules -> ours (ConvBN names "X.conv.weight" / "X.bn.*"; deploy
# "X.conv.weight" + "X.conv.bias" -> our plain conv "T.weight" / "T.bias")
_RESNET_PARTS = {
    "conv1": "branch.0.0",
    "conv2": "branch.1.0",
    "conv3": "branch.2",
    "btnk_conv1": "branch.0.0",
    "btnk_conv2": "branch.1.0.0",
    "btnk_repmlp": "branch.1.1",
    "btnk_conv4": "branch.1.3.0",
    "btnk_conv5": "branch.2",
    "light_conv1": "branch.0.0",
    "light_repmlp": "branch.1",
    "light_conv3": "branch.3",
    "shortcut": "shortcut",
}
_REPMLP_PARTS = [
    (r"fc1_fc2\.fc([12])\.(weight|bias)", r"gp.fc\1.\2"),
    (rf"avg\.bn\.{_BN}", r"gp.bn.\1"),
    (r"fc3\.(weight|bias)", r"fc3.\1"),
    (rf"fc3_bn\.{_BN}", r"fc3_bn.\1"),
    (r"repconv(\d+)\.conv\.weight", r"lp.conv\1.conv.weight"),
    (rf"repconv(\d+)\.bn\.{_BN}", r"lp.conv\1.bn.\2"),
]


def _repmlp_resnet_rules(deploy: bool) -> list[Rule]:
    conv = [(r"conv\.weight", "weight"), (r"conv\.bias", "bias")] if deploy else [(r"conv\.weight", "conv.weight")]
    bn = [] if deploy else [(rf"bn\.{_BN}", r"bn.\1")]
    rules: list[Rule] = []
    for src, dst in [(r"stage0\.0", "stem.0.0")]:
        rules += [(rf"{src}\.{p}", rf"{dst}.{r}", None) for p, r in conv]
        rules += [(rf"{src}\.{p}", rf"{dst}.bn.\1", None) for p, _ in bn]
    block = r"stage([1-4])\.(\d+)"
    for part, ours in _RESNET_PARTS.items():
        if part.endswith("repmlp"):
            for p, r in _REPMLP_PARTS:  # the part's own groups come after the block's two
                r = re.sub(r"\\(\d)", lambda m: f"\\{int(m.group(1)) + 2}", r)
                rules.append((rf"{block}\.{part}\.{p}", rf"stages.S\1.\2.{ours}.{r}", None))
            continue
        rules += [(rf"{block}\.{part}\.{p}", rf"stages.S\1.\2.{ours}.{r}", None) for p, r in conv]
        rules += [(rf"{block}\.{part}\.{p}", rf"stages.S\1.\2.{ours}.bn.\3", None) for p, _ in bn]
    rules.append((r"linear\.(weight|bias)", r"head.\1", None))
    return rules


def _shift_stage(key: str) -> str:
    """The official stage1..stage4 are our stages.0..stages.3 (the stem is stage0)."""
    return re.sub(r"^stages\.S(\d)", lambda m: f"stages.{int(m.group(1)) - 1}", key)


# ---- the sources ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One checkpoint layout: the family it fills and how its keys map."""

    name: str
    family: type[nn.Module]
    description: str


SOURCES = {
    s.name: s
    for s in (
        Source("official-repmlpnet", RepMLPNet, "DingXiaoH/RepMLP repmlpnet.py (train or deploy form)"),
        Source("mmpretrain-repmlpnet", RepMLPNet, "mmpretrain's RepMLPNet classifier (train or deploy form)"),
        Source("official-repmlp-resnet", RepMLPResNet, "DingXiaoH/RepMLP RepMLP-ResNet-50 (train or deploy form)"),
        Source("deit-resmlp", ResMLP, "facebookresearch/deit resmlp_models.py"),
        Source("jax-mixer", MlpMixer, "google-research/vision_transformer Mixer .npz"),
    )
}


def _is_deploy_repmlpnet(tensors: Tensors) -> bool:
    return any(k.endswith("mixer.fc3.bias") for k in tensors)


def _identity_bn_(prefix: str, tensors: Tensors, channels: int, like: torch.Tensor) -> None:
    """A BatchNorm that computes the identity in eval mode (running var 1 - eps, so var + eps = 1)."""
    eps = nn.BatchNorm2d(1).eps
    tensors[f"{prefix}.weight"] = torch.ones(channels, dtype=like.dtype)
    tensors[f"{prefix}.bias"] = torch.zeros(channels, dtype=like.dtype)
    tensors[f"{prefix}.running_mean"] = torch.zeros(channels, dtype=like.dtype)
    tensors[f"{prefix}.running_var"] = torch.full((channels,), 1 - eps, dtype=like.dtype)
    tensors[f"{prefix}.num_batches_tracked"] = torch.tensor(0)


def _repmlpnet_from_deploy(name: str, mapped: Tensors, num_classes: int, overrides: dict) -> nn.Module:
    """Our deploy-form RepMLPNet from the official deploy form (FC3 with bias; pre-norms, FFN BNs and head norm kept).

    The official deploy form keeps every BatchNorm but the FC3's and merges the Local Perceptron into a biased
    FC3. Loaded into our train form without Local Perceptron (an identity FC3 BN in place of the bias), then
    re-parameterized, it gives our deploy form up to the FC3 bias, which is then added: in our deploy form the
    pre-norm folds into the weight and into a bias added after it, so the official bias simply adds on.
    """
    biases = {k: mapped.pop(k) for k in [k for k in mapped if k.endswith("mixer.fc3.bias")]}
    for key in biases:
        prefix = key[: -len(".fc3.bias")]
        sets = create_model(name, device="meta", **overrides).get_submodule(prefix).sets
        _identity_bn_(f"{prefix}.fc3_bn", mapped, sets, biases[key])
    train = create_model(name, num_classes=num_classes, **{**overrides, "kernels": ()})
    load_into(train, mapped, source="the mapped deploy-form checkpoint")
    deployed = reparameterize(train.eval())
    with torch.no_grad():
        for key, bias in biases.items():
            mixer = deployed.get_submodule(key[: -len(".fc3.bias")])
            assert isinstance(mixer, ShareSetMixer)
            mixer.fc3_bias.add_(bias.reshape(mixer.fc3_bias.shape).to(mixer.fc3_bias.dtype))
    model = create_model(name, num_classes=num_classes, **{**overrides, "deploy": True})
    load_into(model, deployed.state_dict(), source="the converted deploy form")
    return model


def _check_source(source: str, model_name: str) -> None:
    if source not in SOURCES:
        raise ConfigError(f"unknown checkpoint layout {source!r}; known: {', '.join(SOURCES)}")
    spec = get_spec(model_name)
    if not issubclass(spec.cls, SOURCES[source].family):
        raise ConfigError(
            f"{source} checkpoints hold a {SOURCES[source].family.__name__}; {model_name} is a {spec.cls.__name__}"
        )


def map_checkpoint(source: str, model_name: str, tensors: Tensors, **overrides) -> nn.Module:
    """Maps a checkpoint of layout ``source`` onto ``model_name`` and returns the loaded model (eval mode).

    ``overrides`` are config fields of a model built differently from the registered variant (e.g. ``img_size``).

    Raises:
        ConfigError: an unknown source, or a model of another family than the source's.
        CheckpointError: a key that does not map, or a mapped checkpoint that does not load strictly.
    """
    _check_source(source, model_name)
    if source == "official-repmlp-resnet":
        cfg = create_model(model_name, device="meta", **overrides).config
        if cfg.block != "bottleneck" or cfg.stem != "imagenet":
            raise ConfigError(f"{source} checkpoints hold a ResNet-50 layout (bottleneck blocks); {model_name} is not")
    deploy = False
    if source == "mmpretrain-repmlpnet":
        tensors = _apply_rules(tensors, MMPRETRAIN_TO_OFFICIAL, source)
    if source in ("official-repmlpnet", "mmpretrain-repmlpnet"):
        mapped = _apply_rules(tensors, REPMLPNET_RULES, source)
        deploy = _is_deploy_repmlpnet(mapped)
    elif source == "official-repmlp-resnet":
        deploy = any(k.endswith("fc3.bias") for k in tensors) or not any(".bn." in k for k in tensors)
        mapped = {_shift_stage(k): v for k, v in _apply_rules(tensors, _repmlp_resnet_rules(deploy), source).items()}
    elif source == "deit-resmlp":
        mapped = _apply_rules(tensors, RESMLP_RULES, source)
    else:
        mapped = {_renumber_dense(k): v for k, v in _apply_rules(tensors, MIXER_RULES, source).items()}
    num_classes = int(mapped["head.weight"].shape[0]) if "head.weight" in mapped else 0
    src = f"{source} checkpoint mapped onto {model_name}"
    if source.endswith("repmlpnet") and deploy:
        try:
            model = _repmlpnet_from_deploy(model_name, mapped, num_classes, overrides)
        except CheckpointError as e:
            raise CheckpointError(f"{src}: {e}") from None
    else:
        model = create_model(model_name, num_classes=num_classes, deploy=deploy, **overrides)
        load_into(model, mapped, source=src)
    return model.eval()


@dataclass(frozen=True)
class ConvertResult:
    model: str
    source: str
    deploy: bool  # the checkpoint was in deploy form (so is the model file)
    num_classes: int
    params: int
    path: Path


def convert_checkpoint(
    source: str, model_name: str, in_path: str | os.PathLike, out_path: str | os.PathLike, **overrides
) -> ConvertResult:
    """Reads a released checkpoint, maps it onto ``model_name`` and writes a model file (name, config and
    ``pretrained_cfg`` in its metadata) that :func:`~mlpvision.io.load_checkpoint` rebuilds and loads strictly.

    Args:
        source: one of :data:`SOURCES`.
        model_name: the registered model the checkpoint holds (e.g. ``repmlpnet_b224``).
        in_path: the checkpoint (``.pth`` / ``.pt`` / ``.bin``, or ``.npz`` for ``jax-mixer``).
        out_path: the model file to write (``.safetensors``).
        **overrides: config fields where the checkpoint's model differs from the registered variant.
    """
    _check_source(source, model_name)
    if not str(out_path).endswith(".safetensors"):
        raise ConfigError(f"the output must be a .safetensors file, got {out_path}")
    model = map_checkpoint(source, model_name, read_foreign_checkpoint(in_path), **overrides)
    meta = {PRETRAINED_CFG_KEY: json.dumps(model.pretrained_cfg), "mlpvision.converted_from": source}
    path = save_model(model, out_path, meta)
    log.info("%s: %s checkpoint %s -> %s", model_name, source, in_path, path)
    return ConvertResult(
        model_name,
        source,
        bool(model.config.deploy),
        model.num_classes,
        sum(p.numel() for p in model.parameters()),
        Path(path),
    )
