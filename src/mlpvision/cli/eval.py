"""``mlpvision eval``: a model file's top-1/top-5, per-class accuracy and confusion matrix on a data set split (a
segmentation model's mean IoU, pixel accuracy, per-class IoU and pixel confusion matrix)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MlpVisionError
from .common import DEVICE_CHOICES, DEVICE_HELP, MODEL_FILE_HELP, add_limit_flags, check_range, console, shown


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="evaluate a model file: top-1/top-5, per-class accuracy, confusion matrix",
        description="Evaluate a model file on a split of its data set. --split val re-creates the validation "
        "images its training run held out (from the run's config.json beside the file), so the reported best "
        "validation top-1 can be measured again.",
        epilog="example: mlpvision eval --checkpoint runs/quick/best.safetensors --split val",
    )
    p.add_argument("--checkpoint", required=True, metavar="MODEL_FILE", help=MODEL_FILE_HELP)
    p.add_argument("--data", default=None, help="data set (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None, help="folder of the data set's files")
    p.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default="test",
        help="test, val (the run's held-out validation images) or train (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help=DEVICE_HELP)
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix plot here")
    p.add_argument(
        "--counts",
        action="store_true",
        help="colour the confusion matrix by image counts (default: by the share of each true class)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object (top1 in percent; valid JSON, NaN as null)")
    add_limit_flags(p)
    return p


def _validation_set(checkpoint: str, data: str | None, data_dir: str | None):
    """The validation images of the run that wrote ``checkpoint`` (its config.json is beside it)."""
    from dataclasses import replace

    from ..io.files import MAX_JSON_BYTES, parse_json, read_bounded
    from ..train import TrainConfig, validation_split

    config = Path(checkpoint).parent / "config.json"
    if not config.is_file():
        raise MlpVisionError(
            f"--split val re-creates a training run's validation images from its config.json, and there is none "
            f"beside {checkpoint}"
        )
    text = read_bounded(config, "a training run's config", MAX_JSON_BYTES).decode("utf-8", errors="replace")
    saved = parse_json(text, f"{config}")
    if not isinstance(saved, dict):
        raise MlpVisionError(f"{config} is not a training run's config (not a mapping)")
    cfg = TrainConfig.from_dict(saved)  # checked like every config: one ConfigError naming each bad field
    if data is not None and data != cfg.data:
        raise MlpVisionError(f"--split val is the validation split of the run's data set {cfg.data}, not {data}")
    return validation_split(replace(cfg, data_dir=data_dir or cfg.data_dir))


def run(args: argparse.Namespace) -> int:
    from rich.table import Table
    from torch.utils.data import DataLoader

    from ..data import evaluation_set
    from ..deploy import model_device, open_model_file
    from ..fields import Limits
    from ..io import check_writable, to_json
    from ..train import check_fit, evaluate, save_confusion_png

    check_range("--batch-size", args.batch_size, Limits(ge=1, le=65536))
    if args.confusion:
        check_writable(args.confusion)
    model = open_model_file(args.checkpoint, args.device)
    if getattr(model, "dense", False):
        return _run_segmentation(args, model)
    if args.split == "val":
        ds, info = _validation_set(args.checkpoint, args.data, args.data_dir)
    else:
        ds, info = evaluation_set(args.checkpoint, args.data, args.data_dir, args.split)
    check_fit(model, ds[0][1] if len(ds) else None, info.num_classes, info.name)
    device = model_device(model)
    result = evaluate(model, DataLoader(ds, batch_size=args.batch_size), info.num_classes, device)
    out = {"checkpoint": args.checkpoint, "model": model.model_name, "data": info.name, "split": args.split}
    out.update(result.as_dict())
    out["per_class"] = dict(zip(info.classes, result.per_class, strict=True))
    if args.confusion:
        title = f"{model.model_name} on {info.name}, {args.split} split\n{Path(args.checkpoint).name}"
        png = save_confusion_png(result.confusion, info.classes, args.confusion, title, normalize=not args.counts)
        out["confusion_png"] = str(png)
    if args.json:
        print(to_json(out))
        return 0
    table = Table(title=shown(f"{model.model_name} on {info.name} ({args.split}, {result.num_images} images)"))
    table.add_column("class")
    table.add_column("top-1", justify="right")
    for cls, acc in out["per_class"].items():
        table.add_row(shown(cls), f"{acc:.2f}%")
    console().print(table)
    console().print(f"top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}%, loss {result.loss:.4f}")
    if args.confusion:
        console().print(shown(f"confusion matrix: {out['confusion_png']}"))
    return 0


def _run_segmentation(args: argparse.Namespace, model) -> int:
    """A segmentation model (or its ONNX file): mean IoU, pixel accuracy, per-class IoU, pixel confusion."""
    from rich.table import Table
    from torch.utils.data import DataLoader

    from ..data import segmentation_evaluation_set
    from ..deploy import model_device
    from ..io import to_json
    from ..train import check_fit, evaluate_segmentation, save_confusion_png

    if args.split == "val":
        raise MlpVisionError(
            "--split val re-creates a classification run's validation images; evaluate a "
            "segmentation model on --split test or train"
        )
    ds, info, ignore_index = segmentation_evaluation_set(
        args.checkpoint, model.img_size, model.in_chans, args.data, args.data_dir, args.split
    )
    check_fit(model, ds[0][1] if len(ds) else None, info.num_classes, info.name)
    loader = DataLoader(ds, batch_size=args.batch_size)
    device = model_device(model)
    result = evaluate_segmentation(model, loader, info.num_classes, device, ignore_index=ignore_index)
    out = {"checkpoint": args.checkpoint, "model": model.model_name, "data": info.name, "split": args.split}
    out.update(result.as_dict())
    out["per_class_iou"] = dict(zip(info.classes, result.per_class_iou, strict=True))
    if args.confusion:
        title = f"{model.model_name} on {info.name}, {args.split} split, pixels\n{Path(args.checkpoint).name}"
        png = save_confusion_png(result.confusion, info.classes, args.confusion, title, normalize=not args.counts)
        out["confusion_png"] = str(png)
    if args.json:
        print(to_json(out))  # a class neither present nor predicted has IoU null
        return 0
    table = Table(title=shown(f"{model.model_name} on {info.name} ({args.split}, {result.num_images} images)"))
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for cls, iou in out["per_class_iou"].items():
        table.add_row(shown(cls), "-" if iou != iou else f"{iou:.2f}%")
    console().print(table)
    console().print(f"mean IoU {result.miou:.2f}%, pixel accuracy {result.pixel_acc:.2f}%, loss {result.loss:.4f}")
    if args.confusion:
        console().print(shown(f"confusion matrix (pixels): {out['confusion_png']}"))
    return 0
