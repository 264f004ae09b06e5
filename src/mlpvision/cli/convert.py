"""``mlpvision convert``: a paper's released checkpoint mapped onto a zoo model and written as a model file."""

from __future__ import annotations

import argparse

# the checkpoint layouts (mlpvision.io.foreign.SOURCES), listed here so that --help needs no torch
LAYOUTS = ("official-repmlpnet", "mmpretrain-repmlpnet", "official-repmlp-resnet", "deit-resmlp", "jax-mixer")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert",
        help="convert a paper's released checkpoint (.pth / .npz) into a model file",
        description="Map a released checkpoint onto a registered model and write a model file (weights, name, "
        "config and pretrained_cfg). .pth files are read with torch.load(weights_only=True), .npz files without "
        "pickle; a key that does not map is named in one error line. Nothing is downloaded.",
    )
    p.add_argument("--from", dest="layout", required=True, choices=LAYOUTS, help="the checkpoint's layout")
    p.add_argument("--model", required=True, help="registered model the checkpoint holds, e.g. repmlpnet_b224")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model config override (repeatable)")
    p.add_argument("input", help="the released checkpoint (.pth, .pt, .bin or .npz)")
    p.add_argument("output", help="the model file to write (.safetensors)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..io import check_writable
    from ..io.foreign import convert_checkpoint
    from .common import model_args

    check_writable(args.output)
    r = convert_checkpoint(args.layout, args.model, args.input, args.output, **model_args(args.model_arg))
    form = "deploy form" if r.deploy else "train form"
    print(f"{r.model} ({form}, {r.num_classes} classes, {r.params / 1e6:.2f} M parameters) from {r.source}")
    print(f"saved {r.path}")
    return 0
