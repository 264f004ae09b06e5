"""Reliability: no lost runs, no silent mixing on resume, and every bad input one clear line with exit status 2."""

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mlpvision
from mlpvision.cli import main
from mlpvision.data import image_folder_samples
from mlpvision.errors import ConfigError
from mlpvision.fields import field_docs
from mlpvision.io import RunLock, save_model, write_safetensors
from mlpvision.train import TrainConfig, TrainingError, train

from .helpers import TINY, tiny_cfg

TINY_FLAGS = ["--data", "synthetic", "--model", "mixer_t4_28", "--quiet", "--no-amp", "--val-size", "64"]
TINY_FLAGS += [f"--model-arg={k}={v}" for k, v in TINY["model_args"].items()]


def _one_error_line(capsys, code: int) -> str:
    """Asserts exit status 2 and exactly one line on stderr without a traceback; returns the line."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlpvision: error: ") and "Traceback" not in err, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A finished one-epoch tiny run (model files, last.safetensors, config.json)."""
    out = tmp_path_factory.mktemp("run")
    train(tiny_cfg(out, epochs=1, plots=False))
    return out


# ---- data loss ----------------------------------------------------------------------------------------------


def test_a_second_training_into_a_folder_in_use_is_refused_and_names_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # as another training holds it (a separate open file: flock conflicts within a process too)
        code = main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)])
    line = _one_error_line(capsys, code)
    assert f"is in use by process {os.getpid()}" in line
    assert not (out / "config.json").exists()  # nothing was written
    train(tiny_cfg(out, epochs=1, plots=False))  # once free, the folder trains


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999999\n")  # a pid that no process has, and no flock held
    with caplog.at_level("INFO"):
        train(tiny_cfg(out, epochs=1, plots=False))
    assert "took over the lock of process 999999999" in caplog.text
    assert (out / "model.safetensors").is_file()


def test_export_leaves_a_users_file_named_like_a_temporary_alone(tmp_path, run_folder):
    pytest.importorskip("onnxruntime")
    keep = tmp_path / "keep.onnx.tmp"
    keep.write_text("the user's notes")
    model, onnx = str(run_folder / "model.safetensors"), str(tmp_path / "keep.onnx")
    assert main(["export", "--checkpoint", model, "--onnx", onnx]) == 0
    assert keep.read_text() == "the user's notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx", "keep.onnx.tmp"]


def test_resume_removes_partial_files_of_a_killed_write_and_only_those(tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(out, epochs=1, plots=False))
    partial = out / ".mlpvision-tmp.999999999.last.safetensors.ab12_xyz.tmp"  # what a kill -9 mid-write leaves
    partial.write_bytes(b"\0" * 1000)
    live = out / f".mlpvision-tmp.{os.getppid()}.model.safetensors.ab12_xyz.tmp"  # its writer still runs
    live.write_bytes(b"\0")
    mine = [out / "notes.tmp", out / ".backup.20241203.tmp", out / ".last.safetensors.ab12_xyz.tmp"]
    for f in mine:
        f.write_text("keep")
    train(tiny_cfg(out, epochs=2, plots=False), overwrite=True)
    assert not partial.exists() and live.exists()
    assert all(f.read_text() == "keep" for f in mine)


