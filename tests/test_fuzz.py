"""Fuzzing every decoder of untrusted input: recipes (YAML), model-file headers and metadata, idx and CIFAR data,
and images. Each either gives a valid result or raises one :class:`MlpVisionError` (a one-line message): never
another exception, a hang, or memory beyond the limits.

Bounded in time (40 fixed examples each, each under a 10-second deadline) and in memory (every example runs under
small limits, ``limits.limited``, and builds inputs of a few kilobytes), so the whole file adds well under a minute
to ``make test``. ``MLPVISION_FUZZ_EXAMPLES=N`` runs N fresh random examples of each, to look for new cases.
"""

import contextlib
import dataclasses
import gzip
import io
import json
import os
import pickle
import shutil
import signal
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file

import mlpvision
from mlpvision.data import get_source
from mlpvision.data.decode import decode_image, image_size
from mlpvision.data.sources import read_idx
from mlpvision.errors import MlpVisionError
from mlpvision.fields import field_docs
from mlpvision.io import load_checkpoint, read_safetensors
from mlpvision.io.files import load_yaml
from mlpvision.limits import limited
from mlpvision.train import TrainConfig, TrainingStopped, train
from mlpvision.train.state import STATE_KEY, LoopState

from .helpers import tiny_cfg

# make test runs the same 40 examples of each every time; MLPVISION_FUZZ_EXAMPLES=1000 explores afresh
_EXPLORE = int(os.environ.get("MLPVISION_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXPLORE or 40,
    deadline=10_000,  # ms per example: a bomb takes minutes; a busy machine can take a few seconds
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    derandomize=not _EXPLORE,
)
SMALL = {"max_pixels": 4096, "max_params": 200_000, "max_data_bytes": 1 << 20}


def _one_line(e: MlpVisionError) -> None:
    text = str(e)
    assert text and "\n" not in text and len(text) < 2000, text[:300]


# ---- recipes ---------------------------------------------------------------------------------------------------

_FIELDS = [f.name for f in field_docs(TrainConfig)]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["1e23", "-1", "nan", "inf", "0x10", "1_000", "~", "yes", "\x1b[31m"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_AUG = st.dictionaries(st.sampled_from(["crop_padding", "hflip", "auto_augment", "mixup", "x"]), _VALUES, max_size=3)
_RECIPES = st.dictionaries(
    st.one_of(st.sampled_from(_FIELDS), st.text(max_size=8)), st.one_of(_VALUES, _AUG), max_size=8
)


@FUZZ
@given(_RECIPES)
def test_any_recipe_is_a_config_or_one_error(recipe):
    try:
        TrainConfig.from_recipe(recipe).validate()
    except MlpVisionError as e:
        _one_line(e)


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)), st.integers(0, 6))
def test_any_yaml_text_loads_or_is_one_error(text, aliases):
    if aliases and isinstance(text, str):  # grow an alias chain: each level doubles the expanded size
        text = "a0: &a0 [x, x]\n" + "".join(
            f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]\n" for i in range(1, aliases * 3)
        )
    try:
        recipe = load_yaml(text, "recipe")
        if isinstance(recipe, dict):
            TrainConfig.from_recipe(recipe)
    except MlpVisionError as e:
        _one_line(e)


# ---- model files -----------------------------------------------------------------------------------------------

_TINY = dict(
    num_classes=3, in_chans=1, img_size=8, patch_size=4, embed_dim=4, depth=1, token_mlp_dim=4, channel_mlp_dim=4
)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    model = mlpvision.create_model("mixer_t4_28", **_TINY)
    mlpvision.save_model(model, path)
    return path


