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
        help="do not time the experiments' models after their runs (time them later on an idle machine with "
        "--latency-only)",
    )
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="only time the deploy forms of the experiments whose latency table is missing or stale, and the "
        "headline comparison when it is missing (on an idle machine)",
    )
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist (default), cifar10 or cifar100: the image data of every experiment except the "
        "synthetic probes (off Fashion-MNIST the segmentation sections, whose scenes are Fashion-MNIST garments, "
        "are left out); off Fashion-MNIST the default folders and page get a -DATA suffix",
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
    p.add_argument(
        "--executor",
        default="local",
        help="where runs train: local (default: in this process) or ray (as Ray tasks on a cluster; needs "
        "pip install 'mlpvision[cluster]')",
    )
    p.add_argument("--address", default=None, help="the Ray cluster to join (auto: the one started with ray start)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="CPUs (threads) each Ray task declares (default: 1)")
    p.add_argument(
        "--profile",
        choices=("lab", "paper"),
        default="lab",
        help="lab (default): the lab's small models; paper: the papers' sizes and budgets on --data cifar10 or "
        "--data imagefolder --data-dir DIR, for a GPU cluster (--plan prints the estimated GPU hours)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from ..io import write_text
    from ..lab import (
        LabRunsFailed,
        Settings,
        check_data,
        data_suffix,
        headline_vs_cnn,
        latency_only,
        ledger,
        make_executor,
        plan,
        plan_markdown,
        published_models,
        run_lab,
        write_report,
    )

    executor = make_executor(args.executor, args.address, args.cpus_per_run)
    if args.profile == "paper":
        return run_paper_profile(args, executor)
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
    failed: LabRunsFailed | None = None
    if not headline and args.results is None and not suffix:  # the default Fashion-MNIST report shows every
        headline = published_models("results")  # published one, headline models before teachers
    if not args.report_only and not args.latency_only:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        try:
            run_lab(
                settings,
                results,
                runs,
                args.only,
                args.data_dir,
                progress=console().print,
                latency=not args.no_latency,
                executor=executor,
            )
        except LabRunsFailed as e:  # the page still shows every run that finished; the error comes after it
            failed = e
    if not args.report_only:  # the headline comparison is timed too: after the runs, or with the latency tables
        done = (Path(results) / "headline_vs_cnn.json").is_file()
        wanted = not args.only or "headline_vs_cnn" in args.only
        timing = args.latency_only or not args.no_latency
        if headline and wanted and timing and not settings.quick and not done and failed is None:
            console().print("headline_vs_cnn: evaluating and timing the published models")
            headline_vs_cnn(headline, Path(results), Path(args.docs) / "figures")
    out = write_report(results, args.docs, headline)
    console().print(f"report: {out}")
    if failed is not None:
        raise failed
    return 0


def run_paper_profile(args: argparse.Namespace, executor) -> int:
    """``lab --profile paper``: the papers' experiments at their sizes (see mlpvision.lab.paper)."""
    from rich.table import Table

    from ..errors import MlpVisionError
    from ..lab import PAPER_GPU, paper_ledger, paper_plan, run_paper, write_paper_report

    data = None if args.data == "fashion-mnist" else args.data  # no --data: the plan shows both parts
    if args.plan:
        rows = paper_ledger(data, args.data_dir)
        table = Table(title="the paper profile: runs and estimated GPU hours")
        for col in ("experiment", "data", "runs", "GPU hours"):
            table.add_column(col, justify="left" if col in ("experiment", "data") else "right")
        total = {"experiment": "all", "data": "", **{k: sum(r[k] for r in rows) for k in ("runs", "gpu_hours")}}
        for r in [*rows, total]:
            table.add_row(r["experiment"], r["data"], str(r["runs"]), f"{r['gpu_hours']:.1f}")
        console().print(table)
        console().print(f"GPU hours assume {PAPER_GPU.describe()}.")
        return 0
    if args.list:
        for exp in paper_plan(data):
            print(f"{exp.key:24s} {len(exp.runs):3d} runs  {exp.title}")
        return 0
    if data is None:
        raise MlpVisionError("the paper profile trains on --data cifar10, or on --data imagefolder --data-dir DIR")
    results, runs = args.results or f"results/lab-paper-{data}", args.runs or f"runs/lab-paper-{data}"
    if not args.report_only:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        run_paper(data, results, runs, args.data_dir, executor, progress=console().print)
        console().print(f"results: {results}/runs")
    console().print(f"report: {write_paper_report(results, args.docs, data)}")
    return 0


def print_ledger(rows: list[dict]) -> None:
    """The compute ledger of ``mlpvision lab --plan`` as a table."""
    from rich.table import Table

    title = (
        "the lab's compute ledger (CPU hours = wall hours x threads): estimated on this machine for the whole and "
        "what is left; spent = the training CPU time of the finished runs, wherever they ran (older runs: their "
        "training clock x threads)"
    )
    table = Table(title=title)
    for col in ("experiment", "runs", "done", "CPU hours", "left", "spent"):
        table.add_column(col, justify="left" if col == "experiment" else "right")
    hours = ("cpu_hours", "cpu_hours_left", "spent")
    total = {"experiment": "all", **{k: sum(r[k] for r in rows) for k in ("runs", "done", *hours)}}
    for r in [*rows, total]:
        table.add_row(r["experiment"], str(r["runs"]), str(r["done"]), *(f"{r[k]:.2f}" for k in hours))
    console().print(table)
