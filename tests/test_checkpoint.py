"""Model files (weights + name + config) and the deploy command."""

import json

import pytest
import torch

import mlpvision
from mlpvision.cli import main
from mlpvision.deploy import deploy_checkpoint
from mlpvision.errors import CheckpointError
from mlpvision.io import load_checkpoint, read_safetensors, save_model, write_safetensors

from .helpers import randomize_bn_


def test_save_and_load_rebuilds_the_same_model(tmp_path):
    model = randomize_bn_(mlpvision.create_model("repmlp_pure_28", kernels=(1, 3), hidden_dim=64)).eval()
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.config.kernels == (1, 3)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_half_precision_file_loads_into_a_float32_model(tmp_path):
    """How a model over the size limit is published: float16 weights, evaluated in float32."""
    model = mlpvision.create_model("mixer_t4_28").eval()
    path = save_model(model.half(), tmp_path / "m.safetensors")
    assert all(t.dtype == torch.float16 for t in read_safetensors(path)[0].values())
    again = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in again.parameters())
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a.float(), b), name
    assert again(torch.randn(2, 1, 28, 28)).dtype == torch.float32


def test_plain_weights_have_no_model_name(tmp_path):
    path = write_safetensors(mlpvision.create_model("mixer_t4_28").state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="no model name"):
        load_checkpoint(path)


def test_unknown_model_in_metadata(tmp_path):
    model = mlpvision.create_model("mixer_t4_28")
    meta = {"mlpvision.model": "mixer_zz", "mlpvision.config": json.dumps({})}
    path = write_safetensors(model.state_dict(), tmp_path / "w.safetensors", meta)
    with pytest.raises(mlpvision.UnknownModelError):
        load_checkpoint(path)


def test_deploy_checkpoint(tmp_path):
    model = randomize_bn_(mlpvision.create_model("repmlp_pure_28")).eval()
    src = save_model(model, tmp_path / "train.safetensors")
    report = deploy_checkpoint(src, tmp_path / "deploy.safetensors")
    assert report.params_after < report.params_before
    assert report.max_abs_diff <= 1e-5 * report.output_scale
    deployed = load_checkpoint(report.path)
    assert deployed.config.deploy
    meta = read_safetensors(report.path)[1]
    assert json.loads(meta["mlpvision.config"])["deploy"] is True
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=1e-4, atol=1e-5)


def test_deploy_command(tmp_path, capsys):
    src = save_model(randomize_bn_(mlpvision.create_model("wide_convnet_28")).eval(), tmp_path / "a.safetensors")
    assert main(["deploy", str(src), str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "max |train - deploy|" in out and "saved" in out
    assert main(["deploy", str(tmp_path / "missing.safetensors"), str(tmp_path / "c.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("deploy", [False, True])
def test_every_registered_models_build_fits_the_loaders_tensor_allowance(deploy):
    """The loader stops a build that registers more than BUILD_TENSORS_PER_KEPT tensors per tensor the file holds
    (a crafted config must not make it build a huge model): every model of the zoo, in either form, fits it."""
    from torch.nn.modules import module as torch_module

    from mlpvision.io.model_file import BUILD_TENSORS_PER_KEPT

    over = []
    for name in mlpvision.list_models():
        count = {"n": 0}

        def seen(module, key, tensor, count=count):
            count["n"] += tensor is not None

        hooks = [
            torch_module.register_module_parameter_registration_hook(seen),
            torch_module.register_module_buffer_registration_hook(seen),
        ]
        try:
            model = mlpvision.create_model(name, device="meta", **({"deploy": True} if deploy else {}))
        finally:
            for h in hooks:
                h.remove()
        kept = len(model.state_dict())
        if count["n"] > BUILD_TENSORS_PER_KEPT * kept + 64:
            over.append(f"{name}: {count['n']} registered for {kept} kept")
    assert not over, over


def test_a_resnet_deploy_file_loads(tmp_path):
    """A ResNet's deploy form registers about four tensors per kept one while it is built (its BatchNorms are fused
    away): its file must load, as the deploy command writes it."""
    model = randomize_bn_(mlpvision.create_model("resnet18_28")).eval()
    out = deploy_checkpoint(save_model(model, tmp_path / "m.safetensors"), tmp_path / "d.safetensors").path
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(load_checkpoint(out)(x), model(x), atol=1e-4, rtol=1e-4)
