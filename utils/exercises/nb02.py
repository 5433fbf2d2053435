"""The exercise checks of notebook 02 (see :mod:`utils.exercises` for how a check reports).

Each ``check_*`` calls the learner's function on inputs it builds, compares with a reference written
here, and raises ``AssertionError`` with a message that says what is wrong, never the right values.
A typical mistake with a recognisable result (scores not scaled, transposed, a bias added before the
scale, a temperature that multiplies) gets a hint of its own.

Exercises 1, 2 and 4 ask for attention written by hand, so their learner's function runs with the
library's attention switched off (:func:`_written_by_hand`): a call to ``F.scaled_dot_product_attention``,
``utils.attention.scaled_dot_product_attention`` or the notebook's own ``attention_v2`` fails the check
and says that the point is to write it yourself.
"""

from __future__ import annotations

import contextlib
import math
import types
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import utils.attention
from utils.attention import scaled_dot_product_attention
from utils.exercises import first_bad as _first_bad

# -- the library's attention, switched off while the learner's function runs ------------------------------

_LIBRARY = [(F, "scaled_dot_product_attention"), (torch._C._nn, "scaled_dot_product_attention"),
            (utils.attention, "scaled_dot_product_attention"), (F, "multi_head_attention_forward")]
_READY_MADE = {"scaled_dot_product_attention", "multi_head_attention_forward",      # the library's
               "attention_v1", "attention_v2", "attention"}                        # the notebook's own


def _names_used(code: types.CodeType) -> set[str]:
    """The global and attribute names a function's code (and the code nested in it) looks up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


@contextlib.contextmanager
def _written_by_hand(fn: Callable) -> Iterator[None]:
    """Run the body with the library's attention replaced by a function that fails the check; the
    learner's function must not name a ready-made attention either (the notebook's ``attention_v2``)."""
    code = getattr(fn, "__code__", None)
    used = sorted(_names_used(code) & _READY_MADE) if code is not None else []
    if used:
        raise AssertionError(f"your function calls `{used[0]}`, a ready-made attention: the point of this "
                             "exercise is to write it yourself, from the formula")
    calls: list[str] = []

    def refuse(name: str) -> Callable:
        def refused(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"your function calls `{name}`, a ready-made attention: the point of this "
                                 "exercise is to write it yourself, from the formula")
        return refused

    originals = [(owner, name, getattr(owner, name)) for owner, name in _LIBRARY if hasattr(owner, name)]
    library = {id(value) for _, _, value in originals}
    namespace = getattr(fn, "__globals__", {})
    aliases = [(name, value) for name, value in namespace.items() if id(value) in library]
    try:
        for owner, name, _ in originals:
            setattr(owner, name, refuse(name))
        for name, _ in aliases:
            namespace[name] = refuse(name)
        yield
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)
        for name, value in aliases:
            namespace[name] = value
    if calls:
        raise AssertionError(f"your function calls `{calls[0]}`, a ready-made attention: the point of this "
                             "exercise is to write it yourself, from the formula")


# -- shared pieces ------------------------------------------------------------------------------------------


def _pair(result, name: str, out_shape: tuple, w_shape: tuple) -> tuple[Tensor, Tensor]:
    """The learner's ``(output, weights)``, after checking it is a pair of tensors of the right shapes."""
    assert isinstance(result, tuple) and len(result) == 2, "return a pair (output, weights)"
    out, w = result
    assert isinstance(out, Tensor) and isinstance(w, Tensor), \
        f"return two torch.Tensors, got {type(out).__name__} and {type(w).__name__}"
    assert tuple(w.shape) == w_shape, f"with {name}: weights should have shape {w_shape}, got {tuple(w.shape)}"
    assert tuple(out.shape) == out_shape, f"with {name}: output should have shape {out_shape}, got {tuple(out.shape)}"
    assert not torch.isnan(w).any(), f"with {name}: the weights contain NaN"
    return out.detach(), w.detach()


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-5))


def _first_match(w: Tensor, variants: dict[str, Tensor]) -> str | None:
    """The hint of the first typical mistake whose weights equal ``w``."""
    return next((hint for hint, ref in variants.items() if _close(w, ref)), None)


