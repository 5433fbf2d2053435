"""Named experiment recipes, and where a run of one writes.

A recipe is a small Python file here, ``recipes/<name>.py``, that sets the settings a script would
otherwise take as flags (nanoGPT's ``config/`` files are the model)::

    script = "train_translator"      # which script in scripts/ trains it
    steps = 3100                     # one assignment per setting; the names are the script's flags
    dropout = 0.2                    # (``--average-every`` is ``average_every``)

``python scripts/<script>.py <name>`` runs it; a flag given after the name overrides the recipe
(``python scripts/train_translator.py multi30k_30min --steps 2 --limit 100 --out /tmp/smoke``), so a
smoke run needs no recipe of its own.

Every run of a recipe writes into ``results/<name>/`` of the checkout the script belongs to, one
report a stage (``train.json``, ``choose.json``, ``compare.json``, ``ablations.json``,
``showcase.json``), each in the one schema that :func:`report` builds:

``recipe``, ``stage``, ``command``
    the recipe's name, what ran (``train``, ``choose``, ...) and the one-line command that runs it;
``settings``
    every setting the run used (the recipe's and the script's defaults, after any flag);
``metrics``
    the figures, one flat mapping of name to number (``test_bleu``, ``valid_loss``, ...): what
    ``docs/results.md`` and ``docs/experiments.md`` quote;
``translations``
    the translation files written beside the report, each with the split it translates, whether its
    BLEU is lowercased, and the name of the metric its BLEU is (``tests/test_results.py`` recomputes
    each with sacreBLEU);
``details``
    what the stage alone has: validation tables, learning curves, the run's own training report;
``environment``
    device, GPU, CPU, threads, processes, torch version and the wall-clock seconds of each part.

A script never writes over a report that is already there (a committed result, or a run of yours):
it stops before any work and says to pass ``--force`` or another ``--out``. Checkpoints go to
``checkpoints/<name>.pt`` (git-ignored) under the same rule, and so do the files a run keeps beside
its checkpoint (``<stem>.snapshots.pt``, ``<stem>.avg.pt``): each training run draws a random identity
(:func:`new_run_id`) that its checkpoint and its snapshot file both record, so the snapshots of
another run are refused (:func:`check_snapshots`); ``--resume`` refuses a changed setting, naming
the flag (:func:`check_resume_settings`); and a run holds ``<stem>.lock`` (:func:`run_lock`), so two
runs never write one checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import runpy
import sys
import uuid
from pathlib import Path
from typing import Any

import torch

#: The checkout this file belongs to: default outputs go here, never to another clone's folders.
ROOT = Path(__file__).resolve().parents[1]
RECIPES = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CHECKPOINTS = ROOT / "checkpoints"


def check_same_checkout(utils_file: str | None) -> None:
    """Refuse to run this checkout's scripts with another checkout's ``utils`` (a second clone or
    worktree sharing one virtual environment, whose editable install points at the first): the
    results would come from code other than the code beside them.

    Raises:
        ImportError: naming both folders and how to run this checkout's code.
    """
    if utils_file is None:
        return
    found = Path(utils_file).resolve().parent
    if found != ROOT / "utils":
        raise ImportError(f"this checkout ({ROOT}) runs with the utils package of another one ({found}), which the "
                          f"virtual environment installed; run with PYTHONPATH={ROOT}, or pip install -e {ROOT}")


check_same_checkout(getattr(sys.modules.get("utils"), "__file__", None))   # the scripts import utils first

#: The keys of every report, in order.
REPORT_KEYS = ("recipe", "stage", "command", "settings", "metrics", "translations", "details", "environment")


def names() -> list[str]:
    """Every recipe's name, sorted."""
    return sorted(p.stem for p in RECIPES.glob("*.py") if not p.stem.startswith("_"))


