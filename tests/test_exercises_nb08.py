"""Notebook 08's exercise checks (`utils.exercises.nb08`): the reference solutions pass; typical
wrong answers fail with a message that says what is wrong without the right values or the code
that solves it; an untouched exercise reads "not attempted". The library's top-p sampling
(`utils.bonus.gpt.sample_next(..., top_p=...)`) keeps the same nucleus as the reference filter."""

import json
import re
from pathlib import Path

import pytest
import torch

from utils.bonus.gpt import generate, make_gpt, sample_next
from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb08 import (check_continuation_log_prob, check_kv_cache_bytes, check_repetition_penalty,
                                  check_top_p_filter)


# --- reference solutions (the notebook's worked solutions are the same code) ---------------------
def top_p_filter(logits, p):
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    outside = probs.cumsum(-1) - probs >= p
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits.masked_fill(outside, float("-inf")))


def repetition_penalty(logits, previous_ids, penalty):
    seen = logits.gather(1, previous_ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.clone().scatter_(1, previous_ids, seen)


def kv_cache_bytes(n_layers, d_model, batch, length, bytes_per_number):
    return 2 * n_layers * batch * length * d_model * bytes_per_number


def continuation_log_prob(model, ids, prompt_len):
    logp = model(ids[:, :-1]).log_softmax(-1).gather(2, ids[:, 1:, None])[..., 0]
    return logp[:, prompt_len - 1:].sum(dim=1)


# --- wrong answers, each a typical mistake -------------------------------------------------------
def top_p_in_place(logits, p):                          # right tokens, but writes into the input
    out = top_p_filter(logits, p)
    logits.copy_(out)
    return logits


def top_p_drops_crossing_token(logits, p):              # keeps only tokens whose running mass stays below p
    if not 0 < p <= 1:
        raise ValueError(p)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    outside = sorted_logits.softmax(-1).cumsum(-1) > p
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits.masked_fill(outside, float("-inf")))


def top_p_sorted_order(logits, p):                      # forgets to scatter back to vocabulary order
    if not 0 < p <= 1:
        raise ValueError(p)
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    return sorted_logits.masked_fill(probs.cumsum(-1) - probs >= p, float("-inf"))


def top_p_no_value_check(logits, p):
    return top_p_filter(logits, min(max(p, 1e-9), 1.0))


def penalty_paper_version(logits, previous_ids, penalty):   # divides every score: negative ones rise
    seen = logits.gather(1, previous_ids)
    return logits.clone().scatter_(1, previous_ids, seen / penalty)


def penalty_per_occurrence(logits, previous_ids, penalty):  # a token seen three times is penalised three times
    out = logits.clone()
    for b in range(logits.shape[0]):
        for t in previous_ids[b].tolist():
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out


def penalty_in_place(logits, previous_ids, penalty):
    out = repetition_penalty(logits, previous_ids, penalty)
    logits.copy_(out)
    return logits


def bytes_keys_only(n_layers, d_model, batch, length, bytes_per_number):
    return n_layers * batch * length * d_model * bytes_per_number


def bytes_no_batch(n_layers, d_model, batch, length, bytes_per_number):
    return 2 * n_layers * length * d_model * bytes_per_number


def bytes_ignores_width(n_layers, d_model, batch, length, bytes_per_number):
    return 2 * n_layers * batch * length * d_model * 4


def logprob_step_loop(model, ids, prompt_len):           # the slow per-step loop the exercise asks to avoid
    return sum(model(ids[:, :t])[:, -1].log_softmax(-1).gather(1, ids[:, t:t + 1])[:, 0]
               for t in range(prompt_len, ids.shape[1]))


def logprob_off_by_one(model, ids, prompt_len):
    logp = model(ids[:, :-1]).log_softmax(-1).gather(2, ids[:, 1:, None])[..., 0]
    return logp[:, prompt_len:].sum(dim=1)


def logprob_no_softmax(model, ids, prompt_len):          # raw logits are not log-probabilities
    logits = model(ids[:, :-1]).gather(2, ids[:, 1:, None])[..., 0]
    return logits[:, prompt_len - 1:].sum(dim=1)


def logprob_mean(model, ids, prompt_len):
    logp = model(ids[:, :-1]).log_softmax(-1).gather(2, ids[:, 1:, None])[..., 0]
    return logp[:, prompt_len - 1:].mean(dim=1)


