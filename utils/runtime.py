"""Seeds, devices and figures: the three things every notebook needs first (and the CPU's name,
which every benchmark records)."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

from utils import checks

#: Where notebooks save their figures: the checkout's ``figures/`` folder.
_FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) so a run repeats exactly.

    Raises:
        TypeError: ``seed`` not an integer. ValueError: negative or beyond 32 bits (NumPy's limit).
    """
    seed = checks.integer("seed", seed, at_least=0, below=2**32, hint="NumPy takes 32-bit seeds")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))  # seeds CUDA too when it is present


def cpu_model() -> str:
    """The processor's name from ``/proc/cpuinfo`` (e.g. ``AMD EPYC 7B13``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer`` (``"cpu"`` or ``"cuda"``), else the environment variable
    ``ATTN_DEVICE``, else CUDA when a GPU is present and the CPU otherwise. Raises ValueError for another
    name, RuntimeError when ``cuda`` is asked for but no GPU is visible."""
    choice = prefer if prefer is not None else os.environ.get("ATTN_DEVICE") or None
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    checks.one_of("prefer" if prefer is not None else "the environment variable ATTN_DEVICE", choice.lower(),
                  ("cpu", "cuda"))
    choice = choice.lower()
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no GPU is visible; use 'cpu' or leave it unset")
    return torch.device(choice)


def save_figure(fig, name: str, *, dpi: int = 110) -> Path:
    """Save a Matplotlib figure as ``figures/<name>`` (``.png`` added when there is no suffix) and return
    its path. No timestamp is stored, so re-running a notebook rewrites the same bytes. Raises
    ValueError if ``name`` contains a folder (figures all live in ``figures/``).
    """
    path = Path(name)
    if path.name != name or name in ("", ".", ".."):
        raise ValueError(f"figure name must be a plain file name such as 'plot.png', got {name!r}")
    if path.suffix == "":
        path = path.with_suffix(".png")
    _FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    out = _FIGURES_DIR / path
    fig.savefig(out, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return out

