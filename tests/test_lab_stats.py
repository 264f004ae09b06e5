"""The lab's statistics and verdict rules, the report's verdicts on results whose answer is known, the ledger,
diverged runs, and the all-MLP against CNN comparison."""

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlpvision.cli import main
from mlpvision.io import data_metadata, save_model
from mlpvision.lab import Settings, headline_vs_cnn, ledger, plan, write_report
from mlpvision.lab.report import Verdict, _claims_table, comparison_interval
from mlpvision.lab.runner import Lab
from mlpvision.lab.spec import Comparison, LabRun
from mlpvision.lab.stats import (
    Interval,
    Test,
    boundary_test,
    decide,
    detectable,
    holm,
    pack_bits,
    paired_bootstrap,
    paired_t,
    t975,
    unpack_bits,
)
from mlpvision.models import create_model


def test_paired_t_matches_the_textbook_interval():
    a, b = [91.0, 92.0, 93.5], [90.0, 90.5, 91.5]  # differences 1.0, 1.5, 2.0: mean 1.5, sd 0.5
    iv = paired_t(a, b)
    half = 4.302653 * 0.5 / 3**0.5  # Student's t, 2 degrees of freedom, 97.5%
    assert iv.mean == pytest.approx(1.5)
    assert (iv.low, iv.high) == (pytest.approx(1.5 - half), pytest.approx(1.5 + half))
    assert paired_t([1.0], [0.0]) is None and t975(2) == pytest.approx(4.303, abs=1e-3)
    assert t975(100) == pytest.approx(1.984, abs=1e-3)


@pytest.mark.parametrize(
    ("low", "high", "kind", "margin", "verdict"),
    [
        (0.2, 1.0, "greater", 0, "supported"),
        (-1.0, -0.2, "greater", 0, "refuted"),
        (-0.2, 1.0, "greater", 0, "undecided"),
        (-0.4, 0.3, "noninferior", 0.5, "supported"),
        (-2.0, -0.6, "noninferior", 0.5, "refuted"),
        (-0.8, 0.3, "noninferior", 0.5, "undecided"),
        (-0.3, 0.4, "equivalent", 0.5, "supported"),
        (0.6, 1.0, "equivalent", 0.5, "refuted"),
        (0.2, 0.9, "equivalent", 0.5, "undecided"),
    ],
)
def test_each_rule_decides_only_when_the_whole_interval_agrees(low, high, kind, margin, verdict):

    assert decide(Interval((low + high) / 2, low, high, 3, "t"), kind, margin) == verdict
    assert decide(None, kind, margin) == "pending"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=12),
    st.sampled_from(["greater", "noninferior", "equivalent"]),
    st.floats(0.1, 2.0),
)
def test_the_p_value_decides_exactly_when_the_interval_does(diffs, kind, margin):
    """p < 0.05 against the rule's boundary if and only if the 95% interval lies wholly on one side of it, and
    the side it leans to is the interval's verdict."""
    iv = paired_t(diffs, [0.0] * len(diffs))
    assume(iv.sd > 1e-6)
    margin = 0.0 if kind == "greater" else margin
    t, verdict = boundary_test(iv, kind, margin), decide(iv, kind, margin)
    bounds = [0.0] if kind == "greater" else [-margin] if kind == "noninferior" else [-margin, margin]
    assume(all(min(abs(iv.low - b), abs(iv.high - b)) > 1e-6 for b in bounds))  # not on a boundary to rounding
    if verdict == "undecided":
        assert t.p >= 0.05
    else:
        assert t.p < 0.05 and t.leaning == verdict


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []
    assert holm([0.001, 0.9, 0.2, 0.02]) == pytest.approx([0.004, 0.9, 0.4, 0.06])


def test_the_detectable_effect_shrinks_with_more_seeds():
    few = detectable(paired_t([1.0, 2.0, 1.5], [0.0] * 3))
    many = detectable(paired_t([1.0, 2.0, 1.5] * 3, [0.0] * 9))
    assert few > many > 0 and detectable(None) is None
    assert detectable(paired_t([100.0] * 3, [100.0] * 3)) is None  # tied on every seed: no spread, no power figure


