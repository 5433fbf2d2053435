"""Checkpoints that never lose a learner's work and never load into the wrong model.

A checkpoint is one ``torch.save``'d dict holding only plain data (tensors, numbers, strings,
lists, dicts), so it loads with ``torch.load(..., weights_only=True)`` (no pickled code runs)::

    {"format": 1, "config": {...}, "model": state_dict, ...anything else you pass...}

It is written atomically: to a temporary file in the same folder, flushed to disk, then renamed
over the old one, so an interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

FORMAT_VERSION = 1


class ConfigMismatchError(ValueError):
    """A checkpoint was made for a different model configuration than the one asked for."""


def save_checkpoint(path: str | Path, model_state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                    **extra: Any) -> Path:
    """Write ``{"format", "config", "model", **extra}`` to ``path`` atomically; returns the path.

    ``extra`` may hold optimiser / scheduler state dicts, a step count, RNG states, a tokenizer's
    ``to_dict()``: anything made of tensors and plain Python data.

    Raises:
        ValueError: if ``extra`` uses a reserved key (``format``, ``config``, ``model``).
    """
    reserved = {"format", "config", "model"} & set(extra)
    if reserved:
        raise ValueError(f"keys {sorted(reserved)} are reserved in a checkpoint; rename them")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT_VERSION, "config": dict(config), "model": dict(model_state), **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, expected_config: Mapping[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Args:
        expected_config: if given, the stored config must equal it; otherwise
            :class:`ConfigMismatchError` lists every key that differs (stored vs expected).

    Raises:
        FileNotFoundError: when ``path`` does not exist (the message says so plainly).
        ConfigMismatchError: as above.
        ValueError: when the file is not a checkpoint written by :func:`save_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train a model first or check the path")
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or "model" not in data:
        raise ValueError(f"{path} is not a checkpoint written by utils.checkpoint.save_checkpoint")
    if expected_config is not None:
        check_config(data["config"], expected_config, source=str(path))
    return data


def check_config(stored: Mapping[str, Any], expected: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise :class:`ConfigMismatchError` naming every key where ``stored`` and ``expected`` differ."""
    keys = sorted(set(stored) | set(expected))
    diffs = [f"  {k}: {source} has {stored.get(k, '<missing>')!r}, expected {expected.get(k, '<missing>')!r}"
             for k in keys if stored.get(k, "<missing>") != expected.get(k, "<missing>")]
    if diffs:
        raise ConfigMismatchError(
            f"{source} was made for a different configuration:\n" + "\n".join(diffs)
            + "\nBuild the model with the checkpoint's config (data['config']) or train a new one."
        )
