"""Compare training runs on the validation set at the same step, from the weight snapshots they kept.

    python scripts/compare_runs.py multi30k_cooldown_1950        # against its recipe's compare_with, at compare_step
    python scripts/compare_runs.py multi30k_cooldown_1950 --step 1950 --run "a=/tmp/a.pt" --run "b=/tmp/b.pt" --out /tmp/c

The runs are the recipe's ``compare_with`` recipes and the recipe itself (their checkpoints
``checkpoints/<recipe>.pt``), or the ``--run NAME=CHECKPOINT`` given; each run must have kept
snapshots (``train_translator.py --average N``, in ``<checkpoint stem>.snapshots.pt``), and they must
be its own (the run identity both files record), checked before any work. The snapshot
taken at ``--step`` (the recipe's ``compare_step``) is measured on Multi30k's validation split (1,014
pairs; the test split is never read): the loss (``utils.train.evaluate``), greedy BLEU, and
beam-search BLEU for every alpha in ``--alphas`` (one search: the length penalty only ranks finished
translations). Two runs that differ in one setting and are compared at the same step measure what
that setting is worth, and the choice is made on validation. Writes ``compare.json`` under ``--out``
(default ``results/<recipe>/`` of this checkout; an existing report is replaced only with ``--force``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import sacrebleu
import torch

from utils.batching import TokenBatches
from utils.checkpoint import check_writable, load_checkpoint
from utils.data import load_multi30k
from utils.decode import translate
from utils.model import make_model
from utils.runtime import cpu_model
from utils.tokenize import tokenizer_from_dict
from utils.train import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/, never another's
import recipes  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="append", default=None, metavar="NAME=CHECKPOINT",
                   help="a run to compare instead of the recipe's (give two or more)")
    p.add_argument("--compare-with", nargs="+", default=None, metavar="RECIPE",
                   help="the recipes whose runs the recipe's run is compared with")
    p.add_argument("--step", "--compare-step", dest="compare_step", type=int, default=None,
                   help="the snapshot step every run is measured at")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.6, 1.0, 1.5, 1.8, 2.1])
    p.add_argument("--limit", type=int, default=None, help="the first N validation pairs (smoke runs)")
    p.add_argument("--out", type=Path, default=None, help="folder for compare.json (default results/<recipe>/)")
    args = recipes.parse_args(p, argv, "compare_runs", others=("train_translator",))
    args.out = recipes.results_dir(args.recipe) if args.out is None else args.out
    args.step = args.compare_step
    if args.step is None:
        p.error(f"recipe {args.recipe!r} sets no compare_step: pass --step")
    if args.run is None:
        names = [*(args.compare_with or []), args.recipe]
        specs = [f"{name}={recipes.checkpoint_path(name)}" for name in names]
    else:
        specs = args.run
    runs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--run wants NAME=CHECKPOINT, got {spec!r}")
        snapshots = recipes.snapshots_path(Path(path))
        if not snapshots.is_file():
            p.error(f"run {spec!r}: no snapshots at {snapshots} (train with train_translator.py --average N)")
        runs[name] = Path(path)
    if len(runs) < 2:
        p.error("--run: give two or more runs to compare (or a recipe with compare_with)")
    if args.beam < 2 or args.step < 1 or not all(math.isfinite(a) and a >= 0 for a in args.alphas):
        p.error(f"--beam must be ≥ 2, --step ≥ 1 and every --alphas value a number ≥ 0; got --beam {args.beam}, "
                f"--step {args.step}, --alphas {args.alphas}")
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be ≥ 1, got {args.limit}")
    args.runs = runs
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipes.refuse_overwrite(args.out / "compare.json", args.force)
    check_writable(args.out / "compare.json", "--out")
    for name, path in args.runs.items():                     # every snapshot file is its run's, before any work
        snaps = load_checkpoint(recipes.snapshots_path(path))
        try:
            recipes.check_snapshots(load_checkpoint(path), snaps, path, recipes.snapshots_path(path))
        except ValueError as err:
            raise SystemExit(f"run {name}: {err}") from None
        if args.step not in snaps["steps"]:
            raise SystemExit(f"{name}: no snapshot at step {args.step}; it kept {snaps['steps']}")
        del snaps
    valid = load_multi30k()["validation"]
    src, ref = list(valid["de"]), list(valid["en"])
    if args.limit is not None:
        src, ref = src[: args.limit], ref[: args.limit]
    rows = {}
    for name, path in args.runs.items():
        saved = load_checkpoint(path)
        snaps = load_checkpoint(recipes.snapshots_path(path))
        if args.step not in snaps["steps"]:
            raise SystemExit(f"{name}: no snapshot at step {args.step}; it kept {snaps['steps']}")
        tok = tokenizer_from_dict(saved["tokenizer"])
        model = make_model(**saved["config"]).eval()
        model.load_state_dict(snaps["snapshots"][snaps["steps"].index(args.step)])
        loss = evaluate(model, TokenBatches(tok.encode_batch(src, add_special=True), tok.encode_batch(ref, add_special=True),
                                            max_tokens=4000, shuffle=False))["loss"]
        greedy = sacrebleu.corpus_bleu(translate(model, src, tok), [ref]).score
        beams = translate(model, src, tok, beam_size=args.beam, length_penalty_alpha=list(args.alphas))
        rows[name] = {"checkpoint": recipes.shown(path), "step": args.step, "valid_loss": round(loss, 4),
                      "valid_greedy_bleu": round(greedy, 2),
                      f"valid_beam{args.beam}_bleu": {f"{a:g}": round(sacrebleu.corpus_bleu(h, [ref]).score, 2)
                                                      for a, h in zip(args.alphas, beams)}}
        print(f"{name}: {rows[name]}", flush=True)
    metrics = {"validation_pairs": len(src), "step": args.step}
    for name, row in rows.items():
        metrics.update({f"{name}_valid_loss": row["valid_loss"], f"{name}_valid_greedy_bleu": row["valid_greedy_bleu"]})
        metrics.update({f"{name}_valid_beam{args.beam}_bleu_alpha{a}": v
                        for a, v in row[f"valid_beam{args.beam}_bleu"].items()})
    settings = {"runs": {name: recipes.shown(path) for name, path in args.runs.items()}, "step": args.step,
                "beam": args.beam, "alphas": args.alphas, "limit": args.limit, "out": recipes.shown(args.out)}
    report = recipes.report(args.recipe, "compare",
                            " ".join(["python", "scripts/compare_runs.py", *(sys.argv[1:] if argv is None else argv)]),
                            settings, metrics, details={"runs": rows},
                            environment={"cpu": cpu_model(), "torch": torch.__version__})
    recipes.write_report(args.out / "compare.json", report)
    return report


if __name__ == "__main__":
    main()