def test_the_bootstrap_interval_covers_the_difference_and_bits_round_trip():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(2000, generator=g) < 0.9).tolist()
    b = (torch.rand(2000, generator=g) < 0.8).tolist()
    iv = paired_bootstrap(a, b, resamples=500)
    assert iv.low < iv.mean < iv.high and iv.low > 0  # 10 points apart on 2000 images: clearly decided
    assert unpack_bits(pack_bits(a), len(a)) == a


def _result(key, label, seed, top1):
    return {"key": key, "label": label, "seed": seed, "summary": {"test_top1_final": top1}, "history": [],
            "deploy_params": 1000, "deploy_macs": 1000, "machine": "m", "precision": "float32"}  # fmt: skip


def test_a_comparison_pairs_by_seed_and_subtracts_a_second_pair():
    rows = {
        "a": [_result("a0", "a", 0, 90.0), _result("a1", "a", 1, 91.0), _result("a2", "a", 2, 92.0)],
        "b": [_result("b2", "b", 2, 90.0), _result("b0", "b", 0, 89.0), _result("b1", "b", 1, 89.5)],
        "c": [_result("c0", "c", 0, 80.0), _result("c1", "c", 1, 80.0), _result("c2", "c", 2, 80.0)],
        "d": [_result("d0", "d", 0, 80.0), _result("d1", "d", 1, 80.0), _result("d2", "d", 2, 80.0)],
    }
    iv = comparison_interval(Comparison("x", "a", "b"), rows)
    assert iv.mean == pytest.approx(statistics.mean([1.0, 1.5, 2.0])) and iv.n == 3  # paired seed with seed
    iv2 = comparison_interval(Comparison("x", "a", "b", minus=("c", "d")), rows)
    assert iv2.mean == pytest.approx(iv.mean)
    assert comparison_interval(Comparison("x", "a", "b"), {**rows, "b": rows["b"][:1]}) is None  # one seed


def test_the_report_gives_each_comparison_the_verdict_its_numbers_decide(tmp_path):
    """Results written by hand for one experiment: a clear win, a clear loss and a near tie are decided as such,
    and the Holm-adjusted verdict over the experiment is shown beside the raw one; a comparison is decided only once
    every seed the plan registers for it has finished."""
    settings = Settings(quick=True, seeds=(0, 1, 2))
    exp = next(e for e in plan(settings) if e.key == "position_embedding")
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    meta = {"settings": dataclasses.asdict(settings), "machine": "m"}
    (results / "meta.json").write_text(json.dumps(meta))
    mixer_seeds = sorted({r.seed for r in exp.runs if r.label == "MLP-Mixer without"})
    assert len(mixer_seeds) > 3  # the plan registers more seeds near the margin
    by_label = {  # ViT gains clearly with a position embedding, EA loses clearly, Mixer ties
        "ViT with position embedding": [85, 86, 85.5], "ViT without": [70, 70.5, 71],
        "External Attention with position embedding": [70, 70.5, 71], "External Attention without": [85, 86, 85.5],
        "MLP-Mixer with position embedding": [[85.0, 85.1, 84.9][s % 3] for s in mixer_seeds],
        "MLP-Mixer without": [[85.05, 85.0, 85.0][s % 3] for s in mixer_seeds],
    }  # fmt: skip

    def write(seeds):
        for run in exp.runs:
            if run.label in by_label and run.seed in seeds:  # the half-budget twins stay missing
                r = _result(run.key, run.label, run.seed, by_label[run.label][run.seed])
                (results / "runs" / f"{run.key}.json").write_text(json.dumps(r))
        page = write_report(results, tmp_path / "docs").read_text()
        section = page.split(f"## {exp.title}")[1].split("\n## ")[0]
        verdicts = page.split("## Verdicts")[1].split("\n## ")[0]
        table = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| ")}
        return table, {line.split(" | ")[1]: line for line in verdicts.splitlines() if exp.key in line}

    lines, verdicts = write({0, 1, 2})  # Mixer's seeds 3 and 4 have not finished
    assert "**supported** | **supported** |" in lines["ViT: with vs without"]
    assert "**refuted** | **refuted** |" in lines["External Attention: with vs without"]
    pending = "| pending (runs missing) | pending (runs missing) |"
    assert pending in lines["Mixer: without vs with"]  # its 3 seeds' interval alone would decide it
    assert f"| 3/{len(mixer_seeds)} |" in verdicts["Mixer: without vs with"]
    assert "| 3/3 |" in verdicts["ViT: with vs without"]
    assert "pending (runs missing)" in lines["ViT: with vs without (half budget) (not counted)"]
    assert "budget check pending" in lines["ViT: with vs without"]  # its half-budget rows are missing
    lines, verdicts = write(set(mixer_seeds))
    assert "**supported** | **supported** |" in lines["Mixer: without vs with"]  # within the 0.5 margin
    assert f"| {len(mixer_seeds)}/{len(mixer_seeds)} |" in verdicts["Mixer: without vs with"]


