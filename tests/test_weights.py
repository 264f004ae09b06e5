"""Weights files: round trip, and one clear CheckpointError for every kind of bad file."""

import pickle

import pytest
import torch

import mlpvision
from mlpvision.errors import CheckpointError
from mlpvision.io import read_safetensors, write_safetensors

from .helpers import randomize_


def _saved(tmp_path, name="mixer_t4_28", metadata=None):
    model = randomize_(mlpvision.create_model(name)).eval()
    path = write_safetensors(model.state_dict(), tmp_path / f"{name}.safetensors", metadata)
    return model, path


def test_round_trip_through_pretrained(tmp_path):
    model, path = _saved(tmp_path, metadata={"mlpvision.model": "mixer_t4_28"})
    loaded = mlpvision.create_model("mixer_t4_28", pretrained=path).eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert read_safetensors(path)[1] == {"mlpvision.model": "mixer_t4_28"}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    _saved(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mixer_t4_28.safetensors"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        mlpvision.create_model("mixer_t4_28", pretrained=tmp_path / "nope.safetensors")


def test_pickle_posing_as_weights_is_refused_and_never_run(tmp_path):
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        mlpvision.create_model("mixer_t4_28", pretrained=path)
    assert not ran.exists()


def test_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(mlpvision.create_model("mixer_t4_28").state_dict(), path)
    with pytest.raises(CheckpointError, match="safetensors"):
        mlpvision.create_model("mixer_t4_28", pretrained=path)


def test_truncated_file(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        mlpvision.create_model("mixer_t4_28", pretrained=path)


def test_weights_of_another_model(tmp_path):
    _, path = _saved(tmp_path, name="resmlp_tiny_12_28")
    with pytest.raises(CheckpointError, match=r"do not fit model mixer_t4_28 \(missing: .*unexpected: "):
        mlpvision.create_model("mixer_t4_28", pretrained=path)


def test_wrong_shapes(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"shape mismatch: blocks\.0\.mlp_channels\.fc1\.weight"):
        mlpvision.create_model("mixer_t4_28", pretrained=path, channel_mlp_dim=256)


def test_metadata_naming_another_model(tmp_path):
    _, path = _saved(tmp_path, metadata={"mlpvision.model": "mixer_t4_32"})
    with pytest.raises(CheckpointError, match="holds weights of mixer_t4_32, not mixer_t4_28"):
        mlpvision.create_model("mixer_t4_28", pretrained=path)
