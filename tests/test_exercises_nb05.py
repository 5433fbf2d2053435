"""Notebook 05's exercises (`utils.exercises.nb05`): each check passes the worked solution, fails typical wrong
answers with a message that names what is wrong without the expected values or the solving code, and reads
"not attempted" while the exercise is untouched."""

import json
import re
from pathlib import Path

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from utils.bleu import corpus_bleu, ngrams, tokenize_13a
from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb05 import (check_average_state_dicts, check_sentence_stats, check_shard,
                                  check_smoothed_loss_no_pad)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_training_multi30k.ipynb"


# --- the worked solutions (notebook 05's solution cells hold the same code) ---------------------------
def smoothed_loss_no_pad(logits, target, eps, pad_id):
    logp = logits.log_softmax(-1)                                          # (batch, T, V)
    V = logits.shape[-1]
    q = torch.full_like(logp, eps / (V - 2))
    q[..., pad_id] = 0.0
    q.scatter_(-1, target.unsqueeze(-1), 1 - eps)
    real = target != pad_id
    return (-(q * logp).sum(-1))[real].mean()


def sentence_stats(hyp, ref):
    h, r = tokenize_13a(hyp), tokenize_13a(ref)
    hyp_counts, ref_counts = ngrams(h, 4), ngrams(r, 4)
    matches, totals = [0] * 4, [0] * 4
    for gram, count in hyp_counts.items():
        totals[len(gram) - 1] += count
        matches[len(gram) - 1] += min(count, ref_counts[gram])
    return matches, totals, len(h), len(r)


def average_state_dicts(states):
    out = {}
    for key, last in states[-1].items():
        out[key] = torch.stack([s[key] for s in states]).mean(0) if last.is_floating_point() else last.clone()
    return out


def shard(batches, rank, world_size):
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


# --- wrong answers, each a typical mistake ---------------------------------------------------------
def loss_pytorch_smoothing(logits, target, eps, pad_id):
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=eps, ignore_index=pad_id)


def loss_pad_gets_a_share(logits, target, eps, pad_id):          # tensor2tensor's eps / (V - 1), <pad> included
    logp = logits.log_softmax(-1)
    q = torch.full_like(logp, eps / (logits.shape[-1] - 1))
    q.scatter_(-1, target.unsqueeze(-1), 1 - eps)
    return (-(q * logp).sum(-1))[target != pad_id].mean()


def loss_over_every_position(logits, target, eps, pad_id):
    logp = logits.log_softmax(-1)
    q = torch.full_like(logp, eps / (logits.shape[-1] - 2))
    q[..., pad_id] = 0.0
    q.scatter_(-1, target.unsqueeze(-1), 1 - eps)
    return (-(q * logp).sum(-1)).mean()


def loss_summed(logits, target, eps, pad_id):
    return smoothed_loss_no_pad(logits, target, eps, pad_id) * int((target != pad_id).sum())


def loss_fixed_vocabulary(logits, target, eps, pad_id):           # V and eps typed in from the first example
    logp = logits.log_softmax(-1)
    q = torch.full_like(logp, 0.1 / 7)
    q[..., pad_id] = 0.0
    q.scatter_(-1, target.unsqueeze(-1), 1 - eps)
    return (-(q * logp).sum(-1))[target != pad_id].mean()


def stats_via_corpus_bleu(hyp, ref):
    s = corpus_bleu([hyp], [ref])
    return s.matches, s.totals, s.sys_len, s.ref_len


def stats_via_sacrebleu(hyp, ref):
    s = sacrebleu.corpus_bleu([hyp], [[ref]])
    return list(s.counts), list(s.totals), s.sys_len, s.ref_len


def stats_unclipped(hyp, ref):
    h, r = tokenize_13a(hyp), tokenize_13a(ref)
    hyp_counts, ref_counts = ngrams(h, 4), ngrams(r, 4)
    matches, totals = [0] * 4, [0] * 4
    for gram, count in hyp_counts.items():
        totals[len(gram) - 1] += count
        matches[len(gram) - 1] += count if gram in ref_counts else 0
    return matches, totals, len(h), len(r)


