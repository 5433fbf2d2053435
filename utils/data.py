"""Real data, loaded the same way online and offline, as a ``datasets.DatasetDict``: from the Hugging
Face hub, or, when the environment variable ``ATTN_DATA_DIR`` names a folder, from its plain-text files.

===================  ============================  ===========================================
loader               hub id                        files under ``$ATTN_DATA_DIR``
===================  ============================  ===========================================
``load_multi30k``    ``bentrevett/multi30k``       ``multi30k/{train,val,test_2016_flickr}.{de,en}``
``load_tiny_...``    ``karpathy/tiny_shakespeare`` ``tinyshakespeare/input.txt``
===================  ============================  ===========================================
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from utils import checks

# Progress bars and info logs change from run to run; they would make nbval flaky.
datasets.disable_progress_bars()
datasets.utils.logging.set_verbosity_error()

DATA_DIR_VAR = "ATTN_DATA_DIR"
MULTI30K_HUB_ID = "bentrevett/multi30k"
SHAKESPEARE_HUB_ID = "karpathy/tiny_shakespeare"

#: Our split name → the file stem used by the Multi30k repository (and under ``$ATTN_DATA_DIR``).
MULTI30K_FILES = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
SHAKESPEARE_FILE = "tinyshakespeare/input.txt"


class DataNotFoundError(RuntimeError):
    """The data set is neither on the hub (no network?) nor in ``$ATTN_DATA_DIR``."""


def _local_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_VAR)
    if value is not None and not value.strip():                     # not the hub: that would retry for seconds
        raise ValueError(f"{DATA_DIR_VAR} is set but empty; name the data folder, or unset it to use the hub")
    path = Path(value).expanduser().resolve() if value else None     # errors show where it really looked
    if path is not None and path.is_file():
        raise NotADirectoryError(f"{DATA_DIR_VAR}={str(path)!r} is a file, not a folder; name the data folder")
    return path


def _not_found(hub_id: str, files: list[str], reason: str) -> DataNotFoundError:
    listed = "\n".join(f"    $ATTN_DATA_DIR/{f}" for f in files)
    return DataNotFoundError(
        f"Could not load {hub_id!r}: {reason}\n"
        f"Either connect to the internet (the data comes from the Hugging Face hub, id {hub_id!r}),\n"
        f"or set the environment variable {DATA_DIR_VAR} to a folder holding these files:\n{listed}\n"
        f"For example: export {DATA_DIR_VAR}=/path/to/data  (or os.environ[{DATA_DIR_VAR!r}] = ... "
        f"before calling the loader).")


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark dropped); a clear error naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 4]!r}); "
                         f"convert it, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed && mv fixed {path.name}") from err
    if not text.strip():
        raise ValueError(f"{path} is empty; restore it from the data set (hub id in utils.data)")
    return text


def _read_lines(path: Path) -> list[str]:
    lines = _read_text(path).split("\n")          # not splitlines(): that also cuts at \x0c, \u2028, ...
    return [line.strip() for line in (lines[:-1] if lines[-1] == "" else lines)]


def _load_hub(hub_id: str, files: list[str]) -> DatasetDict:
    """``datasets.load_dataset``, retried on the hub's Parquet conversion (for a loading-script repo)."""
    try:
        try:
            return datasets.load_dataset(hub_id)
        except RuntimeError as err:
            if "script" not in str(err).lower():
                raise
            return datasets.load_dataset(hub_id, revision="refs/convert/parquet")
    except Exception as err:  # ConnectionError, offline mode, hub errors: all mean "not reachable"
        raise _not_found(hub_id, files, f"the hub was not reachable ({type(err).__name__}).") from err


def load_multi30k(limit: int | None = None) -> DatasetDict:
    """Multi30k (task 1), German–English image captions.

    Args:
        limit: keep only the first ``limit`` pairs of each split (smoke runs and tests); None: all.

    Returns:
        ``DatasetDict`` with splits ``train`` (29000 rows), ``validation`` (1014) and ``test``
        (1000, the 2016 Flickr test set), each with string columns ``de`` and ``en``; row *i*
        of ``de`` translates row *i* of ``en``.

    Raises ``ValueError`` for a ``limit`` that is not a positive int (or None) or a blank ``$ATTN_DATA_DIR``
    (``NotADirectoryError``: a file); ``DataNotFoundError`` when it lacks a file, or is unset and the hub is not
    reachable (the message names the hub id, the variable and the expected files)."""
    checks.positive_int("limit", limit, allow_none=True, hint="pairs per split, or None for all")
    files = [f"multi30k/{stem}.{lang}" for stem in MULTI30K_FILES.values() for lang in ("de", "en")]
    local = _local_dir()
    if local is None:
        hub = _load_hub(MULTI30K_HUB_ID, files)
        ds = DatasetDict({split: hub[split].select_columns(["de", "en"]) for split in MULTI30K_FILES})
    else:
        missing = [f for f in files if not (local / f).is_file()]
        if missing:
            raise _not_found(MULTI30K_HUB_ID, files, f"{DATA_DIR_VAR}={str(local)!r} lacks {', '.join(missing)}.")
        splits = {}
        for split, stem in MULTI30K_FILES.items():
            de, en = (_read_lines(local / f"multi30k/{stem}.{lang}") for lang in ("de", "en"))
            if len(de) != len(en):
                raise ValueError(f"{local / f'multi30k/{stem}.de'} has {len(de)} lines but .en has {len(en)} "
                                 f"({local / f'multi30k/{stem}.en'}); the files must be parallel")
            splits[split] = Dataset.from_dict({"de": de, "en": en})
        ds = DatasetDict(splits)
    return ds if limit is None else DatasetDict({s: ds[s].select(range(min(limit, len(ds[s])))) for s in ds})


def load_tiny_shakespeare() -> DatasetDict:
    """Tiny Shakespeare (40,000 lines of the plays, 1,115,394 characters).

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test``, each ONE row whose ``text`` is
        the first 90 %, the next 5 % and the last 5 % of the characters (the hub's and TFDS's split).

    Raises ``DataNotFoundError`` as :func:`load_multi30k` does."""
    local = _local_dir()
    if local is not None:
        path = local / SHAKESPEARE_FILE
        if not path.is_file():
            raise _not_found(SHAKESPEARE_HUB_ID, [SHAKESPEARE_FILE], f"{DATA_DIR_VAR}={str(local)!r} lacks {SHAKESPEARE_FILE}.")
        text = _read_text(path)
        i = int(len(text) * 0.9)
        j = i + (len(text) - i) // 2
        parts = {"train": text[:i], "validation": text[i:j], "test": text[j:]}
        return DatasetDict({split: Dataset.from_dict({"text": [t]}) for split, t in parts.items()})
    ds = _load_hub(SHAKESPEARE_HUB_ID, [SHAKESPEARE_FILE])
    return DatasetDict({split: ds[split].select_columns(["text"]) for split in ("train", "validation", "test")})
