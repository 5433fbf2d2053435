"""The exercise checks of notebook 03 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from utils.exercises import first_bad as _first_bad


def check_multi_head_from_packed(multi_head: Callable[..., tuple[np.ndarray, np.ndarray]]) -> None:
    """Notebook 03: ``multi_head(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight,
    out_proj_bias, n_heads, key_padding_mask=None)`` in NumPy → ``(output (batch, seq_q, d_model),
    weights (batch, heads, seq_q, seq_k))``, equal to ``nn.MultiheadAttention`` (batch_first) with
    those weights; ``key_padding_mask`` is PyTorch's ``(batch, seq_k)``, True = padding."""
    torch.manual_seed(3)
    results = {}
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
            result = multi_head(qq.numpy(), kv.numpy(), kv.numpy(), *weights, n_heads,
                                None if kpm is None else kpm.numpy())
            label = f"{name}, {n_heads} head{'s' if n_heads > 1 else ''}"
            assert isinstance(result, tuple) and len(result) == 2, "return a pair (output, weights)"
            out, w = (np.asarray(r) for r in result)
            tol = 1e-9 if w.dtype == out.dtype == np.float64 else 1e-5     # float32 is right to about 1e-7
            assert out.shape == tuple(ref_out.shape), f"{label}: output should be {tuple(ref_out.shape)}, got {out.shape}"
            assert w.shape == tuple(ref_w.shape), \
                f"{label}: weights should be (batch, heads, seq_q, seq_k) = {tuple(ref_w.shape)}, got {w.shape}"
            bad = _first_bad(w.sum(-1) - 1, tol)
            assert bad is None, f"{label}: the weights of sentence {bad[0]}, head {bad[1]}, query {bad[2]} do not sum to 1"
            if kpm is not None:
                leak = np.argwhere(kpm.numpy()[:, None, None, :] & (w != 0))
                assert not len(leak), f"{label}: sentence {leak[0][0]}, head {leak[0][1]} puts weight on key " \
                                      f"{leak[0][3]}, which is padding"
            ok_w = np.abs(w - ref_w.numpy()).max(axis=(0, 2, 3)) < tol       # (heads,)
            ok_out = np.abs(out - ref_out.numpy()).max() < tol
            results[(n_heads, name)] = bool(ok_w.all() and ok_out)
            if not ok_w.all():
                if n_heads > 1 and all(results.get((1, n), False) for n in ("self-attention",)):
                    raise AssertionError(f"{label}: right with one head, wrong with several (heads "
                                         f"{np.flatnonzero(~ok_w).tolist()} differ): check how the columns are "
                                         "split into heads")
                raise AssertionError(f"{label}: the attention weights of head(s) {np.flatnonzero(~ok_w).tolist()} "
                                     "differ from nn.MultiheadAttention's: check the query and key projections "
                                     "(which rows of in_proj_weight, which bias, the scale)")
            assert ok_out, (f"{label}: the weights are right, the output is not: check the values' projection, "
                            "the merge of the heads and the output projection")


# -- 04 · the decoder layer's forward pass, checked against nn.TransformerDecoderLayer
