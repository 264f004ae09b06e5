"""``mlpvision bench``: a model timed side by side with timm and the machine's matmul peak."""

from __future__ import annotations

import argparse

from .common import DEVICE_CHOICES, DEVICE_HELP, console, fmt, model_args


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="time a model side by side with timm and the machine's matmul peak")
    p.add_argument(
        "--model",
        required=True,
        help="registered model name (see `mlpvision models`), or a model file: .safetensors, or .onnx (float32 "
        "or int8, timed in ONNX Runtime as it is)",
    )
    p.add_argument(
        "--batch-size", type=int, default=16, help="images per call; 1: one image's latency (default: %(default)s)"
    )
    p.add_argument("--img-size", type=int, default=None, help="input side (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's setting)")
    p.add_argument(
        "--backend",
        default="eager",
        help="comma-separated: eager, autocast (bfloat16), compile, onnxruntime, onnxruntime-int8 (dynamic), "
        "onnxruntime-int8-static (calibrated QDQ), or best (all inference backends; the fastest is named) "
        "(default: %(default)s)",
    )
    p.add_argument("--train", action="store_true", help="time an AdamW training step instead of inference")
    p.add_argument(
        "--compare", choices=("timm",), default=None, help="timm: add timm's model of the same configuration"
    )
    p.add_argument(
        "--deploy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the deploy form of re-parameterizable models (default: yes)",
    )
    p.add_argument("--repeats", type=int, default=20, help="timed calls per candidate (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per candidate (default: %(default)s)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help=DEVICE_HELP)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument(
        "--model-arg",
        action="append",
        metavar="KEY=VALUE",
        help="model config override, VALUE read as YAML, e.g. --model-arg depth=4 (repeatable)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..deploy import run_bench
    from ..io import check_writable, to_json, write_text

    if args.json:
        check_writable(args.json)
    rows = run_bench(
        args.model,
        batch_size=args.batch_size,
        img_size=args.img_size,
        threads=args.threads,
        backends=[b.strip() for b in args.backend.split(",") if b.strip()],
        train=args.train,
        compare_timm=args.compare == "timm",
        deploy=args.deploy,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        model_args=model_args(args.model_arg),
    )
    if args.json:
        write_text(args.json, to_json(rows) + "\n")
    r0 = rows[0]
    title = (
        f"{args.model}: {r0['mode']}, batch {r0['batch_size']}, {r0['img_size']} px, {r0['threads']} threads, "
        f"{r0['device']}; median of {r0['repeats']} round-robin repeats"
    )
    table = Table(title=title)
    cols = [
        "impl",
        "backend",
        "ms (p25-p75)",
        "p99 ms",
        "img/s",
        "GFLOP/s",
        "of fp32 peak",
        "of int8 peak",
        "peak mem MB",
    ]
    if "ratio_vs_timm" in r0:
        cols.append("vs timm")
    for c in cols:
        table.add_column(c, justify="left" if c in ("impl", "backend") else "right")
    for r in rows:
        cells = [
            r["impl"],
            r["backend"],
            f"{r['median_ms']:.2f} ({r['p25_ms']:.2f}-{r['p75_ms']:.2f})",
            f"{r['p99_ms']:.2f}",
            fmt(r["img_per_s"], ".1f"),
            fmt(r["gflop_per_s"], ".1f"),
            fmt(r["frac_of_peak"], ".0%"),
            fmt(r["frac_of_int8_peak"] if "int8" in r["backend"] else None, ".0%"),
            fmt(r["peak_mem_mb"], ".1f"),
        ]
        if "ratio_vs_timm" in r:
            cells.append(fmt(r["ratio_vs_timm"], ".2f") + ("x" if r["ratio_vs_timm"] else ""))
        table.add_row(*cells)
    console().print(table)
    for r in rows:
        if r.get("best"):
            console().print(f"best backend: {r['backend']} ({r['why']})")
    if args.json:
        console().print(f"rows written to {args.json}")
    return 0
