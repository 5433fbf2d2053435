"""Corpus BLEU (Papineni et al. 2002), written out, and equal to ``sacrebleu.corpus_bleu``.

BLEU compares a system's translations (hypotheses) with human ones (references) by counting shared
word n-grams, n = 1..4, over the whole test set::

    p_n = Σ_sentences Σ_{ngram in hyp} min(count_hyp(ngram), count_ref(ngram)) / Σ_sentences #ngrams(hyp)
    BP  = 1 if c > r else exp(1 - r / c)          c = hypothesis words, r = reference words (corpus totals)
    BLEU = 100 · BP · exp(mean_n log p_n)

* **Clipped counts**: a hypothesis n-gram is credited at most as often as it occurs in the reference
  ("the the the the" earns one "the" against "the cat").
* **Brevity penalty**: precision alone rewards saying little; BP punishes a corpus of short output.
* **Tokenization and case** change the score, so sacreBLEU fixes them: the ``13a`` tokenizer of the
  WMT scripts (:func:`tokenize_13a`), cased. The signature (``nrefs:1|case:mixed|eff:no|tok:13a|
  smooth:exp|version:…``) says which BLEU a number is; we reproduce exactly that default one, with its
  ``exp`` smoothing of an n-gram order with no match (the k-th such order counts as 1 / (2^k · total)).

``corpus_bleu(hyps, refs)`` takes one reference per hypothesis (a list of strings) or, like sacreBLEU,
a list of reference streams (each a list of strings, one per hypothesis).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from utils import checks

__all__ = ["tokenize_13a", "ngrams", "BleuScore", "corpus_bleu"]

# The 13a rules: split off punctuation and symbols; periods and commas unless inside a number;
# a dash after a digit. (sacrebleu.tokenizers.tokenizer_13a / tokenizer_re, mteval-v13a.pl.)
_RULES_13A = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> list[str]:
    """Split a detokenized sentence into the words BLEU counts, as sacreBLEU's default ``13a``."""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _RULES_13A:
        line = pattern.sub(replacement, line)
    return line.split()


def ngrams(words: Sequence[str], max_order: int = 4) -> Counter:
    """Counts of every n-gram (as a tuple of words) of ``words``, for n = 1 .. ``max_order``."""
    return Counter(tuple(words[i: i + n]) for n in range(1, max_order + 1) for i in range(len(words) - n + 1))


@dataclass
class BleuScore:
    """``score`` in 0..100; ``precisions`` p_1..p_4 in %; ``bp``; ``sys_len`` c and ``ref_len`` r;
    ``matches`` and ``totals`` per order (the corpus sums behind the precisions)."""

    score: float
    precisions: list[float]
    bp: float
    sys_len: int
    ref_len: int
    matches: list[int]
    totals: list[int]

    def __str__(self) -> str:
        p = "/".join(f"{x:.1f}" for x in self.precisions)
        ratio = self.sys_len / self.ref_len if self.ref_len else 0.0
        return (f"BLEU = {self.score:.2f} {p} (BP = {self.bp:.3f} ratio = {ratio:.3f} "
                f"hyp_len = {self.sys_len} ref_len = {self.ref_len})")


