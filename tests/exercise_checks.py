"""What every exercise test asks of a check fed a wrong or an untouched answer (tests/test_exercises*.py).

A wrong answer must fail with one or two sentences that say what is wrong (the hint, when the test names
one), show no long decimals (they could only be the expected values) and none of the code that solves it,
and ``utils.exercises.check`` must print it as "not right yet — <reason>". An untouched answer (``raise
NotImplementedError``) reads "not attempted".
"""

import re
from typing import Callable, Iterable

import pytest

from utils.exercises import check


def long_decimals(text: str, places: int = 3) -> list[str]:
    """The numbers in ``text`` with ``places`` or more decimals."""
    return re.findall(rf"-?\d+\.\d{{{places},}}", text)


def assert_fails_without_revealing(name: str, checker: Callable, wrong: Callable, giveaways: Iterable[str], capsys,
                                   hint: str | None = None, places: int = 3) -> str:
    """``checker(wrong)`` fails as described above; returns its message for further asserts."""
    with pytest.raises(AssertionError) as err:
        checker(wrong)
    message = str(err.value)
    assert message.strip(), "a failing check must say what is wrong"
    assert len(message) < 400, f"one or two sentences, not a dump: {message}"
    if hint is not None:
        assert hint in message, f"{getattr(wrong, '__name__', wrong)} should get the hint {hint!r}, got: {message}"
    assert not long_decimals(message, places), f"the message shows numbers that may give the answer away: {message}"
    for giveaway in giveaways:
        assert giveaway not in message, f"{giveaway!r} gives the answer away: {message}"
    assert check(name, lambda: checker(wrong)) is False
    out = capsys.readouterr().out
    assert "not right yet — " in out and out.split("not right yet — ", 1)[1].strip(), "the reason is printed"
    return message


def assert_untouched_is_not_attempted(name: str, checker: Callable, capsys) -> None:
    def untouched(*args, **kwargs):
        raise NotImplementedError

    assert check(name, lambda: checker(untouched)) is False
    assert "not attempted" in capsys.readouterr().out
