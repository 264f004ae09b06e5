"""The lab's paper profile: the papers' models, sizes and budgets, and its GPU-hour estimate (never run here)."""

from __future__ import annotations

import json

import pytest
import torch

from mlpvision.cli import main
from mlpvision.errors import ConfigError
from mlpvision.lab.paper import (
    ASSUMPTION,
    CIFAR_TRAIN,
    IMAGENET_TRAIN,
    GpuAssumption,
    gpu_hours,
    paper_ledger,
    paper_plan,
    paper_settings,
    training_images,
)
from mlpvision.lab.report import write_paper_report
from mlpvision.lab.spec import LabRun
from mlpvision.models import create_model


def test_the_plan_has_the_papers_experiments_on_their_data():
    exps = {e.key: e for e in paper_plan()}
    assert set(exps) == {
        "paper_repmlp_ablation",
        "paper_repmlp_vs_convnet",
        "paper_mixer_vs_resmlp",
        "paper_resmlp_norm",
    }
    assert {e.key for e in paper_plan("cifar10")} == {"paper_repmlp_ablation", "paper_repmlp_vs_convnet"}
    assert {e.key for e in paper_plan("imagefolder")} == {"paper_mixer_vs_resmlp", "paper_resmlp_norm"}
    for exp in exps.values():
        rows = {r.label for r in exp.runs}
        assert all(c.a in rows and c.b in rows for c in exp.comparisons)  # every verdict has its rows
        for row in rows:
            assert sorted(r.seed for r in exp.runs if r.label == row) == [0, 1, 2]
    with pytest.raises(ConfigError, match="cifar10 or imagefolder"):
        paper_plan("fashion-mnist")


def test_cifar_runs_follow_the_repmlp_paper():
    runs = [r for e in paper_plan("cifar10") for r in e.runs]
    assert {r.model for r in runs} == {
        "repmlp_pure_32",
        "repmlp_pure_nolp_32",
        "repmlp_pure_nogp_32",
        "repmlp_pure_fc3conv9_32",
        "repmlp_pure_conv9_32",
        "wide_convnet_32",
    }
    for r in runs:
        t = r.train
        assert (t["epochs"], t["batch_size"], t["optimizer"], t["lr"], t["min_lr"]) == (100, 128, "sgd", 0.2, 0.0)
        assert t["aug"] == {"crop_padding": 4, "hflip": 0.5}  # pad to 40, random 32-px crop, flip
        assert "train_subset" not in t and t["val_size"] == 0  # all 50 000 training images
        assert r.data == "cifar10" and not r.model_args
    with torch.device("meta"):  # the paper's widths: 16-32-64 for RepMLP, 32-64-128 for the Wide ConvNet
        assert create_model("repmlp_pure_32").config.channels == (16, 32, 64)
        assert create_model("wide_convnet_32").config.channels == (32, 64, 128)


def test_folder_runs_are_224px_imagenet_style():
    runs = [r for e in paper_plan("imagefolder") for r in e.runs]
    assert {r.model for r in runs} == {"mixer_s16_224", "resmlp_12_224"}
    assert {r.data for r in runs} == {"imagefolder"}
    assert all(r.train["img_size"] == 224 and r.train["epochs"] == 400 for r in runs)
    assert any(r.model_args.get("norm") == "layernorm" for r in runs)
    s = paper_settings("imagefolder")
    assert (s.epochs, s.subset, s.test_subset, s.seeds) == (400, 0, 0, (0, 1, 2))


def test_gpu_hours_follow_the_stated_assumption():
    tiny = LabRun("t", "mlp_28", data="cifar10", train={"epochs": 10, "val_size": 0})
    # a tiny model is bounded by the input pipeline: passes / ceiling
    passes = 10 * CIFAR_TRAIN + 2 * 10_000 / 3
    assert gpu_hours(tiny, CIFAR_TRAIN) == pytest.approx(passes / ASSUMPTION.max_images_per_second["cifar10"] / 3600)
    # a large model is bounded by arithmetic: 6 x MACs per image at the sustained rate
    slow = GpuAssumption("slow", 1.0, 1.0, {"imagefolder": 1e9}, "test")
    big = LabRun("b", "resmlp_12_224", data="imagefolder", train={"epochs": 1, "val_size": 0})
    with torch.device("meta"):
        macs = __import__("mlpvision.models", fromlist=["count"]).count(create_model("resmlp_12_224")).macs
    expected = (1000 + 2 * 50_000 / 3) * 6 * macs / 1e12 / 3600
    assert gpu_hours(big, 1000, slow) == pytest.approx(expected)
    assert gpu_hours(big.but(train={"epochs": 2, "val_size": 0}), 1000, slow) > gpu_hours(big, 1000, slow)