def test_a_claim_is_tagged_budget_sensitive_only_by_the_comparisons_that_decide_it():
    """The perceptron claim is refuted by its first comparison: the tag follows that one's budget check, never that
    of a comparison that went the other way."""
    exp = next(e for e in plan(Settings(quick=True)) if e.key == "repmlp_ablation")
    parts = ("w/o Global Perceptron", "w/o Partition Perceptron", "w/o Local Perceptron")
    by_name = {c.name: c for c in exp.comparisons}
    intervals = {"refuted": Interval(-1.0, -1.5, -0.5, 5, "t"), "supported": Interval(1.0, 0.5, 1.5, 5, "t")}

    def claim_row(budgets: list[str]) -> str:
        verdicts = []
        for part, raw, budget in zip(parts, ("refuted", "supported", "supported"), budgets, strict=True):
            c = by_name[f"full RepMLP vs {part}"]
            v = Verdict(exp, c, intervals[raw], Test(0.001, raw), raw, budget=budget)
            v.p_family = v.p_page = 0.003
            verdicts.append(v)
        lines = _claims_table(verdicts, {})
        return next(line for line in lines if line.startswith("| Each perceptron"))

    assert "| **refuted** |" in claim_row(["robust", "budget-sensitive", "budget-sensitive"])
    assert "| **refuted (budget-sensitive)** |" in claim_row(["budget-sensitive", "robust", "robust"])


def test_a_run_whose_loss_becomes_nan_is_a_diverged_result_at_chance(tmp_path, monkeypatch):
    import mlpvision.lab.runner
    from mlpvision.train import TrainingError

    def diverging(cfg, **_):  # the engine's own NaN detection is tested in test_train.py
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.as_dict()))  # as train() writes it before the first step
        (out / "last.safetensors").write_bytes(b"the last good step")  # as train() leaves it
        raise TrainingError("loss became nan at step 3")

    monkeypatch.setattr(mlpvision.lab.runner, "train", diverging)
    settings = Settings.tiny()
    lab = Lab(settings, tmp_path / "results", tmp_path / "runs")
    train = {"epochs": 1, "batch_size": 32, "val_size": 64, "train_subset": 96, "amp": False, "lr": 0.03,
             "plots": False, "aug": {"crop_padding": 0, "hflip": 0.0}, "test_subset": 64}  # fmt: skip
    run = LabRun("too hot", "mixer_t4_28", 0, "fashion-mnist", {"depth": 1, "embed_dim": 16}, train)
    result = lab.ensure(run)
    assert result["diverged"] and "loss became" in result["diverged"]
    assert result["summary"]["test_top1_final"] == pytest.approx(10.0)
    assert lab.ensure(run) == result  # recorded: not trained again
    assert not (tmp_path / "runs" / run.key / "last.safetensors").exists()  # a result needs no training state


