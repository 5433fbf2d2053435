"""The exercise checks of notebook 05 (see :mod:`utils.exercises` for how a check reports).

Each check builds its own inputs, computes the reference here, and says *what* differs (a shape, a
padded position that counts, a count that is too high) without the expected values.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from utils.batching import TokenBatches
from utils.bleu import ngrams, tokenize_13a

_PAD = 0


# -- Exercise 1 · label smoothing over the V - 2 tokens that are neither the answer nor <pad>
def _reference_smoothed(logits: torch.Tensor, target: torch.Tensor, eps: float, pad_id: int) -> torch.Tensor:
    logp = logits.double().log_softmax(-1)                                 # (batch, T, V)
    V = logits.shape[-1]
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)               # (batch, T)
    others = -logp.sum(-1) - nll + logp[..., pad_id]                       # sum of -log p over the V - 2 others
    per_token = (1 - eps) * nll + eps / (V - 2) * others
    real = target != pad_id
    return per_token[real].mean()


def check_smoothed_loss_no_pad(fn: Callable[..., Any]) -> None:
    """``fn(logits (batch, T, V), target (batch, T), eps, pad_id)`` → a scalar tensor: the mean over real
    positions of ``-sum_v q_v log p_v``, with ``q`` keeping ``1 - eps`` on the target token, ``eps / (V - 2)``
    on every token that is neither the target nor ``<pad>``, and 0 on ``<pad>``."""
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 5, 9, generator=gen, dtype=torch.float64) * 2      # (batch, T, V)
    target = torch.randint(1, 9, (3, 5), generator=gen)
    target[1, 2:] = _PAD
    target[2, 4] = _PAD
    kept = logits.clone(), target.clone()
    got = fn(logits, target, 0.1, _PAD)
    assert torch.equal(logits, kept[0]) and torch.equal(target, kept[1]), "your function changed its inputs"
    assert torch.is_tensor(got), f"return a tensor (a scalar), got {type(got).__name__}"
    assert got.dim() == 0, f"return one number, a tensor of shape (), got shape {tuple(got.shape)}"
    assert torch.isfinite(got), "the loss is not finite: is log taken of a probability of 0?"
    plain = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=_PAD)
    zero = fn(logits, target, 0.0, _PAD)
    assert torch.is_tensor(zero) and abs(float(zero) - float(plain)) < 1e-5, \
        "with eps = 0 the loss should be the plain cross-entropy averaged over the real (non-<pad>) positions"
    moved = logits.clone()
    moved[target == _PAD] += torch.randn(int((target == _PAD).sum()), 9, generator=gen, dtype=torch.float64)
    assert abs(float(fn(moved, target, 0.1, _PAD)) - float(got)) < 1e-6, \
        "changing the logits at positions whose target is <pad> changed the loss: those positions must be ignored"
    pytorch_way = F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=0.1, ignore_index=_PAD)
    assert abs(float(got) - float(pytorch_way)) > 1e-6, \
        "this is PyTorch's smoothing (eps spread over all V tokens); here <pad> gets 0 and the right token 1 - eps"
    expected = _reference_smoothed(logits, target, 0.1, _PAD)
    assert abs(float(got) - float(expected)) < 1e-5, \
        ("with eps = 0.1 the loss is off: check that <pad> gets exactly 0, the right token 1 - eps, and that "
         "eps is shared evenly by the V - 2 other tokens")
    larger = torch.randn(2, 4, 30, generator=gen, dtype=torch.float64)
    larger_target = torch.tensor([[3, 7, 29, _PAD], [12, _PAD, _PAD, _PAD]])
    got = fn(larger, larger_target, 0.2, _PAD)
    assert abs(float(got) - float(_reference_smoothed(larger, larger_target, 0.2, _PAD))) < 1e-5, \
        "right for V = 9 and eps = 0.1, off for V = 30 and eps = 0.2: is a size or eps fixed in your code?"


# -- Exercise 2 · BLEU's sufficient statistics, one sentence at a time
_BLEU_CASES = [("the the the the", "the cat is on the mat"),
               ("A man, 3.5 feet tall, runs.", "A man runs, 3.5 feet tall."),
               ("", "a dog"),
               ("two dogs play in the snow", "two dogs are playing in snow"),
               ("A dog runs", "A dog runs in a dog park with a dog"),
               ("The Dog runs.", "the dog runs .")]


def _reference_stats(hyp: str, ref: str) -> tuple[list[int], list[int], int, int]:
    h, r = tokenize_13a(hyp), tokenize_13a(ref)
    hyp_counts, ref_counts = ngrams(h, 4), ngrams(r, 4)
    matches, totals = [0] * 4, [0] * 4
    for gram, count in hyp_counts.items():
        totals[len(gram) - 1] += count
        matches[len(gram) - 1] += min(count, ref_counts[gram])
    return matches, totals, len(h), len(r)


class _Forbidden(Exception):
    """Raised by a BLEU implementation the exercise asks the learner not to call."""


@contextlib.contextmanager
def _without_bleu_libraries(fn: Callable[..., Any]) -> Iterator[None]:
    """While inside: utils.bleu.corpus_bleu and sacreBLEU's scorers raise, in their modules and wherever
    ``fn``'s globals (a notebook's namespace) hold them."""
    import sacrebleu
    import sacrebleu.metrics.bleu as sb_bleu

    import utils.bleu as ub

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise _Forbidden

    forbidden = {id(ub.corpus_bleu), id(sacrebleu.corpus_bleu), id(sacrebleu.sentence_bleu), id(sb_bleu.BLEU)}
    patches = [(ub, "corpus_bleu"), (sacrebleu, "corpus_bleu"), (sacrebleu, "sentence_bleu"), (sacrebleu, "BLEU"),
               (sacrebleu.metrics, "BLEU"), (sb_bleu, "BLEU")]
    methods = ["corpus_score", "sentence_score", "_extract_corpus_statistics", "_compute_score_from_stats"]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    saved += [(sb_bleu.BLEU, name, sb_bleu.BLEU.__dict__[name]) for name in methods if name in sb_bleu.BLEU.__dict__]
    names = getattr(fn, "__globals__", {})
    saved += [(names, key, value) for key, value in list(names.items()) if id(value) in forbidden]
    try:
        for obj, name, _ in saved:
            if isinstance(obj, dict):
                obj[name] = refuse
            else:
                setattr(obj, name, refuse)
        yield
    finally:
        for obj, name, value in reversed(saved):
            if isinstance(obj, dict):
                obj[name] = value
            else:
                setattr(obj, name, value)


def _as_ints(name: str, value: Any, n: int | None = None) -> list[int]:
    values = list(value) if n is not None else [value]
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in values), f"{name} should hold ints"
    return values


def check_sentence_stats(fn: Callable[[str, str], Any]) -> None:
    """``fn(hyp, ref)`` → ``(matches, totals, hyp_len, ref_len)`` for one sentence: two lists of 4 ints (clipped
    n-gram matches and hypothesis n-grams for n = 1..4) and the two lengths in 13a words. Without calling
    ``corpus_bleu`` or sacreBLEU: the point is to count."""
    for hyp, ref in _BLEU_CASES:
        try:
            with _without_bleu_libraries(fn):
                got = fn(hyp, ref)
        except _Forbidden:
            raise AssertionError("your function calls corpus_bleu or sacreBLEU; count the n-grams yourself "
                                 "(tokenize_13a and ngrams are allowed)") from None
        assert isinstance(got, (tuple, list)) and len(got) == 4, \
            "return four things: (matches, totals, hyp_len, ref_len)"
        matches, totals, hyp_len, ref_len = got
        assert len(matches) == 4 and len(totals) == 4, "matches and totals need one entry per order n = 1..4"
        for name, value, n in (("matches", matches, 4), ("totals", totals, 4), ("hyp_len", hyp_len, None),
                               ("ref_len", ref_len, None)):
            _as_ints(name, value, n)
        want = _reference_stats(hyp, ref)
        case = f"for hyp {hyp!r} and ref {ref!r}"
        assert (hyp_len, ref_len) == want[2:], \
            f"the lengths are wrong {case}: count 13a words (tokenize_13a), punctuation split off, case kept"
        for n in range(4):
            assert totals[n] == want[1][n], \
                f"the total of {n + 1}-grams is wrong {case}: count every {n + 1}-gram of the hypothesis, repeats too"
            if matches[n] > want[0][n] and list(matches) == _reference_stats(hyp.lower(), ref.lower())[0]:
                raise AssertionError(f"too many {n + 1}-gram matches {case}: BLEU here keeps case, so 'The' and "
                                     "'the' are different words")
            if matches[n] > want[0][n]:
                raise AssertionError(f"too many {n + 1}-gram matches {case}: an n-gram is credited at most as "
                                     "often as it occurs in the reference")
            assert matches[n] == want[0][n], f"too few {n + 1}-gram matches {case}"


# -- Exercise 3 · averaging checkpoints
def check_average_state_dicts(fn: Callable[[list[dict]], Any]) -> None:
    """``fn(states)`` → a new state dict: the element-wise mean of every floating-point tensor over the list,
    every other tensor (an integer buffer) copied from the last state dict; the inputs left unchanged."""
    gen = torch.Generator().manual_seed(7)
    states = []
    for k in range(3):
        states.append({"encoder.weight": torch.randn(4, 3, generator=gen), "encoder.bias": torch.randn(4, generator=gen),
                       "generator.weight": torch.randn(5, 4, generator=gen, dtype=torch.float64),
                       "steps": torch.tensor(5 + k)})                       # an integer buffer: 5, 6, 7
    before = [{key: t.clone() for key, t in s.items()} for s in states]
    avg = fn(states)
    assert isinstance(avg, dict), f"return a dict (a state dict), got {type(avg).__name__}"
    assert all(torch.equal(s[key], b[key]) for s, b in zip(states, before) for key in s), \
        "your function changed the state dicts it was given; build a new one"
    assert set(avg) == set(states[0]), "the average must have exactly the keys of each state dict"
    for key in ("encoder.weight", "encoder.bias", "generator.weight"):
        assert torch.is_tensor(avg[key]) and avg[key].shape == states[0][key].shape, \
            f"{key!r} should be a tensor of the same shape as in each state dict"
        assert avg[key].dtype == states[0][key].dtype, f"{key!r} should keep its dtype"
        mean = torch.stack([s[key] for s in before]).mean(0)
        if not torch.allclose(avg[key], mean, atol=1e-6):
            some = any(torch.allclose(avg[key], torch.stack([s[key] for s in before[:n]]).mean(0), atol=1e-6)
                       for n in (1, 2)) or torch.allclose(avg[key], (before[0][key] + before[-1][key]) / 2, atol=1e-6)
            raise AssertionError(f"{key!r} is not the element-wise mean over all three state dicts"
                                 + (": it averages only some of them" if some else ""))
        assert all(avg[key].data_ptr() != s[key].data_ptr() for s in states), \
            f"{key!r} shares memory with an input tensor: return new tensors"
    steps = avg["steps"]
    assert torch.is_tensor(steps) and not steps.is_floating_point(), \
        "an integer buffer must stay an integer tensor: copy it, do not average it"
    assert int(steps) == int(states[-1]["steps"]), "an integer buffer is copied from the last state dict"
    same = fn([before[0], before[0]])
    assert all(torch.equal(same[key], before[0][key]) for key in before[0]), \
        "the average of a state dict with itself should be that state dict"


# -- Exercise 4 · each process its own shard
def check_shard(fn: Callable[[list, int, int], Any]) -> None:
    """``fn(batches, rank, world_size)`` → this process's batches: every ``world_size``-th batch from ``rank``,
    after dropping the last ``len(batches) % world_size``, as ``TokenBatches(..., rank, world_size)`` does."""
    gen = torch.Generator().manual_seed(11)
    lengths = torch.randint(3, 30, (2, 700), generator=gen).tolist()
    src = [[5] * n for n in lengths[0]]
    tgt = [[1] + [5] * (n - 2) + [2] for n in lengths[1]]
    every = TokenBatches(src, tgt, max_tokens=500, seed=3).batches(2)
    kept = [list(b) for b in every]
    for world_size in (1, 2, 3, 5, 7):
        shards = [fn(every, r, world_size) for r in range(world_size)]
        assert every == kept, "your function changed the list of batches it was given"
        assert all(isinstance(s, list) for s in shards), "return a list of batches"
        sizes = {len(s) for s in shards}
        assert len(sizes) == 1, f"world_size={world_size}: the shards have different sizes; each process needs " \
                                "the same number of batches"
        assert sizes.pop() == len(every) // world_size, \
            f"world_size={world_size}: each shard should be as long as possible while all are equal"
        seen = [tuple(b) for s in shards for b in s]
        assert len(set(seen)) == len(seen), f"world_size={world_size}: a batch is in two shards"
        for r, s in enumerate(shards):
            assert s == TokenBatches(src, tgt, 500, seed=3, rank=r, world_size=world_size).batches(2), \
                f"rank {r} of {world_size} gets other batches than TokenBatches gives it"
