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
from ..models import count, create_model, flop_counter, get_spec
from ..reparam import reparameterize
from ..runtime import pick_device
from .export import export_onnx
from .ort import INPUT_NAME, OrtModel

__all__ = ["BACKENDS", "Candidate", "matmul_candidate", "measure", "run_bench", "timm_counterpart"]

BACKENDS = ("eager", "autocast", "compile", "onnxruntime", "onnxruntime-int8")  # autocast: eager in bfloat16 autocast
MATMUL = "matmul-peak"


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


def timm_counterpart(name: str, model: nn.Module | None = None) -> nn.Module:
    """timm's implementation of registered model ``name`` with the same configuration.

    Models timm registers are built by timm's name; the small Mixer, ResMLP and ViT variants are built from
    timm's classes with our configuration. Our state dict is loaded into it strictly, which both proves the
    two architectures are the same and gives both the same weights.
    """
    try:
        import timm
        from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        raise ConfigError("--compare timm needs timm installed (pip install timm)") from None
    spec = get_spec(name)
    model = model if model is not None else create_model(name)
    cfg = model.config
    common = {"num_classes": cfg.num_classes, "in_chans": cfg.in_chans}
    if spec.timm_name is not None and cfg == dataclasses.replace(spec.config, **common, img_size=cfg.img_size):
        extra = {"img_size": cfg.img_size} if spec.family in ("mixer", "resmlp", "vit") else {}
        ref = timm.create_model(spec.timm_name, pretrained=False, **common, **extra)
    elif spec.family == "mixer":
        ratios = (cfg.token_mlp_dim / cfg.embed_dim, cfg.channel_mlp_dim / cfg.embed_dim)
        ref = MlpMixer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            num_blocks=cfg.depth,
            embed_dim=cfg.embed_dim,
            mlp_ratio=ratios,
            **common,
        )
    elif spec.family == "resmlp" and cfg.norm == "affine":
        ref = MlpMixer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            num_blocks=cfg.depth,
            embed_dim=cfg.embed_dim,
            mlp_ratio=cfg.mlp_ratio,
            norm_layer=Affine,
            stem_norm=False,
            block_layer=partial(ResBlock, init_values=cfg.init_values),
            **common,
        )
    elif spec.family == "vit":
        shape = {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads}
        ref = VisionTransformer(
            img_size=cfg.img_size, patch_size=cfg.patch_size, mlp_ratio=cfg.mlp_ratio, **shape, **common
        )
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