_CONFIG_KEYS = [
    "depth",
    "embed_dim",
    "channel_mlp_dim",
    "token_mlp_dim",
    "patch_size",
    "img_size",
    "num_classes",
    "in_chans",
    "drop_rate",
    "nope",
]


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(_CONFIG_KEYS), _VALUES, max_size=3),
    name=st.one_of(st.just("mixer_t4_28"), st.sampled_from(mlpvision.list_models()), st.text(max_size=30)),
    tensor_edit=st.sampled_from(["none", "drop", "int", "nan", "shape", "extra"]),
)
def test_any_model_file_metadata_loads_or_is_one_error(tmp_path_factory, good_file, changes, name, tensor_edit):
    tensors, meta = read_safetensors(good_file)
    config = {**json.loads(meta["mlpvision.config"]), **changes}
    key = sorted(tensors)[0]
    if tensor_edit == "drop":
        tensors.pop(key)
    elif tensor_edit == "int":
        tensors[key] = tensors[key].to(torch.int32)
    elif tensor_edit == "nan":
        tensors[key] = tensors[key].clone().fill_(float("nan"))
    elif tensor_edit == "shape":
        tensors[key] = torch.zeros(3, 5)
    elif tensor_edit == "extra":
        tensors["\x1b[2Jextra"] = torch.zeros(2)
    path = tmp_path_factory.mktemp("m") / "x.safetensors"
    save_file(tensors, path, metadata={**meta, "mlpvision.model": name, "mlpvision.config": json.dumps(config)})
    with limited(**SMALL):
        try:
            model = load_checkpoint(path)
        except MlpVisionError as e:
            _one_line(e)
            return
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


