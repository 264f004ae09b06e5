"""The RepMLP paper's claims: each perceptron of the block, FC against conv, the pure-MLP network against a Wide
ConvNet, and RepMLP inside a ResNet."""

from __future__ import annotations

from .context import LAB_MODELS, PlanContext, budget, curves, swept
from .spec import Comparison, Experiment

ABLATION = {  # row label -> its lab model (a family of its own, with its own tuned rate)
    "w/o Global Perceptron": "RepMLP w/o Global Perceptron",
    "w/o Partition Perceptron": "RepMLP w/o Partition Perceptron",
    "w/o Local Perceptron": "RepMLP w/o Local Perceptron",
    "FC3 replaced by 9x9 conv": "RepMLP, FC3 replaced by 9x9 conv",
    "RepMLP replaced by 9x9 conv": "RepMLP replaced by 9x9 conv",
}
SWEPT = ("w/o Global Perceptron", "FC3 replaced by 9x9 conv", "RepMLP replaced by 9x9 conv")


def repmlp_ablation(p: PlanContext) -> Experiment:
    runs = p.sweep("full RepMLP", "RepMLP")
    for label, model in ABLATION.items():
        last = f"{label} | {p.s.sweep[-1]} ep"
        runs += p.sweep(label, model) if label in SWEPT else p.runs(last, model)
    comparisons = [c for label in SWEPT for c in swept(p, "full RepMLP", label)]
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
        budget(p),
        comparisons,
        {label: (net, LAB_MODELS[model][1]) for label, model in {"full RepMLP": "RepMLP", **ABLATION}.items()},
        curves(p, ["full RepMLP", *SWEPT]),
        "training epochs",
        notes=f"`{net}`: a 2x2 patch stem, then the paper's stage layout at {p.size // 2} and {p.size // 4} px; the "
        f"Global Perceptron acts in the first stage only (2x2 partitions of {p.size // 4} px).",
    )


_CONV_ROWS = ("RepMLP", "Wide ConvNet", "ConvNet")


def repmlp_vs_convnet(p: PlanContext) -> Experiment:
    runs = p.sweep("full RepMLP", "RepMLP") + p.sweep("Wide ConvNet", "Wide ConvNet") + p.sweep("ConvNet", "ConvNet")
    return Experiment(
        "repmlp_vs_convnet",
        "Pure-MLP RepMLP against a Wide ConvNet",
        "The pure-MLP RepMLP network, deployed as FC layers only, comes within 1 point of a Wide ConvNet (its layout "
        "with 3x3 convs and twice the channels) at fewer FLOPs.",
        "A 95% interval of (RepMLP - Wide ConvNet) entirely below -1 point at the largest budget.",
        "CIFAR-10 (RepMLP Table 1): 91.11% vs 91.99% (-0.88) at 52.8 vs 65.1 MFLOPs.",
        runs,
        budget(p),
        swept(p, "full RepMLP", "Wide ConvNet", "noninferior", 1.0) + swept(p, "full RepMLP", "ConvNet"),
        {label: (p.sized(LAB_MODELS[label][0]), LAB_MODELS[label][1]) for label in _CONV_ROWS},
        curves(p, ["full RepMLP", "Wide ConvNet", "ConvNet"]),
        "training epochs",
        notes="Latency: the deploy forms (RepMLP as FC layers only, the ConvNets with BatchNorm fused).",
    )


def repmlp_resnet(p: PlanContext) -> Experiment:
    e = 20  # ResNets reach their plateau on 5 000 images sooner
    models = {
        "ResNet-18/4": "ResNet-18/4",
        "RepMLP-ResNet-18/4": "RepMLP-ResNet-18/4",
        "ResNet-18, widened to equal parameters": "ResNet-18/4, widened",
    }
    runs = [r for label, model in models.items() for r in p.runs(label, model, epochs=e)]
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
        budget(p, f"{p.s.epochs_of(e)} epochs"),
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
        {label: (p.sized(LAB_MODELS[model][0]), LAB_MODELS[model][1]) for label, model in models.items()},
        notes="Widths 16-32-64-128 (a quarter of ResNet-18's); the RepMLP blocks work on 7x7 partitions of the 14 and "
        "7 px maps with kernels 1, 3, 5 in their Local Perceptron. Latency is that of the deploy forms.",
    )


# ---- ResMLP --------------------------------------------------------------------------------------------------
