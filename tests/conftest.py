"""Shared test set-up.

The data tests (and the notebooks nbval runs) read Multi30k and tiny-shakespeare. CI sets
``ATTN_DATA_DIR`` itself; in a development checkout with ``../shared/data`` beside the project we
point the variable there, so ``pytest`` works offline without any set-up. Kernels started by
nbval inherit the variable.
"""

import os
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "ATTN_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["ATTN_DATA_DIR"] = str(_SHARED)
