"""Looking inside a trained encoder–decoder, measured (notebook 06). One sentence's attention map is
an anecdote; these turn it into measurements over many sentences, each beside a baseline:
:func:`attention_maps_for` (every map of many sentences), :func:`head_statistics` (each head's entropy
and weight on the previous token, itself and punctuation, next to a head that spreads its weight
evenly), :func:`pattern_mask` / :func:`peaks_inside` (does a head peak on the year of a date?),
:func:`switched_off` (a head's output set to zero), :func:`model_scores` (the score beam search
maximises) and :func:`monotone_fraction` (how often an alignment moves forward).
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils import checks
from utils.batching import pad_sequences
from utils.decode import length_penalty
from utils.tokenize import BOS_ID, EOS_ID, PAD_ID

__all__ = ["KINDS", "METRICS", "attention_maps_for", "queries_that_train", "uniform_attention", "head_stats",
           "head_statistics", "mean_of", "ratio_to_uniform", "punctuation_ids", "pattern_mask", "peaks_inside",
           "switched_off", "model_scores", "monotone_fraction"]

#: The three kinds of attention of an encoder–decoder, as ``model.attention_maps()`` names them.
KINDS = ("encoder_self", "decoder_self", "cross")
#: What :func:`head_stats` measures for every head.
METRICS = ("entropy", "previous", "itself", "punctuation")


def _ids_pair(src_ids: Tensor, tgt_ids: Tensor) -> None:
    checks.tensor("src_ids", src_ids, ndim=2, dtype="int", shape="(batch, src_len)")
    checks.tensor("tgt_ids", tgt_ids, ndim=2, dtype="int", shape="(batch, tgt_len)")
    if src_ids.shape[0] != tgt_ids.shape[0]:
        raise ValueError(f"src_ids and tgt_ids must be (batch, length) ids of one batch size, got shapes "
                         f"{tuple(src_ids.shape)} and {tuple(tgt_ids.shape)}")


def attention_maps_for(model: nn.Module, src_ids: Tensor, tgt_ids: Tensor,
                       batch_size: int = 128) -> dict[str, list[Tensor]]:
    """Every attention weight of a teacher-forced pass over many sentences, without the padding's cost:
    batches of ``batch_size`` sentences of similar length, each trimmed to its longest, no output
    layer, under ``torch.no_grad()`` in the model's current mode (call ``.eval()`` first).

    ``src_ids`` ``(batch, src_len)`` and decoder inputs ``tgt_ids`` ``(batch, tgt_len)`` (``<bos> …``) are
    right-padded with ``model.pad_id``. Returns, as ``model.attention_maps()``, ``{kind: [(batch, heads,
    q_len, k_len) per layer]}`` in the input order, equal to one pass's maps at every real query (rows
    of padding queries: leave them out). Raises ValueError for ids not 2-D integer tensors of one batch
    size, or a non-positive ``batch_size``.
    """
    _ids_pair(src_ids, tgt_ids)
    batch_size = checks.positive_int("batch_size", batch_size)
    n, pad, (s_len, t_len) = src_ids.shape[0], model.pad_id, (src_ids.shape[1], tgt_ids.shape[1])
    sizes = {"encoder_self": (s_len, s_len), "decoder_self": (t_len, t_len), "cross": (t_len, s_len)}
    lengths = (src_ids != pad).sum(1) + (tgt_ids != pad).sum(1)                         # (batch,)
    full: dict[str, list[Tensor]] = {}
    for part in lengths.argsort(stable=True).split(batch_size):                       # similar lengths together
        src, tgt = src_ids[part], tgt_ids[part]
        src = src[:, : max(1, int((src != pad).sum(1).max()))]                         # trimmed to this batch's longest
        tgt = tgt[:, : max(1, int((tgt != pad).sum(1).max()))]
        with torch.no_grad(), model.attention_maps() as maps:
            model.decoder_states(tgt, model.encode(src), src)
        for kind, layers in maps.items():
            if kind not in full:
                full[kind] = [a.new_zeros(n, a.shape[1], *sizes[kind]) for a in layers]
            for whole, a in zip(full[kind], layers):
                whole[part, :, : a.shape[2], : a.shape[3]] = a                          # (part, heads, q, k)
    return full


# -- what each head does ------------------------------------------------------------------------------
def queries_that_train(query_ids: Tensor, decoder: bool, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Tensor:
    """``(batch, Q)`` bool: the query positions the loss trains: real tokens, and on the decoder side not
    ``<eos>`` (its prediction is ``<pad>``, which the loss ignores). Raises ValueError for ids not 2-D integers.
    """
    checks.tensor("query_ids", query_ids, ndim=2, dtype="int", shape="(batch, Q)")
    real = query_ids != pad_id
    return real & (query_ids != eos_id) if decoder else real


def uniform_attention(query_ids: Tensor, key_ids: Tensor, causal: bool, pad_id: int = PAD_ID) -> Tensor:
    """``(batch, 1, Q, K)``: the baseline head, which spreads its weight evenly over every key it may see
    (real keys; with ``causal``, only keys ``j <= i``). Rows of padding queries are still distributions.
    Raises ValueError for ids not 2-D integer tensors of one batch size, or ``causal`` with Q ≠ K.
    """
    _ids_pair(query_ids, key_ids)
    q_len, k_len = query_ids.shape[1], key_ids.shape[1]
    if causal and q_len != k_len:
        raise ValueError(f"causal attention is self-attention: queries and keys must be the same sequence, got "
                         f"{q_len} queries and {k_len} keys")
    allowed = (key_ids != pad_id)[:, None, :].expand(-1, q_len, -1)                      # (batch, Q, K)
    if causal:
        allowed = allowed & torch.ones(q_len, k_len, dtype=torch.bool, device=key_ids.device).tril()
    return (allowed / allowed.sum(-1, keepdim=True).clamp_min(1))[:, None]


def head_stats(attn: Tensor, query_ids: Tensor, key_ids: Tensor, decoder: bool, punct_ids: Tensor,
               pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> tuple[dict[str, Tensor], Tensor]:
    """Each head's :data:`METRICS`, summed over each sentence's training queries (:func:`queries_that_train`).

    * ``entropy``: ``-Σ_j a_ij log a_ij`` in nats (0: one key; ``log n``: spread evenly over ``n``);
    * ``previous``: ``a[i, i-1]`` (0 for row 0); ``itself``: ``a[i, i]`` (0 where ``i >= K``);
    * ``punctuation``: the weight on keys whose id is in ``punct_ids`` (:func:`punctuation_ids`).

    Args:
        attn: ``(batch, heads, Q, K)`` weights, each row summing to 1; ``query_ids`` ``(batch, Q)``,
            ``key_ids`` ``(batch, K)``; ``decoder``: the queries are decoder positions; ``punct_ids`` ``(P,)``.

    Returns ``({metric: (batch, heads) sums}, (batch,) counts of training queries)`` (:func:`mean_of`
    divides). Raises ValueError for ``attn`` not 4-D, or shapes that disagree with the ids.
    """
    checks.tensor("attn", attn, ndim=4, dtype="float", shape="(batch, heads, Q, K)")
    _ids_pair(query_ids, key_ids)
    b, _, q_len, k_len = attn.shape
    if (b, q_len) != tuple(query_ids.shape) or (b, k_len) != tuple(key_ids.shape):
        raise ValueError(f"attn {tuple(attn.shape)} must be (batch, heads, Q, K) for query_ids "
                         f"{tuple(query_ids.shape)} (batch, Q) and key_ids {tuple(key_ids.shape)} (batch, K)")
    w = queries_that_train(query_ids, decoder, pad_id, eos_id)[:, None, :].to(attn.dtype)   # (batch, 1, Q)
    entropy = -(attn * torch.log(attn.clamp_min(1e-12))).sum(-1)                           # (batch, heads, Q)
    prev = torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1)                                # a[i, i-1], rows 1 …
    prev = F.pad(prev, (1, q_len - 1 - prev.shape[-1]))                                     # (batch, heads, Q)
    diag = torch.diagonal(attn, dim1=-2, dim2=-1)                                           # a[i, i]
    diag = F.pad(diag, (0, q_len - diag.shape[-1]))                                         # (batch, heads, Q)
    is_punct = torch.isin(key_ids, punct_ids.to(key_ids.device))[:, None, None, :]          # (batch, 1, 1, K)
    punct = (attn * is_punct).sum(-1)                                                       # (batch, heads, Q)
    sums = {name: (x * w).sum(-1) for name, x in zip(METRICS, (entropy, prev, diag, punct))}
    return sums, w.sum((1, 2))


def head_statistics(maps: dict[str, list[Tensor]], src_ids: Tensor, tgt_ids: Tensor, punct_ids: Tensor,
                    pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> dict[str, list[tuple]]:
    """:func:`head_stats` of every head of every layer, with the uniform baseline beside it.

    Args:
        maps: ``{kind: [(batch, heads, Q, K) per layer]}`` (:func:`attention_maps_for`) of the pass
            ``(src_ids (batch, S), tgt_ids (batch, T))``; ``punct_ids``: ``(P,)`` (:func:`punctuation_ids`).

    Returns ``{kind: [(measured, uniform, counts) per layer]}``: ``measured`` ``{metric: (batch, heads)}``,
    ``uniform`` ``{metric: (batch, 1)}`` (the head of :func:`uniform_attention`), ``counts`` ``(batch,)``.
    Raises ValueError for a kind missing from ``maps``, or maps whose shapes disagree with the ids.
    """
    sides = {"encoder_self": (src_ids, src_ids), "decoder_self": (tgt_ids, tgt_ids), "cross": (tgt_ids, src_ids)}
    missing = [kind for kind in KINDS if kind not in maps]
    if missing:
        raise ValueError(f"maps has no {missing}: pass what model.attention_maps() or attention_maps_for gives")
    out = {}
    for kind in KINDS:
        queries, keys = sides[kind]
        decoder = kind != "encoder_self"
        uniform, counts = head_stats(uniform_attention(queries, keys, kind == "decoder_self", pad_id),
                                     queries, keys, decoder, punct_ids, pad_id, eos_id)
        out[kind] = [(head_stats(a, queries, keys, decoder, punct_ids, pad_id, eos_id)[0], uniform, counts)
                     for a in maps[kind]]
    return out


def mean_of(sums: Tensor, counts: Tensor) -> Tensor:
    """``(batch, heads)`` sums and ``(batch,)`` counts → ``(heads,)``: the mean over every counted query.
    Raises ValueError when nothing is counted (no query trains)."""
    total = counts.sum()
    if total <= 0:
        raise ValueError("no query was counted: every row is padding")
    return sums.sum(0) / total


def ratio_to_uniform(stats: dict[str, list[tuple]], metric: str, kind: str, layer: int, head: int) -> float:
    """One head's ``metric`` over all of ``stats``' sentences, as a multiple of the uniform head's.
    Raises ValueError for an unknown ``metric`` or ``kind``."""
    checks.one_of("metric", metric, METRICS)
    checks.one_of("kind", kind, KINDS)
    measured, uniform, _ = stats[kind][layer]
    return float(measured[metric][:, head].sum() / uniform[metric][:, 0].sum())


def punctuation_ids(id_to_token: Sequence[str]) -> Tensor:
    """``(P,)`` the ids of punctuation tokens: no letter or digit once the word marker ``▁`` is removed;
    specials such as ``<eos>`` are not punctuation."""
    return torch.tensor([i for i, t in enumerate(id_to_token)
                         if t.strip("▁") and not any(c.isalnum() for c in t.strip("▁")) and not t.startswith("<")],
                        dtype=torch.long)


# -- where a head peaks ---------------------------------------------------------------------------------
def pattern_mask(texts: Sequence[str], pattern: str, width: int) -> Tensor:
    """``(n, width)`` bool: True on the characters of the first match of ``pattern`` in each text (one
    position a character, as a character tokenizer without ``<bos>`` encodes it), e.g. ``r"\\d{4}"`` for a year.
    Raises ValueError for a text without a match, or a match beyond ``width``.
    """
    texts = checks.strings("texts", texts)
    width = checks.positive_int("width", width)
    mask = torch.zeros(len(texts), width, dtype=torch.bool)
    for i, text in enumerate(texts):
        found = re.search(pattern, text)
        if found is None or found.end() > width:
            raise ValueError(f"texts[{i}] = {text!r}: " + (f"no match of {pattern!r}" if found is None else
                             f"the match ends at {found.end()}, beyond width={width}"))
        mask[i, found.start(): found.end()] = True
    return mask


def peaks_inside(weights: Tensor, mask: Tensor) -> Tensor:
    """``(n, ...)`` bool: whether all rows of ``weights`` ``(n, ..., rows, K)`` (e.g. ``(n, layers, heads,
    4, S)`` cross-attention rows) peak inside ``mask`` ``(n, K)`` bool (:func:`pattern_mask`). Raises
    ValueError for fewer than 3 dimensions, or a mask of another ``(n, K)``.
    """
    checks.tensor("weights", weights, ndim=tuple(range(3, 9)), dtype="float", shape="(n, ..., rows, K)")
    if mask.dtype != torch.bool or tuple(mask.shape) != (weights.shape[0], weights.shape[-1]):
        raise ValueError(f"mask must be (n, K) = {(weights.shape[0], weights.shape[-1])} bool, got "
                         f"{tuple(mask.shape)} {mask.dtype}")
    peak = weights.argmax(-1)                                                             # (n, ..., rows)
    inside = mask.to(peak.device).gather(1, peak.flatten(1)).view(peak.shape)
    return inside.all(-1)


@contextlib.contextmanager
def switched_off(model: nn.Module, layer: int, head: int, kind: str = "cross") -> Iterator[None]:
    """Inside the ``with`` block, one head's output is zero: its slice of the concatenated heads, just
    before ``W^O`` (a pre-hook on ``out_proj``, so full passes and cached decoding alike see it).

    Args:
        model: a :class:`utils.model.Transformer`; ``layer`` (negative counts from the end), ``head``.
        kind: ``"cross"`` or ``"decoder_self"`` (a decoder layer), ``"encoder_self"`` (an encoder layer).

    Raises ValueError for an unknown ``kind``, a layer or head that the model does not have.
    """
    checks.one_of("kind", kind, KINDS)
    layers = model.encoder.layers if kind == "encoder_self" else model.decoder.layers
    layer = checks.integer("layer", layer, at_least=-len(layers), below=len(layers))
    attn = getattr(layers[layer], "cross_attn" if kind == "cross" else "self_attn")
    head = checks.integer("head", head, at_least=0, below=attn.n_heads)
    d_head = attn.d_model // attn.n_heads

    def zero_head(module: nn.Module, args: tuple) -> tuple:                   # args[0]: (batch, T, d_model)
        x = args[0].clone()
        x[..., head * d_head: (head + 1) * d_head] = 0.0
        return (x, *args[1:])

    handle = attn.out_proj.register_forward_pre_hook(zero_head)
    try:
        yield
    finally:
        handle.remove()


def model_scores(model: nn.Module, src_ids: Sequence[Sequence[int]], hyps: Sequence[Sequence[int]],
                 alpha: float = 0.6, batch_size: int = 100) -> np.ndarray:
    """``log P(hyp | src) / lp(hyp)`` of each translation by teacher forcing: the score beam search
    maximises, computed as :mod:`utils.decode` does (``<pad>``, ``<bos>`` never outputs; ``lp`` of the
    length with ``<eos>``), so a beam search result scores what beam search returned.

    Args:
        model: a :class:`utils.model.Transformer`, in the mode to score with (call ``.eval()`` first).
        src_ids: ``n`` sources as the model reads them (``<bos> … <eos>``); ``hyps``: ``n`` translations,
            each ending in ``<eos>`` (no ``<bos>``); ``alpha``: the length penalty's exponent.

    Returns ``(n,)`` float64 scores, in the input order. Raises ValueError for lists of different
    lengths, an empty translation, ``alpha < 0`` or ``batch_size < 1``.
    """
    alpha = checks.number("alpha", alpha, at_least=0)
    batch_size = checks.positive_int("batch_size", batch_size)
    if len(src_ids) != len(hyps):
        raise ValueError(f"{len(src_ids)} sources but {len(hyps)} translations; give one translation per source")
    if any(len(h) == 0 for h in hyps):
        raise ValueError("an empty translation: each must end in <eos> (decode with output='ids')")
    device = next(model.parameters()).device
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]) + len(hyps[i]))   # little padding per batch
    scores = np.zeros(len(src_ids))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            src = pad_sequences([list(src_ids[i]) for i in chunk], PAD_ID).to(device)            # (b, S)
            tgt = pad_sequences([[BOS_ID, *hyps[i]] for i in chunk], PAD_ID).to(device)          # (b, T + 1)
            logits = model(src, tgt[:, :-1]).float()                                             # (b, T, V)
            logits[..., [PAD_ID, BOS_ID]] = float("-inf")                 # never outputs, as in utils.decode
            logp = torch.log_softmax(logits, -1)
            target = tgt[:, 1:]                                                                  # (b, T)
            picked = logp.gather(-1, target[..., None])[..., 0].masked_fill(target == PAD_ID, 0.0)
            for i, s, n in zip(chunk, picked.sum(1).tolist(), (target != PAD_ID).sum(1).tolist()):
                scores[i] = s / length_penalty(n, alpha)
    return scores


def monotone_fraction(sequences: Sequence[Sequence[int]]) -> float:
    """Over all consecutive pairs of every sequence (e.g. the source position each target token reads
    most): the fraction with ``next >= current``. 1.0 for an alignment that never moves back.
    Raises ValueError when no sequence has two or more items.
    """
    steps = [np.diff(np.asarray(s)) for s in sequences if len(s) > 1]
    if not steps:
        raise ValueError("no sequence has two items: nothing to compare")
    return float(np.mean(np.concatenate(steps) >= 0))
