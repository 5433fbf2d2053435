"""What each ingredient of the recipe is worth: short, same-budget ablations on Multi30k.

    python scripts/ablations.py ablations                        # the committed figures (about 15 min on 2 CPU cores)
    python scripts/ablations.py ablations --quick --out /tmp/abl  # a smoke run in seconds (tests/ runs it)

Every run is notebook 05's short run: a joint BPE vocabulary of 2000, a pre-LN Transformer with
d_model 128, 2 + 2 layers, 4 heads, d_ff 256, no dropout, shared embeddings; batches of about 600
tokens (``utils.batching.TokenBatches``, seed 0); Adam (0.9, 0.98, 1e-9) with the paper's schedule,
300 warm-up steps; label smoothing 0.1 (``utils.train``). Each variant changes ONE thing:

===============  ================================================================================
``baseline``     the recipe above (seed 0), and ``baseline_seed1``: the same with seed 1, which
                 draws other initial weights and other batches: the seed-to-seed spread, the
                 yardstick for every other difference
``no_warmup``    the learning rate starts at the schedule's peak, flat until step 300, then the
                 same 1/√step decay: only the ramp is removed
``post_ln``      the paper's post-LN layers at the same learning rate
``post_ln_no_warmup``  both
``no_smoothing`` label smoothing 0 instead of 0.1
===============  ================================================================================

Every run takes the same number of optimiser steps (``--steps``, default 1200, about 1.1 epochs), so
the results depend on the step count, not on how busy the machine was; on a CPU with ``--threads 1``
they are bit-for-bit repeatable. Measured: validation loss (plain cross-entropy per token, teacher
forcing, ``utils.train.evaluate``) every ``--eval-every`` steps, and at the end greedy-decoding BLEU
on the validation set (sacreBLEU, with its parts: precisions, brevity penalty, length ratio), each variant
against the baseline with sacreBLEU's paired bootstrap (``paired_bleu``: the 95 % interval of the
difference over resampled validation sets; the seed-1 run gives the other noise, that of training).
The test set is not touched. A run whose loss turns NaN is reported as diverged (its curve up to
there, its losses ``null``) and the study goes on.

Each variant is written to ``--out``'s ``ablations.partial.json`` as it finishes, so a Ctrl-C (or a
crash) loses at most the variant under way: the same command continues with the variants not yet
done (kept variants of other settings are discarded only with ``--force``). The file goes when the
report is written.

**Overfit one batch** (the sanity check to run before any long training): the baseline model
trained on ONE batch of about 600 tokens, without label smoothing, for ``--overfit-steps`` steps;
its loss on that batch must fall near zero, or the model, the masks or the loss are broken (the
script then exits with an error).

Writes under ``--out`` (default ``results/<recipe>/`` of this checkout; an existing report is
replaced only with ``--force``): ``ablations.json`` (the report schema of ``recipes/__init__.py``:
settings, per-run curves and final figures, the command, device, threads, CPU, torch version, load
average) and ``ablation_curves.png`` (validation loss against step for each question, and the
overfit curve).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import sacrebleu
import torch
from sacrebleu.significance import _compute_p_value

from utils.batching import TokenBatches
from utils.checkpoint import check_writable_dir
from utils.data import load_multi30k
from utils.decode import translate
from utils.model import count_parameters, make_model
from utils.runtime import cpu_model, set_seed
from utils.tokenize import BPETokenizer
from utils.schedules import WarmupInverseSqrt, warmup_schedule
from utils.train import TrainState, evaluate, make_optimizer, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/, never another's
import recipes  # noqa: E402

#: name → what it changes from the baseline (the keys are make_run's arguments)
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "baseline_seed1": {"seed": 1},
    "no_warmup": {"warmup_ramp": False},
    "post_ln": {"post_ln": True},
    "post_ln_no_warmup": {"post_ln": True, "warmup_ramp": False},
    "no_smoothing": {"smoothing": 0.0},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 2,000 training pairs, a tiny model, 30 steps (for tests)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default 1200; quick 30)")
    p.add_argument("--eval-every", type=int, default=None, help="validation loss every N steps (default 100; quick 10)")
    p.add_argument("--overfit-steps", type=int, default=None, help="steps on one batch (default 200; quick 100)")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help="run only these variants")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: small matrices, and repeatable to the bit)")
    p.add_argument("--out", type=Path, default=None, help="folder for the results (default results/<recipe>/)")
    p.add_argument("--no-progress", action="store_true")
    args = recipes.parse_args(p, argv, "ablations")
    args.out = recipes.results_dir(args.recipe) if args.out is None else args.out
    given = sys.argv[1:] if argv is None else argv
    for (name, full, quick) in (("steps", 1200, 30), ("eval_every", 100, 10), ("overfit_steps", 200, 100)):
        flag = "--" + name.replace("_", "-")
        if args.quick and not any(a.startswith(flag) for a in given):
            setattr(args, name, quick)               # --quick's budget, not the recipe's
        elif getattr(args, name) is None:
            setattr(args, name, full)
        if getattr(args, name) < 1:
            p.error(f"{flag} must be a positive int, got {getattr(args, name)}")
    if args.threads < 1:
        p.error(f"--threads must be a positive int, got {args.threads}")
    return args


def recipe(quick: bool) -> dict:
    """Notebook 05's short run (or a tiny version of it for --quick)."""
    if quick:
        return dict(vocab=500, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_tokens=600, warmup=10,
                    train_pairs=2000, valid_pairs=100)
    return dict(vocab=2000, d_model=128, n_layers=2, n_heads=4, d_ff=256, max_tokens=600, warmup=300,
                train_pairs=None, valid_pairs=None)