def stats_split_on_spaces(hyp, ref):
    h, r = hyp.split(), ref.split()
    hyp_counts, ref_counts = ngrams(h, 4), ngrams(r, 4)
    matches, totals = [0] * 4, [0] * 4
    for gram, count in hyp_counts.items():
        totals[len(gram) - 1] += count
        matches[len(gram) - 1] += min(count, ref_counts[gram])
    return matches, totals, len(h), len(r)


def stats_distinct_ngrams(hyp, ref):
    matches, _, c, r = sentence_stats(hyp, ref)
    totals = [0] * 4
    for gram in ngrams(tokenize_13a(hyp), 4):
        totals[len(gram) - 1] += 1
    return matches, totals, c, r


def stats_lowercased(hyp, ref):
    return sentence_stats(hyp.lower(), ref.lower())


def average_first_and_last(states):
    return {k: (states[0][k] + states[-1][k]) / 2 if v.is_floating_point() else v.clone()
            for k, v in states[-1].items()}


def average_integers_too(states):
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) for k, v in states[-1].items()}


def average_in_place(states):
    out = states[0]
    for key, value in out.items():
        if value.is_floating_point():
            for s in states[1:]:
                value += s[key]
            value /= len(states)
    out.update({k: v.clone() for k, v in states[-1].items() if not v.is_floating_point()})
    return out


def average_rebinding_the_last(states):
    out = dict(states[-1])
    return out


def shard_without_dropping(batches, rank, world_size):
    return batches[rank::world_size]


def shard_contiguous(batches, rank, world_size):
    size = len(batches) // world_size
    return batches[rank * size:(rank + 1) * size]


def shard_drops_the_first(batches, rank, world_size):
    return batches[len(batches) % world_size:][rank::world_size]


CASES = {
    "smoothed_loss": (check_smoothed_loss_no_pad, smoothed_loss_no_pad,
                      [loss_pytorch_smoothing, loss_pad_gets_a_share, loss_over_every_position, loss_summed,
                       loss_fixed_vocabulary]),
    "sentence_stats": (check_sentence_stats, sentence_stats,
                       [stats_via_corpus_bleu, stats_via_sacrebleu, stats_unclipped, stats_split_on_spaces,
                        stats_distinct_ngrams, stats_lowercased]),
    "average_state_dicts": (check_average_state_dicts, average_state_dicts,
                            [average_first_and_last, average_integers_too, average_in_place,
                             average_rebinding_the_last]),
    "shard": (check_shard, shard, [shard_without_dropping, shard_contiguous, shard_drops_the_first]),
}
GIVEAWAYS = ("expected", "log_softmax", "scatter_", "min(count", "torch.stack", ".mean(0)", "rank:usable",
             "% world_size", "eps / (V - 2)", "def ")



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


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_forbidden_scorers_are_restored_after_the_check():
    import utils.bleu
    before = (utils.bleu.corpus_bleu, sacrebleu.corpus_bleu, sacrebleu.BLEU, sacrebleu.BLEU.corpus_score)
    with pytest.raises(AssertionError):
        check_sentence_stats(stats_via_sacrebleu)
    assert (utils.bleu.corpus_bleu, sacrebleu.corpus_bleu, sacrebleu.BLEU, sacrebleu.BLEU.corpus_score) == before
    assert abs(corpus_bleu(["a cat sat on the mat"], ["a cat sat on the mat"]).score - 100) < 1e-9


def test_a_learner_namespace_that_imported_corpus_bleu_is_refused_too():
    namespace = {"corpus_bleu": corpus_bleu}
    exec("def sentence_stats(hyp, ref):\n    s = corpus_bleu([hyp], [ref])\n"
         "    return s.matches, s.totals, s.sys_len, s.ref_len\n", namespace)
    with pytest.raises(AssertionError, match="calls corpus_bleu"):
        check_sentence_stats(namespace["sentence_stats"])
    assert namespace["corpus_bleu"] is corpus_bleu


def test_notebook_calls_the_checks_and_hides_the_solutions():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    for name in ("check_smoothed_loss_no_pad", "check_sentence_stats", "check_average_state_dicts", "check_shard"):
        assert any(re.search(rf"check\(\"Exercise \d\", lambda: {name}\(", s) for s in code), name
    assert not any(re.search(r"^def check_\d", s, re.M) for s in code), "the checks live in utils.exercises.nb05"
    solutions = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("# SOLUTION")]
    assert len(solutions) == 4
    assert all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions)
