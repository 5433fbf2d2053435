"""Self-checks for the notebooks' exercises, and the checks of the "build it yourself" exercises.

:func:`check` runs a test on the learner's function and prints one line: not attempted yet, not
right yet (with the reason), or solved. It never raises, so an unsolved exercise does not stop
"Run All"; the worked solutions call ``assert check(...)``, so CI proves every solution passes.

Each notebook's checks live in a module of their own (``utils.exercises.nb01`` ... ``nb08``): a
``check_*`` there compares a piece the learner wrote with a reference and, when it differs, says *what* is wrong (a shape, weights that do not sum to 1, a position that sees
the future) without giving the right numbers away (``NotImplementedError`` while untouched), e.g.
``check("Exercise 5", lambda: check_encoder_input(encoder_input))``.
"""

from __future__ import annotations

import inspect
import traceback
from typing import Any, Callable

import numpy as np

from utils import checks

__all__ = ["check", "first_bad"]


def check(name: str, test: Callable[[], Any]) -> bool:
    """Run ``test()`` (which calls the learner's code and asserts) and print the outcome.

    Returns True when it passes. ``NotImplementedError`` means not attempted; an ``AssertionError`` (its message,
    or the failing line), any other exception (``sys.exit`` too), or a false result means not right yet. A test
    with ``yield`` is run to its end; an ``async`` one is refused (``check`` cannot await it).
    Raises ``TypeError`` when ``test`` is not callable (pass the function ``test_ex1``, not its result
    ``test_ex1()``) or ``name`` is not a string: mistakes in the call, not in the exercise, stop the cell."""
    checks.instance("name", name, str, "the exercise's name (a str)")
    if not callable(test):
        raise TypeError(f"test must be a function to call, got {type(test).__name__}; pass the function itself "
                        "(check(name, test_fn)), not what it returns (check(name, test_fn())), or wrap it: "
                        "check(name, lambda: ...)")
    verdict = None                                  # what is wrong; None when solved
    try:
        result = test()
        if inspect.isgenerator(result):             # a test with `yield` runs only when iterated
            result = next((r for r in result if r is False), None)     # to its end, or a yielded False
        if inspect.iscoroutine(result) or inspect.isasyncgen(result):
            getattr(result, "close", lambda: None)()    # never awaited: closed quietly
            raise TypeError("the test is `async`, so nothing ran; write it with a plain `def`")
    except NotImplementedError:
        verdict = "not attempted yet — replace `raise NotImplementedError` with your code."
    except AssertionError as err:
        line = traceback.extract_tb(err.__traceback__)[-1].line
        verdict = f"not right yet — {str(err) or (f'this failed: {line}' if line else 'an assertion failed')}"
    except (Exception, SystemExit) as err:          # a learner's bug, even sys.exit, must not stop Run All
        verdict = f"your code raised {type(err).__name__}: {err}"
    else:
        try:
            verdict = None if result is None or bool(result) else \
                f"not right yet — the check returned {result!r}; it should pass (return None or True)"
        except Exception:                           # e.g. a tensor of several values: no verdict either way
            pass
    print(f"{name}: {verdict or 'solved ✓'}")
    return verdict is None


def first_bad(diff: np.ndarray, tol: float) -> tuple[int, ...] | None:
    """Index of the first entry of ``diff`` whose absolute value exceeds ``tol``, or None."""
    bad = np.argwhere(np.abs(diff) > tol)
    return tuple(int(i) for i in bad[0]) if len(bad) else None


# -- 01 · the encoder's input: embedding rows × √d_model + sinusoidal positions
