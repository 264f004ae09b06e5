"""Shared helpers of the benchmark scripts: the command line and process settings, interleaved timing, the results
files."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from mlpvision.deploy import Candidate, measure
from mlpvision.io import write_json, write_text
from mlpvision.runtime import machine_description as machine
from mlpvision.runtime import tune_cpu_allocator

__all__ = ["interleaved_medians", "machine", "start", "write_results"]


def start(parser: argparse.ArgumentParser, repeats: int) -> tuple[argparse.Namespace, str | None, str]:
    """Adds ``--repeats`` and ``--threads`` to a benchmark's parser, parses, applies the process settings every
    benchmark measures under (the allocator, the thread count), and returns (args, allocator, the command that
    reproduces the run with every option spelled out, for the results file)."""
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls per candidate")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op CPU threads")
    args = parser.parse_args()
    allocator = tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    flags = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest == "help" or value is None or value is False:
            continue
        values = value if isinstance(value, list) else [value]
        flags += [action.option_strings[-1]] + ([] if value is True else [shlex.quote(str(v)) for v in values])
    return args, allocator, " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *flags])


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Times each function ``repeats`` times round-robin (``mlpvision.deploy.measure``), under inference mode.

    Returns, per name, the median, min and max seconds per call (and the quartiles).
    """

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        return lambda: torch.inference_mode()(fn)()

    cands = [Candidate("mlpvision", name, no_grad(fn), None) for name, fn in fns.items()]
    return dict(zip(fns, measure(cands, repeats, warmup), strict=True))


def write_results(stem: str, meta: dict, rows: list[dict], markdown: list[str]) -> None:
    """Writes docs/<stem>.json (meta + rows) and docs/<stem>.md, and prints the Markdown."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    docs.mkdir(exist_ok=True)
    write_json(docs / f"{stem}.json", {"meta": meta, "rows": rows})
    write_text(docs / f"{stem}.md", "\n".join(markdown) + "\n")
    print("\n".join(markdown))
