"""A lab run's key names its result file: the key must not move when the training options gain a field.

The key hashes what a run states (model, seed, data, model arguments, its ``train`` overrides, teacher and init),
not the resolved :class:`~mlpvision.train.TrainConfig`, so a new option at its default leaves every committed
result where it is. These tests rebuild the committed results' keys with the current code.
"""

import json
from pathlib import Path

import pytest

from mlpvision.lab.plan import plan
from mlpvision.lab.runner import Lab
from mlpvision.lab.spec import LabRun, Settings
from mlpvision.train import TrainConfig

RESULTS = Path(__file__).resolve().parents[1] / "results" / "lab" / "runs"
_RUN_FIELDS = ("model", "data", "seed", "model_args", "out")  # the fields of Lab._config that are not overrides


def _committed_runs() -> list[tuple[str, LabRun]]:
    """(file name, the run rebuilt from what the file records) for each result trained without teacher or init."""
    runs = []
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        cfg = result["train_config"]
        if cfg.get("teacher") or cfg.get("init"):  # their keys hash the teacher's or init run's key
            continue
        train = {k: v for k, v in cfg.items() if k not in _RUN_FIELDS}
        run = LabRun(
            label=result["label"],
            model=result["model"],
            seed=result["seed"],
            data=result["data"],
            model_args=result["model_args"],
            train=train,
        )
        runs.append((path.stem, run))
    return runs


def test_committed_results_keep_their_keys(tmp_path):
    runs = _committed_runs()
    if not runs:
        pytest.skip("no committed lab results")
    lab = Lab(Settings.full(), tmp_path, tmp_path / "runs")
    for name, run in runs:
        assert run.key == name
        cfg = TrainConfig.from_dict(lab._config(run))  # the run's options still make a valid config
        assert cfg.compile is False and cfg.val_size == run.train["val_size"]


def test_key_ignores_options_a_run_does_not_state():
    run = LabRun(label="a", model="mixer_t4_28", train={"epochs": 3, "val_size": 100})
    relabelled = run.but(label="b")
    assert relabelled.key == run.key  # the label is not the training
    # a run that states an option changes key, whatever its value: the key records what the run asked for
    assert run.but(train={**run.train, "compile": False}).key != run.key
    assert run.but(seed=1).key != run.key


@pytest.mark.parametrize("settings", [Settings.tiny(), Settings.full()], ids=["tiny", "full"])
def test_plan_runs_state_their_validation_size(settings):
    # TrainConfig sizes the validation split to the run when val_size is not given; a lab run that relied on that
    # default would change its training without changing its key
    runs = [run for exp in plan(settings) for run in exp.runs]
    assert runs
    assert [run.key for run in runs if "val_size" not in run.train] == []
