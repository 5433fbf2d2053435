"""The exercise checks of notebook 01 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.embeddings import sinusoidal_positional_encoding
from utils.exercises import first_bad as _first_bad


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