def load(name: str) -> dict[str, Any]:
    """The settings of ``recipes/<name>.py``: every public name it assigns (``script`` included).

    Raises:
        ValueError: naming the recipes there are, when ``name`` is not one of them.
    """
    if not isinstance(name, str) or name not in names():
        raise ValueError(f"no recipe named {name!r}; the recipes are: {', '.join(names())} (files in {RECIPES})")
    values = runpy.run_path(str(RECIPES / f"{name}.py"))
    return {k: v for k, v in values.items() if not k.startswith("_") and not callable(v)
            and not isinstance(v, type(json))}


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, script: str,
               others: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> argparse.Namespace:
    """Parse ``<recipe> [flags]``: the recipe's settings become the defaults of the flags of the same
    name, and a flag on the command line overrides them. Adds the positional ``recipe`` and ``--force``.

    ``script`` is the script's name (``train_translator``); a recipe whose ``script`` differs is refused
    unless listed in ``others`` (``choose`` reads the recipes ``train_translator`` trains). A setting
    that names no flag of the parser is refused unless listed in ``ignore`` (the settings of the
    scripts that run after it, such as ``choose_among``); a recipe of another script skips the
    settings this parser has no flag for. The recipe's full settings are kept in ``args.recipe_settings``.
    """
    parser.add_argument("recipe", help="a recipe: the name of a file in recipes/ (" + ", ".join(names()) + ")")
    parser.add_argument("--force", action="store_true",
                        help="replace a report or checkpoint that is already there (default: stop and say so)")
    known, _ = parser.parse_known_args(argv)
    try:
        settings = load(known.recipe)
    except ValueError as err:
        parser.error(str(err))
    runner = settings.pop("script", None)
    if runner != script and runner not in others:
        parser.error(f"recipe {known.recipe!r} is run by scripts/{runner}.py, not scripts/{script}.py")
    dests = {action.dest for action in parser._actions}
    unknown = sorted(set(settings) - dests - set(ignore))
    if unknown and runner == script:
        parser.error(f"recipe {known.recipe!r} sets {', '.join(unknown)}, which scripts/{script}.py has no flag for")
    parser.set_defaults(**{k: v for k, v in settings.items() if k in dests})
    args = parser.parse_args(argv)
    args.recipe_settings = settings
    return args


def results_dir(name: str) -> Path:
    """``results/<name>/`` of this checkout."""
    return RESULTS / name


def checkpoint_path(name: str, kind: str = "") -> Path:
    """``checkpoints/<name>.pt`` (``kind="best"``: ``<name>.best.pt``) of this checkout."""
    return CHECKPOINTS / (f"{name}.{kind}.pt" if kind else f"{name}.pt")


#: What a training checkpoint ``<stem>.pt`` keeps beside it: its weight snapshots and their average.
COMPANIONS = {"snapshots": "snapshot file", "avg": "averaged model"}


