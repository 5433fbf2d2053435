"""Train a German→English translator on Multi30k by a named recipe; measure it on the 2016 Flickr test set.

    python scripts/train_translator.py multi30k_30min          # the 30-minute CPU figure (recipes/multi30k_30min.py)
    python scripts/train_translator.py multi30k_2h             # the 2-hour recipe; then scripts/choose.py multi30k_2h
    python scripts/train_translator.py multi30k_30min --steps 30 --limit 200 --out /tmp/trial \
        --checkpoint /tmp/trial.pt                              # a smoke run: flags override the recipe
    torchrun --nproc_per_node=2 scripts/train_translator.py multi30k_30min --out /tmp/ddp --checkpoint /tmp/ddp.pt

The base recipe (the flags' defaults; a file in ``recipes/`` changes some of them): a joint BPE
vocabulary of 8000 trained on the training split's German and English, pre-LN Transformer with
d_model 256, 3 + 3 layers, 4 heads, d_ff 512, dropout 0.1, shared embeddings
(``utils.model.make_model``); label smoothing 0.1; batches of about 4000 tokens by length
(``utils.batching.TokenBatches``); Adam (0.9, 0.98, 1e-9) with the paper's warm-up schedule, 400
warm-up steps; ``--cooldown N`` (with ``--steps``) takes the learning rate linearly to 0 over the last
N steps, so a run of known length ends annealed (the schedule's numbers are saved with the
checkpoint: a resumed run keeps the length and cool-down it started with). Validation loss every
epoch; at the end the test set is translated greedily (``utils.decode.translate``) and scored with
sacreBLEU (13a, cased; our own ``utils.bleu.corpus_bleu`` must agree).

Writes ``checkpoints/<recipe>.pt`` (git-ignored; ``--resume`` continues from it; also written when the
run stops with an error or Ctrl-C) and, under ``--out`` (default ``results/<recipe>/`` of this
checkout), ``train.json`` (the report, in the schema of ``recipes/__init__.py``) and
``train.test.hyp.en`` (one translation a line; with ``--beam``, also ``train.test.beam.hyp.en``).
A report or checkpoint already there is never replaced without ``--force``: the script stops
before any work and says so (continuing a run that finished and wrote its report needs it too;
an interrupted run has written none). Check the BLEU from the committed file with::

    sacrebleu $ATTN_DATA_DIR/multi30k/test_2016_flickr.en -i results/multi30k_30min/train.test.hyp.en

**Resuming is exact** in one process: an interrupted run continued with ``--resume`` ends with the same
weights, bit for bit, as the uninterrupted one, with or without ``--average`` (whose snapshots are
kept in ``<checkpoint stem>.snapshots.pt``); ``tests/test_scripts.py`` proves it on a tiny run
(``--limit`` uses the first N sentence pairs of each split). A recipe with ``start_from`` (the 75-minute
run) begins from a copy of that recipe's checkpoint, which stays as it was. Every output path is
checked before the first step.

**A run is one run.** Each new run draws a random identity and records it, with its settings, in
every checkpoint it writes and in its snapshot file; a snapshot file of another run is refused.
``--resume`` refuses a setting that would make the continuation another run (``FIXED_ON_RESUME``:
``--seed``, ``--limit``, ``--vocab``, the model, ``--max-tokens``, ``--warmup``, ``--lr-scale``,
``--smoothing``, the averaging; ``--steps`` of a run that cools down), naming the flag; what may
change (``--steps`` otherwise, ``--minutes``, the thread count) is recorded under ``details.run`` of
the report. A new run on a ``--checkpoint`` that is there (or that left snapshots or an average
beside it) stops unless ``--force``, which removes them; while a run writes its checkpoint it holds
``<stem>.lock``, so a second run on the same checkpoint stops at once. A sentence longer than the positional
table (``--max-len``) stops the run before training, saying what to raise. Under ``torchrun`` each process re-seeds its dropout stream from
(seed, rank, step) after a resume, so there a resumed run is a valid continuation but not the same numbers.

Under ``torchrun`` every process reads its own shard of each epoch's batches; gradients are averaged
by DistributedDataParallel (gloo on CPUs, NCCL on GPUs); on a GPU the forward pass runs in bf16.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import shutil
import sys
import time
from pathlib import Path

import sacrebleu
import torch
import torch.distributed as dist

from utils import checks
from utils.batching import TokenBatches
from utils.bleu import corpus_bleu
from utils.checkpoint import check_writable, check_writable_dir, load_checkpoint, save_checkpoint
from utils.data import load_multi30k
from utils.decode import translate
from utils.model import check_translator, count_parameters, make_model
from utils.runtime import cpu_model, get_device, set_seed
from utils.schedules import warmup_schedule
from utils.tokenize import BPETokenizer, tokenizer_from_dict
from utils.train import evaluate, make_optimizer, resume, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/, never another's
import recipes  # noqa: E402

#: Settings of a translator recipe that the scripts run after training read (choose.py, compare_runs.py).
LATER_SETTINGS = ("choose_among", "alphas", "beams", "average_choices", "compare_with", "compare_step")

#: What a resumed run must share with the run it continues (``--steps`` too when the run cools down):
#: anything else would make the continuation another run than its report says.
FIXED_ON_RESUME = ("seed", "limit", "vocab", "d_model", "layers", "heads", "d_ff", "dropout", "post_ln", "max_len",
                   "max_tokens", "warmup", "lr_scale", "cooldown", "smoothing", "clip_norm", "average", "average_every")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=None, help="training time limit (default 30 unless --steps)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: a GPU when present")
    p.add_argument("--out", type=Path, default=None, help="folder for the report (default results/<recipe>/)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default checkpoints/<recipe>.pt")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--start-from", default=None, metavar="RECIPE",
                   help="begin from a copy of that recipe's checkpoint (and snapshots), which is left as it was")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N sentence pairs of each split (smoke runs and tests)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: PyTorch's choice)")
    g = p.add_argument_group("model")
    g.add_argument("--vocab", type=int, default=8000, help="joint BPE vocabulary size")
    g.add_argument("--d-model", type=int, default=256)
    g.add_argument("--layers", type=int, default=3, help="encoder layers = decoder layers")
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--d-ff", type=int, default=512)
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--post-ln", action="store_true", help="the paper's post-LN layers (default pre-LN)")
    g.add_argument("--max-len", type=int, default=512,
                   help="the longest sentence, in tokens, that the positional table covers")
    g = p.add_argument_group("recipe")
    g.add_argument("--max-tokens", type=int, default=4000, help="token budget of a batch (per process)")
    g.add_argument("--warmup", type=int, default=400)
    g.add_argument("--lr-scale", type=float, default=1.0, help="multiplies the paper's learning rate")
    g.add_argument("--cooldown", type=int, default=0,
                   help="the last N of --steps steps take the learning rate linearly to 0 (default 0: the paper's)")
    g.add_argument("--smoothing", type=float, default=0.1)
    g.add_argument("--clip-norm", type=float, default=None)
    g.add_argument("--checkpoint-every", type=int, default=500)
    g.add_argument("--average", type=int, default=0,
                   help="translate with the mean of the weights at the last N points --average-every steps apart")
    g.add_argument("--average-every", type=int, default=100)
    g.add_argument("--beam", type=int, default=0,
                   help="also translate with beam search of this size (length penalty --alpha); greedy is always reported")
    g.add_argument("--alpha", type=float, default=0.6, help="length penalty of the beam search (the paper: 0.6)")
    g.add_argument("--no-progress", action="store_true")
    args = recipes.parse_args(p, argv, "train_translator", ignore=LATER_SETTINGS)
    args.out = recipes.results_dir(args.recipe) if args.out is None else args.out
    args.checkpoint = recipes.checkpoint_path(args.recipe) if args.checkpoint is None else args.checkpoint
    if args.minutes is None and args.steps is None:
        args.minutes = 30.0
    if args.start_from is not None and not args.checkpoint.is_file():
        source = recipes.checkpoint_path(args.start_from)
        if not source.is_file():
            p.error(f"--start-from {args.start_from}: no checkpoint at {source}; "
                    f"train it first: python scripts/train_translator.py {args.start_from}")
        args.resume, args.copy_from = True, source
    elif args.start_from is not None:
        args.resume = True                           # the copy was made by an earlier, interrupted run
    check_args(p, args)
    return args


def settings_of(args: argparse.Namespace) -> dict:
    """Every setting the run used, as plain data (paths as the docs write them)."""
    skip = {"recipe", "force", "recipe_settings", "copy_from", "no_progress"}
    return {k: recipes.shown(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in skip}


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values that would fail late or train nonsense, before any data is read."""
    def bad(name: str, value, rule: str) -> None:
        p.error(f"--{name.replace('_', '-')} must be {rule}, got {value}")

    for name in ("minutes", "lr_scale", "clip_norm"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            bad(name, v, "a positive number")
    for name in ("steps", "limit", "threads", "d_model", "layers", "heads", "d_ff", "max_tokens", "warmup",
                 "checkpoint_every", "average_every", "max_len"):
        v = getattr(args, name)
        if v is not None and v < 1:
            bad(name, v, "a positive int")
    for name in ("average", "beam"):
        if getattr(args, name) < 0:
            bad(name, getattr(args, name), "0 or more")
    if args.vocab <= 4:
        bad("vocab", args.vocab, "above the 4 special tokens")
    if not 0.0 <= args.dropout < 1.0:
        bad("dropout", args.dropout, "in [0, 1)")
    if not 0.0 <= args.smoothing <= 1.0:
        bad("smoothing", args.smoothing, "in [0, 1]")
    if not (math.isfinite(args.alpha) and args.alpha >= 0):
        bad("alpha", args.alpha, "a number >= 0")
    if args.d_model % args.heads:
        p.error(f"--heads {args.heads} does not divide --d-model {args.d_model}")
    problem = recipes.checkpoint_name_error(args.checkpoint)
    if problem:
        p.error(f"--checkpoint {problem}")
    if args.resume and not args.checkpoint.is_file() and getattr(args, "copy_from", None) is None:
        p.error(f"--resume: no checkpoint at {args.checkpoint.resolve()}; train without --resume first")
    if args.cooldown < 0:
        bad("cooldown", args.cooldown, "0 or more")
    if args.cooldown > 0 and (args.steps is None or args.cooldown > args.steps - args.warmup):
        p.error(f"--cooldown {args.cooldown} needs --steps (the run's length) and must fit after the warm-up: "
                f"at most --steps minus --warmup")


#: What a run writes under --out (none is replaced without --force).
OUTPUTS = {"train.json": "report", "train.test.hyp.en": "translation file", "train.test.beam.hyp.en": "translation file"}


def continued_run(args: argparse.Namespace, threads: int) -> tuple[dict, list[str] | None, dict | None]:
    """The run's record ``{"id", "settings", "threads"}`` (stored in every checkpoint it writes), the
    settings changed on ``--resume`` (``None``: the checkpoint recorded none to compare), and the loaded
    checkpoint when resuming.

    Raises:
        ValueError: ``--resume`` with a setting of :data:`FIXED_ON_RESUME` (or ``--steps`` of a run that
            cools down) other than the checkpoint's, naming the flag; snapshots that belong to another run; a
            checkpoint of another kind (a GPT's).
    """
    settings = settings_of(args)
    run = {"id": recipes.new_run_id(), "script": "train_translator", "settings": settings, "threads": threads}
    if not args.resume:
        return run, None, None
    saved = check_translator(load_checkpoint(args.checkpoint), args.checkpoint)      # not a GPT's
    stored = recipes.check_resumable(saved, args.checkpoint, "train_translator")
    cools = (stored or {}).get("settings", {}).get("cooldown", args.cooldown) > 0
    fixed = FIXED_ON_RESUME + (("steps",) if cools else ())
    changed = recipes.check_resume_settings(stored and stored["settings"], settings, fixed, args.checkpoint)
    if stored is not None:
        if stored.get("threads") != threads:
            changed.append(f"threads {stored.get('threads')} -> {threads}")
            print(f"note: resumed on {threads} threads, trained on {stored.get('threads')}: sums run in another "
                  "order, so the weights are not bit for bit those of an uninterrupted run")
        run = {**stored, "threads": threads}
    snapshot_path = recipes.snapshots_path(args.checkpoint)
    if args.average > 1 and snapshot_path.is_file():
        try:
            recipes.check_snapshots(saved, load_checkpoint(snapshot_path), args.checkpoint, snapshot_path)
        except ValueError as err:
            raise ValueError(f"--resume: {err}") from None
    return run, changed, saved


def check_lengths(max_len: int, splits: dict[str, tuple[list, list]]) -> None:
    """Stop before training when a sentence is longer than the positional table (``--max-len``):
    otherwise the run would train and then die at its first validation or translation.

    ``splits`` maps a split's name to its (source ids, target ids); a target feeds the decoder all
    but its last token.

    Raises:
        ValueError: how many sentences of which split are too long, the longest, and what to do.
    """
    over, longest = [], 0
    for name, (src, tgt) in splits.items():
        lengths = [len(s) for s in src] + [len(t) - 1 for t in tgt]
        n = sum(length > max_len for length in lengths)
        if n:
            over.append(f"{n} {name}")
            longest = max(longest, *lengths)
    if over:
        raise ValueError(f"{', '.join(over)} sentence(s) are longer than the positional table (--max-len {max_len}; "
                         f"the longest has {longest} tokens): raise --max-len to {longest} or more, or use a "
                         "larger --vocab (longer tokens, shorter sentences)")


def env_int(name: str, default: str | None = None, **bounds) -> int:
    """The environment variable ``name`` as an integer within ``bounds`` (``at_least``, ``below``); an error
    naming the variable and what it expects otherwise (or when it is unset and has no ``default``)."""
    raw = os.environ.get(name, default)
    if raw is None:
        raise ValueError(f"the environment variable {name} is not set; launch a distributed run with torchrun, "
                         "which sets WORLD_SIZE, RANK and LOCAL_RANK")
    try:
        value = int(raw.strip())
    except ValueError:
        value = raw                                              # refused below, by name
    return checks.integer(f"the environment variable {name}", value, **bounds, hint="torchrun sets it")


def setup_distributed(choice: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); under torchrun also joins the process group. Raises ValueError naming
    ``WORLD_SIZE``, ``RANK`` or ``LOCAL_RANK`` when one holds no integer in its range, before joining."""
    world_size = env_int("WORLD_SIZE", "1", at_least=1)
    device = get_device(choice, name="--device")
    if world_size == 1:
        return 0, 1, device
    rank, local_rank = env_int("RANK", at_least=0, below=world_size), env_int("LOCAL_RANK", "0", at_least=0)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def joint_tokenizer(train_split, vocab: int, rank: int, world_size: int):
    """Rank 0 trains the BPE on the training split's German and English; the others receive it."""
    payload = [None]
    if rank == 0:
        payload = [BPETokenizer.train(list(train_split["de"]) + list(train_split["en"]), vocab_size=vocab).to_dict()]
    if world_size > 1:
        dist.broadcast_object_list(payload, src=0)
    return tokenizer_from_dict(payload[0])


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    rank, world_size, device = setup_distributed(args.device)
    with recipes.run_lock(args.checkpoint) if rank == 0 else contextlib.nullcontext():   # one run a checkpoint
        return train_and_report(args, argv, rank, world_size, device)


def train_and_report(args: argparse.Namespace, argv: list[str] | None, rank: int, world_size: int,
                     device: torch.device) -> dict | None:
    """The run: check the outputs, train (or resume), translate the test set, write the report (rank 0)."""
    main_process = rank == 0
    if main_process:                                     # fail now, not after the training
        for name, what in OUTPUTS.items():
            recipes.refuse_overwrite(args.out / name, args.force, what)
        check_writable_dir(args.out, "--out folder")
        check_writable(args.checkpoint, "--checkpoint")
        if not args.resume:                              # neither an earlier checkpoint nor its snapshots
            recipes.prepare_new_run(args.checkpoint, args.force)
        if getattr(args, "copy_from", None) is not None:    # --start-from: our own copy, the source stays
            for source, target in ((args.copy_from, args.checkpoint),
                                   (recipes.snapshots_path(args.copy_from), recipes.snapshots_path(args.checkpoint))):
                if source.is_file():
                    shutil.copyfile(source, target)
    if world_size > 1:
        dist.barrier()                                   # the others read the checkpoint once it is there
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    run, changed, saved = continued_run(args, threads)       # refuses a changed setting before any work
    set_seed(args.seed)
    ds = load_multi30k(limit=args.limit)
    if args.resume:
        tok = tokenizer_from_dict(saved["tokenizer"])
        del saved                                        # the weights and optimiser state: resume() reads them
    else:
        tok = joint_tokenizer(ds["train"], args.vocab, rank, world_size)

    def encode(split: str) -> tuple[list[list[int]], list[list[int]]]:
        return tok.encode_batch(ds[split]["de"], add_special=True), tok.encode_batch(ds[split]["en"], add_special=True)

    train_ids, valid_ids = encode("train"), encode("validation")
    check_lengths(args.max_len, {"training": train_ids, "validation": valid_ids,
                                 "test": (tok.encode_batch(ds["test"]["de"], add_special=True), [])})
    train_data = TokenBatches(*train_ids, max_tokens=args.max_tokens, seed=args.seed, rank=rank, world_size=world_size)
    valid_data = TokenBatches(*valid_ids, max_tokens=args.max_tokens, shuffle=False)

    model = make_model(tok.vocab_size, tok.vocab_size, n_layers=args.layers, d_model=args.d_model,
                       n_heads=args.heads, d_ff=args.d_ff, dropout=args.dropout, norm_first=not args.post_ln,
                       share_embeddings=True, max_len=args.max_len).to(device)
    optimizer = make_optimizer(model)
    scheduler = warmup_schedule(optimizer, args.d_model, args.warmup, scale=args.lr_scale,
                                total=args.steps or 0, cooldown=args.cooldown)
    torch.manual_seed(args.seed * 1000 + rank)            # each process its own dropout stream
    state = resume(args.checkpoint, model, optimizer, scheduler) if args.resume else None
    # resume() restored the random state saved with the checkpoint: re-seeding here would make the
    # resumed run differ from the uninterrupted one. Under torchrun only rank 0's state was saved,
    # so every process takes a stream of its own from (seed, rank, step) instead.
    if state is not None and world_size > 1:
        torch.manual_seed((args.seed * 1000 + rank) * 1_000_003 + state.step)
    net = model if world_size == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    if main_process:
        print(f"{count_parameters(model):,} parameters; vocab {tok.vocab_size}; {len(train_data)} batches "
              f"an epoch per process; {world_size} process(es) on {device} ({threads} threads each)")

    t0 = time.perf_counter()
    tokens0 = state.tokens if state is not None else 0
    step0 = state.step if state is not None else 0
    common = dict(valid=valid_data, smoothing=args.smoothing, clip_norm=args.clip_norm, bf16=device.type == "cuda",
                  device=device, checkpoint_path=args.checkpoint, checkpoint_every=args.checkpoint_every,
                  tokenizer=tok, progress=not args.no_progress, checkpoint_extra={"run": run})
    if args.average <= 1:
        state = train(net, train_data, optimizer, scheduler, state=state, max_steps=args.steps,
                      max_minutes=args.minutes, **common)
        last_valid = state.valid[-1]
    else:  # train in chunks of --average-every steps; average the weights after the last --average chunks
        snapshots: collections.deque = collections.deque(maxlen=args.average)
        snapshot_steps: collections.deque = collections.deque(maxlen=args.average)
        snapshot_path = recipes.snapshots_path(args.checkpoint)
        if state is not None and snapshot_path.is_file():   # the snapshots taken before the interruption
            kept = load_checkpoint(snapshot_path)
            for step, snap in zip(kept["steps"], kept["snapshots"]):
                if step <= state.step:
                    snapshot_steps.append(step)
                    snapshots.append(snap)
        while True:
            left = None if args.minutes is None else max(0.0, args.minutes - (time.perf_counter() - t0) / 60)
            done = state.step if state is not None else 0
            goal = (done // args.average_every + 1) * args.average_every   # the same points after a resume
            goal = goal if args.steps is None else min(goal, args.steps)
            state = train(net, train_data, optimizer, scheduler, state=state, max_steps=goal, max_minutes=left,
                          **common)
            if not snapshot_steps or snapshot_steps[-1] != state.step:
                snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
                snapshot_steps.append(state.step)
                if main_process:
                    save_checkpoint(snapshot_path, {}, dict(model.config), steps=list(snapshot_steps),
                                    snapshots=list(snapshots), run_id=run["id"])
            if state.step < goal or (args.steps is not None and state.step >= args.steps):
                break                                    # out of time (every process stops at one step)
        last_valid = state.valid[-1]
        model.load_state_dict({k: torch.stack([s[k].float() for s in snapshots]).mean(0).to(v.dtype)
                               if v.is_floating_point() else v for k, v in snapshots[-1].items()})
        last_valid = {**evaluate(model, valid_data), "averaged": len(snapshots)}
        if main_process:
            model.save(recipes.companion_path(args.checkpoint, "avg"), tokenizer=tok.to_dict(), steps=state.step,
                       run_id=run["id"])
    train_seconds = time.perf_counter() - t0
    tokens = torch.tensor([state.tokens - tokens0], dtype=torch.float64, device=device)   # NCCL needs a GPU tensor
    if world_size > 1:
        dist.all_reduce(tokens)                          # target tokens of all processes
    report = None
    if main_process:
        t1 = time.perf_counter()
        hyps = translate(model, list(ds["test"]["de"]), tok, device=device)
        decode_seconds = time.perf_counter() - t1
        refs = list(ds["test"]["en"])
        bleu = sacrebleu.BLEU()
        score = bleu.corpus_score(hyps, [refs])
        ours = corpus_bleu(hyps, refs)
        assert abs(ours.score - score.score) < 1e-9, f"utils.bleu disagrees with sacrebleu: {ours} vs {score}"
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "train.test.hyp.en").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        last = last_valid
        metrics = {
            "parameters": count_parameters(model), "steps": state.step, "epochs": round(state.step / len(train_data), 2),
            "train_seconds": round(train_seconds, 1), "decode_seconds": round(decode_seconds, 1),
            "target_tokens_per_second": round(float(tokens) / train_seconds, 1),
            **{f"valid_{k}": round(v, 4) for k, v in last.items() if k in ("loss", "ppl", "acc")},
            **{f"valid_last_weights_{k}": round(v, 4) for k, v in state.valid[-1].items() if k in ("loss", "ppl", "acc")},
            "averaged_last": last.get("averaged", 1), "test_bleu": round(score.score, 2),
        }
        translations = [{"file": "train.test.hyp.en", "split": "test", "lowercase": False, "metric": "test_bleu"}]
        details = {"model": dict(model.config), "decoding": "greedy", "bleu_signature": str(bleu.get_signature()),
                   "bleu_detail": str(score),
                   "run": {"id": run["id"], "resumed_from_step": None if not args.resume else step0,
                           "changed_on_resume": changed}}
        if args.beam > 1:
            t1 = time.perf_counter()
            beam_hyps = translate(model, list(ds["test"]["de"]), tok, beam_size=args.beam,
                                  length_penalty_alpha=args.alpha, device=device)
            beam_score = sacrebleu.BLEU().corpus_score(beam_hyps, [refs])
            (args.out / "train.test.beam.hyp.en").write_text("\n".join(beam_hyps) + "\n", encoding="utf-8")
            metrics["test_bleu_beam"] = round(beam_score.score, 2)
            metrics["beam_decode_seconds"] = round(time.perf_counter() - t1, 1)
            translations.append({"file": "train.test.beam.hyp.en", "split": "test", "lowercase": False,
                                 "metric": "test_bleu_beam"})
            details["beam"] = {"size": args.beam, "alpha": args.alpha, "bleu_detail": str(beam_score)}
            print(f"beam {args.beam} (alpha {args.alpha}): test {beam_score}")
        launcher = f"torchrun --nproc_per_node={world_size}" if world_size > 1 else "python"
        report = recipes.report(
            args.recipe, "train", " ".join([launcher, "scripts/train_translator.py", *(sys.argv[1:] if argv is None else argv)]),
            settings_of(args), metrics, translations=translations, details=details,
            environment={"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                         "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads, "processes": world_size,
                         "torch": torch.__version__})
        recipes.write_report(args.out / "train.json", report)
        print(f"{state.step} steps in {train_seconds / 60:.1f} min ({metrics['target_tokens_per_second']:.0f} "
              f"target tokens/s); valid loss {last['loss']:.3f} (ppl {last['ppl']:.2f}); test {score} "
              f"[{bleu.get_signature()}]; wrote {args.out}")
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return report


if __name__ == "__main__":
    main()
