"""The exercise checks of notebook 06 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def _reference_beam_step(scores: Tensor, logp: Tensor, done: Tensor, eos_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """The batched beam step the check compares with (not shown to the learner)."""
    batch, k, vocab = logp.shape
    extend = scores[..., None] + logp                                      # (batch, k, vocab)
    carry = torch.full_like(logp, float("-inf"))
    carry[..., eos_id] = 0.0
    cand = torch.where(done[..., None], scores[..., None] + carry, extend)
    top = cand.flatten(1).topk(k, dim=1)
    return top.values, top.indices // vocab, top.indices % vocab


def _as_triple(result: Any, shape: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    assert isinstance(result, tuple) and len(result) == 3, "return three tensors: (new_scores, parents, tokens)"
    new_scores, parents, tokens = result
    for name, t in (("new_scores", new_scores), ("parents", parents), ("tokens", tokens)):
        assert isinstance(t, Tensor), f"{name} should be a torch.Tensor, got {type(t).__name__}"
        assert tuple(t.shape) == shape, f"{name} should have shape (batch, k) = {shape}, got {tuple(t.shape)}"
    assert not parents.is_floating_point() and not tokens.is_floating_point(), \
        "parents and tokens are indices: return integer tensors"
    return new_scores, parents, tokens


def check_beam_step(beam_step: Callable[[Tensor, Tensor, Tensor, int], Any]) -> None:
    """Notebook 06: ``beam_step(scores (batch, k), logp (batch, k, vocab), done (batch, k) bool, eos_id)`` →
    ``(new_scores, parents, tokens)``, each ``(batch, k)``, best first in each row: the ``k`` best
    extensions of a row's hypotheses, where a finished hypothesis (``done``) carries over once,
    unchanged, as the token ``eos_id``."""
    gen = torch.Generator().manual_seed(6)
    eos = 2
    for batch, k, vocab, with_done in ((1, 2, 5, False), (3, 4, 9, False), (2, 3, 7, True), (4, 4, 11, True)):
        scores = -torch.rand(batch, k, generator=gen, dtype=torch.float64) * 3
        scores = scores.sort(dim=1, descending=True).values
        logp = torch.log_softmax(torch.randn(batch, k, vocab, generator=gen, dtype=torch.float64) * 2, dim=-1)
        logp[:, 0, :] = logp[:, 0, :].roll(1, dims=-1)                    # the best prefix need not own every winner
        done = torch.zeros(batch, k, dtype=torch.bool)
        if with_done:
            done[:, 0] = True                                              # the best hypothesis has finished
            done[0, k - 1] = True                                          # and, in row 0, the worst too
        case = f"batch {batch}, beam {k}, vocabulary {vocab}" + (", some hypotheses finished" if with_done else "")
        with torch.no_grad():
            result = beam_step(scores.clone(), logp.clone(), done.clone(), eos)
        new_scores, parents, tokens = _as_triple(result, (batch, k))
        ref_scores, _, _ = _reference_beam_step(scores, logp, done, eos)
        assert int(parents.min()) >= 0 and int(parents.max()) < k, \
            f"{case}: a parent is not a hypothesis index 0..k-1: is the parent the flat index divided by the vocabulary?"
        assert int(tokens.min()) >= 0 and int(tokens.max()) < vocab, f"{case}: a token is outside the vocabulary"
        if with_done:
            for b in range(batch):
                for j in torch.nonzero(done[b]).flatten().tolist():
                    slots = torch.nonzero(parents[b] == j).flatten().tolist()
                    if ref_scores[b].min() <= scores[b, j]:                # good enough to stay in the beam
                        assert len(slots) == 1, f"{case}: a finished hypothesis must carry over exactly once (it " \
                                                f"appears {len(slots)} times in row {b}): it is not extended any more"
                    for slot in slots:
                        assert int(tokens[b, slot]) == eos, f"{case}: a finished hypothesis carries over as <eos>"
                        assert abs(float(new_scores[b, slot]) - float(scores[b, j])) < 1e-9, \
                            f"{case}: a finished hypothesis must keep its score: it gains no more log-probability"
        rows = torch.arange(batch)[:, None]
        claimed = scores[rows, parents] + logp[rows, parents, tokens]      # what (parent, token) is worth
        claimed = torch.where(done[rows, parents], scores[rows, parents], claimed)
        assert torch.allclose(new_scores.double(), claimed, atol=1e-9), \
            f"{case}: a new score is not its parent's score plus the chosen token's log-probability: do parents " \
            "and tokens point at the candidate whose score you return, and is the prefix's score added?"
        assert bool((new_scores[:, :-1] >= new_scores[:, 1:]).all()), f"{case}: each row must be sorted, best first"
        assert torch.allclose(new_scores.double(), ref_scores, atol=1e-9), \
            f"{case}: these are not the k best candidates of the row: a candidate is worth its prefix's score plus " \
            "its token's log-probability, and every (hypothesis, token) pair of a row competes with every other"


def check_previous_token_score(previous_token_score: Callable[[Tensor], Any]) -> None:
    """Notebook 06: ``previous_token_score(attn (heads, n, n))`` → ``(heads,)``: per head, the mean over
    the positions ``i = 1 … n-1`` of the weight that row ``i`` puts on column ``i - 1``."""
    gen = torch.Generator().manual_seed(60)
    shifted = torch.eye(6).roll(-1, dims=1)[None]                          # every row i on i-1 (row 0 on 5)
    got = previous_token_score(shifted.clone())
    assert isinstance(got, Tensor), f"return a torch.Tensor, got {type(got).__name__}"
    assert tuple(got.shape) == (1,), f"one score per head: shape (heads,) = (1,), got {tuple(got.shape)}"
    assert torch.allclose(got.double(), torch.ones(1, dtype=torch.float64)), \
        "a head whose every row i > 0 looks only at i - 1 should score 1 (row 0 has no previous token)"
    diagonal = torch.eye(5)[None]
    assert torch.allclose(previous_token_score(diagonal.clone()).double(), torch.zeros(1, dtype=torch.float64)), \
        "a head that only looks at the token itself should score 0"
    following = torch.eye(5).roll(1, dims=1)[None]                         # every row i on i+1
    assert float(previous_token_score(following.clone())[0]) < 0.5, \
        "a head that looks at the NEXT token scores high: use the weight on column i - 1, below the diagonal"
    attn = torch.randn(3, 7, 7, generator=gen, dtype=torch.float64).softmax(-1)
    got = previous_token_score(attn.clone())
    assert tuple(got.shape) == (3,), f"one score per head: shape (heads,) = (3,), got {tuple(got.shape)}"
    reference = torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1).mean(-1)
    assert torch.allclose(got.double(), reference, atol=1e-9), \
        "random attention: the scores differ; average over the n - 1 rows that have a previous token, " \
        "one score per head"
