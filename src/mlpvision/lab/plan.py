"""The lab's experiments: for each claim of the papers, the runs that can decide it, the hypothesis and what would
refute it, the effect the paper reports, and the comparisons whose verdicts decide it; one function per experiment.

Every run trains in float32 on a seeded subset of the training images (the same subset for every model of a seed)
to a plateau, and is tested on the whole test set; every comparison pairs its two models seed by seed (see
:mod:`mlpvision.lab.stats`). Models are the small variants at lab widths (``LAB_MODELS``), chosen so the whole lab
fits in about 15 CPU hours on two cores (``mlpvision lab --plan`` prints the ledger).

:func:`plan` turns a :class:`~mlpvision.lab.spec.Settings` (full or ``--quick``) into
:class:`~mlpvision.lab.spec.Experiment` objects; :mod:`mlpvision.lab.runner` runs them and
:mod:`mlpvision.lab.report` reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..data.tasks import MARGIN
from .spec import Comparison, Curve, Experiment, LabRun, Settings, check_data

__all__ = ["EXPERIMENTS", "LAB_MODELS", "plan"]

# the lab's models: (registered 28-px model, overrides). Widths are cut so that a 30-epoch run on 5 000 images
# takes minutes: what is compared is the prior each architecture carries, at sizes that train to a plateau here
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
}
AUG = {"crop_padding": 2, "hflip": 0.5}  # the lab recipe's augmentation
NO_AUG = {"crop_padding": 0, "hflip": 0.0}


@dataclass(frozen=True)
class _Plan:
    """What every experiment of one plan shares: the settings, the image size and the lab recipe."""

    s: Settings
    size: int

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
        return {**d, **extra}

    def runs(self, label: str, model: str, args: dict | None = None, data: str | None = None, **recipe) -> list[LabRun]:
        """One run per seed of lab model ``model`` (a LAB_MODELS key, or a registered name)."""
        name, base_args = LAB_MODELS.get(model, (model, {}))
        args = {**base_args, **(args or {})}
        train = self.recipe(**recipe)
        return [LabRun(label, self.sized(name), seed, data or self.s.data, args, train) for seed in self.s.seeds]

    def sweep(self, label: str, model: str, args: dict | None = None, **recipe) -> list[LabRun]:
        """The runs of ``label`` at every budget of the sweep, as rows ``label | N ep``."""
        return [r for e in self.s.sweep for r in self.runs(f"{label} | {e} ep", model, args, epochs=e, **recipe)]


def _swept(p: _Plan, a: str, b: str, kind: str = "greater", margin: float = 0.0) -> list[Comparison]:
    """``a`` against ``b`` at every budget of the sweep; the largest budget decides."""
    last = p.s.sweep[-1]
    return [
        Comparison(f"{a} vs {b}, {e} epochs", f"{a} | {e} ep", f"{b} | {e} ep", kind, margin, deciding=e == last)
        for e in p.s.sweep
    ]


def _curves(p: _Plan, labels: list[str]) -> list[Curve]:
    return [Curve(label, tuple(f"{label} | {e} ep" for e in p.s.sweep), tuple(p.s.sweep)) for label in labels]


def _budget(p: _Plan, what: str = "") -> str:
    s = p.s
    data = f"{s.subset} training images (a seeded subset)" if s.subset else "all training images"
    return f"{what or 'budget sweep ' + '/'.join(map(str, s.sweep)) + ' epochs'} on {data}, float32"


# ---- RepMLP --------------------------------------------------------------------------------------------------

ABLATION = {
    "w/o Global Perceptron": {"global_perceptron": False},
    "w/o Partition Perceptron": {"partition_perceptron": False},
    "w/o Local Perceptron": {"kernels": ()},
    "FC3 replaced by 9x9 conv": {"fc_as_conv": 9},
    "RepMLP replaced by 9x9 conv": {"layer": "conv", "conv_kernel": 9},
}
SWEPT = ("w/o Global Perceptron", "FC3 replaced by 9x9 conv", "RepMLP replaced by 9x9 conv")


def _repmlp_ablation(p: _Plan) -> Experiment:
    runs = p.sweep("full RepMLP", "RepMLP")
    for label, args in ABLATION.items():
        last = f"{label} | {p.s.sweep[-1]} ep"
        runs += p.sweep(label, "RepMLP", args) if label in SWEPT else p.runs(last, "RepMLP", args)
    comparisons = [c for label in SWEPT for c in _swept(p, "full RepMLP", label)]
    comparisons += [
        Comparison(f"full RepMLP vs {label}", f"full RepMLP | {p.s.sweep[-1]} ep", f"{label} | {p.s.sweep[-1]} ep")
        for label in ABLATION
        if label not in SWEPT
    ]
    net = p.sized("repmlp_fast_28")
    return Experiment(
        "repmlp_ablation",
        "RepMLP ablation: each perceptron, and FC against conv",
        "Each perceptron of the RepMLP block adds accuracy (full > every ablation), and an FC layer is not a "
        "convolution in disguise: replacing FC3, or the whole block, by a 9x9 conv of similar cost loses accuracy.",
        "A 95% interval of (full - ablated) entirely below 0 at the largest budget; an interval spanning 0 leaves "
        "that part undecided.",
        "CIFAR-10, 100 epochs (RepMLP Table 1): full 91.11%; w/o LP 82.64 (-8.5), w/o GP 89.61 (-1.5), FC3 -> 9x9 "
        "conv 87.64 (-3.5), RepMLP -> 9x9 conv 87.29 (-3.8).",
        runs,
        _budget(p),
        comparisons,
        {label: (net, args) for label, args in {"full RepMLP": {}, **ABLATION}.items()},
        _curves(p, ["full RepMLP", *SWEPT]),
        "training epochs",
        notes=f"`{net}`: a 2x2 patch stem, then the paper's stage layout at {p.size // 2} and {p.size // 4} px; the "
        f"Global Perceptron acts in the first stage only (2x2 partitions of {p.size // 4} px).",
    )


_CONV_ROWS = ("RepMLP", "Wide ConvNet", "ConvNet")


def _repmlp_vs_convnet(p: _Plan) -> Experiment:
    runs = p.sweep("full RepMLP", "RepMLP") + p.sweep("Wide ConvNet", "Wide ConvNet") + p.sweep("ConvNet", "ConvNet")
    return Experiment(
        "repmlp_vs_convnet",
        "Pure-MLP RepMLP against a Wide ConvNet",
        "The pure-MLP RepMLP network, deployed as FC layers only, comes within 1 point of a Wide ConvNet (its layout "
        "with 3x3 convs and twice the channels) at fewer FLOPs.",
        "A 95% interval of (RepMLP - Wide ConvNet) entirely below -1 point at the largest budget.",
        "CIFAR-10 (RepMLP Table 1): 91.11% vs 91.99% (-0.88) at 52.8 vs 65.1 MFLOPs.",
        runs,
        _budget(p),
        _swept(p, "full RepMLP", "Wide ConvNet", "noninferior", 1.0) + _swept(p, "full RepMLP", "ConvNet"),
        {label: (p.sized(LAB_MODELS[label][0]), LAB_MODELS[label][1]) for label in _CONV_ROWS},
        _curves(p, ["full RepMLP", "Wide ConvNet", "ConvNet"]),
        "training epochs",
        notes="Latency: the deploy forms (RepMLP as FC layers only, the ConvNets with BatchNorm fused).",
    )


# RepMLP-ResNet in the paper's form: inside each stride-1 block of stages 2 and 3, a 3x3 conv narrows to C/2, the
# RepMLP block mixes at that width, a 3x3 conv widens back; parameters go up (the FC3 weights)
REPMLP_RESNET = {"width": 16, "repmlp_form": "inside", "repmlp_stages": (1, 2), "reductions": (1, 2, 2, 1)}
WIDER_RESNET = {"width": 23, "repmlp_stages": ()}  # a plain ResNet-18 widened to about the RepMLP-ResNet's size


def _repmlp_resnet(p: _Plan) -> Experiment:
    e = 20  # ResNets reach their plateau on 5 000 images sooner
    models = {
        "ResNet-18/4": LAB_MODELS["ResNet-18/4"][1],
        "RepMLP-ResNet-18/4": REPMLP_RESNET,
        "ResNet-18, widened to equal parameters": WIDER_RESNET,
    }
    runs = [r for label, args in models.items() for r in p.runs(label, "repmlp_resnet18_28", args, epochs=e)]
    return Experiment(
        "repmlp_resnet",
        "RepMLP inside a ResNet",
        "RepMLP blocks inside a ResNet's blocks add parameters and a little latency and raise accuracy; at equal "
        "parameters the RepMLP-ResNet is at least as accurate as a wider ResNet and faster.",
        "(RepMLP-ResNet - ResNet) with a 95% interval entirely below 0; or the widened ResNet beating it by more than "
        "half a point.",
        "ImageNet (RepMLP Table 4): RepMLP-Res50 78.55% vs ResNet-50 77.19% (+1.36) at 40.9 vs 25.5 M parameters and "
        "636 vs 689 img/s; ResNet-101 (44.5 M) also 78.55% at 421 img/s.",
        runs,
        _budget(p, f"{p.s.epochs_of(e)} epochs"),
        [
            Comparison("RepMLP-ResNet vs ResNet", "RepMLP-ResNet-18/4", "ResNet-18/4"),
            Comparison(
                "RepMLP-ResNet vs the widened ResNet",
                "RepMLP-ResNet-18/4",
                "ResNet-18, widened to equal parameters",
                "noninferior",
                0.5,
            ),
        ],
        {label: (p.sized("repmlp_resnet18_28"), args) for label, args in models.items()},
        notes="Widths 16-32-64-128 (a quarter of ResNet-18's); the RepMLP blocks work on 7x7 partitions of the 14 and "
        "7 px maps with kernels 1, 3, 5 in their Local Perceptron. Latency is that of the deploy forms.",
    )


# ---- ResMLP --------------------------------------------------------------------------------------------------

LRS = (3e-3, 1e-2, 3e-2, 1e-1)  # the learning-rate sweep, from above the default (2e-3) to where training diverges
# the rate whose comparison decides stability: 15x the default, high enough to strain either norm (at 0.1 both may
# diverge, and two runs at chance tie without saying anything)
STABILITY_LR = 3e-2


def _resmlp_norm(p: _Plan) -> Experiment:
    ln = {"norm": "layernorm"}
    runs = p.sweep("Affine", "ResMLP") + p.sweep("LayerNorm", "ResMLP", ln)
    e = p.s.sweep[len(p.s.sweep) // 2]  # the middle budget
    for lr in LRS:
        runs += p.runs(f"Affine, lr {lr:g}", "ResMLP", epochs=e, lr=lr)
        runs += p.runs(f"LayerNorm, lr {lr:g}", "ResMLP", ln, epochs=e, lr=lr)
    comparisons = _swept(p, "Affine", "LayerNorm", "noninferior", 0.5)
    comparisons += [
        Comparison(
            f"Affine vs LayerNorm at lr {lr:g}",
            f"Affine, lr {lr:g}",
            f"LayerNorm, lr {lr:g}",
            "noninferior",
            0.5,
            deciding=lr == STABILITY_LR,
        )
        for lr in LRS
    ]
    return Experiment(
        "resmlp_norm",
        "ResMLP: Affine against LayerNorm",
        "ResMLP's Affine layer (a per-channel scale and shift, no statistics) trains as well as LayerNorm, and as "
        "stably: up to the largest learning rate either survives it stays within half a point of LayerNorm.",
        "(Affine - LayerNorm) with a 95% interval entirely below -0.5 points, at the longest budget or at a large "
        "learning rate (Affine diverging where LayerNorm does not).",
        "ResMLP paper: Affine in place of LayerNorm gives comparable ImageNet accuracy (its ablation); no per-rate "
        "figure is reported.",
        runs,
        _budget(
            p,
            f"budget sweep {'/'.join(map(str, p.s.sweep))} epochs at lr 2e-3, and a learning-rate sweep "
            f"{', '.join(f'{lr:g}' for lr in LRS)} at {p.s.epochs_of(e)} epochs",
        ),
        comparisons,
        curves=[Curve(norm, tuple(f"{norm}, lr {lr:g}" for lr in LRS), LRS) for norm in ("Affine", "LayerNorm")],
        xlabel="peak learning rate",
        logx=True,
        notes="A run whose loss becomes NaN counts at chance accuracy (marked diverged).",
    )


TEACHER_EPOCHS = 8  # on all 55 000 training images: a teacher well ahead of a student trained on 5 000


def _resmlp_distill(p: _Plan) -> Experiment:
    s = p.s
    name, args = LAB_MODELS["ResNet-18/4"]
    teacher = LabRun("teacher", p.sized(name), 0, s.data, args, p.recipe(epochs=TEACHER_EPOCHS, subset=0))
    runs = p.sweep("ResMLP", "ResMLP")
    for mode in ("hard", "soft"):
        for r in p.sweep(f"ResMLP + {mode} distillation", "ResMLP", distill=mode, distill_alpha=0.5):
            runs.append(LabRun(r.label, r.model, r.seed, r.data, r.model_args, r.train, teacher=teacher))
    return Experiment(
        "resmlp_distill",
        "ResMLP with distillation from a convnet",
        "A ResMLP learns more from a convnet teacher's decisions (hard distillation, DeiT) or its soft outputs than "
        "from the labels alone.",
        "(distilled - plain) with a 95% interval entirely below 0 at the largest budget; the test needs a teacher at "
        "least 2 points better than the student (shown below the table).",
        "ImageNet (ResMLP Table 3): S12 76.6% -> 77.8% (+1.2), S24 79.4 -> 80.8 (+1.4), with a RegNetY-16GF teacher.",
        [*runs, teacher],
        _budget(p) + f"; teacher: ResNet-18/4 on all training images, {p.s.epochs_of(TEACHER_EPOCHS)} epochs",
        _swept(p, "ResMLP + hard distillation", "ResMLP") + _swept(p, "ResMLP + soft distillation", "ResMLP"),
        curves=_curves(p, ["ResMLP", "ResMLP + hard distillation", "ResMLP + soft distillation"]),
        xlabel="training epochs",
    )


def _resmlp_transfer(p: _Plan) -> Experiment:
    s = p.s
    if s.data != "fashion-mnist":
        return Experiment("resmlp_transfer", "ResMLP transfer", "", "", "", [], "Fashion-MNIST only")
    name, args = LAB_MODELS["ResMLP"]
    pre = LabRun(
        "pre-trained on classes 0-4",
        p.sized(name),
        0,
        "fashion-mnist-first5",
        args,
        p.recipe(epochs=15, subset=min(s.subset * 2, 20000) if s.subset else 0),
    )
    runs = [pre]
    comparisons = []
    pool = 25000  # classes 5-9 have 30 000 training images, 2 500 of them held out
    for frac, epochs in ((0.01, 100), (0.1, 30)):
        n = max(int(pool * frac), 32) if not s.quick else s.subset
        tag = f"{frac:.0%} of the labels"
        for seed in s.seeds:
            recipe = p.recipe(epochs=epochs, subset=n, val_size=2500 if not s.quick else s.val_size)
            new = (p.sized(name), seed, "fashion-mnist-last5", args, recipe)
            runs += [LabRun(f"fine-tuned, {tag}", *new, init=pre), LabRun(f"from scratch, {tag}", *new)]
        comparisons.append(Comparison(f"transfer vs scratch, {tag}", f"fine-tuned, {tag}", f"from scratch, {tag}"))
    return Experiment(
        "resmlp_transfer",
        "ResMLP transfer to new classes",
        "Features a ResMLP learned on some classes transfer: fine-tuned on new classes with few labels it beats the "
        "same model trained on those labels from scratch.",
        "(fine-tuned - scratch) with a 95% interval entirely below 0.",
        "ResMLP paper: S12 pre-trained on ImageNet transfers to CIFAR-10 at 98.1% and CIFAR-100 at 87.0%.",
        runs,
        "pre-training on Fashion-MNIST classes 0-4 (T-shirt ... Coat); fine-tuning (new head) or training from scratch "
        "on classes 5-9 (Sandal ... Ankle boot) with 1% and 10% of their labels; float32",
        comparisons,
    )


# ---- the three priors -----------------------------------------------------------------------------------------


def _permutation(p: _Plan) -> Experiment:
    s = p.s
    models = ("plain MLP", "MLP-Mixer", "ConvNet")
    runs = []
    for label in models:
        # no augmentation: a flip or shift of a permuted image is another, unrelated arrangement of its pixels
        runs += p.runs(f"{label} | original", label, aug=NO_AUG)
        runs += p.runs(f"{label} | permuted", label, data=f"{s.data}-permuted", aug=NO_AUG)
    return Experiment(
        "permutation",
        "Local prior: a fixed pixel permutation",
        "A plain MLP has no local prior, so one fixed permutation of the pixels costs it nothing, while a ConvNet, "
        "which assumes neighbouring pixels relate, loses clearly more.",
        "The plain MLP's change outside +-1 point, or the ConvNet losing no more than the plain MLP.",
        "The MLP's invariance is exact: a permutation of its inputs is undone by the same permutation of its first "
        "layer's columns (tests/test_tasks.py checks it); what remains is training noise.",
        runs,
        _budget(p, f"{s.epochs_of(s.epochs)} epochs, no augmentation"),
        [
            Comparison(
                "plain MLP: permuted vs original", "plain MLP | permuted", "plain MLP | original", "equivalent", 1.0
            ),
            Comparison(
                "ConvNet loses more than the plain MLP",
                "plain MLP | permuted",
                "ConvNet | permuted",
                minus=("plain MLP | original", "ConvNet | original"),
            ),
        ],
    )


def _patch_shuffle(p: _Plan) -> Experiment:
    s = p.s
    models = ("MLP-Mixer", "ConvNet")
    runs = []
    for label in models:
        runs += p.runs(f"{label} | original", label, aug=NO_AUG)
        runs += p.runs(f"{label} | patch + pixel shuffle", label, data=f"{s.data}-patchshuffle", aug=NO_AUG)
        runs += p.runs(f"{label} | permuted", label, data=f"{s.data}-permuted", aug=NO_AUG)
    return Experiment(
        "patch_shuffle",
        "Mixer's invariance to a fixed patch and pixel shuffle",
        "Mixer's token mixing is dense over patches and its stem dense within a patch, so one fixed shuffle of the "
        "4x4 patches plus one fixed shuffle of the pixels inside every patch leaves what it can learn unchanged; a "
        "ConvNet loses accuracy. A global pixel permutation breaks the patches and hurts Mixer too.",
        "Mixer's change under the patch + pixel shuffle outside +-1 point, or the ConvNet not losing more.",
        "MLP-Mixer paper (Sec. 3.4, Fig. 4): Mixer's accuracy is unchanged under patch + pixel shuffling and drops "
        "under global shuffling, while a ResNet drops under both.",
        runs,
        _budget(p, f"{s.epochs_of(s.epochs)} epochs, no augmentation"),
        [
            Comparison(
                "Mixer: patch + pixel shuffle vs original",
                "MLP-Mixer | patch + pixel shuffle",
                "MLP-Mixer | original",
                "equivalent",
                1.0,
            ),
            Comparison(
                "ConvNet loses more than Mixer under the shuffle",
                "MLP-Mixer | patch + pixel shuffle",
                "ConvNet | patch + pixel shuffle",
                minus=("MLP-Mixer | original", "ConvNet | original"),
            ),
            Comparison("global permutation hurts Mixer", "MLP-Mixer | original", "MLP-Mixer | permuted"),
        ],
    )


def _position_embedding(p: _Plan) -> Experiment:
    off, on = {"pos_embed": False}, {"pos_embed": True}
    runs = []
    for label in ("ViT", "External Attention", "MLP-Mixer"):
        runs += p.runs(f"{label} with position embedding", label, on)
        runs += p.runs(f"{label} without", label, off)
    return Experiment(
        "position_embedding",
        "Position embeddings: needed by attention, not by token-mixing MLPs",
        "Self-attention and external attention are blind to token order, so removing the position embedding costs "
        "them accuracy; Mixer's token-mixing weights are tied to positions, so adding one changes nothing.",
        "ViT or External Attention not losing accuracy without it (interval of with - without below or spanning 0), "
        "or Mixer's change outside +-0.5 points.",
        "MLP-Mixer paper: Mixer needs no position embedding. (The ViT paper reports a drop of a few points without "
        "one; its figure is not among our references.)",
        runs,
        _budget(p, f"{p.s.epochs_of(p.s.epochs)} epochs"),
        [
            Comparison("ViT: with vs without", "ViT with position embedding", "ViT without"),
            Comparison(
                "External Attention: with vs without",
                "External Attention with position embedding",
                "External Attention without",
            ),
            Comparison(
                "Mixer: with vs without", "MLP-Mixer with position embedding", "MLP-Mixer without", "equivalent", 0.5
            ),
        ],
        notes="External attention attends per token to shared memories: without a position embedding the model is a "
        "bag of patches (only the average pool combines them).",
    )


PROBE_MODELS = ("plain MLP", "MLP-Mixer", "local CNN (5x5 field)", "ResNet-18/4")


def _probe_epochs(n: int) -> int:
    """Epochs for ``n`` training images: many passes over few images, at least 20 (a plateau on every size)."""
    return max(20, min(100, 30000 // n))


def _probe(p: _Plan, key: str, data: str, title: str, hypothesis: str, refutation: str, note: str) -> Experiment:
    s = p.s
    runs, curves = [], []
    for label in PROBE_MODELS:
        labels = []
        for n in s.probe_sizes:
            labels.append(f"{label} | {n} images")
            name, args = LAB_MODELS[label]
            recipe = p.recipe(epochs=_probe_epochs(n), subset=n, aug=NO_AUG, val_size=1000 if not s.quick else 64)
            runs += [LabRun(labels[-1], name, seed, data, args, recipe) for seed in s.seeds]
        curves.append(Curve(label, tuple(labels), tuple(s.probe_sizes)))
    small, large = s.probe_sizes[0], s.probe_sizes[-1]
    comparisons = [
        Comparison(
            f"plain MLP vs ResNet at {n} images",
            f"plain MLP | {n} images",
            f"ResNet-18/4 | {n} images",
            deciding=n == small,
        )
        for n in s.probe_sizes
    ]
    comparisons += [
        Comparison(
            f"MLP-Mixer vs local CNN at {large} images",
            f"MLP-Mixer | {large} images",
            f"local CNN (5x5 field) | {large} images",
        ),
    ]
    return Experiment(
        key,
        title,
        hypothesis,
        refutation,
        "A design probe of this lab, no paper figure: the papers argue FC layers hold position and global reach.",
        runs,
        f"{', '.join(map(str, s.probe_sizes))} of 12 000 synthetic training images (1 000 held out), "
        f"{', '.join(str(s.epochs_of(_probe_epochs(n))) for n in s.probe_sizes)} epochs, no augmentation, float32",
        comparisons,
        curves=curves,
        xlabel="training images",
        logx=True,
        notes="Both CNNs end in global average pooling; the local CNN's two 3x3 layers see 5x5 windows, the last map "
        "of ResNet-18/4 (CIFAR stem, no max-pool) sees the whole image and its zero-padded border, so it can solve the "
        "task too: the question is how many examples each needs. " + note,
    )


def _position(p: _Plan) -> Experiment:
    return _probe(
        p,
        "position",
        "position-task",
        "Positional prior: which quadrant holds the shape",
        "FC layers know absolute position by construction, so from few examples a plain MLP learns which quadrant "
        "holds a shape better than a CNN that must infer position from its padding.",
        "At the fewest images, (plain MLP - ResNet) with a 95% interval entirely below 0.",
        f"The shape keeps {MARGIN} pixels from the border.",
    )


def _global(p: _Plan) -> Experiment:
    return _probe(
        p,
        "global",
        "global-task",
        "Global capacity: do two far-apart patches match",
        "One FC layer relates regions 20 pixels apart directly; a CNN reaches them only through depth, so from few "
        "examples the MLP learns the relation better.",
        "At the fewest images, (plain MLP - ResNet) with a 95% interval entirely below 0.",
        "Every image holds the same multiset of patches, so pooled features alone carry no information.",
    )


TRANSLATION_MODELS = {  # on the 36-px canvas: RepMLP's partitions must divide its 18 and 9 px maps
    "plain MLP": {},
    "MLP-Mixer": {},
    "RepMLP": {"partition": 9},
    "ConvNet": {},
    "ResNet-18/4": {},
}


TRANSLATION_EPOCHS = 20


def _translation(p: _Plan) -> Experiment:
    s = p.s
    runs = []
    for label, extra in TRANSLATION_MODELS.items():
        canvas = {**extra, "img_size": p.size + 8}
        for r in p.runs(label, label, canvas, data=f"{s.data}-canvas", aug=NO_AUG, epochs=TRANSLATION_EPOCHS):
            runs.append(LabRun(r.label, r.model, r.seed, r.data, r.model_args, r.train, evals=("shift",)))
    drop = "rel_drop"
    return Experiment(
        "translation",
        "Translation: accuracy under test-time shifts",
        "Convolutions with pooling are nearly invariant to small shifts; FC token mixing is not: shifting a test "
        "image costs an MLP a larger share of what it learned than a ConvNet.",
        "The relative drop at 4 px of an MLP no larger than the ConvNet's (interval of MLP - ConvNet below or "
        "spanning 0).",
        "The papers train with augmentation that teaches some invariance; none gives a shift curve.",
        runs,
        _budget(
            p,
            f"{s.epochs_of(TRANSLATION_EPOCHS)} epochs without shift augmentation, on {p.size + 8}-px canvases (each "
            "image zero-padded by 4 px, so a shift of up to 4 px never cuts the object)",
        ),
        [
            Comparison("plain MLP loses more than the ConvNet", "plain MLP", "ConvNet", metric=drop),
            Comparison("MLP-Mixer loses more than the ConvNet", "MLP-Mixer", "ConvNet", metric=drop),
            Comparison("RepMLP loses more than the ConvNet", "RepMLP", "ConvNet", metric=drop),
        ],
        metric=drop,
        notes="Relative drop at 4 px = (top-1 at 0 - top-1 at 4 px) / (top-1 at 0 - chance): the share of what the "
        "model learned that the shift undoes (mean over up, down, left, right).",
    )


# ---- data, resolution --------------------------------------------------------------------------------------------

DATA_SIZE_MODELS = ("plain MLP", "MLP-Mixer", "ResMLP", "RepMLP", "ConvNet")


def _data_epochs(n: int, base: int) -> int:
    """Epochs for ``n`` images: the lab's budget at its subset size, more passes below it, fewer above."""
    return max(15, min(40, round(base * 5000 / n)))


