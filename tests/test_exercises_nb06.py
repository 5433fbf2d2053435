"""Notebook 06's exercises (`utils.exercises.nb06`): each check passes the reference solution (the
notebook's worked solution is the same code), and fails typical wrong answers with a message that says
what is wrong without giving the right numbers or the solving code away."""


import pytest
import torch

from exercise_checks import assert_fails_without_revealing
from utils.exercises import check
from utils.exercises.nb06 import check_beam_step, check_previous_token_score


# --- reference solutions ------------------------------------------------------------------------
def beam_step(scores, logp, done, eos_id):
    k, vocab = logp.shape[1], logp.shape[2]
    cand = scores[..., None] + logp                                        # (batch, k, vocab)
    carry = torch.full_like(logp, float("-inf"))
    carry[..., eos_id] = 0.0
    cand = torch.where(done[..., None], scores[..., None] + carry, cand)
    top = cand.flatten(1).topk(k, dim=1)
    return top.values, top.indices // vocab, top.indices % vocab


def previous_token_score(attn):
    return torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1).mean(-1)


# --- wrong answers, each a typical mistake ---------------------------------------------------
def step_extends_finished(scores, logp, done, eos_id):                 # finished hypotheses grow again
    return beam_step(scores, logp, torch.zeros_like(done), eos_id)


def step_without_prefix_score(scores, logp, done, eos_id):            # ranks by the next token alone
    k, vocab = logp.shape[1], logp.shape[2]
    cand = logp.clone()
    carry = torch.full_like(logp, float("-inf"))
    carry[..., eos_id] = 0.0
    cand = torch.where(done[..., None], carry, cand)
    top = cand.flatten(1).topk(k, dim=1)
    parents, tokens = top.indices // vocab, top.indices % vocab
    rows = torch.arange(scores.shape[0])[:, None]
    new = torch.where(done[rows, parents], scores[rows, parents], scores[rows, parents] + top.values)
    order = new.argsort(dim=1, descending=True)
    return new.gather(1, order), parents.gather(1, order), tokens.gather(1, order)


def step_each_hypothesis_alone(scores, logp, done, eos_id):           # the best token of each hypothesis
    vocab = logp.shape[2]
    cand = scores[..., None] + logp
    carry = torch.full_like(logp, float("-inf"))
    carry[..., eos_id] = 0.0
    cand = torch.where(done[..., None], scores[..., None] + carry, cand)
    best = cand.max(-1)
    order = best.values.argsort(dim=1, descending=True)
    parents = order
    return best.values.gather(1, order), parents, best.indices.gather(1, order) % vocab


def step_modulo_beam(scores, logp, done, eos_id):                      # parent = index % k
    values, parents, tokens = beam_step(scores, logp, done, eos_id)
    k, vocab = logp.shape[1], logp.shape[2]
    flat = parents * vocab + tokens
    return values, flat % k, flat // k % vocab


def step_finished_gains_eos(scores, logp, done, eos_id):                # a finished one pays for <eos> again
    k, vocab = logp.shape[1], logp.shape[2]
    cand = scores[..., None] + logp
    only_eos = torch.full_like(logp, float("-inf"))
    only_eos[..., eos_id] = logp[..., eos_id]
    cand = torch.where(done[..., None], scores[..., None] + only_eos, cand)
    top = cand.flatten(1).topk(k, dim=1)
    return top.values, top.indices // vocab, top.indices % vocab


def prev_counts_row_zero(attn):                                         # divides by n, not n - 1
    n = attn.shape[-1]
    return torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1).sum(-1) / n


def prev_next_token(attn):                                              # above the diagonal: i + 1
    return torch.diagonal(attn, offset=1, dim1=-2, dim2=-1).mean(-1)


def prev_one_number(attn):                                              # all heads averaged together
    return torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1).mean().reshape(1).expand(1)


def prev_diagonal(attn):                                                # the token itself
    return torch.diagonal(attn, dim1=-2, dim2=-1)[:, 1:].mean(-1)


CASES = {
    "beam_step": (check_beam_step, beam_step,
                  [step_extends_finished, step_without_prefix_score, step_each_hypothesis_alone, step_modulo_beam,
                   step_finished_gains_eos]),
    "previous_token_score": (check_previous_token_score, previous_token_score,
                             [prev_counts_row_zero, prev_next_token, prev_one_number, prev_diagonal]),
}



@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)                                                     # raises if it fails
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, _, ws) in CASES.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_wrong_answer_fails_without_revealing(name, wrong, capsys):
    assert_fails_without_revealing(name, CASES[name][0], wrong, ("topk", "flatten", "torch.where", "diagonal(", "offset=",
                                                                 "// vocab", "expected"), capsys)


@pytest.mark.parametrize("name", CASES)
def test_untouched_answer_reads_not_attempted(name, capsys):
    checker, _, _ = CASES[name]

    def untouched(*args):
        raise NotImplementedError

    assert check(name, lambda: checker(untouched)) is False
    assert "not attempted" in capsys.readouterr().out
