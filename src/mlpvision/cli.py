"""The ``mlpvision`` command line: argument parsing and printing only; each subcommand calls the library.

The flags of ``mlpvision train`` are generated from :class:`~mlpvision.train.TrainConfig`'s fields (and the
augmentation's), each with its field's comment as help text and its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from torch.utils.data import DataLoader

from ._version import __version__
from .data import AugmentConfig, calibration_images, evaluation_set
from .deploy import OrtModel, classify_samples, deploy_checkpoint, export_onnx, predict_files, run_bench
from .errors import MlpVisionError
from .fields import field_docs
from .io import DATA_KEY, check_writable, load_checkpoint, read_metadata, write_text
from .lab import (
    Settings,
    check_data,
    data_suffix,
    headline_vs_cnn,
    ledger,
    plan,
    published_models,
    run_lab,
    write_report,
)
from .models import get_spec
from .models.zoo import describe_models, markdown_table
from .runtime import tune_cpu_allocator
from .train import TrainConfig, evaluate, save_confusion_png, train

console = Console() if sys.stdout.isatty() else Console(width=160)  # logs keep whole table rows


def _cmd_models(args: argparse.Namespace) -> int:
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
    check_writable(args.output)
    r = deploy_checkpoint(args.input, args.output, batch_size=args.batch_size)
    print(f"{r.model}: {r.params_before / 1e6:.3f} M parameters in train form -> {r.params_after / 1e6:.3f} M deployed")
    print(f"max |train - deploy| on random input: {r.max_abs_diff:.3g} (output scale {r.output_scale:.3g})")
    print(f"saved {r.path}")
    return 0


def _load_recipe(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        with open(path) as f:
            recipe = yaml.safe_load(f) or {}
    except OSError as e:
        raise MlpVisionError(f"cannot read recipe {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise MlpVisionError(f"recipe {path} is not valid YAML: {e}") from None
    if not isinstance(recipe, dict):
        raise MlpVisionError(f"recipe {path} must be a mapping of option: value")
    return recipe


def _model_args(items: list[str] | None) -> dict:
    """``--model-arg KEY=VALUE`` flags -> a dict, each value parsed as YAML (numbers, lists, booleans)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MlpVisionError(f"--model-arg takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


# ---- `train`: flags generated from the config's fields ----------------------------------------------------------

_AUG_PREFIX = "aug."  # argparse dest of an augmentation flag: aug.crop_padding


def _scalar(hint) -> type:
    """The argparse type of a field: its one non-None type (str for ``str | list[str] | None``)."""
    options = [a for a in typing.get_args(hint) or (hint,) if a is not type(None)]
    return next((a for a in options if a in (bool, int, float)), str)


def _add_field_flag(p: argparse.ArgumentParser, name: str, hint, default, help_text: str, dest: str) -> None:
    flag = "--" + name.replace("_", "-")
    shown = "none" if default is None or default == {} else default
    text = f"{help_text} (default: {shown})" if help_text else f"(default: {shown})"
    kind = _scalar(hint)
    if name == "model_args":
        p.add_argument(
            "--model-arg",
            dest=dest,
            action="append",
            metavar="KEY=VALUE",
            help=f"{help_text}; repeatable, each VALUE read as YAML (default: none)",
        )
    elif name == "teacher":
        p.add_argument(
            flag,
            dest=dest,
            action="append",
            metavar="MODEL_FILE",
            help=f"{help_text}; repeat for an ensemble (default: none)",
        )
    elif kind is bool:
        p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
    else:
        p.add_argument(flag, dest=dest, type=kind, default=None, metavar=name.upper(), help=text)


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (the augmentation's fields flattened), None when not given."""
    group = p.add_argument_group("training options (also recipe keys)")
    for f in field_docs(TrainConfig):
        if f.hint is AugmentConfig:
            aug = p.add_argument_group("augmentation (recipe key: aug)")
            for a in field_docs(AugmentConfig):
                _add_field_flag(aug, a.name, a.hint, getattr(f.default, a.name), a.help, _AUG_PREFIX + a.name)
        else:
            _add_field_flag(group, f.name, f.hint, f.default, f.help, f.name)


def _train_overrides(args: argparse.Namespace) -> dict:
    """The train flags the user gave, as TrainConfig overrides (augmentation under ``aug``)."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    overrides: dict = {"aug": {}}
    for f in field_docs(TrainConfig):
        if f.hint is AugmentConfig:
            overrides["aug"] = {
                a.name: given[_AUG_PREFIX + a.name] for a in field_docs(AugmentConfig) if _AUG_PREFIX + a.name in given
            }
        elif f.name in given:
            overrides[f.name] = given[f.name]
    if "model_args" in overrides:
        overrides["model_args"] = _model_args(overrides["model_args"])
    if "teacher" in overrides and len(overrides["teacher"]) == 1:
        overrides["teacher"] = overrides["teacher"][0]
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_recipe(_load_recipe(args.config), _train_overrides(args))
    is_main = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format="%(message)s")
    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not is_main or args.quiet, transient=True) as bar:
        task = bar.add_task("train", total=1, epoch=1, loss=0.0, ips=0.0)

        def progress(p: dict) -> None:
            ips = p["images"] / max(p["seconds"], 1e-9)
            bar.update(task, completed=p["step"], total=p["steps"], epoch=p["epoch"] + 1, loss=p["loss"], ips=ips)

        summary = train(cfg, resume=args.resume, progress=progress)
    if not is_main:
        return 0
    table = Table(title=f"{cfg.model} on {cfg.data}")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("epochs / steps", f"{summary['epochs_done']} / {summary['steps']}"),
        ("training time", f"{summary['train_seconds'] / 60:.1f} min"),
        ("best validation top-1", "-" if summary["best_val_top1"] is None else f"{summary['best_val_top1']:.2f}%"),
        ("test top-1 (best on validation)", f"{summary['test_top1_best']:.2f}%"),
        ("test top-1 (final)", f"{summary['test_top1_final']:.2f}%"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    for k, v in summary["files"].items():
        console.print(f"{k}: {v}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.confusion:
        check_writable(args.confusion)
    model = OrtModel(args.checkpoint) if args.checkpoint.endswith(".onnx") else load_checkpoint(args.checkpoint)
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
        print(json.dumps(out, indent=2))
        return 0
    table = Table(title=f"{model.model_name} on {info.name} ({args.split}, {result.num_images} images)")
    table.add_column("class")
    table.add_column("top-1", justify="right")
    for cls, acc in out["per_class"].items():
        table.add_row(cls, f"{acc:.2f}%")
    console.print(table)
    console.print(f"top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}%, loss {result.loss:.4f}")
    if args.confusion:
        console.print(f"confusion matrix: {out['confusion_png']}")
    return 0


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cmd_bench(args: argparse.Namespace) -> int:
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
        model_args=_model_args(args.model_arg),
    )
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2) + "\n")
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
            _fmt(r["img_per_s"], ".1f"),
            _fmt(r["gflop_per_s"], ".1f"),
            _fmt(r["frac_of_peak"], ".0%"),
            _fmt(r["frac_of_int8_peak"] if "int8" in r["backend"] else None, ".0%"),
            _fmt(r["peak_mem_mb"], ".1f"),
        ]
        if "ratio_vs_timm" in r:
            cells.append(_fmt(r["ratio_vs_timm"], ".2f") + ("x" if r["ratio_vs_timm"] else ""))
        table.add_row(*cells)
    console.print(table)
    for r in rows:
        if r.get("best"):
            console.print(f"best backend: {r['backend']} ({r['why']})")
    if args.json:
        console.print(f"rows written to {args.json}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    check_writable(args.onnx)
    model = load_checkpoint(args.checkpoint, device="cpu")
    data = read_metadata(args.checkpoint).get(DATA_KEY)
    calibration = None
    if args.int8 == "static":
        calibration = calibration_images(args.checkpoint, args.calibration_images, args.data_dir)
    meta = {DATA_KEY: data} if data else None
    r = export_onnx(model, args.onnx, int8=args.int8 or False, calibration=calibration, metadata=meta)
    form = "deploy form (re-parameterized)" if r.reparameterized else "model"
    print(f"{model.model_name}: {form} exported to {r.path}")
    print(f"max |onnxruntime - torch| on random input: {r.max_abs_diff:.3g} (output scale {r.output_scale:.3g})")
    if r.int8_path is not None:
        on = f"{len(calibration)} calibration images" if calibration is not None else "the check batch"
        print(
            f"int8 ({r.int8_mode} quantization): {r.int8_path}; max |int8 - torch| {r.int8_max_abs_diff:.3g}, "
            f"same top-1 class on {r.int8_top1_agreement:.1%} of {on}"
        )
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    settings = Settings.tiny() if args.quick else Settings.full()
    settings = dataclasses.replace(settings, data=args.data)
    check_data(args.data)
    suffix = data_suffix(args.data)
    results = args.results or f"results/lab{suffix}"
    runs = args.runs or f"runs/lab{suffix}"
    if args.list:
        for exp in plan(settings):
            print(f"{exp.key:20s} {len(exp.runs):3d} runs  {exp.title}")
        return 0
    if args.plan:
        _print_ledger(ledger(settings, Path(results), Path(runs), args.only))
        return 0
    headline = [Path(h) for h in args.headline or []]
    if not headline and args.results is None and not suffix:  # the default Fashion-MNIST report shows every
        headline = published_models("results")  # published one, headline models before teachers
    if not args.report_only:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        run_lab(settings, results, runs, args.only, args.data_dir, progress=console.print)
        done = (Path(results) / "headline_vs_cnn.json").is_file()
        wanted = not args.only or "headline_vs_cnn" in args.only
        if headline and wanted and not settings.quick and not done:
            console.print("headline_vs_cnn: evaluating and timing the published models")
            headline_vs_cnn(headline, Path(results), Path(args.docs) / "figures")
    out = write_report(results, args.docs, headline)
    console.print(f"report: {out}")
    return 0


def _print_ledger(rows: list[dict]) -> None:
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
    console.print(table)


def _cmd_predict(args: argparse.Namespace) -> int:
    for p in predict_files(args.checkpoint, args.images, args.top_k, args.invert):
        print(f"{p.path}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.guesses))
        for warning in p.warnings:
            print(f"mlpvision: warning: {p.path}: {warning}", file=sys.stderr)
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

    p = sub.add_parser(
        "train",
        help="train a model (resumable; torchrun for several processes)",
        description="Train a model. Every option is also a key of a recipe file (--config); flags override the "
        "recipe, augmentation flags refine its `aug` mapping.",
    )
    p.add_argument("--config", metavar="RECIPE", help="recipe file (YAML) of the options below (default: none)")
    p.add_argument(
        "--resume", action="store_true", help="continue OUT/last.safetensors when it exists (default: start afresh)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: show one)")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a model file: top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("--checkpoint", required=True, help="model file (.safetensors) or exported ONNX file")
    p.add_argument("--data", default=None, help="data set (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None, help="folder of the data set's files")
    p.add_argument("--split", choices=("test", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix plot here")
    p.add_argument("--json", action="store_true", help="print a JSON object (top1 in percent)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("bench", help="time a model side by side with timm and the machine's matmul peak")
    p.add_argument("--model", required=True, help="registered model name")
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
    p.add_argument("--compare", choices=("timm",), default=None, help="add timm's model and ratio_vs_timm")
    p.add_argument(
        "--deploy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the deploy form of re-parameterizable models (default: yes)",
    )
    p.add_argument("--repeats", type=int, default=20, help="timed calls per candidate (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per candidate (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model config override (repeatable)")
    p.set_defaults(func=_cmd_bench)

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
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("lab", help="run the inductive-bias experiments (resumable) and write docs/results.md")
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the whole pipeline in minutes")
    p.add_argument("--only", nargs="+", metavar="EXPERIMENT", help="run only these experiments (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and their number of runs")
    p.add_argument(
        "--plan", action="store_true", help="print each experiment's runs and estimated CPU hours on this machine"
    )
    p.add_argument("--report-only", action="store_true", help="only regenerate the report from the results")
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
    p.set_defaults(func=_cmd_lab)

    p = sub.add_parser(
        "predict",
        help="classify image files with a model file",
        description="Classify image files. Each is prepared as the model's training images were: grey or colour, "
        "resized and centre-cropped to the model's input, normalised with the training set's statistics. "
        "Fashion-MNIST models expect one light object on a black background, centred and filling the frame; "
        "a photo on a light background needs --invert, and a warning says when an image looks far from the "
        "training images.",
    )
    p.add_argument("--checkpoint", required=True, help="model file (.safetensors)")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image (default: %(default)s)")
    p.add_argument(
        "--invert", action="store_true", help="invert the images first: dark objects on light -> light on dark"
    )
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG)")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; user errors print one line on stderr and return 2."""
    args = build_parser().parse_args(argv)
    tune_cpu_allocator()
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
