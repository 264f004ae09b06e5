"""Helpers the tests share (imported as ``from .helpers import ...``): random weights that hide no bug, a fake
CIFAR-10 on disk, the re-parameterization check, and a tiny training config. Fixtures and pytest hooks live in
conftest.py."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

import mlpvision
from mlpvision.data import AugmentConfig
from mlpvision.reparam import reparameterize
from mlpvision.train import TrainConfig

# models small enough to run real forward and backward passes in tests
SMALL_MODELS = [n for n in mlpvision.list_models() if n.endswith(("_28", "_32"))]
FULL_SIZE = 224  # models built for this input size or larger are checked by ``make test-zoo`` (the ``zoo`` mark)


def zoo_params(names: list[str]) -> list:
    """``names`` as pytest parameters, the full-size models (input of :data:`FULL_SIZE` px and up) marked ``zoo``."""
    sizes = {n: mlpvision.create_model(n, device="meta").img_size for n in names}
    return [pytest.param(n, marks=pytest.mark.zoo) if sizes[n] >= FULL_SIZE else n for n in names]


def randomize_(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Fills every parameter and buffer with random values, so zero or identity inits cannot hide bugs."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif b.is_floating_point():
                b.normal_(0, 0.1)
    return model


def write_cifar10(root, layout: str = "binary", per_file: int = 3) -> dict:
    """Writes a random CIFAR-10 in its python (pickle) or binary layout under ``root``: five training files and
    one test file of ``per_file`` images each. Returns file name -> (pixel rows, labels)."""
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    expected = {}
    folder = root / ("cifar-10-batches-py" if layout == "python" else "cifar-10-batches-bin")
    folder.mkdir()
    for n in names:
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_file)]
        if layout == "python":
            (folder / n).write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
        else:
            records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], data], axis=1)
            (folder / f"{n}.bin").write_bytes(records.tobytes())
        expected[n] = (data, labels)
    if layout == "python":
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    else:
        (folder / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    return expected


def randomize_bn_(model: nn.Module) -> nn.Module:
    """Random weights and BN statistics/affines, so identity BNs cannot hide a wrong fusion."""
    randomize_(model, std=0.1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def assert_reparam_equivalent(model: nn.Module, x: torch.Tensor, rtol: float) -> nn.Module:
    """Re-parameterizes ``model`` (eval mode) and asserts the deploy form gives the same output on ``x``, within
    ``rtol`` of the output's largest magnitude. Returns the deploy form."""
    model.eval()
    deployed = reparameterize(model)
    with torch.no_grad():
        before, after = model(x), deployed(x)
    scale = before.abs().max()
    assert scale > 1e-3, "randomized model gives a trivially small output"
    assert (before - after).abs().max() <= rtol * scale
    return deployed


TINY = {"model": "mixer_t4_28", "model_args": {"depth": 2, "embed_dim": 32, "token_mlp_dim": 16, "channel_mlp_dim": 64}}


def tiny_cfg(out, **kw) -> TrainConfig:
    """A two-epoch training config of a tiny Mixer on synthetic data, writing to ``out``; ``kw`` overrides."""
    base = dict(
        TINY,
        data="synthetic",
        epochs=2,
        batch_size=16,
        val_size=64,
        lr=3e-3,
        out=str(out),
        seed=3,
        amp=False,
        aug=AugmentConfig(),
    )
    base.update(kw)
    return TrainConfig(**base)
