"""The lab's executors side by side: the same quick-lab selection trained in this process (one run after another,
on every thread) and as Ray tasks on a local cluster of ``--workers`` one-thread workers, in one script run, each
in a fresh folder. Wall times include everything the command does except the report; the Ray side's cluster start
is timed apart. Writes docs/lab_executors.json and docs/lab_executors.md.

    python benchmarks/lab_executors.py [--only tying mixer_vs_vit permutation] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, start, write_results

from mlpvision.lab import Settings, run_lab
from mlpvision.lab.executors import RayExecutor, require_ray


def _trained(results: Path) -> dict[str, dict]:
    return {f.stem: json.loads(f.read_text()) for f in (results / "runs").glob("*.json")}


def _top1(results: dict[str, dict]) -> dict[str, float]:
    return {k: r["summary"]["test_top1_final"] for k, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=["tying", "mixer_vs_vit", "permutation"])
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (one CPU, one thread each)")
    args, _allocator, command = start(parser, repeats=1)
    ray = require_ray()
    settings = Settings.tiny()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        run_lab(settings, tmp / "local", tmp / "runs-local", only=args.only, latency=False)
        local_s = time.perf_counter() - t0
        local = _trained(tmp / "local")

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
        init_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            executor = RayExecutor(cpus_per_run=1)
            run_lab(settings, tmp / "ray", tmp / "runs-ray", only=args.only, latency=False, executor=executor)
            ray_s = time.perf_counter() - t0
        finally:
            ray.shutdown()
        remote = _trained(tmp / "ray")

    load_after = os.getloadavg()[0]
    n = len(local)
    assert remote.keys() == local.keys(), "the two executors trained different runs"
    same = sum(
        abs(local[k]["summary"]["test_top1_final"] - remote[k]["summary"]["test_top1_final"]) < 1e-9 for k in local
    )
    gain = (local_s - ray_s) / n  # seconds saved per run once the cluster is up
    break_even = init_s / gain if gain > 0 else None
    train_local = sum(r["summary"]["train_seconds"] for r in local.values()) / n
    rows = [
        {"executor": "in-process", "threads": torch.get_num_threads(), "start_s": 0.0, "lab_s": local_s},
        {"executor": f"ray, {args.workers} workers x 1 thread", "threads": 1, "start_s": init_s, "lab_s": ray_s},
    ]
    meta = {
        "command": command,
        "machine": machine(),
        "ray": ray.__version__,
        "only": args.only,
        "runs": n,
        "same_top1": same,
        "mean_train_seconds_in_process": train_local,
        "speedup_with_start": local_s / (init_s + ray_s),
        "speedup_after_start": local_s / ray_s,
        "break_even_runs": break_even,
        "load_average_1min": [load_before, load_after],
    }
    md = [
        "# The lab's executors: in-process against Ray",
        "",
        f"`{command}`, on {machine()}; Ray {ray.__version__}; one-minute load average {load_before:.1f} before "
        f"and {load_after:.1f} after (above the core count, other processes competed for the cores: a "
        "multi-threaded in-process run suffers more from that than one-thread workers, and the ratio overstates "
        "Ray's gain).",
        f"The quick lab's {', '.join(args.only)}: {n} runs (mean training time {train_local:.1f} s each in process), "
        f"each executor in a fresh folder; {same} of {n} runs gave the same test top-1 on both.",
        "",
        "| executor | threads per run | cluster start (s) | lab wall time (s) | total (s) |",
        "|---|---|---|---|---|",
        *(
            f"| {r['executor']} | {r['threads']} | {r['start_s']:.1f} | {r['lab_s']:.1f} | "
            f"{r['start_s'] + r['lab_s']:.1f} |"
            for r in rows
        ),
        "",
        f"Ray against in-process: {meta['speedup_with_start']:.2f}x counting the cluster's start, "
        f"{meta['speedup_after_start']:.2f}x once it is up.",
        (
            f"Each run saves {gain:.2f} s once the cluster is up, so the start ({init_s:.1f} s) is paid back after "
            f"about {break_even:.0f} runs of this size; longer runs pay back sooner (a task's fixed cost is the "
            "same), and every added machine adds its workers."
            if break_even is not None
            else "On this machine a run is not faster on Ray even once the cluster is up: the task overhead exceeds "
            "what two one-thread workers gain over one two-thread process at this size."
        ),
    ]
    write_results("lab_executors", meta, rows, md)


if __name__ == "__main__":
    main()
