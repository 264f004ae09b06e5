"""The training engine on tiny synthetic data: outputs, exact resume after kill -9, NaN handling, distillation,
fine-tuning and the train / eval / predict commands."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import mlpvision
from mlpvision.cli import main
from mlpvision.data import AugmentConfig
from mlpvision.errors import ConfigError
from mlpvision.io import read_safetensors
from mlpvision.train import TrainConfig, TrainingError, TrainingStopped, build_data, load_teacher, train

from .helpers import tiny_cfg

# `mlpvision train` on a tiny Mixer and synthetic data, without autocast or a progress bar
TINY_CLI = ["mlpvision", "train", "--quiet", "--no-amp", "--data", "synthetic", "--model", "mixer_t4_28"]
TINY_CLI += ["--model-arg", "depth=2", "--model-arg", "embed_dim=32"]


def _weights(path):
    return read_safetensors(path)[0]


def test_training_learns_and_writes_its_outputs(tmp_path):
    summary = train(tiny_cfg(tmp_path, epochs=3, aug=AugmentConfig(crop_padding=1, hflip=0.5)))
    assert summary["test_top1_best"] > 90, summary  # the synthetic task is easy: chance is 25%
    for name in ("last", "model", "best"):
        assert (tmp_path / f"{name}.safetensors").is_file()
    for name in ("config.json", "metrics.csv", "metrics.json", "curves.png", "confusion.png", "summary.json"):
        assert (tmp_path / name).is_file(), name
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model = mlpvision.load_checkpoint(tmp_path / "model.safetensors")  # no other information needed
    assert model.model_name == "mixer_t4_28" and model.num_classes == 4


def test_the_final_model_shares_the_best_files_bytes_when_it_is_the_best(tmp_path):
    summary = train(tiny_cfg(tmp_path, model="wide_convnet_28", model_args={}, epochs=1, val_size=0))
    assert summary["best_is_final"]
    for final, best in (("model", "best"), ("model_deploy", "best_deploy")):  # BN folded into convs
        assert (tmp_path / f"{final}.safetensors").read_bytes() == (tmp_path / f"{best}.safetensors").read_bytes()
    deployed = mlpvision.load_checkpoint(tmp_path / "best_deploy.safetensors")
    assert deployed.config.deploy and not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    (tmp_path / "best.safetensors").unlink()  # the names are independent files
    assert mlpvision.load_checkpoint(tmp_path / "model.safetensors").model_name == "wide_convnet_28"


def test_same_seed_same_weights(tmp_path):
    train(tiny_cfg(tmp_path / "a", epochs=1))
    train(tiny_cfg(tmp_path / "b", epochs=1))
    a, b = _weights(tmp_path / "a/model.safetensors"), _weights(tmp_path / "b/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli_train(out, *extra):
    cmd = [
        sys.executable,
        "-m",
        "mlpvision",
        "train",
        "--quiet",
        "--no-amp",
        "--data",
        "synthetic",
        "--model",
        "resmlp_tiny_12_28",
        "--model-arg",
        "depth=2",
        "--model-arg",
        "embed_dim=32",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--val-size",
        "64",
        "--lr",
        "2e-3",
        "--seed",
        "5",
        "--save-every-steps",
        "2",
        "--crop-padding",
        "1",
        "--mixup",
        "0.2",
        "--ema-decay",
        "0.9",
        "--out",
        str(out),
        *extra,
    ]
    return cmd


def _saved_step(path) -> int:
    try:
        return json.loads(read_safetensors(path)[1]["mlpvision.train_state"])["loop"]["global_step"]
    except Exception:  # not written yet
        return -1


# the figures of an epoch's record that are clock readings (the rest must match between runs)
TIMES = ("epoch_seconds", "img_per_s", "val_seconds")


@pytest.mark.slow
def test_resume_after_kill_9_is_bit_identical(tmp_path):
    ref = subprocess.run(_cli_train(tmp_path / "ref"), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    # the same run, killed with SIGKILL at two points (mid-epoch), resumed each time
    out = tmp_path / "killed"
    kills = []
    for kill_after in (40, 130):
        proc = subprocess.Popen(_cli_train(out, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start = time.time()
        while proc.poll() is None and _saved_step(out / "last.safetensors") < kill_after and time.time() - start < 120:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(_saved_step(out / "last.safetensors"))
        proc.wait()
    done = subprocess.run(_cli_train(out, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(kills) == 2 and kills[0] < kills[1] < 224, kills
    a, b = _weights(tmp_path / "ref/model.safetensors"), _weights(out / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    rows = [json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "ref", out)]
    assert [{k: v for k, v in r.items() if k not in TIMES} for r in rows[1]] == [
        {k: v for k, v in r.items() if k not in TIMES} for r in rows[0]
    ], "an epoch killed in its middle records other training figures than the uninterrupted one"


# signal, the epoch and step it arrives at ("last": the epoch's last step), max_steps past one epoch, the stop's words
STOPS = [
    (signal.SIGTERM, 1, 5, None, "at epoch 2, step 5 of"),
    (signal.SIGINT, 1, 5, None, "at epoch 2, step 5 of"),
    (signal.SIGTERM, 0, "last", None, "after epoch 1 of 2"),  # the epoch's validation and records still happen
    (signal.SIGTERM, 1, "last", None, "after epoch 2 of 2"),  # the resume only tests and saves
    (signal.SIGTERM, 1, 3, 3, "after epoch 2 of 2"),  # the step max_steps ends at (one epoch and 3 steps)
]


@pytest.mark.parametrize("signum, epoch, step, extra_steps, where", STOPS)
def test_a_stop_signal_saves_the_step_and_a_resume_ends_as_an_uninterrupted_run(
    tmp_path, signum, epoch, step, extra_steps, where
):
    per_epoch = len(build_data(tiny_cfg(tmp_path), None, 1).train) // 16
    kw = {} if extra_steps is None else {"max_steps": per_epoch + extra_steps}
    ref = train(tiny_cfg(tmp_path / "ref", **kw))
    steps = []

    def stop(row: dict) -> None:
        if row["phase"] == "train":
            steps.append(row["step"])
            if row["epoch"] == epoch and row["step"] == (row["steps"] if step == "last" else step):
                os.kill(os.getpid(), signum)  # delivered here: the run finishes the step it is in

    cfg, before = tiny_cfg(tmp_path / "stopped", **kw), signal.getsignal(signum)
    with pytest.raises(TrainingStopped, match=f"{where}.*--resume continues") as caught:
        train(cfg, progress=stop)
    assert caught.value.exit_code == 128 + signum and len(steps) <= ref["steps"]
    assert not (tmp_path / "stopped" / "model.safetensors").exists()  # not finished: only the state is saved
    assert signal.getsignal(signum) == before  # the handler is the caller's again
    stopped_cpu = load_training_checkpoint_loop(tmp_path / "stopped" / "last.safetensors").cpu_s
    done = train(cfg, resume=True)
    assert done["steps"] == ref["steps"] and done["train_cpu_seconds"] >= stopped_cpu > 0  # summed across resumes
    assert done["train_cpu_seconds"] > stopped_cpu or "after" in where  # unless no step was left to train
    assert done["best_epoch"] == ref["best_epoch"] and done["test_top1_best"] == ref["test_top1_best"]
    for name in ("model.safetensors", "best.safetensors"):
        a, b = _weights(tmp_path / "ref" / name), _weights(tmp_path / "stopped" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), f"the resumed run's {name} differs from the uninterrupted one"
    # every epoch's record is the uninterrupted run's, the one stopped in its middle too (its training loss and
    # top-1 sum the steps before the stop and after the resume); only the clock figures differ
    rows = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ref", "stopped")]
    assert [{k: v for k, v in r.items() if k not in TIMES} for r in rows[1]] == [
        {k: v for k, v in r.items() if k not in TIMES} for r in rows[0]
    ]
    assert all(r["epoch_seconds"] > 0 for r in rows[1])


def load_training_checkpoint_loop(path):
    from mlpvision.train.state import STATE_KEY, LoopState

    return LoopState(**json.loads(read_safetensors(path)[1][STATE_KEY])["loop"])


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    def twice(row: dict) -> None:
        if row["phase"] == "train" and row["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tmp_path), progress=twice)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_train_command_exits_143_on_sigterm_with_its_state_saved(tmp_path, monkeypatch, capsys):
    import mlpvision.train.loop as loop

    real = loop.train_one_epoch

    def signalled(run, epoch, deadline):
        os.kill(os.getpid(), signal.SIGTERM)  # before the epoch's first step: that step still runs
        return real(run, epoch, deadline)

    monkeypatch.setattr(loop, "train_one_epoch", signalled)
    out = tmp_path / "run"
    args = ["train", "--quiet", "--no-amp", "--data", "synthetic", "--model", "mixer_t4_28", "--epochs", "1"]
    assert main([*args, "--model-arg", "depth=1", "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert err.startswith("mlpvision: error: stopped by SIGTERM at epoch 1, step 1 of") and "--resume" in err
    assert (out / "last.safetensors").is_file()


def test_max_steps_ends_the_schedule_mid_epoch_and_a_resume_keeps_it(tmp_path):
    per_epoch = len(build_data(tiny_cfg(tmp_path), None, 1).train) // 16
    cfg = tiny_cfg(tmp_path, epochs=3, max_steps=per_epoch + per_epoch // 2, min_lr=1e-5, warmup_epochs=0.2)
    summary = train(cfg)
    assert summary["steps"] == cfg.max_steps and summary["epochs_done"] == 2
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["step"] for h in history] == [per_epoch, cfg.max_steps]
    assert history[-1]["lr"] == pytest.approx(1e-5)  # the cosine reached its end at the last step, not at epoch 3
    weights = _weights(tmp_path / "model.safetensors")
    again = train(cfg, resume=True)  # finished: nothing more is trained
    assert again["steps"] == cfg.max_steps
    assert all(torch.equal(weights[k], v) for k, v in _weights(tmp_path / "model.safetensors").items())
    assert train(tiny_cfg(tmp_path / "epochs", epochs=1, max_steps=10**6))["steps"] == per_epoch  # epochs first


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import mlpvision.train.task as engine  # the task object computes the training loss

    calls = {"n": 0}
    real = engine.F.cross_entropy

    def poisoned(*args, **kwargs):  # the 7th training loss is NaN, as after a blow-up
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(engine.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 7") as e:
        train(tiny_cfg(tmp_path, epochs=1, save_every_steps=2))
    assert "last.safetensors" in str(e.value)
    kept = read_safetensors(tmp_path / "last.safetensors")
    assert json.loads(kept[1]["mlpvision.train_state"])["loop"]["global_step"] == 6  # the last good step
    assert all(torch.isfinite(v).all() for v in kept[0].values() if v.is_floating_point())


def test_distillation_from_a_convnet_teacher(tmp_path):
    teacher_args = {"channels": (8, 8, 8), "hidden_dim": 16}
    out = str(tmp_path / "teacher")
    train(
        TrainConfig(
            model="wide_convnet_28",
            model_args=teacher_args,
            data="synthetic",
            epochs=1,
            batch_size=16,
            val_size=64,
            out=out,
        )
    )
    teacher = str(tmp_path / "teacher/model.safetensors")
    for mode in ("hard", "soft"):
        summary = train(tiny_cfg(tmp_path / mode, epochs=1, teacher=teacher, distill=mode))
        assert summary["steps"] > 0


def test_an_ensemble_teacher_is_the_mean_of_its_members_logits(tmp_path):
    files = []
    for seed in (0, 1):
        train(tiny_cfg(tmp_path / f"t{seed}", epochs=1, seed=seed))
        files.append(str(tmp_path / f"t{seed}/model.safetensors"))
    ensemble = load_teacher(files, torch.device("cpu"))
    x = torch.randn(5, 1, 28, 28)
    members = [mlpvision.load_checkpoint(f)(x) for f in files]
    assert not torch.allclose(members[0], members[1])  # two different teachers
    torch.testing.assert_close(ensemble(x), (members[0] + members[1]) / 2)
    assert not any(p.requires_grad for p in ensemble.parameters())
    # the recipe key takes a list, the command line a repeated flag
    summary = train(tiny_cfg(tmp_path / "student", epochs=1, teacher=files, distill="soft"))
    assert summary["steps"] > 0
    teachers = ["--teacher", files[0], "--teacher", files[1]]
    cmd = _cli_train(tmp_path / "cli", "--epochs", "1", "--distill", "soft", *teachers)
    assert main(cmd[cmd.index("train") :]) == 0
    assert json.loads((tmp_path / "cli/config.json").read_text())["teacher"] == files
    with pytest.raises(ConfigError, match="needs --teacher"):
        tiny_cfg(tmp_path / "none", teacher=[], distill="soft").validate()


def test_finetune_resets_head_and_transfers_resolution(tmp_path):
    train(tiny_cfg(tmp_path / "base", epochs=1))
    base = tmp_path / "base/model.safetensors"
    summary = train(tiny_cfg(tmp_path / "ft", epochs=1, init=str(base), img_size=56))
    model = mlpvision.load_checkpoint(summary["files"]["model"])
    assert model.img_size == 56 and model.config.token_mlp_dim == 4 * 16


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "nope_28", "--data", "synthetic"], "unknown model 'nope_28'"),
        (["train", "--data", "mnist-ish"], "unknown data set"),
        (["train", "--epochs", "0", "--data", "synthetic"], "epochs must be >= 1"),
        (["train", "--max-steps", "-1", "--data", "synthetic"], "max_steps must be >= 0"),
        (["train", "--distill", "hard", "--data", "synthetic"], "needs --teacher"),
        (["eval", "--checkpoint", "/nonexistent.safetensors"], "not found"),
    ],
)
def test_command_errors_are_one_line(capsys, tmp_path, argv, message):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_recipe_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(recipe), "--data", "synthetic", "--out", str(tmp_path)]) == 2
    assert "unknown option(s) learning_rate" in capsys.readouterr().err


def test_eval_and_predict_commands(tmp_path, capsys):
    train(tiny_cfg(tmp_path, epochs=2))
    path = str(tmp_path / "model.safetensors")
    assert main(["eval", "--checkpoint", path, "--json", "--confusion", str(tmp_path / "cm.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "synthetic" and result["top1"] > 90 and len(result["per_class"]) == 4
    assert (tmp_path / "cm.png").is_file()
    from PIL import Image

    from mlpvision.data import synthetic_dataset

    ds = synthetic_dataset(2, seed=9)
    files = []
    for i in range(2):
        f = tmp_path / f"img{i}.png"
        Image.fromarray(ds.images[i, 0].numpy()).save(f)
        files.append(str(f))
    assert main(["predict", "--checkpoint", path, *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, label in zip(lines, ds.labels.tolist(), strict=True):
        assert line.split(": ", 1)[1].startswith(f"class{label}"), line


def test_pickle_checkpoint_for_eval_is_refused(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    torch.save({"a": torch.zeros(1)}, bad)
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(tmp_path):
    args = ["-m", *TINY_CLI, "--epochs", "1", "--batch-size", "16", "--val-size", "64", "--lr", "0.05"]
    args += ["--optimizer", "sgd", "--seed", "1", "--crop-padding", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True, env=env
    )
    assert one.returncode == 0, one.stderr
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*run, *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _weights(tmp_path / "one/model.safetensors"), _weights(tmp_path / "two/model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_resumes(tmp_path):
    args = [*TINY_CLI, "--epochs", "3", "--batch-size", "8", "--val-size", "64", "--seed", "2"]
    args += ["--save-every-steps", "4", "--resume"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ref = subprocess.run([*launcher, "-m", *args, "--out", str(tmp_path / "ref")], capture_output=True, env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*launcher, "--max-restarts", "1", "-m", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    start = time.time()
    while proc.poll() is None and _saved_step(out / "last.safetensors") < 40 and time.time() - start < 120:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert workers, "no worker processes found"
    os.kill(workers[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "resumed from" in err.decode(), "the killed worker group was not restarted from the checkpoint"
    a, b = _weights(tmp_path / "ref/model.safetensors"), _weights(out / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)


def test_predict_rejects_a_non_image(tmp_path, capsys):
    train(tiny_cfg(tmp_path, epochs=1))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["predict", "--checkpoint", str(tmp_path / "model.safetensors"), str(bad)]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    # SGD and a model without batch statistics: two micro-batches of 8 give the gradient of one batch of 16
    common = {"optimizer": "sgd", "lr": 0.05, "epochs": 1}
    train(tiny_cfg(tmp_path / "one", **common))
    train(tiny_cfg(tmp_path / "two", accum_steps=2, **common))
    a, b = _weights(tmp_path / "one/model.safetensors"), _weights(tmp_path / "two/model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)


def test_cli_keeps_the_default_augmentation_and_refines_it(tmp_path):
    base = [
        "train",
        "--quiet",
        "--no-amp",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--model",
        "mixer_t4_28",
        "--model-arg",
        "depth=1",
        "--val-size",
        "64",
    ]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    aug = json.loads((tmp_path / "a/config.json").read_text())["aug"]
    assert (aug["crop_padding"], aug["hflip"]) == (2, 0.5)
    assert main([*base, "--hflip", "0", "--out", str(tmp_path / "b")]) == 0
    aug = json.loads((tmp_path / "b/config.json").read_text())["aug"]
    assert (aug["crop_padding"], aug["hflip"]) == (2, 0.0)


def test_ema_warmup_ramps_the_decay(tmp_path):
    from torch.optim.swa_utils import AveragedModel

    from mlpvision.train import warmup_ema_fn as _warmup_ema_fn

    model = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(model, multi_avg_fn=_warmup_ema_fn(0.99), use_buffers=True)
    expected = None
    for n, w in enumerate([3.0, -1.0, 2.0, 5.0, 0.5] + [1.0] * 60):
        torch.nn.init.constant_(model.weight, w)
        ema.update_parameters(model)
        if n == 0:
            expected = w  # the first update copies the weights
        else:
            d = min(0.99, (1 + n) / (10 + n))  # n = updates averaged so far
            expected = d * expected + (1 - d) * w
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-5)
    # in training: one short epoch, where a fixed 0.999 decay leaves the average near the random start
    fixed = train(tiny_cfg(tmp_path / "fixed", ema_decay=0.999, epochs=1))
    ramped = train(tiny_cfg(tmp_path / "ramped", ema_decay=0.999, ema_warmup=True, epochs=1))
    assert ramped["test_top1_final"] > fixed["test_top1_final"] + 20, (ramped, fixed)


@pytest.mark.parametrize("native", [True, False])
def test_amp_by_default_only_where_bfloat16_is_native(tmp_path, monkeypatch, native):
    monkeypatch.setattr("mlpvision.train.config.native_bf16", lambda device: native)
    train(tiny_cfg(tmp_path, amp=None, epochs=1))
    assert json.loads((tmp_path / "config.json").read_text())["amp"] is native
    monkeypatch.setattr("mlpvision.train.config.native_bf16", lambda device: pytest.fail("an explicit setting is kept"))
    train(tiny_cfg(tmp_path / "forced", amp=not native, epochs=1))
    assert json.loads((tmp_path / "forced" / "config.json").read_text())["amp"] is (not native)


def test_native_bf16_answers_for_each_device_kind():
    from mlpvision.runtime import native_bf16

    assert isinstance(native_bf16("cpu"), bool)
    assert native_bf16("meta") is False


def test_recompute_bn_stats_averages_batch_statistics_with_dropout_off():
    from torch.utils.data import DataLoader, TensorDataset

    from mlpvision.train import recompute_bn_stats

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4, momentum=0.3),
        torch.nn.Dropout(0.5),
        torch.nn.Conv2d(4, 3, 1),
        torch.nn.BatchNorm2d(3),
    )
    x = torch.randn(64, 1, 8, 8) * 3 + 1
    loader = DataLoader(TensorDataset(x, torch.zeros(64)), batch_size=16)
    recompute_bn_stats(model, loader)
    with torch.no_grad():
        h = model[0](x)
        batch_vars = [h[i : i + 16].var((0, 2, 3)) for i in range(0, 64, 16)]
    torch.testing.assert_close(model[1].running_mean, h.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, torch.stack(batch_vars).mean(0), rtol=1e-5, atol=1e-5)
    assert not model.training and model[1].momentum == 0.3 and model[4].momentum == 0.1
    second = model[4].running_var.clone()
    recompute_bn_stats(model, loader)  # dropout stays off: the same statistics again
    torch.testing.assert_close(model[4].running_var, second, rtol=0, atol=0)


def test_ema_bn_images_recompute_the_saved_statistics_and_leave_training_alone(tmp_path):
    from torch.utils.data import DataLoader

    from mlpvision.data import Augmented, build_transform
    from mlpvision.io import load_checkpoint
    from mlpvision.models import create_model
    from mlpvision.train import recompute_bn_stats

    # 256 training images: one evaluation batch, so the recomputed statistics are those of the whole set
    kw = dict(
        model="repmlp_fast_28",
        model_args={"channels": [8, 16], "groups": 2},
        ema_decay=0.99,
        epochs=1,
        train_subset=256,
        plots=False,
    )
    train(tiny_cfg(tmp_path / "plain", **kw))
    cfg = tiny_cfg(tmp_path / "recomputed", ema_bn_images=1000, **kw)
    train(cfg)
    plain, _ = read_safetensors(tmp_path / "plain" / "last.safetensors")
    recomputed, _ = read_safetensors(tmp_path / "recomputed" / "last.safetensors")
    assert plain.keys() == recomputed.keys()
    assert all(torch.equal(plain[k], recomputed[k]) for k in plain), "evaluation changed the training state"
    ema = create_model(cfg.model, num_classes=4, in_chans=1, **cfg.model_args)
    ema.load_state_dict({k[len("ema.module.") :]: v for k, v in plain.items() if k.startswith("ema.module.")})
    data = build_data(cfg, None, None)
    images = Augmented(data.train.base, data.train.indices, build_transform(data.info, None))
    expected = recompute_bn_stats(ema, DataLoader(images, batch_size=256)).state_dict()
    saved = load_checkpoint(tmp_path / "recomputed" / "model.safetensors", device="cpu").state_dict()
    averaged = load_checkpoint(tmp_path / "plain" / "model.safetensors", device="cpu").state_dict()
    stats = [k for k in saved if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(saved[k], averaged[k]) for k in saved if k not in stats and "num_batches" not in k)
    for k in stats:
        torch.testing.assert_close(saved[k], expected[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(saved[k], averaged[k], rtol=1e-3) for k in stats)


def test_validation_every_k_epochs_and_after_the_last(tmp_path):
    summary = train(tiny_cfg(tmp_path, epochs=5, val_every=2, plots=False))
    history = json.loads((tmp_path / "metrics.json").read_text())
    validated = [h["epoch"] for h in history if "val_top1" in h]
    assert validated == [2, 4, 5] and summary["best_epoch"] in validated


def _compile_unavailable() -> str | None:
    """Why torch.compile cannot run here (None when it can): no dynamo support or no working C++ compiler."""
    try:
        fn = torch.compile(lambda x: x * 2 + 1)
        fn(torch.ones(2))
    except Exception as e:  # a missing compiler shows up as one of several backend errors
        return f"torch.compile does not work on this platform: {type(e).__name__}: {str(e).splitlines()[0]}"
    return None


@pytest.mark.slow
def test_compile_trains_to_the_same_weights_up_to_rounding(tmp_path):
    reason = _compile_unavailable()
    if reason:
        pytest.skip(reason)
    kw = {"epochs": 1, "max_steps": 4, "val_size": 0, "plots": False}
    plain = train(tiny_cfg(tmp_path / "eager", **kw))
    compiled = train(tiny_cfg(tmp_path / "compiled", compile=True, **kw))
    assert plain["steps"] == compiled["steps"] == 4
    a, b = _weights(tmp_path / "eager/model.safetensors"), _weights(tmp_path / "compiled/model.safetensors")
    # four steps at lr 3e-3 move AdamW's weights by about 1e-2; compiling may reorder float sums, nothing more
    differ = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert differ < 1e-4, differ
    assert json.loads((tmp_path / "compiled/config.json").read_text())["compile"] is True


def test_validation_is_sized_to_the_run():
    cfg = TrainConfig()
    assert cfg.val_size is None and cfg.resolved_val_size == 5000
    assert TrainConfig(train_subset=500).resolved_val_size == 200
    assert TrainConfig(train_subset=20000).resolved_val_size == 2000
    assert TrainConfig(train_subset=500_000).resolved_val_size == 5000
    assert TrainConfig(train_subset=500, val_size=64).resolved_val_size == 64
    assert TrainConfig(val_size=0).resolved_val_size == 0


def test_test_set_is_evaluated_once_when_the_best_model_is_the_final_one(tmp_path, monkeypatch):
    import mlpvision.train.task as task

    calls = []
    real = task.evaluate

    def counting(model, loader, *args, **kw):
        calls.append(len(loader.dataset))
        return real(model, loader, *args, **kw)

    monkeypatch.setattr(task, "evaluate", counting)  # the classification task's evaluation
    phases = []
    summary = train(tiny_cfg(tmp_path / "once", epochs=1, val_size=0), progress=lambda p: phases.append(p["phase"]))
    assert summary["best_is_final"] and summary["test_top1_best"] == summary["test_top1_final"]
    assert len(calls) == 1  # no validation split: one test pass
    assert {"train", "test"} <= set(phases) and "test best" not in phases
    assert summary["test_seconds"] > 0 and summary["val_seconds"] == 0
    assert summary["val_images"] == 0 and summary["test_images"] == calls[0]  # what the time split was spent on
    calls.clear()
    phases.clear()
    summary = train(tiny_cfg(tmp_path / "val", epochs=2, lr=3e-2), progress=lambda p: phases.append(p["phase"]))
    test_passes = len(calls) - 2  # two validation passes
    assert test_passes == (1 if summary["best_is_final"] else 2)
    assert "validate" in phases and summary["val_seconds"] > 0
