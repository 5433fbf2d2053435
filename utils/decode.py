"""From a trained encoder–decoder to output tokens.

Notebook 04 writes greedy decoding in its simplest form (re-run the whole model on the growing
prefix, take the most likely next token) and then moves it here, where the source is encoded
once and finished rows are padded::

    out = greedy_decode(model, src_ids, max_len=20)   # (batch, <= 20) ids, <pad> after <eos>
    texts = [tokenizer.decode(row) for row in out]

``model`` is any object with ``encode(src_ids)``, ``decode(tgt_ids, memory, src_ids)`` and
``pad_id`` (``utils.model.Transformer``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["greedy_decode"]


def greedy_decode(model: nn.Module, src_ids: Tensor, max_len: int, bos_id: int = 1, eos_id: int = 2) -> Tensor:
    """Generate, for every source sentence, the most likely next token again and again.

    Starting from ``<bos>``, each step appends ``argmax`` of the decoder's last position. A row
    that has produced ``<eos>`` emits ``<pad>`` (``model.pad_id``) from then on; decoding stops
    when every row has produced ``<eos>`` or after ``max_len`` tokens. The source is encoded once.

    Runs without gradients and in evaluation mode (dropout off); the model's previous mode is
    restored afterwards.

    Args:
        model: an encoder–decoder such as ``utils.model.Transformer``.
        src_ids: ``(batch, src_len)`` source ids, padded with ``model.pad_id``.
        max_len: the most tokens to generate per row (``<eos>`` included); ``<bos>`` is not
            counted and not returned. ``1 + max_len - 1`` target positions are fed to the model,
            so ``max_len`` may not exceed the model's ``config["max_len"]``.
        bos_id, eos_id: the start and end tokens (``utils.tokenize`` uses 1 and 2).

    Returns:
        ``(batch, n)`` long tensor of generated ids with ``n <= max_len``: ``n < max_len`` only when
        every row ended with ``<eos>``; after a row's ``<eos>`` come ``<pad>`` ids.

    Raises:
        ValueError: ``max_len`` not a positive int or longer than the model's positional table;
            ``src_ids`` not 2-D or empty.
    """
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int (the most tokens to generate), got {max_len!r}")
    limit = getattr(model, "config", {}).get("max_len")
    if limit is not None and max_len > limit:
        raise ValueError(f"max_len={max_len} is longer than the model's positional table (max_len={limit}); "
                         f"ask for at most {limit} tokens or build the model with a larger max_len")
    if src_ids.dim() != 2 or src_ids.shape[0] == 0:
        raise ValueError(f"src_ids must be a non-empty (batch, src_len) tensor of ids, got shape {tuple(src_ids.shape)}")
    pad_id = model.pad_id
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            memory = model.encode(src_ids)                                    # (batch, src_len, d_model)
            batch = src_ids.shape[0]
            ys = torch.full((batch, 1), bos_id, dtype=torch.long, device=src_ids.device)  # (batch, 1)
            done = torch.zeros(batch, dtype=torch.bool, device=src_ids.device)          # (batch,)
            for _ in range(max_len):
                logits = model.decode(ys, memory, src_ids)[:, -1]            # (batch, vocab), last position
                next_id = logits.argmax(dim=-1)                               # (batch,)
                next_id = next_id.masked_fill(done, pad_id)                   # finished rows emit <pad>
                ys = torch.cat([ys, next_id[:, None]], dim=1)                 # (batch, step + 2)
                done |= next_id == eos_id
                if bool(done.all()):
                    break
    finally:
        model.train(was_training)
    return ys[:, 1:]                                                          # drop <bos>
