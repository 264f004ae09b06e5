import pickle

import numpy as np
import pytest
import torch

import mlpvision

# models small enough to run real forward and backward passes in tests
SMALL_MODELS = [n for n in mlpvision.list_models() if n.endswith(("_28", "_32"))]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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