class NoRamp(WarmupInverseSqrt):
    """The paper's schedule without its linear ramp: the peak from step 1, then the same decay."""

    def __call__(self, step: int) -> float:
        return super().__call__(max(step, self.warmup - 1))


def make_run(R: dict, vocab_size: int, seed: int = 0, post_ln: bool = False, warmup_ramp: bool = True,
             smoothing: float = 0.1, lr_scale: float = 1.0):
    set_seed(seed)
    model = make_model(vocab_size, vocab_size, n_layers=R["n_layers"], d_model=R["d_model"], n_heads=R["n_heads"],
                       d_ff=R["d_ff"], dropout=0.0, norm_first=not post_ln, share_embeddings=True)
    optimizer = make_optimizer(model)
    if warmup_ramp:
        scheduler = warmup_schedule(optimizer, R["d_model"], R["warmup"], scale=lr_scale)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, NoRamp(R["d_model"], R["warmup"]))
    return model, optimizer, scheduler, smoothing


def overfit_one_batch(R: dict, vocab_size: int, src, tgt, steps: int) -> dict:
    """Train the baseline model on the first batch of epoch 0 only; its loss there must reach ~0."""
    first = TokenBatches(src, tgt, max_tokens=R["max_tokens"], seed=0).batches(0)[0]
    one = TokenBatches([src[i] for i in first], [tgt[i] for i in first], max_tokens=10 ** 9, seed=0)
    assert len(one) == 1, "the chosen pairs must make exactly one batch"
    model, optimizer, scheduler, _ = make_run(R, vocab_size)
    state = train(model, one, optimizer, scheduler, smoothing=0.0, max_steps=steps, device="cpu", progress=False)
    losses = [h["loss"] for h in state.history]
    final = evaluate(model, one)
    below = next((h["step"] for h in state.history if h["loss"] < 0.1), None)
    return {"pairs": len(first), "target_tokens": one.collate(one.batches(0)[0]).n_tokens, "steps": steps,
            "loss_curve": [round(x, 4) for x in losses], "final_loss": round(final["loss"], 5),
            "final_token_accuracy": round(final["acc"], 4), "first_step_below_0.1": below}


#: The file that keeps the finished variants while a study runs (removed when the report is written).
PARTIAL = "ablations.partial.json"


def finite(x: float) -> float | None:
    """``x`` rounded, or ``None`` when it is not finite (a diverged run; strict JSON has no NaN)."""
    return round(x, 4) if math.isfinite(x) else None


def partial_key(args: argparse.Namespace) -> dict:
    """What a finished variant depends on: a kept one is reused only under the same settings."""
    return {"quick": args.quick, "steps": args.steps, "eval_every": args.eval_every, "threads": args.threads}


