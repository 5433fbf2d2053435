"""The exercise check of the bonus notebook 09 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from utils.bonus import squad

_CASES = [  # (prediction, reference, what the case is about)
    ("Denver Broncos", "Denver Broncos", "the same answer"),
    ("the Denver Broncos.", "Denver Broncos", "an article and a full stop"),
    ("PARIS", "paris", "case"),
    ("Denver", "Denver Broncos", "a prediction with part of the answer"),
    ("the Denver Broncos won the game", "Denver Broncos", "a prediction longer than the answer"),
    ("dog dog", "dog dog cat", "a word that occurs twice in both"),
    ("dog dog dog", "dog cat", "a word repeated more often than in the reference"),
    ("a cat", "an apple", "strings that share only articles"),
    ("single characters", "by splitting them into pieces", "no word in common"),
]


class _Forbidden(Exception):
    """Raised by a scorer the exercise asks the learner not to call."""


@contextlib.contextmanager
def _without_squad_scorers(fn: Callable[..., Any]) -> Iterator[None]:
    """While inside: utils.bonus.squad's token_f1, exact_match and squad_scores raise, in their module and
    wherever ``fn``'s globals (a notebook's namespace) hold them."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise _Forbidden

    names = ("token_f1", "exact_match", "squad_scores", "_f1_one")
    forbidden = {id(getattr(squad, name)) for name in names}
    saved = [(vars(squad), name, getattr(squad, name)) for name in names]
    namespace = getattr(fn, "__globals__", {})
    saved += [(namespace, key, value) for key, value in list(namespace.items()) if id(value) in forbidden]
    try:
        for where, name, _ in saved:
            where[name] = refuse
        yield
    finally:
        for where, name, value in reversed(saved):
            where[name] = value


def check_token_f1(fn: Callable[[str, str], Any]) -> None:
    """``fn(prediction, reference)`` → SQuAD's token F1 in [0, 1] of one prediction against one reference:
    both strings normalised (``normalize_answer``), split on spaces; the overlap counted as a multiset;
    precision = overlap / prediction words, recall = overlap / reference words, F1 = 2PR / (P + R), and 0
    when nothing overlaps. Without calling ``utils.bonus.squad``'s own scorers."""
    for prediction, reference, about in _CASES:
        try:
            with _without_squad_scorers(fn):
                got = fn(prediction, reference)
        except _Forbidden:
            raise AssertionError("your function calls utils.bonus.squad's scorer; write the F1 yourself "
                                 "(normalize_answer is allowed)") from None
        except ZeroDivisionError:
            raise AssertionError(f"{about} ({prediction!r} against {reference!r}): your code divides by zero; "
                                 "with no word in common the F1 is 0") from None
        assert isinstance(got, (int, float)) and not isinstance(got, bool), \
            f"return a number (a float in [0, 1]), got {type(got).__name__}"
        assert 0.0 <= got <= 1.0, "the F1 is a fraction between 0 and 1, not a percentage"
        want = squad._f1_one(prediction, reference)
        assert abs(got - want) < 1e-9, f"wrong for {about}: {prediction!r} against {reference!r}"