def _streams(hypotheses: Sequence[str], references, name: str = "hypotheses") -> tuple[list[str], list]:
    """Checked hypotheses, and the references as a list of streams (one list of sentences per reference set)."""
    hypotheses = checks.strings(name, hypotheses, hint="decode ids to text first (tok.decode(ids))")
    if len(hypotheses) == 0:
        raise ValueError("no hypotheses to score")
    references = references if isinstance(references, (str, bytes)) else list(references)
    one = isinstance(references, (str, bytes)) or all(isinstance(r, str) for r in references)
    streams = [checks.strings("references", references)] if one else references
    for stream in streams:
        if isinstance(stream, str) or not all(r is None or isinstance(r, str) for r in stream):
            raise TypeError("references must be one list of sentences, or a list of such lists (one per reference "
                            "set); got a mix of strings and other items")
        if len(stream) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses but a reference stream of {len(stream)} lines; "
                             "give one reference per hypothesis")
    return hypotheses, streams


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                max_order: int = 4, lowercase: bool = False) -> BleuScore:
    """BLEU of a whole test set, as ``sacrebleu.corpus_bleu(hypotheses, [references])`` (13a, cased, exp).

    Raises:
        ValueError: a reference stream whose length differs from the hypotheses', no hypotheses, or a
            ``max_order`` below 1.
        TypeError: a single string where a list of sentences is expected (it would be scored one
            character a sentence), or items that are not strings.
    """
    checks.positive_int("max_order", max_order, hint="4 for BLEU-4")
    hypotheses, streams = _streams(hypotheses, references)
    prep = (lambda s: tokenize_13a(s.lower())) if lowercase else tokenize_13a
    matches, totals = [0] * max_order, [0] * max_order
    sys_len = ref_len = 0
    for i, hyp in enumerate(hypotheses):
        hyp_words = prep(hyp)
        refs = [prep(s[i]) for s in streams if s[i] is not None]
        ref_counts = Counter()                                     # max count of each n-gram over the refs
        for ref in refs:
            ref_counts |= ngrams(ref, max_order)
        for gram, count in ngrams(hyp_words, max_order).items():
            totals[len(gram) - 1] += count
            matches[len(gram) - 1] += min(count, ref_counts[gram])  # clipped
        sys_len += len(hyp_words)
        # the reference length closest to the hypothesis's (the shorter one on a tie)
        ref_len += min((abs(len(r) - len(hyp_words)), len(r)) for r in refs)[1]

    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    precisions = [0.0] * max_order
    if not any(matches):
        return BleuScore(0.0, precisions, bp, sys_len, ref_len, matches, totals)
    smooth = 1.0
    for n in range(max_order):
        if totals[n] == 0:                     # no hypothesis is n+1 words long: BLEU is 0
            break
        if matches[n] == 0:                    # 'exp' smoothing: 1/2, 1/4, ... of a match
            smooth *= 2
            precisions[n] = 100.0 / (smooth * totals[n])
        else:
            precisions[n] = 100.0 * matches[n] / totals[n]
    log_mean = sum(math.log(p) if p > 0 else -9999999999 for p in precisions) / max_order
    return BleuScore(bp * math.exp(log_mean), precisions, bp, sys_len, ref_len, matches, totals)


# -- reading a BLEU score, and whether a difference is real ---------------------------------------------
__all__ += ["BleuParts", "bleu_parts", "parts_table", "PairedBootstrap", "paired_bootstrap"]


@dataclass
class BleuParts:
    """What a corpus BLEU is made of, as sacreBLEU computes it: ``score``; ``precisions`` p_1..p_4 in %;
    ``bp`` the brevity penalty; ``ratio`` = ``sys_len`` / ``ref_len`` (words, 13a); ``signature``."""

    score: float
    precisions: list[float]
    bp: float
    ratio: float
    sys_len: int
    ref_len: int
    signature: str


