"""Train a character-level GPT on tiny Shakespeare for a fixed wall-clock budget; report validation loss.

    python scripts/train_gpt.py gpt_shakespeare            # the 5-minute figure (recipes/gpt_shakespeare.py)
    python scripts/train_gpt.py gpt_shakespeare --minutes 1 --out /tmp/trial --checkpoint /tmp/trial.pt   # a smoke run
    python scripts/train_gpt.py gpt_shakespeare --steps 2000 --resume --force   # continue an interrupted run

The split: the first 90 % of ``input.txt`` trains, the last 10 % validates (``utils.data``'s
``validation`` and ``test`` slices joined). One token per character (``utils.tokenize.CharTokenizer``
fitted on the training text). The recipe (the flags' defaults): ``utils.bonus.gpt.make_gpt`` with d_model 128, 4 pre-LN
blocks of 4 heads, d_ff 512, context 128, no dropout (about 0.8M parameters); random windows, batches
of 16 (at this budget more, smaller steps beat fewer, larger ones); AdamW (β 0.9, 0.99; weight decay
0.1 on matrices), learning rate 3e-3 with 100 warm-up steps and a cosine to 3e-4 that follows the
elapsed fraction of the time budget; gradient clipping at 1
(``utils.train.train``, the loop the translator uses, with ``utils.bonus.gpt.RandomWindows``,
``next_token_loss``, ``gpt_optimizer`` and ``utils.schedules.WarmupCosine``). At the end the validation loss is measured on ALL validation characters
(``utils.bonus.gpt.evaluate_loss``, not counted in the budget).

Threads: PyTorch's default (one per core) is fastest on an idle machine. On a machine shared with
other jobs pass ``--threads 1`` (or set ``OMP_WAIT_POLICY=PASSIVE``): threads that spin while waiting
for a busy core made our steps up to six times slower.

Checkpoints: ``--checkpoint`` (default ``checkpoints/<recipe>.pt``, git-ignored) is written every
``--checkpoint-every`` steps, at the end, and when the run stops with an error or Ctrl-C; ``--resume``
continues it, and refuses a changed setting (``FIXED_ON_RESUME``, ``--steps`` and ``--minutes``
included: they set where the cosine ends), naming the flag; the run's identity and settings are
stored in every checkpoint, and a changed thread count is recorded in the report. With ``--steps`` (a fixed number of steps instead of a time budget) an interrupted and
resumed run equals the uninterrupted one bit for bit (``tests/test_scripts.py``); with ``--minutes``
the schedule follows the clock, so no two runs are equal anyway. Every output path is checked before
the first step.

Writes ``train.json`` under ``--out`` (default ``results/<recipe>/`` of this checkout), in the report
schema of ``recipes/__init__.py``: validation loss (nats per character) and bits per character,
training wall time, steps, characters seen, parameters, configuration, device, threads, CPU and
torch version. A report or checkpoint already there is never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from utils.checkpoint import check_writable, check_writable_dir, load_checkpoint
from utils.data import load_tiny_shakespeare
from utils.bonus.gpt import RandomWindows, evaluate_loss, gpt_optimizer, make_gpt, next_token_loss
from utils.model import count_parameters
from utils.runtime import cpu_model, get_device, set_seed
from utils.schedules import WarmupCosine
from utils.tokenize import UNK_ID, CharTokenizer
from utils.train import resume, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/, never another's
import recipes  # noqa: E402

#: What a resumed run must share with the run it continues: a change would make it another run
#: (``--steps`` and ``--minutes`` set where the cosine ends).
FIXED_ON_RESUME = ("seed", "d_model", "layers", "heads", "d_ff", "context", "dropout", "batch", "lr", "min_lr",
                   "warmup", "weight_decay", "clip_norm", "steps", "minutes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=None, help="training wall-clock budget (default 5 unless --steps)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (repeatable bit for bit; replaces the recipe's --minutes)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: a GPU when present")
    p.add_argument("--out", type=Path, default=None, help="folder for the report (default results/<recipe>/)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default checkpoints/<recipe>.pt")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("model")
    g.add_argument("--d-model", type=int, default=128)
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--d-ff", type=int, default=None, help="default 4 * d_model")
    g.add_argument("--context", type=int, default=128)
    g.add_argument("--dropout", type=float, default=0.0)
    g = p.add_argument_group("recipe")
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--min-lr", type=float, default=None, help="end of the cosine (default lr / 10)")
    g.add_argument("--warmup", type=int, default=100)
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--clip-norm", type=float, default=1.0)
    args = recipes.parse_args(p, argv, "train_gpt")
    args.out = recipes.results_dir(args.recipe) if args.out is None else args.out
    args.checkpoint = recipes.checkpoint_path(args.recipe) if args.checkpoint is None else args.checkpoint
    given = sys.argv[1:] if argv is None else argv
    if args.steps is not None and not any(a.startswith("--minutes") for a in given):
        args.minutes = None                          # --steps replaces the recipe's time budget: repeatable runs
    if args.minutes is None and args.steps is None:
        args.minutes = 5.0
    check_args(p, args)
    if args.min_lr is None:
        args.min_lr = args.lr / 10
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values that would train nonsense (a batch of 0 trains on NaN) before any work."""
    def positive(name: str, value, zero_ok: bool = False) -> None:
        if value is not None and not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
            p.error(f"--{name.replace('_', '-')} must be {'>= 0' if zero_ok else 'positive'}, got {value}")

    for name in ("minutes", "lr", "clip_norm"):
        positive(name, getattr(args, name))
    for name in ("steps", "threads", "d_model", "layers", "heads", "d_ff", "context", "batch", "checkpoint_every"):
        positive(name, getattr(args, name))
    for name in ("min_lr", "warmup", "weight_decay"):
        positive(name, getattr(args, name), zero_ok=True)
    if not 0.0 <= args.dropout < 1.0:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.d_model % args.heads:
        p.error(f"--heads {args.heads} does not divide --d-model {args.d_model}")
    if args.min_lr is not None and args.min_lr > args.lr:
        p.error(f"--min-lr {args.min_lr} is above --lr {args.lr}")
    if args.resume and not args.checkpoint.is_file():
        p.error(f"--resume: no checkpoint at {args.checkpoint.resolve()}")
    problem = recipes.checkpoint_name_error(args.checkpoint)
    if problem:
        p.error(f"--checkpoint {problem}")


