"""ONNX export: numerical agreement, re-parameterization first, int8, metadata, evaluation of .onnx files."""

import json

import pytest
import torch

import mlpvision
from mlpvision.cli import main
from mlpvision.errors import CheckpointError
from mlpvision.train import train

from .helpers import randomize_, tiny_cfg

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mlpvision.deploy import OrtModel, export_onnx  # noqa: E402
from mlpvision.io import read_onnx_metadata  # noqa: E402


@pytest.mark.parametrize("name", ["mixer_t4_28", "resmlp_tiny_12_28", "vit_mini_patch4_28", "resnet18_28"])
def test_export_matches_pytorch_and_has_a_dynamic_batch(tmp_path, name):
    model = randomize_(mlpvision.create_model(name)).eval()
    r = export_onnx(model, tmp_path / "m.onnx")
    assert r.output_scale > 1e-3 and r.max_abs_diff <= 1e-4 * r.output_scale
    assert r.reparameterized == name.startswith("resmlp")  # ResMLP folds its Affines and LayerScales
    ort = OrtModel(r.path)
    for batch in (1, 5):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(ort(x), model(x), rtol=1e-4, atol=1e-4 * r.output_scale)
    assert (ort.model_name, ort.num_classes, ort.img_size, ort.in_chans) == (name, 10, 28, 1)


def test_repmlp_is_exported_in_its_fc_only_deploy_form(tmp_path):
    model = randomize_(mlpvision.create_model("repmlp_fast_28")).eval()
    r = export_onnx(model, tmp_path / "m.onnx")
    assert r.reparameterized and r.max_abs_diff <= 1e-4 * r.output_scale
    ops = {n.op_type for n in onnx.load(str(r.path)).graph.node}
    assert "BatchNormalization" not in ops
    kernels = [
        [a.ints for a in n.attribute if a.name == "kernel_shape"]
        for n in onnx.load(str(r.path)).graph.node
        if n.op_type == "Conv"
    ]
    assert kernels and all(list(k[0]) in ([1, 1], [2, 2]) for k in kernels)  # 2x2 patch stem, then 1x1 FCs


def test_repmlp_int8_quantizes_each_group_of_fc3_with_a_constant_2d_weight(tmp_path):
    model = randomize_(mlpvision.create_model("repmlp_fast_28")).eval()
    r = export_onnx(model, tmp_path / "m.onnx", int8=True)
    graph = onnx.load(str(r.int8_path)).graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMulInteger"]
    fc3 = [b for b in (blk for blk in model.modules() if type(blk).__name__ == "RepMLPBlock")]
    assert len(matmuls) >= sum(b.groups for b in fc3)  # every group of every FC3, besides the head's
    # a constant 2-D weight is packed once when the session loads; a computed or 3-D one would be packed every call
    assert all(len(weights.get(n.input[1], [])) == 2 for n in matmuls)
    assert r.int8_top1_agreement >= 0.75


def test_resmlp_is_exported_with_its_affines_and_layerscales_folded(tmp_path):
    depth = 3
    model = randomize_(mlpvision.create_model("resmlp_tiny_12_28", depth=depth)).eval()
    r = export_onnx(model, tmp_path / "m.onnx")
    assert r.reparameterized and r.max_abs_diff <= 1e-4 * r.output_scale
    ops = [n.op_type for n in onnx.load(str(r.path)).graph.node]
    # train form: two Affines, two LayerScales per block and the final Affine; deploy form: the token scale alone
    assert ops.count("Mul") == depth, ops


def test_int8_quantizes_every_linear_layer_of_a_mixer(tmp_path):
    model = randomize_(mlpvision.create_model("mixer_t4_28", depth=2)).eval()
    r = export_onnx(model, tmp_path / "m.onnx", int8=True)
    graph = onnx.load(str(r.int8_path)).graph
    ops = [n.op_type for n in graph.node]
    # token- and channel-mixing MLPs have two linears each; the head is one more
    assert ops.count("MatMulInteger") == 2 * 4 + 1 and "MatMul" not in ops
    assert "ConvInteger" not in ops and "Conv" in ops  # the patch embedding stays fp32 (see deploy/quantize.py)
    assert r.int8_top1_agreement >= 0.75 and r.int8_max_abs_diff < 0.2 * r.output_scale