def measure(candidates: list[Candidate], repeats: int, warmup: int) -> list[dict[str, float]]:
    """Times every candidate ``repeats`` times, round-robin, after ``warmup`` untimed calls of each.

    The order rotates every round, so each candidate runs equally often right after each other one: whatever
    the previous call leaves behind (cold caches after the large matmul, a lower AVX-512 clock) is shared
    fairly instead of always hitting the same candidate. Returns, per candidate, the median, min, max and
    quartiles of the seconds per call.
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
        out.append({"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "p25_s": q[0], "p75_s": q[2]})
    return out


# ---- candidates for a model ----------------------------------------------------------------------------------


def _bf16(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def _inference_fn(model: nn.Module, x: torch.Tensor, autocast: bool = False) -> Callable[[], object]:
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


def _ort_candidate(model: nn.Module, x: torch.Tensor, int8: bool, threads: int, workdir: Path) -> Callable:
    report = export_onnx(model, workdir / "model.onnx", int8=int8)
    ort = OrtModel(report.int8_path if int8 else report.path, threads=threads)
    feed = {INPUT_NAME: x.cpu().numpy()}
    return lambda: ort.session.run(None, feed)


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
    eager = _train_fn(model, x, y) if train else _inference_fn(model.eval(), x)
    flops = count_flops(eager)  # the same arithmetic on every backend
    out = []
    for backend in backends:
        if backend == "eager":
            fn = eager
        elif backend == "autocast":
            fn = _train_fn(model, x, y, autocast=True) if train else _inference_fn(model, x, autocast=True)
        elif backend == "compile":
            compiled = torch.compile(model)
            fn = _train_fn(compiled, x, y) if train else _inference_fn(compiled, x)
        elif backend in ("onnxruntime", "onnxruntime-int8"):
            if device.type != "cpu":
                raise ConfigError(f"backend {backend} is measured on the CPU only")
            sub = workdir / f"{impl}-{backend}"
            sub.mkdir(parents=True, exist_ok=True)
            fn = _ort_candidate(model, x, backend.endswith("int8"), threads, sub)
        else:
            raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        out.append(Candidate(impl, backend, fn, flops, params, macs_per_image, sync))
    return out


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
        model: registered model name.
        batch_size: images per call.
        img_size: input side (for models built for another size, e.g. Mixer at 448 px); default: the model's.
        threads: intra-op CPU threads (default: torch's current setting).
        backends: any of :data:`BACKENDS`; ``train`` allows eager, autocast and compile.
        train: time a training step (AdamW, cross-entropy; float32 but for the autocast backend) instead of
            inference.
        compare_timm: add timm's model (eager fp32, same weights) and ``ratio_vs_timm`` on every row.
        deploy: for inference, time the deploy form of re-parameterizable models (RepMLP).
        model_args: overrides of the model config (e.g. ``{"depth": 4}``); timm's model gets the same.
        repeats, warmup: timed and untimed calls per candidate.
        device: "cpu", "cuda" or None (CUDA when available).
        matmul_size: side of the square fp32 matmul timed alongside as the machine's peak.
    """
    backends = list(dict.fromkeys(backends))
    for b in backends:
        if b not in BACKENDS:
            raise ConfigError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    if train and any(b.startswith("onnxruntime") for b in backends):
        raise ConfigError("--train times PyTorch training steps: use the eager, autocast or compile backend")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ConfigError("batch size and repeats must be at least 1, warm-up at least 0")
    device = pick_device(device)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    overrides = {**(model_args or {}), **({"img_size": img_size} if img_size else {})}
    ours = create_model(model, **overrides)
    size = ours.img_size
    # timm's model gets our (train-form) weights: outputs agree, so speed is the only difference
    ref = timm_counterpart(model, ours) if compare_timm else None
    if deploy and not train:
        ours = reparameterize(ours.eval())
    macs = count(ours).macs
    x = torch.randn(batch_size, ours.in_chans, size, size, generator=torch.Generator().manual_seed(seed))
    x = x.to(device)
    ours.to(device)
    with tempfile.TemporaryDirectory() as tmp:
        cands = _model_candidates("mlpvision", ours, backends, x, train, threads, Path(tmp), macs)
        if ref is not None:
            ref.to(device)
            cands += _model_candidates("timm", ref, ["eager"], x, train, threads, Path(tmp), macs)
        peak = matmul_candidate(matmul_size, device)
        cands.append(peak)
        # eager calls only: a compiled or ONNX Runtime call cannot be followed operator by operator
        traced = ("eager", "autocast")
        memory = [peak_memory_mb(c.fn) if c.backend in traced and c.impl != MATMUL else None for c in cands]
        timing = measure(cands, repeats, warmup)
    peak_gflops = peak.flops / timing[-1]["median_s"] / 1e9
    rows = []
    for c, t, mem in zip(cands, timing, memory, strict=True):
        med = t["median_s"]
        rows.append(
            {
                "model": model if c.impl != MATMUL else f"matmul {matmul_size}x{matmul_size} fp32",
                "impl": c.impl,
                "backend": c.backend,
                "mode": "train" if train and c.impl != MATMUL else "inference",
                "device": device.type,
                "threads": threads,
                "batch_size": batch_size if c.impl != MATMUL else None,
                "img_size": size if c.impl != MATMUL else None,
                "repeats": repeats,
                "median_ms": med * 1e3,
                "min_ms": t["min_s"] * 1e3,
                "max_ms": t["max_s"] * 1e3,
                "p25_ms": t["p25_s"] * 1e3,
                "p75_ms": t["p75_s"] * 1e3,
                "img_per_s": batch_size / med if c.impl != MATMUL else None,
                "params": c.params,
                "macs_per_image": c.macs_per_image,
                "gflop_per_s": c.flops / med / 1e9 if c.flops else None,
                "peak_gflop_per_s": peak_gflops,
                "frac_of_peak": c.flops / med / 1e9 / peak_gflops if c.flops else None,
                "peak_mem_mb": mem,
            }
        )
    if ref is not None:
        timm_ips = next(r["img_per_s"] for r in rows if r["impl"] == "timm")
        for r in rows:
            r["ratio_vs_timm"] = r["img_per_s"] / timm_ips if r["img_per_s"] else None
    return rows