def _data_size(p: _Plan) -> Experiment:
    s = p.s
    runs, curves = [], []
    for label in DATA_SIZE_MODELS:
        labels = [f"{label} | {n} images" for n in s.data_sizes]
        for n, row in zip(s.data_sizes, labels, strict=True):
            runs += p.runs(row, label, epochs=_data_epochs(n, s.epochs), subset=n)
        curves.append(Curve(label, tuple(labels), tuple(s.data_sizes)))
    small, large = s.data_sizes[0], s.data_sizes[-1]
    comparisons = [
        Comparison(
            f"the ConvNet's lead over {label} shrinks with data",
            f"ConvNet | {small} images",
            f"{label} | {small} images",
            minus=(f"ConvNet | {large} images", f"{label} | {large} images"),
        )
        for label in DATA_SIZE_MODELS
        if label != "ConvNet"
    ]
    return Experiment(
        "data_size",
        "Data size: MLPs need more data",
        "With less inductive bias, MLPs gain more from more data: the ConvNet's lead over each MLP is larger at "
        f"{small} training images than at {large}.",
        "(lead at the fewest images - lead at the most) with a 95% interval entirely below 0.",
        "MLP-Mixer paper: on ImageNet-1k alone Mixer trails convnets, with JFT-300M pre-training it matches them; "
        "ResMLP reports the same trend.",
        runs,
        f"{', '.join(map(str, s.data_sizes))} training images, "
        f"{', '.join(str(s.epochs_of(_data_epochs(n, s.epochs))) for n in s.data_sizes)} epochs, the lab recipe, "
        "float32",
        comparisons,
        curves=curves,
        xlabel="training images",
        logx=True,
        notes="Every row reports its last-epoch train top-1 and plateau gain: the gaps compare models that fit their "
        "training images.",
    )


