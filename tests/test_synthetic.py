import datetime as dt

import pytest

from utils.synthetic import DATE_FORMATS, date_pairs


def test_dates_are_deterministic_and_iso():
    a, b = date_pairs(500, seed=7), date_pairs(500, seed=7)
    assert a == b and a != date_pairs(500, seed=8)
    for src, tgt in a:
        d = dt.date.fromisoformat(tgt)
        assert 1950 <= d.year <= 2049
        assert str(d.year) in src, "every format must hold the full year"


def test_every_date_format_appears_and_is_unambiguous():
    d = dt.date(2004, 3, 5)
    rendered = {name: f(d) for name, f in DATE_FORMATS.items()}
    assert len(set(rendered.values())) == len(rendered)
    sources = {src for src, _ in date_pairs(2000, seed=0)}
    assert len(sources) > 1900  # plenty of variety
    assert rendered["the dth of Month yyyy"] == "the 5th of March 2004"
    assert DATE_FORMATS["Weekday, Month d, yyyy"](d) == "Friday, March 5, 2004"


def test_negative_n_and_an_empty_year_range_are_errors():
    with pytest.raises(ValueError, match="n must be"):
        date_pairs(-1)
    with pytest.raises(ValueError, match="first_year"):
        date_pairs(3, first_year=2000, last_year=1999)


def test_date_splits_are_disjoint_by_date_and_deterministic():
    from utils.synthetic import date_splits
    splits = date_splits(5000, 300, 1000, seed=3)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [5000, 300, 1000]
    assert splits == date_splits(5000, 300, 1000, seed=3) and splits != date_splits(5000, 300, 1000, seed=4)
    dates = {k: {t for _, t in v} for k, v in splits.items()}
    assert len(dates["train"]) == 5000, "every date at most once"
    assert not dates["train"] & dates["test"] and not dates["train"] & dates["valid"] and not dates["valid"] & dates["test"]
    for src, tgt in splits["test"]:
        d = dt.date.fromisoformat(tgt)
        assert src in {f(d) for f in DATE_FORMATS.values()}
    # the old way (two independent date_pairs draws) overlaps: the reason date_splits exists
    old_train, old_test = date_pairs(20000, seed=1), date_pairs(1000, seed=2)
    assert len(set(old_test) & set(old_train)) > 0


def test_date_splits_errors():
    from utils.synthetic import date_splits
    with pytest.raises(ValueError, match="n_valid must be"):
        date_splits(10, -1, 10)
    with pytest.raises(ValueError, match="fewer than"):
        date_splits(300, 100, 100, first_year=2000, last_year=2000)
    with pytest.raises(ValueError, match="first_year"):
        date_splits(1, 1, 1, first_year=2001, last_year=2000)
