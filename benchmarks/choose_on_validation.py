"""Choose the averaging, the beam size and the length penalty on the validation set; decode the test set once.

    python benchmarks/train_multi30k.py --minutes 112 --dropout 0.3 --average 10 --average-every 150 \\
        --checkpoint checkpoints/bleu40.pt --out /tmp/bleu40          # 1. train (keeps its last 10 snapshots)
    python benchmarks/choose_on_validation.py --checkpoint checkpoints/bleu40.pt   # 2. choose, then test once
    python benchmarks/choose_on_validation.py --checkpoint checkpoints/a.pt checkpoints/b.pt   # or choose the run too

Every choice is made on Multi30k's validation split (1,014 pairs), in two stages:

1. **Averaging.** The mean of the last ``k`` weight snapshots that ``train_multi30k.py --average N`` kept
   (in ``<checkpoint>.snapshots.pt``), for each ``k`` in ``--average-choices`` (``k = 1``: the last
   weights alone), scored by greedy validation BLEU.
2. **Decoding.** Greedy and beam search with every beam size in ``--beams`` and length penalty in
   ``--alphas``, with the chosen weights, scored by validation BLEU. The search does not depend on
   the length penalty (it only ranks the finished translations), so each beam size is searched once
   and gives every alpha (``utils.decode.translate`` with a list of alphas).

The best of each stage wins (the first listed on a tie). Given several ``--checkpoint`` runs (trained
with different settings: a vocabulary size, say), both stages run for each, and the run whose best
setting scores highest on validation wins: the run, too, is chosen without the test split. Only then
is the test split (test_2016_flickr, 1,000 pairs) translated, once, with the chosen run and setting,
and scored with sacreBLEU (13a) cased and lowercased (the form older tutorials report). Greedy test
BLEU of the same weights is reported beside it; it chooses nothing.

Writes under ``--out`` (default ``benchmarks/results/best``): ``multi30k_test.hyp.en`` (the chosen
setting's translations, one a line), ``multi30k.json`` (the validation tables, the choice, the test
scores with the sacreBLEU signature, the times, every run's best validation setting, and the chosen
training run's own report when ``--train-report`` names them), and the chosen weights to ``--save``
(default ``checkpoints/multi30k.best.pt``, with the tokenizer and the chosen decoding), which notebook 06,
``benchmarks/showcase.py`` and ``benchmarks/decode_speed.py`` look for first. Check the test BLEU from
the committed file with::

    sacrebleu ../shared/data/multi30k/test_2016_flickr.en -i benchmarks/results/best/multi30k_test.hyp.en
    sacrebleu ../shared/data/multi30k/test_2016_flickr.en -i benchmarks/results/best/multi30k_test.hyp.en -lc
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import sacrebleu
import torch

from utils.common import REPO_ROOT as ROOT, cpu_model, set_seed, use_shared_data
from utils.checkpoint import check_writable, check_writable_dir, load_checkpoint
from utils.data import load_multi30k
from utils.decode import translate
from utils.model import count_parameters, make_model
from utils.tokenize import tokenizer_from_dict

use_shared_data()  # ATTN_DATA_DIR defaults to ../shared/data beside the checkout, as tests/conftest.py does


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, nargs="+", default=[ROOT / "checkpoints" / "multi30k.pt"],
                   help="the training run's checkpoint (its tokenizer; snapshots beside it); several: the run "
                        "too is chosen on validation")
    p.add_argument("--average-choices", type=int, nargs="+", default=[1, 5, 10],
                   help="how many of the last snapshots to average (each tried)")
    p.add_argument("--beams", type=int, nargs="+", default=[4, 5, 6], help="beam sizes tried (greedy always is)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 2.1, 2.5],
                   help="length penalties tried with every beam size (one search per beam size gives them all)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "best")
    p.add_argument("--save", type=Path, default=ROOT / "checkpoints" / "multi30k.best.pt")
    p.add_argument("--train-report", type=Path, nargs="+", default=None,
                   help="the multi30k.json each training run wrote, in --checkpoint's order (the chosen "
                        "run's is copied into the report)")
    p.add_argument("--limit", type=int, default=None, help="use the first N pairs of each split (smoke runs)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    for name in ("average_choices", "beams"):
        if any(v < 1 for v in getattr(args, name)):
            p.error(f"--{name.replace('_', '-')}: every value must be ≥ 1")
    if any(a < 0 for a in args.alphas):
        p.error("--alphas: every value must be ≥ 0")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be ≥ 1")
    if args.train_report is not None:
        if len(args.train_report) != len(args.checkpoint):
            p.error(f"--train-report: give one per --checkpoint ({len(args.checkpoint)}), in the same order; "
                    f"got {len(args.train_report)}")
        missing = [str(path) for path in args.train_report if not path.is_file()]
        if missing:
            p.error(f"--train-report: no file at {', '.join(missing)}")
    if len(set(args.checkpoint)) != len(args.checkpoint):
        p.error("--checkpoint: a run is listed twice")
    return args


def average(snapshots: list[dict], k: int) -> dict:
    """The mean of the last ``k`` state dicts (integer buffers from the last one)."""
    last = snapshots[-k:]
    return {name: torch.stack([s[name].float() for s in last]).mean(0).to(value.dtype)
            if value.is_floating_point() else value for name, value in last[-1].items()}


def choose_for_run(checkpoint: Path, args: argparse.Namespace, valid_src: list[str], valid_ref: list[str]) -> dict:
    """Stages 1 and 2 for one training run, on validation only: its tables, its best setting, and
    the model (with the chosen weights loaded) and tokenizer to translate with."""
    saved = load_checkpoint(checkpoint)
    if "tokenizer" not in saved:
        raise SystemExit(f"{checkpoint} holds no tokenizer: pass the checkpoint train_multi30k.py wrote")
    tok = tokenizer_from_dict(saved["tokenizer"])
    snapshot_path = checkpoint.with_suffix(".snapshots.pt")
    if not snapshot_path.is_file():
        raise SystemExit(f"no snapshots at {snapshot_path}: train with train_multi30k.py --average N")
    snap = load_checkpoint(snapshot_path)
    snapshots, steps = snap["snapshots"], snap["steps"]
    too_many = [k for k in args.average_choices if k > len(snapshots)]
    if too_many:
        raise SystemExit(f"--average-choices {too_many}: {checkpoint} kept only {len(snapshots)} snapshots "
                         f"(steps {steps}); train with a larger --average")
    model = make_model(**saved["config"]).eval()

    def row(hyps: list[str], seconds: float) -> dict:
        score = sacrebleu.BLEU().corpus_score(hyps, [valid_ref])
        return {"bleu": round(score.score, 2), "bp": round(score.bp, 3),
                "length_ratio": round(score.sys_len / score.ref_len, 3), "search_seconds": round(seconds, 1)}

    def valid_bleu(beam: int, alphas: list[float]) -> dict[float, dict]:
        """Validation BLEU of one search with ``beam``, for every alpha (greedy: alpha is ignored)."""
        t0 = time.perf_counter()
        by_alpha = translate(model, valid_src, tok, beam_size=beam, length_penalty_alpha=list(alphas))
        seconds = time.perf_counter() - t0
        return {alpha: row(hyps, seconds) for alpha, hyps in zip(alphas, by_alpha)}

    print(f"{checkpoint} ({count_parameters(model):,} parameters, vocabulary {tok.vocab_size}):", flush=True)
    # 1. averaging, by greedy validation BLEU
    averaging = {}
    for k in args.average_choices:
        model.load_state_dict(average(snapshots, k))
        averaging[k] = {**valid_bleu(1, [0.0])[0.0], "steps": steps[-k:]}
        print(f"  average of the last {k:>2} snapshots: validation BLEU {averaging[k]['bleu']:.2f} (greedy)", flush=True)
    best_k = max(args.average_choices, key=lambda k: averaging[k]["bleu"])
    model.load_state_dict(average(snapshots, best_k))

    # 2. decoding, with the chosen weights
    decoding = {(1, 0.0): dict(averaging[best_k])}
    decoding[1, 0.0].pop("steps")
    for beam in dict.fromkeys(b for b in args.beams if b > 1):                 # each beam size once, in order
        alphas = list(dict.fromkeys(args.alphas))
        for alpha, result in valid_bleu(beam, alphas).items():                 # one search, every alpha
            decoding[beam, alpha] = result
            print(f"  beam {beam}, alpha {alpha:g}: validation BLEU {result['bleu']:.2f} "
                  f"(length ratio {result['length_ratio']:.3f})", flush=True)
    best_beam, best_alpha = max(decoding, key=lambda c: decoding[c]["bleu"])
    return {"checkpoint": checkpoint, "model": model, "tok": tok, "steps": steps,
            "averaging": averaging, "decoding": decoding,
            "chosen": {"averaged_last": best_k, "beam": best_beam, "alpha": best_alpha},
            "bleu": decoding[best_beam, best_alpha]["bleu"]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    check_writable_dir(args.out, "--out folder")
    check_writable(args.save, "--save")
    set_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    ds = load_multi30k(limit=args.limit)
    valid_src, valid_ref = list(ds["validation"]["de"]), list(ds["validation"]["en"])

    runs = [choose_for_run(checkpoint, args, valid_src, valid_ref) for checkpoint in args.checkpoint]
    best = max(runs, key=lambda r: r["bleu"])                                  # the first listed on a tie
    model, tok, steps = best["model"], best["tok"], best["steps"]
    best_k, best_beam, best_alpha = (best["chosen"][key] for key in ("averaged_last", "beam", "alpha"))
    choose_seconds = time.perf_counter() - t_start
    name = "greedy" if best_beam == 1 else f"beam {best_beam}, alpha {best_alpha:g}"
    print(f"chosen on validation: {best['checkpoint']}, average of the last {best_k} snapshots, {name} "
          f"(validation BLEU {best['bleu']:.2f})")

    # 3. the test set, once
    test_src, test_ref = list(ds["test"]["de"]), list(ds["test"]["en"])
    t0 = time.perf_counter()
    hyps = translate(model, test_src, tok, beam_size=best_beam, length_penalty_alpha=best_alpha)
    decode_seconds = time.perf_counter() - t0
    cased, lower = sacrebleu.BLEU(), sacrebleu.BLEU(lowercase=True)
    cased_score, lower_score = cased.corpus_score(hyps, [test_ref]), lower.corpus_score(hyps, [test_ref])
    greedy_hyps = hyps if best_beam == 1 else translate(model, test_src, tok)
    greedy_score = sacrebleu.BLEU().corpus_score(greedy_hyps, [test_ref])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multi30k_test.hyp.en").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    model.save(args.save, tokenizer=tok.to_dict(), steps=steps[-1], averaged_last=best_k,
               decoding={"beam": best_beam, "alpha": best_alpha})

    def tables(run: dict) -> dict:
        return {"pairs": len(valid_src),
                "averaging_greedy": {str(k): v for k, v in run["averaging"].items()},
                "decoding": [{"beam": b, "alpha": a, **v} for (b, a), v in run["decoding"].items()]}

    report = {
        "command": " ".join(["python", "benchmarks/choose_on_validation.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "model": dict(model.config), "parameters": count_parameters(model),
        "checkpoint_steps": steps[-1], "snapshot_steps": steps,
        "validation": tables(best),
        "chosen": {"checkpoint": str(best["checkpoint"]), **best["chosen"]},
        "runs": [{"checkpoint": str(run["checkpoint"]), "vocab": run["tok"].vocab_size,
                  "parameters": count_parameters(run["model"]), "chosen": run["chosen"],
                  "validation_bleu": run["bleu"], **({} if run is best else {"validation": tables(run)})}
                 for run in runs],
        "choose_seconds": round(choose_seconds, 1),
        "test": {
            "pairs": len(test_src),
            "bleu": round(cased_score.score, 2), "bleu_detail": str(cased_score),
            "bleu_signature": str(cased.get_signature()),
            "bleu_lowercased": round(lower_score.score, 2), "bleu_lowercased_detail": str(lower_score),
            "bleu_lowercased_signature": str(lower.get_signature()),
            "decode_seconds": round(decode_seconds, 1),
            "greedy_bleu_same_weights": round(greedy_score.score, 2),
            "hypotheses": "multi30k_test.hyp.en",
        },
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if args.train_report is not None:
        report["training"] = json.loads(args.train_report[runs.index(best)].read_text(encoding="utf-8"))
    (args.out / "multi30k.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(f"test: {cased_score} [{cased.get_signature()}]")
    print(f"test lowercased: {lower_score}; greedy with the same weights {greedy_score.score:.2f}; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
