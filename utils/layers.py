"""The pieces that wrap attention into a Transformer layer (built in notebook 03): :class:`LayerNorm`, the
position-wise feed-forward network and the residual "sub-layer connection", each ``(..., d_model)`` →
``(..., d_model)``. Parameter names follow PyTorch (``nn.LayerNorm``'s ``weight`` / ``bias``,
``nn.TransformerEncoderLayer``'s ``linear1`` / ``linear2``), so state dicts map one to one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from utils import checks


def _check_last_dim(who: str, x: Tensor, d_model: int) -> None:
    if x.dim() == 0:
        raise ValueError(f"{who} needs a tensor of shape (..., d_model={d_model}), got a scalar")
    if x.shape[-1] != d_model:
        raise ValueError(f"{who} was built with d_model={d_model} but the input's last dimension is {x.shape[-1]} "
                         f"(shape {tuple(x.shape)}); pass a tensor of shape (..., {d_model}) or build the layer "
                         f"with d_model={x.shape[-1]}")


class LayerNorm(nn.Module):
    """Layer normalization (Ba et al., 2016) over the last dimension, written out.

    ``y = weight ⊙ (x − mean(x)) / sqrt(var(x) + eps) + bias``, mean and *biased* variance (divide by
    ``d_model``) over the last dimension of each position; equal to ``nn.LayerNorm(d_model, eps)`` (float16 and
    bfloat16 inputs too: computed in float32 and rounded back once, as PyTorch does). Raises ``ValueError`` for
    a ``d_model`` or ``eps`` that is not positive, an input whose last dimension is not ``d_model``."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model = checks.positive_int("d_model", d_model)
        self.eps = checks.number("eps", eps, above=0, hint="it keeps the division finite; 1e-5 is usual")
        self.weight = nn.Parameter(torch.ones(d_model))  # γ, the gain
        self.bias = nn.Parameter(torch.zeros(d_model))  # β, the shift

    def forward(self, x: Tensor) -> Tensor:
        _check_last_dim("LayerNorm", x, self.d_model)
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # half precision: the variance in float32
        mean = h.mean(dim=-1, keepdim=True)  # (..., 1)
        var = (h - mean).pow(2).mean(dim=-1, keepdim=True)  # (..., 1), biased
        y = (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.to(torch.promote_types(x.dtype, self.weight.dtype))  # rounded once: bfloat16 in and weights, out

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


class PositionwiseFeedForward(nn.Module):
    """The paper's feed-forward sub-layer, applied to every position separately and identically:
    ``FFN(x) = max(0, x W1 + b1) W2 + b2``, ``W1: d_model → d_ff`` (``linear1``), ``W2: d_ff → d_model``
    (``linear2``); dropout after the ReLU, as in ``nn.TransformerEncoderLayer``. Inside: ``(..., d_ff)``.
    Raises ``ValueError`` for non-positive sizes, a dropout outside [0, 1), an input whose last dimension is
    not ``d_model``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        checks.positive_int("d_model", d_model)
        checks.positive_int("d_ff", d_ff)
        checks.probability("dropout", dropout)
        self.d_model, self.d_ff = d_model, d_ff
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        _check_last_dim("PositionwiseFeedForward", x, self.d_model)
        hidden = torch.relu(self.linear1(x))  # (..., d_ff)
        return self.linear2(self.dropout(hidden))  # (..., d_model)


class SublayerConnection(nn.Module):
    """A residual connection around any sub-layer (attention or feed-forward), with layer norm.

    * ``norm_first=False`` — **post-LN**, the paper's order: ``norm(x + dropout(sublayer(x)))``. The
      norm sits on the residual path; at initialisation the top layers get the larger gradients
      (Xiong et al., 2020), and the paper trains it with a learning-rate warm-up.
    * ``norm_first=True`` — **pre-LN**: ``x + dropout(sublayer(norm(x)))``. The residual path is never
      normalised, so the identity carries signal and gradient straight through and training works
      without warm-up (notebook 03 measures both). A pre-LN stack needs a final ``LayerNorm``.

    ``sublayer`` maps ``(..., d_model)`` to the same shape.
    Raises ``ValueError`` for a non-positive ``d_model``, a dropout outside [0, 1), an input whose last
    dimension is not ``d_model``, or a sublayer that changes the shape."""

    def __init__(self, d_model: int, dropout: float = 0.0, norm_first: bool = False) -> None:
        super().__init__()
        checks.positive_int("d_model", d_model)
        checks.probability("dropout", dropout)
        self.d_model, self.norm_first = d_model, bool(norm_first)
        self.norm = LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        _check_last_dim("SublayerConnection", x, self.d_model)
        out = sublayer(self.norm(x) if self.norm_first else x)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the sublayer returned {got} but the residual x + sublayer(x) needs shape "
                             f"{tuple(x.shape)}; a sublayer that returns (output, weights), such as attention, "
                             f"must be wrapped, e.g. lambda x: attn(x, x, x)[0]")
        if self.norm_first:
            return x + self.dropout(out)
        return self.norm(x + self.dropout(out))

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"
