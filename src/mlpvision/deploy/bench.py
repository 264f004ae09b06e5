"""Side-by-side speed measurement: our models on several backends, timm's reference, and the matmul peak.

Every candidate of one benchmark (each backend of our model, timm's model, and a large fp32 matrix multiply)
is timed round-robin in the same run, so machine noise hits them alike and ratios between them are fair.
For each candidate a row records the median latency and its spread, throughput, parameters, MACs, achieved
GFLOP/s, the fraction of the matmul peak measured in the same run, peak memory, and the thread count, batch
size and backend the figures belong to. ``--compare timm`` adds ``ratio_vs_timm`` (img/s over timm's eager
fp32 img/s) to every row.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from ..errors import ConfigError
from ..fields import check_config, option
from ..io import load_checkpoint
from ..models import MAX_SIDE, count, create_model, flop_counter, get_spec
from ..reparam import reparameterize
from ..runtime import pick_device
from .export import export_onnx
from .ort import INPUT_NAME, OrtModel

__all__ = [
    "BACKENDS",
    "BACKEND_TABLE",
    "INFERENCE_BACKENDS",
    "TIMM_TWINS",
    "Backend",
    "BenchInput",
    "BenchOptions",
    "Candidate",
    "inference_call",
    "int8_matmul_candidate",
    "matmul_candidate",
    "measure",
    "run_bench",
    "timm_counterpart",
]

MATMUL = "matmul-peak"
INT8_MATMUL = "int8-matmul-peak"


@dataclass
class Candidate:
    """One thing to time: ``fn()`` runs one step (a forward of a batch, or a training step)."""

    impl: str  # "mlpvision", "timm" or MATMUL
    backend: str
    fn: Callable[[], object]
    flops: float | None  # floating-point operations of one call (2 per multiply-accumulate)
    params: int | None = None
    macs_per_image: float | None = None  # forward MACs of one image
    sync: Callable[[], None] | None = None  # waits for the device (CUDA) before the clock is read


# ---- timm's reference models ---------------------------------------------------------------------------------


def _timm_mixer(cfg, common: dict) -> nn.Module:
    from timm.models.mlp_mixer import MlpMixer

    ratios = (cfg.token_mlp_dim / cfg.embed_dim, cfg.channel_mlp_dim / cfg.embed_dim)
    shape = {"img_size": cfg.img_size, "patch_size": cfg.patch_size, "num_blocks": cfg.depth}
    return MlpMixer(**shape, embed_dim=cfg.embed_dim, mlp_ratio=ratios, **common)


def _timm_resmlp(cfg, common: dict) -> nn.Module:
    from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock

    if cfg.norm != "affine":
        raise ConfigError(f"timm's ResMLP has Affine normalisation only, this one has {cfg.norm!r}")
    shape = {"img_size": cfg.img_size, "patch_size": cfg.patch_size, "num_blocks": cfg.depth}
    block = partial(ResBlock, init_values=cfg.init_values)
    return MlpMixer(
        **shape,
        embed_dim=cfg.embed_dim,
        mlp_ratio=cfg.mlp_ratio,
        norm_layer=Affine,
        stem_norm=False,
        block_layer=block,
        **common,
    )


def _timm_vit(cfg, common: dict) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    shape = {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads}
    return VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, mlp_ratio=cfg.mlp_ratio, **shape, **common
    )


# family -> builder of timm's network of the same configuration (config, {num_classes, in_chans}), for variants
# timm does not register under a name; a family missing here has a counterpart only under its timm name
TIMM_TWINS: dict[str, Callable[..., nn.Module]] = {"mixer": _timm_mixer, "resmlp": _timm_resmlp, "vit": _timm_vit}


def timm_counterpart(name: str, model: nn.Module | None = None) -> nn.Module:
    """timm's implementation of registered model ``name`` with the same configuration.

    Models timm registers are built by timm's name; other variants of the families in :data:`TIMM_TWINS` are
    built from timm's classes with our configuration. Our state dict is loaded into it strictly, which both
    proves the two architectures are the same and gives both the same weights.
    """
    try:
        import timm
    except ImportError:
        raise ConfigError("--compare timm needs timm installed (pip install timm)") from None
    spec = get_spec(name)
    model = model if model is not None else create_model(name)
    cfg = model.config
    common = {"num_classes": cfg.num_classes, "in_chans": cfg.in_chans}
    if spec.timm_name is not None and cfg == dataclasses.replace(spec.config, **common, img_size=cfg.img_size):
        extra = {"img_size": cfg.img_size} if spec.family in ("mixer", "resmlp", "vit") else {}
        ref = timm.create_model(spec.timm_name, pretrained=False, **common, **extra)
    elif spec.family in TIMM_TWINS:
        ref = TIMM_TWINS[spec.family](cfg, common)
    else:
        raise ConfigError(f"timm has no counterpart of {name!r} (family {spec.family})")
    try:
        ref.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as e:
        raise ConfigError(f"timm's model for {name!r} differs from ours: {str(e).splitlines()[0]}") from None
    return ref


# ---- measurements --------------------------------------------------------------------------------------------


def count_flops(fn: Callable[[], object]) -> float:
    """Floating-point operations (2 per MAC) of one call of ``fn``, as counted by torch's FlopCounterMode."""
    with flop_counter() as counter:
        fn()
    return float(counter.get_total_flops())


