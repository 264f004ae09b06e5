"""Deployment speed: static and dynamic int8, single-image latency, and fused fp32 forward passes, side by side.

Three measurements, each timed round-robin in one run per model (``mlpvision.deploy.run_bench`` / ``measure``):

1. The 224-px models (Mixer-S/16, ResMLP-S12) at batch 16: eager, compiled, ONNX Runtime fp32, dynamic and static
   int8 (QDQ, per-channel weights), timm's eager fp32 model (same weights), the fp32 matmul peak and the int8
   matmul peak (MatMulInteger in ONNX Runtime).
2. Fused fp32: the same models compiled with torch.compile's options (default, weight freezing, max-autotune's
   GEMM templates with their fused epilogues), against eager, the fp32 matmul peak and the model's own GEMMs
   replayed alone (the ceiling fusion can reach, up to timing noise).
3. The small 28-px models at batch 1, with 1 and 2 threads: every deploy form, median and p99 latency.
4. The accuracy cost of int8 on the whole Fashion-MNIST test set, for every published trained model
   (results/*/model.safetensors, and the Mixer and ResMLP deployment references under results/reference/): fp32
   against dynamic and static int8 (calibrated on 512 training images).
5. Where the time goes: ONNX Runtime's own profile of the int8 models and torch's of the eager fp32 forward, as
   shares of the run time by operator.

Writes docs/deploy_speed.json and docs/deploy_speed.md; figures come from these files alone. ``--only PART ...``
measures some parts again and keeps the others' rows from the last run.

    python benchmarks/deploy_speed.py [--repeats 20] [--threads 2] [--only large fused small accuracy profile]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, start, write_results

import mlpvision
from mlpvision.data import calibration_images, evaluation_set
from mlpvision.deploy import Candidate, OrtModel, export_onnx, inference_call, matmul_candidate, measure, run_bench
from mlpvision.deploy.bench import count_flops
from mlpvision.io import shown_path
from mlpvision.lab import published_models
from mlpvision.train import evaluate

ROOT = Path(__file__).resolve().parents[1]
aten = torch.ops.aten
CEILING = "the model's GEMMs alone (the fusion ceiling)"
LARGE = ["mixer_s16_224", "resmlp_12_224"]
PARTS = ("large", "fused", "small", "accuracy", "profile")
SMALL = ["mixer_t4_28", "resmlp_tiny_12_28", "repmlp_fast_28", "mlp_28", "resnet18_28"]
DEPLOY = ["eager", "compile", "onnxruntime", "onnxruntime-int8", "onnxruntime-int8-static"]
INT8_TARGET, LATENCY_TARGET, PEAK_TARGET, DROP_TARGET = 3.0, 2.0, 0.9, 0.5


def large_models(repeats: int) -> list[dict]:
    rows = []
    for name in LARGE:
        out = run_bench(name, batch_size=16, backends=DEPLOY, compare_timm=True, repeats=repeats, warmup=3)
        rows += out
        print(f"{name}: done", flush=True)
    return rows


def _compiled(model, x, **options):
    import torch._inductor.config as inductor

    freezing = options.pop("freezing", False)
    with torch.inference_mode():
        inductor.freezing = freezing
        fn = torch.compile(model, **options)
        fn(x)  # compile now, with the options in force
    inductor.freezing = False

    def call() -> object:
        with torch.inference_mode():
            return fn(x)

    return call


COMPILE_VARIANTS = {
    "compile (default)": {},
    "compile, frozen weights": {"freezing": True},
    "compile, max-autotune GEMM templates": {"mode": "max-autotune-no-cudagraphs", "freezing": True},
}


class _GemmRecorder(TorchDispatchMode):
    """Records every matrix multiply and convolution of a forward pass with copies of its operands."""

    OPS = frozenset(
        {aten.linear, aten.matmul, aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.conv2d, aten.convolution}
    )

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in self.OPS:
            copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append((func, copies, kwargs))
        return func(*args, **kwargs)


def gemm_ceiling(model_call) -> object:
    """The model's matrix multiplies and convolutions alone, at its shapes, with nothing between them.

    No fusion can make the forward pass faster than this: it is the share of the matmul peak that the model's
    own GEMM shapes reach, the ceiling for the fused fp32 target.
    """
    recorder = _GemmRecorder()
    with torch.inference_mode(), recorder:
        model_call()

    def call() -> None:
        with torch.inference_mode():
            for func, args, kwargs in recorder.calls:
                func(*args, **kwargs)

    return call


def fused_fp32(repeats: int) -> list[dict]:
    """Eager and each torch.compile variant of the 224-px models against the fp32 matmul peak, in one run, with
    the model's GEMMs alone (:func:`gemm_ceiling`) timed beside them."""
    rows = []
    for name in LARGE:
        model = mlpvision.create_model(name).eval()
        x = torch.randn(16, 3, 224, 224)

        eager = inference_call(model, x)
        flops = count_flops(eager)
        cands = [Candidate("mlpvision", "eager", eager, flops)]
        for label, options in COMPILE_VARIANTS.items():
            torch._dynamo.reset()
            cands.append(Candidate("mlpvision", label, _compiled(model, x, **dict(options)), flops))
        ceiling = gemm_ceiling(eager)
        cands.append(Candidate("mlpvision", CEILING, ceiling, count_flops(ceiling)))
        peak = matmul_candidate(2048)
        timing = measure([*cands, peak], repeats, warmup=3)
        peak_gflops = peak.flops / timing[-1]["median_s"] / 1e9
        for c, t in zip(cands, timing[:-1], strict=True):
            gflops = c.flops / t["median_s"] / 1e9
            rows.append(
                {
                    "model": name,
                    "variant": c.backend,
                    "median_ms": t["median_s"] * 1e3,
                    "gflop_per_s": gflops,
                    "peak_gflop_per_s": peak_gflops,
                    "frac_of_peak": gflops / peak_gflops,
                }
            )
        print(f"{name}: fused fp32 done", flush=True)
    return rows


