"""Seeds, devices and figures: the three things every notebook needs first (and the CPU's name,
which every benchmark records)."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
from pathlib import Path

import numpy as np
import torch

from utils import checks

def _figures_dir() -> Path:   # the working checkout's figures/ (notebooks run from notebooks/), never another's
    return (Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()) / "figures"


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) so a run repeats exactly. Raises
    TypeError for a ``seed`` that is not an integer, ValueError for a negative one or one beyond 32 bits (NumPy's)."""
    seed = checks.integer("seed", seed, at_least=0, below=2**32, hint="NumPy takes 32-bit seeds")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too when it is present


def cpu_model() -> str:
    """The processor's name from ``/proc/cpuinfo`` (e.g. ``AMD EPYC 7B13``), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def get_device(prefer: str | torch.device | None = None, *, name: str = "prefer") -> torch.device:
    """The device to compute on: ``prefer`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``), else the
    environment variable ``ATTN_DEVICE``, else CUDA when a GPU is present and the CPU otherwise. Raises ValueError
    for another device, RuntimeError for a GPU that is not visible, naming ``name`` (the caller's argument) or
    ``ATTN_DEVICE``."""
    if prefer is None:
        prefer, name = os.environ.get("ATTN_DEVICE", "").strip() or None, "ATTN_DEVICE"
        if prefer is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(prefer, (str, torch.device)) or not re.fullmatch(r"(cpu|cuda)(:\d+)?", str(prefer).lower()):
        raise ValueError(f"{name} must be 'cpu' or 'cuda' (or 'cuda:N', GPU number N), got {prefer!r}")
    device = torch.device(str(prefer).lower())
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        seen = f"only {torch.cuda.device_count()} GPU(s) are" if torch.cuda.is_available() else "no GPU is"
        raise RuntimeError(f"{name}={str(prefer)!r} asks for a GPU, but {seen} visible; use {name}='cpu'")
    return device


def save_figure(fig, name: str, *, dpi: int = 110) -> Path:
    """Save a Matplotlib figure as ``figures/<name>`` of the working checkout (``.png`` added when there is
    no suffix) and return its path. No timestamp is stored, so re-running a notebook rewrites the same bytes. Raises
    ValueError if ``name`` contains a folder (figures all live in ``figures/``).
    """
    path = Path(name)
    if path.name != name or name in ("", ".", ".."):
        raise ValueError(f"figure name must be a plain file name such as 'plot.png', got {name!r}")
    path = path if path.suffix else path.with_suffix(".png")
    (out := _figures_dir() / path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return out

