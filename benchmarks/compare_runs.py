"""Compare training runs on the validation set at the same step, from the weight snapshots they kept.

    python benchmarks/compare_runs.py --step 1950 \\
        --run "paper schedule=checkpoints/bleu40.pt" --run "cool-down 390=checkpoints/cooldown.pt"

Each ``--run NAME=CHECKPOINT`` names a ``benchmarks/train_multi30k.py`` checkpoint whose run kept
snapshots (``--average N``, in ``<checkpoint>.snapshots.pt``); the snapshot taken at ``--step`` is
measured on Multi30k's validation split (1,014 pairs; the test split is never read): the loss
(``utils.train.evaluate``), greedy BLEU, and beam-search BLEU for every alpha in ``--alphas`` (one
search: the length penalty only ranks finished translations). Two runs that differ in one setting and
are compared at the same step measure what that setting is worth, and the choice is made on
validation. Writes ``--out`` (default ``benchmarks/results/compare_runs.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import sacrebleu
import torch

from utils.batching import TokenBatches
from utils.checkpoint import check_writable, load_checkpoint
from utils.common import REPO_ROOT as ROOT, cpu_model, use_shared_data
from utils.data import load_multi30k
from utils.decode import translate
from utils.model import make_model
from utils.tokenize import tokenizer_from_dict
from utils.train import evaluate

use_shared_data()  # ATTN_DATA_DIR defaults to ../shared/data beside the checkout, as tests/conftest.py does


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=CHECKPOINT",
                   help="a run to compare (give two or more)")
    p.add_argument("--step", type=int, required=True, help="the snapshot step every run is measured at")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.6, 1.0, 1.5, 1.8, 2.1])
    p.add_argument("--limit", type=int, default=None, help="the first N validation pairs (smoke runs)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compare_runs.json")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--run wants NAME=CHECKPOINT, got {spec!r}")
        if not Path(path).with_suffix(".snapshots.pt").is_file():
            p.error(f"--run {spec!r}: no snapshots at {Path(path).with_suffix('.snapshots.pt')} "
                    "(train with train_multi30k.py --average N)")
        runs[name] = Path(path)
    if len(runs) < 2:
        p.error("--run: give two or more runs to compare")
    if args.beam < 2 or args.step < 1 or any(a < 0 for a in args.alphas):
        p.error("--beam must be ≥ 2, --step ≥ 1 and every --alphas value ≥ 0")
    args.runs = runs
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    check_writable(args.out, "--out")
    valid = load_multi30k()["validation"]
    src, ref = list(valid["de"]), list(valid["en"])
    if args.limit is not None:
        src, ref = src[: args.limit], ref[: args.limit]
    rows = {}
    for name, path in args.runs.items():
        saved = load_checkpoint(path)
        snaps = load_checkpoint(path.with_suffix(".snapshots.pt"))
        if args.step not in snaps["steps"]:
            raise SystemExit(f"{name}: no snapshot at step {args.step}; it kept {snaps['steps']}")
        tok = tokenizer_from_dict(saved["tokenizer"])
        model = make_model(**saved["config"]).eval()
        model.load_state_dict(snaps["snapshots"][snaps["steps"].index(args.step)])
        loss = evaluate(model, TokenBatches(tok.encode_batch(src, add_special=True), tok.encode_batch(ref, add_special=True),
                                            max_tokens=4000, shuffle=False))["loss"]
        greedy = sacrebleu.corpus_bleu(translate(model, src, tok), [ref]).score
        beams = translate(model, src, tok, beam_size=args.beam, length_penalty_alpha=list(args.alphas))
        rows[name] = {"checkpoint": str(path), "step": args.step, "valid_loss": round(loss, 4),
                      "valid_greedy_bleu": round(greedy, 2),
                      f"valid_beam{args.beam}_bleu": {f"{a:g}": round(sacrebleu.corpus_bleu(h, [ref]).score, 2)
                                                      for a, h in zip(args.alphas, beams)}}
        print(f"{name}: {rows[name]}", flush=True)
    report = {"command": " ".join(["python", "benchmarks/compare_runs.py", *(sys.argv[1:] if argv is None else argv)]),
              "validation_pairs": len(src), "runs": rows, "cpu": cpu_model(), "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