def write_json(path: Path, data: dict) -> None:
    """Write strict JSON atomically (a temporary file renamed over the old one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def finished_variants(partial: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """The runs and validation translations of the variants an interrupted study finished (empty when none).

    Raises:
        FileExistsError: kept variants of other settings, unless ``--force`` (which discards them).
    """
    if not partial.is_file():
        return {}, {}
    kept = json.loads(partial.read_text(encoding="utf-8"))
    if kept.get("key") != partial_key(args):
        if not args.force:
            raise FileExistsError(f"{partial} keeps the finished variants of a study with other settings "
                                  f"({kept.get('key')}); pass --force to discard them, or --out to write elsewhere")
        return {}, {}
    print(f"continuing the study kept in {partial}: {', '.join(kept['runs'])} done", flush=True)
    return kept["runs"], kept["hyps"]


def paired_bleu(base: list[str], hyps: list[str], refs: list[str], n_samples: int = 1000, seed: int = 12345) -> dict:
    """``hyps`` against ``base`` by sacreBLEU's paired bootstrap (Koehn 2004; ``sacrebleu --paired-bs``, with
    its seed and draws): the BLEU difference, its 95 % interval over the same resampled validation sets
    (1/40 from each end, sacreBLEU's rule), sacreBLEU's p-value, and whether the interval excludes 0."""
    bleu = sacrebleu.BLEU(references=[refs])
    idx = np.random.default_rng(seed).choice(len(refs), size=(n_samples, len(refs)), replace=True)
    scores = []                                            # BLEU of each resampled set, base then hyps
    for h in (base, hyps):
        stats = np.array(bleu._extract_corpus_statistics(list(h), None), dtype="float32")
        scores.append(np.array([bleu._compute_score_from_stats(s.sum(0)).score for s in stats[idx]]))
    diff = bleu.corpus_score(list(hyps), None).score - bleu.corpus_score(list(base), None).score
    spread = np.abs(scores[1] - scores[0])
    low, high = np.sort(scores[1] - scores[0])[[n_samples // 40, n_samples - n_samples // 40 - 1]]
    return {"diff": round(diff, 2), "interval_95": [round(float(low), 2), round(float(high), 2)],
            "p_value": round(_compute_p_value(spread - spread.mean(), abs(diff)), 4),
            "real": bool(low > 0 or high < 0), "resamples": n_samples}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipes.refuse_overwrite(args.out / "ablations.json", args.force)
    recipes.refuse_overwrite(args.out / "ablation_curves.png", args.force, "figure")
    check_writable_dir(args.out, "--out folder")
    torch.set_num_threads(args.threads)
    R = recipe(args.quick)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    ds = load_multi30k()
    train_split = ds["train"] if R["train_pairs"] is None else ds["train"].select(range(R["train_pairs"]))
    valid_split = ds["validation"] if R["valid_pairs"] is None else ds["validation"].select(range(R["valid_pairs"]))
    tok = BPETokenizer.train(list(train_split["de"]) + list(train_split["en"]), vocab_size=R["vocab"])
    train_src = tok.encode_batch(train_split["de"], add_special=True)
    train_tgt = tok.encode_batch(train_split["en"], add_special=True)
    valid_data = TokenBatches(tok.encode_batch(valid_split["de"], add_special=True),
                              tok.encode_batch(valid_split["en"], add_special=True), max_tokens=4000, shuffle=False)
    valid_de, valid_en = list(valid_split["de"]), list(valid_split["en"])

    partial = args.out / PARTIAL                  # every finished variant, kept as it finishes
    runs, hyps_of = finished_variants(partial, args)
    for name in args.only or VARIANTS:
        if name in runs:
            print(f"{name:<18} already done (kept in {partial})", flush=True)
            continue
        settings = VARIANTS[name]
        model, optimizer, scheduler, smoothing = make_run(R, tok.vocab_size, **settings)
        seed = settings.get("seed", 0)
        train_data = TokenBatches(train_src, train_tgt, max_tokens=R["max_tokens"], seed=seed)
        t0 = time.perf_counter()
        state = TrainState()                          # kept when the loss turns NaN: the curve up to there
        try:
            train(model, train_data, optimizer, scheduler, valid=valid_data, smoothing=smoothing, state=state,
                  max_steps=args.steps, eval_every=args.eval_every, device="cpu", progress=not args.no_progress)
            error = None
        except FloatingPointError as err:             # this variant diverged; the study goes on
            error = str(err)
        except KeyboardInterrupt:
            print(f"\ninterrupted during {name}: {len(runs)} finished variant(s) are kept in {partial}; the same "
                  "command continues from there", flush=True)
            raise
        seconds = time.perf_counter() - t0
        last = state.valid[-1] if state.valid else None
        diverged = error is not None or last is None or not math.isfinite(last["loss"])
        run = {"changes": settings, "parameters": count_parameters(model), "steps": state.step,
               "epochs": round(state.step / len(train_data), 2), "train_seconds": round(seconds, 1),
               "diverged": diverged, **({"error": error} if error else {}),
               "valid_curve": [{"step": v["step"], "loss": finite(v["loss"])} for v in state.valid],
               "train_loss_every_50": [round(sum(h["loss"] for h in state.history[i: i + 50]) / 50, 4)
                                       for i in range(0, len(state.history) - 49, 50)],
               "peak_lr": max((h["lr"] for h in state.history), default=None),
               "valid": {k: finite(last[k]) if last else None for k in ("loss", "ppl", "acc")}}
        if not diverged:
            t1 = time.perf_counter()
            hyps = hyps_of[name] = translate(model, valid_de, tok)
            parts = sacrebleu.corpus_bleu(hyps, [valid_en])            # 13a, cased, exp smoothing
            run["valid_bleu_greedy"] = round(parts.score, 2)
            run["valid_bleu_parts"] = {"precisions": [round(p, 1) for p in parts.precisions], "bp": round(parts.bp, 3),
                                       "ratio": round(parts.sys_len / parts.ref_len, 3)}
            run["decode_seconds"] = round(time.perf_counter() - t1, 1)
        runs[name] = run
        write_json(partial, {"key": partial_key(args), "runs": runs, "hyps": hyps_of})
        shown_loss = run["valid"]["loss"] if run["valid"]["loss"] is not None else math.nan
        print(f"{name:<18} valid loss {shown_loss:.3f}  BLEU {run.get('valid_bleu_greedy', math.nan):5.2f}  "
              f"({seconds:.0f} s{', DIVERGED' if diverged else ''})", flush=True)

    if "baseline" in hyps_of:      # is a BLEU difference more than the luck of which sentences were drawn?
        for name, hyps in hyps_of.items():
            if name != "baseline":
                runs[name]["valid_bleu_vs_baseline"] = paired_bleu(hyps_of["baseline"], hyps, valid_en)

    overfit = overfit_one_batch(R, tok.vocab_size, train_src, train_tgt, args.overfit_steps)
    print(f"overfit one batch   loss {overfit['loss_curve'][0]:.2f} → {overfit['final_loss']:.4f} in "
          f"{args.overfit_steps} steps (below 0.1 from step {overfit['first_step_below_0.1']})", flush=True)

    details = {
        "quick": args.quick, "recipe": R, "steps_per_run": args.steps, "eval_every": args.eval_every,
        "vocab_size": tok.vocab_size, "train_pairs": len(train_split), "valid_pairs": len(valid_split),
        "runs": runs, "overfit_one_batch": overfit,
        "seed_spread": {k: round(abs(runs["baseline"][k2][k] - runs["baseline_seed1"][k2][k]), 4)
                        for k, k2 in (("loss", "valid"),)}
        if {"baseline", "baseline_seed1"} <= set(runs) and not (runs["baseline"]["diverged"]
                                                                or runs["baseline_seed1"]["diverged"]) else None,
    }
    spread = details["seed_spread"]
    if spread is not None and "valid_bleu_greedy" in runs["baseline"] and "valid_bleu_greedy" in runs["baseline_seed1"]:
        spread["bleu"] = round(abs(runs["baseline"]["valid_bleu_greedy"] - runs["baseline_seed1"]["valid_bleu_greedy"]), 2)
    metrics = {"steps_per_run": args.steps, "valid_pairs": len(valid_split)}
    for name, run in runs.items():
        metrics[f"{name}_valid_loss"] = run["valid"]["loss"]
        metrics[f"{name}_valid_bleu_greedy"] = run.get("valid_bleu_greedy")
    metrics.update({f"seed_spread_{k}": v for k, v in (spread or {}).items()})
    metrics.update(overfit_final_loss=overfit["final_loss"], total_seconds=round(time.perf_counter() - t_start, 1))
    settings = {k: recipes.shown(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                if k not in ("recipe", "force", "recipe_settings", "no_progress")}
    report = recipes.report(
        args.recipe, "ablations", " ".join(["python", "scripts/ablations.py", *(sys.argv[1:] if argv is None else argv)]),
        settings, metrics, details=details,
        environment={"device": "cpu", "threads": args.threads, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                     "torch": torch.__version__, "load_average_at_start": [round(x, 2) for x in load_start],
                     "load_average_at_end": [round(x, 2) for x in os.getloadavg()]})
    recipes.write_report(args.out / "ablations.json", report)
    plot(details, args.out / "ablation_curves.png")
    partial.unlink(missing_ok=True)
    print(f"wrote {args.out / 'ablations.json'} and ablation_curves.png in {metrics['total_seconds'] / 60:.1f} min")
    if not args.quick and not overfit["final_loss"] < 0.1:
        raise SystemExit(f"overfitting one batch left a loss of {overfit['final_loss']}: the model, the masks or the "
                         "loss is broken (it should memorise 600 tokens)")
    return report


COLOURS = {"baseline": "tab:blue", "baseline_seed1": "tab:gray", "no_warmup": "tab:orange", "post_ln": "tab:green",
           "post_ln_no_warmup": "tab:red", "no_smoothing": "tab:purple"}


def plot(report: dict, path: Path) -> None:
    """Draw ``ablation_curves.png`` from a report's ``details``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    questions = [("Warm-up", ["baseline", "no_warmup", "post_ln", "post_ln_no_warmup"]),
                 ("Post-LN vs pre-LN, same learning rate", ["baseline", "post_ln", "baseline_seed1"]),
                 ("Label smoothing", ["baseline", "no_smoothing", "baseline_seed1"])]
    labels = {"baseline": "pre-LN, warm-up, ε=0.1 (baseline)", "baseline_seed1": "baseline, seed 1",
              "no_warmup": "pre-LN, no warm-up", "post_ln": "post-LN, warm-up",
              "post_ln_no_warmup": "post-LN, no warm-up", "no_smoothing": "ε = 0 (no smoothing)"}
    fig, axes = plt.subplots(1, 4, figsize=(18, 4), layout="constrained")
    for ax, (title, names) in zip(axes, questions):
        finite = []
        for name in names:
            if name not in runs:
                continue
            r = runs[name]
            steps = [v["step"] for v in r["valid_curve"]]
            losses = [math.nan if v["loss"] is None else v["loss"] for v in r["valid_curve"]]
            finite += [x for x in losses if math.isfinite(x)]
            bleu = f", BLEU {r['valid_bleu_greedy']:.1f}" if "valid_bleu_greedy" in r else ", diverged"
            ax.plot(steps, losses, "o-" if name != "baseline_seed1" else "--", ms=3, color=COLOURS.get(name),
                    label=f"{labels.get(name, name)}{bleu}")
        if finite:
            ax.set_ylim(min(finite) - 0.1, min(max(finite), min(finite) + 3))
        ax.set(title=title, xlabel="step", ylabel="validation loss (nats/token)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    o = report["overfit_one_batch"]
    axes[3].semilogy(range(1, len(o["loss_curve"]) + 1), o["loss_curve"])
    axes[3].set(title=f"Overfit one batch ({o['pairs']} pairs, {o['target_tokens']} target tokens)",
                xlabel="step", ylabel="training loss on that batch")
    axes[3].grid(alpha=0.3)
    fig.suptitle(f"Ablations on Multi30k: {report['steps_per_run']} steps each; validation set"
                 + (" (quick smoke run)" if report["quick"] else ""))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
