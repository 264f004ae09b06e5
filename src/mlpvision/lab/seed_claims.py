"""The claims the lab exists to test, as its mission states them, each with the comparisons (and checks) that
decide it. The page opens with this table.

A claim's comparisons are one family: Holm's correction runs over them, and the claim is **supported** when every
one is supported after it (an intersection-union test: no further correction is needed for the claim as a whole),
**refuted** when any is refuted (or a check it rests on fails), **undecided** otherwise; "checked" when it rests on
deterministic checks alone; "not testable here" when no affordable design can decide it (the reason is given).
"""

from __future__ import annotations

from typing import NamedTuple

from .claims_priors import few_probe_sizes
from .spec import Settings

__all__ = ["SEED_CLAIMS", "SeedClaim", "seed_claims"]


class SeedClaim(NamedTuple):
    claim: str
    source: str
    decided_by: tuple[tuple[str, str], ...] = ()  # (experiment key, comparison name)
    checks: tuple[str, ...] = ()  # names in mlpvision.lab.checks
    untestable: str = ""  # why no design here can decide it


def seed_claims(s: Settings | None = None) -> tuple[SeedClaim, ...]:
    """The claims, naming the comparisons as the plan of ``s`` (the full lab's settings by default) names them: the
    probes' and the over-fitting section's comparisons carry their numbers of images."""
    s = s or Settings()
    few, small, large = few_probe_sizes(s), s.data_sizes[0], s.data_sizes[-1]
    return (
        SeedClaim(
            "Each perceptron of the RepMLP block adds accuracy (Global, Partition, Local)",
            "RepMLP",
            tuple(
                ("repmlp_ablation", f"full RepMLP vs {x}")
                for x in ("w/o Global Perceptron", "w/o Partition Perceptron", "w/o Local Perceptron")
            ),
        ),
        SeedClaim(
            "An FC layer is not a convolution in disguise: replacing FC3, or the whole block, by a 9x9 conv loses "
            "accuracy (the convs have far fewer parameters, though more MACs: the section's table gives both)",
            "RepMLP",
            tuple(
                ("repmlp_ablation", f"full RepMLP vs {x}")
                for x in ("FC3 replaced by 9x9 conv", "RepMLP replaced by 9x9 conv")
            ),
        ),
        SeedClaim(
            "Re-parameterization is exact: the deployed RepMLP is FC-only and computes what the trained one computes",
            "RepMLP",
            checks=("repmlp_fusion",),
        ),
        SeedClaim(
            "A pure-MLP RepMLP network comes within a point of a Wide ConvNet at fewer FLOPs",
            "RepMLP",
            (("repmlp_vs_convnet", "full RepMLP vs Wide ConvNet"),),
            ("repmlp_fewer_macs",),
        ),
        SeedClaim(
            "On segmentation, RepMLP inside a ResNet raises mean IoU at comparable or lower FLOPs, and is no more than "
            "a point behind a ResNet widened to its parameters",
            "RepMLP",
            (
                ("segmentation", "RepMLP-ResNet vs ResNet (mean IoU)"),
                ("segmentation", "RepMLP-ResNet vs the widened ResNet (mean IoU)"),
            ),
            ("seg_repmlp_resnet_macs", "seg_deploy_equal"),
        ),
        SeedClaim(
            "FC layers suit a translation-invariant dense task once convs carry the local prior: a RepMLP-ResNet is as "
            "robust to moved scenes as a ResNet, an all-MLP Mixer is not",
            "RepMLP",
            (
                ("segmentation_translation", "RepMLP-ResNet no less robust to the move than the ResNet"),
                ("segmentation_translation", "Mixer loses more to the move than the ResNet"),
            ),
        ),
        SeedClaim(
            "RepMLP inside a ResNet raises accuracy, and is no more than half a point behind a ResNet widened to the "
            "same parameters",
            "RepMLP",
            (
                ("repmlp_resnet", "RepMLP-ResNet vs ResNet"),
                ("repmlp_resnet", "RepMLP-ResNet vs the widened ResNet"),
            ),
        ),
        SeedClaim(
            "FC + conv suits aligned images with positional patterns; convolutions suit content that moves",
            "RepMLP",
            (
                ("aligned_translated", "RepMLP (FC + conv) beats the ConvNet on aligned objects"),
                ("aligned_translated", "RepMLP loses more than the ConvNet when objects move"),
                ("aligned_translated", "RepMLP's Local Perceptron matters more when objects move"),
            ),
        ),
        SeedClaim(
            "Convolutions cope with moving objects better than FC-based models (translation equivariance against a "
            "positional prior)",
            "the three priors",
            tuple(
                ("aligned_translated", f"{m} loses more than the ConvNet to unseen moves")
                for m in ("plain MLP", "MLP-Mixer", "RepMLP")
            )
            + tuple(
                ("aligned_translated", f"{m} loses more than the ConvNet when objects move")
                for m in ("plain MLP", "MLP-Mixer")
            ),
        ),
        SeedClaim(
            "Convolutions hold a local prior that FC layers and attention lack (a pixel permutation hurts the ConvNet "
            "more)",
            "the three priors",
            (
                ("permutation", "the permutation hurts the ConvNet"),
                ("permutation", "the ConvNet loses more than the ViT to the permutation"),
                ("patch_shuffle", "the ConvNet loses more than Mixer to the patch + pixel shuffle"),
            ),
            ("mlp_permutation",),
        ),
        SeedClaim(
            "Mixer is invariant to a fixed patch + pixel shuffle but not to a global permutation",
            "MLP-Mixer",
            (("patch_shuffle", "a global permutation hurts Mixer"),),
            ("mixer_patch_shuffle",),
        ),
        SeedClaim(
            "FC layers hold a positional prior: from few examples an MLP learns where things are",
            "the three priors",
            tuple(("position", f"plain MLP vs ResNet at {n} images") for n in few),
        ),
        SeedClaim(
            "FC layers hold global capacity: from few examples an MLP relates far-apart regions",
            "the three priors",
            tuple(("global", f"plain MLP vs ResNet at {n} images") for n in few),
        ),
        SeedClaim(
            "Mixer needs no position embedding; attention models do",
            "MLP-Mixer",
            (
                ("position_embedding", "Mixer: without vs with"),
                ("position_embedding", "ViT: with vs without"),
                ("position_embedding", "External Attention: with vs without"),
            ),
        ),
        SeedClaim(
            "Token-mixing parameters tied across channels cost nothing",
            "MLP-Mixer",
            (("tying", "tied vs untied token mixing"),),
            ("untied_equals_tied",),
        ),
        SeedClaim(
            "Mixer's cost is linear in the number of patches (ViT's quadratic): much faster, at no more than a small "
            "accuracy cost",
            "MLP-Mixer",
            (("mixer_vs_vit", "Mixer vs ViT"),),
            ("mixer_faster_than_vit",),
        ),
        SeedClaim(
            "MLPs (and ViT) need more data than convnets: the convnet's lead shrinks as data grows",
            "MLP-Mixer, ResMLP, ViT",
            tuple(
                ("data_size", f"the ConvNet's lead over {m} shrinks with data")
                for m in ("plain MLP", "MLP-Mixer", "ResMLP", "ViT")
            ),
        ),
        SeedClaim(
            "Mixer and ResMLP trained at one size transfer to a larger input (block-diagonal expansion + fine-tuning)",
            "MLP-Mixer",
            (
                ("resolution_corrected", "MLP-Mixer: transfer vs scratch at equal epochs"),
                ("resolution_corrected", "ResMLP: transfer vs scratch at equal epochs"),
            ),
            ("expansion_tiles", "expansion_tiles_resmlp"),
        ),
        SeedClaim(
            "ResMLP's Affine layer works as well as LayerNorm, each at its own tuned rate (Affine's scale and shift "
            "weight-decayed, as timm's parameter groups do; the section's sensitivity check trains it without)",
            "ResMLP",
            (("resmlp_norm", "Affine vs LayerNorm, each at its tuned rate"),),
        ),
        SeedClaim(
            "ResMLP learns well with distillation from a convnet teacher",
            "ResMLP",
            (
                ("resmlp_distill", "ResMLP + hard distillation vs ResMLP"),
                ("resmlp_distill", "ResMLP + soft distillation vs ResMLP"),
            ),
            ("teacher_gap",),
        ),
        SeedClaim(
            "ResMLP's regularisers control its over-fitting",
            "ResMLP",
            (
                ("resmlp_overfit_corrected", f"regularisers raise test top-1 at {small} images"),
                ("resmlp_overfit_corrected", f"regularisers help more at {small} images than at {large}"),
            ),
        ),
        SeedClaim(
            "ResMLP's features transfer to new classes",
            "ResMLP",
            (
                ("resmlp_transfer", "transfer vs scratch, 1% of the labels"),
                ("resmlp_transfer", "transfer vs scratch, 10% of the labels"),
            ),
        ),
        SeedClaim(
            "Mixer and ResMLP reach the papers' ImageNet accuracy at 224 px",
            "MLP-Mixer, ResMLP",
            untestable="ImageNet training at the papers' budgets (1.28 M images for 100 to 400 epochs) needs GPUs; "
            "the lab's paper profile describes it for a cluster",
        ),
    )


SEED_CLAIMS = seed_claims()  # the full lab's
