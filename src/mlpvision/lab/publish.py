"""Publishing a trained model under ``results/``: the validation-selected model in its deploy form, checked to be
all-MLP (unless it is a distillation teacher or a deployment reference), with its recipe, curves, log and an
``eval.json`` written by the same evaluation as ``mlpvision eval``; and the list of what has been published."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch.utils.data import DataLoader

from ..data import plain_split
from ..errors import ConfigError
from ..io import DATA_KEY, load_checkpoint, read_metadata, save_model, shown_path, write_json, write_text
from ..reparam import non_mlp_layers, reparameterize
from ..train import evaluate
from .spec import read_mapping

__all__ = ["MAX_BYTES", "REFERENCE_ROLE", "TARGET", "TEACHER_ROLE", "publish", "published_models"]

TEACHER_ROLE = "distillation teacher"  # the "role" in eval.json of a model published as a teacher
# the "role" of a small trained model of a family (Mixer, ResMLP) published so that deployment checks (the int8
# accuracy cost) cover that family; published under results/reference/, out of the headline comparison
REFERENCE_ROLE = "deployment reference"
MAX_BYTES = 50 * 10**6  # a published model file stays within 50 MB
TARGET = 95.0  # the headline all-MLP model's Fashion-MNIST test top-1 target (%)
_RUN_FILES = ("metrics.csv", "metrics.json", "summary.json", "config.json", "train.log")


def publish(run: Path, dest: Path, recipe: Path, root: Path, role: str | None = None) -> dict:
    """Publishes the run's validation-selected model from ``run`` to ``dest``; returns its eval.json.

    Paths in the published text files are shown relative to the repository ``root`` (or by the run folder's
    name), never as a machine's absolute paths. Without a ``role`` the model is a headline model: it must be
    all-MLP and is held to the target; a ``role`` (``TEACHER_ROLE``, ``REFERENCE_ROLE``) lifts both.
    """
    if role not in (None, TEACHER_ROLE, REFERENCE_ROLE):
        raise ConfigError(f"unknown role {role!r}: use {TEACHER_ROLE!r} or {REFERENCE_ROLE!r}")
    best = run / "best.safetensors"
    model = reparameterize(load_checkpoint(best, device="cpu").eval())
    offending = non_mlp_layers(model)
    if offending and role is None:
        raise ConfigError("not all-MLP after deployment: " + "; ".join(offending))
    data_meta = {DATA_KEY: read_metadata(best)[DATA_KEY]}
    out = save_model(model, dest / "model.safetensors", data_meta)
    dtype = "float32"
    if out.stat().st_size > MAX_BYTES:  # half the bytes; evaluation upcasts to float32
        out = save_model(model.half(), dest / "model.safetensors", data_meta)
        dtype = "float16"
    for name in _RUN_FILES:
        if (run / name).is_file():  # paths in the text shown as in eval.json
            text = (run / name).read_text().replace(str(run.resolve()), shown_path(run, root, run))
            write_text(dest / name, text.replace(f"{root.resolve()}/", ""))
    for name in ("curves.png", "confusion.png"):
        if (run / name).is_file():
            shutil.copy(run / name, dest / name)
    shutil.copy(recipe, dest / "recipe.yaml")
    # the published file, evaluated as `mlpvision eval --checkpoint results/<run>/model.safetensors` does
    saved = load_checkpoint(out, device="cpu").float()
    test, info = plain_split("fashion-mnist", "test")
    result = evaluate(saved, DataLoader(test, batch_size=256), info.num_classes)
    summary = json.loads((run / "summary.json").read_text())
    shown = shown_path(out, root, dest)
    target = {"role": role} if role else {"target_top1": TARGET, "met": result.top1 >= TARGET}
    report = {
        "recipe": shown_path(dest / "recipe.yaml", root, dest),
        "file": shown,
        "bytes": out.stat().st_size,
        "dtype": dtype,
        "params": sum(p.numel() for p in saved.parameters()),
        "all_mlp": not offending,
        "selected_on": "validation split",
        "best_epoch": summary["best_epoch"],
        "best_val_top1": summary["best_val_top1"],
        "test_top1": result.top1,
        "test_top5": result.top5,
        **target,
        "command": f"mlpvision eval --checkpoint {shown} --data fashion-mnist",
    }
    write_json(dest / "eval.json", report)
    return report


def _is_teacher(folder: Path) -> bool:
    """Whether ``folder`` holds a published distillation teacher."""
    published = folder / "eval.json"
    return published.is_file() and read_mapping(published, "published eval file").get("role") == TEACHER_ROLE


def published_models(root: str | Path = "results") -> list[Path]:
    """The published folders under ``root`` (those holding an eval.json): headline models, then teachers, each
    group by name."""
    return sorted((p.parent for p in Path(root).glob("*/eval.json")), key=lambda f: (_is_teacher(f), f.name))
