"""Self-checks for the exercises at the end of every notebook.

An exercise is a function the learner fills in. :func:`check` runs a test on it and prints one
line: not attempted yet, not right yet (with the reason), or solved. It never raises, so an
unsolved exercise does not stop "Run All" for the cells after it. The worked solutions at the
end of each notebook call ``assert check(...)``, so CI proves every solution really passes.
"""

from __future__ import annotations

from typing import Any, Callable


def check(name: str, test: Callable[[], Any]) -> bool:
    """Run ``test()`` (which calls the learner's code and asserts) and report the outcome.

    Returns True when the test passes, False otherwise. ``NotImplementedError`` means the
    exercise has not been attempted; an ``AssertionError`` or any other exception means it is
    not right yet and its message is printed. A test that returns ``False`` (a comparison written
    without ``assert``) has failed too, as does any other false value (0, an empty list).

    Raises:
        TypeError: ``test`` is not callable (pass the function, ``check("ex1", test_ex1)``, not
            its result ``test_ex1()``), or ``name`` is not a string. These are mistakes in the call,
            not in the exercise, so they do stop the cell.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be the exercise's name (a str), got {type(name).__name__}")
    if not callable(test):
        raise TypeError(f"test must be a function to call, got {type(test).__name__}; pass the function itself "
                        "(check(name, test_fn)), not what it returns (check(name, test_fn())), or wrap it: "
                        "check(name, lambda: ...)")
    try:
        result = test()
    except NotImplementedError:
        print(f"{name}: not attempted yet — replace `raise NotImplementedError` with your code.")
        return False
    except AssertionError as err:
        print(f"{name}: not right yet — {err or 'an assertion failed'}")
        return False
    except Exception as err:  # a learner's bug must not stop Run All
        print(f"{name}: your code raised {type(err).__name__}: {err}")
        return False
    try:
        falsy = result is not None and not bool(result)
    except Exception:                      # e.g. a tensor of several values: not a verdict either way
        falsy = False
    if falsy:
        print(f"{name}: not right yet — the check returned {result!r}; it should pass (return None or True)")
        return False
    print(f"{name}: solved ✓")
    return True
