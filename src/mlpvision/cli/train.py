"""``mlpvision train``: flags generated from :class:`~mlpvision.train.TrainConfig`'s fields (and the augmentation's),
each with its field's comment as help text and its default.

The fields are read from the configs' source files, not imported, so that ``mlpvision train --help`` answers
without importing torch (a test checks that they equal the imported classes' fields).
"""

from __future__ import annotations

import argparse
import logging
import os
import typing
from functools import cache
from pathlib import Path

from ..fields import FieldDoc, source_dataclass, source_field_docs
from .common import add_limit_flags, console, load_recipe, model_args

_AUG_PREFIX = "aug."  # argparse dest of an augmentation flag: aug.crop_padding
_PACKAGE = Path(__file__).resolve().parents[1]


@cache
def config_fields() -> tuple[tuple[FieldDoc, ...], type]:
    """(TrainConfig's fields, the augmentation config class), read from source; imported when that fails."""
    try:
        aug = source_dataclass(_PACKAGE / "data" / "augment.py", "AugmentConfig")
        return source_field_docs(_PACKAGE / "train" / "config.py", "TrainConfig", {"AugmentConfig": aug}), aug
    except (OSError, ValueError):  # no source shipped, or a field the reader does not know: import the real ones
        from ..data import AugmentConfig
        from ..fields import field_docs
        from ..train import TrainConfig

        return field_docs(TrainConfig), AugmentConfig


def _aug_fields(aug: type) -> tuple[FieldDoc, ...]:
    from ..fields import field_docs

    return getattr(aug, "__source_field_docs__", None) or field_docs(aug)


def _scalar(hint) -> type:
    """The argparse type of a field: its one non-None type (str for ``str | list[str] | None``)."""
    options = [a for a in typing.get_args(hint) or (hint,) if a is not type(None)]
    return next((a for a in options if a in (bool, int, float)), str)


def _add_field_flag(p: argparse.ArgumentParser, f: FieldDoc, default, dest: str) -> None:
    """The flag of config field ``f`` (its comment the help, its declared choices listed)."""
    name, hint, help_text = f.name, f.hint, f.help
    choices = f.limits.choices if f.limits is not None else None
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
    elif choices:
        text = f"{help_text}: {', '.join(choices)} (default: {shown})"
        p.add_argument(flag, dest=dest, choices=choices, default=None, metavar="{" + ",".join(choices) + "}", help=text)
    elif kind is bool:
        p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
    else:
        p.add_argument(flag, dest=dest, type=kind, default=None, metavar=name.upper(), help=text)


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (the augmentation's fields flattened), None when not given."""
    fields, aug_cls = config_fields()
    group = p.add_argument_group("training options (also recipe keys)")
    for f in fields:
        if f.hint is aug_cls:
            aug = p.add_argument_group("augmentation (recipe key: aug)")
            for a in _aug_fields(aug_cls):
                _add_field_flag(aug, a, getattr(f.default, a.name), _AUG_PREFIX + a.name)
        else:
            _add_field_flag(group, f, f.default, f.name)


def train_overrides(args: argparse.Namespace) -> dict:
    """The train flags the user gave, as TrainConfig overrides (augmentation under ``aug``)."""
    fields, aug_cls = config_fields()
    given = {k: v for k, v in vars(args).items() if v is not None}
    overrides: dict = {"aug": {}}
    for f in fields:
        if f.hint is aug_cls:
            overrides["aug"] = {
                a.name: given[_AUG_PREFIX + a.name] for a in _aug_fields(aug_cls) if _AUG_PREFIX + a.name in given
            }
        elif f.name in given:
            overrides[f.name] = given[f.name]
    if "model_args" in overrides:
        overrides["model_args"] = model_args(overrides["model_args"])
    if "teacher" in overrides and len(overrides["teacher"]) == 1:
        overrides["teacher"] = overrides["teacher"][0]
    return overrides


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a model (resumable; torchrun for several processes)",
        description="Train a model. Every option is also a key of a recipe file (--config); flags override the "
        "recipe, augmentation flags refine its `aug` mapping.",
        epilog="examples: a quick run in seconds: mlpvision train --model mixer_t4_28 --epochs 1 --train-subset 500 "
        "--out runs/quick; a shipped recipe: mlpvision train --config repmlp_fast_28 --out runs/fast",
    )
    p.add_argument(
        "--config",
        metavar="RECIPE",
        help="recipe: a YAML file of the options below, or the name of a shipped recipe (e.g. repmlp_fast_28, "
        "mixer_t4_28, resmlp_tiny_12_28; all in the package's recipes/ folder) (default: none)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue OUT/last.safetensors when it exists (default: start afresh)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run already in OUT (default: refuse to replace it)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: show one)")
    add_limit_flags(p)
    _add_train_flags(p)
    return p


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ..train import TrainConfig, train

    cfg = TrainConfig.from_recipe(load_recipe(args.config), train_overrides(args))
    cfg.validate()  # every problem of the options, before the progress display starts
    is_main = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format="%(message)s")
    columns = (
        TextColumn("epoch {task.fields[epoch]} {task.description:<9}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console(), disable=not is_main or args.quiet, transient=True) as bar:
        task = bar.add_task("starting", total=None, epoch=1, unit="", detail="")

        def progress(p: dict) -> None:
            # training reports steps with their loss; validation and test report images
            phase = p.get("phase", "train")
            ips = p["images"] / max(p["seconds"], 1e-9)
            if phase == "train":
                detail, unit, phase = f"loss {p['loss']:.3f}, {ips:.0f} img/s", "steps", "training"
            else:
                detail, unit = f"{ips:.0f} img/s", "images"
                phase = {"validate": "validating", "test": "testing", "test best": "testing the best model"}.get(
                    phase, phase
                )
            bar.update(
                task,
                description=phase,
                completed=p["step"],
                total=p["steps"],
                epoch=p["epoch"] + 1,
                unit=unit,
                detail=detail,
            )

        summary = train(cfg, resume=args.resume, progress=progress, overwrite=args.overwrite)
    if not is_main:
        return 0
    table = Table(title=f"{cfg.model} on {cfg.data}")
    table.add_column("")
    table.add_column("value", justify="right")
    figure, name = ("miou", "mean IoU") if cfg.task == "segment" else ("top1", "top-1")
    best_val, best = summary[f"best_val_{figure}"], summary[f"test_{figure}_best"]
    rows = [
        ("epochs / steps", f"{summary['epochs_done']} / {summary['steps']}"),
        ("time: training", _seconds(summary["train_seconds"])),
        ("time: validation", _seconds(summary.get("val_seconds", 0.0))),
        ("time: test", _seconds(summary.get("test_seconds", 0.0))),
        (f"best validation {name}", "-" if best_val is None else f"{best_val:.2f}%"),
    ]
    if summary.get("best_is_final"):
        rows.append((f"test {name} (final = best on validation)", f"{best:.2f}%"))
    else:
        rows += [
            (f"test {name} (best on validation)", f"{best:.2f}%"),
            (f"test {name} (final)", f"{summary[f'test_{figure}_final']:.2f}%"),
        ]
    if cfg.task == "segment":
        rows.append(("test pixel accuracy (best on validation)", f"{summary['test_pixel_acc_best']:.2f}%"))
    for k, v in rows:
        table.add_row(k, v)
    console().print(table)
    for k, v in summary["files"].items():
        console().print(f"{k}: {v}")
    return 0
