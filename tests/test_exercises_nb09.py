"""The bonus notebook 09's exercise (`utils.exercises.nb09`): the check passes the worked solution, fails
typical wrong answers without showing the expected value or the solving code, reads "not attempted" while
untouched; and notebook 09 keeps the conventions of the others (its check called, its solution hidden)."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from utils.bonus import squad
from utils.bonus.squad import normalize_answer
from exercise_checks import assert_fails_without_revealing
from utils.exercises import check
from utils.exercises.nb09 import check_token_f1

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "09_bonus_squad.ipynb"


def token_f1(prediction, reference):                    # the worked solution of notebook 09
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1_not_normalised(prediction, reference):
    pred, ref = prediction.split(), reference.split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return 0.0 if overlap == 0 else 2 * overlap / (len(pred) + len(ref))


def f1_set_overlap(prediction, reference):
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = len(set(pred) & set(ref))
    return 0.0 if overlap == 0 else 2 * (overlap / len(pred)) * (overlap / len(ref)) / (overlap / len(pred) + overlap / len(ref))


def f1_arithmetic_mean(prediction, reference):
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return 0.0 if overlap == 0 else (overlap / len(pred) + overlap / len(ref)) / 2


def f1_divides_by_zero(prediction, reference):
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1_in_percent(prediction, reference):
    return 100 * token_f1(prediction, reference)


def f1_from_the_library(prediction, reference):
    return squad.token_f1(prediction, reference)


WRONG = [f1_not_normalised, f1_set_overlap, f1_arithmetic_mean, f1_divides_by_zero, f1_in_percent,
         f1_from_the_library]


def test_reference_passes(capsys):
    check_token_f1(token_f1)
    assert check("Exercise 1", lambda: check_token_f1(token_f1)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", WRONG, ids=lambda f: f.__name__)
def test_wrong_answer_fails_without_revealing(wrong, capsys):
    assert_fails_without_revealing("Exercise 1", check_token_f1, wrong, ("Counter", "2 * ", "overlap /", "expected", "def "),
                                   capsys, places=2)


def test_untouched_exercise_is_not_attempted(capsys):
    def untouched(*args):
        raise NotImplementedError

    assert check("Exercise 1", lambda: check_token_f1(untouched)) is False
    assert "not attempted" in capsys.readouterr().out


def test_library_scorers_are_restored_and_a_notebook_namespace_is_covered():
    before = squad.token_f1
    namespace = {"token_f1_lib": squad.token_f1}
    exec("def mine(p, r):\n    return token_f1_lib(p, r)\n", namespace)
    with pytest.raises(AssertionError, match="calls utils.bonus.squad"):
        check_token_f1(namespace["mine"])
    assert squad.token_f1 is before and namespace["token_f1_lib"] is before
    assert squad.squad_scores(["Denver Broncos"], [["the Denver Broncos"]])["f1"] == 100.0


def test_notebook_calls_the_check_and_hides_the_solution():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert any(re.search(r"check\(\"Exercise 1\", lambda: check_token_f1\(", s) for s in code)
    solutions = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("# SOLUTION")]
    assert solutions and all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions)
