"""A description of every registered model: family, size, cost, and its timm counterpart."""

from __future__ import annotations

from .complexity import count
from .registry import create_model, get_spec, list_models

__all__ = ["describe_model", "describe_models", "markdown_table"]


def describe_model(name: str) -> dict:
    """Name, family, description, input shape, classes, parameters and MACs of one registered model.

    The model is built on the ``meta`` device, so describing even the largest costs no memory.
    """
    spec = get_spec(name)
    model = create_model(name, device="meta")
    stats = count(model)
    cfg = spec.config
    return {
        "name": name,
        "family": spec.family,
        "description": spec.description,
        "paper": spec.paper,
        "img_size": cfg.img_size,
        "in_chans": cfg.in_chans,
        "num_classes": cfg.num_classes,
        "params": stats.params,
        "macs": stats.macs,
        "timm_name": spec.timm_name,
    }


def describe_models(pattern: str = "*") -> list[dict]:
    """:func:`describe_model` for every registered name matching ``pattern``, ordered by family then name."""
    rows = [describe_model(n) for n in list_models(pattern)]
    return sorted(rows, key=lambda r: (r["family"], r["name"]))


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`describe_models` rows (the README's model table)."""
    lines = [
        "| model | family | what | input | params (M) | GMACs | in timm |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {r['family']} | {r['description']} | {r['img_size']}x{r['img_size']}x{r['in_chans']} "
            f"| {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.3f} | {'yes' if r['timm_name'] else ''} |"
        )
    return "\n".join(lines) + "\n"