def test_the_ledger_counts_every_run_once_and_prices_what_is_left(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rows = ledger(Settings.tiny(), tmp_path / "results", tmp_path / "runs", only=["repmlp_vs_convnet"])
    assert rows[0]["experiment"] == "repmlp_vs_convnet" and rows[0]["done"] == 0
    assert rows[0]["cpu_hours"] == pytest.approx(rows[0]["cpu_hours_left"]) and rows[0]["cpu_hours"] > 0
    assert (tmp_path / "cache" / "mlpvision" / "lab_costs.json").is_file()  # probes cached per machine
    assert not (tmp_path / "runs").exists()  # nothing written where the runs would go
    assert rows[0]["spent"] == 0.0
    exps = plan(Settings.tiny())
    first = next(e for e in exps if e.key == "repmlp_vs_convnet").runs[0]
    path = Lab(Settings.tiny(), tmp_path / "results", tmp_path / "runs").result_path(first)
    path.parent.mkdir(parents=True, exist_ok=True)  # a finished run: 30 min of training clock on 2 threads
    ident = {"key": first.key, "label": first.label, "seed": first.seed}
    path.write_text(json.dumps({**ident, "machine": "a CPU; torch, 2 threads", "summary": {"train_seconds": 1800.0}}))
    after = ledger(Settings.tiny(), tmp_path / "results", tmp_path / "runs", only=["repmlp_vs_convnet"])[0]
    assert after["done"] == 1 and after["spent"] == pytest.approx(1.0)
    assert after["cpu_hours_left"] < after["cpu_hours"] == pytest.approx(rows[0]["cpu_hours"])
    # a run that recorded its CPU time is counted by it (the clock also runs while a run is stopped)
    summary = {"train_seconds": 1800.0, "train_cpu_seconds": 900.0}
    path.write_text(json.dumps({**ident, "machine": "a CPU; torch, 2 threads", "summary": summary}))
    spent = ledger(Settings.tiny(), tmp_path / "results", tmp_path / "runs", only=["repmlp_vs_convnet"])[0]["spent"]
    assert spent == pytest.approx(0.25)
    argv = ["lab", "--quick", "--plan", "--only", "repmlp_vs_convnet", "--results", str(tmp_path / "r")]
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 0
    assert "CPU hours" in capsys.readouterr().out


def test_the_ledger_prices_a_model_by_its_fastest_finished_run(tmp_path):
    """A run that shared the machine is slower, never faster: the estimate follows the fastest run of a model."""
    from mlpvision.lab.ledger import _measured

    for name, seconds in (("a", 100.0), ("b", 40.0), ("c", 900.0)):
        record = {
            "label": name,
            "model": "mlp_28",
            "model_args": {},
            "train_config": {"batch_size": 10},
            "summary": {"train_seconds": seconds, "steps": 100},
        }
        (tmp_path / "runs").mkdir(exist_ok=True)
        (tmp_path / "runs" / f"{name}.json").write_text(json.dumps(record))
    assert list(_measured(tmp_path).values()) == [pytest.approx(40.0 / 1000)]


def test_the_shift_loss_counts_only_what_a_model_earned_above_background_everywhere():
    from mlpvision.lab.measures import METRICS, seg_shift_drop

    r = {"shift_miou": {"0": 40.0, "16": 30.0, "floor": 20.0}}
    assert seg_shift_drop(r) == pytest.approx(50.0)  # 10 of the 20 points it earned above the floor
    assert METRICS["shifted_miou"].read(r) == 30.0
    assert seg_shift_drop({"shift_miou": {"0": 8.0, "16": 8.0, "floor": 8.5}}) is None  # at the floor: nothing to lose
    assert seg_shift_drop({"summary": {"test_miou_final": 0.0}, "diverged": "loss became nan"}) is None


def test_the_all_background_floor_scores_background_alone():
    from torch.utils.data import DataLoader

    from mlpvision.lab.runner import _AllBackground
    from mlpvision.train import evaluate_segmentation

    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :4] = 3  # half the pixels are class 3
    loader = DataLoader(list(zip(torch.zeros(2, 1, 8, 8), masks, strict=True)), batch_size=2)
    result = evaluate_segmentation(_AllBackground(11), loader, 11)
    assert result.miou == pytest.approx(100.0 * 0.5 / 2)  # background IoU 1/2, class 3 IoU 0, over the two present


def test_the_ledger_prices_a_stated_default_as_the_model_it_is():
    """A run that states a default and one that leaves it unstated build the same model: one price for both."""
    from mlpvision.lab.ledger import _probe_key

    base = {"depth": 4, "embed_dim": 64, "num_heads": 2}
    unstated = LabRun("a", "eanet_tiny_28", 0, "fashion-mnist", base, {})
    stated = LabRun("b", "eanet_tiny_28", 0, "fashion-mnist", {**base, "pos_embed": True}, {})
    without = LabRun("c", "eanet_tiny_28", 0, "fashion-mnist", {**base, "pos_embed": False}, {})
    bigger = LabRun("d", "eanet_tiny_28", 0, "fashion-mnist", base, {"img_size": 56})
    assert _probe_key(unstated) == _probe_key(stated)
    assert len({_probe_key(unstated), _probe_key(without), _probe_key(bigger)}) == 3


