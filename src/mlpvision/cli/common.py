"""What several commands share: the console, recipes and ``--model-arg`` parsing, number formatting."""

from __future__ import annotations

import sys
from functools import cache

from ..errors import MlpVisionError


@cache
def console():
    """The rich console every command prints tables to (whole rows when the output is not a terminal)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)  # logs keep whole table rows


def load_recipe(path: str | None) -> dict:
    """A recipe file (YAML mapping of training option: value); {} when ``path`` is None."""
    import yaml

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


def model_args(items: list[str] | None) -> dict:
    """``--model-arg KEY=VALUE`` flags -> a dict, each value parsed as YAML (numbers, lists, booleans)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MlpVisionError(f"--model-arg takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def fmt(value, spec: str) -> str:
    """``value`` formatted with ``spec``, or "-" when it is None."""
    return "-" if value is None else format(value, spec)
