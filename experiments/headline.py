"""The headline all-MLP Fashion-MNIST model: train (resumable) with its recipe, then publish it under results/.

    nohup python experiments/headline.py > runs/allmlp_headline.log 2>&1 &   # trains, resuming after a stop
    python experiments/headline.py --publish-only                          # publishes a finished run

Publishing takes the model selected on the validation split (best.safetensors), converts it to its deploy form,
checks that it is all-MLP (no BatchNorm, no convolution other than non-overlapping patch projections), saves it
under results/<run>/model.safetensors (in float16 when float32 would exceed the size limit) with the recipe,
metrics, curves, training log and summary, and evaluates the saved file on the test set with the same code as
`mlpvision eval`, writing the figure to results/<run>/eval.json.

A distillation teacher for a headline recipe is trained and published the same way with --teacher, which lifts the
all-MLP check and the target (its eval.json says whether it is all-MLP):

    python experiments/headline.py --teacher --recipe recipes/convnet_teacher_28.yaml   # nohup ... &, as above
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
from pathlib import Path

import yaml
from torch.utils.data import DataLoader

from mlpvision.checkpoint import DATA_KEY, load_checkpoint, save_model
from mlpvision.data import Augmented, build_transform, load_split
from mlpvision.evaluate import evaluate
from mlpvision.lab_report import TEACHER_ROLE, shown_path
from mlpvision.reparam import non_mlp_layers, reparameterize
from mlpvision.runtime import tune_cpu_allocator
from mlpvision.train import TrainConfig, train
from mlpvision.weights import read_metadata

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "allmlp_headline_28.yaml"
MAX_BYTES = 50 * 10**6  # the committed file stays within 50 MB
TARGET = 95.0


def publish(run: Path, dest: Path, recipe: Path = RECIPE, teacher: bool = False) -> dict:
    """Publishes the run's validation-selected model; a ``teacher`` may hold any layers and has no target."""
    best = run / "best.safetensors"
    model = reparameterize(load_checkpoint(best, device="cpu").eval())
    offending = non_mlp_layers(model)
    if offending and not teacher:
        raise SystemExit("not all-MLP after deployment:\n" + "\n".join(offending))
    dest.mkdir(parents=True, exist_ok=True)
    data_meta = {DATA_KEY: read_metadata(best)[DATA_KEY]}
    out = save_model(model, dest / "model.safetensors", data_meta)
    dtype = "float32"
    if out.stat().st_size > MAX_BYTES:  # half the bytes; evaluation upcasts to float32
        model = model.half()
        out = save_model(model, dest / "model.safetensors", data_meta)
        dtype = "float16"
    for name in ("metrics.csv", "metrics.json", "summary.json", "config.json", "train.log"):
        if (run / name).is_file():  # paths in the text shown as in eval.json
            text = (run / name).read_text().replace(str(run.resolve()), shown_path(run, ROOT, run))
            (dest / name).write_text(text.replace(f"{ROOT}/", ""))
    for name in ("curves.png", "confusion.png"):
        if (run / name).is_file():
            shutil.copy(run / name, dest / name)
    shutil.copy(recipe, dest / "recipe.yaml")
    # the published file, evaluated as `mlpvision eval --checkpoint results/<run>/model.safetensors` does
    saved = load_checkpoint(out, device="cpu").float()
    raw, info = load_split("fashion-mnist", "test")
    result = evaluate(saved, DataLoader(Augmented(raw, None, build_transform(info, None)), batch_size=256), 10)
    summary = json.loads((run / "summary.json").read_text())
    shown = shown_path(out, ROOT, dest)
    report = {
        "recipe": shown_path(dest / "recipe.yaml", ROOT, dest), "file": shown, "bytes": out.stat().st_size,
        "dtype": dtype, "params": sum(p.numel() for p in saved.parameters()), "all_mlp": not offending,
        "selected_on": "validation split", "best_epoch": summary["best_epoch"],
        "best_val_top1": summary["best_val_top1"], "test_top1": result.top1, "test_top5": result.top5,
        **({"role": TEACHER_ROLE} if teacher else {"target_top1": TARGET, "met": result.top1 >= TARGET}),
        "command": f"mlpvision eval --checkpoint {shown} --data fashion-mnist",
    }  # fmt: skip
    (dest / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", help=f"recipe file (default: {RECIPE.relative_to(ROOT)})")
    parser.add_argument("--out", help="training run folder (default: runs/NAME, NAME the recipe's minus its size)")
    parser.add_argument("--dest", help="where to publish (default: results/NAME)")
    parser.add_argument("--publish-only", action="store_true")
    parser.add_argument("--teacher", action="store_true", help="a distillation teacher: any layers, no target")
    args = parser.parse_args()
    recipe = Path(args.recipe).resolve() if args.recipe else RECIPE
    name = re.sub(r"_\d+$", "", recipe.stem)  # allmlp_headline_28.yaml -> allmlp_headline
    os.chdir(ROOT)  # run and publish folders are named from the repository root, in logs and files alike
    args.out, args.dest = args.out or f"runs/{name}", args.dest or f"results/{name}"
    tune_cpu_allocator()  # as the command line does: large activations reuse heap memory
    if not args.publish_only:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        handlers = [logging.StreamHandler(), logging.FileHandler(Path(args.out) / "train.log")]  # appends on resume
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
        train(TrainConfig.from_dict({**yaml.safe_load(recipe.read_text()), "out": args.out}), resume=True)
    report = publish(Path(args.out), Path(args.dest), recipe, teacher=args.teacher)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