def _softmax(scores: Tensor) -> Tensor:
    return torch.softmax(scores, dim=-1)


# -- Exercise 1 · an additive bias ----------------------------------------------------------------------------


def check_attention_with_bias(attention_with_bias: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Notebook 02, exercise 1: ``attention_with_bias(q, k, v, bias)`` → ``(output, weights)`` with the bias
    added to the scaled scores before the softmax; written by hand."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, n, d, generator=g) for n, d in ((4, 8), (6, 8), (6, 5)))
    causal = torch.ones(4, 6, dtype=torch.bool).tril()
    cases = [("a zero bias", torch.zeros(4, 6)), ("a random bias (seq_q, seq_k)", torch.randn(4, 6, generator=g)),
             ("a bias per sentence (batch, 1, 1, seq_k)", torch.randn(2, 1, 1, 6, generator=g)),
             ("a bias of 0 and -inf", torch.zeros(4, 6).masked_fill(~causal, float("-inf")))]
    raw = q @ k.transpose(-2, -1)                                           # (2, 3, 4, 6)
    for name, bias in cases:
        with _written_by_hand(attention_with_bias):
            result = attention_with_bias(q.clone(), k.clone(), v.clone(), bias.clone())
        out, w = _pair(result, name, (2, 3, 4, 5), (2, 3, 4, 6))
        assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5), \
            f"with {name}: a query's weights do not sum to 1: add the bias before the softmax"
        ref = _softmax(raw / math.sqrt(8) + bias)
        if not _close(w, ref):
            hint = _first_match(w, {
                "the scores are not scaled: divide them as in section 4, then add the bias": _softmax(raw + bias),
                "your weights do not change with the bias: add it to the scores": _softmax(raw / math.sqrt(8)),
                "the bias is scaled along with the scores: add it after dividing them": _softmax((raw + bias) / math.sqrt(8)),
                "the bias is subtracted from the scores: add it": _softmax(raw / math.sqrt(8) - bias),
            })
            if hint is None and not bias.abs().sum():
                hint = "with a zero bias the result should be plain scaled dot-product attention (section 4); it is not"
            raise AssertionError(f"with {name}: {hint or 'the weights differ from the formula' + chr(39) + 's'}")
        assert _close(out, ref @ v), f"with {name}: the weights are right but the output is not their sum of values"


# -- Exercise 2 · find the mask bug ---------------------------------------------------------------------------


