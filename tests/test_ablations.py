"""scripts/ablations.py: its --quick smoke run end to end (slow), and the pieces it relies on."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