# ---- training checkpoints -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A tiny run stopped by SIGTERM in the middle of its second epoch: its last.safetensors is mid-epoch."""
    out = tmp_path_factory.mktemp("stopped")

    def stop(row: dict) -> None:
        if row["phase"] == "train" and row["epoch"] == 1 and row["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingStopped):
        train(tiny_cfg(out, plots=False, train_subset=256), progress=stop)
    return out


_LOOP_KEYS = [f.name for f in dataclasses.fields(LoopState)] + ["nope"]
_NUMBERS = st.one_of(st.integers(-3, 10**6), st.floats(), st.sampled_from([0, 1, -1, 10**30]))
_LOOP_VALUES = st.one_of(
    _VALUES,
    _NUMBERS,
    st.lists(
        st.dictionaries(st.sampled_from(["epoch", "train_loss", "val_top1", "x"]), _VALUES, max_size=3), max_size=3
    ),
    st.dictionaries(st.sampled_from(["loss", "hits", "seen", "images", "seconds", "x"]), _NUMBERS, max_size=5),
)


# the keys of the state's parts a checkpoint of the tiny run holds (AdamW's settings; warm-up then cosine)
_PART_KEYS = {
    "loop": _LOOP_KEYS,
    "optimizer group": ["lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "fused", "params", "x"],
    "schedule": ["last_epoch", "_last_lr", "_milestones", "_schedulers", "step", "x"],
    "warm-up": ["start_factor", "total_iters", "base_lrs", "last_epoch", "_step_count", "_is_initial", "x"],
}


def _edit(state: dict, part: str, key: str, value) -> None:
    if part == "loop":
        state["loop"][key] = value
    elif part == "optimizer group":
        state["optimizer"]["param_groups"][0][key] = value
    elif part == "schedule":
        state["scheduler"][key] = value
    else:
        state["scheduler"]["_schedulers"][0][key] = value


@settings(FUZZ, max_examples=_EXPLORE or 25)
@given(
    edits=st.lists(
        st.sampled_from(sorted(_PART_KEYS)).flatmap(
            lambda part: st.tuples(st.just(part), st.sampled_from(_PART_KEYS[part]), _LOOP_VALUES)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_any_training_state_in_a_checkpoint_resumes_or_is_one_error(tmp_path_factory, stopped_run, edits):
    """Loop counters, optimizer settings and the schedule of a checkpoint, edited: the resume trains to the end or
    stops with one error before training; never a failure in the middle of the loop."""
    out = tmp_path_factory.mktemp("resume")
    shutil.copytree(stopped_run, out, dirs_exist_ok=True)
    tensors, meta = read_safetensors(out / "last.safetensors")
    state = json.loads(meta[STATE_KEY])
    for part, key, value in edits:
        with contextlib.suppress(LookupError, TypeError):  # an earlier edit replaced the part this one edits
            _edit(state, part, key, value)
    save_file(tensors, out / "last.safetensors", metadata={**meta, STATE_KEY: json.dumps(state)})
    try:
        summary = train(tiny_cfg(out, plots=False, train_subset=256), resume=True)
    except MlpVisionError as e:
        _one_line(e)
        event("refused")
        return
    event("resumed")
    assert (out / "model.safetensors").is_file() and summary["steps"] >= 0


@FUZZ
@given(data=st.data())
def test_any_header_bytes_are_read_or_one_error(tmp_path_factory, good_file, data):
    raw = bytearray(good_file.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    kind = data.draw(st.sampled_from(["length", "flip", "truncate", "json"]))
    if kind == "length":
        raw[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    elif kind == "flip":
        i = data.draw(st.integers(0, min(len(raw), 8 + n) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    else:  # a header of another shape: random JSON where the entries were
        header = data.draw(
            st.dictionaries(
                st.text(max_size=10),
                st.fixed_dictionaries(
                    {
                        "dtype": st.sampled_from(["F32", "I32", "F8_E4M3", "X", 3]),
                        "shape": st.lists(st.integers(-2, 2**40), max_size=4),
                        "data_offsets": st.lists(st.integers(-1, 2**40), max_size=3),
                    }
                ),
                max_size=3,
            )
        )
        body = json.dumps(header).encode()
        raw = bytearray(struct.pack("<Q", len(body)) + body + b"\0" * 64)
    path = tmp_path_factory.mktemp("h") / "x.safetensors"
    path.write_bytes(bytes(raw))
    with limited(**SMALL):
        try:
            load_checkpoint(path)
        except MlpVisionError as e:
            _one_line(e)


# ---- idx and CIFAR data ----------------------------------------------------------------------------------------


@FUZZ
@given(
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=5),
    body=st.binary(max_size=256),
    gz=st.booleans(),
)
def test_any_idx_file_is_an_array_or_one_error(tmp_path_factory, code, dims, body, gz):
    raw = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body
    path = tmp_path_factory.mktemp("idx") / "x-idx.gz"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with limited(**SMALL):
        try:
            array = read_idx(path)
        except MlpVisionError as e:
            _one_line(e)
            return
    assert array.size * array.itemsize <= SMALL["max_data_bytes"]


def test_a_small_gzip_declaring_gigabytes_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (2000).to_bytes(4, "big") * 2  # 240 GB declared
    with gzip.open(path, "wb") as f:
        f.write(header + b"\0" * (1 << 20))
    with pytest.raises(mlpvision.errors.LimitError, match="declares 240000000000 bytes"):
        read_idx(path)


_LABELS = st.one_of(
    st.lists(st.integers(-3, 12), min_size=2, max_size=2),
    st.lists(st.floats(-2, 12), min_size=2, max_size=2),
    st.lists(st.text(max_size=2), min_size=2, max_size=2),
    st.just(None),
)


@FUZZ
@given(
    labels=_LABELS, names=st.one_of(st.lists(st.text(max_size=4), max_size=10), st.integers()), data_ok=st.booleans()
)
def test_any_cifar_batch_is_a_data_set_or_one_error(tmp_path_factory, labels, names, data_ok):
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    data = np.zeros((2, 3072), np.uint8) if data_ok else [[1.5, "x"]]
    batch = {"data": data} if labels is None else {"data": data, "labels": labels}
    for name in ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    with limited(**SMALL):
        try:
            ds = get_source("cifar10").load(False, root, None, None)
        except MlpVisionError as e:
            _one_line(e)
            return
    assert ds.labels.min() >= 0 and ds.labels.max() < 10


# ---- images ----------------------------------------------------------------------------------------------------

_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif", "WEBP": ".webp", "PPM": ".ppm"}


@FUZZ
@given(
    mode=st.sampled_from(_MODES),
    fmt=st.sampled_from(sorted(_FORMATS)),
    size=st.tuples(st.integers(1, 90), st.integers(1, 90)),
    orientation=st.integers(0, 9),
    damage=st.sampled_from(["none", "truncate", "flip"]),
    where=st.floats(0, 1),
    chans=st.sampled_from([1, 3]),
)
def test_any_image_decodes_or_is_one_error(tmp_path_factory, mode, fmt, size, orientation, damage, where, chans):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    try:
        img.save(buf, format=fmt, exif=exif) if fmt in ("PNG", "JPEG", "TIFF", "WEBP") else img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # Pillow cannot write this mode in this format
    raw = bytearray(buf.getvalue())
    if damage == "truncate":
        raw = raw[: int(len(raw) * where)]
    elif damage == "flip" and raw:
        raw[int((len(raw) - 1) * where)] ^= 0xFF
    path = tmp_path_factory.mktemp("img") / f"x{_FORMATS[fmt]}"
    path.write_bytes(bytes(raw))
    with limited(**SMALL):
        try:
            out = decode_image(path, chans)
        except MlpVisionError as e:
            _one_line(e)
            return
    assert out.mode == ("L" if chans == 1 else "RGB") and out.width * out.height <= SMALL["max_pixels"]
    with limited(**SMALL):
        assert image_size(path) == out.size  # the header's size, upright, is the decoded image's


def test_a_16_bit_png_is_scaled_not_clipped_and_exif_rotation_applies(tmp_path):
    grey = np.full((4, 6), 32768, np.uint16)  # mid-grey at 16 bits
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert np.asarray(decode_image(tmp_path / "g16.png", 1)).max() == 128  # not 255 (white)
    img = Image.new("L", (6, 4))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert decode_image(tmp_path / "r.jpg", 1).size == (4, 6) == image_size(tmp_path / "r.jpg")


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (13000, 13000)).save(path)  # 169 Mpixel in a few kilobytes
    assert path.stat().st_size < 200_000
    with pytest.raises(mlpvision.errors.LimitError, match="--max-pixels"):
        decode_image(path, 3)


# ---- command-line flags ----------------------------------------------------------------------------------------

_TRAIN_FLAGS = ["--" + f.replace("_", "-") for f in _FIELDS if f not in ("aug", "model_args", "teacher")]
_TRAIN_FLAGS += ["--crop-padding", "--hflip", "--auto-augment", "--random-erasing", "--mixup", "--cutmix"]
_FLAG_VALUES = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True).map(repr),
    st.sampled_from(["1e23", "-0", "nan", "inf", "", "x", "\x1b[31m", "9" * 400, "cuda", "cuda:9", "mps", "0x1f"]),
)


class _Started(Exception):
    """Raised in place of training: the flags made it through every check."""


@FUZZ
@given(
    flags=st.lists(st.tuples(st.sampled_from(_TRAIN_FLAGS), _FLAG_VALUES), max_size=5),
    model_args=st.lists(st.tuples(st.sampled_from(_CONFIG_KEYS), st.text(max_size=12)), max_size=2),
)
def test_any_train_flags_start_a_run_or_are_one_line(monkeypatch, capsys, flags, model_args):
    import mlpvision.train
    from mlpvision.cli import main

    def started(cfg, *args, **kwargs):
        cfg.validate()
        raise _Started

    for module in (mlpvision.train, __import__("mlpvision.cli", fromlist=["x"])):
        if hasattr(module, "train"):
            monkeypatch.setattr(module, "train", started)
    argv = ["train", "--out", "unused"]
    for flag, value in flags:
        argv += [flag, value] if not flag.startswith("--no-") else [flag]
    argv += [f"--model-arg={k}={v}" for k, v in model_args]
    try:
        code = main(argv)
    except _Started:
        return
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[:500]
    assert len(err) < 3000 and "\x1b" not in err
