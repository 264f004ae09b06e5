"""The lab's experiments: which runs each one trains, on what budget, and which claim of the papers it tests.

:func:`plan` turns the budgets of a :class:`Settings` (full or ``--quick``) into :class:`Experiment` objects made
of :class:`LabRun` trainings; :mod:`mlpvision.lab` runs them and :mod:`mlpvision.lab_report` reports them. A run's
key hashes what it trains (not its label), so two experiments that need the same training share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import ConfigError
from .tasks import MARGIN

__all__ = [
    "EVAL_KEYS",
    "LAB_DATA",
    "Experiment",
    "LabData",
    "LabRun",
    "Settings",
    "check_data",
    "data_suffix",
    "plan",
]

SHIFTS = (0, 1, 2, 3, 4)  # translation probe: pixels
EVAL_KEYS = {"shift": "shift_top1", "train_acc": "train_top1"}  # LabRun.evals -> the result field each adds
FRACTIONS = (0.1, 0.3, 1.0)  # over-fitting study: share of the training images
# the ConvNet twin of the fast RepMLP net: the same layout and width with a 3x3 conv (no groups) as spatial layer
CONV_TWIN = {"layer": "conv", "conv_kernel": 3, "groups": 1}
WIDE = {**CONV_TWIN, "channels": (64, 128)}  # the paper's Wide ConvNet: the twin with twice the channels
REP, TWIN, WIDE_LABEL = (
    "RepMLP (deploy: FC only)",
    "ConvNet twin (3x3 conv, same width)",
    "Wide ConvNet (3x3, 2x width)",
)


@dataclass(frozen=True)
class Settings:
    """The budgets of one lab mode."""

    quick: bool = False
    data: str = "fashion-mnist"  # or "cifar10" / "cifar100" (32x32 models); the synthetic probes stay 28x28
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 3  # training budget of the accuracy tables
    overfit_epochs: int = 2  # images seen in the over-fitting study: this many epochs of the full training set
    probe_epochs: int = 5  # synthetic probes (12 000 training images)
    equal_time_min: float = 4.0  # per-model wall-clock budget of the families comparison
    timing_steps: tuple[int, int] = (5, 10)  # warm-up and timed training steps that size an equal-time run
    subset: int = 0  # training images (0: all but validation)
    val_size: int = 5000
    test_subset: int = 0
    batch_size: int = 128
    latency_batch: int = 64
    latency_repeats: int = 10
    shift_images: int = 2000  # test images used by the translation probe

    @classmethod
    def full(cls) -> Settings:
        return cls()

    @classmethod
    def tiny(cls) -> Settings:
        return cls(quick=True, seeds=(0,), epochs=1, overfit_epochs=1, probe_epochs=1, equal_time_min=0.01,
                   timing_steps=(1, 2), subset=128, val_size=64, test_subset=128, batch_size=32, latency_batch=4,
                   latency_repeats=2, shift_images=32)  # fmt: skip


@dataclass(frozen=True)
class LabRun:
    """One training run: a model with config overrides, trained with the lab recipe plus ``train`` overrides."""

    label: str  # row label in its experiment's table
    model: str
    seed: int = 0
    data: str = "fashion-mnist"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    teacher: LabRun | None = None  # distillation teacher (trained first)
    init: LabRun | None = None  # fine-tune from this run's model
    evals: tuple[str, ...] = ()  # extra measurements: "shift", "train_acc"
    equal_time_min: float = 0.0  # > 0: epochs chosen so training takes about this long

    @property
    def key(self) -> str:
        """Identifies the training (not the label): identical runs in two experiments are trained once."""
        spec = {"model": self.model, "seed": self.seed, "data": self.data, "model_args": dict(self.model_args),
                "train": dict(self.train), "teacher": self.teacher.key if self.teacher else None,
                "init": self.init.key if self.init else None, "equal_time_min": self.equal_time_min}  # fmt: skip
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.model}-{digest}-s{self.seed}"


@dataclass
class Experiment:
    key: str
    title: str
    claim: str  # what the papers claim, in one or two sentences
    runs: list[LabRun]
    budget: str  # the shared budget, in words
    latency: dict[str, tuple[str, dict]] = field(default_factory=dict)  # label -> (model, model_args)
    notes: str = ""
    caveat: str = ""  # likely reasons, shown when the claim does not reproduce


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _base_train(s: Settings) -> dict:
    """The lab recipe (the library's default recipe), scaled to the mode's budget."""
    d = {"epochs": s.epochs, "batch_size": s.batch_size, "val_size": s.val_size, "warmup_epochs": 0.5}
    if s.quick:
        d["plots"] = False  # dozens of tiny runs: the lab draws its own figures
    if s.subset:
        d["train_subset"] = s.subset
    if s.test_subset:
        d["test_subset"] = s.test_subset
    return d


class LabData(NamedTuple):
    title: str
    size: int  # image side in pixels: picks the `_28` or `_32` twin of every model
    chans: int


LAB_DATA = {  # the data sets the lab runs on
    "fashion-mnist": LabData("Fashion-MNIST", 28, 1),
    "cifar10": LabData("CIFAR-10", 32, 3),
    "cifar100": LabData("CIFAR-100", 32, 3),
}


def data_suffix(data: str) -> str:
    """Suffix of the lab's default folders, page and figures for ``data`` (none for Fashion-MNIST)."""
    return "" if data == "fashion-mnist" else f"-{data}"


def check_data(name: str) -> int:
    """The image size of lab data set ``name`` (a clear error for any other)."""
    if name not in LAB_DATA:
        raise ConfigError(f"the lab runs on {', '.join(LAB_DATA)}, not {name!r}")
    return LAB_DATA[name].size


def plan(s: Settings) -> list[Experiment]:
    """Every experiment of the lab with its runs, for the budgets in ``s``.

    Written for Fashion-MNIST's 28-px models; on CIFAR the ``_28`` models become their ``_32`` twins and every
    run trains on ``s.data``, except the synthetic position and global probes, which are the same everywhere.
    """
    from .train_config import TrainConfig

    size = check_data(s.data)

    def sized(model: str) -> str:
        return model.removesuffix("_28") + f"_{size}" if model.endswith("_28") else model

    base = _base_train(s)
    no_crop = {**base, "aug": {"crop_padding": 0, "hflip": 0.5}}  # shifts stay out of training: the probe measures
    probe = {**base, "epochs": s.probe_epochs, "aug": {"crop_padding": 0, "hflip": 0.0}}
    if not s.quick:
        probe["val_size"] = 2000
    seeds = s.seeds

    def runs(label, model, model_args=None, train=None, **kw) -> list[LabRun]:
        return [LabRun(label, sized(model), seed, s.data, model_args or {}, train or base, **kw) for seed in seeds]

    exps: list[Experiment] = []
    ablation = {
        "full RepMLP": {},
        "w/o Global Perceptron": {"global_perceptron": False},
        "w/o Partition Perceptron": {"partition_perceptron": False},
        "w/o Local Perceptron": {"kernels": ()},
        "FC3 replaced by 9x9 conv": {"fc_as_conv": 9},
        "RepMLP replaced by 9x9 conv": {"layer": "conv", "conv_kernel": 9},
    }
    exps.append(Experiment(
        "repmlp_ablation", "RepMLP ablation (pure-MLP network)",
        "Each perceptron matters; the FC layer (global capacity + position) beats a conv of similar cost, and the "
        "Local Perceptron gives the FC a local prior that survives re-parameterization.",
        [r for label, a in ablation.items() for r in runs(label, "repmlp_fast_28", a)],
        f"{_epochs(s.epochs)}, default recipe", {label: (sized("repmlp_fast_28"), a) for label, a in ablation.items()},
        notes=f"The network is `{sized('repmlp_fast_28')}` (2x2 patch stem, then the paper's pure-MLP stage layout "
              f"at {size // 2}x{size // 2} and {size // 4}x{size // 4}): the paper's full-resolution layout "
              f"(`{sized('repmlp_pure_28')}`) costs 5x more per epoch.",
        caveat=f"Likely causes: the paper trains 100 epochs on CIFAR-10, this table {_epochs(s.epochs)}, and the "
               "Global Perceptron's extra FC layers have little time to pay off; in this network the GP acts only in "
               f"the {size // 2}x{size // 2} stage (a 2x2 grid of partitions): at {size // 4}x{size // 4} the "
               "partition is the whole map and there is no GP.",
    ))  # fmt: skip
    exps.append(Experiment(
        "repmlp_vs_convnet", "Pure-MLP RepMLP vs Wide ConvNet",
        "The pure-MLP RepMLP network comes close to a Wide ConvNet (its layout with 3x3 convs and twice the "
        "channels) at fewer FLOPs: 91.11% vs 91.99% CIFAR-10 top-1 at 52.8 vs 65.1 MFLOPs in the paper.",
        [*runs(REP, "repmlp_fast_28"), *runs(WIDE_LABEL, "repmlp_fast_28", WIDE),
         *runs(TWIN, "repmlp_fast_28", CONV_TWIN)],
        f"{_epochs(s.epochs)}, default recipe",
        {REP: (sized("repmlp_fast_28"), {}), WIDE_LABEL: (sized("repmlp_fast_28"), WIDE),
         TWIN: (sized("repmlp_fast_28"), CONV_TWIN)},
        caveat=f"Likely cause: {_epochs(s.epochs)} against the paper's 100; the conv nets, with far fewer "
               "parameters, converge faster.",
    ))  # fmt: skip
    small = {**base, "train_subset": s.subset or 10000}
    exps.append(Experiment(
        "repmlp_resnet", "RepMLP-ResNet vs ResNet (small images)",
        "Adding RepMLP blocks to a ResNet raises accuracy at a similar cost.",
        runs("ResNet-18", "resnet18_28", train=small) + runs("RepMLP-ResNet-18", "repmlp_resnet18_28", train=small),
        f"{_epochs(s.epochs)} on {small['train_subset']} training images, default recipe",
        {"ResNet-18": (sized("resnet18_28"), {}), "RepMLP-ResNet-18": (sized("repmlp_resnet18_28"), {})},
    ))  # fmt: skip
    families = {
        "plain MLP": "mlp_28", "MLP-Mixer": "mixer_t4_28", "ResMLP": "resmlp_tiny_12_28", "RepMLP": "repmlp_fast_28",
        "RepMLPNet": "repmlpnet_28", "ViT": "vit_mini_patch4_28", "ResNet-18": "resnet18_28",
        "External Attention": "eanet_tiny_28",
    }  # fmt: skip
    equal = [LabRun(label, sized(m), seeds[0], s.data, train=no_crop, evals=("shift",),
                    equal_time_min=s.equal_time_min) for label, m in families.items()]  # fmt: skip
    exps.append(Experiment(
        "families", "Families at equal training time",
        "Given the same compute, which family learns most: priors (conv) vs capacity (MLP/attention).",
        equal, f"{s.equal_time_min:g} min of training per model (the optimizer steps that fit, from a timed probe; "
        "warm-up on the first fifth, then cosine), flips only",
        notes="One seed per family: a wall-clock budget ties a run to the machine and precision it ran in, so a "
              "second seed belongs on the same machine as the first. Read differences no larger than the seed "
              "spreads of the other tables on this page as ties.",
    ))  # fmt: skip
    exps.append(Experiment(
        "translation", "Translation: accuracy vs test-time shift",
        "Convolutions and pooling give (approximate) translation invariance; FC-based token mixing does not.",
        equal, "the models of the families experiment (trained without crop augmentation)",
    ))  # fmt: skip
    hot = {**base, "lr": 4 * TrainConfig.lr}  # stability: the same recipe at 4x the peak learning rate
    exps.append(Experiment(
        "resmlp_norm", "ResMLP: Affine vs LayerNorm",
        "ResMLP's Affine layer (no statistics) trains as well and as stably as LayerNorm and keeps inference a pure "
        "linear map.",
        [*runs("Affine", "resmlp_tiny_12_28"), *runs("LayerNorm", "resmlp_tiny_12_28", {"norm": "layernorm"}),
         *runs("Affine, peak lr x4", "resmlp_tiny_12_28", train=hot),
         *runs("LayerNorm, peak lr x4", "resmlp_tiny_12_28", {"norm": "layernorm"}, hot)],
        f"{_epochs(s.epochs)}, default recipe (peak learning rate {TrainConfig.lr:g}, and 4x that to probe stability)",
        caveat=f"Likely cause: {_epochs(s.epochs)} against the paper's 400 leave both variants under-trained (compare "
        "each with its 4x-learning-rate row). LayerNorm rescales every token to unit variance before each linear "
        "layer, whichever the step size; Affine starts as the identity and has to learn that scale, which is slow "
        "at a small learning rate and so costs most on a short schedule. The rows at 4x the learning rate show "
        "whether the gap is one of speed or of stability.",
    ))  # fmt: skip
    teacher = LabRun("teacher", sized("repmlp_fast_28"), seeds[0], s.data, CONV_TWIN, base)
    distill = {**base, "distill": "hard", "distill_alpha": 0.5}
    exps.append(Experiment(
        "resmlp_distill", "ResMLP with and without distillation",
        "ResMLP learns better with hard distillation from a convnet teacher (the DeiT recipe).",
        runs("ResMLP", "resmlp_tiny_12_28") + runs("ResMLP + distillation", "resmlp_tiny_12_28", train=distill,
                                                   teacher=teacher),
        f"{_epochs(s.epochs)}, default recipe; teacher: the same-width ConvNet twin of `{sized('repmlp_fast_28')}` "
        "(same budget)",
    ))  # fmt: skip
    n_train = s.subset or {"fashion-mnist": 60000}.get(s.data, 50000) - s.val_size
    over = []
    for label, m, a in (("plain MLP", "mlp_28", {}), ("MLP-Mixer", "mixer_t4_28", {}),
                        ("ResMLP", "resmlp_tiny_12_28", {}), ("ConvNet", "repmlp_fast_28", CONV_TWIN)):  # fmt: skip
        for frac in FRACTIONS:
            t = {**base, "train_subset": max(int(n_train * frac), 64), "epochs": max(round(s.overfit_epochs / frac), 1)}
            over += runs(f"{label}|{frac:g}", m, a, t, evals=("train_acc",))
    exps.append(Experiment(
        "overfitting", "Over-fitting: train/test gap vs training-set size",
        "Without a local prior MLPs need more data: their train/test gap grows faster as data shrinks.",
        over, f"as many images seen at every size ({_epochs(s.overfit_epochs)} of {n_train}), default recipe",
        caveat="Likely cause: a gap measures over-fitting only in a model that fits its training images. At this "
               "budget a model that learns slowly is still under-fitting even a small training set (compare the "
               "train top-1 column across models), and its gap stays small for that reason, not because it "
               "generalizes. The papers' claim is about models trained to convergence; a fair test trains every "
               "model until its train top-1 levels off, which this budget does not buy.",
    ))  # fmt: skip
    perm_models = {"plain MLP": ("mlp_28", {}), "MLP-Mixer": ("mixer_t4_28", {}), "RepMLP": ("repmlp_fast_28", {}),
                   "ConvNet": ("repmlp_fast_28", CONV_TWIN)}  # fmt: skip
    # no augmentation: a flip or a shift of a permuted image is a second, unrelated pixel arrangement, which would
    # handicap every model on the permuted data, the plain MLP included
    no_aug = {**base, "aug": {"crop_padding": 0, "hflip": 0.0}}
    perm = []
    for label, (m, a) in perm_models.items():
        for data in (s.data, f"{s.data}-permuted"):
            perm += [LabRun(f"{label}|{data}", sized(m), seed, data, a, no_aug) for seed in seeds]
    exps.append(Experiment(
        "permutation", "Local prior: a fixed pixel permutation",
        "A plain MLP has no local prior, so a fixed permutation of the pixels costs it nothing; models that "
        "assume neighbouring pixels are related lose accuracy.",
        perm, f"{_epochs(s.epochs)}, no augmentation (a flipped permuted image is another, unrelated arrangement)",
        notes="What each model assumes: the plain MLP's first layer is dense over all pixels, so a permutation of "
              "the input is undone exactly by the same permutation of its weight columns (tests/test_tasks.py "
              "proves it): the same function class, the same accuracy up to training noise. Mixer (4x4 patches) "
              "and the RepMLP net (2x2 patch stem) first apply one shared linear map to each non-overlapping "
              "patch: after the permutation a patch holds pixels from anywhere, so only this step loses its "
              "meaning; Mixer's token mixing is a dense map over all patches and does not care where they are, "
              f"while RepMLP's Local Perceptron convolutions and {size // 4}x{size // 4} partitions still assume "
              "that neighbouring patches relate. The ConvNet's 3x3 kernels assume it at every layer.",
    ))  # fmt: skip
    probe_models = {"plain MLP": ("mlp_28", {}), "MLP-Mixer": ("mixer_t4_28", {}), "RepMLP": ("repmlp_fast_28", {}),
                    "local CNN (5x5 field)": ("cnn_local_28", {}), "ResNet-18": ("resnet18_28", {})}  # fmt: skip
    fields = (
        "Both CNNs end in global average pooling. Each output of the local CNN's two 3x3 layers sees a 5x5 "
        "window; each cell of ResNet-18's last 4x4 map (CIFAR stem, no max-pool) sees the whole 28x28 "
        "image and its zero-padded border, so what it pools already knows where things are. "
    )
    for key, data, title, claim, note in (
        ("position", "position-task", "Positional prior: which quadrant holds the shape",
         "FC layers know absolute position by construction; a CNN with global pooling must infer it from padding.",
         f"The shape keeps {MARGIN} pixels from the border, so the local CNN's windows that hold it look alike in "
         "every quadrant; ResNet-18 can place it against the border, the route the claim leaves open. The probe "
         "separates a small receptive field from a wide one; FC layers need neither."),
        ("global", "global-task", "Global capacity: do two far-apart patches match",
         "One FC layer reaches the whole image; a CNN with a small receptive field and global pooling cannot "
         "relate regions 20 pixels apart (every image holds the same multiset of patches).",
         "No window of the local CNN spans the two corner patches it must compare; ResNet-18's last cells span "
         "both."),
    ):  # fmt: skip
        exps.append(Experiment(
            key, title, claim,
            [LabRun(label, m, seed, data, a, probe) for label, (m, a) in probe_models.items() for seed in seeds],
            f"{_epochs(s.probe_epochs)} of 12 000 synthetic images, no augmentation", notes=fields + note,
        ))  # fmt: skip
    native = {m: LabRun(f"{m} at {size} px", m, seeds[0], s.data, train=base)
              for m in (sized("mixer_t4_28"), sized("resmlp_tiny_12_28"))}  # fmt: skip
    transfer = []
    for m, b in native.items():
        short = {**base, "epochs": 1, "img_size": 2 * size}
        transfer += [b, LabRun(f"{m}: {size} px model fine-tuned at {2 * size} px (1 epoch)", m, seeds[0], s.data,
                               train=short, init=b),
                     LabRun(f"{m}: trained at {2 * size} px from scratch (1 epoch)", m, seeds[0], s.data,
                            train=short)]  # fmt: skip
    exps.append(Experiment(
        "resolution", "Fixed input size and resolution transfer",
        "Token-mixing weights are tied to the number of patches, so an MLP takes one input size; the Mixer paper "
        "fine-tunes at a higher resolution by expanding the token-mixing weights block-diagonally (ResMLP's "
        "cross-patch linear likewise).",
        transfer, f"base {_epochs(s.epochs)} at {size} px; images upscaled to {2 * size} px",
    ))  # fmt: skip
    return exps
