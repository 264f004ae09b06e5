"""The benchmark harness: timm counterparts, rows and their arithmetic, error handling, FLOP counting."""

import json
import platform
import shutil

import pytest
import torch

import mlpvision
from mlpvision.cli import main
from mlpvision.deploy import BACKENDS, MATMUL, matmul_candidate, measure, run_bench, timm_counterpart
from mlpvision.errors import ConfigError
from mlpvision.models import flop_counter

from .helpers import randomize_

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["mixer_t4_28", "resmlp_tiny_12_28", "vit_mini_patch4_28"])
def test_timm_counterpart_is_the_same_network(name):
    ours = randomize_(mlpvision.create_model(name)).eval()
    ref = timm_counterpart(name, ours).eval()
    assert type(ref).__module__.startswith("timm.")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), ours(x), rtol=0, atol=1e-5)


def test_timm_counterpart_errors():
    with pytest.raises(ConfigError, match="timm has no counterpart"):
        timm_counterpart("repmlp_fast_28")


def test_measure_rotates_the_round_robin_and_reports_quantiles():
    calls = []
    cands = [
        matmul_candidate(64),
        matmul_candidate(32),
    ]
    cands[0].fn, cands[1].fn = (lambda: calls.append("a")), (lambda: calls.append("b"))
    stats = measure(cands, repeats=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a"] * 2  # warm-up of each, then rounds in rotating order
    for s in stats:
        assert s["min_s"] <= s["p25_s"] <= s["median_s"] <= s["p75_s"] <= s["max_s"]


def _by(rows, impl, backend="eager"):
    return next(r for r in rows if r["impl"] == impl and r["backend"] == backend)


def test_inference_rows_with_onnxruntime_and_timm():
    rows = run_bench(
        "mixer_t4_28",
        batch_size=4,
        backends=["eager", "onnxruntime", "onnxruntime-int8"],
        compare_timm=True,
        repeats=3,
        warmup=1,
    )
    assert [(r["impl"], r["backend"]) for r in rows] == [
        ("mlpvision", "eager"),
        ("mlpvision", "onnxruntime"),
        ("mlpvision", "onnxruntime-int8"),
        ("timm", "eager"),
        (MATMUL, "eager"),
        ("int8-matmul-peak", "onnxruntime"),  # an int8 backend is also held against an int8 matmul
    ]
    macs = mlpvision.count(mlpvision.create_model("mixer_t4_28")).macs
    for r in rows:
        assert r["threads"] == torch.get_num_threads() and r["device"] == "cpu"
        assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert r["frac_of_peak"] == pytest.approx(r["gflop_per_s"] / r["peak_gflop_per_s"])
        if r["impl"] == MATMUL:
            assert r["frac_of_peak"] == pytest.approx(1.0) and r["ratio_vs_timm"] is None
            continue
        if r["impl"] == "int8-matmul-peak":
            assert r["frac_of_int8_peak"] == pytest.approx(1.0)
            continue
        assert (r["batch_size"], r["img_size"], r["mode"]) == (4, 28, "inference")
        assert r["img_per_s"] == pytest.approx(4 / r["median_ms"] * 1e3)
        # achieved GFLOP/s is the counted forward FLOPs of the batch over the median time
        assert r["gflop_per_s"] * r["median_ms"] / 1e3 * 1e9 == pytest.approx(2 * macs * 4, rel=1e-6)
        assert r["macs_per_image"] == macs
        if r["backend"] == "eager":
            assert r["peak_mem_mb"] > 0
        else:  # a compiled or ONNX Runtime call cannot be followed operator by operator
            assert r["peak_mem_mb"] is None
    assert _by(rows, "timm")["ratio_vs_timm"] == pytest.approx(1.0)
    ours = _by(rows, "mlpvision")
    assert ours["ratio_vs_timm"] == pytest.approx(ours["img_per_s"] / _by(rows, "timm")["img_per_s"])


def test_train_rows_count_forward_and_backward():
    rows = run_bench("vit_mini_patch4_28", batch_size=2, train=True, compare_timm=True, repeats=2, warmup=1)
    ours = _by(rows, "mlpvision")
    assert ours["mode"] == "train"
    flops = ours["gflop_per_s"] * ours["median_ms"] / 1e3 * 1e9
    fwd = 2 * ours["macs_per_image"] * 2
    assert 2.9 * fwd < flops < 3.1 * fwd  # backward costs about twice the forward
    # a training step of ours and of timm does the same arithmetic
    theirs = _by(rows, "timm")
    assert theirs["gflop_per_s"] * theirs["median_ms"] == pytest.approx(ours["gflop_per_s"] * ours["median_ms"])


def test_repmlp_is_timed_in_deploy_form_unless_asked():
    deploy = run_bench("repmlp_fast_28", batch_size=2, repeats=1, warmup=0)[0]
    train_form = run_bench("repmlp_fast_28", batch_size=2, repeats=1, warmup=0, deploy=False)[0]
    assert deploy["params"] < train_form["params"]
    assert deploy["macs_per_image"] < train_form["macs_per_image"]


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a compiler")
def test_compile_backend():
    rows = run_bench(
        "mixer_t4_28", batch_size=2, backends=["eager", "compile"], repeats=2, warmup=1, model_args={"depth": 1}
    )
    assert rows[1]["backend"] == "compile" and rows[1]["img_per_s"] > 0
    assert rows[1]["macs_per_image"] == mlpvision.count(mlpvision.create_model("mixer_t4_28", depth=1)).macs


@pytest.mark.parametrize("train", [False, True])
def test_autocast_backend_runs_the_model_in_bfloat16(monkeypatch, train):
    dtypes = set()

    def traced(name, **kwargs):
        model = mlpvision.create_model(name, **kwargs)
        model.head.register_forward_hook(lambda module, args, out: dtypes.add((torch.is_grad_enabled(), out.dtype)))
        return model

    monkeypatch.setattr("mlpvision.deploy.bench.create_model", traced)
    args = {"batch_size": 2, "train": train, "repeats": 1, "warmup": 0, "model_args": {"depth": 1}}
    run_bench("mixer_t4_28", backends=["eager"], **args)
    assert (train, torch.bfloat16) not in dtypes  # (MACs are counted in a float32 forward without gradients)
    rows = run_bench("mixer_t4_28", backends=["eager", "autocast"], **args)
    assert [r["backend"] for r in rows[:2]] == ["eager", "autocast"] and all(r["peak_mem_mb"] for r in rows[:2])
    assert {(train, torch.float32), (train, torch.bfloat16)} <= dtypes


def test_model_args_reach_both_implementations(capsys):
    rows = run_bench(
        "mixer_s32_224", batch_size=1, compare_timm=True, repeats=1, warmup=0, model_args={"depth": 1, "img_size": 64}
    )
    ours = _by(rows, "mlpvision")
    assert ours["img_size"] == 64 and ours["params"] == _by(rows, "timm")["params"]
    argv = ["bench", "--model", "mixer_t4_28", "--model-arg", "depth=1", "--repeats", "1", "--warmup", "0"]
    assert main([*argv, "--model-arg", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backends": ["tensorrt"]}, "unknown backend 'tensorrt'"),
        ({"backends": ["onnxruntime"], "train": True}, "use a backend of eager, autocast, compile"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bench_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run_bench("mixer_t4_28", **kwargs)


def test_best_backend_times_every_inference_backend_and_names_the_fastest(capsys):
    pytest.importorskip("onnxruntime")
    rows = run_bench(
        "mixer_t4_28",
        batch_size=1,
        backends=["best"],
        repeats=3,
        warmup=1,
        model_args={"depth": 1, "embed_dim": 16, "token_mlp_dim": 8, "channel_mlp_dim": 32},
    )
    ours = [r for r in rows if r["impl"] == "mlpvision"]
    assert {r["backend"] for r in ours} == set(BACKENDS) - {"autocast"}
    (best,) = [r for r in ours if r.get("best")]
    assert best["median_ms"] == min(r["median_ms"] for r in ours) and "fastest median" in best["why"]
    assert all(r["p99_ms"] >= r["median_ms"] for r in ours)
    int8_peak = next(r for r in rows if r["impl"] == "int8-matmul-peak")
    assert int8_peak["gflop_per_s"] > 0 and all(r["frac_of_int8_peak"] > 0 for r in ours if "int8" in r["backend"])


def test_bench_command_writes_json(tmp_path, capsys):
    out = tmp_path / "rows.json"
    argv = ["bench", "--model", "mixer_t4_28", "--batch-size", "2", "--repeats", "2", "--warmup", "0"]
    assert main([*argv, "--compare", "timm", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["impl"] for r in rows} == {"mlpvision", "timm", MATMUL}
    assert "vs timm" in capsys.readouterr().out
    assert main(["bench", "--model", "repmlp_fast_28", "--compare", "timm"]) == 2
    assert "timm has no counterpart" in capsys.readouterr().err


def test_flop_counter_counts_fused_cpu_attention():
    model = mlpvision.create_model("vit_mini_patch4_28")
    with torch.device("meta"):
        meta = mlpvision.create_model("vit_mini_patch4_28")
    assert mlpvision.count(model).macs == mlpvision.count(meta).macs
    # by hand: 6 blocks of qkv, proj, MLP (ratio 4) on 50 tokens of width 128, plus QK^T and AV
    n, d = 50, 128
    per_block = n * (3 * d * d + d * d + 8 * d * d) + 2 * n * n * d
    stem, head = 49 * 16 * d, d * 10
    assert mlpvision.count(model).macs == 6 * per_block + stem + head
    with flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(*torch.randn(3, 1, 2, 5, 4))
    assert counter.get_total_flops() == 2 * (2 * 2 * 5 * 5 * 4)


def test_allocator_tuning_is_reported():
    from mlpvision.runtime import tune_cpu_allocator

    result = tune_cpu_allocator()
    if platform.libc_ver()[0] == "glibc":
        assert result is not None and "1024 MiB" in result
    assert tune_cpu_allocator() == result  # idempotent


def test_peak_memory_counts_live_tensors_only():
    from mlpvision.deploy.bench import peak_memory_mb

    def fn():
        a = torch.empty(2**18)  # 1 MiB of float32
        b = torch.empty(2**18)
        del a, b
        c = torch.empty(2**19)  # 2 MiB, after the first two were freed
        return c.sum()

    assert peak_memory_mb(fn) == pytest.approx(2.0, abs=0.01)
    weights = torch.randn(512, 512)  # exists before the call: not counted
    assert peak_memory_mb(lambda: weights @ weights) == pytest.approx(1.0, abs=0.01)