CASES = {
    "top_p_filter": (check_top_p_filter, top_p_filter,
                     [top_p_in_place, top_p_drops_crossing_token, top_p_sorted_order, top_p_no_value_check]),
    "repetition_penalty": (check_repetition_penalty, repetition_penalty,
                           [penalty_paper_version, penalty_per_occurrence, penalty_in_place]),
    "kv_cache_bytes": (check_kv_cache_bytes, kv_cache_bytes, [bytes_keys_only, bytes_no_batch, bytes_ignores_width]),
    "continuation_log_prob": (check_continuation_log_prob, continuation_log_prob,
                              [logprob_step_loop, logprob_off_by_one, logprob_no_softmax, logprob_mean]),
}
GIVEAWAYS = ("cumsum", "scatter", "sort(", "2 *", "* 2", "gather", "log_softmax(", "expected", "tolist",
             "torch.", "[[", "37748736", "37,748,736", "2147483648", "2,147,483,648")



@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, _, ws) in CASES.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_wrong_answer_fails_without_revealing(name, wrong, capsys):
    assert_fails_without_revealing(name, CASES[name][0], wrong, GIVEAWAYS, capsys)


@pytest.mark.parametrize("wrong, reason", [(top_p_in_place, "copy"), (penalty_in_place, "copy"),
                                           (logprob_step_loop, "one forward pass"),
                                           (penalty_per_occurrence, "more than once"),
                                           (top_p_drops_crossing_token, "too few"), (bytes_keys_only, "half")])
def test_the_reason_is_the_real_one(wrong, reason):
    """An in-place edit is reported as one, not as a wrong count; the per-step loop as a loop."""
    checker = next(c for c, _, ws in CASES.values() if wrong in ws)
    with pytest.raises(AssertionError, match=reason):
        checker(wrong)


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_log_prob_check_with_a_model_compares_greedy_and_sampled():
    torch.manual_seed(0)
    model = make_gpt(20, context=128, n_layers=1, d_model=16, n_heads=2).eval()
    with torch.no_grad():
        model.head.weight.mul_(20)                       # peaked predictions, as a trained model's are
    val_ids = torch.randint(0, 20, (30_010,))
    check_continuation_log_prob(continuation_log_prob, model, val_ids)
    with pytest.raises(AssertionError, match="greedy"):
        check_continuation_log_prob(lambda m, ids, n: continuation_log_prob(m, ids, n) * (1 if n == 4 else -1),
                                    model, val_ids)


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9, 1.0])
def test_library_top_p_samples_only_the_reference_nucleus(p):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 30, generator=gen) * 2
    nucleus = torch.isfinite(top_p_filter(logits, p))                       # (6, 30)
    draws = torch.stack([sample_next(logits, 1.0, generator=gen, top_p=p) for _ in range(300)], 1)  # (6, 300)
    assert nucleus.gather(1, draws).all(), "a token outside the nucleus was drawn"
    if p < 1:                                            # (p = 1 keeps tokens too rare to be drawn 300 times)
        assert (torch.zeros_like(nucleus).scatter_(1, draws, True) == nucleus).all(), "every nucleus token is drawn"


def test_library_top_p_refuses_bad_values_and_generate_passes_it_on():
    logits = torch.zeros(1, 5)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="top_p"):
            sample_next(logits, 1.0, top_p=bad)
    torch.manual_seed(0)
    model = make_gpt(11, context=16, n_layers=1, d_model=8, n_heads=1)
    prompt = torch.zeros(2, 3, dtype=torch.long)
    tiny_p = generate(model, prompt, 10, temperature=1.0, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiny_p, generate(model, prompt, 10, temperature=0.0)), "a tiny nucleus is greedy"


def test_notebook_cells_only_call_the_checks():
    """No learner cell holds a check (and with it the answer): each calls utils.exercises.nb08."""
    path = Path(__file__).resolve().parents[1] / "notebooks" / "08_gpt_kv_cache.ipynb"
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    code = ["".join(c["source"]) for c in cells]
    calls = [s for s in code if re.search(r"check\(\"Exercise \d\", lambda: check_\w+\(", s)]
    assert len(calls) >= 8, "four exercise cells and four solution cells call utils.exercises.nb08's checks"
    assert not any(re.search(r"def check_\d", s) for s in code), "checks live in utils/exercises/nb08.py"
    for cell, text in zip(cells, code):
        if text.startswith("# SOLUTION"):
            assert cell["metadata"].get("jupyter", {}).get("source_hidden"), "worked solutions start hidden"
            assert text.rstrip().splitlines()[-1].startswith("assert check("), "a solution ends by asserting its check"
