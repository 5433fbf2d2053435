"""Notebook 03's exercise checks (`utils.exercises.nb03`): the reference and the notebook's worked
solutions pass; typical wrong answers fail, each with a message that names the mistake without the
answer's values or the code that solves it; an untouched exercise reads "not attempted"."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.attention import MultiHeadAttention
from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb03 import check_alibi_bias, check_mha_param_count, check_multi_head_from_packed, check_rms_norm

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_multi_head_attention.ipynb"


# --- reference solutions ------------------------------------------------------------------------
def rms_norm(x, weight, eps=1e-6):
    return weight * x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


def alibi_bias(n_heads, seq_len):
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)
    pos = torch.arange(seq_len)
    return -slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None, *,
               scale=None, use_bias=True, transpose=True, interleave=False, merge_transpose=True, swap_qk=False):
    """The reference; the keyword arguments turn on one typical mistake each."""
    d = query.shape[-1]
    d_k = d // n_heads
    (wq, wk, wv), (bq, bk, bv) = np.split(w_in, 3), np.split(b_in, 3)
    if swap_qk:
        (wq, bq), (wk, bk) = (wk, bk), (wq, bq)
    if not use_bias:
        bq, bk, bv = 0 * bq, 0 * bk, 0 * bv

    def split(t):
        b, s, _ = t.shape
        if interleave:
            return t.reshape(b, s, d_k, n_heads).transpose(0, 3, 1, 2)
        return t.reshape(b, s, n_heads, d_k).transpose(0, 2, 1, 3)

    def proj(t, w, b):
        return t @ (w.T if transpose else w) + b

    q, k, v = split(proj(query, wq, bq)), split(proj(key, wk, bk)), split(proj(value, wv, bv))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d_k if scale is None else scale)
    if key_padding_mask is not None:
        scores = np.where(key_padding_mask[:, None, None, :], -np.inf, scores)
    w = softmax(scores)
    heads = w @ v
    b, h, s, _ = heads.shape
    merged = heads.transpose(0, 2, 1, 3).reshape(b, s, d) if merge_transpose else heads.reshape(b, s, d)
    return merged @ w_out.T + b_out, w


def mha_param_count(d_model, n_heads, bias=True):
    return 4 * d_model * d_model + (4 * d_model if bias else 0)


# --- wrong answers, each a typical mistake ------------------------------------------------------
def rms_calls_library(x, weight, eps=1e-6):
    return F.rms_norm(x, (x.shape[-1],), weight, eps=eps)


def rms_uses_module(x, weight, eps=1e-6):
    norm = nn.RMSNorm(x.shape[-1], eps=eps, dtype=x.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm(x)


def rms_subtracts_mean(x, weight, eps=1e-6):
    return rms_norm(x - x.mean(-1, keepdim=True), weight, eps)


def rms_ignores_weight(x, weight, eps=1e-6):
    return rms_norm(x, torch.ones_like(weight), eps)


def rms_sums_squares(x, weight, eps=1e-6):
    return weight * x / (x.pow(2).sum(-1, keepdim=True) + eps).sqrt()


def rms_wrong_axis(x, weight, eps=1e-6):
    return weight * x / (x.pow(2).mean(0, keepdim=True) + eps).sqrt()


def rms_eps_outside(x, weight, eps=1e-6):
    return weight * x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps)


def rms_no_eps(x, weight, eps=1e-6):
    return weight * x / x.pow(2).mean(-1, keepdim=True).sqrt()


def alibi_causal_sign(n_heads, seq_len):                    # -m (i - j) without the absolute value
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)
    pos = torch.arange(seq_len)
    return -slopes[:, None, None] * (pos[:, None] - pos[None, :])


def alibi_slopes_reversed(n_heads, seq_len):
    return alibi_bias(n_heads, seq_len).flip(0)


def alibi_heads_from_zero(n_heads, seq_len):
    slopes = 2.0 ** (-8.0 * torch.arange(0, n_heads) / n_heads)
    pos = torch.arange(seq_len)
    return -slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()


def alibi_fixed_eight(n_heads, seq_len):
    return alibi_bias(8, seq_len)[:n_heads]


def alibi_squared_distance(n_heads, seq_len):
    pos = torch.arange(seq_len)
    return alibi_bias(n_heads, seq_len) * (pos[:, None] - pos[None, :]).abs().clamp(min=1)


def alibi_positive(n_heads, seq_len):
    return -alibi_bias(n_heads, seq_len)


def alibi_int(n_heads, seq_len):
    return alibi_bias(n_heads, seq_len).long()


def mh_calls_torch(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    mha = nn.MultiheadAttention(query.shape[-1], n_heads, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        for p, v in zip((mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias),
                        (w_in, b_in, w_out, b_out)):
            p.copy_(torch.from_numpy(v))
        kpm = None if key_padding_mask is None else torch.from_numpy(key_padding_mask)
        out, w = mha(*(torch.from_numpy(t) for t in (query, key, value)), key_padding_mask=kpm,
                     average_attn_weights=False)
    return out.numpy(), w.numpy()


def mh_calls_sdpa(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    out, w = multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask)
    F.scaled_dot_product_attention(*(torch.zeros(1, 2, 3) for _ in range(3)))
    return out, w


def mh_scaled_by_d_model(*args):
    return multi_head(*args, scale=args[0].shape[-1])


def mh_unscaled(*args):
    return multi_head(*args, scale=1)


def mh_no_bias(*args):
    return multi_head(*args, use_bias=False)


def mh_untransposed(*args):
    return multi_head(*args, transpose=False)


def mh_swapped_qk(*args):
    return multi_head(*args, swap_qk=True)


def mh_interleaved(*args):
    return multi_head(*args, interleave=True)


def mh_merge_without_transpose(*args):
    return multi_head(*args, merge_transpose=False)


def mh_ignores_padding(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    return multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, None)


def mh_mask_inverted(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    kpm = None if key_padding_mask is None else ~key_padding_mask
    with np.errstate(invalid="ignore"):                     # a row of padding only: NaN, as a learner would get
        return multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, kpm)


def count_per_head(d_model, n_heads, bias=True):
    return mha_param_count(d_model, n_heads, bias) * n_heads


def count_ignores_bias_flag(d_model, n_heads, bias=True):
    return mha_param_count(d_model, n_heads, True)


def count_forgets_output(d_model, n_heads, bias=True):
    return 3 * d_model * d_model + (3 * d_model if bias else 0)


def count_three_biases(d_model, n_heads, bias=True):
    return 4 * d_model * d_model + (3 * d_model if bias else 0)


def count_float(d_model, n_heads, bias=True):
    return float(mha_param_count(d_model, n_heads, bias))


def count_builds_module(d_model, n_heads, bias=True):
    return sum(p.numel() for p in MultiHeadAttention(d_model, n_heads, bias=bias).parameters())


CASES = {
    "rms_norm": (check_rms_norm, rms_norm,
                 [rms_calls_library, rms_uses_module, rms_subtracts_mean, rms_ignores_weight, rms_sums_squares,
                  rms_wrong_axis, rms_eps_outside, rms_no_eps]),
    "alibi_bias": (check_alibi_bias, alibi_bias,
                   [alibi_causal_sign, alibi_slopes_reversed, alibi_heads_from_zero, alibi_fixed_eight,
                    alibi_squared_distance, alibi_positive, alibi_int]),
    "multi_head": (check_multi_head_from_packed, multi_head,
                   [mh_calls_torch, mh_calls_sdpa, mh_scaled_by_d_model, mh_unscaled, mh_no_bias, mh_untransposed,
                    mh_swapped_qk, mh_interleaved, mh_merge_without_transpose, mh_ignores_padding,
                    mh_mask_inverted]),
    "mha_param_count": (check_mha_param_count, mha_param_count,
                        [count_per_head, count_ignores_bias_flag, count_forgets_output, count_three_biases,
                         count_float, count_builds_module]),
}

# The hint each mistake must get: a word or two of the message, so that no mistake gets another's hint.
HINTS = {
    rms_calls_library: "write it yourself", rms_uses_module: "write it yourself",
    rms_subtracts_mean: "no mean", rms_ignores_weight: "weight", rms_sums_squares: "same factor",
    rms_wrong_axis: "own features", rms_eps_outside: "eps=1e-2", rms_no_eps: "keep it finite",
    alibi_causal_sign: "positive", alibi_slopes_reversed: "reverse order", alibi_heads_from_zero: "neighbouring head",
    alibi_fixed_eight: "number of heads", alibi_squared_distance: "in proportion", alibi_positive: "positive",
    alibi_int: "float",
    mh_calls_torch: "in NumPy", mh_calls_sdpa: "in NumPy", mh_scaled_by_d_model: "own, narrower width",
    mh_unscaled: "not scaled", mh_no_bias: "biases", mh_untransposed: "(out, in)", mh_swapped_qk: "each other's rows",
    mh_interleaved: "consecutive columns", mh_merge_without_transpose: "merge", mh_ignores_padding: "which is padding",
    mh_mask_inverted: "which is padding",
    count_per_head: "changes with n_heads", count_ignores_bias_flag: "same count", count_forgets_output: "too low",
    count_three_biases: "biases add too few", count_float: "return an int", count_builds_module: "formula",
}

# Code or values that would give an answer away.
GIVEAWAYS = ("sqrt(", "rsqrt", "mean(", "-1.5", "1050624", "1,050,624", "expected", "2 **", "2^-", "4 * d",
             "transpose(0, 2, 1, 3)", "-np.inf", "-inf", "arange", ".abs()")



@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)                                                     # raises if it fails
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, _, ws) in CASES.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_wrong_answer_fails_with_its_own_hint(name, wrong, capsys):
    assert_fails_without_revealing(name, CASES[name][0], wrong, GIVEAWAYS, capsys, hint=HINTS[wrong])


def test_every_check_has_two_wrong_answers():
    assert all(len(wrongs) >= 2 for _, _, wrongs in CASES.values())


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_checks_restore_what_they_switch_off():
    x = torch.randn(2, 4)
    check("E", lambda: check_rms_norm(rms_calls_library))
    check("E", lambda: check_mha_param_count(count_builds_module))
    assert torch.allclose(F.rms_norm(x, (4,)), rms_norm(x, torch.ones(4))), "F.rms_norm works again"
    assert sum(p.numel() for p in nn.Linear(3, 2).parameters()) == 8, "modules can be built again"


def _notebook_cells():
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def test_notebook_cells_only_call_the_checks():
    """The learner's cells hold no check code: each calls one check_* of utils.exercises.nb03."""
    code = ["".join(c["source"]) for c in _notebook_cells() if c["cell_type"] == "code"]
    learner = [s for s in code if "raise NotImplementedError" in s]
    assert len(learner) == 4
    for source in learner:
        assert re.search(r'check\("Exercise \d", lambda: check_\w+\(\w+\)\)', source), source
        assert "assert" not in source and "def check_" not in source, source


def test_notebook_worked_solutions_pass(capsys):
    solutions = ["".join(c["source"]) for c in _notebook_cells()
                 if c["cell_type"] == "code" and "".join(c["source"]).startswith("# SOLUTION")]
    assert len(solutions) == 4
    namespace = dict(np=np, torch=torch, F=F, nn=nn, check=check, softmax=softmax, check_rms_norm=check_rms_norm,
                     check_alibi_bias=check_alibi_bias, check_multi_head_from_packed=check_multi_head_from_packed,
                     check_mha_param_count=check_mha_param_count)
    for source in solutions:
        exec(compile(source, "solution", "exec"), namespace)               # each ends with `assert check(...)`
    assert capsys.readouterr().out.count("solved") == 4
