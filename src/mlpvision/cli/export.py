"""``mlpvision export``: a model file exported to ONNX (re-parameterized), optionally quantized to int8."""

from __future__ import annotations

import argparse

from ..errors import printable
from .common import add_limit_flags


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a model file to ONNX (re-parameterized), optionally int8")
    p.add_argument("--checkpoint", required=True, help="model file (.safetensors)")
    p.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    p.add_argument(
        "--int8",
        nargs="?",
        const="dynamic",
        choices=("dynamic", "static"),
        help="also write OUT.int8.onnx: dynamic (int8 weights, activation scales at run time; the default when "
        "given alone) or static (QDQ, per-channel weights, activation scales calibrated on training images)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=512,
        metavar="N",
        help="training images that calibrate static int8 (default: %(default)s)",
    )
    p.add_argument("--data-dir", default=None, help="folder of the training data set (static int8 calibration)")
    add_limit_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import calibration_images
    from ..deploy import export_onnx
    from ..io import DATA_KEY, check_writable, load_checkpoint, read_metadata

    check_writable(args.onnx)
    model = load_checkpoint(args.checkpoint, device="cpu")
    data = read_metadata(args.checkpoint).get(DATA_KEY)
    calibration = None
    if args.int8 == "static":
        calibration = calibration_images(args.checkpoint, args.calibration_images, args.data_dir)
    meta = {DATA_KEY: data} if data else None
    r = export_onnx(model, args.onnx, int8=args.int8 or False, calibration=calibration, metadata=meta)
    form = "deploy form (re-parameterized)" if r.reparameterized else "model"
    print(printable(f"{model.model_name}: {form} exported to {r.path}"))
    print(f"max |onnxruntime - torch| on random input: {r.max_abs_diff:.3g} (output scale {r.output_scale:.3g})")
    if r.int8_path is not None:
        on = f"{len(calibration)} calibration images" if calibration is not None else "the check batch"
        print(
            f"int8 ({r.int8_mode} quantization): {r.int8_path}; max |int8 - torch| {r.int8_max_abs_diff:.3g}, "
            f"same top-1 class on {r.int8_top1_agreement:.1%} of {on}"
        )
    return 0