class _TensorMemory(TorchDispatchMode):
    """Counts the bytes of every storage an op allocates and frees them when the storage dies."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.current = self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage not in self.seen:
                    self.seen[storage] = n = storage.nbytes()
                    self.current += n
                    weakref.finalize(storage, self._free, n)
        self.peak = max(self.peak, self.current)
        return out


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak memory of the tensors one call of ``fn`` allocates (activations, outputs, gradients), in MiB.

    Weights and inputs that exist before the call are not counted. Measured at the operator level, so it does
    not depend on the allocator (CPU figures from the process's resident size would, and are meaningless once
    freed memory is kept for reuse).
    """
    gc.collect()
    with _TensorMemory() as tracker:
        fn()
    return tracker.peak / 2**20


def matmul_candidate(n: int = 2048, device: torch.device | None = None) -> Candidate:
    """An ``n x n`` fp32 matrix multiply: its throughput is this machine's practical fp32 matmul peak."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device or "cpu")
    b = torch.randn(n, n, generator=gen).to(device or "cpu")
    out = torch.empty(n, n, device=a.device)
    sync = partial(torch.cuda.synchronize, a.device) if a.device.type == "cuda" else None
    return Candidate(MATMUL, "eager", lambda: torch.mm(a, b, out=out), 2.0 * n**3, sync=sync)


def int8_matmul_candidate(n: int, workdir: Path, threads: int) -> Candidate:
    """An ``n x n`` uint8 x int8 matrix multiply in ONNX Runtime (MatMulInteger, int32 results): this machine's
    practical int8 peak, what int8 models are held against (2 n^3 integer operations a call)."""
    import onnx
    from onnx import TensorProto, helper

    from .ort import ort_session

    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
    gen = torch.Generator().manual_seed(0)
    b = torch.randint(-127, 128, (n, n), generator=gen, dtype=torch.int8).numpy()
    weight = helper.make_tensor("b", TensorProto.INT8, [n, n], b.tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int8mm", [a], [y], [weight])
    path = workdir / "int8_matmul.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = ort_session(path, threads)
    feed = {"a": torch.randint(0, 256, (n, n), generator=gen, dtype=torch.uint8).numpy()}
    return Candidate(INT8_MATMUL, "onnxruntime", lambda: session.run(None, feed), 2.0 * n**3)


def measure(candidates: list[Candidate], repeats: int, warmup: int) -> list[dict[str, float]]:
    """Times every candidate ``repeats`` times, round-robin, after ``warmup`` untimed calls of each.

    The order rotates every round, so each candidate runs equally often right after each other one: whatever
    the previous call leaves behind (cold caches after the large matmul, a lower AVX-512 clock) is shared
    fairly instead of always hitting the same candidate. Returns, per candidate, the median, min, max,
    quartiles and 99th percentile of the seconds per call.
    """
    for c in candidates:
        for _ in range(warmup):
            c.fn()
        if c.sync:
            c.sync()
    times: list[list[float]] = [[] for _ in candidates]
    n = len(candidates)
    for r in range(repeats):
        for i in range(n):
            j = (i + r) % n
            c = candidates[j]
            t0 = time.perf_counter()
            c.fn()
            if c.sync:
                c.sync()
            times[j].append(time.perf_counter() - t0)
    out = []
    for t in times:
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
        p99 = sorted(t)[min(len(t) - 1, math.ceil(0.99 * len(t)) - 1)]
        spread = {"min_s": min(t), "max_s": max(t), "p25_s": q[0], "p75_s": q[2], "p99_s": p99}
        out.append({"median_s": statistics.median(t), **spread})
    return out


# ---- candidates for a model ----------------------------------------------------------------------------------


def _bf16(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def inference_call(model: nn.Module, x: torch.Tensor, autocast: bool = False) -> Callable[[], object]:
    """A call of ``model`` on ``x`` under inference mode (and bfloat16 autocast when asked): one thing to time."""

    def run() -> object:
        with torch.inference_mode(), _bf16(x.device, autocast):
            return model(x)

    return run


def _train_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: bool = False) -> Callable[[], object]:
    """One AdamW training step (forward, cross-entropy, backward, update) on a fixed batch; ``autocast`` runs the
    forward and the loss in bfloat16 autocast, as ``mlpvision train --amp`` does."""
    model.train()
    fused = x.device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)

    def step() -> object:
        opt.zero_grad(set_to_none=True)
        with _bf16(x.device, autocast):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


@dataclass(frozen=True)
class BenchInput:
    """What a backend builder gets: the model, a batch and its labels, what to time, and where to put files."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    train: bool
    threads: int
    workdir: Path