def test_saved_model_files_have_the_modes_of_the_other_outputs(run_folder):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "last.safetensors", "config.json", "summary.json"):
        assert (run_folder / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ---- silent wrong behaviour ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "field"),
    [(["--batch-size", "8"], "batch_size 16 -> 8"), (["--lr", "0.01"], "lr 0.003 -> 0.01"), (["--seed", "9"], "seed")],
)
def test_resume_with_settings_that_change_the_run_is_refused(tmp_path, capsys, flags, field):
    out = tmp_path / "run"
    base = ["train", *TINY_FLAGS, "--epochs", "2", "--batch-size", "16", "--lr", "0.003", "--seed", "3"]
    assert main([*base, "--max-steps", "5", "--out", str(out)]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    args = [*base, "--max-steps", "5", "--out", str(out), "--resume"]
    line = _one_error_line(capsys, main([*args, *flags]))
    assert field in line and "may change" in line
    assert _snapshot(out) == before  # config.json keeps what the run is


def test_resume_accepts_the_settings_that_cannot_change_the_run(tmp_path):
    out = tmp_path / "run"
    cfg = tiny_cfg(out, epochs=2, max_steps=5, plots=False)
    train(cfg)
    summary = train(TrainConfig(**{**cfg.as_dict(), "workers": 0, "time_limit_min": 30.0, "aug": cfg.aug}), True)
    assert summary["steps"] == 5


def test_an_image_folder_with_a_linked_folder_loop_lists_each_image_once(tmp_path, caplog):
    root = tmp_path / "images"
    for cls in ("cat", "dog"):
        (root / cls / "sub").mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / cls / "sub" / f"{i}.png")
        (root / cls / "sub" / "loop").symlink_to(root, target_is_directory=True)  # back up to the top
        (root / cls / "away").symlink_to(root / ("dog" if cls == "cat" else "cat"), target_is_directory=True)
    with caplog.at_level("WARNING"):
        samples, classes = image_folder_samples(root)
    assert classes == ("cat", "dog") and len(samples) == 6
    assert all(Path(p).parent.parent.name == classes[label] for p, label in samples)  # labels stay right
    assert "not following 4 linked folder(s)" in caplog.text


def test_a_lock_file_that_is_a_link_or_a_folder_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("the user's data")
    for kind in ("symlink", "hardlink", "folder"):
        out = tmp_path / kind
        out.mkdir()
        if kind == "symlink":
            (out / ".lock").symlink_to(victim)
        elif kind == "hardlink":
            os.link(victim, out / ".lock")
        else:
            (out / ".lock").mkdir()
        with pytest.raises(ConfigError, match=r"\.lock"):
            train(tiny_cfg(out, epochs=1, plots=False))
        assert victim.read_text() == "the user's data"
        assert not (out / "config.json").exists()


def test_a_finished_run_is_not_replaced_without_resume_or_overwrite(tmp_path, run_folder):
    before = _snapshot(run_folder)
    with pytest.raises(ConfigError, match=r"already holds a run .*--overwrite"):
        train(tiny_cfg(run_folder, epochs=1, plots=False))
    assert _snapshot(run_folder) == before
    out = tmp_path / "again"
    train(tiny_cfg(out, epochs=1, model="wide_convnet_28", model_args={}))  # with deploy forms and plots
    assert (out / "best_deploy.safetensors").is_file() and (out / "curves.png").is_file()
    first = (out / "model.safetensors").read_bytes()
    (out / "notes.txt").write_text("the user's")
    earlier = _snapshot(out)
    # --overwrite sets the earlier run aside until the new one saves its first checkpoint: a new run that fails
    # before (at its first step here) puts it back as it was
    with pytest.raises(TrainingError):
        train(tiny_cfg(out, epochs=1, plots=False, seed=4), overwrite=True, progress=_fail_at_first_step)
    assert _snapshot(out) == earlier and not (out / ".replaced").exists()
    train(tiny_cfg(out, epochs=1, plots=False, seed=4), overwrite=True)  # saved: the earlier run is gone
    assert (out / "model.safetensors").read_bytes() != first and not (out / ".replaced").exists()
    assert not (out / "best_deploy.safetensors").exists() and (out / "notes.txt").read_text() == "the user's"


def _fail_at_first_step(row: dict) -> None:
    if row["phase"] == "train":
        raise TrainingError("failed on purpose")


def _image_tree(root: Path, split: str, classes: list[str], per_class: int = 2) -> None:
    for c in classes:
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("L", (8, 8), 30 * i).save(root / split / c / f"{i}.png")


