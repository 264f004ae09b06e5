"""What several commands share: the console, recipes and ``--model-arg`` parsing, checks of a command's own flags,
the resource-limit flags, printing of untrusted text, number formatting."""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path

from ..errors import ConfigError, MlpVisionError, printable
from ..fields import Limits


@cache
def console():
    """The rich console every command prints tables to (whole rows when the output is not a terminal)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)  # logs keep whole table rows


RECIPES = Path(__file__).resolve().parents[1] / "recipes"  # the recipes shipped with the package


def recipe_names() -> list[str]:
    """The names of the shipped recipes (``--config NAME``)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def find_recipe(name: str) -> Path:
    """A recipe by file path, or by the name of a shipped recipe (``repmlp_fast_28`` or ``repmlp_fast_28.yaml``)."""
    path = Path(name)
    if path.is_file() or path.parent != Path("."):
        return path
    shipped = RECIPES / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if shipped.is_file():
        return shipped
    raise MlpVisionError(
        f"no recipe file {name!r} here and no shipped recipe of that name; shipped: {', '.join(recipe_names())}"
    )


def load_recipe(path: str | None) -> dict:
    """A recipe (YAML mapping of training option: value), by file path or shipped name; {} when ``path`` is None.
    Read as untrusted input: a regular file of at most 1 MB, YAML without alias bombs or deep nesting
    (:mod:`mlpvision.io.files`)."""
    from ..io.files import MAX_YAML_BYTES, load_yaml, read_bounded

    if path is None:
        return {}
    path = str(find_recipe(path))
    recipe = load_yaml(read_bounded(path, "recipe", MAX_YAML_BYTES), f"recipe {path}") or {}
    if not isinstance(recipe, dict):
        raise MlpVisionError(f"recipe {path} must be a mapping of option: value")
    return recipe


def model_args(items: list[str] | None) -> dict:
    """``--model-arg KEY=VALUE`` flags -> a dict, each value parsed as YAML (numbers, lists, booleans)."""
    from ..io.files import load_yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MlpVisionError(f"--model-arg takes KEY=VALUE, got {printable(item, 100)}")
        out[key] = load_yaml(value, f"--model-arg {printable(key, 60)}")
    return out


def check_range(flag: str, value, limits: Limits) -> None:
    """A command's own numeric flag, checked as config fields are (:class:`~mlpvision.fields.Limits`)."""
    why = limits.problem(value)
    if why:
        raise ConfigError(f"{flag} {why}")


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    """The resource limits of a command that reads model files or images (see :mod:`mlpvision.limits`)."""
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image (width x height) to decode (default: 67108864)",
    )
    p.add_argument(
        "--max-params",
        type=int,
        default=None,
        metavar="N",
        help="largest model a model file's config may describe (default: 500000000)",
    )


def shown(text) -> str:
    """Untrusted text (a class name, a model name, a path) for the rich console: control characters escaped, long
    values cut, rich markup inert."""
    from rich.markup import escape

    return escape(printable(str(text), 200))


def fmt(value, spec: str) -> str:
    """``value`` formatted with ``spec``, or "-" when it is None."""
    return "-" if value is None else format(value, spec)


MODEL_FILE_HELP = "model file: .safetensors (written by train, deploy) or .onnx (written by export; float32 or int8)"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "auto (a GPU when CUDA is available, else the CPU), cpu or cuda (default: %(default)s)"
