"""Every bad input in ``tests/bad_inputs.py`` gets a clear error naming the problem, or the right answer.

The classes: checkpoints that round-trip (section 3), no silent wrong answers (4: tokenizers,
data files, ``exercises.check``), clear errors for bad arguments (5), and ``train`` failing before its
first step on an unwritable path / saving what it trained when a run ends in an error (2).
``python tests/bad_inputs.py`` counts the outcomes.
"""

import pytest

from bad_inputs import CASES, outcome


@pytest.mark.parametrize("name, thunk, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, thunk, expected, capsys):
    kind, detail = outcome(thunk, expected)
    assert kind in ("clear", "handled"), f"{name}: {kind} ({detail})"
    if expected is not None:
        message = detail.split(": ", 1)[1]
        assert len(message) > 25, f"{name}: the message is too short to say what to do: {detail}"
