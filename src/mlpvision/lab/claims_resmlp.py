"""The ResMLP paper's claims: Affine against LayerNorm (accuracy and stability), distillation from a convnet,
transfer to new classes, and its control of over-fitting."""

from __future__ import annotations

from .context import PlanContext, at_half, budget, budget_pairs, size_curve
from .spec import Comparison, Curve, Experiment, LabRun

LRS = (3e-3, 1e-2, 3e-2, 1e-1)  # the stability sweep of lab v2 (10 epochs, 3 seeds), kept as evidence

NORM_MARGIN = (
    "the paper calls the two 'comparable' without a figure; half a point is below the seed-to-seed spread of a "
    "single run here (about 0.5-1 point), so a smaller gap could not be told apart from noise anyway"
)


def resmlp_norm(p: PlanContext) -> Experiment:
    runs = p.budgeted("Affine, tuned rate", "ResMLP") + p.budgeted("LayerNorm, tuned rate", "ResMLP, LayerNorm")
    e = 10  # the sweep's budget
    for lr in LRS:
        runs += p.runs(f"Affine, lr {lr:g}", "ResMLP", epochs=e, lr=lr)
        runs += p.runs(f"LayerNorm, lr {lr:g}", "ResMLP, LayerNorm", epochs=e, lr=lr)
    best = Comparison(
        "Affine vs LayerNorm, each at its tuned rate",
        "Affine, tuned rate",
        "LayerNorm, tuned rate",
        "noninferior",
        0.5,
        reason=NORM_MARGIN,
    )
    per_rate = [
        Comparison(
            f"Affine vs LayerNorm at lr {lr:g}",
            f"Affine, lr {lr:g}",
            f"LayerNorm, lr {lr:g}",
            "noninferior",
            0.5,
            reason=NORM_MARGIN,
            exploratory="the per-rate rule was set in lab v2 after its first results",
        )
        for lr in LRS
    ]
    return Experiment(
        key="resmlp_norm",
        title="ResMLP: Affine against LayerNorm",
        hypothesis="ResMLP's Affine layer (a per-channel scale and shift, no statistics) trains as well as "
        "LayerNorm: each at its own tuned rate, Affine is at most half a point behind.",
        refutation="(Affine - LayerNorm) at the tuned rates with a 95% interval entirely below -0.5 points.",
        paper="ResMLP paper: Affine in place of LayerNorm gives comparable ImageNet accuracy (its ablation); no "
        "per-rate figure is reported.",
        runs=runs,
        budget=budget(p) + f"; the stability sweep at {p.s.epochs_of(e)} epochs, rates {', '.join(map(str, LRS))}",
        comparisons=[best, at_half(best), *per_rate],
        curves=[Curve(norm, tuple(f"{norm}, lr {lr:g}" for lr in LRS), LRS) for norm in ("Affine", "LayerNorm")],
        xlabel="peak learning rate (stability sweep)",
        logx=True,
        budget_pairs=budget_pairs(runs),
        notes="The sweep (lab v2's runs, reused) is the stability evidence: a run whose loss becomes NaN counts at "
        "chance accuracy (marked diverged). Its per-rate verdicts are exploratory (their rule came after results).",
    )


TEACHER_EPOCHS = 8  # on all 55 000 training images: a teacher well ahead of a student trained on 5 000


def resmlp_distill(p: PlanContext) -> Experiment:
    s = p.s
    teacher = p.runs("teacher", "ResNet-18/4", seeds=(0,), epochs=TEACHER_EPOCHS, subset=0)[0]
    runs = p.budgeted("ResMLP", "ResMLP")
    for mode in ("hard", "soft"):
        student = p.budgeted(f"ResMLP + {mode} distillation", "ResMLP", distill=mode, distill_alpha=0.5)
        runs += [r.but(teacher=teacher) for r in student]
    comparisons = [
        Comparison(f"ResMLP + {mode} distillation vs ResMLP", f"ResMLP + {mode} distillation", "ResMLP")
        for mode in ("hard", "soft")
    ]
    return Experiment(
        key="resmlp_distill",
        title="ResMLP with distillation from a convnet",
        hypothesis="A ResMLP learns more from a convnet teacher's decisions (hard distillation, DeiT) or its soft "
        "outputs than from the labels alone.",
        refutation="(distilled - plain) with a 95% interval entirely below 0; the test needs a teacher at least 2 "
        "points better than the student (a check of the section).",
        paper="ImageNet (ResMLP Table 3): S12 76.6% -> 77.8% (+1.2), S24 79.4 -> 80.8 (+1.4), with a RegNetY-16GF "
        "teacher.",
        runs=[*runs, teacher],
        budget=budget(p) + f"; teacher: ResNet-18/4 on all training images, {s.epochs_of(TEACHER_EPOCHS)} epochs",
        comparisons=comparisons + [at_half(c) for c in comparisons],
        budget_pairs=budget_pairs(runs),
        checks=("teacher_gap",),
    )


