"""utils.bleu's reading aids: BLEU's parts and the paired bootstrap, bound to sacreBLEU's own numbers."""

import random

import numpy as np
import pytest
import sacrebleu
from sacrebleu.significance import PairedTest

from utils.bleu import bleu_parts, corpus_bleu, paired_bootstrap, parts_table
from utils.data import load_multi30k


@pytest.fixture(scope="module")
def refs():
    return list(load_multi30k()["test"]["en"])


def noisy(refs, drop, seed, cut_tail=0):
    """Copies of the references with words dropped at random and the last `cut_tail` words cut."""
    rng = random.Random(seed)
    out = []
    for ref in refs:
        words = [w for w in ref.split() if rng.random() >= drop]
        out.append(" ".join(words[: max(1, len(words) - cut_tail)]))
    return out


def test_parts_are_sacrebleus_and_ours(refs):
    hyps = noisy(refs, 0.1, 0, cut_tail=2)
    parts = bleu_parts(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, [refs])
    ours = corpus_bleu(hyps, refs)
    assert parts.score == theirs.score and parts.precisions == list(theirs.precisions) and parts.bp == theirs.bp
    assert (parts.sys_len, parts.ref_len) == (ours.sys_len, ours.ref_len)
    assert parts.ratio == pytest.approx(ours.sys_len / ours.ref_len)
    assert parts.bp < 1 and parts.ratio < 1, "cut short: the brevity penalty bites"
    assert parts.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert bleu_parts(hyps, [refs]) == parts, "a list of reference streams works too"


def test_parts_table_has_one_row_per_system(refs):
    table = parts_table({"short": noisy(refs, 0.0, 0, cut_tail=3), "full": refs}, refs).splitlines()
    assert len(table) == 3 and table[1].startswith("short") and table[2].startswith("full")
    assert table[2].split()[1] == "100.00" and table[2].split()[6] == "1.000"


def test_paired_bootstrap_equals_sacrebleu_and_finds_a_real_gap(refs):
    a, b = noisy(refs, 0.3, 1), noisy(refs, 0.1, 2)                   # B drops far fewer words
    r = paired_bootstrap(a, b, refs, names=("worse", "better"), n_samples=200)
    _, theirs = PairedTest([("worse", a), ("better", b)], {"BLEU": sacrebleu.BLEU(references=[refs])},
                           references=None, test_type="bs", n_samples=200)()
    base, system = theirs["BLEU"]
    assert (r.score_a, r.score_b) == (base.score, system.score)
    assert (r.mean_a, r.ci_a, r.mean_b, r.ci_b, r.p_value) == pytest.approx(
        (base.mean, base.ci, system.mean, system.ci, system.p_value))
    assert r.diff == pytest.approx(system.score - base.score) and r.diff > 5
    assert 0 < r.diff_low < r.diff < r.diff_high and r.real
    assert r.p_value < 0.05
    assert "better − worse" in str(r) and "a real difference" in str(r)
    assert "bs:200" in r.signature and "seed:12345" in r.signature


def test_near_equal_systems_are_not_called_different(refs):
    a, b = noisy(refs, 0.1, 3), noisy(refs, 0.1, 4)                   # the same noise level, other draws
    r = paired_bootstrap(a, b, refs, n_samples=300)
    assert r.diff_low < 0 < r.diff_high and not r.real
    assert "no difference shown" in str(r)
    same = paired_bootstrap(a, a, refs, n_samples=100)
    assert same.diff == same.diff_low == same.diff_high == 0.0
    # sacreBLEU's statistic counts strictly larger centred differences: identical systems get 1/(n+1)
    assert same.p_value == pytest.approx(1 / 101)


@pytest.mark.slow
def test_difference_interval_is_the_paired_resamples(refs):
    """Recompute the interval by hand from the per-sentence statistics and the same draws."""
    a, b = noisy(refs[:200], 0.2, 5), noisy(refs[:200], 0.15, 6)
    r = paired_bootstrap(a, b, refs[:200], n_samples=80, seed=7)
    idx = np.random.default_rng(7).choice(200, size=(80, 200), replace=True)
    diffs = sorted(sacrebleu.corpus_bleu([b[i] for i in row], [[refs[i] for i in row]]).score
                   - sacrebleu.corpus_bleu([a[i] for i in row], [[refs[i] for i in row]]).score for row in idx)
    assert (r.diff_low, r.diff_high) == pytest.approx((diffs[2], diffs[77]), abs=1e-3)
    assert r.seed == 7 and paired_bootstrap(a, b, refs[:200], n_samples=80, seed=8).diff_low != r.diff_low


def test_errors(refs):
    with pytest.raises(ValueError, match="system A has 2 lines and B 1"):
        paired_bootstrap(["a", "b"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="2 hypotheses but a reference stream of 1"):
        paired_bootstrap(["a", "b"], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="n_samples=10 is too few"):
        paired_bootstrap(["a"], ["a"], ["a"], n_samples=10)
    with pytest.raises(ValueError, match="no hypotheses"):
        bleu_parts([], [])