def test_static_int8_is_qdq_with_per_channel_weights_and_keeps_the_predictions(tmp_path):
    model = randomize_(mlpvision.create_model("mixer_t4_28", depth=2)).eval()
    calibration = torch.randn(128, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    r = export_onnx(model, tmp_path / "m.onnx", int8="static", calibration=calibration)
    graph = onnx.load(str(r.int8_path)).graph
    ops = [n.op_type for n in graph.node]
    assert r.int8_mode == "static" and "QuantizeLinear" in ops and "DequantizeLinear" in ops
    scales = {i.name: i for i in graph.initializer}
    weight_scales = [scales[n.input[1]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[1] in scales]
    assert any(len(s.dims) == 1 and s.dims[0] > 1 for s in weight_scales)  # one scale per output channel
    assert r.int8_top1_agreement >= 0.75  # on the calibration images
    with pytest.raises(mlpvision.ConfigError, match="needs calibration images"):
        export_onnx(model, tmp_path / "n.onnx", int8="static")


def test_broken_onnx_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="not a valid ONNX model"):
        OrtModel(bad)
    with pytest.raises(CheckpointError, match="not a valid ONNX model"):
        read_onnx_metadata(bad)


def test_export_and_eval_commands(tmp_path, capsys):
    train(tiny_cfg(tmp_path, seed=0))
    ckpt, out = tmp_path / "model.safetensors", tmp_path / "m.onnx"
    static = ["--onnx", str(tmp_path / "s.onnx"), "--int8", "static", "--calibration-images", "64"]
    assert main(["export", "--checkpoint", str(ckpt), *static]) == 0
    printed = capsys.readouterr().out
    assert "int8 (static quantization)" in printed and "of 64 calibration images" in printed
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out), "--int8"]) == 0
    printed = capsys.readouterr().out
    assert "exported to" in printed and "int8 (dynamic quantization)" in printed
    meta = read_onnx_metadata(out)
    assert json.loads(meta["mlpvision.data"])["name"] == "synthetic"
    results = {}
    for path in (ckpt, out, tmp_path / "m.int8.onnx"):
        assert main(["eval", "--checkpoint", str(path), "--json"]) == 0
        results[path.name] = json.loads(capsys.readouterr().out)
    assert results["m.onnx"]["top1"] == pytest.approx(results["model.safetensors"]["top1"], abs=0.5)
    assert results["m.int8.onnx"]["top1"] > 80
    assert main(["export", "--checkpoint", str(tmp_path / "missing.safetensors"), "--onnx", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_every_command_takes_every_model_file(tmp_path, capfd):
    from PIL import Image

    summary = train(tiny_cfg(tmp_path, seed=0))
    ckpt = tmp_path / "model.safetensors"
    static = ["--onnx", str(tmp_path / "s.onnx"), "--int8", "static", "--calibration-images", "64"]
    assert main(["export", "--checkpoint", str(ckpt), *static]) == 0
    assert "out-of-range" not in capfd.readouterr().err  # the quantizer's per-tensor fallback notes are not printed
    image = tmp_path / "x.png"
    Image.fromarray((torch.rand(28, 28) * 255).byte().numpy(), mode="L").save(image)
    files = [ckpt, tmp_path / "s.onnx", tmp_path / "s.int8.onnx"]
    for path in files:
        assert main(["predict", "--checkpoint", str(path), "--device", "cpu", str(image)]) == 0, path
        assert capfd.readouterr().out.startswith(f"{image}: ")
        assert main(["bench", "--model", str(path), "--repeats", "2", "--warmup", "1", "--batch-size", "2"]) == 0
        assert "img/s" in capfd.readouterr().out
    # the validation split the run held out, measured again: the summary's best validation top-1
    assert main(["eval", "--checkpoint", str(tmp_path / "best.safetensors"), "--split", "val", "--json"]) == 0
    val = json.loads(capfd.readouterr().out)
    assert val["num_images"] == 64 and val["top1"] == pytest.approx(summary["best_val_top1"], abs=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_asking_for_cuda_without_it_is_one_clear_error(tmp_path, capsys):
    train(tiny_cfg(tmp_path, epochs=1, val_size=0, plots=False))
    ckpt = str(tmp_path / "model.safetensors")
    for argv in (["eval", "--checkpoint", ckpt], ["bench", "--model", "mixer_t4_28"]):
        assert main([*argv, "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert "has no CUDA GPU" in err and len(err.strip().splitlines()) == 1


def test_export_checks_every_output_before_writing_one(tmp_path, capsys):
    """The int8 file's path is a folder: the export stops before it replaces the float ONNX file already there."""
    model_file = mlpvision.save_model(mlpvision.create_model("mlp_28", hidden=(16,)), tmp_path / "m.safetensors")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"an earlier export")
    (tmp_path / "m.int8.onnx").mkdir()
    assert main(["export", "--checkpoint", str(model_file), "--onnx", str(onnx_file), "--int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.int8.onnx" in err[0] and "folder" in err[0], err
    assert onnx_file.read_bytes() == b"an earlier export"
