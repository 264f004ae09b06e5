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
    p.add_argument(
        "--slide",
        action="store_true",
        help="segmentation models: segment each image at its own size in windows of the model's input, logits "
        "averaged where they overlap, and write masks of the image's size (default: resize to the input)",
    )
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        help="with --slide: pixels between windows, 1 to the model's input (default: two thirds of the input)",
    )
    p.add_argument(
        "--max-windows",
        type=int,
        default=None,
        metavar="N",
        help="with --slide: most windows (model calls) for one image (default: 100000)",
    )
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help=DEVICE_HELP)
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, PPM, TIFF, WebP, GIF)")
    add_limit_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy import open_model_file, predict_files, segment_files
    from ..errors import ConfigError, printable

    if args.stride is not None and not args.slide:
        raise ConfigError("--stride sets the windows of --slide: add --slide, or drop --stride")
    model = open_model_file(args.checkpoint, args.device)
    if getattr(model, "dense", False):  # per-pixel logits, whatever the file's name says
        files = segment_files(
            args.checkpoint, args.images, args.out, args.invert, args.device, model, args.slide, args.stride
        )
        for r in files:
            shares = ", ".join(f"{name} {share:.1%}" for name, share in r.shares[:4])
            print(f"{printable(r.path)}: {shares}; mask {r.mask_png}, overlay {r.overlay_png}")
            for warning in r.warnings:
                print(f"mlpvision: warning: {printable(r.path)}: {warning}", file=sys.stderr)
        return 0
    if args.slide:
        raise ConfigError(f"{args.checkpoint} labels whole images: --slide is for segmentation models")
    for p in predict_files(args.checkpoint, args.images, args.top_k, args.invert, args.device, model=model):
        guesses = ", ".join(f"{printable(name, 80)} {prob:.1%}" for name, prob in p.guesses)
        print(f"{printable(p.path)}: {guesses}")
        for warning in p.warnings:
            print(f"mlpvision: warning: {printable(p.path)}: {warning}", file=sys.stderr)
    return 0
