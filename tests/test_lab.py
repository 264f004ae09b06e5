"""The lab pipeline in --quick mode: every experiment trains, measures, skips finished runs and reports."""

import json
import shutil
from pathlib import Path

import pytest

from mlpvision.cli import main
from mlpvision.errors import ConfigError
from mlpvision.io import shown_path
from mlpvision.lab import Settings, plan, run_lab, write_report

from .helpers import write_cifar10


@pytest.fixture(scope="module")
def quick_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    results, runs, docs = root / "results", root / "runs", root / "docs"
    assert main(["lab", "--quick", "--results", str(results), "--runs", str(runs), "--docs", str(docs)]) == 0
    return results, runs, docs


def test_every_run_has_a_result_and_the_report_covers_every_experiment(quick_lab):
    results, _, docs = quick_lab
    exps = plan(Settings.tiny())
    keys = {run.key for exp in exps for run in exp.runs}
    written = {p.stem for p in (results / "runs").glob("*.json")}
    assert keys <= written
    report = (docs / "results.md").read_text()
    for exp in (e for e in exps if e.kind == "claim"):
        assert f"## {exp.title}" in report and f"**Hypothesis.** {exp.hypothesis}" in report
        assert f"**Refuted by.** {exp.refutation}" in report and f"**The paper.** {exp.paper}" in report
    assert "none yet" not in report and "pending (runs missing)" not in report  # every comparison was evaluated
    assert "not in this plan" not in report  # every claim finds its comparisons under the quick plan's sizes
    verdicts = report[report.index("## Verdicts") : report.index("\n## ", report.index("## Verdicts") + 5)]
    assert verdicts.count("\n| ") - 1 == sum(c.counted for e in exps for c in e.comparisons)
    changes = [c for e in exps for c in e.comparisons if c.minus]  # each shows the two changes it subtracts
    assert changes and all(f"'{c.name}' subtracts two changes: '{c.a}' - '{c.b}' is " in report for c in changes)
    for key in ("repmlp_ablation", "resmlp_norm", "position", "data_size"):
        assert (docs / "figures" / f"lab_{key}.png").stat().st_size > 1000


def test_results_carry_what_each_experiment_measures(quick_lab):
    results, _, _ = quick_lab
    exps = {e.key: e for e in plan(Settings.tiny())}

    def result(exp: str, label: str) -> dict:
        run = next(r for r in exps[exp].runs if r.label == label)
        return json.loads((results / "runs" / f"{run.key}.json").read_text())

    mixer = result("aligned_translated", "MLP-Mixer | aligned")
    assert 0 <= mixer["moved_top1"] <= 100 and mixer["data"] == "fashion-mnist-canvas"
    assert result("aligned_translated", "MLP-Mixer | moved")["data"] == "fashion-mnist-translated"
    base = result("resolution_corrected", "MLP-Mixer at 28 px")
    assert 0 <= base["expanded_top1"] <= 100  # the expanded model on 56-px images, before any fine-tuning
    distilled = result("resmlp_distill", next(r.label for r in exps["resmlp_distill"].runs if r.teacher))
    assert distilled["train_config"]["teacher"].endswith("model.safetensors")
    assert result("position", "plain MLP | 64 images")["data"] == "position-task"
    assert 0 <= result("resmlp_overfit", "ResMLP | 96 images")["train_top1"] <= 100
    assert all(r["precision"] == "float32" for r in map(json.loads, map(Path.read_text, (results / "runs").iterdir())))
    full = result("repmlp_ablation", "full RepMLP")
    assert full["deploy_params"] < full["params"]  # reported in the FC-only deploy form
    latency = json.loads((results / "repmlp_ablation_latency.json").read_text())
    assert len(latency["rows"]) == 6


def test_results_name_files_relative_to_the_runs_folder(quick_lab):
    results, runs, _ = quick_lab
    for path in (results / "runs").glob("*.json"):
        assert str(runs) not in path.read_text(), path.name  # the committed results name no machine's folders
    exp = next(e for e in plan(Settings.tiny()) if e.key == "resmlp_distill")
    run = next(r for r in exp.runs if r.teacher is not None)
    result = json.loads((results / "runs" / f"{run.key}.json").read_text())
    assert (runs / result["train_config"]["teacher"]).is_file()
    assert (runs / result["summary"]["files"]["model"]).is_file()


