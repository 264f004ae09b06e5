"""The lab's checks: exact identities and arithmetic facts that the papers' claims rest on, computed when the page
is written (seconds), facts read off the results that a section's test needs, and one measurement (Mixer's latency
against ViT's, timed on an idle machine). A check is never a verdict: it cannot come out otherwise by training noise,
so it is listed as a check; the latency check, which timing noise can move, is inconclusive when the spread of the
timings leaves it open.

Each check returns ``(passed, detail)``; ``passed`` is True or False, :data:`INCONCLUSIVE`, or None while the
results it reads are missing.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..data.tasks import patch_shuffle_permutation, permute_pixels, pixel_permutation
from ..models import count, create_model
from ..reparam import reparameterize
from ..train import expand_token_mixing
from .context import LAB_MODELS, SEG_MODELS
from .measures import top1

__all__ = ["CHECKS", "INCONCLUSIVE", "Check", "run_check", "run_first_coded"]

_MIXER = LAB_MODELS["MLP-Mixer"]


def _mixer(**extra) -> torch.nn.Module:
    name, args = _MIXER
    return create_model(name, **{**args, **extra}).eval()


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every parameter and BatchNorm statistic drawn at random (so identities are not trivially met
    by zero heads or identity statistics)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _random_model(name: str, **args) -> torch.nn.Module:
    """``create_model(name, **args)`` filled by :func:`_randomised`, built without its own initialisation (on the
    meta device, then given memory): that initialisation, an orthogonal matrix per RepMLP partition, takes seconds
    to compute values that are overwritten. Only BatchNorm buffers are allowed (they are all set again)."""
    model = create_model(name, device="meta", **args).to_empty(device="cpu")
    bn = {id(b) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for b in m.buffers()}
    if any(id(b) not in bn for b in model.buffers()):
        raise ValueError(f"{name} holds buffers other than BatchNorm statistics: build it with create_model")
    with torch.no_grad():
        for b in model.buffers():
            b.zero_()  # num_batches_tracked; the statistics are drawn below
    return _randomised(model)


def _macs_deployed(name: str, **args) -> int:
    """Multiply-adds of the deploy form of ``create_model(name, **args)``, counted on the meta device."""
    return count(reparameterize(create_model(name, device="meta", **args).eval())).macs


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest output magnitude (float32 summation order aside: ~1e-7)."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def _images(n: int = 8, size: int = 28) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def mlp_permutation(**_) -> tuple[bool, str]:
    """A plain MLP on permuted pixels, with its first layer's columns permuted alike, computes what it computes on
    the original pixels: training on permuted images is training on the originals from another initialisation."""
    name, args = LAB_MODELS["plain MLP"]
    model = _randomised(create_model(name, **args))
    perm = pixel_permutation(28 * 28)
    twin = copy.deepcopy(model)
    first = twin.layers[0]
    first.weight.copy_(model.layers[0].weight[:, perm])
    x = _images()
    diff = _rel_diff(model(x), twin(permute_pixels(x, perm)))
    return diff < 1e-5, f"largest relative output difference {diff:.1e}"


@torch.no_grad()
def mixer_patch_shuffle(**_) -> tuple[bool, str]:
    """Mixer on patch + pixel shuffled images, with its stem's kernel and its token-mixing weights permuted alike,
    computes what it computes on the original images."""
    model = _randomised(_mixer())
    twin = copy.deepcopy(model)
    size, patch = 28, model.stem.proj.kernel_size[0]
    grid = size // patch
    perm = patch_shuffle_permutation(size, patch)  # shuffled pixel i reads original pixel perm[i]
    sy, sx = perm // size, perm % size
    src_patch = ((sy // patch) * grid + sx // patch).reshape(size, size)
    src_inside = ((sy % patch) * patch + sx % patch).reshape(size, size)
    patches = src_patch[::patch, ::patch].flatten()  # shuffled token t is original token patches[t]
    inside = src_inside[:patch, :patch].flatten()  # pixel i of every shuffled patch is pixel inside[i] of its source
    w = model.stem.proj.weight  # (C, in, p, p)
    twin.stem.proj.weight.copy_(w.flatten(2)[:, :, inside].reshape(w.shape))
    for blk, tblk in zip(model.blocks, twin.blocks, strict=True):
        fc1, fc2 = blk.mlp_tokens.fc1, blk.mlp_tokens.fc2
        tblk.mlp_tokens.fc1.weight.copy_(fc1.weight[:, patches])
        tblk.mlp_tokens.fc2.weight.copy_(fc2.weight[patches, :])
        tblk.mlp_tokens.fc2.bias.copy_(fc2.bias[patches])
    x = _images()
    diff = _rel_diff(model(x), twin(permute_pixels(x, perm)))
    return diff < 1e-5, f"largest relative output difference {diff:.1e}"


@torch.no_grad()
def repmlp_fusion(**_) -> tuple[bool, str]:
    """RepMLP's deploy form (FC layers only) computes what its train form computes, with random BatchNorm
    statistics."""
    name, args = LAB_MODELS["RepMLP"]
    model = _random_model(name, **args)
    deployed = reparameterize(model)
    x = _images()
    rel = _rel_diff(model(x), deployed(x))
    return rel < 1e-4, f"largest relative output difference {rel:.1e}"


def repmlp_fewer_macs(**_) -> tuple[bool, str]:
    """The deployed RepMLP network needs fewer multiply-adds than the Wide ConvNet (the paper: 52.8 vs 65.1 M)."""
    macs = {}
    for label in ("RepMLP", "Wide ConvNet"):
        name, args = LAB_MODELS[label]
        macs[label] = _macs_deployed(name, **args)
    ok = macs["RepMLP"] < macs["Wide ConvNet"]
    return ok, f"RepMLP {macs['RepMLP'] / 1e6:.1f} M vs Wide ConvNet {macs['Wide ConvNet'] / 1e6:.1f} M MACs"


@torch.no_grad()
def untied_equals_tied(**_) -> tuple[bool, str]:
    """A Mixer with one token MLP per channel, all set to the tied Mixer's, computes what the tied Mixer computes:
    untying only adds freedom (the comparison's premise)."""
    tied = _randomised(_mixer())
    groups = LAB_MODELS["MLP-Mixer, untied token mixing"][1]["token_mixing_groups"]
    name, args = _MIXER
    untied = create_model(name, device="meta", **args, token_mixing_groups=groups).to_empty(device="cpu").eval()
    for p in untied.parameters():
        p.fill_(math.nan)  # a weight the copies below miss makes the outputs NaN: the check fails, it cannot pass
    state = {k: v for k, v in tied.state_dict().items() if ".mlp_tokens." not in k}
    unset = [k for k in untied.load_state_dict(state, strict=False).missing_keys if ".mlp_tokens." not in k]
    if unset:  # built without initialisation: every weight must come from the tied model
        raise ValueError(f"the untied Mixer's {', '.join(unset)} has no tied counterpart")
    for blk, ublk in zip(tied.blocks, untied.blocks, strict=True):
        m, u = blk.mlp_tokens, ublk.mlp_tokens
        u.fc1_weight.copy_(m.fc1.weight.expand_as(u.fc1_weight))
        u.fc1_bias.copy_(m.fc1.bias.expand_as(u.fc1_bias))
        u.fc2_weight.copy_(m.fc2.weight.expand_as(u.fc2_weight))
        u.fc2_bias.copy_(m.fc2.bias.expand_as(u.fc2_bias))
    x = _images()
    diff = _rel_diff(tied(x), untied(x))
    return diff < 1e-5, f"largest relative output difference {diff:.1e}; parameters {count(tied).params:,} tied vs " + (
        f"{count(untied).params:,} untied"
    )


@torch.no_grad()
def expansion_tiles(family: str = "MLP-Mixer", **_) -> tuple[bool, str]:
    """The block-diagonally expanded model on a 56-px image made of four 28-px tiles computes the average of the
    small model's features on each tile (before the head): it is the small model applied tile by tile."""
    name, args = LAB_MODELS[family]
    small = _randomised(create_model(name, **args))
    big = expand_token_mixing(small, 56).eval()
    tiles = _images(4)
    image = torch.cat([torch.cat([tiles[0:1], tiles[1:2]], 3), torch.cat([tiles[2:3], tiles[3:4]], 3)], 2)
    got = big.forward_features(image).mean(1)
    want = small.forward_features(tiles).mean(1).mean(0, keepdim=True)
    diff = _rel_diff(want, got)
    return diff < 1e-5, f"largest relative feature difference {diff:.1e}"


def seg_repmlp_resnet_macs(**_) -> tuple[bool, str]:
    """The segmentation RepMLP-ResNet's deploy form needs no more multiply-adds than the ResNet's ("comparable or
    lower FLOPs"), decoder included."""
    macs = {}
    for label in ("seg: RepMLP-ResNet-18/2", "seg: ResNet-18/2", "seg: ResNet-18/2, widened"):
        name, args = SEG_MODELS[label]
        macs[label] = _macs_deployed(name, **args) / 1e6
    ok = macs["seg: RepMLP-ResNet-18/2"] <= macs["seg: ResNet-18/2"]
    return ok, ", ".join(f"{k.removeprefix('seg: ')} {v:.1f} M" for k, v in macs.items()) + " MACs (deploy forms)"


@torch.no_grad()
def seg_deploy_equal(**_) -> tuple[bool, str]:
    """The segmentation RepMLP-ResNet's deploy form (RepMLP as FC layers, every BatchNorm of backbone and decoder
    fused) computes the train form's per-pixel logits, with random BatchNorm statistics."""
    name, args = SEG_MODELS["seg: RepMLP-ResNet-18/2"]
    model = _random_model(name, **args)
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    rel = _rel_diff(model(x), reparameterize(copy.deepcopy(model)).eval()(x))
    return rel < 1e-4, f"largest relative logit difference {rel:.1e}"


def teacher_gap(rows=None, **_) -> tuple[bool | None, str]:
    """The distillation teachers are at least 2 points ahead of the undistilled students (else the test cannot tell):
    the mean over the seeds of each seed's teacher minus its student."""
    teacher = {r["seed"]: top1(r) for r in (rows or {}).get("teacher", [])}
    student = {r["seed"]: top1(r) for r in (rows or {}).get("ResMLP", [])}
    seeds = sorted(teacher.keys() & student.keys())
    if not seeds:
        return None, "the teacher's and the undistilled student's runs have not finished"
    gaps = [teacher[s] - student[s] for s in seeds]
    gap = statistics.mean(gaps)
    return gap >= 2.0, (
        f"teacher {statistics.mean(teacher[s] for s in seeds):.2f}% vs undistilled student "
        f"{statistics.mean(student[s] for s in seeds):.2f}% (means over {len(seeds)} seeds): {gap:+.2f} points, "
        f"smallest seed {min(gaps):+.2f}"
    )


INCONCLUSIVE = "inconclusive"  # a check result that neither passes nor fails (a measurement within its noise)


def _latency_ratios(latency, planned) -> tuple[dict[int, tuple[float, float, float]], str] | None:
    """ViT's latency over Mixer's at each planned size (median, conservative: ViT's 25th percentile over Mixer's
    75th, generous: ViT's 75th over Mixer's 25th) and their text; None until every planned entry is timed."""
    rows = (latency or {}).get("rows", {})
    sizes = sorted({int(k.rsplit(" at ", 1)[1].split()[0]) for k in planned})
    if not sizes or any(label not in rows for label in planned):
        return None

    def ratio(n: int, vit: str, mixer: str) -> float:
        return rows[f"ViT at {n} px"][vit] / rows[f"MLP-Mixer at {n} px"][mixer]

    out = {
        n: (ratio(n, "median_ms", "median_ms"), ratio(n, "p25_ms", "p75_ms"), ratio(n, "p75_ms", "p25_ms"))
        for n in sizes
    }
    return out, "ViT / Mixer latency (median; conservative to generous): " + ", ".join(
        f"{med:.2f}x ({lo:.2f}x to {hi:.2f}x) at {n} px" for n, (med, lo, hi) in out.items()
    )


_NOT_TIMED = "timed later, on an idle machine, by `mlpvision lab --latency-only` (every model at every size)"


def _shown_faster(ratios: dict[int, tuple[float, float, float]]) -> bool:
    """Mixer faster at every size and at least twice as fast at 112 px, by the conservative ratio."""
    return all(lo > 1 for _, lo, _ in ratios.values()) and ratios.get(112, (0, 0, 0))[1] >= 2


def mixer_faster_than_vit(latency=None, planned=(), **_) -> tuple[bool | str | None, str]:
    """The registered speed test: Mixer faster than ViT at every size and at least twice as fast at 784 patches
    (112 px), refuted by 'Mixer slower than ViT at any size, or less than twice as fast at 784 patches'. Both ends of
    the timing spread count, each way: passed when the conservative ratio (ViT's 25th percentile over Mixer's 75th)
    is above 1 at every size and at least 2 at 112 px; failed when the generous ratio (ViT's 75th over Mixer's 25th)
    is below 1 at a size or below 2 at 112 px (shown slower, or shown short of 2x); inconclusive otherwise. Pending
    until every entry the experiment ``planned`` (labels "MODEL at N px") is timed."""
    found = _latency_ratios(latency, planned)
    if found is None:
        return None, _NOT_TIMED
    ratios, text = found
    if _shown_faster(ratios):
        return True, text
    if any(hi < 1 for _, _, hi in ratios.values()) or ratios.get(112, (0, 0, 0))[2] < 2:
        return False, text
    return INCONCLUSIVE, text


def _mixer_faster_than_vit_as_first_coded(latency=None, planned=(), **_) -> tuple[bool | None, str]:
    """The speed test as first coded, kept for the record: failed whenever the conservative ratio did not pass."""
    found = _latency_ratios(latency, planned)
    if found is None:
        return None, _NOT_TIMED
    ratios, text = found
    return _shown_faster(ratios), text


class Check(NamedTuple):
    title: str
    fn: Callable[..., tuple[bool | str | None, str]]
    on_fail: str = "refutes"  # what a failure does to the claim it serves: "refutes" it, or "voids" its test
    # a check corrected after its result: the code it had then (still run, shown beside) and when and why
    first_coded: Callable[..., tuple[bool | None, str]] | None = None
    changed: str = ""


CHECKS: dict[str, Check] = {
    "mlp_permutation": Check("plain MLP: a pixel permutation is undone by permuting its first layer", mlp_permutation),
    "mixer_patch_shuffle": Check(
        "Mixer: a patch + pixel shuffle is undone by permuting its stem and token-mixing weights", mixer_patch_shuffle
    ),
    "repmlp_fusion": Check("RepMLP: the FC-only deploy form equals the train form", repmlp_fusion),
    "repmlp_fewer_macs": Check("RepMLP (deployed) needs fewer MACs than the Wide ConvNet", repmlp_fewer_macs),
    "untied_equals_tied": Check("untied token mixing contains the tied Mixer", untied_equals_tied),
    "expansion_tiles": Check("the expanded Mixer is the small one applied tile by tile", expansion_tiles),
    "expansion_tiles_resmlp": Check(
        "the expanded ResMLP is the small one applied tile by tile", lambda **_: expansion_tiles("ResMLP")
    ),
    "seg_repmlp_resnet_macs": Check(
        "segmentation: the RepMLP-ResNet (deployed) needs no more MACs than the ResNet", seg_repmlp_resnet_macs
    ),
    "seg_deploy_equal": Check("segmentation: the RepMLP-ResNet's deploy form equals its train form", seg_deploy_equal),
    "teacher_gap": Check(
        "the teacher leads the undistilled student by at least 2 points (mean over the seeds)", teacher_gap, "voids"
    ),
    "mixer_faster_than_vit": Check(
        "Mixer faster than ViT at every size, at least 2x at 784 patches",
        mixer_faster_than_vit,
        first_coded=_mixer_faster_than_vit_as_first_coded,
        changed="corrected on 2026-12-05, after its result, when a review found that the code failed it whenever "
        "Mixer was not shown faster at a size, while the registered refutation asks that Mixer be shown slower at a "
        "size, or short of twice as fast at 784 patches; it passes as before, fails only then, and is inconclusive "
        "in between",
    ),
}


def run_check(name: str, **context) -> tuple[bool | str | None, str]:
    """Runs check ``name`` (a key of :data:`CHECKS`) with the section's ``rows``, ``latency`` and ``planned``
    latency entries as context: passed (True), failed (False), :data:`INCONCLUSIVE`, or pending (None)."""
    return CHECKS[name].fn(**context)


def run_first_coded(name: str, **context) -> tuple[bool | None, str] | None:
    """Check ``name`` as first coded, for a check corrected after its result (None for any other check)."""
    first = CHECKS[name].first_coded
    return None if first is None else first(**context)
