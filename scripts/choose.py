"""Choose the run, the averaging, the beam size and the length penalty on the validation set; decode the test set once.

    python scripts/train_translator.py multi30k_2h      # 1. train (keeps its last 10 snapshots)
    python scripts/choose.py multi30k_2h                # 2. choose on validation, then test once
    python scripts/choose.py multi30k_30min --checkpoint /tmp/a.pt /tmp/b.pt --out /tmp/c --save /tmp/c.pt

The runs compared are the recipe's ``choose_among`` (default: the recipe itself), each read from its
checkpoint ``checkpoints/<recipe>.pt``; ``--checkpoint`` names other files. Every choice is made on
Multi30k's validation split (1,014 pairs), in two stages:

1. **Averaging.** The mean of the last ``k`` weight snapshots that ``train_translator.py`` kept
   (``--average N``, in ``<checkpoint stem>.snapshots.pt``), for each ``k`` in ``--average-choices``
   (``k = 1``: the last weights alone), scored by greedy validation BLEU.
2. **Decoding.** Greedy and beam search with every beam size in ``--beams`` and length penalty in
   ``--alphas``, with the chosen weights, scored by validation BLEU. The search does not depend on
   the length penalty (it only ranks the finished translations), so each beam size is searched once
   and gives every alpha (``utils.decode.translate`` with a list of alphas).

The best of each stage wins (the first listed on a tie). Given several runs, both stages run for
each, and the run whose best setting scores highest on validation wins: the run, too, is chosen
without the test split. Only then is the test split (test_2016_flickr, 1,000 pairs) translated, once,
with the chosen run and setting, and scored with sacreBLEU (13a) cased and lowercased (the form
older tutorials report). Greedy test BLEU of the same weights is reported beside it; it chooses nothing.

Writes under ``--out`` (default ``results/<recipe>/`` of this checkout) ``choose.json`` (the report:
the validation tables, the choice, the test scores with the sacreBLEU signature, the times, every
run's best validation setting) and ``choose.test.hyp.en`` (the chosen setting's translations), and
the chosen weights to ``--save`` (default ``checkpoints/<recipe>.best.pt``, with the tokenizer and the
chosen decoding): ``checkpoints/multi30k_2h.best.pt`` is the model notebook 06,
``scripts/showcase.py`` and ``benchmarks/decode_speed.py`` look for. A report or ``--save`` file
already there is never replaced without ``--force``, and ``--save`` never names a training checkpoint
or a run's snapshot file (even with ``--force``: the chosen weights cannot resume). Before any
decoding every run is checked: its snapshot file must belong to it (the run identity both record),
and every validation and test sentence must fit its positional table. Check the test BLEU from the committed file with::

    sacrebleu $ATTN_DATA_DIR/multi30k/test_2016_flickr.en -i results/multi30k_2h/choose.test.hyp.en
    sacrebleu $ATTN_DATA_DIR/multi30k/test_2016_flickr.en -i results/multi30k_2h/choose.test.hyp.en -lc
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import sacrebleu
import torch

from utils.checkpoint import check_writable, check_writable_dir, load_checkpoint
from utils.data import load_multi30k
from utils.decode import translate
from utils.model import check_translator, count_parameters, make_model
from utils.runtime import cpu_model, set_seed
from utils.tokenize import tokenizer_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/, never another's
import recipes  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--choose-among", nargs="+", default=None, metavar="RECIPE",
                   help="the recipes whose runs compete (default: the recipe alone); their checkpoints are "
                        "checkpoints/<recipe>.pt")
    p.add_argument("--checkpoint", type=Path, nargs="+", default=None,
                   help="training checkpoints to choose among instead (their tokenizer; snapshots beside them)")
    p.add_argument("--average-choices", type=int, nargs="+", default=[1, 5, 10],
                   help="how many of the last snapshots to average (each tried)")
    p.add_argument("--beams", type=int, nargs="+", default=[4, 5, 6], help="beam sizes tried (greedy always is)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 2.1, 2.5],
                   help="length penalties tried with every beam size (one search per beam size gives them all)")
    p.add_argument("--out", type=Path, default=None, help="folder for the report (default results/<recipe>/)")
    p.add_argument("--save", type=Path, default=None, help="the chosen weights (default checkpoints/<recipe>.best.pt)")
    p.add_argument("--limit", type=int, default=None, help="use the first N pairs of each split (smoke runs)")
    p.add_argument("--threads", type=int, default=None)
    args = recipes.parse_args(p, argv, "choose", others=("train_translator",))
    if args.checkpoint is None:
        among = args.choose_among or [args.recipe]
        args.runs = {name: recipes.checkpoint_path(name) for name in among}
    else:
        args.runs = {recipes.shown(path): path for path in args.checkpoint}
    args.checkpoint = list(args.runs.values())
    args.out = recipes.results_dir(args.recipe) if args.out is None else args.out
    args.save = recipes.checkpoint_path(args.recipe, "best") if args.save is None else args.save
    for name in ("average_choices", "beams"):
        if any(v < 1 for v in getattr(args, name)):
            p.error(f"--{name.replace('_', '-')}: every value must be ≥ 1")
    if not all(math.isfinite(a) and a >= 0 for a in args.alphas):
        p.error(f"--alphas: every value must be a number ≥ 0, got {args.alphas}")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be ≥ 1")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be ≥ 1, got {args.threads}")
    if len(set(args.checkpoint)) != len(args.checkpoint):
        p.error("--checkpoint: a run is listed twice")
    if any(args.save.resolve() == path.resolve() for path in args.checkpoint):
        p.error(f"--save {args.save} is a training checkpoint: the chosen weights would replace it; save elsewhere")
    if any(args.save.resolve() == recipes.snapshots_path(path).resolve() for path in args.checkpoint):
        p.error(f"--save {args.save} is a run's snapshot file: the chosen weights would replace it; save elsewhere")
    if args.save.is_dir():
        p.error(f"--save {args.save} is a folder; give a file name such as {args.save / 'best.pt'}")
    if args.save.is_file() and is_training_checkpoint(args.save):
        p.error(f"--save {args.save} holds a training checkpoint (it can resume; the chosen weights could not), "
                "even --force does not replace it; save elsewhere")
    missing = [str(path) for path in args.checkpoint if not path.is_file()]
    if missing:
        p.error(f"no training checkpoint at {', '.join(missing)}: train first "
                f"(python scripts/train_translator.py <recipe>) or pass --checkpoint")
    return args


def is_training_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a checkpoint a training run can resume from (unreadable files: no)."""
    try:
        return load_checkpoint(path).get("train_state") is not None
    except ValueError:
        return False


