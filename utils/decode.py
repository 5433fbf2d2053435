"""From a trained encoder–decoder to output tokens: greedy decoding, beam search, :func:`translate`.
``model`` is anything with ``encode(src_ids)``, ``decode(tgt_ids, memory, src_ids)`` and ``pad_id``.

Notebook 04 writes greedy decoding in its simplest form (re-run the model on the growing prefix, take
the most likely next token) and moves it here; notebook 06 adds beam search, ranking finished
translations with the length penalty of Wu et al. (2016), as the paper does (beam 4, alpha 0.6)::

    out = greedy_decode(model, src_ids, max_len=20)         # (batch, <= 20) ids, <pad> after <eos>
    out = beam_search(model, src_ids, beam_size=4, max_len=20, length_penalty_alpha=0.6)
    english = translate(model, german_sentences, tok, beam_size=4)    # sentences in, sentences out
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from utils import checks
from utils.batching import pad_sequences
from utils.kv_cache import KVCache
from utils.runtime import get_device

__all__ = ["beam_search", "default_batch_size", "greedy_decode", "length_penalty", "translate"]


def _check_args(model: nn.Module, src_ids: Tensor, max_len: int, bos_id: int = 1, eos_id: int = 2) -> None:
    for name in ("encode", "decode", "pad_id"):
        if not hasattr(model, name):
            raise TypeError(f"model must be an encoder–decoder with encode, decode and pad_id (utils.model.make_model), "
                            f"but {type(model).__name__} has no {name!r}")
    checks.positive_int("max_len", max_len, hint="the most tokens to generate")
    config = getattr(model, "config", {})
    limit = config.get("max_len")
    if limit is not None and max_len > limit:
        raise ValueError(f"max_len={max_len} is longer than the model's positional table (max_len={limit}); "
                         f"ask for at most {limit} tokens or build the model with a larger max_len")
    if checks.tensor("src_ids", src_ids, dtype="int").dim() != 2 or 0 in src_ids.shape:
        raise ValueError(f"src_ids must be a non-empty (batch, src_len) tensor of ids, got shape "
                         f"{tuple(src_ids.shape)}; for one sentence use torch.tensor([ids])")
    if limit is not None and src_ids.shape[1] > limit:
        raise ValueError(f"src_ids hold {src_ids.shape[1]} positions, more than the model's positional table "
                         f"(max_len={limit}); shorten the sentences or use a model built with a larger max_len")
    checks.int_ids("src_ids", src_ids, vocab_size=config.get("src_vocab"))
    for name, v in (("bos_id", bos_id), ("eos_id", eos_id)):
        checks.integer(name, v, at_least=0, below=config.get("tgt_vocab"), hint="an id of the target vocabulary")
    if eos_id in (model.pad_id, bos_id):
        raise ValueError(f"eos_id={eos_id} equals {'pad_id' if eos_id == model.pad_id else 'bos_id'}, which is never "
                         "generated, so decoding would never stop; utils.tokenize uses <bos>=1, <eos>=2, <pad>=0")
    if bos_id == model.pad_id:
        raise ValueError(f"bos_id={bos_id} equals the model's pad_id: the start token would be masked as padding")


def _never_pad_or_bos(logits: Tensor, pad_id: int, bos_id: int) -> Tensor:
    """``<pad>`` and ``<bos>`` are never outputs: their logits become -inf. In place when the logits are
    the step's own dense float32 tensor (copying them every step costs more than the masking)."""
    logits = logits.float().contiguous()                                      # a copy only when needed
    logits[:, [pad_id, bos_id]] = float("-inf")
    return logits


