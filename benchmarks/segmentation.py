"""Segmentation on the Fashion-MNIST scenes: train a recipe from scratch, measure its test mean IoU, its wall and
CPU time against the recipe's stated target, and draw predicted masks of a few test scenes.

Trains in this process through the library's engine (``mlpvision.train.train``, what ``mlpvision train --config
RECIPE`` runs), then updates docs/segmentation.json (one row per recipe: a run replaces its recipe's row and keeps
the others) and rewrites docs/segmentation.md and docs/segmentation_masks_RECIPE.png.

    python benchmarks/segmentation.py [--recipe recipes/seg_repmlpnet_64.yaml] [--out runs/segmentation/RECIPE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

from mlpvision.data import fashion_scenes, load_split, normalize
from mlpvision.data.segmentation import SCENE_CLASSES, SceneConfig
from mlpvision.io import load_checkpoint
from mlpvision.plotting import pyplot
from mlpvision.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def palette(n: int) -> torch.Tensor:
    """n distinct colours (n, 3) in [0, 1]; class 0 (background) black."""
    plt = pyplot()
    colours = torch.tensor([plt.get_cmap("tab10")(i % 10)[:3] for i in range(n - 1)])
    return torch.cat([torch.zeros(1, 3), colours])


def draw(model, path: Path, size: int, n: int = 6) -> None:
    """Test scenes, their true masks and the model's predicted masks, in three rows."""
    plt = pyplot()
    scenes = fashion_scenes("test", n, SceneConfig(size=size), seed=7)
    _, info = load_split("fashion-scenes", "train", img_size=size)
    with torch.no_grad():
        pred = model.eval()(normalize(scenes.images.float() / 255, info.mean, info.std)).argmax(1)
    colours = palette(len(SCENE_CLASSES))
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2))
    for i in range(n):
        panels = [(scenes.images[i, 0], "scene"), (colours[scenes.masks[i].long()], "truth")]
        for row, (img, title) in enumerate([*panels, (colours[pred[i]], "predicted")]):
            ax = axes[row, i]
            ax.imshow(img, cmap="gray" if row == 0 else None, vmin=0, vmax=255 if row == 0 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c].tolist()) for c in range(1, len(SCENE_CLASSES))]
    fig.legend(handles, SCENE_CLASSES[1:], loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle("Predicted masks on unseen test scenes", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# each shipped recipe's target, stated before its first measured run: test mean IoU (%) within a wall-time budget
TARGETS = {"seg_mixer_64": (50.0, 15.0), "seg_repmlpnet_64": (48.0, 15.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/seg_repmlpnet_64.yaml")
    parser.add_argument("--out", help="the run's folder (default: runs/segmentation/RECIPE; replaced if it exists)")
    parser.add_argument("--target", type=float, help="test mean IoU to reach (percent; default: the recipe's)")
    parser.add_argument("--budget-min", type=float, help="wall-time budget (minutes; default: the recipe's)")
    args = parser.parse_args()

    import yaml

    args.recipe = os.path.normpath(args.recipe)  # one row per recipe, however its path is written
    stem = Path(args.recipe).stem
    if stem not in TARGETS and (args.target is None or args.budget_min is None):
        parser.error(f"{stem} has no stated target: give --target and --budget-min before its first run")
    target, budget = TARGETS.get(stem, (args.target, args.budget_min))
    target = target if args.target is None else args.target
    budget = budget if args.budget_min is None else args.budget_min
    args.out = args.out or f"runs/segmentation/{stem}"
    recipe = yaml.safe_load(Path(ROOT, args.recipe).read_text())
    cfg = TrainConfig.from_recipe(recipe, {"out": str(Path(ROOT, args.out))})
    t0, c0 = time.perf_counter(), time.process_time()
    summary = train(cfg, overwrite=True)  # a measurement trains from scratch: its own earlier run is replaced
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    best = load_checkpoint(summary["files"]["best"])
    DOCS.mkdir(exist_ok=True)
    draw(best, DOCS / f"segmentation_masks_{stem}.png", best.img_size)
    row = {
        "recipe": args.recipe,
        "command": f"mlpvision train --config {args.recipe} --out {args.out}",
        "model": summary["model"],
        "epochs_done": summary["epochs_done"],
        "stopped_by_time_limit": summary["stopped_by_time_limit"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "train_seconds": summary["train_seconds"],
        "test_miou": summary["test_miou_best"],
        "test_pixel_acc": summary["test_pixel_acc_best"],
        "test_per_class_iou": dict(zip(SCENE_CLASSES, summary["test_per_class_iou_best"], strict=True)),
        "best_val_miou": summary["best_val_miou"],
        "params": summary["params"],
        "target_miou": target,
        "budget_seconds": budget * 60,
        "met": summary["test_miou_best"] >= target and wall <= budget * 60,
        "machine": machine(),
    }
    path = DOCS / "segmentation.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    rows = earlier.get("rows", {earlier["recipe"]: earlier} if "recipe" in earlier else {})
    rows[args.recipe] = row
    path.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    text = report(rows)
    (DOCS / "segmentation.md").write_text(text)
    print(text)


def report(rows: dict[str, dict]) -> str:
    """docs/segmentation.md: every recipe's row, its per-class IoU and its masks."""
    lines = [
        "# Segmentation: Fashion-MNIST scenes",
        "",
        "Generated by `python benchmarks/segmentation.py --recipe RECIPE`, one run per recipe (each row names its "
        "machine). Each recipe trains from scratch; the test figures are the model best on the validation split; "
        "the target was stated with the recipe, before its first measured run.",
        "",
        "| recipe | model | parameters | epochs | wall time | CPU time | test mean IoU | test pixel accuracy | target "
        "| machine |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in rows.items():
        stop = " (time limit)" if r["stopped_by_time_limit"] else ""
        lines.append(
            f"| `{name}` | {r['model']} | {r['params'] / 1e6:.2f} M | {r['epochs_done']}{stop} | "
            f"{r['wall_seconds'] / 60:.1f} min | {r['cpu_seconds'] / 60:.1f} min | {r['test_miou']:.2f}% | "
            f"{r['test_pixel_acc']:.2f}% | mean IoU >= {r['target_miou']:.0f}% within "
            f"{r['budget_seconds'] / 60:.0f} min: {'**met**' if r['met'] else '**not met**'} | {r['machine']} |"
        )
    names = list(rows)
    lines += [
        "",
        "Reproduce a row with its command: " + "; ".join(f"`{rows[n]['command']}`" for n in names) + ".",
        "",
        "| class | " + " | ".join(rows[n]["model"] for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for c in SCENE_CLASSES:
        lines.append(f"| {c} | " + " | ".join(f"{rows[n]['test_per_class_iou'][c]:.1f}%" for n in names) + " |")
    for n in names:
        lines += ["", f"![predicted masks of {rows[n]['model']}](segmentation_masks_{Path(n).stem}.png)"]
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    main()