def test_the_ledger_counts_a_shared_run_once(tmp_path):
    assert training_images("cifar10") == CIFAR_TRAIN
    assert training_images("imagefolder") == IMAGENET_TRAIN  # no folder given: ImageNet-1k's size
    for i in range(3):
        (tmp_path / "train" / f"c{i}").mkdir(parents=True)
        (tmp_path / "train" / f"c{i}" / "a.jpg").write_bytes(b"")
    assert training_images("imagefolder", str(tmp_path)) == 3
    rows = {r["experiment"]: r for r in paper_ledger("cifar10")}
    # RepMLP's runs belong to the ablation: against the Wide ConvNet only the ConvNet's three runs cost
    recipe = paper_plan("cifar10")[1].runs[-1].train
    wide = LabRun(label="w", model="wide_convnet_32", data="cifar10", train=recipe)
    assert rows["paper_repmlp_vs_convnet"]["gpu_hours"] == pytest.approx(3 * gpu_hours(wide, CIFAR_TRAIN))


def test_the_cli_prints_the_plan_and_refuses_to_run_without_data(capsys):
    assert main(["lab", "--plan", "--profile", "paper", "--data", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "paper_repmlp_ablation" in out and "GPU hours" in out and "not a measurement" in out
    assert main(["lab", "--profile", "paper"]) == 2
    assert "--data cifar10" in capsys.readouterr().err
    assert main(["lab", "--profile", "paper", "--data", "imagefolder"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def _fake_result(run: LabRun, top1: float) -> dict:
    """A result file as the lab writes it for ``run`` (no training: the page only reads these fields)."""
    return {
        "key": run.key,
        "label": run.label,
        "model": run.model,
        "seed": run.seed,
        "machine": "a test machine",
        "precision": "float32",
        "summary": {"test_top1_final": top1, "train_seconds": 1.0},
        "num_classes": 10,
        "params": 1000,
        "macs": 2000,
        "deploy_params": 1000,
        "deploy_macs": 2000,
        "history": [{"epoch": 1, "train_top1": top1 + 5}],
    }


def test_the_profile_writes_its_page_from_the_result_files_alone(tmp_path, capsys):
    """--report-only trains nothing; the page shows each experiment's rows and decides its comparisons."""
    results, docs = tmp_path / "results", tmp_path / "docs"
    (results / "runs").mkdir(parents=True)
    score = {"A) RepMLP pure MLP": 91.0, "Wide ConvNet": 92.5}  # RepMLP 1.5 behind: outside the 1-point margin
    for exp in paper_plan("cifar10"):
        for run in exp.runs:
            top1 = score.get(run.label, 85.0) + 0.1 * run.seed  # the ablations 6 points behind the full block
            (results / "runs" / f"{run.key}.json").write_text(json.dumps(_fake_result(run, top1)))
    args = ["lab", "--profile", "paper", "--data", "cifar10", "--report-only", "--results", str(results)]
    assert main([*args, "--docs", str(docs), "--runs", str(tmp_path / "runs")]) == 0
    assert not (tmp_path / "runs").exists()  # nothing trained
    page = (docs / "results-paper-cifar10.md").read_text()
    assert "## RepMLP ablation at the paper's size (CIFAR-10)" in page and "| A) RepMLP pure MLP | 3 |" in page
    verdicts = [line for line in page.splitlines() if line.startswith("| paper_")]
    assert len(verdicts) == 5 and sum("**supported**" in v for v in verdicts) == 4, verdicts
    assert "**refuted**" in next(v for v in verdicts if "Wide ConvNet" in v)
    assert (docs / "figures" / "lab-paper-cifar10_paper_repmlp_ablation.png").is_file()


def test_the_profile_writes_its_page_for_an_image_folder(tmp_path):
    """An image folder is no data set of the lab's table: its page is written all the same."""
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    for exp in paper_plan("imagefolder"):
        for run in exp.runs:
            (results / "runs" / f"{run.key}.json").write_text(json.dumps(_fake_result(run, 70.0 + run.seed)))
    page = write_paper_report(results, tmp_path / "docs", "imagefolder").read_text()
    assert "an ImageNet-style folder" in page and page.count("| paper_") == sum(
        c.counted for e in paper_plan("imagefolder") for c in e.comparisons
    )
