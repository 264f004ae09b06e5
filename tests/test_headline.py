"""experiments/headline.py end to end on a tiny recipe: train, deploy, check all-MLP, publish, evaluate the file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlpvision.cli import main
from mlpvision.io import load_checkpoint
from mlpvision.reparam import non_mlp_layers

ROOT = Path(__file__).resolve().parents[1]


def _headline_command(tmp_path: Path, recipe: dict, name: str) -> tuple[list[str], Path]:
    """experiments/headline.py on ``recipe`` (written to tmp_path/NAME), and the folder it publishes to."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    out, dest = tmp_path / "run", tmp_path / "published"
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "headline.py"),
        "--recipe",
        str(path),
        "--out",
        str(out),
        "--dest",
        str(dest),
    ]
    return cmd, dest


def test_headline_publishes_an_all_mlp_model_whose_figure_eval_reproduces(tmp_path, capsys):
    recipe = yaml.safe_load((ROOT / "recipes" / "allmlp_headline_28.yaml").read_text())
    recipe.update(
        model_args={"channels": [8, 16], "groups": 2},
        epochs=6,
        train_subset=1024,
        val_size=256,
        warmup_epochs=0,
        ema_decay=0.9,
        save_every_steps=0,
        plots=False,
        amp=False,
    )
    cmd, dest = _headline_command(tmp_path, recipe, "tiny_headline_28.yaml")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    report = json.loads((dest / "eval.json").read_text())
    assert report["all_mlp"] and report["selected_on"] == "validation split" and report["dtype"] == "float32"
    assert report["met"] == (report["test_top1"] >= 95.0) and 30 < report["test_top1"] < 100
    model = load_checkpoint(dest / "model.safetensors", device="cpu")
    assert non_mlp_layers(model) == [] and not any("bn" in k for k in model.state_dict())
    assert {"recipe.yaml", "train.log", "metrics.csv", "config.json"} <= {p.name for p in dest.iterdir()}
    assert yaml.safe_load((dest / "recipe.yaml").read_text()) == recipe and report["recipe"].endswith("recipe.yaml")
    assert "epoch 6:" in (dest / "train.log").read_text()
    texts = {p.name: p.read_text() for p in dest.iterdir() if p.suffix in (".json", ".log", ".csv", ".yaml")}
    assert not [name for name, text in texts.items() if str(tmp_path) in text]  # run and result outside the repo
    assert json.loads(texts["config.json"])["out"] == "run" and report["file"] == "published/model.safetensors"
    assert main(["eval", "--checkpoint", str(dest / "model.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(report["test_top1"], abs=1e-6)


def test_a_teacher_publishes_with_any_layers_and_a_headline_refuses_them(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "convnet_teacher_28.yaml").read_text())
    recipe["model_args"].update(channels=[8, 16], depth=1)
    recipe.update(epochs=2, train_subset=512, val_size=256, warmup_epochs=0, save_every_steps=0, plots=False, amp=False)
    cmd, dest = _headline_command(tmp_path, recipe, "tiny_teacher_28.yaml")
    refused = subprocess.run(cmd, capture_output=True, text=True)  # trains, then refuses to publish a convnet
    assert refused.returncode != 0 and "not all-MLP after deployment" in refused.stderr
    assert not (dest / "eval.json").exists()
    subprocess.run([*cmd, "--publish-only", "--teacher"], check=True, capture_output=True, text=True)
    report = json.loads((dest / "eval.json").read_text())
    assert report["role"] == "distillation teacher" and not report["all_mlp"] and "met" not in report
    assert non_mlp_layers(load_checkpoint(dest / "model.safetensors", device="cpu"))  # the 3x3 convs stay
