"""Ids → vectors that know their position: token embeddings and positional encodings.

Notebook 01 builds each piece step by step; this module holds the finished versions the later
notebooks import. Shapes: ids ``(batch, seq)`` → :class:`TokenEmbedding` → ``(batch, seq,
d_model)`` → :class:`PositionalEncoding` (sinusoidal, Vaswani et al. 2017, section 3.5) or
:class:`LearnedPositionalEmbedding` → ``(batch, seq, d_model)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from utils import checks


def sinusoidal_positional_encoding(max_len: int, d_model: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The paper's fixed sinusoidal table ``(max_len, d_model)``; row ``pos`` encodes position ``pos``::

        PE[pos, 2i]     = sin(pos / 10000^(2i / d_model))
        PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))

    Computed in float64, then cast to ``dtype`` (float32 values exact to rounding at large positions).
    Raises ``ValueError`` for a ``max_len`` or ``d_model`` that is not a positive int, or an odd ``d_model``
    (sines and cosines come in pairs); ``TypeError`` for a ``dtype`` that is not floating-point."""
    checks.positive_int("max_len", max_len)
    checks.positive_int("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model={d_model} is odd; sinusoidal encodings pair a sine with a cosine, "
                         f"so use an even d_model such as {d_model + 1}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype such as torch.float32, got {dtype}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]                  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)                    # (d_model/2,)
    angle = pos / 10000.0 ** (two_i / d_model)                                  # (max_len, d_model/2)
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)              # sines even, cosines odd
    return pe.to(dtype)


class TokenEmbedding(nn.Module):
    """A lookup table of ``vocab_size`` vectors, scaled by ``sqrt(d_model)`` as in the paper.

    The table (``.embedding``, an ``nn.Embedding``, so it can be tied to the output layer) starts from
    ``N(0, 1/d_model)``: a looked-up vector has length about 1, about ``sqrt(d_model)`` once scaled, the
    order of a sinusoidal position vector (``sqrt(d_model / 2)``). The ``pad_id`` row (if given) starts
    at zero and gets no gradient. ``ids (batch, seq)``, integers → ``(batch, seq, d_model)``.
    Raises ``ValueError`` for non-positive sizes, a ``pad_id`` or (in ``forward``) ids outside the vocabulary
    ``0 .. vocab_size - 1``; ``TypeError`` for ids that are not an integer tensor."""

    def __init__(self, vocab_size: int, d_model: int, pad_id: int | None = None):
        super().__init__()
        checks.positive_int("vocab_size", vocab_size)
        checks.positive_int("d_model", d_model)
        if checks.integer("pad_id", pad_id, allow_none=True) is not None and not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id={pad_id} is outside the vocabulary of {vocab_size} tokens")
        self.vocab_size, self.d_model, self.pad_id = vocab_size, d_model, pad_id
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=d_model**-0.5)
        if pad_id is not None:
            with torch.no_grad():
                self.embedding.weight[pad_id].zero_()
        self.scale = math.sqrt(d_model)

    def forward(self, ids: Tensor) -> Tensor:
        checks.instance("ids", ids, Tensor, "a tensor of token ids", hint="use torch.tensor(ids)")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"token ids must be integers (torch.long), got {ids.dtype}; "   # notebook 01 prints this
                            f"pass the tokenizer's ids, e.g. torch.tensor(ids, dtype=torch.long)")
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.vocab_size:
                bad = hi if hi >= self.vocab_size else lo
                raise ValueError(f"token id {bad} is outside the vocabulary of {self.vocab_size} tokens "
                                 f"(max id seen {hi}, valid ids 0 .. {self.vocab_size - 1}); build "
                                 f"TokenEmbedding with the tokenizer's vocab_size")
        return self.embedding(ids.long()) * self.scale                           # (batch, seq, d_model)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}, pad_id={self.pad_id}, scale=sqrt(d_model)"


def _check_input(x: Tensor, d_model: int, max_len: int, who: str) -> int:
    if checks.tensor("x", x).dim() < 2:
        raise ValueError(f"{who} expects x of shape (batch, seq, d_model), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{who} adds positions to vectors, but x holds {x.dtype}: token ids? embed them first")
    if x.size(-1) != d_model:
        raise ValueError(f"{who} was built for d_model={d_model} but x's last dimension is {x.size(-1)} "
                         f"(x has shape {tuple(x.shape)})")
    seq = x.size(-2)
    if seq > max_len:
        raise ValueError(f"sequence length {seq} exceeds max_len={max_len} of this {who}; build it with "
                         f"max_len >= {seq} (e.g. {who}({d_model}, max_len={seq})) or shorten the input")
    return seq


class PositionalEncoding(nn.Module):
    """Add the fixed sinusoidal encoding, then dropout: ``dropout(x + PE[:seq])``; ``x (batch, seq,
    d_model)`` → same shape. The table is a non-persistent buffer: it follows ``.to(device)`` but is not
    saved in the ``state_dict`` (it is recomputed from the formula).
    Raises ``ValueError`` for bad sizes (:func:`sinusoidal_positional_encoding`), a dropout outside [0, 1), or
    (in ``forward``) ``seq > max_len`` or a last dimension of ``x`` that is not ``d_model``; TypeError for ids."""

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        checks.probability("dropout", dropout)
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        seq = _check_input(x, self.d_model, self.max_len, "PositionalEncoding")
        return self.dropout(x + self.pe[:seq].to(x.dtype))                      # (batch, seq, d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """Add a learned vector per position, then dropout: ``dropout(x + P[0:seq])``; ``x (batch, seq,
    d_model)`` → same shape. ``P`` is ``.embedding``, an ``nn.Embedding(max_len, d_model)`` (initialised
    ``N(0, 1)``): ``max_len * d_model`` parameters, and no position beyond ``max_len - 1``.
    Raises as :class:`PositionalEncoding` does."""

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        checks.positive_int("d_model", d_model)
        checks.positive_int("max_len", max_len)
        checks.probability("dropout", dropout)
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        seq = _check_input(x, self.d_model, self.max_len, "LearnedPositionalEmbedding")
        positions = torch.arange(seq, device=x.device)                          # (seq,)
        return self.dropout(x + self.embedding(positions).to(x.dtype))          # (batch, seq, d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"