def test_each_section_states_the_machine_and_precision_its_runs_recorded(quick_lab, tmp_path):
    results, _, _ = quick_lab
    machine = json.loads((results / "meta.json").read_text())["machine"]
    exp = next(e for e in plan(Settings.tiny()) if e.key == "repmlp_ablation")
    keys = list(dict.fromkeys(r.key for r in exp.runs))
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    path = copy / "runs" / f"{keys[0]}.json"
    r = json.loads(path.read_text())
    assert r["machine"] == machine and r["precision"] == "float32"
    path.write_text(json.dumps({**r, "machine": "another CPU"}))  # as if this run had been trained elsewhere

    def section() -> str:
        return write_report(copy, tmp_path / "docs").read_text().split(f"## {exp.title}")[1].split("\n## ")[0]

    text = section()
    runs_of_first = sum(run.key == keys[0] for run in exp.runs)
    assert f"another CPU: {runs_of_first} run" in text and f"Latency timed on {machine}." in text
    shutil.copy(results / "runs" / f"{keys[0]}.json", copy / "runs")  # all on one machine again
    text = section()
    assert f"{machine}: {len(exp.runs)} runs in float32" in text and "Latency timed on the same machine." in text


def test_latency_is_shown_only_for_the_configuration_it_timed(quick_lab, tmp_path):
    """Mixer vs ViT times its models at several sizes: the rows trained at the data's size show the matching entry;
    an entry whose recorded config is not the plan's (an old label or model, say) is stale and shown as not timed."""
    results, _, _ = quick_lab
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    exp = next(e for e in plan(Settings.tiny()) if e.key == "mixer_vs_vit")

    def mixer_row() -> tuple[str, str]:
        section = write_report(copy, tmp_path / "docs").read_text().split(f"## {exp.title}")[1].split("\n## ")[0]
        return next(line for line in section.splitlines() if line.startswith("| MLP-Mixer |")), section

    row, _ = mixer_row()
    timed = json.loads((results / "mixer_vs_vit_latency.json").read_text())["rows"]["MLP-Mixer at 28 px"]
    assert row.endswith(f"| {timed['median_ms']:.2f} |")
    path = copy / "mixer_vs_vit_latency.json"
    table = json.loads(path.read_text())
    table["rows"]["MLP-Mixer at 28 px"]["config"] = table["rows"]["ViT at 28 px"]["config"]  # timed another model
    path.write_text(json.dumps(table))
    row, section = mixer_row()
    assert row.endswith("| - |") and f"Latency: only {len(exp.latency) - 1} of its {len(exp.latency)} models" in section
    assert "at least 2x at 784 patches: **pending**" in section  # the check waits for the whole table


def test_rows_missing_a_seed_leave_their_comparisons_pending(quick_lab, tmp_path):
    results, _, _ = quick_lab
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    exp = next(e for e in plan(Settings.tiny()) if e.key == "permutation")
    for run in exp.runs:
        if run.label.startswith("ConvNet"):
            (copy / "runs" / f"{run.key}.json").unlink(missing_ok=True)
    section = write_report(copy, tmp_path / "docs").read_text().split(f"## {exp.title}")[1].split("\n## ")[0]
    assert "| the permutation hurts the ConvNet | " in section and section.count("pending (runs missing) |") == 4
    assert '**Verdicts.** pending (runs missing): "the permutation hurts the ConvNet"' in section  # under the title
    assert "| MLP-Mixer \\| permuted | 2 |" in section  # the other rows stand


def test_finished_runs_are_skipped_and_the_report_is_rebuilt_from_json_alone(quick_lab, monkeypatch, tmp_path):
    results, runs, docs = quick_lab
    import mlpvision.lab.runner

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(mlpvision.lab.runner, "train", no_training)
    run_lab(Settings.tiny(), results, runs)  # everything is done: nothing trains
    first = (docs / "results.md").read_text()
    again = write_report(results, tmp_path)
    assert again.read_text() == first  # the report depends on the JSON files only


