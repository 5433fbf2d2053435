"""The exercise checks of notebook 08 (see :mod:`utils.exercises` for how a check reports).

Each check builds its own inputs, runs the learner's function on copies and says what is wrong (an
input changed in place, a token kept or dropped, a repeated token penalised twice, a model run once
per step) without the right values."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from utils.bonus.gpt import GPT, generate, make_gpt
from utils.kv_cache import KVCache
from utils.runtime import set_seed

_FIVE = [0.5, 0.2, 0.15, 0.1, 0.05]


def _reference_nucleus(logits: Tensor, p: float) -> Tensor:
    """(batch, vocab) → True where a token is in its row's nucleus: the likelier tokens hold less than p."""
    probs = logits.softmax(-1)
    likelier = (probs[:, None, :] > probs[:, :, None]).float()             # (batch, vocab, vocab)
    return (likelier * probs[:, None, :]).sum(-1) < p


def _same_input(name: str, before: Tensor, after: Tensor) -> None:
    assert torch.equal(before, after), f"{name} changed the tensor it was given: work on a copy (no in-place edits)"


def check_top_p_filter(top_p_filter: Callable[[Tensor, float], Tensor]) -> None:
    """Notebook 08, exercise 1: ``top_p_filter(logits, p)`` for ``(batch, vocab)`` logits returns a
    copy with every score outside its row's nucleus set to -inf; ``ValueError`` for p outside (0, 1]."""
    z = torch.log(torch.tensor([_FIVE, _FIVE[::-1]]))                      # row 2 is row 1 reversed
    for p in (0.45, 0.6, 0.8, 0.88, 1.0, 1e-9):
        given = z.clone()
        out = top_p_filter(given, p)
        _same_input("top_p_filter", z, given)
        assert isinstance(out, Tensor) and out.shape == z.shape, \
            f"return a tensor shaped like the logits, {tuple(z.shape)}"
        kept, want = torch.isfinite(out[0]), _reference_nucleus(z, p)[0]
        if kept.sum() != want.sum():
            more = "too many" if kept.sum() > want.sum() else "too few"
            raise AssertionError(f"p={p:g}: {more} tokens kept ({int(kept.sum())}) of the row with probabilities "
                                 f"{_FIVE}: the nucleus is the smallest set of likeliest tokens whose mass reaches p")
        assert torch.equal(kept, want), f"p={p:g}: the kept tokens are not the likeliest ones"
        assert torch.equal(torch.isfinite(out[1]), kept.flip(0)), \
            "row 2 is row 1 reversed, and its nucleus is not: filter each row on its own, in vocabulary order"
        finite = torch.isfinite(out)
        assert torch.equal(out[finite], z[finite]), "the kept scores must stay unchanged"
    gen = torch.Generator().manual_seed(8)
    z = torch.randn(4, 50, generator=gen) * 2                              # (batch, vocab)
    for p in (0.5, 0.9):
        given = z.clone()
        out = top_p_filter(given, p)
        _same_input("top_p_filter", z, given)
        assert torch.equal(torch.isfinite(out), _reference_nucleus(z, p)), \
            f"p={p:g} on random logits (4, 50): some row keeps the wrong tokens"
    for bad in (0.0, 1.5, -0.1):
        try:
            top_p_filter(z.clone(), bad)
        except ValueError:
            continue
        raise AssertionError(f"p={bad} is outside (0, 1]: raise ValueError")