def _resolution(p: _Plan) -> Experiment:
    s, size = p.s, p.size
    runs, comparisons = [], []
    base_epochs, tune_epochs = 10, 5
    for label in ("MLP-Mixer", "ResMLP"):
        name, args = LAB_MODELS[label]
        for seed in s.seeds:
            base = LabRun(
                f"{label} at {size} px",
                p.sized(name),
                seed,
                s.data,
                args,
                p.recipe(epochs=base_epochs),
                evals=("expanded",),
            )
            tuned = p.recipe(epochs=tune_epochs, img_size=2 * size)
            scratch = p.recipe(epochs=base_epochs + tune_epochs, img_size=2 * size)
            runs += [
                base,
                LabRun(
                    f"{label}: {size} px, then fine-tuned at {2 * size} px",
                    p.sized(name),
                    seed,
                    s.data,
                    args,
                    tuned,
                    init=base,
                ),
                LabRun(f"{label}: from scratch at {2 * size} px", p.sized(name), seed, s.data, args, scratch),
            ]
        comparisons.append(
            Comparison(
                f"{label}: transfer vs scratch at equal epochs",
                f"{label}: {size} px, then fine-tuned at {2 * size} px",
                f"{label}: from scratch at {2 * size} px",
                "noninferior",
                0.5,
            )
        )
    return Experiment(
        "resolution",
        "Fixed input size and resolution transfer",
        "Token-mixing weights are tied to the number of patches, yet a model trained at one size transfers to a "
        "K-times larger input: the block-diagonal expansion computes, before any fine-tuning, what the small model "
        "computes on each tile, and fine-tuning it is worth as much as training at the large size for as many epochs.",
        "(transferred - scratch) at equal total epochs with a 95% interval entirely below -0.5 points.",
        "MLP-Mixer paper (appendix C): fine-tuning at 448 px from 224 px with the block-diagonal initialisation; "
        "Mixer-L/16 reaches 84.15% at 448 px.",
        runs,
        f"{s.epochs_of(base_epochs)} epochs at {size} px + {s.epochs_of(tune_epochs)} at {2 * size} px, against "
        f"{s.epochs_of(base_epochs) + s.epochs_of(tune_epochs)} epochs at {2 * size} px (images upscaled), "
        f"{s.subset or 'all'} training images, float32",
        comparisons,
        notes=f"The expanded model's test top-1 at {2 * size} px before any fine-tuning is the `expanded` column.",
    )


EXPERIMENTS: tuple[Callable[[_Plan], Experiment], ...] = (
    _repmlp_ablation,
    _repmlp_vs_convnet,
    _repmlp_resnet,
    _resmlp_norm,
    _resmlp_distill,
    _resmlp_transfer,
    _permutation,
    _patch_shuffle,
    _position_embedding,
    _position,
    _global,
    _translation,
    _data_size,
    _resolution,
)


def plan(s: Settings) -> list[Experiment]:
    """Every experiment of the lab with its runs, for the budgets in ``s``.

    Written for Fashion-MNIST's 28-px models; on CIFAR the ``_28`` models become their ``_32`` twins and every
    run trains on ``s.data``, except the synthetic position and global probes, which are the same everywhere.
    """
    p = _Plan(s, check_data(s.data))
    return [e for e in (experiment(p) for experiment in EXPERIMENTS) if e.runs]
