"""The ResMLP paper's claims: Affine against LayerNorm (accuracy and stability), distillation from a convnet, and
transfer to new classes."""

from __future__ import annotations

from .context import LAB_MODELS, PlanContext, budget, curves, swept
from .spec import Comparison, Curve, Experiment, LabRun

LRS = (3e-3, 1e-2, 3e-2, 1e-1)  # the learning-rate sweep, from above the default (2e-3) to where training diverges


def resmlp_norm(p: PlanContext) -> Experiment:
    ln = "ResMLP, LayerNorm"
    runs = p.sweep("Affine", "ResMLP") + p.sweep("LayerNorm", ln)
    e = p.s.sweep[len(p.s.sweep) // 2]  # the middle budget
    for lr in LRS:
        runs += p.runs(f"Affine, lr {lr:g}", "ResMLP", epochs=e, lr=lr)
        runs += p.runs(f"LayerNorm, lr {lr:g}", ln, epochs=e, lr=lr)
    comparisons = swept(p, "Affine", "LayerNorm", "noninferior", 0.5)
    comparisons += [
        Comparison(
            f"Affine vs LayerNorm at lr {lr:g}",
            f"Affine, lr {lr:g}",
            f"LayerNorm, lr {lr:g}",
            "noninferior",
            0.5,
        )
        for lr in LRS  # each rate its verdict: the claim reaches up to the largest rate either norm survives
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
        budget(
            p,
            f"budget sweep {'/'.join(map(str, p.s.sweep))} epochs at lr 2e-3, and a learning-rate sweep "
            f"{', '.join(f'{lr:g}' for lr in LRS)} at {p.s.epochs_of(e)} epochs",
        ),
        comparisons,
        curves=[Curve(norm, tuple(f"{norm}, lr {lr:g}" for lr in LRS), LRS) for norm in ("Affine", "LayerNorm")],
        xlabel="peak learning rate",
        logx=True,
        notes="A run whose loss becomes NaN counts at chance accuracy (marked diverged). Every rate of the sweep has "
        "its own verdict: stability is claimed up to the largest rate at which either norm still trains, so the "
        "claim stands only if no rate up to that one is refuted.",
    )


TEACHER_EPOCHS = 8  # on all 55 000 training images: a teacher well ahead of a student trained on 5 000


def resmlp_distill(p: PlanContext) -> Experiment:
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
        budget(p) + f"; teacher: ResNet-18/4 on all training images, {p.s.epochs_of(TEACHER_EPOCHS)} epochs",
        swept(p, "ResMLP + hard distillation", "ResMLP") + swept(p, "ResMLP + soft distillation", "ResMLP"),
        curves=curves(p, ["ResMLP", "ResMLP + hard distillation", "ResMLP + soft distillation"]),
        xlabel="training epochs",
    )


def resmlp_transfer(p: PlanContext) -> Experiment:
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
