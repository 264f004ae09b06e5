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

A deployment reference (a small trained model of a family, so that the int8 accuracy check of
benchmarks/deploy_speed.py covers Mixer and ResMLP too) goes under results/reference/ with --reference:

    python experiments/headline.py --reference --recipe recipes/mixer_t4_28.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

import yaml

from mlpvision.errors import MlpVisionError
from mlpvision.lab.publish import REFERENCE_ROLE, TEACHER_ROLE, publish
from mlpvision.runtime import tune_cpu_allocator
from mlpvision.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "allmlp_headline_28.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", help=f"recipe file (default: {RECIPE.relative_to(ROOT)})")
    parser.add_argument("--out", help="training run folder (default: runs/NAME, NAME the recipe's minus its size)")
    parser.add_argument("--dest", help="where to publish (default: results/NAME)")
    parser.add_argument("--publish-only", action="store_true")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--teacher", action="store_true", help="a distillation teacher: any layers, no target")
    role.add_argument("--reference", action="store_true", help="a deployment reference (results/reference/NAME)")
    args = parser.parse_args()
    recipe = Path(args.recipe).resolve() if args.recipe else RECIPE
    name = re.sub(r"_\d+$", "", recipe.stem)  # allmlp_headline_28.yaml -> allmlp_headline
    os.chdir(ROOT)  # run and publish folders are named from the repository root, in logs and files alike
    role = TEACHER_ROLE if args.teacher else REFERENCE_ROLE if args.reference else None
    args.out = args.out or f"runs/{name}"
    args.dest = args.dest or (f"results/reference/{name}" if args.reference else f"results/{name}")
    tune_cpu_allocator()  # as the command line does: large activations reuse heap memory
    try:
        if not args.publish_only:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            handlers = [logging.StreamHandler(), logging.FileHandler(Path(args.out) / "train.log")]  # appends
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
            train(TrainConfig.from_dict({**yaml.safe_load(recipe.read_text()), "out": args.out}), resume=True)
        report = publish(Path(args.out), Path(args.dest), recipe, ROOT, role=role)
    except MlpVisionError as e:
        print(f"headline: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
