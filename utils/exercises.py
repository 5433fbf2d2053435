"""Self-checks for the notebooks' exercises, and the checks of the "build it yourself" exercises.

:func:`check` runs a test on the learner's function and prints one line: not attempted yet, not
right yet (with the reason), or solved. It never raises, so an unsolved exercise does not stop
"Run All"; the worked solutions call ``assert check(...)``, so CI proves every solution passes.

Each ``check_*`` compares a central piece the learner wrote (notebooks 01–04) with a reference and,
when it differs, says *what* is wrong (a shape, weights that do not sum to 1, a position that sees
the future) without giving the right numbers away (``NotImplementedError`` while untouched), e.g.
``check("Exercise 5", lambda: check_encoder_input(encoder_input))``.
"""

from __future__ import annotations

import inspect
import math
import traceback
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils import checks
from utils.attention import causal_mask, padding_mask, scaled_dot_product_attention
from utils.embeddings import sinusoidal_positional_encoding

__all__ = ["check", "check_encoder_input", "check_masked_attention_numpy", "check_multi_head_from_packed",
           "check_decoder_layer_forward"]


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


def _first_bad(diff: np.ndarray, tol: float) -> tuple[int, ...] | None:
    """Index of the first entry of ``diff`` whose absolute value exceeds ``tol``, or None."""
    bad = np.argwhere(np.abs(diff) > tol)
    return tuple(int(i) for i in bad[0]) if len(bad) else None


# -- 01 · the encoder's input: embedding rows × √d_model + sinusoidal positions

def _reference_encoder_input(ids: Tensor, table: Tensor) -> Tensor:
    pe = sinusoidal_positional_encoding(ids.shape[1], table.shape[1], torch.float64)
    return table.double()[ids] * math.sqrt(table.shape[1]) + pe


def check_encoder_input(encoder_input: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``encoder_input(ids, table)`` → ``(batch, seq, d_model)``, the embedding rows of
    ``ids`` scaled by √d_model plus the sinusoidal position vectors, computed from the formula."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30, (2, 9), generator=g)
    ids[1, 4] = ids[0, 2]                                                  # one token at two positions
    table = torch.randn(30, 16, generator=g, dtype=torch.float64) / 4      # (vocab, d_model)
    out = encoder_input(ids, table)
    assert isinstance(out, Tensor), f"return a torch.Tensor, got {type(out).__name__}"
    assert tuple(out.shape) == (2, 9, 16), f"shape should be (batch, seq, d_model) = (2, 9, 16), got {tuple(out.shape)}"
    assert out.is_floating_point(), f"return floating-point vectors, got dtype {out.dtype}"

    positions = encoder_input(ids, torch.zeros_like(table)).double()       # the token part vanishes
    ref_positions = _reference_encoder_input(ids, torch.zeros_like(table))
    assert torch.allclose(positions[0], positions[1], atol=1e-6), \
        "with an all-zero table, both sentences should get the same vectors (positions only); they differ"
    bad = _first_bad((positions[0] - ref_positions[0]).numpy(), 1e-5)
    if bad is not None:
        which = "a sine (even) column" if bad[1] % 2 == 0 else "a cosine (odd) column"
        raise AssertionError(f"with an all-zero table the output should be the position vectors alone; "
                             f"position {bad[0]}, column {bad[1]} ({which}) does not follow the formula")

    tokens = (out.double() - positions)                                     # the token part alone
    ref_tokens = table.double()[ids]
    if not torch.allclose(tokens, ref_tokens * math.sqrt(16), atol=1e-5):
        assert torch.allclose(tokens[0, 2], tokens[1, 4], atol=1e-6), \
            "the same token id must get the same token vector wherever it stands; it does not"
        cos = F.cosine_similarity(tokens.flatten(), ref_tokens.flatten(), dim=0).item()
        if cos > 0.9999:
            raise AssertionError("the token vectors point along the right table rows but have the wrong "
                                 "length: check the scale factor of section 2")
        raise AssertionError("the token part is not the table row of each id (scaled): check the lookup")
    bad = _first_bad((out.double() - _reference_encoder_input(ids, table)).numpy(), 1e-5)
    assert bad is None, f"the output at {bad} differs from token vector + position vector"


# -- 02 · masked attention in NumPy

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

def check_decoder_layer_forward(forward: Callable[..., Tensor]) -> None:
    """Notebook 04: ``forward(layer, y, memory, tgt_mask, memory_mask)`` computes what
    ``layer`` (an ``nn.TransformerDecoderLayer``, batch_first, relu, in eval mode) computes, with our
    masks (True = may attend): ``tgt_mask`` ``(batch, 1, T, T)``, ``memory_mask`` ``(batch, 1, 1, S)``;
    both layer orders (``layer.norm_first``)."""
    torch.manual_seed(4)
    tgt_ids = torch.tensor([[5, 6, 7, 8, 9, 3], [5, 6, 7, 8, 0, 0]])       # 0 = <pad>
    src_ids = torch.tensor([[4, 5, 6, 7, 8], [4, 5, 6, 0, 0]])
    real = tgt_ids != 0
    tgt_mask = padding_mask(tgt_ids, 0) & causal_mask(6)                    # (2, 1, 6, 6)
    memory_mask = padding_mask(src_ids, 0)                                  # (2, 1, 1, 5)
    for norm_first in (False, True):
        order = "pre-LN (norm_first=True)" if norm_first else "post-LN (norm_first=False, the paper)"
        layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                           dtype=torch.float64).eval()
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if "norm" in name or "bias" in name:
                    p.normal_()                                             # make every norm and bias count
        y, memory = torch.randn(2, 6, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)
        with torch.no_grad():
            out = forward(layer, y, memory, tgt_mask, memory_mask)
            ref = layer(y, memory, tgt_mask=~causal_mask(6), tgt_key_padding_mask=~real,
                        memory_key_padding_mask=src_ids == 0)
        assert isinstance(out, Tensor), f"return a torch.Tensor, got {type(out).__name__}"
        assert out.shape == ref.shape, f"{order}: output should be (batch, T, d_model) = {tuple(ref.shape)}, got {tuple(out.shape)}"
        assert not out[real].isnan().any(), f"{order}: the output holds NaN at real target positions"
        with torch.no_grad():
            later = y.clone()
            later[:, 3:] += 1.0                                             # change positions 3, 4, 5 only
            moved = (forward(layer, later, memory, tgt_mask, memory_mask) - out)[:, :3].abs().max().item()
            assert moved < 1e-9, f"{order}: the output at positions 0..2 changed when only positions 3..5 of " \
                                 "the decoder input changed: a position sees the future"
            padded_memory = memory.clone()
            padded_memory[1, 3:] += 5.0                                     # sentence 2's source padding
            moved = (forward(layer, y, padded_memory, tgt_mask, memory_mask) - out)[1].abs().max().item()
            assert moved < 1e-9, f"{order}: changing the memory at padded source positions changed the output"
            no_memory = (forward(layer, y, memory * 0, tgt_mask, memory_mask) - out)[real].abs().max().item()
            assert no_memory > 1e-6, f"{order}: the output does not depend on the memory: is cross-attention used?"
        bad = (out - ref)[real].abs().max().item()
        assert bad < 1e-9, (f"{order}: differs from nn.TransformerDecoderLayer at real target positions: check "
                            "the order of the three sub-layers and where each residual and LayerNorm goes")
