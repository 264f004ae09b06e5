"""The lab's executors: the Ray executor gives the in-process executor's result files, retries and reports failing
runs, and declares resources (GPUs, memory) by rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlpvision.cli import main
from mlpvision.errors import ConfigError
from mlpvision.lab import Settings, plan, run_lab
from mlpvision.lab.executors import (
    EXECUTORS,
    SMALL_GPU_FRACTION,
    LabRunsFailed,
    LocalExecutor,
    RayExecutor,
    make_executor,
    resources,
    train_task,
)
from mlpvision.lab.spec import LabRun

ONLY = ["resmlp_distill"]  # teachers train first: dependencies cross tasks
TIMING = {"train_seconds", "epoch_seconds", "eval_seconds", "seconds", "machine", "images_per_second"}


def _strip(obj):
    """A result without its timing fields and machine description (they differ from run to run)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING and "seconds" not in k}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _results(folder: Path) -> dict[str, dict]:
    return {f.stem: _strip(json.loads(f.read_text())) for f in sorted((folder / "runs").glob("*.json"))}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mlpvision[cluster]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_gives_the_in_process_result_files(ray_cluster, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task trains: the same arithmetic, bit for bit
    try:
        run_lab(Settings.tiny(), tmp_path / "local", tmp_path / "runs-local", only=ONLY, latency=False)
    finally:
        torch.set_num_threads(threads)
    run_lab(Settings.tiny(), tmp_path / "ray", tmp_path / "runs-ray", only=ONLY, latency=False, executor=RayExecutor())
    local, remote = _results(tmp_path / "local"), _results(tmp_path / "ray")
    assert local and local.keys() == remote.keys()
    for key in local:
        assert remote[key] == local[key], key
    # the driver keeps the model files other runs need (the teachers), written from the tasks' bytes
    teachers = [k for k, r in local.items() if "teacher" in r["train_config"]]
    assert teachers
    for key in teachers:
        teacher = Path(local[key]["train_config"]["teacher"]).parent.name
        assert (tmp_path / "runs-ray" / teacher / "model.safetensors").is_file()


def test_the_command_runs_the_quick_lab_on_ray(ray_cluster, tmp_path, capsys):
    results, docs = tmp_path / "results", tmp_path / "docs"
    args = ["lab", "--quick", "--executor", "ray", "--only", "tying", "--results", str(results)]
    assert main([*args, "--runs", str(tmp_path / "runs"), "--docs", str(docs)]) == 0
    assert "ray: done" in capsys.readouterr().out
    keys = {r.key for e in plan(Settings.tiny()) if e.key == "tying" for r in e.runs}
    assert {f.stem for f in (results / "runs").glob("*.json")} == keys
    assert (docs / "results.md").is_file()


def test_finished_runs_are_not_sent_to_the_cluster(ray_cluster, tmp_path):
    def refuse(payload):
        raise AssertionError(f"{payload['run'].key} trained again")

    run_lab(Settings.tiny(), tmp_path, tmp_path / "runs", only=["tying"], latency=False, executor=RayExecutor())
    before = _results(tmp_path)
    run_lab(Settings.tiny(), tmp_path, tmp_path / "runs", only=["tying"], executor=RayExecutor(work=refuse))
    assert _results(tmp_path) == before


class Flaky:
    """Fails the first ``fails`` attempts of every run (counted in files under ``folder``), then trains it."""

    def __init__(self, folder: Path, fails: int) -> None:
        self.folder, self.fails = folder, fails

    def __call__(self, payload: dict) -> dict:
        log = self.folder / payload["run"].key
        attempts = int(log.read_text()) + 1 if log.is_file() else 1
        log.write_text(str(attempts))
        if attempts <= self.fails:
            raise RuntimeError(f"attempt {attempts} failed on purpose")
        return train_task(payload)


def test_a_failing_task_is_retried_then_reported(ray_cluster, tmp_path):
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    once = RayExecutor(retries=2, work=Flaky(attempts, fails=1))
    run_lab(Settings.tiny(), tmp_path / "a", tmp_path / "runs-a", only=["tying"], latency=False, executor=once)
    tried = {f.name: int(f.read_text()) for f in attempts.iterdir()}
    assert tried and set(tried.values()) == {2}  # each run failed once and succeeded on its retry
    assert len(list((tmp_path / "a" / "runs").glob("*.json"))) == len(tried)

    never = RayExecutor(retries=1, work=Flaky(tmp_path / "attempts", fails=99))
    for f in attempts.iterdir():
        f.unlink()
    with pytest.raises(LabRunsFailed) as caught:
        run_lab(Settings.tiny(), tmp_path / "b", tmp_path / "runs-b", only=["tying"], executor=never)
    failures = caught.value.failures
    assert {f.key for f in failures} == set(tried)  # every run reported, none dropped
    assert all(f.attempts == 2 and "on purpose" in f.error for f in failures)
    assert {int(f.read_text()) for f in attempts.iterdir()} == {2}  # one try and one retry each
    assert not list((tmp_path / "b" / "runs").glob("*.json"))


def test_a_run_whose_teacher_failed_is_reported_not_submitted(ray_cluster, tmp_path):
    teacher = LabRun("teacher", "no_such_model_28", data="fashion-mnist")
    student = LabRun("student", "mlp_28", teacher=teacher, train={"epochs": 1})
    from mlpvision.lab.executors import Batch
    from mlpvision.lab.runner import Lab

    lab = Lab(Settings.tiny(), tmp_path, tmp_path / "runs")
    with pytest.raises(LabRunsFailed) as caught:
        RayExecutor(retries=0).run(lab, [Batch("x", [("student", student)])])
    reasons = {f.label: f.error for f in caught.value.failures}
    assert "no_such_model" in reasons["teacher"]
    assert "dependency teacher failed" in reasons["student"]


class _FailingLab:
    """A lab whose runs named in ``bad`` raise ``error``; the others finish at once."""

    def __init__(self, bad: set[str], error: Exception) -> None:
        self.bad, self.error, self.ensured = bad, error, []

    def ensure(self, run: LabRun, need_model: bool = False) -> dict:
        if run.key in self.bad:
            raise self.error
        self.ensured.append((run.key, need_model))
        return {}


@pytest.mark.parametrize("error", [RuntimeError("a bug on purpose"), ConfigError("bad on purpose")])
def test_in_this_process_a_failed_run_costs_only_the_runs_that_need_it(error, capsys, caplog):
    from mlpvision.lab.executors import Batch

    teacher = LabRun("teacher", "mlp_28")
    student, other = LabRun("student", "mlp_28", teacher=teacher), LabRun("other", "mlp_28", seed=2)
    second = LabRun("second student", "mlp_28", seed=1, teacher=teacher)
    lab, after = _FailingLab({teacher.key}, error), []
    batches = [
        Batch("a", [("student", student), ("other", other), ("second", second)], lambda: after.append("a")),
        Batch("b", [("other again", other)], lambda: after.append("b")),
    ]
    with pytest.raises(LabRunsFailed) as caught:
        LocalExecutor().run(lab, batches, progress=print)
    reasons = {f.label: (f.error, f.attempts) for f in caught.value.failures}
    assert reasons == {
        "teacher": ("bad on purpose" if isinstance(error, ConfigError) else "a bug on purpose", 1),
        "student": ("its dependency teacher failed", 0),
        "second student": ("its dependency teacher failed", 0),  # the teacher is not tried again
    }
    assert lab.ensured == [(other.key, False), (other.key, False)]  # every other run went on
    assert after == ["b"]  # a batch's closing step (its latency) waits for all its runs
    assert "teacher (seed 0) failed" in capsys.readouterr().out
    [record] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert (record.exc_info is not None) == (not isinstance(error, ConfigError))  # a bug keeps its traceback


def test_in_this_process_a_stop_signal_stops_the_lab():
    from mlpvision.lab.executors import Batch
    from mlpvision.train import TrainingStopped

    first, second = LabRun("first", "mlp_28"), LabRun("second", "mlp_28", seed=1)
    lab = _FailingLab({first.key}, TrainingStopped("stopped by SIGTERM", 15))
    with pytest.raises(TrainingStopped):
        LocalExecutor().run(lab, [Batch("a", [("first", first), ("second", second)])])
    assert lab.ensured == []  # not counted as a failed run: nothing after it was tried


def test_the_lab_command_writes_the_page_then_reports_the_failed_runs(tmp_path, monkeypatch, capsys):
    import mlpvision.lab
    from mlpvision.lab.executors import Failure

    failures = [Failure(f"k{i}", f"run {i}", "a bug on purpose", 1) for i in range(7)]

    def failing(*a, **kw):
        raise LabRunsFailed(failures)

    monkeypatch.setattr(mlpvision.lab, "run_lab", failing)
    args = ["lab", "--quick", "--results", str(tmp_path / "r"), "--runs", str(tmp_path / "runs")]
    assert main([*args, "--docs", str(tmp_path / "docs")]) == 1  # the lab ran: status 1, not bad input's 2
    err = capsys.readouterr().err
    assert err.startswith("mlpvision: error: 7 lab run(s) failed") and "run 4 (k4)" in err and "run 5" not in err
    assert "and 2 more" in err and "Traceback" not in err
    assert (tmp_path / "docs" / "results.md").is_file()  # the page shows what did finish


def test_resources_follow_the_gpu_rule():
    s, quick = Settings.full(), Settings.tiny()
    big = LabRun("big", "repmlp_fast_28", train={"train_subset": 5000})
    few = LabRun("few", "mlp_28", train={"train_subset": 100})
    wide = LabRun("224", "mixer_s16_224")
    assert resources(big, s, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0.0, "memory": 1 << 30}
    assert resources(big, s, cluster_gpus=8)["num_gpus"] == 1.0  # one GPU per run
    assert resources(few, s, cluster_gpus=8)["num_gpus"] == SMALL_GPU_FRACTION  # the few-image probes share
    assert resources(big, quick, cluster_gpus=1)["num_gpus"] == SMALL_GPU_FRACTION  # so does the quick mode
    assert resources(wide, s, cluster_gpus=1, cpus=4) == {"num_cpus": 4, "num_gpus": 1.0, "memory": 8 << 30}
    assert resources(big, quick, cluster_gpus=0)["memory"] < resources(big, s, cluster_gpus=0)["memory"]


def test_the_executor_table_and_its_errors(monkeypatch, capsys):
    assert set(EXECUTORS) == {"local", "ray"}
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ConfigError, match="choose from local, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor("local", address="auto")
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"pip install 'mlpvision\[cluster\]'"):
        make_executor("ray")
    assert main(["lab", "--quick", "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mlpvision[cluster]" in err
