"""utils.bonus.squad's metrics against cases worked out by hand from the official SQuAD v1.1 script's definitions."""

import pytest

from utils.bonus.squad import exact_match, normalize_answer, squad_scores, token_f1


@pytest.mark.parametrize("text, normal", [
    ("The Denver Broncos", "denver broncos"),                  # lowercase, article dropped
    ("  an   Apple,  a day! ", "apple day"),                    # punctuation, articles, spaces
    ("Theatre", "theatre"),                                     # 'the' only as a whole word
    ("the-the", "thethe"),                                      # punctuation goes first, so no word 'the' is left
    ("U.S.A.", "usa"),
    ("1,000 captions", "1000 captions"),
    ("Île-de-France", "îledefrance"),                           # ASCII punctuation only; accents stay
    ("“quoted”", "“quoted”"),                                   # curly quotes are not string.punctuation
    ("A", ""),
])
def test_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_takes_the_best_reference():
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert exact_match("Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos", "Broncos"]) == 0.0


def test_token_f1_by_hand():
    # pred "denver broncos team" (3 tokens), ref "denver broncos" (2): overlap 2, P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    # tokens count as a multiset:
    # pred "x x y" (3), ref "x y y z" (4): common x1 y1 = 2, P = 2/3, R = 2/4, F1 = 2·(2/3)(1/2)/(2/3+1/2) = 4/7
    assert token_f1("x x y", "x y y z") == pytest.approx(4 / 7)
    assert token_f1("nothing shared", "Denver") == 0.0
    # the maximum over references
    assert token_f1("Denver Broncos team", ["Carolina", "Denver Broncos"]) == pytest.approx(0.8)
    # v1.1: both empty after normalisation → no overlap → 0 (v2.0 would give 1); EM still 1
    assert token_f1("The", "a") == 0.0 and exact_match("The", "a") == 1.0


def test_corpus_scores_are_means_times_100():
    preds = ["Denver Broncos", "Denver Broncos team", "Panthers"]
    refs = [["Denver Broncos", "Broncos"], "Denver Broncos", ["Carolina Panthers"]]
    # EM: 1, 0, 0 → 33.33; F1: 1, 0.8, 2·(1)(1/2)/(1.5) = 2/3 → (1 + 0.8 + 2/3) / 3
    scores = squad_scores(preds, refs)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 2 / 3) / 3)
    assert scores["n"] == 3


def test_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        squad_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        squad_scores([], [])
    with pytest.raises(ValueError, match="no reference answer"):
        token_f1("x", [])
    with pytest.raises(TypeError, match=r"answers\['text'\]"):        # list() of the dict would give its keys
        squad_scores(["text"], [{"text": ["Denver"], "answer_start": [3]}])
    with pytest.raises(TypeError, match="prediction must be one answer"):
        exact_match(["Denver"], "Denver")