def checkpoint_name_error(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot name a training checkpoint, or ``None`` when it can.

    It must end in ``.pt`` (``run`` and ``run.pt`` would share ``run.snapshots.pt``) and must not be
    named like another checkpoint's companion file (``run.snapshots.pt``, ``run.avg.pt``).
    """
    name = Path(checkpoint).name
    if not name.endswith(".pt") or name == ".pt":
        return f"{checkpoint} must be a file name ending in .pt (its snapshots go beside it as <stem>.snapshots.pt)"
    for kind in COMPANIONS:
        if name.endswith(f".{kind}.pt"):
            return f"{checkpoint} is named like the {COMPANIONS[kind]} of another checkpoint (*.{kind}.pt); pick another name"
    return None


def companion_path(checkpoint: Path, kind: str) -> Path:
    """``<stem>.<kind>.pt`` beside ``checkpoint`` (``kind``: ``snapshots`` or ``avg``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + f".{kind}.pt")


def snapshots_path(checkpoint: Path) -> Path:
    """Where the weight snapshots of the run in ``checkpoint`` are kept: ``run.pt`` → ``run.snapshots.pt``."""
    return companion_path(checkpoint, "snapshots")


@contextlib.contextmanager
def run_lock(checkpoint: Path):
    """Hold ``<stem>.lock`` beside ``checkpoint`` while a run writes it, so a second run on the same
    checkpoint stops at once instead of both writing it in turn (the last writer would win).
    The lock is the operating system's (``flock``): a run killed with ``kill -9`` releases it too, and
    the temporary files a save killed midway left (``.<name>.*.tmp``) are removed once the lock is held.

    Raises:
        RuntimeError: another process holds the lock (naming the file and the way on).
        OSError: the lock file cannot be made (naming ``--checkpoint``).
    """
    checkpoint = Path(checkpoint)
    lock = checkpoint.with_name(checkpoint.name.removesuffix(".pt") + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError as err:
        raise type(err)(err.errno, f"cannot write beside the --checkpoint {checkpoint.resolve()}: "
                        f"{err.strerror or err}; pick a folder you can write to") from err
    try:
        try:
            import fcntl
        except ImportError:                                  # Windows: no advisory locks here
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"another run is writing the checkpoint {checkpoint} (it holds {lock}); wait "
                                   "for it to finish, or pass another --checkpoint") from None
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        for name in (checkpoint.name, *(companion_path(checkpoint, kind).name for kind in COMPANIONS)):
            for tmp in checkpoint.parent.glob(f".{glob.escape(name)}.*.tmp"):   # left by a save that was killed
                tmp.unlink(missing_ok=True)
        yield lock
    finally:
        handle.close()


def new_run_id() -> str:
    """A random identity for a new training run, stored in its checkpoint and in its snapshot file."""
    return uuid.uuid4().hex


def prepare_new_run(checkpoint: Path, force: bool) -> None:
    """Before a new (not resumed) run writes ``checkpoint``: stop when it, or a companion file of an
    earlier run (snapshots, average), is there, unless ``force``; with ``force`` the companions are
    removed, so nothing of the earlier run is taken for this one's.

    Raises:
        FileExistsError: naming the file, ``--force`` and ``--checkpoint``.
    """
    refuse_overwrite(checkpoint, force, "checkpoint", "--checkpoint")
    for kind, what in COMPANIONS.items():
        refuse_overwrite(companion_path(checkpoint, kind), force, f"{what} of an earlier run", "--checkpoint")
    for kind in COMPANIONS:
        companion_path(checkpoint, kind).unlink(missing_ok=True)


def check_snapshots(checkpoint: dict, snapshots: dict, checkpoint_path: Path, snapshot_path: Path) -> None:
    """Make sure the snapshot file belongs to the run in the training checkpoint (both as loaded).

    They belong together when both carry the same run identity (``checkpoint["run"]["id"]`` and
    ``snapshots["run_id"]``), the same model configuration, and no snapshot is of a step after the
    checkpoint's. A pair in which neither records an identity belongs together only when the last
    snapshot was taken at the checkpoint's step and holds its weights.

    Raises:
        ValueError: naming both files and what differs.
    """
    where = f"the snapshot file {snapshot_path} does not belong to the training checkpoint {checkpoint_path}"
    fix = ("; it is left from another run: delete it, or train this run again with --force "
           "(a new run replaces both)")
    run_id, snap_id = (checkpoint.get("run") or {}).get("id"), snapshots.get("run_id")
    if run_id is not None or snap_id is not None:
        if run_id != snap_id:
            raise ValueError(f"{where}: run {snap_id or '(none recorded)'} there, run {run_id or '(none recorded)'} "
                             f"in the checkpoint{fix}")
    if snapshots.get("config") != checkpoint.get("config"):
        raise ValueError(f"{where}: another model configuration{fix}")
    step = (checkpoint.get("train_state") or {}).get("step")
    steps = list(snapshots.get("steps", []))
    if step is None:
        raise ValueError(f"{checkpoint_path} holds no training state: pass the checkpoint scripts/train_translator.py wrote")
    if any(s > step for s in steps):
        raise ValueError(f"{where}: snapshots of steps {[s for s in steps if s > step]}, after the checkpoint's step {step}{fix}")
    if run_id is None and snap_id is None:
        last = snapshots["snapshots"][-1] if steps else {}
        model = checkpoint["model"]
        if not steps or steps[-1] != step or last.keys() != model.keys() or not all(
                torch.equal(last[k], model[k]) for k in model):
            raise ValueError(f"{where}: neither records a run identity and the last snapshot (step "
                             f"{steps[-1] if steps else None}) is not the checkpoint's weights (step {step}){fix}")


def check_resumable(saved: dict, checkpoint: Path, script: str) -> dict | None:
    """The run record (``{"id", "script", "settings", ...}``) of a training checkpoint that ``script``
    wrote (``None`` for one that records none).

    Raises:
        ValueError: a checkpoint without a training state (weights alone, such as a chosen
            ``*.best.pt``), or one another script wrote, naming it.
    """
    if saved.get("train_state") is None:
        raise ValueError(f"--resume: {checkpoint} holds weights but no training state (it was not written by a "
                         "training run); pass the --checkpoint the run wrote")
    run = saved.get("run")
    if run is not None and run.get("script", script) != script:
        raise ValueError(f"--resume: {checkpoint} was written by scripts/{run['script']}.py, not scripts/{script}.py")
    return run


def check_resume_settings(stored: dict | None, settings: dict, fixed: tuple[str, ...],
                          checkpoint: Path) -> list[str] | None:
    """Compare the settings a checkpoint recorded (``stored``) with this run's: raise for a changed one
    of ``fixed``, the settings a continuation must share with the run it continues (naming the flag,
    the stored value and the new one); return the names of the other settings that changed (what the
    report records), or ``None`` when the checkpoint recorded no settings to compare with.

    Raises:
        ValueError: naming every changed flag of ``fixed``.
    """
    if stored is None:
        return None
    flag = lambda k: "--" + k.replace("_", "-")  # noqa: E731
    changed = [k for k in fixed if k in stored and stored[k] != settings.get(k)]
    if changed:
        raise ValueError(f"--resume: the run in {checkpoint} was trained with "
                         + ", ".join(f"{flag(k)} {stored[k]!r} (now {settings.get(k)!r})" for k in changed)
                         + "; resume with the same settings, or start a new run (another --checkpoint, or --force)")
    return sorted(k for k in set(stored) | set(settings)
                  if k not in (*fixed, "resume") and stored.get(k) != settings.get(k))


def refuse_overwrite(path: Path, force: bool, what: str = "report", flag: str = "--out") -> None:
    """Stop before any work when ``path`` already exists and ``force`` is false.

    Raises:
        FileExistsError: naming the path and the two ways on: ``--force`` or another ``flag``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"the {what} {path} already exists (a committed result or an earlier run); "
                              f"pass --force to replace it, or {flag} to write elsewhere")


def report(recipe: str, stage: str, command: str, settings: dict, metrics: dict, *,
           translations: list[dict] | None = None, details: dict | None = None,
           environment: dict | None = None) -> dict:
    """One report in the one schema (the keys of :data:`REPORT_KEYS`, in that order).

    ``metrics`` must be a flat mapping of names to numbers (or ``None`` where not measured); each of
    ``translations`` is ``{"file", "split", "lowercase", "metric"}`` with ``metric`` a key of ``metrics``.

    Raises:
        ValueError: for a metric that is not a number, or a translation whose metric is missing.
    """
    for key, value in metrics.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"metric {key!r} must be a number, got {value!r}: put tables under details")
    for t in translations or []:
        if set(t) != {"file", "split", "lowercase", "metric"} or t["metric"] not in metrics:
            raise ValueError(f"a translation entry needs file, split, lowercase and a metric of the report; got {t}")
    return {"recipe": recipe, "stage": stage, "command": command, "settings": settings, "metrics": metrics,
            "translations": translations or [], "details": details or {}, "environment": environment or {}}


def write_report(path: Path, data: dict) -> Path:
    """Write a :func:`report` as strict JSON (NaN refused), indented, with a final newline."""
    if tuple(data) != REPORT_KEYS:
        raise ValueError(f"a report has the keys {REPORT_KEYS}, got {tuple(data)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return path


def shown(path: Path) -> str:
    """A path as a command line in the docs writes it: relative to the checkout when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
