"""The synthetic task of notebooks 04 and 06, date normalisation (``"Tuesday, March 3, 1998"`` →
``"1998-03-03"``): no download, deterministic given a seed, trained on a CPU in seconds.
:func:`date_splits` gives train / valid / test splits that share no calendar date.
"""

from __future__ import annotations

import datetime as dt
import random

from utils import checks

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Every format holds the full four-digit year and is unambiguous (no 03/04/05 puzzles).
DATE_FORMATS = {
    "d Month yyyy": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "Month d, yyyy": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "Mon d yyyy": lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    "d mon yyyy": lambda d: f"{d.day} {MONTHS[d.month - 1][:3].lower()} {d.year}",
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "yyyy/mm/dd": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    "Weekday, Month d, yyyy": lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    "the dth of Month yyyy": lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    "MONTH D YYYY": lambda d: f"{MONTHS[d.month - 1].upper()} {d.day} {d.year}",
}


def date_pairs(n: int, seed: int = 0, *, first_year: int = 1950, last_year: int = 2049) -> list[tuple[str, str]]:
    """``n`` dates, uniform over ``first_year``..``last_year``, each written in one of :data:`DATE_FORMATS`
    (chosen at random) and paired with its ISO form ``YYYY-MM-DD``. Raises ValueError for ``n < 0`` or
    an empty year range."""
    checks.integer("n", n, at_least=0)
    if first_year > last_year:
        raise ValueError(f"first_year={first_year} is after last_year={last_year}")
    rng, formats = random.Random(seed), list(DATE_FORMATS.values())
    start, end = dt.date(first_year, 1, 1).toordinal(), dt.date(last_year, 12, 31).toordinal()
    days = (dt.date.fromordinal(rng.randint(start, end)) for _ in range(n))      # drawn one by one, as used
    return [(rng.choice(formats)(d), d.isoformat()) for d in days]


def date_splits(n_train: int, n_valid: int, n_test: int, seed: int = 0, *, first_year: int = 1950,
                last_year: int = 2049) -> dict[str, list[tuple[str, str]]]:
    """Date-normalisation pairs ``{"train", "valid", "test"}`` that are **disjoint by construction**: the
    calendar dates are drawn *without replacement*, so no test (or valid) date occurs in training in
    any format. Each date is written in one format of :data:`DATE_FORMATS`, chosen at random. Raises
    ValueError for a negative count, an empty year range, or one with fewer days than the splits need.
    """
    for name, n in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        checks.integer(name, n, at_least=0)
    if first_year > last_year:
        raise ValueError(f"first_year={first_year} is after last_year={last_year}")
    start = dt.date(first_year, 1, 1).toordinal()
    days = dt.date(last_year, 12, 31).toordinal() - start + 1
    total = n_train + n_valid + n_test
    if total > days:
        raise ValueError(f"{first_year}..{last_year} holds {days:,} days, fewer than the {total:,} distinct dates "
                         "the three splits need; widen the year range or ask for fewer pairs")
    rng = random.Random(seed)
    formats = list(DATE_FORMATS.values())
    dates = [dt.date.fromordinal(start + offset) for offset in rng.sample(range(days), total)]
    pairs = [(rng.choice(formats)(d), d.isoformat()) for d in dates]
    return {"train": pairs[:n_train], "valid": pairs[n_train:n_train + n_valid],
            "test": pairs[n_train + n_valid:]}