def test_image_folder_splits_are_labelled_by_class_name_and_hidden_entries_skipped(tmp_path):
    from mlpvision.data import load_split

    _image_tree(tmp_path, "train", ["ant", "bee", "cat"])
    _image_tree(tmp_path, "test", ["bee", "cat"])  # fewer classes: position would shift every label
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "train" / "ant" / ".hidden.png")
    train_ds, info = load_split("imagefolder", "train", tmp_path, 8, 1)
    test_ds, _ = load_split("imagefolder", "test", tmp_path, 8, 1)
    assert info.classes == ("ant", "bee", "cat") and len(train_ds) == 6
    assert test_ds.classes == info.classes
    assert [(Path(p).parent.name, label) for p, label in test_ds.samples] == [("bee", 1)] * 2 + [("cat", 2)] * 2
    _image_tree(tmp_path, "test", ["dog"])
    with pytest.raises(mlpvision.errors.DataError, match="'dog' are not classes of"):
        load_split("imagefolder", "test", tmp_path, 8, 1)


@pytest.mark.parametrize(
    ("labels", "message"),
    [([0, 10], "label 10 is out of range"), ([0, -1], "label -1 is out of range"), ([0.5, 1.0], "whole numbers")],
)
def test_cifar_labels_out_of_range_or_fractional_are_refused_before_the_run_folder(tmp_path, labels, message):
    import pickle

    import numpy as np

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": labels}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    out = tmp_path / "run"
    cfg = tiny_cfg(out, epochs=1, plots=False)
    cfg = TrainConfig(**{**cfg.as_dict(), "aug": cfg.aug, "data": "cifar10", "data_dir": str(tmp_path / "data")})
    with pytest.raises(mlpvision.errors.DataError, match=message):
        train(cfg)
    assert not out.exists()  # checked before the run folder was created


def test_a_nan_before_the_first_checkpoint_does_not_promise_one(tmp_path, monkeypatch):
    import mlpvision.train.task as engine  # the task object computes the training loss

    real = engine.F.cross_entropy
    monkeypatch.setattr(engine.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="no checkpoint had been written yet") as e:
        train(tiny_cfg(tmp_path, epochs=1))
    assert "holds the last good state" not in str(e.value)


def _png(path: Path, background: int, obj: int) -> Path:
    img = Image.new("L", (56, 56), background)
    img.paste(obj, (16, 8, 40, 48))  # a garment-sized block in the middle
    img.save(path)
    return path


def test_predict_warns_about_a_light_background_and_inverts_on_request(tmp_path, capsys):
    from mlpvision.models import create_model

    model = create_model("mixer_t4_28", depth=1, embed_dim=16, token_mlp_dim=8, channel_mlp_dim=32)
    meta = mlpvision.io.data_metadata("fashion-mnist", mlpvision.data.FASHION_MNIST_CLASSES, (0.2860,), (0.3530,))
    path = save_model(model, tmp_path / "m.safetensors", meta)
    photo = _png(tmp_path / "photo.png", background=255, obj=30)  # dark garment on white, as photographed
    assert main(["predict", "--checkpoint", str(path), str(photo)]) == 0
    out = capsys.readouterr()
    assert "background is light" in out.err and "--invert" in out.err and out.out.startswith(str(photo))
    assert main(["predict", "--checkpoint", str(path), "--invert", str(photo)]) == 0
    assert "background is light" not in capsys.readouterr().err
    flat = tmp_path / "flat.png"
    Image.new("L", (28, 28), 128).save(flat)  # no object at all
    assert main(["predict", "--checkpoint", str(path), str(flat)]) == 0
    assert "far from the training images" in capsys.readouterr().err


# ---- bad input: one line, exit 2, nothing lost --------------------------------------------------------------