def check_repetition_penalty(repetition_penalty: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Notebook 08, exercise 2: ``repetition_penalty(logits, previous_ids, penalty)`` returns a new
    tensor in which every token that occurs in ``previous_ids`` scores lower (divided by ``penalty``
    when positive, multiplied when not), once however often it occurs."""
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [1.0, 1.0, -2.0, 0.0]])
    prev = torch.tensor([[0, 1, 1], [2, 2, 2]])
    given = logits.clone()
    out = repetition_penalty(given, prev.clone(), 2.0)
    _same_input("repetition_penalty", logits, given)
    assert isinstance(out, Tensor) and out.shape == logits.shape, "return a tensor shaped like logits"
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, prev, True)
    assert torch.equal(out[~seen], logits[~seen]), "tokens that are not in the text must keep their scores"
    for sign, where in (("positive", logits > 0), ("negative", logits <= 0)):
        assert (out[seen & where] < logits[seen & where]).all(), \
            f"a token of the text with a {sign} score did not score lower: the penalty must lower every such token"
    once = torch.where(logits > 0, logits / 2.0, logits * 2.0)
    if not torch.allclose(out[seen], once[seen]):
        raise AssertionError("a token that occurs several times was penalised more than once (or by the wrong "
                             "amount): penalise each token once")
    given = logits.clone()
    assert torch.equal(repetition_penalty(given, prev, 1.0), logits), "a penalty of 1 must change nothing"
    gen = torch.Generator().manual_seed(0)
    big, ids = torch.randn(3, 50, generator=gen), torch.randint(0, 50, (3, 20), generator=gen)
    out = repetition_penalty(big.clone(), ids, 1.3)
    seen = torch.zeros(3, 50, dtype=torch.bool).scatter_(1, ids, True)     # (3, 50): which tokens occurred
    assert torch.equal(out[~seen], big[~seen]), "on random logits (3, 50), a token not in the text changed"
    assert (out[seen] < big[seen]).all(), "on random logits (3, 50), a token in the text did not score lower"


def check_kv_cache_bytes(kv_cache_bytes: Callable[[int, int, int, int, int], int]) -> None:
    """Notebook 08, exercise 3: ``kv_cache_bytes(n_layers, d_model, batch, length, bytes_per_number)``
    equals ``KVCache.nbytes`` of real caches, and the two famous models' figures."""
    for n_layers, d_model, n_heads, batch, length in [(2, 32, 4, 3, 10), (3, 24, 6, 1, 16), (1, 8, 1, 5, 7)]:
        m = make_gpt(11, context=16, n_layers=n_layers, d_model=d_model, n_heads=n_heads).eval()
        cache = KVCache()
        with torch.no_grad():
            m(torch.zeros(batch, length, dtype=torch.long), cache)
        got = kv_cache_bytes(n_layers, d_model, batch, length, 4)
        case = f"{n_layers} layers, d_model {d_model}, batch {batch}, {length} positions, 4-byte numbers"
        assert isinstance(got, int) or float(got).is_integer(), f"{case}: a count of bytes is a whole number"
        if got != cache.nbytes:
            ratio = got / cache.nbytes
            why = {0.5: "half of what KVCache holds: what does a layer keep for each position?",
                   2.0: "twice what KVCache holds"}.get(ratio, "not what KVCache holds")
            raise AssertionError(f"{case}: your count is {why}")
    assert kv_cache_bytes(12, 768, 1, 1024, 2) == kv_cache_bytes(12, 768, 1, 1024, 4) // 2, \
        "16-bit numbers take half the bytes of 32-bit ones"
    assert kv_cache_bytes(32, 4096, 1, 4096, 2) == 2 * 1024**3, "the 7B model's cache is off"


def check_continuation_log_prob(continuation_log_prob: Callable[[GPT, Tensor, int], Tensor],
                                model: GPT | None = None, val_ids: Tensor | None = None) -> None:
    """Notebook 08, exercise 4: ``continuation_log_prob(model, ids, prompt_len)`` → ``(batch,)``, the
    sum of ``log p(x_t | x_<t)`` over ``t >= prompt_len``, from ONE forward pass of the model. With
    the trained ``model`` and ``val_ids``, greedy continuations must score higher than sampled ones."""
    set_seed(1)
    small = make_gpt(13, context=12, n_layers=2, d_model=16, n_heads=2).eval()
    ids = torch.randint(0, 13, (3, 12))
    with torch.no_grad():
        logp = small(ids).log_softmax(-1)[:, :-1].gather(2, ids[:, 1:, None])[..., 0]   # (3, 11): token t+1
    shifted = {4: logp[:, 3:].sum(1), 3: logp[:, 2:].sum(1), 5: logp[:, 4:].sum(1)}
    calls = []
    hook = small.blocks[0].register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with torch.no_grad():
            got = continuation_log_prob(small, ids.clone(), 4)
    finally:
        hook.remove()
    assert len(calls) == 1, (f"the model ran {len(calls)} times: one forward pass over the whole sequence "
                             "predicts every position at once (the causal mask keeps each from the future)")
    assert isinstance(got, Tensor) and got.shape == (3,), "return one number per row: shape (batch,)"
    if not torch.allclose(got, shifted[4], atol=1e-4):
        if torch.allclose(got, shifted[3], atol=1e-4) or torch.allclose(got, shifted[5], atol=1e-4):
            raise AssertionError("off by one position: the logits at position t predict token t + 1")
        if torch.allclose(got, shifted[4] / 8, atol=1e-4):
            raise AssertionError("that is the mean log-probability; return the total")
        raise AssertionError("differs from the model's log-probabilities of the tokens after the prompt "
                             "(log-softmax of the logits, at each actual next token)")
    if model is None or val_ids is None:
        return
    prompts = val_ids[torch.tensor([0, 9_000, 30_000])[:, None] + torch.arange(10)]   # (3, 10)
    greedy = generate(model, prompts, 100, temperature=0.0)
    sampled = generate(model, prompts, 100, temperature=1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lp_greedy, lp_sampled = continuation_log_prob(model, greedy, 10), continuation_log_prob(model, sampled, 10)
    assert (lp_greedy > lp_sampled).all(), "on the trained model, greedy continuations should be likelier than " \
                                           "sampled ones"
