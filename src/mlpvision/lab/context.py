"""The context every experiment of a plan shares: the lab's models at lab widths, the lab recipe (float32, a seeded
subset, the settings' epochs), the seeds, and the helpers that build runs, sweeps and their comparisons."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..models import create_model
from .spec import Comparison, Curve, LabRun, Settings
from .tuning import DEFAULT_LR, TUNE_EPOCHS, TUNE_SEED, Family, Tuning, rate_label

__all__ = [
    "AUG",
    "LAB_MODELS",
    "NO_AUG",
    "SEG_MODELS",
    "PlanContext",
    "at_half",
    "budget",
    "budget_pairs",
    "half",
    "size_curve",
]

LAB_MODELS = {
    "plain MLP": ("mlp_28", {}),
    "MLP-Mixer": ("mixer_t4_28", {"embed_dim": 64, "depth": 4, "token_mlp_dim": 32, "channel_mlp_dim": 256}),
    "ResMLP": ("resmlp_tiny_12_28", {"embed_dim": 64, "depth": 6}),
    "RepMLP": ("repmlp_fast_28", {}),
    "ConvNet": ("repmlp_fast_28", {"layer": "conv", "conv_kernel": 3, "groups": 1}),  # RepMLP's twin, 3x3 convs
    "Wide ConvNet": ("repmlp_fast_28", {"layer": "conv", "conv_kernel": 3, "groups": 1, "channels": (64, 128)}),
    "ViT": ("vit_mini_patch4_28", {"embed_dim": 64, "depth": 4, "num_heads": 2}),
    "External Attention": ("eanet_tiny_28", {"embed_dim": 64, "depth": 4, "num_heads": 2}),
    "local CNN (5x5 field)": ("cnn_local_28", {}),
    # a plain ResNet-18 at a quarter of the width (16-32-64-128), CIFAR stem: its last map sees the whole image
    "ResNet-18/4": ("repmlp_resnet18_28", {"width": 16, "repmlp_stages": ()}),
    # RepMLP-ResNet in the paper's form: inside each stride-1 block of stages 2 and 3, a 3x3 conv narrows to C/2, the
    # RepMLP block mixes at that width, a 3x3 conv widens back; parameters go up (the FC3 weights)
    "RepMLP-ResNet-18/4": (
        "repmlp_resnet18_28",
        {"width": 16, "repmlp_form": "inside", "repmlp_stages": (1, 2), "reductions": (1, 2, 2, 1)},
    ),
    "ResNet-18/4, widened": ("repmlp_resnet18_28", {"width": 23, "repmlp_stages": ()}),  # ~ RepMLP-ResNet's size
    # the RepMLP ablation: each a model of its own, tuned as a family of its own
    "RepMLP w/o Global Perceptron": ("repmlp_fast_28", {"global_perceptron": False}),
    "RepMLP w/o Partition Perceptron": ("repmlp_fast_28", {"partition_perceptron": False}),
    "RepMLP w/o Local Perceptron": ("repmlp_fast_28", {"kernels": ()}),
    "RepMLP, FC3 replaced by 9x9 conv": ("repmlp_fast_28", {"fc_as_conv": 9}),
    "RepMLP replaced by 9x9 conv": ("repmlp_fast_28", {"layer": "conv", "conv_kernel": 9}),
    "ResMLP, LayerNorm": ("resmlp_tiny_12_28", {"embed_dim": 64, "depth": 6, "norm": "layernorm"}),
    "MLP-Mixer, untied token mixing": (  # one token-mixing MLP per channel (the Mixer paper's untied alternative)
        "mixer_t4_28",
        {"embed_dim": 64, "depth": 4, "token_mlp_dim": 32, "channel_mlp_dim": 256, "token_mixing_groups": 64},
    ),
}
# lab models widened to another's parameters: their width is the one nearest it at the plan's image size (the
# width in LAB_MODELS is that width at 28 px; a test checks it)
WIDENED_TO = {"ResNet-18/4, widened": "RepMLP-ResNet-18/4"}
_SEG_BACKBONE = {  # ImageNet stem: maps at 1/4 .. 1/32 of the 64x64 grey scenes
    "backbone": "repmlp_resnet18_64",
    "feature_indices": (1, 2, 3, 4),
    "img_size": 64,
    "in_chans": 1,
}
# the segmentation section's models: the FPN decoder (mlpvision.models.segmentation) on each backbone, 64x64 scenes
SEG_MODELS = {
    # ResNet-18 at half width (32-64-128-256), its RepMLP twin in the paper's form (RepMLP on 4x4 partitions of the
    # 8 and 4 px maps of stages 3 and 4), and the plain ResNet widened to the RepMLP-ResNet's parameters
    "seg: ResNet-18/2": ("seg_fpn", {**_SEG_BACKBONE, "backbone_args": {"width": 32, "repmlp_stages": ()}}),
    "seg: RepMLP-ResNet-18/2": ("seg_fpn", {**_SEG_BACKBONE, "backbone_args": {"width": 32}}),
    "seg: ResNet-18/2, widened": ("seg_fpn", {**_SEG_BACKBONE, "backbone_args": {"width": 38, "repmlp_stages": ()}}),
    "seg: MLP-Mixer": ("seg_mixer", {}),  # the all-MLP backbone: 8x8 patches, blocks 4, 6, 8 feed the decoder
    "seg: RepMLPNet": ("seg_repmlpnet", {}),  # hierarchical, Locality Injection
}
SEG_AUG = {"crop_padding": 4, "hflip": 0.5}  # image and mask alike
AUG = {"crop_padding": 2, "hflip": 0.5}  # the lab recipe's augmentation
NO_AUG = {"crop_padding": 0, "hflip": 0.0}


@dataclass(frozen=True)
class PlanContext:
    """What every experiment of one plan shares: the settings, the image size and the lab recipe."""

    s: Settings
    size: int
    tuning: Tuning | None = None  # the chosen rates; None: every family at the default rate (the ledger's estimate)
    untuned: set[str] = field(default_factory=set)  # families asked for whose rate is not chosen yet

    def lr(self, family: str) -> float:
        """The tuned peak learning rate of ``family`` (a key of :meth:`families`); the default while it is not
        chosen (the ledger's estimate: the cost does not depend on it)."""
        if family not in self.family_keys():
            raise ConfigError(f"{family!r} is not a tuned family of the lab: it has no tuned rate")
        rate = self.tuning.rate(family) if self.tuning else None
        if rate is None:
            self.untuned.add(family)
            return DEFAULT_LR
        return rate

    def families(self) -> list[Family]:
        """Every tuned family, in the order the protocol decides them (a fine-tuning after its base)."""
        out = [Family(k, self._lab_tuning_run(k)) for k in LAB_MODELS]
        for task in PROBE_TASKS:
            out += [Family(probe_family(task, m), self._probe_tuning_run(task, m)) for m in PROBE_MODELS]
        out += [Family(k, make(self), base) for k, (base, make) in FINE_TUNING.items()]
        if self.s.data == "fashion-mnist":  # the segmentation scenes are Fashion-MNIST garments
            out += [Family(k, self._seg_tuning_run(k)) for k in SEG_MODELS]
        return out

    def family_keys(self) -> set[str]:
        probes = (probe_family(t, m) for t in PROBE_TASKS for m in PROBE_MODELS)
        return {*LAB_MODELS, *probes, *FINE_TUNING, *SEG_MODELS}

    def _seg_tuning_run(self, family: str):
        name, args = SEG_MODELS[family]

        def make(lr: float, seed: int, rates) -> LabRun:
            label = f"{family} | lr {rate_label(lr)}" + (f" | seed {seed}" if seed != TUNE_SEED else "")
            train = self.seg_recipe(TUNE_EPOCHS, lr=lr)
            return LabRun(label=label, model=name, seed=seed, data=SEG_DATA, model_args=args, train=train)

        return make

    def seg_recipe(self, epochs: int, **extra) -> dict:
        """The segmentation recipe: the lab recipe's optimizer and schedule on :data:`SEG_SCENES` training scenes
        (64x64; the quick mode's subset), batch 32, 500 validation scenes, the whole test split (2 000 scenes),
        crop and flip of image and mask alike."""
        s = self.s
        d = {
            "task": "segment",
            "epochs": s.epochs_of(epochs),
            "batch_size": min(32, s.batch_size),
            "val_size": s.val_size if s.quick else 500,
            "warmup_epochs": 1.0,
            "amp": False,
            "aug": SEG_AUG,
            "plots": False,
            "train_subset": s.subset if s.quick else SEG_SCENES,
            **({"test_subset": s.test_subset} if s.test_subset else {}),
        }
        return {**d, **extra}

    def seg_runs(self, label: str, family: str, data: str = "", seeds=None, epochs: int = 0, **extra) -> list[LabRun]:
        """One run per seed of segmentation family ``family`` (a :data:`SEG_MODELS` key) at its tuned rate."""
        name, args = SEG_MODELS[family]
        train = self.seg_recipe(epochs or SEG_EPOCHS, lr=self.lr(family), **extra)
        seeds = self.s.seeds if seeds is None else seeds
        return [
            LabRun(label=label, model=name, seed=s, data=data or SEG_DATA, model_args=args, train=train) for s in seeds
        ]

    def _lab_tuning_run(self, family: str):
        name, args = self.model(family)

        def make(lr: float, seed: int, rates) -> LabRun:
            label = f"{family} | lr {rate_label(lr)}" + (f" | seed {seed}" if seed != TUNE_SEED else "")
            train = self.recipe(TUNE_EPOCHS, lr=lr)
            return LabRun(label=label, model=name, seed=seed, data=self.s.data, model_args=args, train=train)

        return make

    def _probe_tuning_run(self, task: str, model: str):
        name, args = LAB_MODELS[model]
        family = probe_family(task, model)

        def make(lr: float, seed: int, rates) -> LabRun:
            label = f"{family} | lr {rate_label(lr)}" + (f" | seed {seed}" if seed != TUNE_SEED else "")
            recipe = probe_recipe(self, PROBE_TUNE_SIZE)
            train = self.recipe(**{**recipe, "lr": lr})
            return LabRun(label=label, model=name, seed=seed, data=PROBE_TASKS[task], model_args=args, train=train)

        return make

    def model(self, label: str) -> tuple[str, dict]:
        """Lab model ``label``'s registered name for this plan's image size and its config; a widened model
        (:data:`WIDENED_TO`) has the width whose parameters come nearest its target's at that size."""
        name, args = LAB_MODELS[label]
        name = self.sized(name)
        if label in WIDENED_TO:
            target = self.model(WIDENED_TO[label])
            args = {**args, "width": _nearest_width(name, json.dumps(args), target[0], json.dumps(target[1]))}
        return name, args

    def sized(self, model: str) -> str:
        """The ``_28`` model's twin for this plan's image size."""
        return model.removesuffix("_28") + f"_{self.size}" if model.endswith("_28") else model

    def recipe(self, epochs: int | None = None, subset: int | None = None, **extra) -> dict:
        """The lab recipe: AdamW with warm-up and cosine (the library's default), float32, ``epochs`` (the
        settings' budget by default, scaled in quick mode) on a seeded subset of ``subset`` training images."""
        s = self.s
        d = {
            "epochs": s.epochs_of(epochs or s.epochs),
            "batch_size": s.batch_size,
            "val_size": s.val_size,
            "warmup_epochs": 1.0,
            "amp": False,
            "aug": AUG,
            "plots": False,
        }
        n = s.subset if subset is None or s.quick else subset  # quick mode: every run on the tiny subset
        if n:
            d["train_subset"] = n
        if s.test_subset:
            d["test_subset"] = s.test_subset
        out = {**d, **extra}
        if out.get("lr") == DEFAULT_LR:  # the library's default: such runs keep the keys they had before tuning
            del out["lr"]
        return out

    def runs(
        self,
        label: str,
        model: str,
        args: dict | None = None,
        data: str | None = None,
        seeds: tuple[int, ...] | None = None,
        family: str | None = None,
        **recipe,
    ) -> list[LabRun]:
        """One run per seed (the settings' seeds by default) of lab model ``model`` (a LAB_MODELS key), at the
        tuned rate of ``family`` (the model's own by default); ``args`` override its config, ``recipe`` the lab
        recipe."""
        if model not in LAB_MODELS:
            raise ConfigError(f"{model!r} is not a lab model (LAB_MODELS)")
        data = data or self.s.data
        # the synthetic probes are 28 px everywhere
        name, base_args = LAB_MODELS[model] if data.endswith("-task") else self.model(model)
        args = {**base_args, **(args or {})}
        train = self.recipe(**{"lr": self.lr(family or model), **recipe})
        seeds = self.s.seeds if seeds is None else seeds
        return [LabRun(label=label, model=name, seed=seed, data=data, model_args=args, train=train) for seed in seeds]

    def budgeted(
        self, label: str, model: str, args: dict | None = None, epochs: int | None = None, seeds=None, **recipe
    ) -> list[LabRun]:
        """The runs of row ``label`` at the budget B (``epochs``, the settings' budget by default) on ``seeds``
        (the settings' seeds by default), and of its row at B/2 (``half(label)``) on the settings' seeds: the
        budget check of a verdict row (see :func:`budget_pairs`)."""
        e = epochs or self.s.epochs
        full = self.runs(label, model, args, seeds=seeds, epochs=e, **recipe)
        return full + self.runs(half(label), model, args, epochs=max(1, e // 2), **recipe)


SEG_DATA = "fashion-scenes"
SEG_SCENES = 2000  # training scenes of a segmentation run
SEG_EPOCHS = 16  # the segmentation budget B (B/2 for the budget check)
PROBE_TASKS = {"position": "position-task", "global": "global-task"}
PROBE_MODELS = ("plain MLP", "MLP-Mixer", "ResNet-18/4", "local CNN (5x5 field)")
PROBE_TUNE_SIZE = 100  # training images of a probe family's tuning runs
# fine-tuning families: key -> (base family, make(p) -> run builder (lr, seed, rates) -> LabRun | None); filled by
# the experiments that fine-tune (mlpvision.lab.claims_scale, mlpvision.lab.claims_resmlp)
FINE_TUNING: dict = {}


def probe_family(task: str, model: str) -> str:
    """The tuned family of ``model`` on the ``task`` probe."""
    return f"{model}, on the {task} probe"


def probe_epochs(n: int) -> int:
    """Epochs for ``n`` probe images: many passes over few images, at least 20 (a plateau on every size)."""
    return max(20, min(100, 30000 // n))


def probe_recipe(p: PlanContext, n: int) -> dict:
    """The recipe of a probe run on ``n`` images: full-batch steps below a batch, no augmentation, validation
    sized to the epochs."""
    s = p.s
    epochs = probe_epochs(n)
    val = s.val_size if s.quick else 1000
    recipe = {"epochs": epochs, "subset": n, "aug": NO_AUG, "batch_size": min(s.batch_size, n), "val_size": val}
    every = max(1, epochs // 10)  # validate ten times: the selection reads the last epoch, the curve needs no more
    return recipe | ({"val_every": every} if every > 1 and not s.quick else {})


def half(label: str) -> str:
    """The label of a row's half-budget twin."""
    return f"{label} | half budget"


def budget_pairs(runs: list[LabRun]) -> dict[str, str]:
    """Row at B -> its row at B/2, for every budgeted row among ``runs``."""
    labels = {r.label for r in runs}
    return {label: half(label) for label in labels if half(label) in labels}


def at_half(c: Comparison) -> Comparison:
    """``c`` on the half-budget rows: shown beside the verdict (is it the same at B/2?), not counted."""
    minus = (half(c.minus[0]), half(c.minus[1])) if c.minus else None
    return dataclasses.replace(c, name=f"{c.name} (half budget)", a=half(c.a), b=half(c.b), minus=minus, deciding=False)


def size_curve(label: str, sizes: tuple[int, ...], runs_at: Callable[[str, int], list[LabRun]]):
    """The rows ``label | N images`` for each training-set size N (``runs_at(row, N)`` makes a row's runs) and
    the curve through them; returns (runs, curve)."""
    rows = [f"{label} | {n} images" for n in sizes]
    runs = [r for row, n in zip(rows, sizes, strict=True) for r in runs_at(row, n)]
    return runs, Curve(label, tuple(rows), tuple(sizes))


def spaced(n: int) -> str:
    """``n`` with a space between thousands, as the page writes counts (12 000)."""
    return f"{n:,}".replace(",", " ")


def budget(p: PlanContext, what: str = "") -> str:
    s = p.s
    data = f"{s.subset} training images (a seeded subset)" if s.subset else "all training images"
    default = f"{s.epochs_of(s.epochs)} epochs (and {s.epochs_of(s.epochs) // 2 or 1} for the budget check)"
    return f"{what or default} on {data}, each family at its tuned rate, float32"


@functools.cache
def _nearest_width(name: str, args: str, target: str, target_args: str) -> int:
    """The ``width`` of model ``name`` (config ``args``, JSON) whose parameter count comes nearest that of
    ``target`` (``target_args``), counted on the meta device; the search starts at the width in ``args``."""

    def params(model: str, config: dict) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in create_model(model, **config).parameters())

    config, goal = json.loads(args), params(target, json.loads(target_args))
    width = config["width"]

    def gap(w: int) -> int:
        return abs(params(name, {**config, "width": w}) - goal)

    step = 1 if gap(width + 1) < gap(width) else -1
    while width + step > 0 and gap(width + step) < gap(width):
        width += step
    return width
