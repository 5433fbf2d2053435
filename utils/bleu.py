"""Corpus BLEU (Papineni et al. 2002), written out, and equal to ``sacrebleu.corpus_bleu``.

BLEU counts the word n-grams (n = 1..4) a system's translations share with the references, over the
whole test set::

    p_n = Σ min(count_hyp(ngram), count_ref(ngram)) / Σ #ngrams(hyp)     (clipped: "the the the" earns one "the")
    BP  = 1 if c > r else exp(1 - r / c)      c, r = hypothesis, reference words (precision alone rewards short output)
    BLEU = 100 · BP · exp(mean_n log p_n)

Tokenization and case change the score, so we reproduce sacreBLEU's default BLEU exactly
(``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp``): the WMT ``13a`` tokenizer (:func:`tokenize_13a`),
cased, and ``exp`` smoothing (the k-th n-gram order with no match counts as 1 / (2^k · total)).
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
    line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _RULES_13A:
        line = pattern.sub(replacement, line)
    return line.split()


def ngrams(words: Sequence[str], max_order: int = 4) -> Counter:
    """Counts of every n-gram (a tuple of words) of ``words``, n = 1 .. ``max_order``; TypeError for one str."""
    if isinstance(words, str):
        raise TypeError(f"words must be a list of words, got a str ({words[:30]!r}); split it: tokenize_13a(text)")
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


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                max_order: int = 4, lowercase: bool = False) -> BleuScore:
    """BLEU of a whole test set, as ``sacrebleu.corpus_bleu(hypotheses, [references])`` (13a, cased, exp).

    ``references``: one string per hypothesis, or (as sacreBLEU) a list of such streams (``None``: missing).
    Raises ``ValueError`` for no hypotheses, a stream of another length, a hypothesis with no reference, ``max_order`` < 1;
    ``TypeError`` for one string in place of a list, items that are not strings, a non-bool ``lowercase``."""
    checks.positive_int("max_order", max_order, hint="4 for BLEU-4")
    checks.instance("lowercase", lowercase, bool, "True or False", hint="a string such as 'False' would be true")
    hypotheses = checks.strings("hypotheses", hypotheses, hint="decode ids to text first (tok.decode(ids))")
    if len(hypotheses) == 0:
        raise ValueError("no hypotheses to score")
    references = references if isinstance(references, (str, bytes)) else list(references)
    one = isinstance(references, (str, bytes)) or all(isinstance(r, str) for r in references)
    streams = [checks.strings("references", references)] if one else references
    for stream in streams:
        if isinstance(stream, (str, bytes)) or not hasattr(stream, "__len__") or \
                not all(r is None or isinstance(r, str) for r in stream):
            raise TypeError("references must be one list of sentences, or a list of such lists (one per reference "
                            "set); got a mix of strings and other items")
        if len(stream) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses but a reference stream of {len(stream)} lines; "
                             "give one reference per hypothesis")
    prep = (lambda s: tokenize_13a(s.lower())) if lowercase else tokenize_13a
    matches, totals, sys_len, ref_len = [0] * max_order, [0] * max_order, 0, 0
    for i, hyp in enumerate(hypotheses):
        hyp_words = prep(hyp)
        if not (refs := [prep(s[i]) for s in streams if s[i] is not None]):
            raise ValueError(f"hypothesis {i} has no reference: every reference stream holds None there; give one")
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

