"""``mlpvision models``: the registered models with their parameters and MACs."""

from __future__ import annotations

import argparse
import json

from ..errors import MlpVisionError
from .common import console


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the registered models with parameters and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'resmlp_*'")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON for machines")
    fmt.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return p


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..models.zoo import describe_models, markdown_table

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
        console().print(table)
    return 0
