"""Checkpoints that never lose a learner's work and never load into the wrong model.

A checkpoint is one ``torch.save``'d dict of plain data (tensors, numbers, strings, lists, dicts), so it
loads with ``torch.load(..., weights_only=True)`` (no pickled code runs)::

    {"format": 1, "config": {...}, "model": state_dict, ...anything else you pass...}

It is written atomically (a temporary file in the same folder, flushed, renamed over the old one), so an
interrupted save leaves the previous checkpoint intact. What would not load is refused at save time
(:func:`to_plain`), and :func:`check_writable` tells before a long run whether a path can be written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePath
from typing import Any, Mapping

import numpy as np
import torch

from utils import checks
from utils.runtime import get_device

FORMAT_VERSION = 1


class ConfigMismatchError(ValueError):
    """A checkpoint was made for a different model configuration than the one asked for."""


_PLAIN = (bool, int, float, complex, str, bytes, bytearray, type(None), torch.Tensor, torch.dtype, torch.device,
          torch.Size)


def to_plain(value: Any, key: str = "value") -> Any:
    """``value`` as the plain data ``torch.load(weights_only=True)`` accepts: NumPy scalars → Python
    numbers, numeric NumPy arrays → tensors (others → lists), paths → strings, subclasses of the plain types
    (an ``IntEnum``, a ``str`` subclass, a tensor subclass) → the plain type, containers converted inside.
    Raises ``TypeError`` for any other object, naming where it sits (``key``, e.g. ``config['tokenizer']``) and
    how to store it instead."""
    if isinstance(value, (np.generic, np.ndarray)):   # numbers → Python numbers or tensors; strings, dates → lists
        if value.dtype.kind not in "biufc":
            return to_plain(value.tolist(), key)
        return value.item() if isinstance(value, np.generic) else torch.from_numpy(value.copy())
    if isinstance(value, PurePath):
        return str(value)
    plain = next((t for t in _PLAIN if isinstance(value, t)), None)
    if plain is not None:                  # a subclass (an IntEnum, a str subclass) would not load: its plain value
        return value if type(value) in (plain, torch.nn.Parameter) else "".join(value) if plain is str else \
            value.as_subclass(torch.Tensor) if plain is torch.Tensor else plain(value)
    if isinstance(value, dict):
        return {to_plain(k, f"{key} (a key)"): to_plain(v, f"{key}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return {to_plain(v, f"{key} (an item)") for v in value}
    hint = " (a tokenizer: store tokenizer.to_dict())" if hasattr(value, "to_dict") else ""
    hint = hint or (" (a module or optimiser: store its state_dict())" if hasattr(value, "state_dict") else "")
    raise TypeError(f"{key} is a {type(value).__module__}.{type(value).__qualname__}, which a checkpoint cannot "
                    f"hold (it loads with weights_only=True){hint}; store tensors, numbers, strings, lists and "
                    "dicts only")


def check_writable(path: str | Path, what: str = "checkpoint") -> Path:
    """Make sure ``path`` (a file to be written later) can be written: create its folder and write and
    delete a probe file there. Call it before a long run, so a bad path fails before any work.
    Raises ``OSError`` naming ``what``, the path and the reason (a folder in its place, no permission, a parent
    that is a file, ...)."""
    path = Path(path)
    _refuse_read_only(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise type(err)(err.errno, f"cannot write the {what} {path.resolve()}: {err.strerror or err}; "
                        "pick a folder you can write to") from err
    return path


def check_writable_dir(folder: str | Path, what: str = "output folder") -> Path:
    """:func:`check_writable` for a folder that files will be written into (created if missing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"the {what} {folder.resolve()} is a file, not a folder; pick another --out")
    check_writable(folder / "probe", what)
    return folder


def _refuse_read_only(path: Path, what: str) -> int | None:
    """The permission bits of an existing ``path`` (``None`` if none); refuses a folder or a read-only file."""
    if path.is_dir():
        raise IsADirectoryError(f"the {what} path {path.resolve()} is a folder; give a file name such as {path / 'run.pt'}")
    if not path.is_file():
        return None
    mode = path.stat().st_mode & 0o7777
    if not mode & 0o200:
        raise PermissionError(f"the {what} {path.resolve()} is read-only (mode {mode:o}), so it is kept; make it "
                              "writable (chmod u+w) to replace it, or write elsewhere")
    return mode


def _umask() -> int:
    os.umask(mask := os.umask(0))
    return mask


def save_checkpoint(path: str | Path, model_state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                    **extra: Any) -> Path:
    """Write ``{"format", "config", "model", **extra}`` to ``path`` atomically; returns the path.

    ``extra`` may hold optimiser / scheduler state dicts, a step count, RNG states, a tokenizer's
    ``to_dict()``: anything :func:`to_plain` accepts. A new file gets the umask's permissions; a file
    replaced keeps its own (a private 0600 checkpoint stays private); a read-only one is not replaced.
    Raises ``ValueError`` for a reserved key in ``extra`` (``format``, ``config``, ``model``), ``TypeError`` for a
    value a ``weights_only`` load would refuse (naming its key), ``PermissionError`` for a read-only ``path``."""
    reserved = {"format", "config", "model"} & set(extra)
    if reserved:
        raise ValueError(f"keys {sorted(reserved)} are reserved in a checkpoint; rename them")
    checks.instance("config", config, Mapping, "a dict of the model's settings")
    checks.instance("model_state", model_state, Mapping, "a state dict", hint="pass model.state_dict()")
    payload = {"format": FORMAT_VERSION, "config": to_plain(dict(config), "config"),
               "model": to_plain(dict(model_state), "model"), **{k: to_plain(v, k) for k, v in extra.items()}}
    path = Path(path)
    mode = _refuse_read_only(path, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):                      # mkstemp makes 0600; a new checkpoint is an ordinary file
            os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
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
    """Read a checkpoint with ``weights_only=True``; with ``expected_config``, its config must equal that.
    Raises ``FileNotFoundError`` (no file at ``path``), :class:`ConfigMismatchError` (a stored config unlike
    ``expected_config``, every key listed), ``RuntimeError`` (``map_location`` a GPU that is not visible) or
    ``ValueError`` (another ``map_location``, or a file :func:`save_checkpoint` did not write: truncated, corrupt,
    a text file, a bare state dict, objects ``weights_only`` refuses)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train a model first or check the path")
    if isinstance(map_location, (str, torch.device)):          # a GPU asked for on a CPU machine: said before reading
        map_location = get_device(map_location, name="map_location")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # EOFError, RuntimeError (zip), UnpicklingError, OSError...: all mean "not readable"
        raise ValueError(f"{path} is not a readable checkpoint (truncated, corrupt or not written by "
                         f"utils.checkpoint.save_checkpoint): {type(err).__name__}: {str(err)[:200]}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or "model" not in data:
        missing = [k for k in ("format", "config", "model") if not isinstance(data, dict) or k not in data]
        what = (f"a {type(data).__name__}" if not isinstance(data, dict) else
                f"a dict without the keys {missing} (a bare state dict?)" if missing else
                f"format {data['format']!r}, not {FORMAT_VERSION}")
        raise ValueError(f"{path} is not a checkpoint written by utils.checkpoint.save_checkpoint: it holds {what}")
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