def resmlp_transfer(p: PlanContext) -> Experiment:
    s = p.s
    if s.data != "fashion-mnist":
        return Experiment("resmlp_transfer", "ResMLP transfer", "", "", "", [], "Fashion-MNIST only")
    subset = min(s.subset * 2, 20000) if s.subset else 0
    pre = p.runs("pre-trained on classes 0-4", "ResMLP", data="fashion-mnist-first5", seeds=(0,), epochs=15)[0]
    pre = pre.but(train={**pre.train, **({"train_subset": subset} if subset and not s.quick else {})})
    runs = [pre]
    comparisons = []
    pool = 25000  # classes 5-9 have 30 000 training images, 2 500 of them held out
    for frac, epochs in ((0.01, 100), (0.1, 30)):
        n = max(int(pool * frac), 32) if not s.quick else s.subset
        tag = f"{frac:.0%} of the labels"
        val = 2500 if not s.quick else s.val_size
        for r in p.runs(tag, "ResMLP", data="fashion-mnist-last5", epochs=epochs, subset=n, val_size=val):
            runs += [r.but(label=f"fine-tuned, {tag}", init=pre), r.but(label=f"from scratch, {tag}")]
        comparisons.append(Comparison(f"transfer vs scratch, {tag}", f"fine-tuned, {tag}", f"from scratch, {tag}"))
    return Experiment(
        key="resmlp_transfer",
        title="ResMLP transfer to new classes",
        hypothesis="Features a ResMLP learned on some classes transfer: fine-tuned on new classes with few labels it "
        "beats the same model trained on those labels from scratch.",
        refutation="(fine-tuned - scratch) with a 95% interval entirely below 0.",
        paper="ResMLP paper: S12 pre-trained on ImageNet transfers to CIFAR-10 at 98.1% and CIFAR-100 at 87.0%.",
        runs=runs,
        budget="pre-training on Fashion-MNIST classes 0-4 (T-shirt ... Coat); fine-tuning (new head) or training from "
        "scratch on classes 5-9 (Sandal ... Ankle boot) with 1% and 10% of their labels; ResMLP's tuned rate for "
        "both; float32",
        comparisons=comparisons,
    )


OVERFIT_SIZES_NOTE = "the data-size experiment's sizes, at its equal number of optimizer steps"
# ResMLP's own regularisers at the lab's scale (the paper: stochastic depth, mixup 0.8, CutMix 1.0, label smoothing,
# RandAugment, random erasing 0.25): stochastic depth, mixup/CutMix and random erasing on top of the lab recipe
REGULARISED = {"drop_path_rate": 0.1}
REGULARISED_AUG = {"mixup": 0.8, "cutmix": 1.0, "random_erasing": 0.25}


def resmlp_overfit(p: PlanContext) -> Experiment:
    from .claims_scale import equal_step_recipe  # the data-size experiment's equal-step budgets

    s = p.s
    runs, curves = [], []
    for label, args, aug in (("ResMLP", None, None), ("ResMLP, regularised", REGULARISED, REGULARISED_AUG)):

        def runs_at(row: str, n: int, args=args, aug=aug) -> list[LabRun]:
            recipe = equal_step_recipe(p, n)
            if aug:
                recipe["aug"] = {**recipe.get("aug", {}), **aug}
            return [r.but(evals=("train_acc",)) for r in p.runs(row, "ResMLP", args, **recipe)]

        model_runs, curve = size_curve(label, s.data_sizes, runs_at)
        runs += model_runs
        curves.append(curve)
    small = s.data_sizes[0]
    comparisons = [
        Comparison(
            f"regularisers shrink the train-test gap at {small} images",
            f"ResMLP | {small} images",
            f"ResMLP, regularised | {small} images",
            metric="gap",
        ),
        Comparison(
            f"regularisers raise test top-1 at {small} images",
            f"ResMLP, regularised | {small} images",
            f"ResMLP | {small} images",
        ),
    ]
    return Experiment(
        key="resmlp_overfit",
        title="ResMLP's control of over-fitting",
        hypothesis="Without convolutions' prior a ResMLP over-fits small training sets; its regularisers (stochastic "
        "depth, mixup/CutMix, random erasing) shrink the gap between training and test accuracy and so raise test "
        f"accuracy, most where data is scarce ({small} images).",
        refutation="(gap without - gap with) or (test top-1 with - without) at the fewest images with a 95% interval "
        "entirely below 0.",
        paper="ResMLP paper: trained on ImageNet-1k alone ResMLP over-fits; strong augmentation, stochastic depth and "
        "distillation control it (S12 76.6% supervised, 77.8% distilled).",
        runs=runs,
        budget=f"{', '.join(map(str, s.data_sizes))} training images at {OVERFIT_SIZES_NOTE}; ResMLP's tuned rate "
        "for both (the regularised model is not tuned again); float32",
        comparisons=comparisons,
        curves=curves,
        xlabel="training images",
        logx=True,
        metric="gap",
        columns=("top1",),
        notes="Gap = training top-1 (up to 5 000 of the training images, no augmentation, evaluation mode) minus "
        "test top-1. Mixup and CutMix make the training labels soft, so the training accuracy seen during training "
        "is not the one measured here.",
    )
