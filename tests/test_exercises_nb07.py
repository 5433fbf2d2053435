"""Notebook 07's exercise checks (`utils.exercises.nb07`): the reference solutions pass; typical
wrong answers fail with a message that says what is wrong without the right values or the code
that solves it; an untouched exercise reads "not attempted"."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import utils.bonus.numpy_transformer as nt
from exercise_checks import assert_fails_without_revealing
from utils.exercises import check
from utils.exercises.nb07 import check_adamw, check_clip_grad_norm, check_gelu_backward, check_rms_norm_backward

C = math.sqrt(2 / math.pi)


# --- reference solutions (the notebook's worked solutions are the same code) ---------------------
def gelu_backward(dout, x):
    t = np.tanh(C * (x + 0.044715 * x**3))
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * 0.044715 * x * x))


def rms_norm_backward(dout, cache):
    x, r, gamma = cache
    g = dout * gamma
    dx = r * g - r**3 * x * (g * x).mean(axis=-1, keepdims=True)
    return dx, (dout * x * r).reshape(-1, x.shape[-1]).sum(axis=0)


class AdamW(nt.Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps)
        self.weight_decay = weight_decay

    def step(self, params, grads):
        for k in params:
            params[k] *= 1 - self.lr * self.weight_decay
        super().step(params, grads)


def clip_grad_norm(grads, max_norm):
    norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values())))
    factor = min(1.0, max_norm / (norm + 1e-6))
    for g in grads.values():
        g *= factor
    return norm


# --- wrong answers, each a typical mistake -------------------------------------------------------
def gelu_no_cubic_factor(dout, x):                      # forgets the 3 of d(x³)/dx
    t = np.tanh(C * (x + 0.044715 * x**3))
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 0.044715 * x * x))


def gelu_only_first_factor(dout, x):                    # product rule: only one term
    return dout * 0.5 * (1 + np.tanh(C * (x + 0.044715 * x**3)))


def gelu_ignores_dout(dout, x):
    return gelu_backward(np.ones_like(x), x)


def rms_r_constant(dout, cache):                        # treats r as a constant
    x, r, gamma = cache
    return dout * gamma * r, (dout * x * r).reshape(-1, x.shape[-1]).sum(axis=0)


def rms_dgamma_per_position(dout, cache):               # forgets to sum over positions
    x, r, gamma = cache
    return rms_norm_backward(dout, cache)[0], dout * x * r


def rms_dgamma_without_r(dout, cache):                  # gamma multiplies x·r, not x
    x, r, gamma = cache
    return rms_norm_backward(dout, cache)[0], (dout * x).reshape(-1, x.shape[-1]).sum(axis=0)


class AdamWAsL2(nt.Adam):                               # weight decay added to the gradient (Adam + L2)
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps)
        self.weight_decay = weight_decay

    def step(self, params, grads):
        super().step(params, {k: g + self.weight_decay * params[k] for k, g in grads.items()})


class AdamWDecayWithoutLr(AdamW):                       # θ ← θ (1 − λ), without the learning rate
    def step(self, params, grads):
        for k in params:
            params[k] *= 1 - self.weight_decay
        nt.Adam.step(self, params, grads)


class AdamWDecayAfter(AdamW):                           # decays the already-updated weights
    def step(self, params, grads):
        nt.Adam.step(self, params, grads)
        for k in params:
            params[k] *= 1 - self.lr * self.weight_decay


def clip_rebinds(grads, max_norm):                      # new arrays in the dict: nobody else sees them
    norm = float(np.sqrt(sum((g**2).sum() for g in grads.values())))
    for k in grads:
        grads[k] = grads[k] * min(1.0, max_norm / (norm + 1e-6))
    return norm


def clip_returns_norm_after(grads, max_norm):
    clip_grad_norm(grads, max_norm)
    return float(np.sqrt(sum((g**2).sum() for g in grads.values())))


def clip_each_array_alone(grads, max_norm):             # per-array norms instead of the global one
    norm = float(np.sqrt(sum((g**2).sum() for g in grads.values())))
    for g in grads.values():
        g *= min(1.0, max_norm / (np.linalg.norm(g) + 1e-6))
    return norm


def clip_always_scales(grads, max_norm):                # no min(1, ...): small gradients are blown up
    norm = float(np.sqrt(sum((g**2).sum() for g in grads.values())))
    for g in grads.values():
        g *= max_norm / (norm + 1e-6)
    return norm


CASES = {
    "gelu_backward": (check_gelu_backward, gelu_backward, [gelu_no_cubic_factor, gelu_only_first_factor,
                                                           gelu_ignores_dout]),
    "rms_norm_backward": (check_rms_norm_backward, rms_norm_backward,
                          [rms_r_constant, rms_dgamma_per_position, rms_dgamma_without_r]),
    "adamw": (check_adamw, AdamW, [AdamWAsL2, AdamWDecayWithoutLr, AdamWDecayAfter]),
    "clip_grad_norm": (check_clip_grad_norm, clip_grad_norm,
                       [clip_rebinds, clip_returns_norm_after, clip_each_array_alone, clip_always_scales]),
}
GIVEAWAYS = ("tanh(", "0.044715 *", "1 - t", "r**3", "r ** 3", "mean(", "1 - self.lr", "lr * ", "* factor",
             "min(1", "sqrt(", "expected", "np.", "sum(axis")



@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, _, ws) in CASES.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_wrong_answer_fails_without_revealing(name, wrong, capsys):
    assert_fails_without_revealing(name, CASES[name][0], wrong, GIVEAWAYS, capsys)


def test_each_wrong_clip_gets_its_own_reason():
    reasons = {}
    for wrong in CASES["clip_grad_norm"][2]:
        with pytest.raises(AssertionError) as err:
            check_clip_grad_norm(wrong)
        reasons[wrong.__name__] = str(err.value)
    assert "in place" in reasons["clip_rebinds"]
    assert "norm" in reasons["clip_returns_norm_after"]
    assert "differs" in reasons["clip_each_array_alone"] and "differs" in reasons["clip_always_scales"]


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    checker, _, _ = CASES[name]

    class Untouched(nt.Adam):
        def __init__(self, *args, **kwargs):
            raise NotImplementedError

    def untouched(*args, **kwargs):
        raise NotImplementedError

    assert check(name, lambda: checker(Untouched if name == "adamw" else untouched)) is False
    assert "not attempted" in capsys.readouterr().out


def test_notebook_cells_only_call_the_checks():
    """No learner cell holds a check (and with it the answer): each calls utils.exercises.nb07."""
    path = Path(__file__).resolve().parents[1] / "notebooks" / "07_numpy_transformer.ipynb"
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    code = ["".join(c["source"]) for c in cells]
    calls = [s for s in code if re.search(r"check\(\"Exercise \d\", lambda: check_\w+\(", s)]
    assert len(calls) >= 8, "four exercise cells and four solution cells call utils.exercises.nb07's checks"
    assert not any(re.search(r"def check_\d", s) for s in code), "checks live in utils/exercises/nb07.py"
    for cell, text in zip(cells, code):
        if text.startswith("# SOLUTION"):
            assert cell["metadata"].get("jupyter", {}).get("source_hidden"), "worked solutions start hidden"
            assert text.rstrip().splitlines()[-1].startswith("assert check("), "a solution ends by asserting its check"