def test_the_ledger_times_a_segmentation_run_on_its_own_input_and_output(tmp_path):
    """Segmentation runs carry their own channels in their model arguments and answer one label per pixel."""
    from mlpvision.lab.ledger import _seconds_per_image

    run = next(r for e in plan(Settings.tiny()) if e.key == "segmentation" for r in e.runs)
    assert "in_chans" in run.model_args  # the case that was refused twice over
    assert 0 < _seconds_per_image(run, batch=2, steps=1) < 60


def _publish(folder, model, role=None, recipe=None):
    folder.mkdir(parents=True)
    meta = data_metadata("fashion-mnist", [str(i) for i in range(10)], (0.2860,), (0.3530,))
    save_model(model, folder / "model.safetensors", meta)
    e = {"best_val_top1": 90.0, "recipe": "r.yaml", **({"role": role} if role else {})}
    (folder / "eval.json").write_text(json.dumps(e))
    (folder / "recipe.yaml").write_text(json.dumps(recipe or {}))  # JSON is YAML
    return folder


def test_the_all_mlp_model_is_compared_with_the_cnn_on_accuracy_and_latency(tmp_path):
    mlp = create_model("repmlp_fast_28", channels=(8, 8), groups=2).eval()
    cnn = create_model("repmlp_fast_28", channels=(8, 8), layer="conv", conv_kernel=3, groups=1).eval()
    from mlpvision.reparam import reparameterize

    recipe = {"model": "repmlp_fast_28", "model_args": {"channels": [8, 8]}, "epochs": 7, "optimizer": "adamw"}
    student = {**recipe, "teacher": "results/convnet_teacher/model.safetensors", "distill": "hard"}
    teacher = {**recipe, "aug": {"random_erasing": 0.5}}
    folders = [
        _publish(tmp_path / "allmlp_headline", reparameterize(mlp), recipe=student),
        _publish(tmp_path / "convnet_teacher", reparameterize(cnn), "distillation teacher", teacher),
    ]
    lab = tmp_path / "lab"
    lab.mkdir()
    out = headline_vs_cnn(folders, lab, tmp_path / "figures", batch=4, repeats=2)
    h = json.loads(out.read_text())
    assert [r["all_mlp"] for r in h["rows"]] == [True, False]
    assert set(h["rows"][0]["latency_ms"]) == {"1/eager", "1/onnxruntime", "4/eager", "4/onnxruntime"}
    assert h["comparisons"][0]["interval"]["n"] == h["n_test"] == 10000 and "over the 10000 test" in h["method"]
    # the models' words come from their recipes, not from a sentence written for one set of them
    assert "`allmlp_headline` (all-MLP): `repmlp_fast_28` (channels [8, 8]), 7 epochs, random erasing 0" in h["models"]
    assert "hard distillation from `convnet_teacher`" in h["models"] and "random erasing 0.5" in h["models"]
    assert "(`convnet_teacher`)" in h["question"] and "7 epochs" in h["question"]
    page = write_report(lab, tmp_path / "docs").read_text()
    assert "## The all-MLP model against the CNN" in page and "(`allmlp_headline`) vs the CNN" in page
    assert (tmp_path / "figures" / "lab_headline_vs_cnn.png").is_file()