def _bomb(path: Path) -> Path:
    """A tiny PNG whose header claims 20000 x 20000 pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


def _crafted_model(tmp_path: Path, name: str, config, data=None) -> Path:
    """A model file of mixer_t4_28 whose stored config (or data description) is replaced by ``config``."""
    model = mlpvision.create_model("mixer_t4_28")
    meta = {"mlpvision.model": "mixer_t4_28", "mlpvision.config": config}
    if data is not None:
        meta["mlpvision.data"] = data
    return write_safetensors(model.state_dict(), tmp_path / name, meta)


def _bad_inputs(tmp: Path, run: Path) -> list[tuple[list[str], str]]:
    model = str(run / "model.safetensors")
    afile = tmp / "afile.txt"
    afile.write_text("not a folder")
    (tmp / "recipes").mkdir()
    recipe = tmp / "recipes" / "bad.yaml"
    recipe.write_text("lr: 1e-3\nepochs: many\n")
    idx = tmp / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte").write_bytes(b"\0\0\x07\x03" + b"\0" * 12)  # type byte 0x07: no such type
    (idx / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    std0 = json.dumps({"name": "fashion-mnist", "classes": ["a"] * 10, "mean": [0.3], "std": [0.0]})
    return [
        (["train", "--out", str(afile), "--data", "synthetic"], "is a file, not a folder"),
        (["train", "--out", "/proc/x", "--data", "synthetic"], "cannot write to output folder /proc/x"),
        (["train", "--config", str(recipe), "--out", str(run)], "epochs: expected a whole number, got 'many'"),
        (["train", "--lr", "inf", "--out", str(run)], "lr: must be a finite number"),
        (["train", "--data-dir", str(afile), "--out", str(tmp / "r")], "is a file; --data-dir takes the folder"),
        (["train", "--data-dir", str(idx), "--out", str(tmp / "r")], "train-images-idx3-ubyte is not an idx file"),
        (["train", *TINY_FLAGS, "--batch-size", "8", "--resume", "--out", str(run)], "batch_size 16 -> 8"),
        (["train", "--model", "mixr_t4_28", "--out", str(run)], "unknown model 'mixr_t4_28'"),
        (["train", "--model-arg", "depth", "--out", str(run)], "--model-arg takes KEY=VALUE"),
        (["eval", "--checkpoint", str(tmp)], "is a folder, not a weights file"),
        (["eval", "--checkpoint", str(afile)], "not a readable safetensors file"),
        (["eval", "--checkpoint", model, "--confusion", "/proc/x/c.png"], "cannot write to folder /proc/x"),
        (["eval", "--checkpoint", str(_crafted_model(tmp, "abc.safetensors", '{"depth": "abc"}'))], "depth: expected"),
        (["eval", "--checkpoint", str(_crafted_model(tmp, "list.safetensors", "[1, 2]"))], "not a mapping"),
        (["eval", "--checkpoint", str(_crafted_model(tmp, "json.safetensors", "{depth"))], "json.safetensors: the"),
        (["eval", "--checkpoint", str(_crafted_model(tmp, "std0.safetensors", "{}", std0))], "deviation <= 0"),
        (["export", "--checkpoint", model, "--onnx", str(tmp)], "it is a folder; give a file name"),
        (["export", "--checkpoint", model, "--onnx", "/proc/x/m.onnx"], "cannot write to folder /proc/x"),
        (["deploy", model, "/proc/x/d.safetensors"], "cannot write to folder /proc/x"),
        (["deploy", model, str(tmp)], "it is a folder"),
        (["bench", "--model", "mixer_t4_28", "--json", "/proc/x/b.json"], "cannot write to folder /proc/x"),
        (["bench", "--model", "nope"], "unknown model 'nope'"),
        (["predict", "--checkpoint", model, "--top-k", "0", str(afile)], "--top-k must be at least 1"),
        (["predict", "--checkpoint", model, str(afile)], "cannot read image"),
        (["predict", "--checkpoint", model, str(_bomb(tmp / "bomb.png"))], "bomb.png"),
        (
            ["convert", "--from", "deit-resmlp", "--model", "resmlp_12_224", str(afile), str(tmp / "c.safetensors")],
            "not a readable weights-only torch checkpoint",
        ),
        (
            ["convert", "--from", "jax-mixer", "--model", "resmlp_12_224", str(afile), str(tmp / "c.safetensors")],
            "jax-mixer checkpoints hold a MlpMixer",
        ),
        (
            ["convert", "--from", "jax-mixer", "--model", "mixer_b16_224", str(afile), "/proc/x/c.safetensors"],
            "cannot write to folder /proc/x",
        ),
        (["models", "nomatch_*"], "no model matches"),
        (["lab", "--data", "mnist"], "the lab runs on"),
        (["lab", "--only", "nope", "--results", str(tmp / "lab"), "--runs", str(tmp / "runs")], "unknown experiment"),
        *_bad_inputs_v2(tmp, run),
    ]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _stored(tmp: Path, name: str, edit) -> Path:
    """A copy of a tiny model file with ``edit(tensors, metadata)`` applied."""
    model = mlpvision.create_model("mixer_t4_28", **TINY["model_args"], num_classes=3, in_chans=1, img_size=28)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    meta = mlpvision.io.model_metadata(model)
    edit(tensors, meta)
    return write_safetensors(tensors, tmp / name, meta)


def _bad_inputs_v2(tmp: Path, run: Path) -> list[tuple[list[str], str]]:
    """Every class of the second reliability review: bombs, special files, ranges, crafted files, folders."""
    out = str(tmp / "fresh")
    recipes = tmp / "recipes"
    bomb = recipes / "bomb.yaml"
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\nlr: *a8\n")  # a few hundred bytes, 387 million values expanded
    deep = recipes / "deep.yaml"
    deep.write_text("aug: " + "[" * 200 + "]" * 200 + "\n")
    latin = recipes / "latin1.yaml"
    latin.write_bytes("model: caf\xe9\n".encode("latin-1"))
    model = str(run / "model.safetensors")

    def config(**changes):
        def edit(tensors, meta):
            meta["mlpvision.config"] = json.dumps({**json.loads(meta["mlpvision.config"]), **changes})

        return edit

    def nan(tensors, meta):
        tensors["head.weight"][0, 0] = float("nan")

    def int32(tensors, meta):
        tensors["head.weight"] = tensors["head.weight"].to(torch.int32)

    def long_name(tensors, meta):
        meta["mlpvision.model"] = "\x1b[31m" + "m" * 10_000_000

    def data_list(tensors, meta):
        meta["mlpvision.data"] = json.dumps({"name": ["fashion-mnist"], "classes": [], "mean": [], "std": []})

    lock_run = tmp / "linked"
    lock_run.mkdir()
    (lock_run / ".lock").symlink_to(tmp / "afile.txt")
    folders = tmp / "folders"
    for split, classes in (("train", ["ant", "bee"]), ("test", ["ant", "cow"])):
        for c in classes:
            (folders / split / c).mkdir(parents=True)
            Image.new("L", (8, 8)).save(folders / split / c / "0.png")
    flags = [*TINY_FLAGS, "--epochs", "1", "--out", out]
    small = tmp / "small.png"
    Image.new("L", (20, 20)).save(small)
    return [
        (["train", "--config", str(bomb), "--out", out], "alias bomb"),
        (["train", "--config", str(deep), "--out", out], "nested more than 32 levels"),
        (["train", "--config", str(latin), "--out", out], "not UTF-8"),
        (["train", "--config", str(_fifo(tmp / "recipe.fifo")), "--out", out], "is a pipe"),
        (["train", *flags, "--min-lr", "-1"], "min_lr must be >= 0"),
        (["train", *flags, "--hflip", "7", "--workers", "-1", "--label-smoothing", "2"], "aug.hflip must be"),
        (["train", *flags, "--crop-padding", "-5", "--img-size", "100000"], "img_size must be >= 1 and <= 4096"),
        (["train", *flags, "--seed", "1e23"], "invalid int value: '1e23'"),
        (["train", *flags[:-2], "--out", str(tmp / "v"), "--val-size", "100000"], "leaves no training images"),
        (["train", *flags, "--device", "cuda:7"], "--device cuda:7"),
        (["train", *TINY_FLAGS, "--epochs", "1", "--out", str(run)], "already holds a run"),
        (["train", *TINY_FLAGS, "--epochs", "1", "--out", str(lock_run)], "is a symbolic link"),
        (["train", *flags[:-2], "--data", "imagefolder", "--data-dir", str(folders)], "'cow' are not classes of"),
        (["eval", "--checkpoint", model, "--batch-size", "0"], "--batch-size must be"),
        (["eval", "--checkpoint", str(_stored(tmp, "deep.safetensors", config(depth=100000)))], "depth must be"),
        (["eval", "--checkpoint", str(_stored(tmp, "wide.safetensors", config(embed_dim=4096)))], "larger than"),
        (["eval", "--checkpoint", str(_stored(tmp, "nan.safetensors", nan))], "NaN or infinite"),
        (["eval", "--checkpoint", str(_stored(tmp, "int.safetensors", int32))], "holds integer data (int32)"),
        (["eval", "--checkpoint", str(_stored(tmp, "name.safetensors", long_name))], "characters long"),
        (["eval", "--checkpoint", str(_stored(tmp, "data.safetensors", data_list))], "name is not a string"),
        (["eval", "--checkpoint", str(_fifo(tmp / "model.fifo"))], "is a pipe"),
        (["predict", "--checkpoint", model, str(_fifo(tmp / "image.fifo"))], "is a pipe"),
        (["predict", "--checkpoint", model, "--max-pixels", "100", str(small)], "--max-pixels"),
        (["bench", "--model", "mixer_t4_28", "--threads", "-2", "--batch-size", "0"], "threads must be >= 1"),
        (
            [
                "export",
                "--checkpoint",
                model,
                "--onnx",
                str(tmp / "m.onnx"),
                "--int8",
                "static",
                "--calibration-images",
                "0",
            ],
            "at least 1",
        ),
        (["lab", "--docs", str(tmp / "afile.txt"), "--report-only", "--results", str(tmp / "nolab")], "is a file"),
    ]


def test_every_bad_input_is_one_line_and_exit_2_and_the_run_folder_is_unchanged(tmp_path, run_folder, capsys):
    cases = _bad_inputs(tmp_path, run_folder)
    before = _snapshot(run_folder)
    failures = []
    for argv, message in cases:
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own exit
            code = e.code
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) == 1 and "Traceback" not in err and message in err
        ok = ok and len(err) < 4000 and "\x1b" not in err  # short, and no raw terminal escapes
        if not ok:
            failures.append(f"{' '.join(argv)} -> exit {code}: {err.strip()[-300:]!r} (wanted {message!r})")
    assert not failures, "\n".join(failures)
    assert _snapshot(run_folder) == before
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "v").exists()  # refused before any folder


def test_a_run_that_fails_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    import mlpvision.train.task as engine  # the task object computes the training loss

    real = engine.F.cross_entropy
    monkeypatch.setattr(engine.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    code = main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("mlpvision: error: ") and "loss became nan" in err[0]


def test_class_names_with_terminal_escapes_are_printed_escaped(tmp_path, capsys):
    from mlpvision.models import create_model

    model = create_model("mixer_t4_28", **TINY["model_args"], num_classes=2, in_chans=1, img_size=28)
    names = ["\x1b[2J\x1b[31mred", "[bold]x" * 5000]
    path = save_model(model, tmp_path / "m.safetensors", mlpvision.io.data_metadata("x", names, (0.5,), (0.25,)))
    image = tmp_path / "i.png"
    Image.new("L", (28, 28), 20).save(image)
    assert main(["predict", "--checkpoint", str(path), str(image)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31mred" in out and len(out) < 2000


def test_eval_json_is_valid_json_without_nan():
    from mlpvision.io import to_json

    text = to_json({"loss": float("nan"), "top1": 50.0, "per_class": {"a": float("inf")}})
    assert json.loads(text) == {"loss": None, "top1": 50.0, "per_class": {"a": None}}


def test_written_json_files_are_strictly_valid(tmp_path):
    from mlpvision.io import write_json

    path = write_json(tmp_path / "summary.json", {"history": [{"train_loss": float("nan")}], "top1": 10.0})
    strict = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in {path.name}"))
    assert strict == {"history": [{"train_loss": None}], "top1": 10.0}


def test_an_onnx_file_with_a_scalar_input_is_refused(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "g", [x], [y])
    path = tmp_path / "scalar.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    line = _one_error_line(capsys, main(["eval", "--checkpoint", str(path)]))
    assert "not an image classifier" in line


def test_recipe_values_of_the_natural_types_are_read_as_the_fields_types():
    cfg = TrainConfig.from_recipe({"lr": "1e-3", "epochs": 3.0, "aug": {"crop_padding": "2"}, "teacher": ["a", "b"]})
    assert (cfg.lr, cfg.epochs, cfg.aug.crop_padding, cfg.teacher) == (1e-3, 3, 2, ["a", "b"])
    with pytest.raises(ConfigError, match=r"epochs: expected a whole number, got 1\.7"):
        TrainConfig.from_recipe({"epochs": 1.7})
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_recipe({"epochs": "many", "batch_size": [1, 2], "model_args": [1]})
    message = str(e.value)  # one error naming every field
    assert "epochs: expected a whole number, got 'many'" in message
    assert "batch_size: expected a whole number, got [1, 2]" in message and "model_args: expected a mapping" in message


_FIELDS = [f.name for f in field_docs(TrainConfig)]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)
_RECIPES = st.dictionaries(st.one_of(st.sampled_from(_FIELDS), st.text(max_size=8)), _VALUES, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RECIPES)
def test_any_recipe_gives_a_valid_config_or_one_clear_error(recipe):
    try:
        TrainConfig.from_recipe(recipe).validate()
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


def test_an_overwrite_killed_before_its_first_save_keeps_the_earlier_run_aside(tmp_path, monkeypatch):
    """kill -9 gives no chance to put the earlier run back: it stays in OUT/.replaced, and the next --overwrite
    start treats it as the run it replaces (the files beside it are the killed start's)."""
    import mlpvision.train.loop as loop

    out = tmp_path / "run"
    train(tiny_cfg(out, epochs=1, plots=False))
    earlier = _snapshot(out)
    with monkeypatch.context() as m:
        m.setattr(loop, "_put_back", lambda run: None)  # what a kill leaves
        with pytest.raises(TrainingError):
            train(tiny_cfg(out, epochs=1, plots=False, seed=4), overwrite=True, progress=_fail_at_first_step)
    assert _snapshot(out / ".replaced") == earlier and (out / "config.json").is_file()
    with pytest.raises(ConfigError, match=r"\.replaced holds a run"):  # a start that would bury it is refused
        train(tiny_cfg(out, epochs=1, plots=False), resume=True)
    with pytest.raises(TrainingError):  # fails again, with the restore in place: the earlier run is back
        train(tiny_cfg(out, epochs=1, plots=False, seed=5), overwrite=True, progress=_fail_at_first_step)
    assert _snapshot(out) == earlier and not (out / ".replaced").exists()


def test_a_checkpoint_of_another_head_names_the_tensor_that_differs(run_folder):
    """What a resume on data of other classes meets: the message names the head, not an optimizer statistic."""
    from mlpvision.errors import CheckpointError
    from mlpvision.train.state import load_training_checkpoint

    model = mlpvision.create_model(TINY["model"], **TINY["model_args"], num_classes=7)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(CheckpointError, match=r"head\.bias of shape \(4,\) where this run's model has \(7,\)"):
        load_training_checkpoint(run_folder / "last.safetensors", model, optimizer, scheduler)


def test_a_checkpoint_whose_optimizer_settings_lack_one_is_refused(tmp_path, run_folder):
    """A loaded optimizer group replaces the fresh one whole: a missing setting would fail at the first step."""
    import shutil

    from safetensors.torch import save_file

    from mlpvision.errors import CheckpointError
    from mlpvision.io import read_safetensors
    from mlpvision.train.state import STATE_KEY

    out = tmp_path / "run"
    shutil.copytree(run_folder, out)
    tensors, meta = read_safetensors(out / "last.safetensors")
    state = json.loads(meta[STATE_KEY])
    del state["optimizer"]["param_groups"][0]["betas"]
    save_file(tensors, out / "last.safetensors", metadata={**meta, STATE_KEY: json.dumps(state)})
    with pytest.raises(CheckpointError, match=r"damaged optimizer settings \(no 'betas'\)"):
        train(tiny_cfg(out, epochs=1, plots=False), resume=True)


def test_a_teacher_of_other_classes_is_refused_before_the_run_folder_is_touched(tmp_path):
    teacher = save_model(
        mlpvision.create_model(TINY["model"], **TINY["model_args"], num_classes=7), tmp_path / "t.safetensors"
    )
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"teacher .*t\.safetensors predicts 7 classes"):
        train(tiny_cfg(out, epochs=1, plots=False, teacher=str(teacher)))
    assert not (out / "config.json").exists()