def check_fixed_attention(fixed_attention: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Notebook 02, exercise 2: ``fixed_attention(q, k, v, mask)`` → ``(output, weights)``, masked attention
    where a forbidden key gets exactly zero weight; written by hand."""
    g = torch.Generator().manual_seed(2)
    q, k, v = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 3, generator=g)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()                       # (seq_q, seq_k)
    padding = (torch.arange(5) < torch.tensor([[3], [5]]))[:, None, :]     # (batch, 1, seq_k): lengths 3 and 5
    raw = q @ k.transpose(-2, -1)                                           # (2, 5, 5)
    for name, mask in [("a causal mask (seq_q, seq_k)", causal), ("a padding mask (batch, 1, seq_k)", padding),
                       ("padding & causal", padding & causal)]:
        with _written_by_hand(fixed_attention):
            result = fixed_attention(q.clone(), k.clone(), v.clone(), mask.clone())
        try:
            out, w = _pair(result, name, (2, 5, 3), (2, 5, 5))
        except AssertionError as err:
            if "NaN" in str(err):
                raise AssertionError(f"with {name}: the weights contain NaN, so some query had every key "
                                     "forbidden; True in the mask means 'may attend'") from None
            raise
        leak = torch.nonzero(~mask.expand_as(w) & (w != 0))
        if len(leak):
            s, i, j = leak[0].tolist()
            raise AssertionError(f"with {name}: sentence {s}, query {i} gives weight to key {j}, which the mask "
                                 "forbids; a forbidden key must get exactly zero weight")
        assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5), \
            f"with {name}: a query's weights do not sum to 1 (they are a distribution over the allowed keys)"
        ref = _softmax((raw / math.sqrt(4)).masked_fill(~mask, float("-inf")))
        if not _close(w, ref):
            unscaled = _softmax(raw.masked_fill(~mask, float("-inf")))
            raise AssertionError(f"with {name}: " + ("the scores are no longer scaled: keep the buggy function's "
                                                     "scores and change only the masking" if _close(w, unscaled)
                                                     else "the weights of the allowed keys differ from masked "
                                                          "attention's: change only how the mask is applied"))
        assert _close(out, ref @ v), f"with {name}: the weights are right but the output is not their sum of values"


# -- Exercise 3 · a sliding window ----------------------------------------------------------------------------


def check_sliding_window_mask(sliding_window_mask: Callable[[int, int], Tensor]) -> None:
    """Notebook 02, exercise 3: ``sliding_window_mask(size, window)`` → boolean ``(size, size)``, True where
    query ``i`` may see key ``j``: its ``window`` most recent positions, itself included."""
    for size, window in [(6, 3), (6, 1), (6, 6), (9, 4), (5, 8)]:
        m = sliding_window_mask(size, window)
        assert isinstance(m, Tensor), f"return a torch.Tensor, got {type(m).__name__}"
        assert m.dtype == torch.bool, f"return a boolean mask (True = may attend), got dtype {m.dtype}"
        assert tuple(m.shape) == (size, size), f"shape should be (size, size) = {(size, size)}, got {tuple(m.shape)}"
        i, j = torch.arange(size)[:, None], torch.arange(size)[None, :]
        where = f"size={size}, window={window}"
        future = torch.nonzero(m & (j > i))
        assert not len(future), (f"{where}: query {future[0, 0].item()} may see key {future[0, 1].item()}, a later "
                                 "position; the window reaches back only")
        missing_self = torch.nonzero(~m.diagonal())
        assert not len(missing_self), (f"{where}: query {missing_self[0].item()} may not see itself; the window "
                                       "includes the query's own position")
        seen = m.sum(-1)
        too_many = torch.nonzero(seen > window)
        assert not len(too_many), (f"{where}: query {too_many[0].item()} sees {seen[too_many[0]].item()} keys, more "
                                   f"than window = {window}")
        right = (i - j >= 0) & (i - j < window)
        wrong = torch.nonzero(m != right)
        assert not len(wrong), (f"{where}: query {wrong[0, 0].item()} should see its {window} most recent positions "
                                "(or all earlier ones, if there are fewer); it does not")


# -- Exercise 4 · temperature ---------------------------------------------------------------------------------


def check_attention_with_temperature(attention_with_temperature: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Notebook 02, exercise 4: ``attention_with_temperature(q, k, v, temperature)`` → ``(output, weights)``
    with the scaled scores divided by the temperature; ``ValueError`` for a temperature that is not
    positive; written by hand."""
    g = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(5, 8, generator=g), torch.randn(7, 8, generator=g), torch.randn(7, 3, generator=g)
    raw = q @ k.T                                                           # (5, 7)
    for tau in (1.0, 0.5, 2.0, 1e-3, 1e3):
        name = f"temperature {tau:g}"
        with _written_by_hand(attention_with_temperature):
            result = attention_with_temperature(q.clone(), k.clone(), v.clone(), tau)
        out, w = _pair(result, name, (5, 3), (5, 7))
        assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5), \
            f"with {name}: a query's weights do not sum to 1: divide the scores, before the softmax"
        ref = _softmax(raw / (tau * math.sqrt(8)))
        if not _close(w, ref):
            hint = _first_match(w, {
                "the scores are divided by the temperature but no longer scaled as in section 4": _softmax(raw / tau),
                "your weights do not change with the temperature": _softmax(raw / math.sqrt(8)),
                "a temperature above 1 should flatten the weights and one below 1 sharpen them; yours do the "
                "opposite": _softmax(raw * tau / math.sqrt(8)),
            })
            if hint is None and tau == 1.0:
                hint = "with temperature 1 the result should be plain scaled dot-product attention (section 4); it is not"
            raise AssertionError(f"with {name}: {hint or 'the weights differ from the formula' + chr(39) + 's'}")
        assert _close(out, ref @ v), f"with {name}: the weights are right but the output is not their sum of values"
    for bad in (0.0, -1.0):
        try:
            with _written_by_hand(attention_with_temperature):
                attention_with_temperature(q, k, v, bad)
        except ValueError:
            continue
        raise AssertionError(f"a temperature of {bad:g} should raise ValueError (a temperature must be positive)")


