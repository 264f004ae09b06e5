"""``mlpvision eval``: a model file's top-1/top-5, per-class accuracy and confusion matrix on a data set split (a
segmentation model's mean IoU, pixel accuracy, per-class IoU and pixel confusion matrix)."""

from __future__ import annotations

import argparse

from ..errors import MlpVisionError
from .common import add_limit_flags, check_range, console, shown


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate a model file: top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("--checkpoint", required=True, help="model file (.safetensors) or exported ONNX file")
    p.add_argument("--data", default=None, help="data set (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None, help="folder of the data set's files")
    p.add_argument("--split", choices=("test", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix plot here")
    p.add_argument("--json", action="store_true", help="print a JSON object (top1 in percent; valid JSON, NaN as null)")
    add_limit_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.table import Table
    from torch.utils.data import DataLoader

    from ..data import evaluation_set
    from ..deploy import OrtModel
    from ..fields import Limits
    from ..io import check_writable, load_checkpoint, to_json
    from ..train import evaluate, save_confusion_png

    check_range("--batch-size", args.batch_size, Limits(ge=1, le=65536))
    if args.confusion:
        check_writable(args.confusion)
    model = OrtModel(args.checkpoint) if args.checkpoint.endswith(".onnx") else load_checkpoint(args.checkpoint)
    if getattr(model, "dense", False):
        return _run_segmentation(args, model)
    ds, info = evaluation_set(args.checkpoint, args.data, args.data_dir, args.split)
    if info.num_classes != model.num_classes:
        raise MlpVisionError(
            f"{args.checkpoint} predicts {model.num_classes} classes but {info.name} has {info.num_classes}"
        )
    result = evaluate(model, DataLoader(ds, batch_size=args.batch_size), info.num_classes)
    out = {"checkpoint": args.checkpoint, "model": model.model_name, "data": info.name, "split": args.split}
    out.update(result.as_dict())
    out["per_class"] = dict(zip(info.classes, result.per_class, strict=True))
    if args.confusion:
        out["confusion_png"] = str(save_confusion_png(result.confusion, info.classes, args.confusion))
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
    from ..io import to_json
    from ..train import evaluate_segmentation, save_confusion_png

    ds, info, ignore_index = segmentation_evaluation_set(
        args.checkpoint, model.img_size, model.in_chans, args.data, args.data_dir, args.split
    )
    if info.num_classes != model.num_classes:
        raise MlpVisionError(
            f"{args.checkpoint} predicts {model.num_classes} classes but {info.name} has {info.num_classes}"
        )
    loader = DataLoader(ds, batch_size=args.batch_size)
    result = evaluate_segmentation(model, loader, info.num_classes, ignore_index=ignore_index)
    out = {"checkpoint": args.checkpoint, "model": model.model_name, "data": info.name, "split": args.split}
    out.update(result.as_dict())
    out["per_class_iou"] = dict(zip(info.classes, result.per_class_iou, strict=True))
    if args.confusion:
        out["confusion_png"] = str(save_confusion_png(result.confusion, info.classes, args.confusion))
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