def greedy_decode(model: nn.Module, src_ids: Tensor, max_len: int, bos_id: int = 1, eos_id: int = 2,
                  use_cache: bool = True) -> Tensor:
    """Generate, for every source sentence, the most likely next token again and again.

    From ``<bos>``, each step appends the ``argmax`` of the decoder's last position (``<pad>`` and
    ``<bos>`` never); a row that has produced ``<eos>`` gets ``<pad>`` after it. Stops when every row has
    ended or after ``max_len`` tokens. Runs without gradients in evaluation mode (then restored).

    Args:
        src_ids: ``(batch, src_len)`` source ids, padded with ``model.pad_id``.
        max_len: the most tokens per row (``<eos>`` included), at most the model's ``config["max_len"]``.
        bos_id, eos_id: the start and end tokens (``utils.tokenize`` uses 1 and 2).
        use_cache: feed one token a step through ``model.decode_step`` with a :class:`KVCache` when the
            model has it; otherwise re-run ``model.decode`` on the whole prefix (the same tokens).

    Returns:
        ``(batch, n)`` long tensor without ``<bos>``, ``n <= max_len`` (less only when every row ended).

    Raises ``ValueError`` for a ``max_len`` that is not a positive int or exceeds the positional table, ``src_ids``
    not 2-D, empty or longer than the table; ``TypeError`` for a model without ``encode``, ``decode``, ``pad_id``."""
    _check_args(model, src_ids, max_len, bos_id, eos_id)
    pad_id = model.pad_id
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            memory = model.encode(src_ids)                                    # (batch, src_len, d_model)
            batch, device = src_ids.shape[0], src_ids.device
            out = torch.full((batch, max_len), pad_id, dtype=torch.long, device=device)  # <pad> after <eos>
            # Rows still decoding ("active"): a row that has produced <eos> leaves the batch, so the
            # model runs only on sentences that are not finished (its cache rows leave with it).
            active = torch.arange(batch, device=device)                       # (n_active,) row numbers
            ys = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)  # (n_active, step + 1)
            src, mem = src_ids, memory
            cache = KVCache() if use_cache and hasattr(model, "decode_step") else None  # incremental decoding
            n = 0
            for step in range(max_len):
                if cache is not None:
                    logits = model.decode_step(ys[:, -1:], mem, src, cache)  # (n_active, vocab): newest token only
                else:
                    logits = model.decode(ys, mem, src)[:, -1]                # (n_active, vocab), last position
                next_id = _never_pad_or_bos(logits, pad_id, bos_id).argmax(dim=-1)   # (n_active,)
                out[active, step] = next_id
                n = step + 1
                going = next_id != eos_id                                     # (n_active,)
                if not bool(going.any()):
                    break
                if not bool(going.all()):                                     # some rows just ended
                    keep = going.nonzero().squeeze(1)
                    active, src, mem, ys, next_id = (t.index_select(0, keep) for t in (active, src, mem, ys, next_id))
                    if cache is not None:
                        cache.reorder(keep)
                ys = torch.cat([ys, next_id[:, None]], dim=1)                 # (n_active, step + 2)
    finally:
        model.train(was_training)
    return out[:, :n]                                                         # (batch, n), <bos> not included


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016): ``lp(Y) = ((5 + |Y|) / 6) ** alpha``; a finished translation is ranked by
    ``log P(Y | X) / lp(Y)``. ``alpha = 0`` ranks by plain log-probability, which favours short outputs
    (every token multiplies in a probability below 1); a larger ``alpha`` favours longer ones.
    Raises ``ValueError`` for a negative ``length`` or an ``alpha`` that is negative or not finite."""
    checks.number("length", length, at_least=0, hint="a number of tokens")
    checks.number("alpha", alpha, at_least=0, hint="0.6 in the paper; 0 = no penalty")
    return ((5.0 + length) / 6.0) ** alpha


def _several(length_penalty_alpha: Any) -> bool:
    return isinstance(length_penalty_alpha, Sequence) and not isinstance(length_penalty_alpha, str)


def _alphas(length_penalty_alpha: float | Sequence[float]) -> tuple[float, ...]:
    """One alpha or a sequence of them → a non-empty tuple of alphas, each checked."""
    alphas = tuple(length_penalty_alpha) if _several(length_penalty_alpha) else (length_penalty_alpha,)
    if not alphas:
        raise ValueError("length_penalty_alpha is an empty sequence: give one alpha (0.6 in the paper) or several")
    for alpha in alphas:
        checks.number("length_penalty_alpha", alpha, at_least=0, hint="0.6 in the paper; 0 = no penalty")
    return alphas


def beam_search(model: nn.Module, src_ids: Tensor, beam_size: int = 4, max_len: int = 50,
                length_penalty_alpha: float | Sequence[float] = 0.6, bos_id: int = 1, eos_id: int = 2,
                return_scores: bool = False, use_cache: bool = True) -> Any:
    """Keep the ``beam_size`` most probable prefixes of every row; return each row's best translation.

    Each step extends every live prefix by every token (but ``<pad>`` and ``<bos>``) and examines the
    ``2 * beam_size`` best extensions by summed log-probability: one ending in ``<eos>`` among the first
    ``beam_size`` becomes a finished hypothesis scored ``log P / lp(length)`` (:func:`length_penalty`,
    length counting ``<eos>``); the best ``beam_size`` others stay live. A row stops with ``beam_size``
    finished hypotheses (so ``beam_size=1`` is greedy decoding); at ``max_len`` its live prefixes are
    scored as they are. All rows decode together (``batch * beam_size`` prefixes a forward pass).

    Args:
        model, src_ids, max_len, bos_id, eos_id, use_cache: as :func:`greedy_decode` (the cache's rows
            follow the prefixes that survive each step).
        beam_size: prefixes kept per row (the paper: 4).
        length_penalty_alpha: ``alpha`` of :func:`length_penalty` (the paper: 0.6), or a sequence of
            alphas: prefixes are ranked by plain ``log P`` and alpha only ranks the finished
            translations, so one search serves them all (a list, one result per alpha).
        return_scores: also return each chosen translation's ``log P / lp``.

    Returns:
        ``(batch, n)`` long tensor, ``<pad>`` after each row's ``<eos>``; with ``return_scores``, the
        pair (that tensor, a ``(batch,)`` float tensor of scores); with several alphas, a list of those.

    Raises ``ValueError`` for a ``beam_size`` that is not a positive int, a negative or empty
    ``length_penalty_alpha``, or the arguments :func:`greedy_decode` refuses."""
    _check_args(model, src_ids, max_len, bos_id, eos_id)
    checks.positive_int("beam_size", beam_size, hint="4 in the paper; 1 is greedy")
    alphas = _alphas(length_penalty_alpha)
    n_alpha = len(alphas)
    batch, k, device, pad_id = src_ids.shape[0], beam_size, src_ids.device, model.pad_id
    rows = torch.arange(batch, device=device)                                       # (batch,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            memory = model.encode(src_ids).repeat_interleave(k, dim=0)            # (batch * k, src_len, d_model)
            src_k = src_ids.repeat_interleave(k, dim=0)                           # (batch * k, src_len)
            ys = torch.full((batch, k, 1), bos_id, dtype=torch.long, device=device)  # (batch, k, 1) live prefixes
            scores = torch.full((batch, k), float("-inf"), device=device)           # (batch, k) log P of each prefix
            scores[:, 0] = 0.0                                                       # one live prefix to start
            # Of the finished hypotheses only the best matters (and how many there are): keep its
            # score log P / lp (float64, as Python's floats), its tokens and its length, per alpha.
            best_score = torch.full((n_alpha, batch), float("-inf"), dtype=torch.float64, device=device)
            best_ids = torch.full((n_alpha, batch, max_len), pad_id, dtype=torch.long, device=device)
            best_len = torch.zeros((n_alpha, batch), dtype=torch.long, device=device)

            def offer(a: int, normed: Tensor, length: int, tokens: Callable[[Tensor, Tensor], Tensor]) -> None:
                """Rows whose best candidate in ``normed`` (batch, n) beats alpha ``a``'s best translation
                keep it instead; ``tokens(rows, at)`` gives its ``length`` ids."""
                cand_best, at = normed.max(dim=-1)                                   # first of ties: best rank
                b = rows[cand_best > best_score[a]]
                if b.numel():
                    best_score[a, b], best_len[a, b] = cand_best[b], length
                    best_ids[a, b, :length] = tokens(b, at[b])

            n_finished = torch.zeros(batch, dtype=torch.long, device=device)
            done = torch.zeros(batch, dtype=torch.bool, device=device)
            ranks = torch.arange(2 * k, device=device)                              # (2k,)
            beams = torch.arange(k, device=device)                                  # (k,)
            # Sentences still searching ("active"): a sentence that is done leaves the batch the model
            # runs on, with its k rows of memory and cache.
            act = rows                                                              # (n_act,)
            mem, src = memory, src_k                                                # (n_act * k, ...)
            cache = KVCache() if use_cache and hasattr(model, "decode_step") else None  # incremental decoding
            for step in range(1, max_len + 1):
                n_act, live_ys = act.shape[0], ys[act]                                 # (n_act, k, step)
                if cache is not None:                                                  # newest tokens only
                    logits = model.decode_step(live_ys[:, :, -1:].reshape(n_act * k, 1), mem, src, cache)
                else:
                    logits = model.decode(live_ys.view(n_act * k, -1), mem, src)[:, -1]  # (n_act * k, vocab)
                logits = _never_pad_or_bos(logits, pad_id, bos_id)
                logp = torch.log_softmax(logits.float(), dim=-1).view(n_act, k, -1)    # (n_act, k, vocab)
                vocab = logp.shape[-1]
                cand = logp.add_(scores[act][:, :, None]).view(n_act, k * vocab)       # (n_act, k * vocab), in place
                n_cand = min(2 * k, k * vocab)
                act_scores, act_idx = cand.topk(n_cand, dim=-1)                        # (n_act, 2k), best first
                top_scores = torch.full((batch, n_cand), float("-inf"), device=device)
                top_idx = torch.zeros((batch, n_cand), dtype=torch.long, device=device)
                top_scores[act], top_idx[act] = act_scores, act_idx                    # (batch, 2k)
                beam, token = top_idx // vocab, top_idx % vocab                        # (batch, 2k) each
                valid = (top_scores > float("-inf")) & ~done[:, None]                  # rows already done: nothing
                is_eos = token == eos_id
                # 1. An <eos> among the first k candidates finishes a hypothesis, scored log P / lp(step).
                finishing = valid & is_eos & (ranks[:n_cand] < k)                      # (batch, 2k)
                for a, alpha in enumerate(alphas):                                     # alpha only ranks them
                    normed = (top_scores.double() / length_penalty(step, alpha)).masked_fill(~finishing, float("-inf"))
                    offer(a, normed, step, lambda b, at: torch.cat([ys[b, beam[b, at], 1:],      # the prefix it ends
                                                                    ys.new_full((len(b), 1), eos_id)], 1))
                n_finished += finishing.sum(dim=-1)
                # 2. The first k other candidates, in rank order, stay live.
                extends = valid & ~is_eos
                keep = extends & (extends.cumsum(dim=-1) <= k)                        # (batch, 2k)
                order = torch.sort(torch.where(keep, ranks[:n_cand], ranks[:n_cand] + n_cand), dim=-1).indices[:, :k]
                live = keep.gather(1, order)                                           # (batch, k) real or filler
                origin = beam.gather(1, order)                                         # (batch, k): prefix each extends
                scores = top_scores.gather(1, order).masked_fill(~live, float("-inf"))
                new_token = token.gather(1, order).masked_fill(~live, pad_id)
                ys = torch.cat([ys.gather(1, origin[:, :, None].expand(-1, -1, ys.shape[2])), new_token[:, :, None]],
                               dim=2)                                                  # (batch, k, step + 1)
                ys[~live] = pad_id
                done |= (n_finished >= k) | ~live.any(dim=-1)
                if bool(done.all()):
                    break
                new_act = (~done).nonzero().squeeze(1)                                 # (n_new,)
                position = torch.empty(batch, dtype=torch.long, device=device)
                position[act] = torch.arange(n_act, device=device)                     # sentence → its block
                block = k * position[new_act][:, None]                                 # (n_new, 1)
                if cache is not None:                                                  # keys follow their prefixes
                    # Beams move only within their own sentence, whose cross-attention keys are
                    # shared; those move only when sentences leave.
                    cache.reorder((block + origin[new_act]).flatten(), cross=new_act.shape[0] != n_act)
                if new_act.shape[0] != n_act:
                    keep = (block + beams).flatten()                                   # (n_new * k,)
                    mem, src = mem.index_select(0, keep), src.index_select(0, keep)
                act = new_act
            # Rows that hit max_len with fewer than k finished: their live prefixes are scored as they are.
            open_rows = n_finished < k
            if bool(open_rows.any()):
                length = ys.shape[2] - 1
                for a, alpha in enumerate(alphas):
                    normed = (scores.double() / length_penalty(length, alpha)).masked_fill(
                        ~open_rows[:, None], float("-inf"))                                # (batch, k)
                    offer(a, normed, length, lambda b, at: ys[b, at, 1:])
    finally:
        model.train(was_training)
    results = [(best_ids[a, :, : int(best_len[a].max())], best_score[a].float()) if return_scores
               else best_ids[a, :, : int(best_len[a].max())] for a in range(n_alpha)]
    return results if _several(length_penalty_alpha) else results[0]


def default_batch_size(beam_size: int) -> int:
    """Sentences per batch :func:`translate` decodes by default: ``500 // beam_size`` (at least 1), ~500 prefixes a step."""
    return max(1, 500 // beam_size)


def translate(model: nn.Module, sentences: Sequence[str] | Sequence[Sequence[int]], tokenizer: Any = None, *,
              beam_size: int = 1, length_penalty_alpha: float | Sequence[float] = 0.6, batch_size: int | None = None,
              max_len: int | Callable[[int], int] | None = None, output: str = "text",
              device: torch.device | str | None = None, progress: bool = False) -> list:
    """Translate every sentence: encode, sort by length (little padding), decode in batches, restore the order.

    Args:
        sentences: source texts, or lists of source ids (``<bos> … <eos>``, as the model was trained on).
        tokenizer: encodes texts (``encode_batch``) and decodes output (``decode``), as in
            :mod:`utils.tokenize`; needed for texts or ``output="text"``.
        beam_size: 1 decodes greedily (:func:`greedy_decode`); more runs :func:`beam_search`.
        length_penalty_alpha: the beam's length penalty, or a sequence of alphas (:func:`beam_search`).
        batch_size: sentences decoded together; None: :func:`default_batch_size`.
        max_len: the most tokens per translation: an int, a function of the batch's padded source
            length, or None for ``1.5 × source length + 10`` (capped by the model's positional table).
        output: ``"text"`` (detokenised strings) or ``"ids"`` (lists of ids, ``<eos>`` kept, no ``<pad>``).
        device: where to decode (default: the model's device). progress: a tqdm bar over the batches.

    Returns:
        One translation per sentence, in the input order; with several alphas, one such list per alpha.

    Raises ``TypeError`` for one string instead of a list of sentences; ``ValueError`` for texts or
    ``output="text"`` without a tokenizer, an unknown ``output``, a non-positive ``batch_size``, an empty
    sentence or one longer than the positional table (checked before any decoding), or what the decoders refuse."""
    if isinstance(sentences, str) or not isinstance(sentences, Iterable):
        raise TypeError(f"sentences must be a list of texts or id lists, got {type(sentences).__name__}; wrap one: [text]")
    checks.one_of("output", output, ("text", "ids"))
    checks.positive_int("beam_size", beam_size, hint="1 is greedy")
    batch_size = default_batch_size(beam_size) if batch_size is None else batch_size
    checks.positive_int("batch_size", batch_size, hint="or None: 500 // beam_size")
    alphas = _alphas(length_penalty_alpha)
    sentences = list(sentences)
    texts_in = bool(sentences) and isinstance(sentences[0], str)
    if not callable(getattr(tokenizer, "encode_batch", None)) and (texts_in or output == "text"):
        raise checks.ArgumentTypeError(f"a tokenizer (utils.tokenize) is needed for texts and output='text', got "
                                       f"{tokenizer!r:.40}; pass the model's, or give id lists and output='ids'")
    ids = tokenizer.encode_batch(sentences, add_special=True) if texts_in else [list(s) for s in sentences]
    device = (get_device(device, name="device") if device is not None
              else next((p.device for p in model.parameters()), torch.device("cpu")))   # default: the model's
    limit = getattr(model, "config", {}).get("max_len")
    too_long = [i for i, s in enumerate(ids) if limit is not None and len(s) > limit]     # before any decoding
    if too_long:
        raise ValueError(f"{len(too_long)} sentence(s) are longer than the model's positional table (max_len={limit}), "
                         f"e.g. sentence {too_long[0]} of {len(ids[too_long[0]])} tokens; shorten or drop them, or use a "
                         "model built with a larger max_len")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    outs: list[list] = [[None] * len(ids) for _ in alphas]
    for start in tqdm(range(0, len(order), batch_size), disable=not progress,
                      desc=f"translating ({'greedy' if beam_size == 1 else f'beam {beam_size}'})"):
        chunk = order[start: start + batch_size]
        src = pad_sequences([ids[i] for i in chunk], getattr(model, "pad_id", 0)).to(device)  # (b, S); model checked next
        n = (min(int(1.5 * src.shape[1]) + 10, limit or float("inf")) if max_len is None     # tokens to generate
             else max_len(src.shape[1]) if callable(max_len) else max_len)
        if beam_size == 1:
            hyps = [greedy_decode(model, src, max_len=n)] * len(alphas)                      # (b, <= n) each
        else:
            hyps = beam_search(model, src, beam_size=beam_size, max_len=n, length_penalty_alpha=alphas)
        for out, hyp in zip(outs, hyps):
            for row, i in enumerate(chunk):
                tokens = [t for t in hyp[row].tolist() if t != model.pad_id]
                out[i] = tokenizer.decode(tokens) if output == "text" else tokens
    return outs if _several(length_penalty_alpha) else outs[0]
