"""``mlpvision demo``: the small models, one of them trained for a few seconds, and a few Fashion-MNIST test images
classified by it.

The package ships no trained weights (and nothing is downloaded), so the demo trains its model on the spot: the
quick run of the README (one epoch on a subset), evaluated on part of the test set. ``mlpvision predict`` and
``mlpvision eval`` take a model file trained in full (``make demo``, or the published ones under results/).
"""

from __future__ import annotations

import argparse
import tempfile

from .common import console
from .models import matching, zoo_rows


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="train a small model for a few seconds and classify a few Fashion-MNIST test images with it",
        description="A first look: the small models, one of them trained on the spot (one epoch on a subset of "
        "Fashion-MNIST, seconds on a laptop CPU; nothing is downloaded), and test images it classifies.",
    )
    p.add_argument("--model", default="mixer_t4_28", help="registered model name (default: %(default)s)")
    p.add_argument(
        "--train-images", type=int, default=3000, help="training images of the quick run (default: %(default)s)"
    )
    p.add_argument("--num-images", type=int, default=8, help="test images to classify (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST idx files")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..deploy import classify_samples
    from ..fields import Limits
    from ..io import load_checkpoint
    from ..models import get_spec
    from ..train import TrainConfig, train
    from .common import check_range

    check_range("--train-images", args.train_images, Limits(ge=1, le=50000))
    check_range("--num-images", args.num_images, Limits(ge=1, le=10000))
    check_range("--seed", args.seed, Limits(ge=0, le=2**32 - 1))

    get_spec(args.model)  # an unknown name fails before anything is printed
    table = Table(title="Small models for 28x28 grey images (`mlpvision models` lists all)")
    for col in ("model", "family", "params (M)", "MMACs"):
        table.add_column(col)
    for r in matching(zoo_rows(), "*_28"):
        table.add_row(r["name"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e6:.1f}")
    console().print(table)
    console().print(f"training {args.model} for one epoch on {args.train_images} Fashion-MNIST images ...")
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            model=args.model,
            data_dir=args.data_dir,
            out=out,
            epochs=1,
            train_subset=args.train_images,
            val_size=0,
            test_subset=2000,
            seed=args.seed,
            plots=False,
        )
        summary = train(cfg)
        model = load_checkpoint(f"{out}/model.safetensors")
    seconds = summary["train_seconds"] + summary["test_seconds"]
    console().print(
        f"trained in {summary['train_seconds']:.1f} s; top-1 {summary['test_top1_final']:.1f}% on 2000 test images "
        f"({seconds:.1f} s with the test)"
    )
    preds = classify_samples(model, args.num_images, args.data_dir, args.seed)
    table = Table(title=f"{args.model}, one epoch on {args.train_images} images, on Fashion-MNIST test images")
    for col in ("test image", "true class", "predicted", "confidence"):
        table.add_column(col)
    for p in preds:
        table.add_row(str(p.index), p.label, p.predicted, f"{p.confidence:.1%}")
    console().print(table)
    hits = sum(p.label == p.predicted for p in preds)
    console().print(
        f"{hits}/{len(preds)} correct. Train in full with `mlpvision train` (or `make demo`), then classify your "
        "own images with `mlpvision predict --checkpoint runs/train/model.safetensors IMAGE.png`."
    )
    return 0