def small_models(repeats: int) -> list[dict]:
    rows = []
    for threads in (1, 2):
        for name in SMALL:
            out = run_bench(name, batch_size=1, threads=threads, backends=["best"], repeats=repeats, warmup=5)
            rows += [r for r in out if r["impl"] == "mlpvision"]
        print(f"batch 1, {threads} threads: done", flush=True)
    torch.set_num_threads(max(r["threads"] for r in rows))
    return rows


def int8_accuracy() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in published_models(ROOT / "results") + published_models(ROOT / "results" / "reference"):
            path = folder / "model.safetensors"
            model = mlpvision.load_checkpoint(path, device="cpu").float().eval()
            test, info = evaluation_set(path)
            loader = DataLoader(test, batch_size=256)
            fp32 = evaluate(model, loader, info.num_classes).top1
            row = {"model": shown_path(path, ROOT), "name": model.model_name, "fp32_top1": fp32}
            for mode in ("dynamic", "static"):
                calibration = calibration_images(path, 512) if mode == "static" else None
                onnx = Path(tmp) / f"{folder.name}-{mode}.onnx"
                report = export_onnx(model, onnx, int8=mode, calibration=calibration)
                row[f"{mode}_top1"] = evaluate(OrtModel(report.int8_path), loader, info.num_classes).top1
                row[f"{mode}_drop"] = fp32 - row[f"{mode}_top1"]
            rows.append(row)
            print(f"{folder.name}: int8 accuracy done", flush=True)
    return rows