def test_publishing_holds_headline_models_to_all_mlp_and_lets_a_reference_through(tmp_path):
    from mlpvision.errors import ConfigError
    from mlpvision.lab import REFERENCE_ROLE, publish, published_models

    run = tmp_path / "runs" / "cnn"
    run.mkdir(parents=True)
    cnn = create_model("repmlp_fast_28", channels=(8, 8), layer="conv", conv_kernel=3, groups=1).eval()
    meta = data_metadata("fashion-mnist", [str(i) for i in range(10)], (0.2860,), (0.3530,))
    save_model(cnn, run / "best.safetensors", meta)
    (run / "summary.json").write_text(json.dumps({"best_epoch": 1, "best_val_top1": 50.0}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: repmlp_fast_28\n")
    with pytest.raises(ConfigError, match="not all-MLP"):
        publish(run, tmp_path / "results" / "cnn", recipe, tmp_path)
    with pytest.raises(ConfigError, match="unknown role"):
        publish(run, tmp_path / "results" / "cnn", recipe, tmp_path, role="mascot")
    report = publish(run, tmp_path / "results" / "reference" / "cnn", recipe, tmp_path, role=REFERENCE_ROLE)
    assert report["role"] == REFERENCE_ROLE and "target_top1" not in report and not report["all_mlp"]
    assert report["file"] == "results/reference/cnn/model.safetensors" and 0 <= report["test_top1"] <= 100
    assert published_models(tmp_path / "results") == []  # references stay out of the headline comparison
    assert published_models(tmp_path / "results" / "reference") == [tmp_path / "results" / "reference" / "cnn"]


def test_a_share_of_what_was_learned_is_undefined_for_a_model_at_chance():
    from mlpvision.lab.measures import moved_drop, rel_drop

    learned = {"summary": {"test_top1_final": 60.0}, "num_classes": 10, "moved_top1": 35.0}
    assert moved_drop(learned) == pytest.approx(50.0)  # 25 of the 50 points above chance
    at_chance = {"summary": {"test_top1_final": 10.0}, "num_classes": 10, "moved_top1": 9.0}
    assert moved_drop(at_chance) is None  # not a drop of 10^9 %
    assert rel_drop({"shift_top1": {"0": 10.0, "4": 12.0}, "num_classes": 10}) is None
    assert rel_drop({"shift_top1": {"0": 55.0, "4": 10.0}, "num_classes": 10}) == pytest.approx(100.0)
    assert rel_drop({"diverged": "loss NaN", "num_classes": 10}) is None  # no measurement


def test_the_ledger_counts_the_trainings_an_experiment_needs_with_its_teachers_and_starts(tmp_path, monkeypatch):
    """'runs' and 'done' count the same thing, the distinct trainings an experiment needs (its runs, their
    teachers and fine-tuning starts; in quick mode a row and its half-budget twin are one training): with every
    result written, done equals runs and nothing is left."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings.tiny()
    lab = Lab(settings, tmp_path / "results", tmp_path / "runs")
    for key in ("repmlp_ablation", "resmlp_distill"):
        exp = next(e for e in plan(settings) if e.key == key)
        needed = {r.key: r for r in exp.runs} | {r.teacher.key: r.teacher for r in exp.runs if r.teacher}
        assert len(needed) < len(exp.runs)  # shared trainings
        for run in needed.values():
            path = lab.result_path(run)
            path.parent.mkdir(parents=True, exist_ok=True)
            ident = {"key": run.key, "label": run.label, "seed": run.seed}
            path.write_text(
                json.dumps({**ident, "machine": "a CPU; torch, 2 threads", "summary": {"train_seconds": 1.0}})
            )
        row = ledger(settings, tmp_path / "results", tmp_path / "runs", only=[key])[0]
        assert row["done"] == row["runs"] == len(needed) and row["cpu_hours_left"] == 0


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("runs/x.json", "{broken", "not valid JSON"),
        ("runs/x.json", "[]", "not a mapping"),
        ("runs/x.json", '{"key": "x", "label": "a", "seed": 0, "summary": {"test_top1_final": "high"}}', "summary"),
        ("meta.json", '{"settings": 5}', "meta file"),
        ("meta.json", '{"settings": {"data": "nope"}}', "meta file"),
        ("repmlp_ablation_latency.json", '{"rows": [], "machine": "m", "batch_size": 4}', "latency table"),
        ("repmlp_ablation_latency.json", '{"rows": {"a": {"median_ms": 1}}, "machine": "m", "batch_size": 4}', "p25"),
        (
            "repmlp_ablation_latency.json",
            '{"rows": {"a": {"median_ms": -1, "p25_ms": 1, "p75_ms": 1}}, "machine": "m", "batch_size": 4}',
            "a.median_ms",
        ),
    ],
)
def test_a_damaged_lab_file_is_one_error_line_naming_it(tmp_path, capsys, name, content, why):
    """The page, the tuning and the ledger read the lab's files through one checked reader: a damaged one is
    named (delete it and the lab trains that run again), never a traceback from deep in the report."""
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    (results / name).write_text(content)
    readers = [["--report-only"]] + ([["--plan", "--runs", str(tmp_path / "runs")]] if name.startswith("runs") else [])
    for argv in readers:  # the ledger reads the result files; the settings of --plan come from its flags
        args = ["lab", "--quick", *argv, "--results", str(results), "--docs", str(tmp_path / "docs")]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and name.split("/")[-1] in err[0] and "Traceback" not in err[0], err


@pytest.mark.parametrize(("summary", "why"), [("[]", "not a mapping"), ("{}", "is damaged"), ("{oops", "JSON")])
def test_a_damaged_published_folder_is_one_error_line_naming_it(tmp_path, capsys, summary, why):
    folder = tmp_path / "results" / "pub"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(summary)
    (folder / "eval.json").write_text(json.dumps({"best_val_top1": 90.0}))
    args = ["lab", "--quick", "--report-only", "--results", str(tmp_path / "lab"), "--docs", str(tmp_path / "docs")]
    assert main([*args, "--headline", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and why in err[0] and "pub" in err[0] and "Traceback" not in err[0], err


def test_the_dot_plot_draws_each_series_once_in_its_legend_with_the_figure_columns(tmp_path, monkeypatch):
    """A section's figure shows its figure_columns beside the metric (the moved test beside the centred one) and
    names each series in the legend, the half-budget twin included, wherever the series first appears."""
    from mlpvision.lab import report
    from mlpvision.lab.spec import Experiment

    drawn = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path, dpi: drawn.update(fig=fig))

    def result(seed, top1, moved=None):
        return {"seed": seed, "summary": {"test_top1_final": top1}, **({"moved_top1": moved} if moved else {})}

    exp = Experiment(
        "probe", "A probe", "h", "r", "p", runs=[], budget="b", budget_pairs={"b": "b half"},
        figure_columns=("moved_top1",), xlabel="test top-1 (%)",
    )  # fmt: skip
    rows = {
        "a": [result(0, 80.0, 60.0), result(1, 82.0, 61.0)],
        "b": [result(0, 70.0, 50.0), result(1, 71.0, 52.0)],
        "b half": [result(0, 65.0), result(1, 66.0)],
    }
    assert report._plot_rows(exp, rows, tmp_path / "probe.png", "Fashion-MNIST") == "probe.png"
    ax = drawn["fig"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "budget B",
        "B/2",
        "trained aligned, tested moved (%)",
    ]
    assert len(ax.containers) == 5  # two rows x (metric, moved) and one half-budget twin
    assert ax.get_xlabel() == "test top-1 (%)"


def test_an_undecided_verdict_whose_family_waits_for_a_comparison_says_for_now():
    """A pending comparison enters Holm's correction at p = 1, so an undecided one beside it may still turn: the page
    says 'for now' until the family is complete, and only then."""
    from mlpvision.lab.report import _verdicts

    exps = [e for e in plan(Settings(quick=True)) if e.key in ("permutation", "patch_shuffle")]

    class Finished:  # the results of every run of the given experiments, noisy enough to decide nothing
        def __init__(self, done):
            self.done = done

        def rows(self, exp):
            out = {}
            for run in exp.runs:
                value = 80.0 + (run.seed * 7 + sum(map(ord, run.label))) % 5
                out.setdefault(run.label, []).extend(
                    [{"seed": run.seed, "summary": {"test_top1_final": value}}] if exp.key in self.done else []
                )
            return out

    def local_prior(done):
        verdicts = _verdicts(exps, Finished(done))
        return [v for v in verdicts if v.c.counted and v.exp.key in done]

    waiting = local_prior({"permutation"})
    undecided = [v for v in waiting if v.family == "undecided"]
    assert undecided and all(v.family_open == 1 for v in waiting)
    assert all(v.family_as("undecided") == "undecided (for now: 1 of its family pending)" for v in undecided)
    complete = local_prior({"permutation", "patch_shuffle"})
    assert all(v.family_open == 0 and "for now" not in v.family_as(v.family) for v in complete)


def test_a_section_names_its_rows_that_are_another_sections_runs_and_the_seeds_of_its_budget_check():
    from mlpvision.lab.report import _shared_rows, _sharing, _twin_seeds

    exps = [e for e in plan(Settings(quick=True)) if e.kind == "claim"]
    by_key = {e.key: e for e in exps}
    line = _shared_rows(by_key["tying"], _sharing(exps))
    assert "'MLP-Mixer, tied token mixing' (also in " in line and by_key["position_embedding"].title in line
    assert "untied" not in line  # only the tying section trains the untied Mixer
    assert _shared_rows(by_key["tying"], _sharing([by_key["tying"]])) == ""
    rows = {"a": [{"seed": s} for s in range(5)], "a | half": [{"seed": s} for s in range(3)]}
    assert _twin_seeds(rows, {"a | half"}) == " (on the twins' seeds, 0, 1, 2)"
    assert _twin_seeds({**rows, "a": rows["a"][:3]}, {"a | half"}) == ""  # the same seeds: nothing to say


class _Made:
    """Results of the given experiments' runs with a test top-1 chosen per row label (``value(label, seed)``)."""

    def __init__(self, value):
        self.value = value

    def rows(self, exp):
        out = {}
        for run in exp.runs:
            out.setdefault(run.label, []).append(
                {"seed": run.seed, "summary": {"test_top1_final": self.value(run.label, run.seed)}}
            )
        return out


def test_a_superseded_section_says_so_and_no_claim_row_lists_it_while_an_unclaimed_comparison_gets_a_row():
    from mlpvision.lab.report import _verdicts

    keys = ("resmlp_overfit", "resmlp_overfit_corrected", "segmentation", "resmlp_norm", "resmlp_norm_decay")
    exps = [e for e in plan(Settings(quick=True)) if e.key in keys]
    verdicts = _verdicts(exps, _Made(lambda label, seed: 80.0 + seed % 3 + len(label) % 4))
    old = [v for v in verdicts if v.exp.key == "resmlp_overfit" and v.c.counted]
    assert old and all(v.superseded == "resmlp_overfit_corrected" for v in old)
    assert all("superseded by resmlp_overfit_corrected" in v.family_as("refuted") for v in old)
    # a sensitivity check registered as a correction decides no claim: the section it checks is not superseded
    assert not any(v.superseded for v in verdicts if v.exp.key != "resmlp_overfit")
    table = "\n".join(_claims_table(verdicts, {}))
    assert "RepMLPNet vs MLP-Mixer (mean IoU) (" in table and "a registered comparison no claim names" in table
    assert not any(f"| {v.c.name} (" in table for v in old)  # the claim is the corrected section's
    # without the correction among the experiments, nothing supersedes the registered section
    alone = _verdicts([e for e in exps if e.key == "resmlp_overfit"], _Made(lambda label, seed: 80.0))
    assert not any(v.superseded for v in alone)


@pytest.mark.parametrize("treated_low", [True, False])
def test_two_gains_both_below_zero_read_as_two_losses_and_only_for_a_comparison_of_gains(treated_low):
    """'Regularisers help more at 1000 images' with the regularisers below the plain model at both sizes weighs two
    harms: the page says so. A change against a change that is not two gains (the permutation's gaps) never does."""
    from mlpvision.lab.report import _changes, _verdicts

    exps = [e for e in plan(Settings(quick=True)) if e.key in ("resmlp_overfit_corrected", "permutation")]

    small = f"| {Settings(quick=True).data_sizes[0]} images"

    def value(label, seed):  # the regularised rows 1 point off the plain ones at the small size, 3 at the large
        gain = (1.0 if label.endswith(small) else 3.0) * (-1.0 if treated_low else 1.0)
        return 80.0 + 0.1 * seed + (gain if "regularised" in label else 0.0)

    verdicts = _verdicts(exps, _Made(value))
    more = next(v for v in verdicts if v.c.gains and v.exp.key == "resmlp_overfit_corrected")
    assert more.losses is treated_low
    rows = _Made(value).rows(more.exp)
    assert ("weighs two losses" in _changes(more, rows)) is treated_low
    assert ("two losses, not two gains" in more.family_as(more.family)) is (treated_low and more.family != "undecided")
    assert not any(v.losses for v in verdicts if v.exp.key == "permutation")
    with pytest.raises(Exception, match="two gains"):
        Comparison("x", "a", "b", gains=True)
