"""``mlpvision lab``: the inductive-bias experiments (resumable) and their report."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from ..errors import ConfigError
from .common import console


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("lab", help="run the inductive-bias experiments (resumable) and write docs/results.md")
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the whole pipeline in minutes")
    p.add_argument("--only", nargs="+", metavar="EXPERIMENT", help="run only these experiments (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and their number of runs")
    p.add_argument(
        "--plan", action="store_true", help="print each experiment's runs and estimated CPU hours on this machine"
    )
    p.add_argument("--report-only", action="store_true", help="only regenerate the report from the results")
    p.add_argument(
        "--write-plan",
        action="store_true",
        help="write the registered plan (DOCS/lab_plan.md, with its hash) from the plan's code, and stop",
    )
    p.add_argument(
        "--no-latency",
        action="store_true",
        help="do not time the experiments' models after their runs (time them later on an idle machine)",
    )
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="only time the deploy forms of the experiments whose latency table is missing (on an idle machine)",
    )
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist (default), cifar10 or cifar100: the image data of every experiment except the "
        "synthetic probes; off Fashion-MNIST the default folders and page get a -DATA suffix",
    )
    p.add_argument("--results", default=None, help="result JSON folder (default: results/lab)")
    p.add_argument("--runs", default=None, help="checkpoint folder (default: runs/lab)")
    p.add_argument("--docs", default="docs", help="where results.md and figures/ go (default: %(default)s)")
    p.add_argument(
        "--headline",
        action="append",
        help="published (or run) folder of a headline model or teacher, reported first; repeat for several "
        "(default: every results/*/ that holds an eval.json, headline models before teachers)",
    )
    p.add_argument("--data-dir", default=None, help="folder with the data set's files")
    p.add_argument("--verbose", action="store_true", help="log each training run")
    return p


def run(args: argparse.Namespace) -> int:
    from ..io import write_text
    from ..lab import (
        Settings,
        check_data,
        data_suffix,
        headline_vs_cnn,
        latency_only,
        ledger,
        plan,
        plan_markdown,
        published_models,
        run_lab,
        write_report,
    )

    settings = Settings.tiny() if args.quick else Settings.full()
    settings = dataclasses.replace(settings, data=args.data)
    check_data(args.data)
    if Path(args.docs).exists() and not Path(args.docs).is_dir():  # found now, not after every run has finished
        raise ConfigError(f"--docs {args.docs} is a file; give the folder where results.md and figures/ go")
    suffix = data_suffix(args.data)
    results = args.results or f"results/lab{suffix}"
    runs = args.runs or f"runs/lab{suffix}"
    if args.write_plan:
        out = Path(args.docs) / f"lab_plan{suffix}.md"
        write_text(out, plan_markdown(settings))
        console().print(f"plan: {out}")
        return 0
    if args.list:
        for exp in plan(settings, Path(results)):
            print(f"{exp.key:20s} {len(exp.runs):3d} runs  {exp.title}")
        return 0
    if args.plan:
        if not (Path(results) / "runs").is_dir():
            console().print(f"no lab results found in {results}/ (pass --results FOLDER): nothing counts as done")
        print_ledger(ledger(settings, Path(results), Path(runs), args.only))
        return 0
    if args.latency_only:
        latency_only(settings, results, args.only)
        console().print(f"latency tables: {results}/*_latency.json")
    headline = [Path(h) for h in args.headline or []]
    if not headline and args.results is None and not suffix:  # the default Fashion-MNIST report shows every
        headline = published_models("results")  # published one, headline models before teachers
    if not args.report_only and not args.latency_only:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        run_lab(
            settings, results, runs, args.only, args.data_dir, progress=console().print, latency=not args.no_latency
        )
        done = (Path(results) / "headline_vs_cnn.json").is_file()
        wanted = not args.only or "headline_vs_cnn" in args.only
        if headline and wanted and not settings.quick and not done:
            console().print("headline_vs_cnn: evaluating and timing the published models")
            headline_vs_cnn(headline, Path(results), Path(args.docs) / "figures")
    out = write_report(results, args.docs, headline)
    console().print(f"report: {out}")
    return 0


def print_ledger(rows: list[dict]) -> None:
    """The compute ledger of ``mlpvision lab --plan`` as a table."""
    from rich.table import Table

    title = (
        "the lab's compute ledger (CPU hours = wall hours x threads): estimated on this machine for the whole and "
        "what is left; spent = the training clock of the finished runs, wherever they ran"
    )
    table = Table(title=title)
    for col in ("experiment", "runs", "done", "CPU hours", "left", "spent"):
        table.add_column(col, justify="left" if col == "experiment" else "right")
    hours = ("cpu_hours", "cpu_hours_left", "spent")
    total = {"experiment": "all", **{k: sum(r[k] for r in rows) for k in ("runs", "done", *hours)}}
    for r in [*rows, total]:
        table.add_row(r["experiment"], str(r["runs"]), str(r["done"]), *(f"{r[k]:.2f}" for k in hours))
    console().print(table)