def _eager(b: BenchInput) -> Callable[[], object]:
    return _train_fn(b.model, b.x, b.y) if b.train else inference_call(b.model.eval(), b.x)


def _autocast(b: BenchInput) -> Callable[[], object]:
    return _train_fn(b.model, b.x, b.y, autocast=True) if b.train else inference_call(b.model, b.x, autocast=True)


def _compiled(b: BenchInput) -> Callable[[], object]:
    compiled = torch.compile(b.model)
    return _train_fn(compiled, b.x, b.y) if b.train else inference_call(compiled, b.x)


def _onnxruntime(b: BenchInput, int8: str | bool) -> Callable[[], object]:
    """ONNX Runtime on the exported model, fp32 or int8. Static int8 is calibrated on random images: the scales
    change the outputs, not the kernels, so the speed is that of a calibrated model."""
    if b.x.device.type != "cpu":
        raise ConfigError("the ONNX Runtime backends are measured on the CPU only")
    gen = torch.Generator().manual_seed(1)
    calibration = torch.randn(64, *b.x.shape[1:], generator=gen) if int8 == "static" else None
    report = export_onnx(b.model, b.workdir / "model.onnx", int8=int8, calibration=calibration)
    ort = OrtModel(report.int8_path if int8 else report.path, threads=b.threads)
    feed = {INPUT_NAME: b.x.cpu().numpy()}
    return lambda: ort.session.run(None, feed)


@dataclass(frozen=True)
class Backend:
    """A way to run a model: ``build`` returns the call to time; ``train``: it can time a training step;
    ``inference``: ``--backend best`` considers it."""

    build: Callable[[BenchInput], Callable[[], object]]
    train: bool = False
    inference: bool = True
    help: str = ""


# the deployment backends, name -> builder: adding one is one entry here
BACKEND_TABLE: dict[str, Backend] = {
    "eager": Backend(_eager, train=True, help="PyTorch, float32"),
    "autocast": Backend(_autocast, train=True, inference=False, help="PyTorch in bfloat16 autocast"),
    "compile": Backend(_compiled, train=True, help="torch.compile"),
    "onnxruntime": Backend(partial(_onnxruntime, int8=False), help="ONNX Runtime, float32"),
    "onnxruntime-int8": Backend(partial(_onnxruntime, int8="dynamic"), help="ONNX Runtime, dynamic int8"),
    "onnxruntime-int8-static": Backend(
        partial(_onnxruntime, int8="static"), help="ONNX Runtime, static int8 (calibrated QDQ)"
    ),
}
BACKENDS = tuple(BACKEND_TABLE)
INFERENCE_BACKENDS = tuple(k for k, v in BACKEND_TABLE.items() if v.inference)  # what "best" times