def ort_profile(name: str, mode: str, batch: int = 16, calls: int = 5) -> list[dict]:
    """Shares of ONNX Runtime's run time by operator type for ``name``'s int8 model (``mode``), from its profiler."""
    import onnxruntime as ort

    model = mlpvision.create_model(name).eval()
    x = torch.randn(batch, 3, model.img_size, model.img_size)
    with tempfile.TemporaryDirectory() as tmp:
        calibration = torch.randn(32, 3, model.img_size, model.img_size) if mode == "static" else None
        report = export_onnx(model, Path(tmp) / "m.onnx", int8=mode, calibration=calibration)
        opts = ort.SessionOptions()
        opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / "profile")
        opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
        session = ort.InferenceSession(str(report.int8_path), opts, providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        for _ in range(calls + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + e["dur"]
    total = sum(by_op.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    return [{"model": name, "form": f"onnxruntime int8 {mode}", "op": op, "share": d / total} for op, d in top]


MATMUL_OPS = {
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::mkldnn_convolution",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "ConvInteger",
    "QLinearConv",
    "MatMul",
    "Conv",
}


def _matmul_shares(prof: list[dict]) -> dict[tuple[str, str], float]:
    """(model, form) -> the share of its profiled run time spent in matrix multiplies and convolutions."""
    out: dict[tuple[str, str], float] = {}
    for r in prof:
        key = (r["model"], r["form"])
        out[key] = out.get(key, 0.0) + (r["share"] if r["op"] in MATMUL_OPS else 0.0)
    return out


def profiles() -> list[dict]:
    from targets import op_profile  # the eager fp32 profile of benchmarks/targets.py

    rows = []
    for name in LARGE:
        for mode in ("dynamic", "static"):
            rows += ort_profile(name, mode)
        eager = op_profile(name, 16)
        rows += [{"model": name, "form": "eager fp32", "op": r["op"], "share": r["share"]} for r in eager]
        print(f"{name}: profiles done", flush=True)
    return rows


def _provenance(meta: dict) -> str:
    """Which command measured which parts, on which machine: parts that share both are named together."""
    commands, machines = meta.get("commands", {}), meta.get("machines", {})
    groups: dict[tuple[str, str], list[str]] = {}
    for part in PARTS:
        if part in commands:
            groups.setdefault((commands[part], machines.get(part, meta["machine"])), []).append(part)
    if not groups:
        return f"`{meta['command']}` on {meta['machine']}"
    return "; ".join(f"`{c}` ({', '.join(parts)}) on {m}" for (c, m), parts in groups.items())


def markdown(
    meta: dict, large: list[dict], fused: list[dict], small: list[dict], acc: list[dict], prof: list[dict]
) -> list[str]:
    lines = [
        "# Deployment speed: int8, single-image latency, fused fp32",
        "",
        f"Generated by {_provenance(meta)}; allocator: {meta['allocator'] or 'default'}. "
        "Within each table block every row was timed round-robin in one run (median of the repeats); int8 rows are "
        "held against an int8 matmul (MatMulInteger, uint8 x int8) timed in the same run, fp32 rows against an fp32 "
        "matmul.",
        "",
        "## 224-px models, batch 16",
        "",
        "| model | impl | backend | ms (p25-p75) | img/s | vs timm eager | of fp32 peak | of int8 peak |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in large:
        if r["impl"] in ("matmul-peak", "int8-matmul-peak"):
            lines.append(f"| {r['model']} | | | {r['median_ms']:.1f} | | | | |")
            continue
        int8 = f"{r['frac_of_int8_peak']:.0%}" if "int8" in r["backend"] and r.get("frac_of_int8_peak") else "-"
        lines.append(
            f"| `{r['model']}` | {r['impl']} | {r['backend']} | {r['median_ms']:.1f} ({r['p25_ms']:.1f}-"
            f"{r['p75_ms']:.1f}) | {r['img_per_s']:.1f} | {r['ratio_vs_timm']:.2f}x | {r['frac_of_peak']:.0%} "
            f"| {int8} |"
        )
    lines += [
        "",
        "## Fused fp32 forward passes (torch.compile options), batch 16",
        "",
        "| model | variant | ms | GFLOP/s | of fp32 peak | of the GEMMs-alone ceiling |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ceilings = {r["model"]: r["median_ms"] for r in fused if r["variant"] == CEILING}
    for r in fused:
        of_ceiling = f"{ceilings[r['model']] / r['median_ms']:.0%}" if r["model"] in ceilings else "-"
        lines.append(
            f"| `{r['model']}` | {r['variant']} | {r['median_ms']:.1f} | {r['gflop_per_s']:.0f} "
            f"| {r['frac_of_peak']:.0%} | {of_ceiling} |"
        )
    if ceilings:
        lines += [
            "",
            "The ceiling row replays the model's own matrix multiplies and convolutions, at its shapes and with its "
            "operands, with nothing between them: fusing the elementwise work into the GEMMs can at best remove that "
            "work, so its share of the square-matmul peak bounds what an fp32 forward pass of these models can reach "
            "here, up to the run's timing noise (a compiled row at or a few percent above 100% of the ceiling has "
            "reached it; the compiled GEMMs may also pick other kernels than the replayed ones).",
        ]
    lines += [
        "",
        "## Small 28-px models, batch 1 (one image's latency)",
        "",
        "| model | threads | backend | median ms | p99 ms | fastest |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in small:
        lines.append(
            f"| `{r['model']}` | {r['threads']} | {r['backend']} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{'**yes**' if r.get('best') else ''} |"
        )
    lines += [
        "",
        "## int8 accuracy on the whole Fashion-MNIST test set (10 000 images)",
        "",
        "| model file | fp32 top-1 | dynamic int8 (drop) | static int8 (drop) |",
        "|---|---:|---:|---:|",
    ]
    for r in acc:
        lines.append(
            f"| `{r['model']}` | {r['fp32_top1']:.2f} | {r['dynamic_top1']:.2f} ({r['dynamic_drop']:+.2f}) | "
            f"{r['static_top1']:.2f} ({r['static_drop']:+.2f}) |"
        )
    if prof:
        lines += [
            "",
            "## Where the time goes (batch 16; share of the run time by operator)",
            "",
            "| model | form | operator | share |",
            "|---|---|---|---:|",
        ]
        lines += [f"| `{r['model']}` | {r['form']} | {r['op']} | {r['share']:.0%} |" for r in prof]
        lines += [""]
        for (model, form), share in _matmul_shares(prof).items():
            lines.append(
                f"- `{model}`, {form}: matrix multiplies (and the patch convolution) hold {share:.0%} of the "
                "run; the rest is elementwise work, layout copies and, for int8, (de)quantization."
            )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|---|"]
    for t in meta["targets"]:
        met = "yes" if t["met"] else "no (" + t["miss"] + ")"
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return lines


def targets(large: list[dict], fused: list[dict], small: list[dict], acc: list[dict]) -> list[dict]:
    out = []
    for name in LARGE:
        ours = [r for r in large if r["model"] == name and r["impl"] == "mlpvision" and "int8" in r["backend"]]
        best = max(ours, key=lambda r: r["ratio_vs_timm"])
        ok = best["ratio_vs_timm"] >= INT8_TARGET
        out.append(
            {
                "target": f"`{name}` batch 16: best int8 >= {INT8_TARGET:.1f}x timm eager fp32",
                "measured": f"{best['ratio_vs_timm']:.2f}x ({best['backend']})",
                "met": ok,
                "miss": f"{INT8_TARGET - best['ratio_vs_timm']:.2f}x short",
            }
        )
        frac = max(r["frac_of_peak"] for r in fused if r["model"] == name and r["variant"] != CEILING)
        ceiling = [r["frac_of_peak"] for r in fused if r["model"] == name and r["variant"] == CEILING]
        limit = f"; the model's GEMMs alone reach {ceiling[0]:.0%}" if ceiling else ""
        out.append(
            {
                "target": f"`{name}` fp32 forward >= {PEAK_TARGET:.0%} of the matmul peak",
                "measured": f"{frac:.0%}",
                "met": frac >= PEAK_TARGET,
                "miss": f"{100 * (PEAK_TARGET - frac):.0f} points short{limit}",
            }
        )
    for name in SMALL:
        for threads in (1, 2):
            rows = [r for r in small if r["model"] == name and r["threads"] == threads]
            eager = next(r for r in rows if r["backend"] == "eager")["median_ms"]
            best = min(rows, key=lambda r: r["median_ms"])
            ratio = eager / best["median_ms"]
            out.append(
                {
                    "target": f"`{name}` batch 1, {threads} thread(s): best >= {LATENCY_TARGET:.1f}x eager",
                    "measured": f"{ratio:.2f}x ({best['backend']})",
                    "met": ratio >= LATENCY_TARGET,
                    "miss": f"{LATENCY_TARGET - ratio:.2f}x short",
                }
            )
    for r in acc:  # both int8 modes: the fastest differs between models and batch sizes
        drop = max(r["dynamic_drop"], r["static_drop"])
        out.append(
            {
                "target": f"`{r['model']}`: int8 drop <= {DROP_TARGET} point, dynamic and static",
                "measured": f"{r['dynamic_drop']:+.2f} / {r['static_drop']:+.2f}",
                "met": drop <= DROP_TARGET,
                "miss": f"{drop - DROP_TARGET:.2f} points over",
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=PARTS, help="parts to measure again (default: all)")
    parser.add_argument("--render", action="store_true", help="only rewrite the page from the last run's JSON")
    args, allocator, command = start(parser, repeats=20)
    previous = ROOT / "docs" / "deploy_speed.json"
    if args.only == [] or args.render:
        args.only = []  # nothing measured: the page is rebuilt from the JSON
    rows = json.loads(previous.read_text())["rows"] if args.only is not None and previous.is_file() else {}
    measured = {
        "large": lambda: large_models(args.repeats),
        "fused": lambda: fused_fp32(args.repeats),
        "small": lambda: small_models(max(args.repeats, 50)),
        "accuracy": int8_accuracy,
        "profile": profiles,
    }
    last = json.loads(previous.read_text())["meta"] if rows else {}
    commands = last.get("commands") or {part: last["command"] for part in rows if rows[part]}
    machines = last.get("machines") or {part: last["machine"] for part in commands}
    for part in PARTS if args.only is None else args.only:
        rows[part] = measured[part]()
        commands[part], machines[part] = command, machine()
    rows = {part: rows.get(part, []) for part in PARTS}
    now = machine() if args.only is None or args.only else last.get("machine", machine())  # --render keeps it
    shown = command if args.only is None or args.only else last.get("command", command)
    meta = {"command": shown, "commands": commands, "machines": machines, "machine": now}
    meta["allocator"] = allocator
    complete = all(rows.values())
    meta["targets"] = targets(rows["large"], rows["fused"], rows["small"], rows["accuracy"]) if complete else []
    parts = [rows[p] for p in PARTS]
    write_results("deploy_speed", meta, rows, markdown(meta, *parts))


if __name__ == "__main__":
    main()
