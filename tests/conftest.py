"""Shared test set-up.

The data tests (and the notebooks nbval runs) read Multi30k and tiny-shakespeare: from the Hugging
Face hub when online, or from the folder named by ``ATTN_DATA_DIR`` (CI sets it). Kernels started
by nbval inherit the variable.
"""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and do not fight the other tests for a busy machine's
    cores). Test modules of tiny models use it for every test: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Every notebook cell that nbval runs belongs to the slow lane (``pytest -m "not slow"`` skips them)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
