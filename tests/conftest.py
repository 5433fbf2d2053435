"""Shared test set-up.

The data tests (and the notebooks nbval runs) read Multi30k and tiny-shakespeare. CI sets
``ATTN_DATA_DIR`` itself; in a development checkout with ``../shared/data`` beside the project we
point the variable there, so ``pytest`` works offline without any set-up. Kernels started by
nbval inherit the variable.
"""

import os
from pathlib import Path

import pytest
import torch

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "ATTN_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["ATTN_DATA_DIR"] = str(_SHARED)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and do not fight the other tests for a busy machine's
    cores). Test modules of tiny models use it for every test: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