def settings_of(args: argparse.Namespace) -> dict:
    """Every setting the run used, as plain data (paths as the docs write them)."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                if k not in ("recipe", "force", "recipe_settings", "no_progress")}
    settings.update(out=recipes.shown(args.out), checkpoint=recipes.shown(args.checkpoint))
    return settings


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with recipes.run_lock(args.checkpoint):                  # one run a checkpoint
        return train_and_report(args, argv)


def train_and_report(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """The run: check the outputs, train (or resume), measure the validation loss, write the report."""
    recipes.refuse_overwrite(args.out / "train.json", args.force)
    check_writable_dir(args.out, "--out folder")                # fail now, not after the training
    check_writable(args.checkpoint, "--checkpoint")
    if not args.resume:
        recipes.prepare_new_run(args.checkpoint, args.force)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = settings_of(args)
    run = {"id": recipes.new_run_id(), "script": "train_gpt", "settings": settings, "threads": torch.get_num_threads()}
    changed = None
    if args.resume:                                             # the same run, or a refusal naming the flag
        stored = recipes.check_resumable(load_checkpoint(args.checkpoint), args.checkpoint, "train_gpt")
        changed = recipes.check_resume_settings(stored and stored["settings"], settings, FIXED_ON_RESUME,
                                                args.checkpoint)
        if stored is not None:
            if stored.get("threads") != run["threads"]:
                changed.append(f"threads {stored.get('threads')} -> {run['threads']}")
                print(f"note: resumed on {run['threads']} threads, trained on {stored.get('threads')}: sums run in "
                      "another order, so the weights are not bit for bit those of an uninterrupted run")
            run = {**stored, "threads": run["threads"]}
    set_seed(args.seed)
    device = get_device(args.device, name="--device")
    ds = load_tiny_shakespeare()
    train_text = ds["train"]["text"][0]
    valid_text = ds["validation"]["text"][0] + ds["test"]["text"][0]          # the last 10 %
    tok = CharTokenizer.fit([train_text])
    train_ids = torch.tensor(tok.encode(train_text))
    valid_ids = torch.tensor(tok.encode(valid_text))
    if bool((valid_ids == UNK_ID).any()):
        raise RuntimeError("the validation text holds characters never seen in training")

    model = make_gpt(tok.vocab_size, context=args.context, n_layers=args.layers, d_model=args.d_model,
                     n_heads=args.heads, d_ff=args.d_ff, dropout=args.dropout).to(device)
    params = count_parameters(model)
    budget = f"{args.minutes:g} min budget" if args.steps is None else f"{args.steps} steps"
    print(f"{params:,} parameters; {len(train_ids):,} training and {len(valid_ids):,} validation characters; "
          f"vocab {tok.vocab_size}; {device} with {torch.get_num_threads()} threads; {budget}")

    optimizer = gpt_optimizer(model, args.lr, args.weight_decay)
    scheduler = WarmupCosine(optimizer, args.lr, args.warmup, args.min_lr, total_steps=args.steps,
                             total_seconds=None if args.minutes is None else args.minutes * 60)
    state = resume(args.checkpoint, model, optimizer, scheduler) if args.resume else None
    done_minutes = state.seconds / 60 if state is not None else 0.0          # a time budget counts the whole run
    t0 = time.perf_counter()
    state = train(model, RandomWindows(train_ids, args.batch, args.context, seed=args.seed), optimizer, scheduler,
                  loss_fn=next_token_loss, state=state, max_steps=args.steps,
                  max_minutes=None if args.minutes is None else max(args.minutes - done_minutes, 0.0),
                  clip_norm=args.clip_norm, device=device, checkpoint_path=args.checkpoint,
                  checkpoint_every=args.checkpoint_every, tokenizer=tok, progress=not args.no_progress,
                  checkpoint_extra={"run": run})
    losses = [h["loss"] for h in state.history]
    wall_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    val_loss = evaluate_loss(model, valid_ids.to(device))
    eval_s = time.perf_counter() - t1

    steps = len(losses)
    metrics = {
        "val_loss": round(val_loss, 4), "val_bits_per_char": round(val_loss / math.log(2), 4),
        "train_loss_last_100_steps": round(sum(losses[-100:]) / len(losses[-100:]), 4),
        "train_seconds": round(wall_s, 1), "eval_seconds": round(eval_s, 1),
        "steps": steps, "chars_seen": steps * args.batch * args.context, "parameters": params,
    }
    report = recipes.report(
        args.recipe, "train", " ".join(["python", "scripts/train_gpt.py", *(sys.argv[1:] if argv is None else argv)]),
        settings, metrics,
        details={"model": dict(model.config),
                 "run": {"id": run["id"], "resumed": args.resume, "changed_on_resume": changed},
                 "split": "first 90 % of input.txt trains, last 10 % validates (all of it evaluated)"},
        environment={"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__})
    recipes.write_report(args.out / "train.json", report)
    print(f"{steps} steps in {wall_s / 60:.2f} min; validation loss {val_loss:.4f} nats/char "
          f"({metrics['val_bits_per_char']:.3f} bits/char), evaluated in {eval_s:.1f} s; "
          f"wrote {args.out / 'train.json'}")
    return report


if __name__ == "__main__":
    main()
