"""pytest's hooks and fixtures; the helpers tests import are in helpers.py."""

import os

import pytest
import torch


def pytest_configure(config):
    # pytest-xdist runs the tests in several processes: each takes its share of the cores (torch's default, a thread
    # per core in every worker, would put several threads on each core)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


# the longest test files, longest first: pytest-xdist (``--dist loadfile``, each file on one worker, so the quick lab
# runs once) starts them while the other workers share the short files, instead of ending the run waiting for them
SLOW_FILES = ("test_lab.py", "test_train.py", "test_headline.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