def check_run(checkpoint: Path) -> dict:
    """Refuse, before any work, a run whose checkpoint holds no tokenizer or whose snapshot file is
    missing or belongs to another run, or that is not a translator's (a GPT's); return the loaded checkpoint."""
    try:
        saved = check_translator(load_checkpoint(checkpoint), checkpoint)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if "tokenizer" not in saved or saved.get("train_state") is None:
        raise SystemExit(f"{checkpoint} holds no tokenizer or training state: pass the checkpoint "
                         "scripts/train_translator.py wrote")
    snapshot_path = recipes.snapshots_path(checkpoint)
    if not snapshot_path.is_file():
        raise SystemExit(f"no snapshots at {snapshot_path}: train with scripts/train_translator.py --average N")
    try:
        recipes.check_snapshots(saved, load_checkpoint(snapshot_path), checkpoint, snapshot_path)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    return saved


def check_fits(run: str, max_len: int, sources: dict[str, list[list[int]]]) -> None:
    """Stop before decoding when a source sentence is longer than the run's positional table."""
    over = {split: [len(s) for s in ids if len(s) > max_len] for split, ids in sources.items()}
    if any(over.values()):
        raise SystemExit(f"run {run}: " + ", ".join(f"{len(v)} {k}" for k, v in over.items() if v)
                         + f" sentence(s) are longer than its positional table (max_len {max_len}; the longest has "
                         f"{max(max(v) for v in over.values() if v)} tokens): it cannot translate them; retrain "
                         "it with a larger --max-len or --vocab")


def average(snapshots: list[dict], k: int) -> dict:
    """The mean of the last ``k`` state dicts (integer buffers from the last one)."""
    last = snapshots[-k:]
    return {name: torch.stack([s[name].float() for s in last]).mean(0).to(value.dtype)
            if value.is_floating_point() else value for name, value in last[-1].items()}


