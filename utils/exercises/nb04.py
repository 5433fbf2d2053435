"""The exercise checks of notebook 04 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from utils.attention import causal_mask, padding_mask


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
