"""Scaled dot-product attention, its masks (notebook 02), and multi-head attention (notebook 03).

Vaswani et al. (2017), section 3.2: ``Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V``.

**Masks are boolean and True means "may attend"**, as in ``F.scaled_dot_product_attention``. A mask
broadcasts against the scores ``(..., seq_q, seq_k)``: ``(seq_q, seq_k)`` the same for every sentence
(:func:`causal_mask`); ``(batch, 1, 1, seq_k)`` one row of allowed keys per sentence (:func:`padding_mask`);
``(batch, 1, seq_q, seq_k)`` both, ``padding_mask(ids, pad) & causal_mask(seq)``; ``(batch, heads, seq_q,
seq_k)`` one per head. A query that may attend to no key gets zero weights and a zero output, never NaN.
``nn.MultiheadAttention``'s masks mean the opposite (True = *blocked*); :func:`utils.torch_compat.mask_from_torch`
translates them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils import checks

__all__ = ["scaled_dot_product_attention", "causal_mask", "padding_mask", "MultiHeadAttention", "check_vectors"]


def _check_mask(mask: Tensor, scores_shape: tuple[int, ...]) -> None:
    """Raise a clear error unless ``mask`` is boolean and broadcasts to ``scores_shape``."""
    checks.instance("mask", mask, Tensor, "a boolean torch.Tensor (True = may attend)")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask has dtype {mask.dtype} but must be boolean, True = may attend. Convert an additive "
            "mask of 0 and -inf with `mask == 0`, a 0/1 mask with `mask.bool()` (or `mask == 1`); "
            "a PyTorch-style mask where True means 'blocked' with `~mask`.")
    try:
        ok = torch.broadcast_shapes(mask.shape, scores_shape) == torch.Size(scores_shape)
    except RuntimeError:
        ok = False
    if not ok:
        *lead, sq, sk = scores_shape
        hint = f"(seq_q, seq_k) = {(sq, sk)}"
        if len(lead) == 2:
            hint += f", (batch, 1, 1, seq_k) = {(lead[0], 1, 1, sk)} or (batch, 1, seq_q, seq_k) = {(lead[0], 1, sq, sk)}"
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} cannot broadcast to the attention scores of shape "
            f"{tuple(scores_shape)} = (..., seq_q, seq_k); expected a shape such as {hint}")


def check_vectors(name: str, x: Tensor, weight: Tensor) -> Tensor:
    """``x`` if it is ``(batch, seq, d)`` vectors of ``weight``'s dtype and last dimension ``d``; else a named error."""
    d = weight.shape[-1]
    if checks.tensor(name, x, ndim=3, shape=f"(batch, seq, d_model={d}) vectors").shape[-1] != d:
        raise ValueError(f"{name} must be (batch, seq, d_model={d}), got {tuple(x.shape)}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{name} holds {x.dtype} but the weights are {weight.dtype}; " + (
            f"convert it: {name}.to({weight.dtype})" if x.dtype.is_floating_point else "token ids? embed them first"))
    return x


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        checks.tensor(name, x, dtype="float")
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(f"q, k, v need at least 2 dimensions (..., seq, d); got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d_k to be compared by dot products: "
                         f"q has d_k={q.shape[-1]} (shape {tuple(q.shape)}), k has d_k={k.shape[-1]} "
                         f"(shape {tuple(k.shape)})")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have one row per key (the same seq_k): k has {k.shape[-2]} "
                         f"(shape {tuple(k.shape)}), v has {v.shape[-2]} (shape {tuple(v.shape)})")
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading (batch, head) dimensions of q, k, v must match or broadcast: got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}") from None
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}; convert with .to(q.dtype)")


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                                 dropout_p: float = 0.0) -> tuple[Tensor, Tensor]:
    """``softmax(q kᵀ / √d_k) v``, with an optional boolean mask and dropout on the weights.

    Args:
        q, k, v: queries ``(..., seq_q, d_k)``, keys ``(..., seq_k, d_k)``, values ``(..., seq_k, d_v)``;
            their leading dimensions broadcast.
        mask: boolean, broadcastable to ``(..., seq_q, seq_k)``; True = the query may attend to that key.
        dropout_p: probability of zeroing a weight before it mixes the values (always applied when
            > 0, like ``F.scaled_dot_product_attention``; pass 0 in evaluation).

    Returns:
        ``(output, weights)``: output ``(..., seq_q, d_v)``; weights ``(..., seq_q, seq_k)``, each row
        summing to 1 (0 for a query with no allowed key), taken *before* dropout.

    Raises ``ValueError`` for q, k, v whose shapes do not fit together, a mask that cannot broadcast to the
    scores, or ``dropout_p`` outside [0, 1); ``TypeError`` for a non-boolean mask (e.g. an additive float mask)
    or q, k, v that are not floating-point tensors of one dtype."""
    _check_qkv(q, k, v)
    checks.probability("dropout_p", dropout_p)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., seq_q, seq_k)
    if mask is not None:
        _check_mask(mask, tuple(scores.shape))
        # A row with no allowed key would be softmax(-inf, ..., -inf) = 0/0 = NaN. Leave such
        # rows unmasked here (finite, harmless) and zero them after the softmax instead.
        sees_something = mask.any(dim=-1, keepdim=True)  # (..., seq_q, 1)
        scores = scores.masked_fill(~mask & sees_something, float("-inf"))
    weights = scores.softmax(dim=-1)  # (..., seq_q, seq_k)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)  # exact zeros, and zero gradient, where masked
    mixed = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return mixed @ v, weights  # (..., seq_q, d_v), (..., seq_q, seq_k)


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float) -> Tensor:
    """PyTorch's fused kernel, with fully masked rows forced to a zero output (any version)."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    sees_something = mask.any(dim=-1, keepdim=True)  # (..., seq_q, 1)
    if bool(sees_something.all()):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~sees_something, dropout_p=dropout_p)
    return out.masked_fill(~sees_something, 0.0)


def causal_mask(size: int, device: torch.device | str | None = None) -> Tensor:
    """The look-ahead mask ``(size, size)``: True on and below the diagonal, so position i may
    attend to positions 0..i and never to the future.
    Raises ``ValueError`` if ``size`` is not a positive integer."""
    checks.positive_int("size", size, hint="the sequence length")
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Which keys are real tokens: ``(batch, 1, 1, seq)``, True where ``ids != pad_id``; the 1s broadcast
    over heads and queries. Combine with :func:`causal_mask` by ``&``: ``(batch, 1, seq, seq)``.
    Raises ``ValueError`` if ``ids`` is not 2-D ``(batch, seq)``."""
    checks.tensor("ids", ids, ndim=2, shape="(batch, seq)")
    return (ids != pad_id)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, section 3.2.2), batch first.

    ``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O`` with ``head_i = Attention(Q W_i^Q, K W_i^K,
    V W_i^V)``. The per-head ``W_i^Q`` sit side by side in one ``W_Q (d_model, d_model)`` (rows
    ``[i*d_head, (i+1)*d_head)`` of :attr:`w_q` are head ``i``'s), and ``W_Q, W_K, W_V`` are stacked
    into one ``in_proj_weight (3*d_model, d_model)`` as PyTorch stores them, so self-attention projects
    with one matrix multiply. Read them as :attr:`w_q`, :attr:`w_k`, :attr:`w_v`, :attr:`w_o` (views).

    Args:
        d_model: width of the inputs and outputs.
        n_heads: number of heads; must divide ``d_model`` (each head has ``d_head = d_model / n_heads``).
        dropout: dropout on the attention weights, active only in ``train()`` mode.
        bias: whether the four projections have biases.

    Raises ``ValueError`` for an ``n_heads`` that does not divide ``d_model`` (the message lists divisors),
    non-positive sizes, or a ``dropout`` outside [0, 1)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        d_model, n_heads = checks.positive_int("d_model", d_model), checks.positive_int("n_heads", n_heads)
        checks.heads_divide(d_model, n_heads)
        checks.probability("dropout", dropout)
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout = float(dropout)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))  # [W_Q; W_K; W_V]
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model)) if bias else None
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: Xavier-uniform in-projection, zero biases."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    # Readable views of the packed in-projection (they share memory with it).
    @property
    def w_q(self) -> Tensor:
        """``W_Q`` as ``(d_model out, d_model in)``; ``y = x @ w_q.T``."""
        return self.in_proj_weight[: self.d_model]

    @property
    def w_k(self) -> Tensor:
        return self.in_proj_weight[self.d_model: 2 * self.d_model]

    @property
    def w_v(self) -> Tensor:
        return self.in_proj_weight[2 * self.d_model:]

    @property
    def w_o(self) -> Tensor:
        return self.out_proj.weight

    def _bias(self, start: int, stop: int) -> Tensor | None:
        return None if self.in_proj_bias is None else self.in_proj_bias[start * self.d_model: stop * self.d_model]

    def _split_heads(self, x: Tensor, n: int) -> tuple[Tensor, ...]:
        """``(batch, seq, n * d_model)`` → n tensors ``(batch, heads, seq, d_head)`` (views)."""
        b, s, _ = x.shape
        return x.view(b, s, n, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` ``(batch, seq_q, d_model)`` to ``key``, ``value`` ``(batch, seq_k, d_model)``
        (the same tensor three times for self-attention).

        Args:
            mask: boolean, True = may attend, broadcastable to ``(batch, heads, seq_q, seq_k)``.
            need_weights: True runs :func:`scaled_dot_product_attention` and returns the weights; False
                calls PyTorch's fused ``F.scaled_dot_product_attention`` (faster) and returns None.

        Returns:
            ``(output, weights)``: output ``(batch, seq_q, d_model)``; weights ``(batch, heads, seq_q,
            seq_k)`` after the softmax and before dropout, or None.

        Raises ``ValueError`` for inputs that are not ``(batch, seq, d_model)``, key/value that disagree or a
        mask that cannot broadcast; ``TypeError`` for a non-boolean mask or inputs of another dtype than the weights."""
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_vectors(name, x, self.in_proj_weight)
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"query, key, value must share the batch size and key/value the length: got "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        batch, seq_q, e = query.shape
        if mask is not None:
            _check_mask(mask, (batch, self.n_heads, seq_q, key.shape[1]))
        w = self.in_proj_weight
        if query is key and key is value:  # self-attention: one matmul for Q, K and V
            q, k, v = self._split_heads(F.linear(query, w, self.in_proj_bias), 3)
        elif key is value:  # cross-attention: Q from the decoder, K and V in one matmul
            (q,) = self._split_heads(F.linear(query, w[:e], self._bias(0, 1)), 1)
            k, v = self._split_heads(F.linear(key, w[e:], self._bias(1, 3)), 2)
        else:
            (q,) = self._split_heads(F.linear(query, self.w_q, self._bias(0, 1)), 1)
            (k,) = self._split_heads(F.linear(key, self.w_k, self._bias(1, 2)), 1)
            (v,) = self._split_heads(F.linear(value, self.w_v, self._bias(2, 3)), 1)
        # q: (batch, heads, seq_q, d_head); k, v: (batch, heads, seq_k, d_head)

        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, p)
        else:
            out, weights = _fused_attention(q, k, v, mask, p), None
        out = out.transpose(1, 2).reshape(batch, seq_q, e)  # concatenate the heads
        return self.out_proj(out), weights

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, d_head={self.d_head}, "
                f"dropout={self.dropout}, bias={self.in_proj_bias is not None}")
