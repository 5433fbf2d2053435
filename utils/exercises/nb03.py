"""The exercise checks of notebook 03 (see :mod:`utils.exercises` for how a check reports).

Each ``check_*`` builds its own inputs, compares the learner's function with a reference written
here, and on a difference names the mistake (one hint a typical mistake) without the right values.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from utils.attention import MultiHeadAttention
from utils.exercises import first_bad as _first_bad


class _Forbid(TorchFunctionMode):
    """Inside it, calling one of ``funcs`` (however it was imported) raises ``AssertionError(message)``."""

    def __init__(self, funcs: set, message: str) -> None:
        super().__init__()
        self.funcs, self.message = funcs, message

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.funcs:
            raise AssertionError(self.message)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _forbidden(funcs: set, message: str) -> Iterator[None]:
    with _Forbid(funcs, message):
        yield


# -- Exercise 1 · RMSNorm -----------------------------------------------------------------------
def _rms_norm_reference(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return weight * x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def check_rms_norm(rms_norm: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Notebook 03: ``rms_norm(x, weight, eps)`` over the last dimension, written from the formula.
    PyTorch's own RMSNorm (``F.rms_norm``, ``torch.rms_norm``, ``nn.RMSNorm``) is switched off inside."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g, dtype=torch.float64) * 2 + 1   # (batch, seq, d)
    w = torch.randn(16, generator=g, dtype=torch.float64) + 2             # (d,), the gain γ
    ones = torch.ones(16, dtype=torch.float64)
    message = ("your rms_norm calls PyTorch's own RMSNorm (F.rms_norm, torch.rms_norm or nn.RMSNorm); "
               "the point of the exercise is to write it yourself from the formula")
    with _forbidden({F.rms_norm, torch.rms_norm}, message):
        out = rms_norm(x, w, 1e-6)
        assert isinstance(out, Tensor), f"return a torch.Tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the shape should stay (batch, seq, d) = {tuple(x.shape)}, got {tuple(out.shape)}"
        plain = rms_norm(x, ones, 1e-6)
        assert not torch.allclose(out, plain), "the output does not change with `weight`: multiply by the gain γ"
        const = rms_norm(torch.full((2, 4), 3.0, dtype=torch.float64), torch.ones(4, dtype=torch.float64), 1e-6)
        assert not torch.allclose(const, torch.zeros_like(const), atol=1e-3), \
            "a constant vector came out as zeros: RMSNorm subtracts no mean (that is LayerNorm's step)"
        rms = plain.pow(2).mean(-1).sqrt()                                 # (batch, seq)
        if not torch.allclose(rms, torch.ones_like(rms), atol=1e-4):
            assert not torch.allclose(rms, rms.flatten()[0].expand_as(rms), atol=1e-6), (
                "with weight all ones, every position should come out with a root mean square of 1, and all "
                "of yours are off by the same factor: is it the mean of the squares?")
            raise AssertionError("with weight all ones, every position should come out with a root mean square "
                                 "of 1: normalise each position over its own features (the last dimension)")
        zeros = rms_norm(torch.zeros(2, 16, dtype=torch.float64), w, 1e-6)
        assert torch.isfinite(zeros).all(), "an all-zero input gives inf or NaN: eps is there to keep it finite"
        small = x * 0.05
        bad = _first_bad((rms_norm(small, w, 1e-2) - _rms_norm_reference(small, w, 1e-2)).numpy(), 1e-9)
        assert bad is None, "right with a tiny eps, wrong with eps=1e-2: check where eps enters the formula"
    bad = _first_bad((out - _rms_norm_reference(x, w, 1e-6)).numpy(), 1e-9)
    assert bad is None, f"differs from RMSNorm at sentence {bad[0]}, position {bad[1]}"


# -- Exercise 2 · ALiBi -------------------------------------------------------------------------
def _alibi_slopes(n_heads: int) -> np.ndarray:
    return 2.0 ** (-8.0 * np.arange(1, n_heads + 1) / n_heads)


def check_alibi_bias(alibi_bias: Callable[[int, int], Tensor]) -> None:
    """Notebook 03: ``alibi_bias(n_heads, seq_len)`` → float ``(n_heads, seq_len, seq_len)``,
    the bidirectional ALiBi bias ``-m_h |i - j|`` with ``m_h = 2^(-8 (h + 1) / H)``."""
    for n_heads, seq_len in [(8, 6), (4, 5)]:
        bias = alibi_bias(n_heads, seq_len)
        label = f"alibi_bias({n_heads}, {seq_len})"
        assert isinstance(bias, Tensor), f"{label}: return a torch.Tensor, got {type(bias).__name__}"
        assert tuple(bias.shape) == (n_heads, seq_len, seq_len), \
            f"{label}: the shape should be (n_heads, seq_len, seq_len), got {tuple(bias.shape)}"
        assert bias.is_floating_point(), f"{label}: return a float tensor (it is added to float scores), got {bias.dtype}"
        b = bias.detach().double().numpy()
        assert np.all(np.abs(np.diagonal(b, axis1=1, axis2=2)) < 1e-6), \
            f"{label}: a key at distance 0 (the diagonal) should cost nothing"
        assert np.all(b <= 1e-9), f"{label}: the bias is a penalty, so no entry should be positive"
        assert np.allclose(b, b.transpose(0, 2, 1), atol=1e-6), \
            f"{label}: the bidirectional bias should be the same for (query i, key j) as for (query j, key i)"
        distance = np.abs(np.arange(seq_len)[:, None] - np.arange(seq_len)[None, :])  # (seq, seq)
        off = distance > 0
        per_step = -b[:, off] / distance[off]                              # (heads, pairs): the slope, pair by pair
        assert np.allclose(per_step, per_step[:, :1], rtol=1e-5, atol=1e-7), \
            f"{label}: within one head, the penalty should grow in proportion to the distance"
        slopes, ref = per_step[:, 0], _alibi_slopes(n_heads)
        if np.allclose(slopes, ref, rtol=1e-5):
            continue
        if np.allclose(slopes, ref[::-1], rtol=1e-5):
            raise AssertionError(f"{label}: the slopes are in reverse order: head 0 should be the steepest")
        if np.allclose(slopes, 2.0 ** (-8.0 * np.arange(n_heads) / n_heads), rtol=1e-5) or \
                np.allclose(slopes, 2.0 ** (-8.0 * np.arange(2, n_heads + 2) / n_heads), rtol=1e-5):
            raise AssertionError(f"{label}: every slope is that of the neighbouring head: check the exponent for "
                                 "the first head, h = 0")
        if n_heads != 8 and np.allclose(slopes, _alibi_slopes(8)[:n_heads], rtol=1e-5):
            raise AssertionError(f"{label}: right for 8 heads, not for {n_heads}: the slopes depend on the number of "
                                 "heads H")
        head = int(np.flatnonzero(~np.isclose(slopes, ref, rtol=1e-5))[0])
        raise AssertionError(f"{label}: the slope of head {head} differs from the prompt's m_h")


# -- Exercise 3 · multi-head attention from PyTorch's packed weights, in NumPy ---------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _mha_variant(query, key, value, w_in, b_in, w_out, b_out, n_heads, kpm, *, scale="d_k", proj_bias=True,
                 transposed=True, split="blocks", merge="transpose", swap_qk=False):
    """The reference (all defaults), or one typical mistake, to tell the learner which one they made."""
    d_model = query.shape[-1]
    d_k = d_model // n_heads
    (w_q, w_k, w_v), (b_q, b_k, b_v) = np.split(w_in, 3), np.split(b_in, 3)
    if swap_qk:
        (w_q, b_q), (w_k, b_k) = (w_k, b_k), (w_q, b_q)
    if not proj_bias:
        b_q, b_k = np.zeros_like(b_q), np.zeros_like(b_k)

    def project(t, w, b):
        return t @ (w.T if transposed else w) + b

    def to_heads(t):                                                       # (batch, seq, d_model)
        b, s, _ = t.shape
        if split == "interleaved":                                         # column c goes to head c % n_heads
            return t.reshape(b, s, d_k, n_heads).transpose(0, 3, 1, 2)
        return t.reshape(b, s, n_heads, d_k).transpose(0, 2, 1, 3)         # (batch, heads, seq, d_k)

    q, k, v = to_heads(project(query, w_q, b_q)), to_heads(project(key, w_k, b_k)), to_heads(project(value, w_v, b_v))
    divisor = {"d_k": np.sqrt(d_k), "d_model": np.sqrt(d_model), "none": 1.0}[scale]
    scores = q @ k.transpose(0, 1, 3, 2) / divisor                         # (batch, heads, seq_q, seq_k)
    if kpm is not None:
        scores = np.where(kpm[:, None, None, :], -np.inf, scores)
    weights = _softmax(scores)
    heads = weights @ v                                                    # (batch, heads, seq_q, d_k)
    b, h, s, _ = heads.shape
    merged = heads.reshape(b, s, d_model) if merge == "reshape" else heads.transpose(0, 2, 1, 3).reshape(b, s, d_model)
    return merged @ w_out.T + b_out, weights


_WEIGHT_MISTAKES = [
    (dict(scale="d_model"), "the scores are scaled for the model's width d_model, but each head is an attention "
                            "of its own, narrower width"),
    (dict(scale="none"), "the scores are not scaled (notebook 02's attention scales them)"),
    (dict(proj_bias=False), "the weights are those of attention without the projection biases: add each "
                            "projection's part of in_proj_bias"),
    (dict(transposed=False), "the projections use the weights as (in, out); they are stored (out, in), as nn.Linear "
                             "stores them"),
    (dict(swap_qk=True), "the queries and the keys use each other's rows of in_proj_weight (the blocks are Q, K, V, "
                         "in that order)"),
    (dict(split="interleaved"), "right with one head, wrong with several: head i should own a block of d_k "
                                "consecutive columns of the projection, not every n_heads-th column"),
]


def check_multi_head_from_packed(multi_head: Callable[..., tuple[np.ndarray, np.ndarray]]) -> None:
    """Notebook 03: ``multi_head(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight,
    out_proj_bias, n_heads, key_padding_mask=None)`` in NumPy → ``(output (batch, seq_q, d_model),
    weights (batch, heads, seq_q, seq_k))``, equal to ``nn.MultiheadAttention`` (batch_first) with
    those weights; ``key_padding_mask`` is PyTorch's ``(batch, seq_k)``, True = padding.
    PyTorch's attention functions are switched off inside: the exercise asks for NumPy."""
    torch.manual_seed(3)
    numpy_only = ("your function calls PyTorch's attention (nn.MultiheadAttention or "
                  "F.scaled_dot_product_attention); the exercise asks you to write it in NumPy")
    forbidden = {F.multi_head_attention_forward, F.scaled_dot_product_attention,
                 torch._native_multi_head_attention}
    for n_heads in (1, 4):
        mha = nn.MultiheadAttention(12, n_heads, batch_first=True, dtype=torch.float64).eval()
        with torch.no_grad():
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
        x, memory = torch.randn(2, 5, 12, dtype=torch.float64), torch.randn(2, 7, 12, dtype=torch.float64)
        pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
        weights = [t.detach().numpy() for t in (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight,
                                                mha.out_proj.bias)]
        for name, (qq, kv, kpm) in {"self-attention": (x, x, None),
                                    "cross-attention with padding": (x, memory, pad)}.items():
            with torch.no_grad():
                ref_out, ref_w = mha(qq, kv, kv, key_padding_mask=kpm, average_attn_weights=False)
            args = (qq.numpy(), kv.numpy(), kv.numpy(), *weights, n_heads, None if kpm is None else kpm.numpy())
            with _forbidden(forbidden, numpy_only), torch.no_grad():
                result = multi_head(*args)
            label = f"{name}, {n_heads} head{'s' if n_heads > 1 else ''}"
            assert isinstance(result, tuple) and len(result) == 2, "return a pair (output, weights)"
            out, w = (np.asarray(r) for r in result)
            tol = 1e-9 if w.dtype == out.dtype == np.float64 else 1e-5     # float32 is right to about 1e-7
            assert out.shape == tuple(ref_out.shape), f"{label}: output should be {tuple(ref_out.shape)}, got {out.shape}"
            assert w.shape == tuple(ref_w.shape), \
                f"{label}: weights should be (batch, heads, seq_q, seq_k) = {tuple(ref_w.shape)}, got {w.shape}"
            if kpm is not None:
                leak = np.argwhere(kpm.numpy()[:, None, None, :] & (w != 0))
                assert not len(leak), f"{label}: sentence {leak[0][0]}, head {leak[0][1]} puts weight on key " \
                                      f"{leak[0][3]}, which is padding (PyTorch's key_padding_mask: True = padding)"
            bad = _first_bad(np.nan_to_num(w.sum(-1), nan=2.0) - 1, tol)
            assert bad is None, f"{label}: the weights of sentence {bad[0]}, head {bad[1]}, query {bad[2]} do not sum to 1"
            ok_w = np.abs(w - ref_w.numpy()).max(axis=(0, 2, 3)) < tol       # (heads,)
            if not ok_w.all():
                for mistake, hint in _WEIGHT_MISTAKES:
                    if np.abs(w - _mha_variant(*args, **mistake)[1]).max() < tol:
                        raise AssertionError(f"{label}: {hint}")
                raise AssertionError(f"{label}: the attention weights of head(s) {np.flatnonzero(~ok_w).tolist()} "
                                     "differ from nn.MultiheadAttention's: check the query and key projections")
            if np.abs(out - ref_out.numpy()).max() >= tol:
                if np.abs(out - _mha_variant(*args, merge="reshape")[0]).max() < tol:
                    raise AssertionError(f"{label}: the weights are right, the output is not: the merge puts rows "
                                         "of different positions together; bring the head axis back next to d_k "
                                         "before the reshape")
                raise AssertionError(f"{label}: the weights are right, the output is not: check the values' "
                                     "projection, the merge of the heads and the output projection")


