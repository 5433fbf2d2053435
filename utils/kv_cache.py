"""The KV cache: attention one new token at a time (notebook 08 builds it; ``Transformer.decode_step``
and ``utils.bonus.gpt.GPT`` use it). A causal decoder's keys and values at earlier positions never
change (a position never sees later ones), so :class:`KVCache` keeps them and
:func:`cached_self_attention` / :func:`cached_cross_attention` run
:class:`~utils.attention.MultiHeadAttention`'s own weights on the new positions only: O(length) work
per step instead of O(length²).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.attention import MultiHeadAttention, _check_mask, _fused_attention, causal_mask, check_vectors

__all__ = ["KVCache", "cached_self_attention", "cached_cross_attention"]


@dataclass
class KVCache:
    """The keys and values a decoder has already computed, per layer. Start empty, one per batch.

    * ``keys[i]``, ``values[i]``: layer ``i``'s self-attention, ``(batch, heads, length, d_head)``;
      :func:`cached_self_attention` appends the new positions.
    * ``cross_keys[i]``, ``cross_values[i]``: cross-attention over the source, ``(batch, heads, src_len,
      d_head)``, projected once by :func:`cached_cross_attention` (they depend only on the encoder's output).
    """

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)
    cross_keys: list[Tensor] = field(default_factory=list)
    cross_values: list[Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Target positions cached so far (0 when empty)."""
        return self.keys[0].shape[2] if self.keys else 0

    @property
    def nbytes(self) -> int:
        """Bytes held by all cached keys and values."""
        return sum(t.numel() * t.element_size()
                   for t in (*self.keys, *self.values, *self.cross_keys, *self.cross_values))

    def reorder(self, rows: Tensor, cross: bool = True) -> None:
        """Keep row ``rows[j]`` ``(new_batch,)`` of every cached tensor as the new row ``j`` (beam search:
        each surviving prefix takes the keys of the prefix it extends). ``cross=False`` leaves the
        cross-attention entries alone: right only when rows move within one source sentence's group."""
        # index_select, not t[rows]: the same rows, several times faster on CPU (a decoding step's cost)
        self.keys = [t.index_select(0, rows) for t in self.keys]
        self.values = [t.index_select(0, rows) for t in self.values]
        if cross:
            self.cross_keys = [t.index_select(0, rows) for t in self.cross_keys]
            self.cross_values = [t.index_select(0, rows) for t in self.cross_values]


def _append_layer(store: list[Tensor], layer: int, tensor: Tensor, name: str) -> None:
    if layer > len(store):
        raise ValueError(f"layer {layer} cannot be cached before layer {len(store)} ({name}); run the layers in order")
    store[layer: layer + 1] = [tensor]                                         # replace layer's entry, or append it


def cached_self_attention(attn: MultiHeadAttention, x: Tensor, cache: KVCache, layer: int) -> Tensor:
    """Causal self-attention of the new positions ``x (batch, new, d_model)`` (normalised inputs at
    positions ``past .. past + new - 1``) over the cached ones and themselves → ``(batch, new, d_model)``.

    With ``attn``'s own weights; K and V are appended to ``cache.keys[layer]`` / ``.values[layer]``
    (layers fill in order 0, 1, 2, …). With an empty cache this equals
    ``attn(x, x, x, causal_mask(seq), need_weights=False)[0]``.
    Raises ``ValueError`` for a cache of another batch size than ``x``'s, or a layer index that skips one;
    ``TypeError`` for an ``x`` of another dtype than ``attn``'s weights (so for :func:`cached_cross_attention`)."""
    b, t, d = check_vectors("x", x, attn.in_proj_weight).shape
    q, k, v = attn._split_heads(F.linear(x, attn.in_proj_weight, attn.in_proj_bias), 3)
    # q, k, v: (batch, heads, new, d_head)
    if layer < len(cache.keys):
        if cache.keys[layer].shape[0] != b:
            raise ValueError(f"the cache holds a batch of {cache.keys[layer].shape[0]} sequences but the input "
                             f"has {b}; use one KVCache per batch (start a new KVCache() for a new batch)")
        k = torch.cat([cache.keys[layer], k], dim=2)                           # (batch, heads, past + new, d_head)
        v = torch.cat([cache.values[layer], v], dim=2)
    _append_layer(cache.keys, layer, k, "self-attention keys")
    _append_layer(cache.values, layer, v, "self-attention values")
    past = k.shape[2] - t
    # New position past + i may see keys 0 .. past + i: rows past .. past + t - 1 of the causal mask.
    mask = None if t == 1 else causal_mask(past + t, x.device)[past:]          # (new, past + new)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                         dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, d))                 # (batch, new, d_model)


def cached_cross_attention(attn: MultiHeadAttention, x: Tensor, memory: Tensor, cache: KVCache, layer: int,
                           mask: Tensor | None = None) -> Tensor:
    """Cross-attention of the new target positions ``x (batch, new, d_model)`` over the encoder's output
    ``memory (batch, src_len, d_model)`` → ``(batch, new, d_model)``.

    ``memory``'s keys and values are projected at the first call for ``layer`` (layers fill in order
    0, 1, 2, …) and read from ``cache`` after that. ``mask``: boolean, True = may attend, broadcastable
    to ``(batch, heads, new, src_len)``, or None. Equals ``attn(x, memory, memory, mask,
    need_weights=False)[0]``.
    Raises as :func:`cached_self_attention` does (for ``memory`` too)."""
    b, t, d = check_vectors("x", x, attn.in_proj_weight).shape
    if layer < len(cache.cross_keys):
        k, v = cache.cross_keys[layer], cache.cross_values[layer]              # (batch, heads, src_len, d_head)
        if k.shape[0] != b:
            raise ValueError(f"the cache holds cross-attention keys for a batch of {k.shape[0]} sequences but the "
                             f"input has {b}; use one KVCache per batch")
    else:
        e = check_vectors("memory", memory, attn.in_proj_weight).shape[-1]   # d_model
        k, v = attn._split_heads(F.linear(memory, attn.in_proj_weight[e:], attn._bias(1, 3)), 2)
        _append_layer(cache.cross_keys, layer, k, "cross-attention keys")
        _append_layer(cache.cross_values, layer, v, "cross-attention values")
    (q,) = attn._split_heads(F.linear(x, attn.w_q, attn._bias(0, 1)), 1)       # (batch, heads, new, d_head)
    if mask is not None:
        _check_mask(mask, (b, attn.n_heads, t, k.shape[2]))
    out = _fused_attention(q, k, v, mask, attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, d))                 # (batch, new, d_model)