def choose_for_run(name: str, checkpoint: Path, args: argparse.Namespace, valid_src: list[str], valid_ref: list[str]) -> dict:
    """Stages 1 and 2 for one training run, on validation only: its tables, its best setting, and
    the model (with the chosen weights loaded) and tokenizer to translate with."""
    saved = check_run(checkpoint)
    tok = tokenizer_from_dict(saved["tokenizer"])
    snap = load_checkpoint(recipes.snapshots_path(checkpoint))
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
    return {"run": name, "checkpoint": checkpoint, "model": model, "tok": tok, "steps": steps,
            "averaging": averaging, "decoding": decoding,
            "chosen": {"averaged_last": best_k, "beam": best_beam, "alpha": best_alpha},
            "bleu": decoding[best_beam, best_alpha]["bleu"], "run_id": (saved.get("run") or {}).get("id")}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipes.refuse_overwrite(args.out / "choose.json", args.force)
    recipes.refuse_overwrite(args.save, args.force, "--save checkpoint", "--save")
    check_writable_dir(args.out, "--out folder")
    check_writable(args.save, "--save")
    saved = {name: check_run(checkpoint) for name, checkpoint in args.runs.items()}     # before any work
    set_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    ds = load_multi30k(limit=args.limit)
    valid_src, valid_ref = list(ds["validation"]["de"]), list(ds["validation"]["en"])
    for name, data in saved.items():                                          # every sentence fits every model
        tok = tokenizer_from_dict(data["tokenizer"])
        check_fits(name, data["config"]["max_len"], {split: tok.encode_batch(list(ds[split]["de"]), add_special=True)
                                                      for split in ("validation", "test")})
    del saved

    runs = [choose_for_run(name, checkpoint, args, valid_src, valid_ref) for name, checkpoint in args.runs.items()]
    best = max(runs, key=lambda r: r["bleu"])                                  # the first listed on a tie
    model, tok, steps = best["model"], best["tok"], best["steps"]
    best_k, best_beam, best_alpha = (best["chosen"][key] for key in ("averaged_last", "beam", "alpha"))
    choose_seconds = time.perf_counter() - t_start
    name = "greedy" if best_beam == 1 else f"beam {best_beam}, alpha {best_alpha:g}"
    print(f"chosen on validation: {best['run']}, average of the last {best_k} snapshots, {name} "
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
    (args.out / "choose.test.hyp.en").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    model.save(args.save, tokenizer=tok.to_dict(), steps=steps[-1], averaged_last=best_k,
               decoding={"beam": best_beam, "alpha": best_alpha}, run_id=best["run_id"])   # which run it came from

    def tables(run: dict) -> dict:
        return {"averaging_greedy": {str(k): v for k, v in run["averaging"].items()},
                "decoding": [{"beam": b, "alpha": a, **v} for (b, a), v in run["decoding"].items()]}

    metrics = {
        "parameters": count_parameters(model), "checkpoint_steps": steps[-1], "validation_pairs": len(valid_src),
        "validation_bleu": best["bleu"], "averaged_last": best_k, "beam": best_beam, "alpha": best_alpha,
        "choose_seconds": round(choose_seconds, 1), "test_pairs": len(test_src),
        "test_bleu": round(cased_score.score, 2), "test_bleu_lowercased": round(lower_score.score, 2),
        "test_bleu_greedy_same_weights": round(greedy_score.score, 2), "decode_seconds": round(decode_seconds, 1),
    }
    details = {
        "chosen": {"run": best["run"], "checkpoint": recipes.shown(best["checkpoint"]), **best["chosen"]},
        "model": dict(model.config), "snapshot_steps": steps, "validation": tables(best),
        "runs": [{"run": run["run"], "checkpoint": recipes.shown(run["checkpoint"]), "vocab": run["tok"].vocab_size,
                  "parameters": count_parameters(run["model"]), "chosen": run["chosen"], "validation_bleu": run["bleu"],
                  **({} if run is best else {"validation": tables(run)})} for run in runs],
        "test": {"bleu_detail": str(cased_score), "bleu_signature": str(cased.get_signature()),
                 "bleu_lowercased_detail": str(lower_score), "bleu_lowercased_signature": str(lower.get_signature())},
    }
    translations = [{"file": "choose.test.hyp.en", "split": "test", "lowercase": lower, "metric": metric}
                    for lower, metric in ((False, "test_bleu"), (True, "test_bleu_lowercased"))]
    settings = {"choose_among": list(args.runs), "average_choices": args.average_choices, "beams": args.beams,
                "alphas": args.alphas, "limit": args.limit, "threads": args.threads,
                "out": recipes.shown(args.out), "save": recipes.shown(args.save)}
    report = recipes.report(args.recipe, "choose", " ".join(["python", "scripts/choose.py",
                                                             *(sys.argv[1:] if argv is None else argv)]),
                            settings, metrics, translations=translations, details=details,
                            environment={"cpu": cpu_model(), "threads": torch.get_num_threads(),
                                         "torch": torch.__version__})
    recipes.write_report(args.out / "choose.json", report)
    print(f"test: {cased_score} [{cased.get_signature()}]")
    print(f"test lowercased: {lower_score}; greedy with the same weights {greedy_score.score:.2f}; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
