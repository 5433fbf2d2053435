"""Conversions between our modules and PyTorch's (masks, ``nn.MultiheadAttention``, ``nn.Transformer``),
with which the notebooks and tests prove our pieces equal: copy the weights across, run both, compare.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from utils import checks
from utils.attention import MultiHeadAttention
from utils.model import Transformer

__all__ = ["mask_from_torch", "mha_from_torch", "mha_to_torch", "transformer_to_torch"]


def mask_from_torch(attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
                    n_heads: int | None = None) -> Tensor | None:
    """Translate ``nn.MultiheadAttention``'s masks (True / -inf = *blocked*) into ours (True = may attend).

    ``attn_mask``: ``(seq_q, seq_k)`` or ``(batch * n_heads, seq_q, seq_k)`` (then give ``n_heads``), boolean
    or an additive float mask of 0 and -inf; ``key_padding_mask``: ``(batch, seq_k)``.
    Returns a boolean mask broadcastable to ``(batch, heads, seq_q, seq_k)``, or None when both are None.

    Raises:
        ValueError: float masks holding values other than 0 and -inf (they add a bias, which a
            boolean mask cannot express), or a 3-D ``attn_mask`` without ``n_heads``.
    """
    def allowed(m: Tensor, name: str) -> Tensor:
        if checks.tensor(name, m).dtype == torch.bool:
            return ~m
        if not m.dtype.is_floating_point:
            raise TypeError(f"{name} has the integer dtype {m.dtype}; PyTorch's masks are boolean (True = blocked) "
                            f"or float (0 = attend, -inf = blocked). For a 0/1 mask with 1 = blocked pass "
                            f"{name}.bool()")
        if not bool(((m == 0) | (m == float("-inf"))).all()):
            raise ValueError("a float mask can only be translated when it holds just 0 (attend) and -inf "
                             "(blocked); other values are an additive bias, not a mask")
        return m == 0

    ours = None
    checks.positive_int("n_heads", n_heads, allow_none=True)
    if attn_mask is not None:
        ours = allowed(attn_mask, "attn_mask")
        if ours.dim() not in (2, 3):
            raise ValueError(f"attn_mask must be (seq_q, seq_k) or (batch * n_heads, seq_q, seq_k), got shape "
                             f"{tuple(attn_mask.shape)}")
        if ours.dim() == 3:
            if n_heads is None:
                raise ValueError("a 3-D attn_mask (batch * n_heads, seq_q, seq_k) needs n_heads to unflatten it")
            if ours.shape[0] % n_heads:
                raise ValueError(f"a 3-D attn_mask has batch * n_heads rows, but {ours.shape[0]} is not a multiple of "
                                 f"n_heads={n_heads}; pass the model's n_heads (shape {tuple(attn_mask.shape)})")
            ours = ours.reshape(-1, n_heads, *ours.shape[-2:])
    if key_padding_mask is not None:
        if isinstance(key_padding_mask, Tensor) and key_padding_mask.dim() != 2:
            raise ValueError(f"key_padding_mask must be (batch, seq_k), got shape {tuple(key_padding_mask.shape)}")
        kp = allowed(key_padding_mask, "key_padding_mask")[:, None, None, :]  # (batch, 1, 1, seq_k)
        ours = kp if ours is None else ours & kp
    return ours


def mha_from_torch(mha: nn.MultiheadAttention) -> MultiHeadAttention:
    """Ours, holding a copy of ``mha``'s weights (same device and dtype). Raises ValueError for an ``mha``
    not ``batch_first``, with ``kdim``/``vdim`` unlike ``embed_dim``, or ``add_bias_kv`` / ``add_zero_attn``.
    """
    if not mha.batch_first:
        raise ValueError("mha_from_torch needs nn.MultiheadAttention(..., batch_first=True): ours takes "
                         "(batch, seq, d_model) inputs")
    if not mha._qkv_same_embed_dim:
        raise ValueError(f"mha_from_torch needs kdim == vdim == embed_dim; got kdim={mha.kdim}, vdim={mha.vdim}, "
                         f"embed_dim={mha.embed_dim}")
    if mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError("mha_from_torch does not support add_bias_kv or add_zero_attn")
    ref = mha.in_proj_weight
    ours = MultiHeadAttention(mha.embed_dim, mha.num_heads, dropout=mha.dropout, bias=mha.in_proj_bias is not None)
    ours.to(device=ref.device, dtype=ref.dtype)
    ours.load_state_dict(mha.state_dict())                   # the same parameter names, every one copied
    return ours.train(mha.training)


def mha_to_torch(attn: MultiHeadAttention) -> nn.MultiheadAttention:
    """``nn.MultiheadAttention(batch_first=True)`` holding a copy of ``attn``'s weights."""
    ref = attn.in_proj_weight
    mha = nn.MultiheadAttention(attn.d_model, attn.n_heads, dropout=attn.dropout,
                                bias=attn.in_proj_bias is not None, batch_first=True,
                                device=ref.device, dtype=ref.dtype)
    mha.load_state_dict(attn.state_dict())
    return mha.train(attn.training)


def transformer_to_torch(model: Transformer) -> nn.Transformer:
    """``nn.Transformer(batch_first=True)`` holding copies of the encoder and decoder weights. It has no
    embeddings or output layer: feed it ``model.embed_src`` / ``model.embed_tgt``, apply ``model.generator``.
    A post-LN model gets no final norms there (the paper's post-LN stack has none).
    """
    c = model.config
    ref_param = model.generator.weight
    ref = nn.Transformer(c["d_model"], c["n_heads"], c["n_layers"], c["n_layers"], c["d_ff"], c["dropout"],
                         batch_first=True, norm_first=c["norm_first"],
                         device=ref_param.device, dtype=ref_param.dtype)
    state = {}
    for side, stack in (("encoder", model.encoder), ("decoder", model.decoder)):
        for i, layer in enumerate(stack.layers):                 # ours → PyTorch's parameter names
            parts = {"self_attn": layer.self_attn, "multihead_attn": getattr(layer, "cross_attn", None),
                     "linear1": layer.ffn.linear1, "linear2": layer.ffn.linear2,
                     **{f"norm{j}": sub.norm for j, sub in enumerate(layer.sublayers, start=1)}}
            state.update({f"{side}.layers.{i}.{name}.{k}": v for name, part in parts.items() if part is not None
                          for k, v in part.state_dict().items()})
        if stack.norm is not None:
            state.update({f"{side}.norm.{k}": v for k, v in stack.norm.state_dict().items()})
    if not c["norm_first"]:
        ref.encoder.norm = None
        ref.decoder.norm = None
    ref.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return ref.train(model.training)