def test_a_missing_result_retrains_only_that_run(quick_lab, monkeypatch):
    results, runs, _ = quick_lab
    import mlpvision.lab.runner

    real, trained = mlpvision.lab.runner.train, []
    monkeypatch.setattr(mlpvision.lab.runner, "train", lambda cfg, **kw: trained.append(cfg.out) or real(cfg, **kw))
    exp = next(e for e in plan(Settings.tiny()) if e.key == "position")
    (results / "runs" / f"{exp.runs[0].key}.json").unlink()
    run_lab(Settings.tiny(), results, runs, only=["position"])
    assert trained == [str(runs / exp.runs[0].key)]  # from the start: its training state had been dropped


def test_finished_runs_keep_their_model_files_and_drop_their_training_state(quick_lab):
    _, runs, _ = quick_lab
    folders = [p for p in runs.iterdir() if (p / "summary.json").is_file()]
    assert folders and all((p / "model.safetensors").is_file() for p in folders)
    assert not [p.name for p in folders if (p / "last.safetensors").exists()]


def test_unknown_experiment_is_a_clear_error(capsys):
    with pytest.raises(ConfigError, match="unknown experiment"):
        run_lab(Settings.tiny(), only=["nope"])
    assert main(["lab", "--quick", "--only", "nope"]) == 2
    assert "unknown experiment(s) nope" in capsys.readouterr().err


PROBES = ("position", "global")  # the synthetic probes


def test_the_cifar10_plan_uses_the_32px_twins_and_keeps_the_synthetic_probes():
    exps = plan(Settings(data="cifar10"))
    assert "resmlp_transfer" not in {e.key for e in exps}  # its class split is Fashion-MNIST's
    for exp in exps:
        for run in [*exp.runs, *(r.teacher for r in exp.runs if r.teacher)]:
            if exp.key in PROBES or run.data.endswith("-task"):  # synthetic 28x28 data whatever the lab's data set
                assert run.data.endswith("-task") and run.model.endswith("_28")
            else:
                assert run.data.startswith("cifar10") and run.model.endswith("_32"), run
                assert all(m.endswith("_32") for m, _ in exp.latency.values())
    # identical probe trainings are shared with the Fashion-MNIST lab; nothing else is
    fm = {r.key for e in plan(Settings()) for r in e.runs}
    synthetic = {r.key for e in exps for r in e.runs if r.data.endswith("-task")}
    assert {r.key for e in exps for r in e.runs} & fm == synthetic


def test_the_lab_runs_on_cifar10(tmp_path):
    write_cifar10(tmp_path, per_file=60)  # 300 training and 60 test images
    results, docs = tmp_path / "results", tmp_path / "docs"
    args = ["lab", "--quick", "--data", "cifar10", "--data-dir", str(tmp_path), "--only", "repmlp_vs_convnet"]
    args += ["--results", str(results), "--runs", str(tmp_path / "runs"), "--docs", str(docs)]
    assert main(args) == 0
    written = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    # quick mode: no tuning runs; each row's half-budget twin is the same training (one epoch either way)
    assert {(r["model"], r["data"]) for r in written} == {("repmlp_fast_32", "cifar10")} and len(written) == 6
    assert len(json.loads((results / "repmlp_vs_convnet_latency.json").read_text())["rows"]) == 3
    report = (docs / "results-cifar10.md").read_text()
    assert "results on CIFAR-10" in report and "Pure-MLP RepMLP against a Wide ConvNet" in report
    assert not (docs / "results.md").exists()


def test_the_lab_refuses_other_data_sets(capsys):
    assert main(["lab", "--quick", "--data", "synthetic", "--list"]) == 2
    assert "the lab runs on fashion-mnist, cifar10, cifar100, not 'synthetic'" in capsys.readouterr().err


