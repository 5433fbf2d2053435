"""scripts/ablations.py: its --quick smoke run end to end (slow), and the pieces it relies on."""

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
from sacrebleu.significance import PairedTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import ablations  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablations")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ablations.py"), "ablations", "--quick", "--no-progress",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads((out / "ablations.json").read_text())["details"], done.stdout


@pytest.mark.slow
def test_quick_run_writes_every_variant_and_a_figure(quick):
    out, report, stdout = quick
    assert set(report["runs"]) == set(ablations.VARIANTS)
    assert (out / "ablation_curves.png").stat().st_size > 10_000
    for name, run in report["runs"].items():
        assert run["steps"] == report["steps_per_run"] == 30, f"{name}: same budget for every run"
        assert [v["step"] for v in run["valid_curve"]] == [10, 20, 30]
        assert run["diverged"] is False and math.isfinite(run["valid"]["loss"])
        assert 0 <= run["valid_bleu_greedy"] <= 100 and len(run["valid_bleu_parts"]["precisions"]) == 4
    runs = report["runs"]
    assert runs["no_warmup"]["changes"] == {"warmup_ramp": False} and runs["post_ln"]["changes"] == {"post_ln": True}
    assert runs["baseline"]["valid"] != runs["baseline_seed1"]["valid"], "seed 1 is another run"
    assert report["seed_spread"]["loss"] == pytest.approx(
        abs(runs["baseline"]["valid"]["loss"] - runs["baseline_seed1"]["valid"]["loss"]), abs=1e-4)
    assert runs["no_warmup"]["peak_lr"] == pytest.approx(runs["baseline"]["peak_lr"]), "the same peak, no ramp"
    assert "overfit one batch" in stdout


@pytest.mark.slow
def test_overfitting_one_batch_drives_its_loss_to_zero(quick):
    o = quick[1]["overfit_one_batch"]
    assert o["loss_curve"][0] > 5 and o["final_loss"] < 0.1 and o["final_token_accuracy"] == 1.0
    assert o["first_step_below_0.1"] is not None


@pytest.mark.slow
def test_results_depend_on_steps_only(quick, tmp_path):
    """The same run again (another process, another moment): the same numbers, to the bit."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ablations.py"), "ablations", "--quick", "--no-progress",
                           "--only", "baseline", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    again = json.loads((tmp_path / "ablations.json").read_text())["details"]["runs"]["baseline"]
    first = quick[1]["runs"]["baseline"]
    assert again["valid_curve"] == first["valid_curve"] and again["valid_bleu_greedy"] == first["valid_bleu_greedy"]


def test_no_ramp_schedule_starts_at_the_peak_then_follows_the_paper():
    paper, flat = ablations.WarmupInverseSqrt(128, 300), ablations.NoRamp(128, 300)
    peak = max(paper(s) for s in range(2000))
    assert flat(0) == pytest.approx(peak) and flat(150) == pytest.approx(peak) and paper(0) < peak / 100
    assert all(flat(s) == paper(s) for s in range(299, 2000))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert torch.optim.lr_scheduler.LambdaLR(opt, flat).get_last_lr()[0] == pytest.approx(peak)


@pytest.mark.slow
def test_bleu_differences_come_with_a_paired_bootstrap_interval(quick):
    runs = quick[1]["runs"]
    assert "valid_bleu_vs_baseline" not in runs["baseline"]
    for name in set(runs) - {"baseline"}:
        vs = runs[name]["valid_bleu_vs_baseline"]
        assert vs["diff"] == pytest.approx(runs[name]["valid_bleu_greedy"] - runs["baseline"]["valid_bleu_greedy"], abs=0.011)
        low, high = vs["interval_95"]
        assert low <= vs["diff"] <= high and 0 < vs["p_value"] <= 1
        assert (low >= 0 or high <= 0) if vs["real"] else (low <= 0 <= high), "real iff the interval excludes 0"


# -- the paired bootstrap behind valid_bleu_vs_baseline, bound to sacreBLEU's own test ------------------
@pytest.fixture(scope="module")
def refs():
    from utils.data import load_multi30k

    return list(load_multi30k()["test"]["en"])


def noisy(refs, drop, seed):
    """Copies of the references with words dropped at random."""
    rng = random.Random(seed)
    return [" ".join(w for w in ref.split() if rng.random() >= drop) for ref in refs]


def test_paired_bleu_is_sacrebleus_test_and_finds_a_real_gap(refs):
    a, b = noisy(refs, 0.3, 1), noisy(refs, 0.1, 2)                   # B drops far fewer words
    r = ablations.paired_bleu(a, b, refs, n_samples=200)
    _, theirs = PairedTest([("worse", a), ("better", b)], {"BLEU": sacrebleu.BLEU(references=[refs])},
                           references=None, test_type="bs", n_samples=200)()
    base, system = theirs["BLEU"]
    assert r["diff"] == round(system.score - base.score, 2) and r["diff"] > 5
    assert r["p_value"] == round(system.p_value, 4) < 0.05
    low, high = r["interval_95"]
    assert 0 < low < r["diff"] < high and r["real"] is True and r["resamples"] == 200


def test_near_equal_systems_are_not_called_different(refs):
    a, b = noisy(refs, 0.1, 3), noisy(refs, 0.1, 4)                   # the same noise level, other draws
    r = ablations.paired_bleu(a, b, refs, n_samples=300)
    assert r["interval_95"][0] < 0 < r["interval_95"][1] and r["real"] is False
    same = ablations.paired_bleu(a, a, refs, n_samples=100)
    assert same["diff"] == 0 and same["interval_95"] == [0, 0] and same["real"] is False
    # sacreBLEU's statistic counts strictly larger centred differences: identical systems get 1/(n+1)
    assert same["p_value"] == round(1 / 101, 4)


@pytest.mark.slow
def test_difference_interval_is_the_paired_resamples(refs):
    """Recompute the interval by hand from sacreBLEU's corpus BLEU on the same draws."""
    a, b = noisy(refs[:200], 0.2, 5), noisy(refs[:200], 0.15, 6)
    r = ablations.paired_bleu(a, b, refs[:200], n_samples=80, seed=7)
    idx = np.random.default_rng(7).choice(200, size=(80, 200), replace=True)
    diffs = sorted(sacrebleu.corpus_bleu([b[i] for i in row], [[refs[i] for i in row]]).score
                   - sacrebleu.corpus_bleu([a[i] for i in row], [[refs[i] for i in row]]).score for row in idx)
    assert r["interval_95"] == pytest.approx([diffs[2], diffs[77]], abs=0.006)
    assert ablations.paired_bleu(a, b, refs[:200], n_samples=80, seed=8)["interval_95"] != r["interval_95"]
