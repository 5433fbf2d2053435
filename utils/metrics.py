"""SQuAD's metrics: exact match and token F1, as the official evaluation script (v1.1) defines them.

An extractive answer is a short span ("Denver Broncos"); a prediction that differs only in case,
punctuation, an article or spacing ("the denver broncos.") is the same answer. So both metrics first
**normalise** a string the official way, in this order: lowercase; delete every ASCII punctuation
character (``string.punctuation``); delete the whole words ``a``, ``an``, ``the``; collapse whitespace.

* **Exact match** (EM): 1 if the normalised prediction equals a normalised reference, else 0.
* **Token F1**: the normalised strings split on whitespace; the overlap is the size of the multiset
  intersection of the two token lists; precision = overlap / prediction tokens, recall = overlap /
  reference tokens, F1 = 2PR / (P + R), and 0 when nothing overlaps (so two empty strings score 0 here,
  as in v1.1; the v2.0 script scores that case 1).

A question may have several references (SQuAD's ``answers.text``): each metric takes its **maximum**
over them. The corpus figure is the mean over questions, × 100.

    >>> squad_scores(["the Denver Broncos"], [["Denver Broncos", "Broncos"]])
    {'exact_match': 100.0, 'f1': 100.0, 'n': 1}
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = ["normalize_answer", "exact_match", "token_f1", "squad_scores"]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _references(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("no reference answer given; pass a string or a non-empty list of strings "
                         "(SQuAD's answers.text for one question)")
    return refs


def _f1_one(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the normalised ``prediction`` equals any normalised reference, else 0.0.

    Raises:
        ValueError: an empty list of references.
    """
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in _references(references)))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """Token F1 in [0, 1] of ``prediction`` against its best reference (see the module docstring).

    Raises:
        ValueError: an empty list of references.
    """
    return max(_f1_one(prediction, r) for r in _references(references))


def squad_scores(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Corpus exact match and F1 in % (the official script's ``exact_match`` and ``f1``), and ``n``.

    Args:
        predictions: one answer string per question.
        references: per question, one reference string or a list of them.

    Raises:
        ValueError: no predictions, or lists of different lengths.
    """
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; give one "
                         "reference (or list of references) per prediction")
    em = sum(exact_match(p, r) for p, r in zip(predictions, references))
    f1 = sum(token_f1(p, r) for p, r in zip(predictions, references))
    n = len(predictions)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "n": n}