def bleu_parts(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> BleuParts:
    """BLEU's parts from ``sacrebleu`` (13a, cased, exp smoothing): a low score with high precisions and a
    brevity penalty below 1 says "too short", not "wrong words".

    Raises:
        ValueError: no hypotheses, or a reference stream of another length.
    """
    import sacrebleu

    bleu = sacrebleu.BLEU()
    s = bleu.corpus_score(*_streams(hypotheses, references))
    return BleuParts(s.score, list(s.precisions), s.bp, s.sys_len / s.ref_len if s.ref_len else 0.0, s.sys_len,
                     s.ref_len, str(bleu.get_signature()))


def parts_table(systems: dict[str, Sequence[str]], references) -> str:
    """A text table of :func:`bleu_parts`, one row per named system (e.g. ``{"greedy": …, "beam 4": …}``)."""
    rows = [f"{'':<12} {'BLEU':>6} {'p1':>6} {'p2':>6} {'p3':>6} {'p4':>6} {'BP':>6} {'ratio':>6} {'words':>7} {'ref':>7}"]
    for name, hyps in systems.items():
        p = bleu_parts(hyps, references)
        rows.append(f"{name:<12} {p.score:>6.2f} " + " ".join(f"{x:>6.1f}" for x in p.precisions)
                    + f" {p.bp:>6.3f} {p.ratio:>6.3f} {p.sys_len:>7,} {p.ref_len:>7,}")
    return "\n".join(rows)


@dataclass
class PairedBootstrap:
    """Paired bootstrap resampling (Koehn 2004) of system B against system A, as ``sacrebleu``'s
    ``--paired-bs``: ``n_samples`` test sets are drawn with replacement from the sentences, the same draws
    for both systems, and BLEU is recomputed on each.

    ``score_*``: the BLEU of the whole test set; ``mean_*`` ± ``ci_*``: sacreBLEU's bootstrap mean and the
    half-width of its 95 % interval; ``p_value``: sacreBLEU's (the share of resampled differences, centred,
    at least as far from 0 as the real one, +1 smoothed; for two identical systems it reports 1/(n+1), so
    read the interval). ``diff`` = B − A; ``diff_low``..``diff_high``: the 95 % interval of B − A over the
    same paired resamples (the 2.5 % and 97.5 % ranks, sacreBLEU's rule); it excludes 0 iff the
    difference is real at that level, by this test."""

    name_a: str
    name_b: str
    score_a: float
    score_b: float
    mean_a: float
    ci_a: float
    mean_b: float
    ci_b: float
    p_value: float
    diff: float
    diff_low: float
    diff_high: float
    n_samples: int
    seed: int
    signature: str

    @property
    def real(self) -> bool:
        """Whether the 95 % interval of B − A excludes 0."""
        return self.diff_low > 0 or self.diff_high < 0

    def __str__(self) -> str:
        verdict = ("a real difference at 95 %" if self.real
                   else "no difference shown at 95 % (the interval holds 0)")
        return (f"{self.name_a} {self.score_a:.2f} (±{self.ci_a:.2f}), {self.name_b} {self.score_b:.2f} "
                f"(±{self.ci_b:.2f}); {self.name_b} − {self.name_a} = {self.diff:+.2f} BLEU, 95 % interval "
                f"[{self.diff_low:+.2f}, {self.diff_high:+.2f}] over {self.n_samples} paired resamples; "
                f"p = {self.p_value:.3f}: {verdict}")


def paired_bootstrap(hyps_a: Sequence[str], hyps_b: Sequence[str], references, names: tuple[str, str] = ("A", "B"),
                     n_samples: int = 1000, seed: int = 12345) -> PairedBootstrap:
    """Is B's BLEU really different from A's on this test set? sacreBLEU's paired bootstrap test
    (``sacrebleu.significance.PairedTest``, ``test_type="bs"``), plus the interval of the difference.

    sacreBLEU reports each system's interval and a p-value; the interval of the *difference* comes from
    the same resamples: we draw them as sacreBLEU does (``numpy.random.default_rng(seed).choice``) and
    recompute both BLEUs from sacreBLEU's per-sentence statistics (tests check that the means and
    intervals then equal sacreBLEU's own, so the draws are the same).

    Args:
        hyps_a, hyps_b: the two systems' outputs, one line per test sentence, in the same order.
        references: one reference per sentence, or a list of reference streams.
        n_samples: resampled test sets (sacreBLEU's default 1000). ``seed``: sacreBLEU's default 12345.

    Raises:
        ValueError: systems of different lengths, a reference stream of another length, ``n_samples`` < 40.
    """
    import os

    import numpy as np
    from sacrebleu import BLEU
    from sacrebleu.significance import PairedTest

    hyps_a, hyps_b = checks.strings("hyps_a", hyps_a), checks.strings("hyps_b", hyps_b)
    if len(hyps_a) != len(hyps_b):
        raise ValueError(f"system A has {len(hyps_a)} lines and B {len(hyps_b)}; a paired test needs the "
                         "translations of the same sentences, in the same order")
    if n_samples < 40:
        raise ValueError(f"n_samples={n_samples} is too few for a 95 % interval; use at least 40 (1000 is usual)")
    hyps_a, streams = _streams(hyps_a, references, "hyps_a")
    saved = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)        # PairedTest reads its seed from here
    try:
        test = PairedTest([(names[0], list(hyps_a)), (names[1], list(hyps_b))], {"BLEU": BLEU(references=streams)},
                          references=None, test_type="bs", n_samples=n_samples)
        signatures, results = test()
    finally:
        if saved is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = saved
    res_a, res_b = results["BLEU"]

    metric = BLEU(references=streams)
    idx = np.random.default_rng(seed).choice(len(hyps_a), size=(n_samples, len(hyps_a)), replace=True)
    per_sample = []
    for hyps in (hyps_a, hyps_b):
        stats = np.array(metric._extract_corpus_statistics(list(hyps), None), dtype="float32")
        per_sample.append(np.array([metric._compute_score_from_stats(s.sum(0)).score for s in stats[idx]]))
    for mine, theirs in zip(per_sample, (res_a, res_b)):
        if abs(mine.mean() - theirs.mean) > 1e-6:
            raise RuntimeError("our resamples differ from sacreBLEU's (did its sampling change?); "
                               f"means {mine.mean()} vs {theirs.mean}")
    diffs = np.sort(per_sample[1] - per_sample[0])
    low = n_samples // 40                                # sacreBLEU's estimate_ci: 95 %, 1/40 from each end
    return PairedBootstrap(names[0], names[1], res_a.score, res_b.score, float(res_a.mean), float(res_a.ci),
                           float(res_b.mean), float(res_b.ci), float(res_b.p_value), res_b.score - res_a.score,
                           float(diffs[low]), float(diffs[n_samples - low - 1]), n_samples, seed,
                           str(signatures["BLEU"]))
