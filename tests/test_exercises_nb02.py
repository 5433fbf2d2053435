"""The exercise checks of notebook 02 (`utils.exercises.nb02`): each passes its reference and the
notebook's worked solution, fails typical wrong answers with a hint of its own that shows neither the
answer's values nor the solving code, and reads "not attempted" for an untouched answer. The checks
of the exercises that ask for attention written by hand fail an answer that calls a ready-made one."""

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import utils.attention
from utils.attention import scaled_dot_product_attention
from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb02 import (check_attention_with_bias, check_attention_with_temperature,
                                  check_fixed_attention, check_masked_attention_numpy, check_sliding_window_mask)

NOTEBOOK = next((Path(__file__).resolve().parents[1] / "notebooks").glob("02_*.ipynb"))


# --- references (the notebook's worked solutions are the same code) ------------------------------------------
def attention_with_bias(q, k, v, bias):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias).softmax(dim=-1)
    return weights @ v, weights


def fixed_attention(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sliding_window_mask(size, window):
    i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
    return (i - j >= 0) & (i - j < window)


def attention_with_temperature(q, k, v, temperature):
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    weights = (q @ k.transpose(-2, -1) / (temperature * math.sqrt(q.shape[-1]))).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_np(Q, K, V, mask=None):
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
    return w @ V, w


def attention_v2(q, k, v, mask=None):                   # the notebook's own version, section 7
    return scaled_dot_product_attention(q, k, v, mask)


# --- wrong answers, each a typical mistake, with a phrase its hint must contain --------------------------------
def scores(q, k, scale=True):
    s = q @ k.transpose(-2, -1)
    return s / math.sqrt(q.shape[-1]) if scale else s


def bias_after_softmax(q, k, v, bias):
    weights = scores(q, k).softmax(-1) + bias
    return weights @ v, weights


def bias_before_scale(q, k, v, bias):
    weights = ((q @ k.transpose(-2, -1) + bias) / math.sqrt(q.shape[-1])).softmax(-1)
    return weights @ v, weights


def bias_ignored(q, k, v, bias):
    weights = scores(q, k).softmax(-1)
    return weights @ v, weights


def bias_unscaled(q, k, v, bias):
    weights = (scores(q, k, scale=False) + bias).softmax(-1)
    return weights @ v, weights


def bias_through_library(q, k, v, bias):
    weights = (scores(q, k) + bias).softmax(-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), weights


def bias_through_library_hidden(q, k, v, bias):     # the library reached through a module, caught at run time
    weights = (scores(q, k) + bias).softmax(-1)
    return getattr(F, "scaled_dot_" + "product_attention")(q, k, v, attn_mask=bias), weights


def fixed_fills_zero(q, k, v, mask):                # the bug the exercise shows
    weights = scores(q, k).masked_fill(~mask, 0.0).softmax(-1)
    return weights @ v, weights


def fixed_inverted_mask(q, k, v, mask):
    weights = scores(q, k).masked_fill(mask, float("-inf")).softmax(-1)
    return weights @ v, weights


def fixed_zeroes_after_softmax(q, k, v, mask):
    weights = scores(q, k).softmax(-1).masked_fill(~mask, 0.0)
    return weights @ v, weights


def fixed_unscaled(q, k, v, mask):
    weights = scores(q, k, scale=False).masked_fill(~mask, float("-inf")).softmax(-1)
    return weights @ v, weights


def fixed_calls_utils(q, k, v, mask):
    return scaled_dot_product_attention(q, k, v, mask)


def fixed_calls_notebook_version(q, k, v, mask):
    return attention_v2(q, k, v, mask)


def window_off_by_one(size, window):
    i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
    return (i - j >= 0) & (i - j <= window)


def window_both_sides(size, window):
    i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
    return (i - j).abs() < window


def window_one_short(size, window):
    i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
    return (i - j >= 0) & (i - j < window - 1)


def window_float(size, window):
    return sliding_window_mask(size, window).float()


def window_without_self(size, window):
    i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
    return (i - j > 0) & (i - j <= window)


def temperature_multiplies(q, k, v, temperature):
    if not temperature > 0:
        raise ValueError
    weights = (scores(q, k) * temperature).softmax(-1)
    return weights @ v, weights


def temperature_ignored(q, k, v, temperature):
    if not temperature > 0:
        raise ValueError
    weights = scores(q, k).softmax(-1)
    return weights @ v, weights


def temperature_replaces_scale(q, k, v, temperature):
    if not temperature > 0:
        raise ValueError
    weights = (scores(q, k, scale=False) / temperature).softmax(-1)
    return weights @ v, weights


def temperature_no_value_error(q, k, v, temperature):
    weights = (scores(q, k) / temperature).softmax(-1)
    return weights @ v, weights


def temperature_through_library(q, k, v, temperature):
    if not temperature > 0:
        raise ValueError
    weights = (scores(q, k) / temperature).softmax(-1)
    return F.scaled_dot_product_attention(q, k, v, scale=1 / (temperature * math.sqrt(q.shape[-1]))), weights


def np_unscaled(Q, K, V, mask=None):
    return masked_attention_np(Q * np.sqrt(Q.shape[-1]), K, V, mask)


def np_scaled_by_d_k(Q, K, V, mask=None):
    return masked_attention_np(Q / np.sqrt(Q.shape[-1]), K, V, mask)


def np_transposed_scores(Q, K, V, mask=None):
    s = K @ np.swapaxes(Q, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
    return w @ V, w


def np_mask_with_zero(Q, K, V, mask=None):
    s = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, 0.0)
    w = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    return w @ V, w


def np_softmax_wrong_axis(Q, K, V, mask=None):
    s = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    w = np.exp(s) / np.exp(s).sum(-2, keepdims=True)
    return w @ V, w


CASES = {
    "attention_with_bias": (check_attention_with_bias, attention_with_bias, [
        (bias_after_softmax, "before the softmax"), (bias_before_scale, "scaled along with the scores"),
        (bias_ignored, "do not change with the bias"), (bias_unscaled, "the scores are not scaled"),
        (bias_through_library, "write it yourself"), (bias_through_library_hidden, "`scaled_dot_product_attention`")]),
    "fixed_attention": (check_fixed_attention, fixed_attention, [
        (fixed_fills_zero, "exactly zero weight"), (fixed_inverted_mask, "True in the mask means"),
        (fixed_zeroes_after_softmax, "do not sum to 1"), (fixed_unscaled, "no longer scaled"),
        (fixed_calls_utils, "calls `scaled_dot_product_attention`"), (fixed_calls_notebook_version, "`attention_v2`")]),
    "sliding_window_mask": (check_sliding_window_mask, sliding_window_mask, [
        (window_off_by_one, "more than window"), (window_both_sides, "a later position"),
        (window_one_short, "most recent positions"),
        (window_float, "boolean"), (window_without_self, "may not see itself")]),
    "attention_with_temperature": (check_attention_with_temperature, attention_with_temperature, [
        (temperature_multiplies, "the opposite"), (temperature_ignored, "do not change with the temperature"),
        (temperature_replaces_scale, "no longer scaled"), (temperature_no_value_error, "ValueError"),
        (temperature_through_library, "the point of this exercise")]),
    "masked_attention_np": (check_masked_attention_numpy, masked_attention_np, [
        (np_unscaled, "the scores are not scaled"), (np_scaled_by_d_k, "wrong factor"),
        (np_transposed_scores, "transposed"), (np_mask_with_zero, "which the mask forbids"),
        (np_softmax_wrong_axis, "do not sum to 1")]),
}
GIVEAWAYS = ("sqrt(", "math.sqrt", "np.sqrt", "-inf", "float('-inf')", "masked_fill(", "softmax(", "expected",
             "should be [", "i - j", "tril", "transpose(-2, -1)")



def notebook_solutions():
    """The functions the notebook's `# SOLUTION` cells define (and `softmax_np`, which one uses), from their source."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    namespace = {"math": math, "np": np, "torch": torch}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code":
            continue
        defs = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
                and (source.startswith("# SOLUTION") or node.name == "softmax_np")]
        exec(compile(ast.Module(body=defs, type_ignores=[]), str(NOTEBOOK), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name", CASES)
def test_notebook_solution_passes(name):
    CASES[name][0](notebook_solutions()[name])


@pytest.mark.parametrize("name, wrong, hint", [(n, w, h) for n, (_, _, ws) in CASES.items() for w, h in ws],
                         ids=lambda x: getattr(x, "__name__", None) if callable(x) else None)
def test_wrong_answer_fails_with_its_hint(name, wrong, hint, capsys):
    assert_fails_without_revealing(name, CASES[name][0], wrong, GIVEAWAYS, capsys, hint=hint)


def test_each_check_has_two_or_more_wrong_answers_with_distinct_hints():
    for name, (_, _, wrongs) in CASES.items():
        assert len(wrongs) >= 2, name
        assert len({hint for _, hint in wrongs}) == len(wrongs), f"{name}: two mistakes share one hint"


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_the_library_is_back_after_a_check():
    originals = (F.scaled_dot_product_attention, utils.attention.scaled_dot_product_attention,
                 globals()["scaled_dot_product_attention"])
    for wrong in (bias_through_library, fixed_calls_utils, attention_with_bias):
        check("library", lambda: (check_fixed_attention if wrong is fixed_calls_utils else check_attention_with_bias)(wrong))
    assert (F.scaled_dot_product_attention, utils.attention.scaled_dot_product_attention,
            globals()["scaled_dot_product_attention"]) == originals


sdpa = scaled_dot_product_attention                  # an alias under a name the check cannot know


def test_a_swallowed_library_error_still_fails():
    def sneaky(q, k, v, mask):
        try:
            return sdpa(q, k, v, mask)
        except AssertionError:                          # the check's refusal, caught: the call still counts
            return fixed_attention(q, k, v, mask)

    with pytest.raises(AssertionError, match="write it yourself"):
        check_fixed_attention(sneaky)
    assert sdpa is scaled_dot_product_attention


def test_every_exercise_cell_only_calls_its_check():
    """The learner's cells hold no check code: each calls a check_* of utils.exercises.nb02."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    stubs = [s for s in code if "raise NotImplementedError" in s and not s.startswith("# SOLUTION")]
    assert len(stubs) == len(CASES)
    for stub in stubs:
        assert re.search(r"check\(\"Exercise \d\", lambda: check_\w+\(\w+\)\)", stub), stub
        assert "assert" not in stub and "def check_" not in stub, f"check code in the learner's cell: {stub}"
