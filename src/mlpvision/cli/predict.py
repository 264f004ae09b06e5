"""``mlpvision predict``: image files classified with a model file."""

from __future__ import annotations

import argparse
import sys

from .common import DEVICE_CHOICES, DEVICE_HELP, MODEL_FILE_HELP, add_limit_flags


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="classify image files with a model file (segmentation models: write coloured masks)",
        description="Classify image files. Each is prepared as the model's training images were: grey or colour, "
        "resized and centre-cropped to the model's input, normalised with the training set's statistics. "
        "Fashion-MNIST models expect one light object on a black background, centred and filling the frame; "
        "a photo on a light background needs --invert, and a warning says when an image looks far from the "
        "training images.",
    )
    p.add_argument("--checkpoint", required=True, metavar="MODEL_FILE", help=MODEL_FILE_HELP)
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image (default: %(default)s)")
    p.add_argument(
        "--invert", action="store_true", help="invert the images first: dark objects on light -> light on dark"
    )
    p.add_argument(
        "--out",
        default="predictions",
        help="segmentation models: folder for each image's coloured mask and overlay PNG (default: %(default)s)",
    )
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help=DEVICE_HELP)
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, PPM, TIFF, WebP, GIF)")
    add_limit_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy import open_model_file, predict_files, segment_files
    from ..errors import printable

    model = open_model_file(args.checkpoint, args.device)
    if getattr(model, "dense", False):  # per-pixel logits, whatever the file's name says
        for r in segment_files(args.checkpoint, args.images, args.out, args.invert, args.device, model=model):
            shares = ", ".join(f"{name} {share:.1%}" for name, share in r.shares[:4])
            print(f"{printable(r.path)}: {shares}; mask {r.mask_png}, overlay {r.overlay_png}")
            for warning in r.warnings:
                print(f"mlpvision: warning: {printable(r.path)}: {warning}", file=sys.stderr)
        return 0
    for p in predict_files(args.checkpoint, args.images, args.top_k, args.invert, args.device, model=model):
        guesses = ", ".join(f"{printable(name, 80)} {prob:.1%}" for name, prob in p.guesses)
        print(f"{printable(p.path)}: {guesses}")
        for warning in p.warnings:
            print(f"mlpvision: warning: {printable(p.path)}: {warning}", file=sys.stderr)
    return 0