def _model_candidates(
    impl: str,
    model: nn.Module,
    backends: list[str],
    x: torch.Tensor,
    train: bool,
    threads: int,
    workdir: Path,
    macs_per_image: float,
) -> list[Candidate]:
    device = x.device
    sync = partial(torch.cuda.synchronize, device) if device.type == "cuda" else None
    params = sum(p.numel() for p in model.parameters())
    y = torch.randint(0, model.num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(device)
    eager = _eager(BenchInput(model, x, y, train, threads, workdir))
    flops = count_flops(eager)  # the same arithmetic on every backend
    out = []
    for backend in backends:
        if backend not in BACKEND_TABLE:
            raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        sub = workdir / f"{impl}-{backend}"
        sub.mkdir(parents=True, exist_ok=True)
        fn = eager if backend == "eager" else BACKEND_TABLE[backend].build(BenchInput(model, x, y, train, threads, sub))
        out.append(Candidate(impl, backend, fn, flops, params, macs_per_image, sync))
    return out


@dataclass(frozen=True)
class BenchOptions:
    """The numeric options of a benchmark, each with its range (checked together when built)."""

    batch_size: int = option(16, ge=1, le=65536)  # images per call
    img_size: int | None = option(None, ge=1, le=MAX_SIDE)  # input side (None: the model's)
    threads: int | None = option(None, ge=1, le=4096)  # intra-op CPU threads (None: torch's setting)
    repeats: int = option(20, ge=1, le=100_000)  # timed calls per candidate
    warmup: int = option(3, ge=0, le=100_000)  # untimed calls per candidate
    matmul_size: int = option(2048, ge=16, le=16384)  # side of the square matmul timed as the machine's peak
    seed: int = option(0, ge=0, le=2**32 - 1)  # seed of the random input

    def __post_init__(self) -> None:
        check_config(self, "bench option(s)")


def run_bench(
    model: str,
    batch_size: int = 16,
    img_size: int | None = None,
    threads: int | None = None,
    backends: tuple[str, ...] | list[str] = ("eager",),
    train: bool = False,
    compare_timm: bool = False,
    deploy: bool = True,
    model_args: dict | None = None,
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device | None = None,
    matmul_size: int = 2048,
    seed: int = 0,
) -> list[dict]:
    """Benchmarks ``model`` on each backend (and timm's eager fp32 model) side by side; returns one row each.

    Args:
        model: registered model name, or a model file: ``.safetensors`` (rebuilt, then timed like a registered
            model) or ``.onnx`` (fp32 or int8, timed in ONNX Runtime as it is; ``backends`` does not apply).
        batch_size: images per call.
        img_size: input side (for models built for another size, e.g. Mixer at 448 px); default: the model's.
        threads: intra-op CPU threads (default: torch's current setting).
        backends: any of :data:`BACKENDS`; ``train`` allows eager, autocast and compile. ``"best"`` times every
            inference backend and marks the fastest (``best`` and ``why`` in its row).
        train: time a training step (AdamW, cross-entropy; float32 but for the autocast backend) instead of
            inference.
        compare_timm: add timm's model (eager fp32, same weights) and ``ratio_vs_timm`` on every row.
        deploy: for inference, time the deploy form of re-parameterizable models (RepMLP).
        model_args: overrides of the model config (e.g. ``{"depth": 4}``); timm's model gets the same.
        repeats, warmup: timed and untimed calls per candidate.
        device: "cpu", "cuda" or None (CUDA when available).
        matmul_size: side of the square fp32 matmul timed alongside as the machine's peak.
    """
    best = "best" in backends
    if best and train:
        raise ConfigError("--backend best picks among inference backends; time training with eager or autocast")
    backends = list(dict.fromkeys(b for bk in backends for b in (INFERENCE_BACKENDS if bk == "best" else (bk,))))
    for b in backends:
        if b not in BACKENDS:
            raise ConfigError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    if train and not all(BACKEND_TABLE[b].train for b in backends):
        trainable = ", ".join(k for k, v in BACKEND_TABLE.items() if v.train)
        raise ConfigError(f"--train times PyTorch training steps: use a backend of {trainable}")
    BenchOptions(batch_size, img_size, threads, repeats, warmup, matmul_size, seed)  # every range, checked at once
    device = pick_device(device)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    source = str(model)
    from_file = source.endswith((".safetensors", ".onnx"))
    if from_file and (model_args or img_size):
        raise ConfigError("--model-arg and --img-size change a registered model; a model file is timed as it is")
    if source.endswith(".onnx"):  # an exported file runs in ONNX Runtime as it is
        if train or compare_timm or device.type != "cpu":
            raise ConfigError("an ONNX file is timed for inference on the CPU alone (no --train, --compare, cuda)")
        ort = OrtModel(source, threads=threads)
        model, size = ort.model_name, ort.img_size
        x = torch.randn(batch_size, ort.in_chans, size, size, generator=torch.Generator().manual_seed(seed))
        feed = {INPUT_NAME: x.numpy()}
        backend = "onnxruntime-int8" if ".int8" in Path(source).name else "onnxruntime"
        ours = ref = None
    else:
        overrides = {**(model_args or {}), **({"img_size": img_size} if img_size else {})}
        ours = load_checkpoint(source) if from_file else create_model(model, **overrides)
        model = ours.model_name if from_file else model
        size = ours.img_size
        # timm's model gets our (train-form) weights: outputs agree, so speed is the only difference
        ref = timm_counterpart(model, ours) if compare_timm else None
        if deploy and not train:
            ours = reparameterize(ours.eval())
        x = torch.randn(batch_size, ours.in_chans, size, size, generator=torch.Generator().manual_seed(seed))
        x = x.to(device)
        ours.to(device)
    with tempfile.TemporaryDirectory() as tmp:
        if ours is None:
            cands = [Candidate("mlpvision", backend, lambda: ort.session.run(None, feed), None)]
        else:
            cands = _model_candidates("mlpvision", ours, backends, x, train, threads, Path(tmp), count(ours).macs)
        if ref is not None:
            ref.to(device)
            cands += _model_candidates("timm", ref, ["eager"], x, train, threads, Path(tmp), count(ours).macs)
        peak = matmul_candidate(matmul_size, device)
        cands.append(peak)
        int8_peak = None
        if any("int8" in c.backend for c in cands):  # the int8 rows are also held against an int8 matmul
            int8_peak = int8_matmul_candidate(matmul_size, Path(tmp), threads)
            cands.append(int8_peak)
        # eager calls only: a compiled or ONNX Runtime call cannot be followed operator by operator
        traced = ("eager", "autocast")
        peaks = (MATMUL, INT8_MATMUL)
        memory = [peak_memory_mb(c.fn) if c.backend in traced and c.impl not in peaks else None for c in cands]
        timing = measure(cands, repeats, warmup)
    by_impl = {c.impl: t for c, t in zip(cands, timing, strict=True)}
    peak_gflops = peak.flops / by_impl[MATMUL]["median_s"] / 1e9
    int8_gops = int8_peak.flops / by_impl[INT8_MATMUL]["median_s"] / 1e9 if int8_peak else None
    rows = []
    for c, t, mem in zip(cands, timing, memory, strict=True):
        med = t["median_s"]
        is_peak = c.impl in (MATMUL, INT8_MATMUL)
        side = f"{matmul_size}x{matmul_size}"
        name = {MATMUL: f"matmul {side} fp32", INT8_MATMUL: f"matmul {side} int8"}
        rows.append(
            {
                "model": name.get(c.impl, model),
                "impl": c.impl,
                "backend": c.backend,
                "mode": "train" if train and not is_peak else "inference",
                "device": device.type,
                "threads": threads,
                "batch_size": None if is_peak else batch_size,
                "img_size": None if is_peak else size,
                "repeats": repeats,
                "median_ms": med * 1e3,
                "min_ms": t["min_s"] * 1e3,
                "max_ms": t["max_s"] * 1e3,
                "p25_ms": t["p25_s"] * 1e3,
                "p75_ms": t["p75_s"] * 1e3,
                "p99_ms": t["p99_s"] * 1e3,
                "img_per_s": None if is_peak else batch_size / med,
                "params": c.params,
                "macs_per_image": c.macs_per_image,
                "gflop_per_s": c.flops / med / 1e9 if c.flops else None,
                "peak_gflop_per_s": peak_gflops,
                "frac_of_peak": c.flops / med / 1e9 / peak_gflops if c.flops else None,
                "peak_int8_gop_per_s": int8_gops,
                "frac_of_int8_peak": c.flops / med / 1e9 / int8_gops if c.flops and int8_gops else None,
                "peak_mem_mb": mem,
            }
        )
    if best:
        _mark_best(rows)
    if ref is not None:
        timm_ips = next(r["img_per_s"] for r in rows if r["impl"] == "timm")
        for r in rows:
            r["ratio_vs_timm"] = r["img_per_s"] / timm_ips if r["img_per_s"] else None
    return rows


def _mark_best(rows: list[dict]) -> None:
    """Marks the fastest of our rows (median latency, all timed round-robin in one run) and says why."""
    ours = sorted((r for r in rows if r["impl"] == "mlpvision"), key=lambda r: r["median_ms"])
    pick, runner_up = ours[0], ours[1] if len(ours) > 1 else None
    why = f"fastest median in this run: {pick['median_ms']:.2f} ms (p99 {pick['p99_ms']:.2f} ms)"
    if runner_up is not None:
        why += f", {runner_up['median_ms'] / pick['median_ms']:.2f}x ahead of {runner_up['backend']}"
    if "int8" in pick["backend"]:
        why += "; int8 changes the outputs: check its accuracy (mlpvision eval on the exported .int8.onnx)"
    pick["best"], pick["why"] = True, why