# -- Exercise 5 · masked attention in NumPy -------------------------------------------------------------------


def _reference_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None):
    m = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool))
    out, w = scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), m)
    return out.numpy(), w.numpy()


def _softmax_np(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _weight_hint(w: np.ndarray, q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, tol: float) -> str:
    """Name the mistake whose weights equal ``w``: unscaled, wrongly scaled or transposed scores."""
    raw = q @ np.swapaxes(k, -1, -2)                                         # (..., seq_q, seq_k)
    d_k = q.shape[-1]
    variants = {
        "the scores are not scaled (section 4 divides them before the softmax)": raw,
        "the scores are divided by the wrong factor: see section 4": raw / d_k,
        "the scores are transposed: row i of the scores should hold query i's dot products with every key":
            np.swapaxes(raw, -1, -2) / math.sqrt(d_k),
    }
    for hint, scores in variants.items():
        if scores.shape == w.shape and _first_bad(w - _softmax_np(scores, mask), tol) is None:
            return hint
    return "check the scores and the softmax"


def check_masked_attention_numpy(attention: Callable[..., tuple[np.ndarray, np.ndarray]]) -> None:
    """Notebook 02, exercise 5: ``attention(Q, K, V, mask)`` in NumPy → ``(output, weights)``; ``mask`` is
    boolean (True = may attend), broadcastable to ``(..., seq_q, seq_k)``, or None."""
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 3))
    causal = np.tril(np.ones((6, 6), dtype=bool))                          # (seq_q, seq_k)
    lengths = np.array([6, 4])
    padding = (np.arange(6)[None, :] < lengths[:, None])[:, None, :]       # (batch, 1, seq_k)
    cases = [("no mask", None), ("a causal mask (seq_q, seq_k)", causal),
             ("a padding mask (batch, 1, seq_k)", padding), ("padding & causal", padding & causal)]
    for name, mask in cases:
        result = attention(q.copy(), k.copy(), v.copy(), None if mask is None else mask.copy())
        assert isinstance(result, tuple) and len(result) == 2, "return a pair (output, weights)"
        out, w = (np.asarray(r) for r in result)
        ref_out, ref_w = _reference_attention(q, k, v, mask)
        tol = 1e-9 if w.dtype == out.dtype == np.float64 else 1e-5         # float32 is right to about 1e-7
        assert w.shape == ref_w.shape, f"with {name}: weights should have shape {ref_w.shape}, got {w.shape}"
        assert out.shape == ref_out.shape, f"with {name}: output should have shape {ref_out.shape}, got {out.shape}"
        assert not np.isnan(w).any(), f"with {name}: the weights contain NaN"
        bad = _first_bad(w.sum(-1) - 1, tol)
        assert bad is None, f"with {name}: the weights of sentence {bad[0]}, query {bad[1]} do not sum to 1 " \
                            "(a query's weights are a distribution over the keys)"
        if mask is not None:
            leak = np.argwhere(~np.broadcast_to(mask, w.shape) & (w != 0))
            assert not len(leak), (f"with {name}: sentence {leak[0][0]}, query {leak[0][1]} gives non-zero weight "
                                   f"to key {leak[0][2]}, which the mask forbids")
        bad = _first_bad(w - ref_w, tol)
        if bad is not None:
            raise AssertionError(f"with {name}: the weights of sentence {bad[0]}, query {bad[1]} differ from scaled "
                                 f"dot-product attention's: {_weight_hint(w, q, k, mask, max(tol, 1e-5))}")
        bad = _first_bad(out - ref_out, tol)
        assert bad is None, f"with {name}: the weights are right but output row {bad[:2]} is not their sum of values"
