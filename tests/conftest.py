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
