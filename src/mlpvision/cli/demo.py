"""``mlpvision demo``: the small models, and a few Fashion-MNIST test images classified."""

from __future__ import annotations

import argparse

from .common import console


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="list the small models and classify a few Fashion-MNIST test images")
    p.add_argument("--model", default="mixer_t4_28", help="registered model name (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=8, help="test images to classify (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST idx files")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..deploy import classify_samples
    from ..fields import Limits
    from ..models import get_spec
    from ..models.zoo import describe_models
    from .common import check_range

    check_range("--num-images", args.num_images, Limits(ge=1, le=10000))
    check_range("--seed", args.seed, Limits(ge=0, le=2**32 - 1))

    get_spec(args.model)  # an unknown name fails before anything is printed
    rows = describe_models("*_28")
    table = Table(title="Small models for 28x28 grey images (`mlpvision models` lists all)")
    for col in ("model", "family", "params (M)", "MMACs"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e6:.1f}")
    console().print(table)
    preds = classify_samples(args.model, args.num_images, args.data_dir, args.seed)
    table = Table(title=f"{args.model}, untrained, on Fashion-MNIST test images")
    for col in ("test image", "true class", "predicted", "confidence"):
        table.add_column(col)
    for p in preds:
        table.add_row(str(p.index), p.label, p.predicted, f"{p.confidence:.1%}")
    console().print(table)
    hits = sum(p.label == p.predicted for p in preds)
    console().print(f"{hits}/{len(preds)} correct: an untrained model is at chance level (10%).")
    return 0
