"""The ``mlpvision`` command line: argument parsing and printing only; each subcommand calls the library."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import MlpVisionError

console = Console()


def _cmd_models(args: argparse.Namespace) -> int:
    from .zoo import describe_models, markdown_table

    rows = describe_models(args.pattern)
    if not rows:
        raise MlpVisionError(f"no model matches {args.pattern!r}")
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(markdown_table(rows), end="")
    else:
        table = Table(title=f"mlpvision models ({len(rows)})")
        for col in ("model", "family", "input", "params (M)", "GMACs", "timm"):
            table.add_column(col, justify="right" if col in ("params (M)", "GMACs") else "left")
        for r in rows:
            table.add_row(
                r["name"],
                r["family"],
                f"{r['img_size']}x{r['img_size']}x{r['in_chans']}",
                f"{r['params'] / 1e6:.2f}",
                f"{r['macs'] / 1e9:.3f}",
                "yes" if r["timm_name"] else "",
            )
        console.print(table)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import classify_samples
    from .models import get_spec
    from .zoo import describe_models

    get_spec(args.model)  # an unknown name fails before anything is printed
    rows = describe_models("*_28")
    table = Table(title="Small models for 28x28 grey images (`mlpvision models` lists all)")
    for col in ("model", "family", "params (M)", "MMACs"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e6:.1f}")
    console.print(table)
    preds = classify_samples(args.model, args.num_images, args.data_dir, args.seed)
    table = Table(title=f"{args.model}, untrained, on Fashion-MNIST test images")
    for col in ("test image", "true class", "predicted", "confidence"):
        table.add_column(col)
    for p in preds:
        table.add_row(str(p.index), p.label, p.predicted, f"{p.confidence:.1%}")
    console.print(table)
    hits = sum(p.label == p.predicted for p in preds)
    console.print(f"{hits}/{len(preds)} correct: an untrained model is at chance level (10%).")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from .checkpoint import deploy_checkpoint

    r = deploy_checkpoint(args.input, args.output, batch_size=args.batch_size)
    print(f"{r.model}: {r.params_before / 1e6:.3f} M parameters in train form -> {r.params_after / 1e6:.3f} M deployed")
    print(f"max |train - deploy| on random input: {r.max_abs_diff:.3g} (output scale {r.output_scale:.3g})")
    print(f"saved {r.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpvision", description="MLP-style vision models: zoo, training, lab.")
    parser.add_argument("--version", action="version", version=f"mlpvision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models with parameters and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'resmlp_*'")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON for machines")
    fmt.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("demo", help="list the small models and classify a few Fashion-MNIST test images")
    p.add_argument("--model", default="mixer_t4_28", help="registered model name (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=8, help="test images to classify (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST idx files")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("deploy", help="re-parameterize a model file into its deploy form and verify it")
    p.add_argument("input", help="train-form model file (.safetensors)")
    p.add_argument("output", help="where to write the deploy-form model file")
    p.add_argument("--batch-size", type=int, default=4, help="random images for the check (default: %(default)s)")
    p.set_defaults(func=_cmd_deploy)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; user errors print one line on stderr and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MlpVisionError as e:
        print(f"mlpvision: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlpvision: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
