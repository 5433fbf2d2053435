"""Summarise the seed runs of a translator recipe: every seed's test BLEU recomputed from its committed
translations, the mean and standard deviation over the seeds, and paired bootstrap intervals.

    bash scripts/run_seeds.sh multi30k_2h 0 1 2 3          # 1. train + choose each seed (results/<recipe>/seeds/seedN/)
    python scripts/seeds.py multi30k_2h                     # 2. write results/<recipe>/seeds/seeds.json

Each ``seeds/seedN/`` holds what ``scripts/train_translator.py --seed N`` and ``scripts/choose.py`` wrote for
that seed (``train.json``, ``choose.json`` and their test translations): every setting of a seed is chosen on
validation by ``choose.py``, as for the headline run; the test set is decoded once per seed.

``seeds.json`` holds the top-level list ``"seeds"``, one entry a seed: ``seed``, ``hypotheses`` (the chosen
setting's test translations, relative to ``seeds.json``), ``test_bleu`` (sacreBLEU 13a, cased, recomputed here from
that file), and beside them the lowercased score, the validation BLEU and what was chosen on validation. Then
``summary`` (mean, sample standard deviation, min, max over the seeds) and ``paired``: sacreBLEU's paired
bootstrap (``scripts/ablations.py``'s ``paired_bleu``, 1,000 resamples of the 1,000 test sentences) of every
pair of seeds, and of each seed against the recipe's committed headline translations
(``results/<recipe>/choose.test.hyp.en``) when there are any. A ``seeds.json`` already there is replaced only
with ``--force``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import sacrebleu

from utils.data import load_multi30k

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/, never another's
import recipes  # noqa: E402
from ablations import paired_bleu  # noqa: E402  (scripts/ is on the path: this file's folder)


def seed_entry(folder: Path, refs: list[str]) -> dict:
    """One seed's entry, from ``folder/choose.json`` and the translations it names; the BLEU is recomputed.

    Raises:
        ValueError: when the report's test BLEU is not what its translations give, or the report ran another seed.
    """
    choose = json.loads((folder / "choose.json").read_text(encoding="utf-8"))
    train = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    hyp_file = folder / "choose.test.hyp.en"
    hyps = hyp_file.read_text(encoding="utf-8").splitlines()
    bleu = round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    if bleu != choose["metrics"]["test_bleu"]:
        raise ValueError(f"{folder / 'choose.json'} says test BLEU {choose['metrics']['test_bleu']}, "
                         f"its translations give {bleu}")
    seed = train["settings"]["seed"]
    if folder.name != f"seed{seed}":
        raise ValueError(f"{folder} holds a run of seed {seed}")
    m = choose["metrics"]
    return {"seed": seed, "hypotheses": f"{folder.name}/{hyp_file.name}", "test_bleu": bleu,
            "test_bleu_lowercased": m["test_bleu_lowercased"], "validation_bleu": m["validation_bleu"],
            "chosen_on_validation": {"averaged_last": m["averaged_last"], "beam": m["beam"], "alpha": m["alpha"]},
            "test_bleu_greedy_same_weights": m["test_bleu_greedy_same_weights"],
            "train_report": f"{folder.name}/train.json", "choose_report": f"{folder.name}/choose.json",
            "device": train["environment"]["device"], "gpu": train["environment"].get("gpu"),
            "torch": train["environment"]["torch"], "train_seconds": train["metrics"]["train_seconds"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe", help="a translator recipe with seed runs under results/<recipe>/seeds/")
    p.add_argument("--force", action="store_true", help="replace a seeds.json that is already there")
    args = p.parse_args(argv)
    recipes.load(args.recipe)                                    # an unknown recipe is refused by name
    folder = recipes.results_dir(args.recipe) / "seeds"
    out = folder / "seeds.json"
    recipes.refuse_overwrite(out, args.force)
    runs = sorted((d for d in folder.glob("seed*") if (d / "choose.json").is_file()),
                  key=lambda d: int(d.name.removeprefix("seed")))
    if len(runs) < 2:
        raise SystemExit(f"{folder}: {len(runs)} seed run(s) with a choose.json; run scripts/run_seeds.sh first")
    refs = list(load_multi30k()["test"]["en"])
    seeds = [seed_entry(d, refs) for d in runs]
    scores = [s["test_bleu"] for s in seeds]
    hyps = {f"seed{s['seed']}": (folder / s["hypotheses"]).read_text(encoding="utf-8").splitlines() for s in seeds}
    paired = [{"a": a, "b": b, **paired_bleu(hyps[a], hyps[b], refs)} for a, b in itertools.combinations(hyps, 2)]
    headline = recipes.results_dir(args.recipe) / "choose.test.hyp.en"
    if headline.is_file():
        base = headline.read_text(encoding="utf-8").splitlines()
        paired += [{"a": "headline", "b": name, **paired_bleu(base, h, refs)} for name, h in hyps.items()]
    data = {"recipe": args.recipe, "split": "test_2016_flickr", "metric": "sacreBLEU 13a, cased",
            "seeds": seeds,
            "summary": {"n": len(scores), "mean": round(statistics.mean(scores), 2),
                        "std": round(statistics.stdev(scores), 2), "min": min(scores), "max": max(scores)},
            "paired": paired,
            "paired_note": "diff = BLEU(b) - BLEU(a); interval_95 and p_value from sacreBLEU's paired bootstrap "
                           "(1,000 resamples of the test sentences); 'headline' is results/<recipe>/choose.test.hyp.en"}
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    s = data["summary"]
    print(f"{args.recipe}: {s['n']} seeds, test BLEU {s['mean']:.2f} ± {s['std']:.2f} (min {s['min']:.2f}, "
          f"max {s['max']:.2f}); wrote {recipes.shown(out)}")
    for row in paired:
        print(f"  {row['b']} - {row['a']}: {row['diff']:+.2f}, 95 % interval [{row['interval_95'][0]:+.2f}, "
              f"{row['interval_95'][1]:+.2f}], p = {row['p_value']:.3f}")
    return data


if __name__ == "__main__":
    main()
