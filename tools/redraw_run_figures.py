"""Redraws the figures of published runs (results/NAME/) with the current plotting: curves.png from the run's
metrics.json, and with --confusion also confusion.png, by evaluating the published model.safetensors on the test
split of its data set (what the published figure shows: the selected model on the test set).

    python tools/redraw_run_figures.py [--confusion] [results/NAME ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch.utils.data import DataLoader

from mlpvision.data import evaluation_set
from mlpvision.io import load_checkpoint
from mlpvision.train import evaluate, save_confusion_png
from mlpvision.train.metrics import plot_curves

ROOT = Path(__file__).resolve().parents[1]


def title(folder: Path) -> str:
    cfg = json.loads((folder / "config.json").read_text())
    subset = f", {cfg['train_subset']} training images" if cfg.get("train_subset") else ""
    return f"{cfg['model']} on {cfg['data']}{subset} (published as {folder.name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--confusion", action="store_true", help="also evaluate each model and redraw confusion.png")
    args = parser.parse_args()
    published = (p.parent for p in (ROOT / "results").glob("**/metrics.json"))
    folders = args.folders or sorted(
        f for f in published if not f.relative_to(ROOT / "results").parts[0].startswith("lab")
    )
    for folder in folders:
        plot_curves(json.loads((folder / "metrics.json").read_text()), folder / "curves.png", title(folder))
        print(f"redrew {folder / 'curves.png'}")
        if args.confusion and (folder / "model.safetensors").is_file():
            model = load_checkpoint(folder / "model.safetensors")
            ds, info = evaluation_set(folder / "model.safetensors")
            result = evaluate(model, DataLoader(ds, batch_size=256), info.num_classes)
            heading = f"{title(folder)}\ntest split, model.safetensors"
            save_confusion_png(result.confusion, info.classes, folder / "confusion.png", heading)
            print(f"redrew {folder / 'confusion.png'} (test top-1 {result.top1:.2f}%)")


if __name__ == "__main__":
    main()