# -- Exercise 4 · the parameters of multi-head attention ------------------------------------------
def _mha_parameters(d_model: int, n_heads: int, bias: bool) -> int:
    ours = sum(p.numel() for p in MultiHeadAttention(d_model, n_heads, bias=bias).parameters())
    assert ours == sum(p.numel() for p in nn.MultiheadAttention(d_model, n_heads, bias=bias).parameters())
    return ours


@contextlib.contextmanager
def _no_modules(message: str) -> Iterator[None]:
    """Inside it, building any ``nn.Module`` raises ``AssertionError(message)``."""
    init = nn.Module.__init__

    def refuse(self, *args, **kwargs):
        raise AssertionError(message)

    nn.Module.__init__ = refuse
    try:
        yield
    finally:
        nn.Module.__init__ = init


def check_mha_param_count(mha_param_count: Callable[[int, int, bool], int]) -> None:
    """Notebook 03: ``mha_param_count(d_model, n_heads, bias)`` → the number of parameters of
    ``MultiHeadAttention(d_model, n_heads, bias=bias)`` (and of ``nn.MultiheadAttention``), as a formula:
    building a module inside it is refused."""
    cases = [(512, 8, True), (512, 1, True), (64, 4, False), (96, 6, True), (96, 6, False), (96, 3, False)]
    with _no_modules("your function builds a module and counts its parameters; the exercise asks for the "
                     "formula, written from the shapes of the weights"):
        got = {case: mha_param_count(*case) for case in cases}
        by_heads = {h: mha_param_count(96, h, False) for h in (1, 2, 3, 6, 12)}
    for case, n in got.items():
        assert isinstance(n, (int, np.integer)) and not isinstance(n, bool), \
            f"mha_param_count{case}: return an int, got {type(n).__name__}"
    assert len(set(by_heads.values())) == 1, \
        "your count changes with n_heads: does splitting a projection into heads add or remove any weight?"
    with_bias, without = got[(96, 6, True)], got[(96, 6, False)]
    assert with_bias != without, "bias=True and bias=False give the same count: bias=False has no bias vectors"
    for d_model, n_heads in [(64, 4), (96, 6)]:
        weights_only, right = got[(d_model, n_heads, False)], _mha_parameters(d_model, n_heads, False)
        assert weights_only == right, (f"with bias=False (weights only) your count is too "
                                       f"{'low' if weights_only < right else 'high'}: which projection matrices are "
                                       "there, and what shape does each have?")
    extra, right = with_bias - without, _mha_parameters(96, 6, True) - _mha_parameters(96, 6, False)
    assert extra == right, (f"the weights are right, the biases add too {'few' if extra < right else 'many'}: which "
                            "projections have a bias, and how long is each?")
    for case, n in got.items():
        right = _mha_parameters(*case)
        assert n == right, f"mha_param_count{case} is too {'low' if n < right else 'high'}"
