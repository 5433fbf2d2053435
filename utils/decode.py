"""From a trained encoder–decoder to output tokens.

Notebook 04 writes greedy decoding in its simplest form (re-run the whole model on the growing
prefix, take the most likely next token) and then moves it here, where the source is encoded
once and finished rows are padded::

    out = greedy_decode(model, src_ids, max_len=20)   # (batch, <= 20) ids, <pad> after <eos>
    texts = [tokenizer.decode(row) for row in out]

Notebook 06 adds beam search, which keeps the ``beam_size`` best prefixes instead of one and ranks
finished translations with the length penalty of Wu et al. (2016), as the paper does (beam 4,
alpha 0.6)::

    out = beam_search(model, src_ids, beam_size=4, max_len=20, length_penalty=0.6)

``model`` is any object with ``encode(src_ids)``, ``decode(tgt_ids, memory, src_ids)`` and
``pad_id`` (``utils.model.Transformer``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["beam_search", "greedy_decode", "length_penalty"]


def _check_args(model: nn.Module, src_ids: Tensor, max_len: int, bos_id: int = 1, eos_id: int = 2) -> None:
    for name in ("encode", "decode", "pad_id"):
        if not hasattr(model, name):
            raise TypeError(f"model must be an encoder–decoder with encode, decode and pad_id (utils.model.make_model), "
                            f"but {type(model).__name__} has no {name!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int (the most tokens to generate), got {max_len!r}")
    config = getattr(model, "config", {})
    limit = config.get("max_len")
    if limit is not None and max_len > limit:
        raise ValueError(f"max_len={max_len} is longer than the model's positional table (max_len={limit}); "
                         f"ask for at most {limit} tokens or build the model with a larger max_len")
    if not isinstance(src_ids, Tensor):
        raise TypeError(f"src_ids must be a (batch, src_len) tensor of ids, got {type(src_ids).__name__}; "
                        "for one sentence use torch.tensor([ids])")
    if src_ids.dim() != 2 or src_ids.shape[0] == 0 or src_ids.shape[1] == 0:
        raise ValueError(f"src_ids must be a non-empty (batch, src_len) tensor of ids, got shape {tuple(src_ids.shape)}")
    if src_ids.dtype.is_floating_point or src_ids.dtype == torch.bool:
        raise TypeError(f"src_ids must hold integer ids (torch.long), got {src_ids.dtype}")
    src_vocab, tgt_vocab = config.get("src_vocab"), config.get("tgt_vocab")
    if src_vocab is not None and (int(src_ids.min()) < 0 or int(src_ids.max()) >= src_vocab):
        raise ValueError(f"src_ids hold ids {int(src_ids.min())} .. {int(src_ids.max())}, outside the model's source "
                         f"vocabulary 0 .. {src_vocab - 1}; encode with the tokenizer the model was trained with")
    pad_id = model.pad_id
    for name, v in (("bos_id", bos_id), ("eos_id", eos_id)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (tgt_vocab is not None and v >= tgt_vocab):
            raise ValueError(f"{name} must be an id in the target vocabulary"
                             f"{f' (0 .. {tgt_vocab - 1})' if tgt_vocab else ''}, got {v!r}")
    if eos_id in (pad_id, bos_id):
        raise ValueError(f"eos_id={eos_id} equals {'pad_id' if eos_id == pad_id else 'bos_id'}, which is never "
                         "generated, so decoding would never stop; utils.tokenize uses <bos>=1, <eos>=2, <pad>=0")
    if bos_id == pad_id:
        raise ValueError(f"bos_id={bos_id} equals the model's pad_id: the start token would be masked as padding")


def _cache_for(model: nn.Module, use_cache: bool):
    """A fresh KV cache when the model can decode incrementally (``decode_step``), else None."""
    if use_cache and hasattr(model, "decode_step"):
        from .gpt import KVCache  # imported here: utils.gpt imports utils.model, which imports nothing from here

        return KVCache()
    return None


def _never_pad_or_bos(logits: Tensor, pad_id: int, bos_id: int) -> Tensor:
    """``<pad>`` and ``<bos>`` are never outputs: their logits become -inf (a trained model gives them
    almost no probability anyway; an untrained one might, and a ``<pad>`` fed back would be masked)."""
    logits = logits.float().clone()
    logits[:, [pad_id, bos_id]] = float("-inf")
    return logits


def greedy_decode(model: nn.Module, src_ids: Tensor, max_len: int, bos_id: int = 1, eos_id: int = 2,
                  use_cache: bool = True) -> Tensor:
    """Generate, for every source sentence, the most likely next token again and again.

    Starting from ``<bos>``, each step appends ``argmax`` of the decoder's last position (``<pad>``
    and ``<bos>`` excluded: they are never outputs). A row
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
        use_cache: feed one token a step through ``model.decode_step`` with a KV cache when the model
            has it (``utils.model.Transformer`` does); otherwise re-run ``model.decode`` on the whole
            prefix. Both give the same tokens (``tests/test_decode.py``).

    Returns:
        ``(batch, n)`` long tensor of generated ids with ``n <= max_len``: ``n < max_len`` only when
        every row ended with ``<eos>``; after a row's ``<eos>`` come ``<pad>`` ids.

    Raises:
        ValueError: ``max_len`` not a positive int or longer than the model's positional table;
            ``src_ids`` not 2-D or empty.
    """
    _check_args(model, src_ids, max_len, bos_id, eos_id)
    pad_id = model.pad_id
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            memory = model.encode(src_ids)                                    # (batch, src_len, d_model)
            batch = src_ids.shape[0]
            ys = torch.full((batch, 1), bos_id, dtype=torch.long, device=src_ids.device)  # (batch, 1)
            done = torch.zeros(batch, dtype=torch.bool, device=src_ids.device)          # (batch,)
            cache = _cache_for(model, use_cache)
            for _ in range(max_len):
                if cache is not None:
                    logits = model.decode_step(ys[:, -1:], memory, src_ids, cache)  # (batch, vocab): newest token only
                else:
                    logits = model.decode(ys, memory, src_ids)[:, -1]        # (batch, vocab), last position
                logits = _never_pad_or_bos(logits, pad_id, bos_id)
                next_id = logits.argmax(dim=-1)                               # (batch,)
                next_id = next_id.masked_fill(done, pad_id)                   # finished rows emit <pad>
                ys = torch.cat([ys, next_id[:, None]], dim=1)                 # (batch, step + 2)
                done |= next_id == eos_id
                if bool(done.all()):
                    break
    finally:
        model.train(was_training)
    return ys[:, 1:]                                                          # drop <bos>


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016): ``lp(Y) = ((5 + |Y|) / 6) ** alpha``. A finished translation is ranked by
    ``log P(Y | X) / lp(Y)``; ``alpha = 0`` ranks by plain log-probability (which favours short
    outputs, since every token multiplies in a probability below 1), larger ``alpha`` favours longer ones.

    Raises:
        ValueError: a negative ``length`` (the power of a negative base is complex) or an ``alpha``
            that is negative or not finite.
    """
    if isinstance(length, bool) or not isinstance(length, (int, float)) or not length >= 0:
        raise ValueError(f"length must be a number of tokens >= 0, got {length!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < float("inf"):
        raise ValueError(f"alpha must be a finite number >= 0 (0.6 in the paper; 0 = no penalty), got {alpha!r}")
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model: nn.Module, src_ids: Tensor, beam_size: int = 4, max_len: int = 50,
                length_penalty_alpha: float = 0.6, bos_id: int = 1, eos_id: int = 2,
                return_scores: bool = False, use_cache: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Keep the ``beam_size`` most probable prefixes of every row; return each row's best translation.

    At every step each live prefix is extended by every token (but ``<pad>`` and ``<bos>``), the ``2 * beam_size`` best extensions
    (by summed log-probability) are examined in order: one that ends in ``<eos>`` and ranks among
    the first ``beam_size`` becomes a finished hypothesis, scored ``log P / lp(length)``
    (:func:`length_penalty`, length counting ``<eos>``); the best ``beam_size`` others stay live.
    A row stops when it holds ``beam_size`` finished hypotheses (so ``beam_size=1`` is exactly
    greedy decoding); at ``max_len`` its live prefixes are scored as they are. Rows are decoded
    together (``batch * beam_size`` prefixes in one forward pass); the source is encoded once.

    Runs without gradients in evaluation mode; the model's previous mode is restored afterwards.

    Args:
        model: an encoder–decoder such as ``utils.model.Transformer`` (``encode``, ``decode``, ``pad_id``).
        src_ids: ``(batch, src_len)`` source ids, padded with ``model.pad_id``.
        beam_size: prefixes kept per row (the paper: 4).
        max_len: the most tokens to generate per row, ``<eos>`` included (as :func:`greedy_decode`).
        length_penalty_alpha: ``alpha`` of :func:`length_penalty` (the paper: 0.6).
        bos_id, eos_id: start and end tokens.
        return_scores: also return each chosen translation's ``log P / lp``.
        use_cache: as in :func:`greedy_decode`; the cache's rows are reordered to follow the prefixes
            that survive each step.

    Returns:
        ``(batch, n)`` long tensor, ``<pad>`` after each row's ``<eos>`` (as :func:`greedy_decode`);
        with ``return_scores``, also a ``(batch,)`` float tensor of scores.

    Raises:
        ValueError: ``beam_size`` not a positive int, a negative ``length_penalty_alpha``, or the
            arguments :func:`greedy_decode` refuses.
    """
    _check_args(model, src_ids, max_len, bos_id, eos_id)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int (4 in the paper; 1 is greedy), got {beam_size!r}")
    if not length_penalty_alpha >= 0:
        raise ValueError(f"length_penalty_alpha must be >= 0 (0.6 in the paper; 0 = no penalty), got {length_penalty_alpha!r}")
    batch, k, device = src_ids.shape[0], beam_size, src_ids.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            memory = model.encode(src_ids).repeat_interleave(k, dim=0)            # (batch * k, src_len, d_model)
            src_k = src_ids.repeat_interleave(k, dim=0)                           # (batch * k, src_len)
            ys = torch.full((batch, k, 1), bos_id, dtype=torch.long, device=device)  # (batch, k, 1) live prefixes
            scores = torch.full((batch, k), float("-inf"), device=device)           # (batch, k) log P of each prefix
            scores[:, 0] = 0.0                                                       # one live prefix to start
            finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
            done = [False] * batch
            cache = _cache_for(model, use_cache)
            for step in range(1, max_len + 1):
                if cache is not None:                                                  # newest tokens only
                    logits = model.decode_step(ys[:, :, -1:].reshape(batch * k, 1), memory, src_k, cache)
                else:
                    logits = model.decode(ys.view(batch * k, -1), memory, src_k)[:, -1]  # (batch * k, vocab)
                logits = _never_pad_or_bos(logits, model.pad_id, bos_id)
                logp = torch.log_softmax(logits.float(), dim=-1).view(batch, k, -1)    # (batch, k, vocab)
                vocab = logp.shape[-1]
                cand = (scores[:, :, None] + logp).view(batch, k * vocab)              # (batch, k * vocab)
                top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=-1)          # (batch, 2k), best first
                new_ys = torch.full((batch, k, step + 1), model.pad_id, dtype=torch.long, device=device)
                new_scores = torch.full_like(scores, float("-inf"))                   # (batch, k)
                origin = torch.arange(k, device=device).repeat(batch, 1)              # (batch, k): prefix each extends
                for b in range(batch):
                    if done[b]:
                        continue
                    live = 0
                    for rank, (score, idx) in enumerate(zip(top_scores[b].tolist(), top_idx[b].tolist())):
                        if score == float("-inf") or live == k:
                            break
                        beam, token = divmod(idx, vocab)
                        if token == eos_id:                                            # a finished hypothesis
                            if rank < k:
                                words = ys[b, beam, 1:].tolist() + [eos_id]
                                finished[b].append((score / length_penalty(step, length_penalty_alpha), words))
                            continue
                        new_ys[b, live, :-1] = ys[b, beam]                             # the prefix it extends
                        new_ys[b, live, -1] = token
                        new_scores[b, live] = score
                        origin[b, live] = beam
                        live += 1
                    done[b] = len(finished[b]) >= k or live == 0
                ys, scores = new_ys, new_scores
                if all(done):
                    break
                if cache is not None:                                                  # keys follow their prefixes
                    rows = (origin + k * torch.arange(batch, device=device)[:, None]).flatten()  # (batch * k,)
                    cache.keys = [t[rows] for t in cache.keys]
                    cache.values = [t[rows] for t in cache.values]
            for b in range(batch):                                                      # rows that hit max_len
                if len(finished[b]) < k:
                    for beam in range(k):
                        if scores[b, beam] > float("-inf"):
                            words = ys[b, beam, 1:].tolist()
                            finished[b].append((scores[b, beam].item() / length_penalty(len(words), length_penalty_alpha), words))
    finally:
        model.train(was_training)
    best = [max(hyps, key=lambda h: h[0]) for hyps in finished]
    n = max(len(words) for _, words in best)
    out = torch.full((batch, n), model.pad_id, dtype=torch.long, device=device)
    for b, (_, words) in enumerate(best):
        out[b, : len(words)] = torch.tensor(words, dtype=torch.long, device=device)
    if return_scores:
        return out, torch.tensor([score for score, _ in best], device=device)
    return out
