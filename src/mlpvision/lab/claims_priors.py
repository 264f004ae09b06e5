"""The three priors, one probe each: a pixel permutation and Mixer's patch shuffle (local prior), position
embeddings and the quadrant task (positional prior), the far-apart patches task (global capacity), and translation."""

from __future__ import annotations

from ..data.tasks import MARGIN
from .context import LAB_MODELS, NO_AUG, PlanContext, budget, size_curve
from .spec import Comparison, Experiment, LabRun


def permutation(p: PlanContext) -> Experiment:
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
        budget(p, f"{s.epochs_of(s.epochs)} epochs, no augmentation"),
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


def patch_shuffle(p: PlanContext) -> Experiment:
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
        budget(p, f"{s.epochs_of(s.epochs)} epochs, no augmentation"),
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


def position_embedding(p: PlanContext) -> Experiment:
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
        budget(p, f"{p.s.epochs_of(p.s.epochs)} epochs"),
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


FEW_MODELS = ("plain MLP", "ResNet-18/4")  # the pair the claim compares (the local CNN is at chance at every size)


def _probe(
    p: PlanContext,
    key: str,
    data: str,
    title: str,
    hypothesis: str,
    refutation: str,
    note: str,
    few: bool = False,
) -> Experiment:
    """A synthetic probe's sample-efficiency curve: ``s.probe_sizes`` training images per model, or with ``few``
    the sizes below them (``s.few_sizes``, the plain MLP and the ResNet alone), as an experiment of its own."""
    s = p.s
    sizes, models = (s.few_sizes, FEW_MODELS) if few else (s.probe_sizes, PROBE_MODELS)
    runs, curves = [], []
    for label in models:
        name, args = LAB_MODELS[label]

        def runs_at(row: str, n: int, name=name, args=args) -> list[LabRun]:
            batch = min(s.batch_size, n)  # fewer images than a batch: one full-batch step per epoch
            recipe = p.recipe(
                epochs=_probe_epochs(n), subset=n, aug=NO_AUG, val_size=1000 if not s.quick else 64, batch_size=batch
            )
            return [LabRun(row, name, seed, data, args, recipe) for seed in s.seeds]

        model_runs, curve = size_curve(label, sizes, runs_at)
        runs += model_runs
        curves.append(curve)
    small, large = sizes[0], sizes[-1]
    comparisons = [
        Comparison(
            f"plain MLP vs ResNet at {n} images",
            f"plain MLP | {n} images",
            f"ResNet-18/4 | {n} images",
            deciding=n == small,
        )
        for n in sizes
    ]
    if not few:
        comparisons.append(
            Comparison(
                f"MLP-Mixer vs local CNN at {large} images",
                f"MLP-Mixer | {large} images",
                f"local CNN (5x5 field) | {large} images",
            )
        )
    else:
        note += (
            f" The curve of the section above continued below {s.probe_sizes[0]} images, where the capable models can "
            "still differ; its own section, as its runs came later."
        )
    return Experiment(
        key + ("_few" if few else ""),
        title + (", from very few examples" if few else ""),
        hypothesis,
        refutation,
        "A design probe of this lab, no paper figure: the papers argue FC layers hold position and global reach.",
        runs,
        f"{', '.join(map(str, sizes))} of 12 000 synthetic training images (1 000 held out), "
        f"{', '.join(str(s.epochs_of(_probe_epochs(n))) for n in sizes)} epochs, no augmentation, float32",
        comparisons,
        curves=curves,
        xlabel="training images",
        logx=True,
        notes="Both CNNs end in global average pooling; the local CNN's two 3x3 layers see 5x5 windows, the last map "
        "of ResNet-18/4 (CIFAR stem, no max-pool) sees the whole image and its zero-padded border, so it can solve the "
        "task too: the question is how many examples each needs. " + note,
    )


def position(p: PlanContext, few: bool = False) -> Experiment:
    return _probe(
        p,
        "position",
        "position-task",
        "Positional prior: which quadrant holds the shape",
        "FC layers know absolute position by construction, so from few examples a plain MLP learns which quadrant "
        "holds a shape better than a CNN that must infer position from its padding.",
        "At the fewest images, (plain MLP - ResNet) with a 95% interval entirely below 0.",
        f"The shape keeps {MARGIN} pixels from the border.",
        few,
    )


def position_few(p: PlanContext) -> Experiment:
    return position(p, few=True)


def global_(p: PlanContext, few: bool = False) -> Experiment:
    return _probe(
        p,
        "global",
        "global-task",
        "Global capacity: do two far-apart patches match",
        "One FC layer relates regions 20 pixels apart directly; a CNN reaches them only through depth, so from few "
        "examples the MLP learns the relation better.",
        "At the fewest images, (plain MLP - ResNet) with a 95% interval entirely below 0.",
        "Every image holds the same multiset of patches, so pooled features alone carry no information.",
        few,
    )


def global_few(p: PlanContext) -> Experiment:
    return global_(p, few=True)


TRANSLATION_MODELS = {  # on the 36-px canvas: RepMLP's partitions must divide its 18 and 9 px maps
    "plain MLP": {},
    "MLP-Mixer": {},
    "RepMLP": {"partition": 9},
    "ConvNet": {},
    "ResNet-18/4": {},
}


TRANSLATION_EPOCHS = 20


def translation(p: PlanContext) -> Experiment:
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
        budget(
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