def _published(folder, **changes):
    """A published headline folder as experiments/headline.py writes it (summary, eval.json, curves)."""
    folder.mkdir(parents=True)
    summary = {
        "model": "repmlp_fast_28",
        "epochs_done": 80,
        "train_seconds": 9000.0,
        "best_epoch": 77,
        "best_val_top1": 95.2,
        "test_top1_best": 94.9,
    }
    report = {
        "recipe": "results/allmlp_headline/recipe.yaml",
        "file": "results/allmlp_headline/model.safetensors",
        "params": 12_690_000,
        "dtype": "float16",
        "all_mlp": True,
        "best_epoch": 77,
        "best_val_top1": 95.2,
        "test_top1": 94.87,
        "test_top5": 99.9,
        "target_top1": 95.0,
        "met": False,
        "command": "mlpvision eval --checkpoint m.safetensors",
        **changes,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "eval.json").write_text(json.dumps(report))
    (folder / "curves.png").write_bytes(b"png")
    return report


def test_the_report_shows_the_published_headline_model(tmp_path):
    folder = tmp_path / "results" / "allmlp_headline"
    report = _published(folder)
    page = write_report(tmp_path / "lab", tmp_path / "docs", folder).read_text()
    assert "test top-1 of the published file: **94.87%**" in page and "**not met**" in page
    assert "12.69 M parameters, float16, all-MLP: yes" in page and report["command"] in page
    assert "![training curves](../results/allmlp_headline/curves.png)" in page
    assert "recipe: `results/allmlp_headline/recipe.yaml`" in page and "### " not in page
    second = tmp_path / "results" / "allmlp_headline_kd"  # a second published attempt: one subsection each
    _published(second, test_top1=95.31, met=True)
    page = write_report(tmp_path / "lab", tmp_path / "docs", [folder, second]).read_text()
    assert page.count("## Published models") == 1 and "**94.87%**" in page and "**95.31%**" in page
    assert page.index(f"### `{folder.as_posix()}`") < page.index(f"### `{second.as_posix()}`")
    table = page[page.index("| published model |") : page.index("### ")]  # the attempts side by side, in order
    assert f"| `{folder.as_posix()}` | 12.69 M | - | 77 | 95.20% | 94.87% | 95.0%: not met |" in table
    assert table.index("94.87%") < table.index("| 95.31% | 95.0%: met |")


def test_the_default_report_lists_every_published_headline_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _published(tmp_path / "results" / "allmlp_headline_kd", test_top1=95.31, met=True)
    _published(tmp_path / "results" / "allmlp_headline")
    (tmp_path / "results" / "allmlp_headline_old").mkdir()  # no eval.json: not published, not listed
    teacher = tmp_path / "results" / "a_convnet_teacher"
    report = _published(teacher, role="distillation teacher", all_mlp=False, test_top1=94.81)
    del report["target_top1"], report["met"]  # as experiments/headline.py --teacher writes it: no target
    (teacher / "eval.json").write_text(json.dumps(report))
    assert main(["lab", "--report-only"]) == 0
    page = (tmp_path / "docs" / "results.md").read_text()
    teacher_at = page.index("### `results/a_convnet_teacher` (distillation teacher)")
    assert page.index("### `results/allmlp_headline`") < page.index("### `results/allmlp_headline_kd`") < teacher_at
    assert "allmlp_headline_old" not in page
    assert "`python experiments/headline.py --teacher`" in page[teacher_at:] and "all-MLP: no" in page[teacher_at:]
    assert "**94.81%**" in page[teacher_at:] and "no target" in page[teacher_at:] and "not met" not in page[teacher_at:]
    assert "| 94.81% | none (teacher) |" in page[: page.index("### ")]


def test_committed_files_name_paths_relative_to_the_repository_or_to_their_run_folder(tmp_path):
    repo, elsewhere = tmp_path / "repo", tmp_path / "disk" / "runs"
    assert shown_path(repo / "results" / "m" / "model.safetensors", repo) == "results/m/model.safetensors"
    assert shown_path(elsewhere / "m" / "model.safetensors", repo) == "m/model.safetensors"
    dest = elsewhere / "m"  # a file below its result folder keeps the folder's name in front
    assert shown_path(dest / "published" / "model.safetensors", repo, dest) == "m/published/model.safetensors"
    assert shown_path(repo / ".." / "disk" / "runs" / "m", repo, dest) == "m"  # resolved, not copied as written
