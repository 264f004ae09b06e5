"""Data and resolution: MLPs' need for data, and transfer to a larger input size."""

from __future__ import annotations

from .context import LAB_MODELS, PlanContext, size_curve
from .spec import Comparison, Experiment, LabRun

DATA_SIZE_MODELS = ("plain MLP", "MLP-Mixer", "ResMLP", "RepMLP", "ConvNet")


def _data_epochs(n: int, base: int) -> int:
    """Epochs for ``n`` images: the lab's budget at its subset size, more passes below it, fewer above."""
    return max(15, min(40, round(base * 5000 / n)))


def data_size(p: PlanContext) -> Experiment:
    s = p.s
    runs, curves = [], []
    for label in DATA_SIZE_MODELS:

        def runs_at(row: str, n: int, label=label) -> list:
            return p.runs(row, label, epochs=_data_epochs(n, s.epochs), subset=n)

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


def resolution(p: PlanContext) -> Experiment:
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
        notes=f"The expanded model's test top-1 at {2 * size} px before any fine-tuning is the `expanded` column. "
        f"The expansion applies the {size}-px model to each quadrant of the {2 * size}-px image (a test checks it): "
        "on an upscaled image each quadrant holds a quarter of the object, so near-chance accuracy before fine-tuning "
        "is what the construction predicts, not a fault of it.",
    )
