"""The exercise checks of notebook 02 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from utils.attention import scaled_dot_product_attention
from utils.exercises import first_bad as _first_bad


def _reference_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None):
    m = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool))
    out, w = scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), m)
    return out.numpy(), w.numpy()


def check_masked_attention_numpy(attention: Callable[..., tuple[np.ndarray, np.ndarray]]) -> None:
    """Notebook 02: ``attention(Q, K, V, mask)`` in NumPy → ``(output, weights)``; ``mask`` is
    boolean (True = may attend), broadcastable to ``(..., seq_q, seq_k)``, or None."""
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 3))
    causal = np.tril(np.ones((6, 6), dtype=bool))                          # (seq_q, seq_k)
    lengths = np.array([6, 4])
    padding = (np.arange(6)[None, :] < lengths[:, None])[:, None, :]       # (batch, 1, seq_k)
    cases = [("no mask", None), ("a causal mask (seq_q, seq_k)", causal),
             ("a padding mask (batch, 1, seq_k)", padding), ("padding & causal", padding & causal)]
    for name, mask in cases:
        result = attention(q, k, v, mask)
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
        assert bad is None, (f"with {name}: the weights of sentence {bad[0]}, query {bad[1]} differ from "
                             "scaled dot-product attention's (are the scores scaled?)")
        bad = _first_bad(out - ref_out, tol)
        assert bad is None, f"with {name}: the weights are right but output row {bad[:2]} is not their sum of values"


# -- 03 · multi-head attention from nn.MultiheadAttention's packed weights, in NumPy
