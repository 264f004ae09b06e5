"""Data and resolution: MLPs' need for data (at equal optimizer steps), and transfer to a larger input size."""

from __future__ import annotations

import math

from ..train.finetune import wider_token_mlp
from .context import AUG, FINE_TUNING, PlanContext, size_curve
from .spec import Comparison, Experiment, LabRun

DATA_SIZE_MODELS = ("plain MLP", "MLP-Mixer", "ResMLP", "ViT", "ConvNet")


def equal_step_recipe(p: PlanContext, n: int) -> dict:
    """The recipe of a run on ``n`` training images with as many optimizer steps (and warm-up steps) as the lab's
    budget on its subset: B epochs of ``s.subset`` images. At ``s.subset`` images it is the lab recipe itself."""
    s = p.s
    spe = max(1, min(n, s.subset) // s.batch_size) if s.quick else max(1, n // s.batch_size)
    base = max(1, s.subset // s.batch_size)
    steps = s.epochs_of(s.epochs) * base
    epochs = math.ceil(steps / spe)
    recipe: dict = {"subset": n}
    if epochs * spe != steps:
        recipe["max_steps"] = steps
    if spe != base:
        recipe["warmup_epochs"] = round(base / spe, 4)  # one epoch of the subset, in steps
    recipe["val_size"] = s.val_size
    if epochs > s.epochs and not s.quick:  # validate about as often as a run of the lab's budget
        recipe["val_every"] = -(-epochs // s.epochs)
    recipe["epochs"] = epochs  # already at this mode's scale (which leaves an epoch count of 1 or more unchanged)
    return recipe


def data_size(p: PlanContext) -> Experiment:
    s = p.s
    runs, curves = [], []
    for label in DATA_SIZE_MODELS:

        def runs_at(row: str, n: int, label=label) -> list[LabRun]:
            return p.runs(row, label, **equal_step_recipe(p, n))

        model_runs, curve = size_curve(label, s.data_sizes, runs_at)
        runs += model_runs
        curves.append(curve)
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
    steps = s.epochs_of(s.epochs) * max(1, s.subset // s.batch_size)
    return Experiment(
        key="data_size",
        title="Data size: MLPs (and ViT) need more data",
        hypothesis="With less inductive bias, MLPs and ViT gain more from more data at the same compute: the "
        f"ConvNet's lead over each is larger at {small} training images than at {large}, at an equal number of "
        "optimizer steps.",
        refutation="(lead at the fewest images - lead at the most) with a 95% interval entirely below 0.",
        paper="MLP-Mixer paper: on ImageNet-1k alone Mixer trails convnets, with JFT-300M pre-training it matches "
        "them; ResMLP reports the same trend; the ViT paper reports that ViT needs large data sets.",
        runs=runs,
        budget=f"{', '.join(map(str, s.data_sizes))} training images, each run {steps} optimizer steps of batch "
        f"{s.batch_size} (the lab's budget at {s.subset} images) with the warm-up in steps too, the lab recipe at each "
        "family's tuned rate, float32",
        comparisons=comparisons,
        curves=curves,
        xlabel="training images (equal optimizer steps)",
        logx=True,
        columns=("train_top1",),
        notes="Equal steps: a run on fewer images makes more passes over them. Its train top-1 column is the last "
        "epoch's (augmented) accuracy, to show which models fit their training images. A 'lead' is the ConvNet's "
        "top-1 minus the model's, so it is negative where the model is ahead: a positive difference says the model "
        "gains more from the extra images than the ConvNet, whichever is ahead. Every model trains at its family's "
        f"rate, tuned on {p.s.subset} images, at every size (a limit: the best rate may move with the data).",
    )


RESOLUTION_BASE, RESOLUTION_TUNE = 10, 5  # epochs at the small size, then at twice the size


def _ft_family(label: str, size: int) -> str:
    return f"{label}, fine-tuned at {2 * size} px"


def _resolution_tuning(label: str):
    """The fine-tuning family's run: the tuning seed's small-size model (at its family's rate), expanded and
    fine-tuned at twice the size at ``lr``."""

    def build(p: PlanContext):
        size = p.size

        def make(lr: float, seed: int, rates) -> LabRun | None:
            if label not in rates:
                return None
            base = p.runs(f"{label} at {size} px", label, seeds=(seed,), epochs=RESOLUTION_BASE)[0]
            base = base.but(train={**base.train, "lr": rates[label]})
            tuned = p.runs(f"{_ft_family(label, size)} | lr {lr:g}", label, seeds=(seed,), epochs=RESOLUTION_TUNE,
                           img_size=2 * size)[0]  # fmt: skip
            return tuned.but(train={**tuned.train, "lr": lr}, init=base)

        return make

    return build


for _label in ("MLP-Mixer", "ResMLP"):
    FINE_TUNING[_ft_family(_label, 28)] = (_label, _resolution_tuning(_label))


def resolution(p: PlanContext) -> Experiment:
    """As first registered; replaced before its runs by :func:`resolution_corrected` (never trained)."""
    return _resolution(p, corrected=False)


def resolution_corrected(p: PlanContext) -> Experiment:
    """The resolution section with a scratch Mixer as wide as the expanded one, and the crop scaled with the image
    (a correction registered before any resolution run)."""
    return _resolution(p, corrected=True)


def _resolution(p: PlanContext, corrected: bool) -> Experiment:
    s, size = p.s, p.size
    runs, comparisons = [], []
    # at twice the size, the crop's padding doubles too: the same shift relative to the object
    large = {"img_size": 2 * size} | ({"aug": {**AUG, "crop_padding": 2 * AUG["crop_padding"]}} if corrected else {})
    for label in ("MLP-Mixer", "ResMLP"):
        family = _ft_family(label, 28)  # the families are named for Fashion-MNIST's 28 px; on CIFAR: 32 -> 64
        _, args = p.model(label)
        # the scratch model is the expanded model's architecture: a Mixer's token MLP is K^2 times wider
        wide = (
            {"token_mlp_dim": wider_token_mlp(args["token_mlp_dim"], 2)} if corrected and label == "MLP-Mixer" else None
        )
        for base in p.runs(f"{label} at {size} px", label, seeds=s.more_seeds, epochs=RESOLUTION_BASE):
            base = base.but(evals=("expanded",))
            tuned = p.runs(f"{label}: {size} px, then fine-tuned at {2 * size} px", label, seeds=(base.seed,),
                           epochs=RESOLUTION_TUNE, family=family, **large)[0]  # fmt: skip
            scratch = p.runs(f"{label}: from scratch at {2 * size} px", label, wide, seeds=(base.seed,),
                             epochs=RESOLUTION_BASE + RESOLUTION_TUNE, **large)[0]  # fmt: skip
            runs += [base, tuned.but(init=base), scratch]
        comparisons.append(
            Comparison(
                f"{label}: transfer vs scratch at equal epochs",
                f"{label}: {size} px, then fine-tuned at {2 * size} px",
                f"{label}: from scratch at {2 * size} px",
                "noninferior",
                0.5,
                reason="the expansion is offered as a way to reach a larger input for the same epochs; if it ended "
                "more than half a point (about 4% of the errors) below training at that size from the start, "
                "training there would be the better use of the epochs",
            )
        )
    correction = (
        " The scratch Mixer has the expanded Mixer's token-MLP width (K^2 times the small model's, K = 2), so both "
        f"rows train the same architecture; they still differ in how they start (the {s.epochs_of(RESOLUTION_BASE)} "
        f"epochs at {size} px), in their rates and in their schedules. Both rows at {2 * size} px crop with twice "
        "the padding. These two points correct the "
        "registered design before any of its runs (see the plan); the fine-tuning family's rate was tuned with the "
        "smaller padding and is not tuned again, nor is the scratch Mixer's (its family's, tuned on the narrower "
        "model)."
        if corrected
        else ""
    )
    return Experiment(
        key="resolution_corrected" if corrected else "resolution",
        title="Fixed input size and resolution transfer" + (", corrected before its runs" if corrected else ""),
        hypothesis="Token-mixing weights are tied to the number of patches, yet a model trained at one size transfers "
        "to a K-times larger input: the block-diagonal expansion computes, before any fine-tuning, what the small "
        "model computes on each tile, and fine-tuning it is worth as much as training at the large size for as many "
        "epochs.",
        refutation="(transferred - scratch) at equal total epochs with a 95% interval entirely below -0.5 points.",
        paper="MLP-Mixer paper (appendix C): fine-tuning at 448 px from 224 px with the block-diagonal "
        "initialisation; Mixer-L/16 reaches 84.15% at 448 px.",
        runs=runs,
        budget=f"{s.epochs_of(RESOLUTION_BASE)} epochs at {size} px + {s.epochs_of(RESOLUTION_TUNE)} at {2 * size} "
        f"px (the fine-tuning family's tuned rate), against {s.epochs_of(RESOLUTION_BASE + RESOLUTION_TUNE)} epochs "
        f"at {2 * size} px (images upscaled; the family's rate tuned at {size} px), {s.subset or 'all'} training "
        f"images, {len(s.more_seeds)} seeds, float32",
        comparisons=comparisons,
        columns=("expanded_top1",),
        checks=("expansion_tiles", "expansion_tiles_resmlp"),
        notes=f"The expanded model's test top-1 at {2 * size} px before any fine-tuning is the 'expanded, before "
        "fine-tuning' column. "
        f"The expansion applies the {size}-px model to each quadrant of the {2 * size}-px image (the checks): "
        "on an upscaled image each quadrant holds a quarter of the object, so the expanded model is not expected to "
        "keep the small model's accuracy before fine-tuning; fine-tuning is what the comparison measures." + correction,
    )
