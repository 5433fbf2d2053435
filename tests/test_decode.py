import math

import pytest
import torch
from torch import nn

from utils.decode import beam_search, greedy_decode, length_penalty
from utils.model import make_model

PAD, BOS, EOS = 0, 1, 2


def naive_greedy(model, src, max_len):
    """Notebook 04's first version: re-run the whole model on the prefix, every row to the end."""
    ys = torch.full((src.shape[0], 1), BOS)
    with torch.no_grad():
        for _ in range(max_len):
            logits = model(src, ys)[:, -1]
            logits[:, [PAD, BOS]] = float("-inf")                          # never outputs
            next_id = logits.argmax(-1)
            ys = torch.cat([ys, next_id[:, None]], 1)
            if (ys == EOS).any(1).all():
                break
    out = ys[:, 1:]
    after_eos = (out == EOS).long().cumsum(1) - (out == EOS).long() > 0   # strictly after the first <eos>
    return out.masked_fill(after_eos, PAD)


def model_that_stops():
    """A random model whose rows end at different steps (a nudge towards <eos>)."""
    torch.manual_seed(1)
    model = make_model(12, 12, n_layers=2, d_model=16, n_heads=2, d_ff=32, max_len=32).eval()
    with torch.no_grad():
        model.generator.bias[EOS] += 3.0
    src = torch.randint(4, 12, (6, 7))
    src[1, 4:] = PAD
    src[3, 2:] = PAD
    return model, src


class Scripted(nn.Module):
    """Emits a fixed token sequence per row, whatever it is fed (to test the control flow)."""

    def __init__(self, script: list[list[int]], vocab: int = 10):
        super().__init__()
        self.script, self.vocab, self.pad_id = torch.tensor(script), vocab, PAD
        self.calls = 0

    def encode(self, src_ids):
        self.calls, self.sizes = 0, []
        memory = torch.zeros(src_ids.shape[0], src_ids.shape[1], 4)
        memory[:, 0, 0] = torch.arange(src_ids.shape[0]).float()    # each row knows its number
        return memory

    def decode(self, tgt_ids, memory, src_ids):
        self.calls += 1
        self.sizes.append(tgt_ids.shape[0])
        step = tgt_ids.shape[1] - 1
        rows = memory[:, 0, 0].long()                               # the decoder may see a subset of rows
        logits = torch.zeros(tgt_ids.shape[0], tgt_ids.shape[1], self.vocab)
        logits[torch.arange(tgt_ids.shape[0]), -1, self.script[rows, step]] = 1.0
        return logits


@pytest.mark.slow
def test_equals_the_naive_loop():
    model, src = model_that_stops()
    ours = greedy_decode(model, src, max_len=10)
    expected = naive_greedy(model, src, 10)
    assert torch.equal(ours, expected)
    ended = (ours == EOS).any(1)
    assert ended.any() and not ended.all(), "the test needs rows that end and rows that do not"


def test_pads_after_eos_and_stops_when_every_row_ended():
    script = [[5, 6, EOS, 7, 8, 9], [5, EOS, 9, 9, 9, 9], [4, 4, 4, EOS, 9, 9]]
    model = Scripted(script)
    out = greedy_decode(model, torch.ones(3, 4, dtype=torch.long), max_len=6)
    assert out.tolist() == [[5, 6, EOS, PAD], [5, EOS, PAD, PAD], [4, 4, 4, EOS]]
    assert model.calls == 4, "decoding stops at the step where the last row emits <eos>"
    assert model.sizes == [3, 3, 2, 1], "a row that has produced <eos> leaves the batch the model runs on"


def test_runs_to_max_len_without_eos():
    model = Scripted([[5, 6, 7, 8], [4, 4, 4, 4]])
    out = greedy_decode(model, torch.ones(2, 3, dtype=torch.long), max_len=3)
    assert out.tolist() == [[5, 6, 7], [4, 4, 4]] and out.dtype == torch.long


def test_batch_of_one_equals_its_row_in_a_batch():
    model, src = model_that_stops()
    batch = greedy_decode(model, src, max_len=10)
    for i in range(src.shape[0]):
        alone = greedy_decode(model, src[i:i + 1], max_len=10)
        assert alone.shape[0] == 1 and alone.shape[1] <= 10
        width = alone.shape[1]
        assert torch.equal(alone[0], batch[i, :width])
        assert (batch[i, width:] == PAD).all(), "alone it stopped at <eos>; in the batch it was padded"


def test_restores_the_training_mode_and_keeps_no_graph():
    model, src = model_that_stops()
    model.train()
    out = greedy_decode(model, src, max_len=4)
    assert model.training, "the model's mode is restored"
    assert not out.requires_grad
    assert torch.equal(out, greedy_decode(model.eval(), src, max_len=4)), "dropout is off while decoding"


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_bad_max_len(bad):
    model, src = model_that_stops()
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        greedy_decode(model, src, max_len=bad)


def test_max_len_beyond_the_positional_table_and_bad_source():
    model, src = model_that_stops()                       # built with max_len=32
    with pytest.raises(ValueError, match="longer than the model's positional table"):
        greedy_decode(model, src, max_len=33)
    with pytest.raises(ValueError, match=r"src_ids must be a non-empty \(batch, src_len\)"):
        greedy_decode(model, src[0], max_len=5)


# ---------------------------------------------------------------- beam search
A, B = 3, 4


class Table(nn.Module):
    """A 'model' whose next-token probabilities are written down per prefix (vocab: pad, bos, eos, A, B).
    A prefix not in the table ends: <eos> with probability ~1."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]]):
        super().__init__()
        self.table, self.pad_id = table, PAD

    def encode(self, src_ids):
        return torch.zeros(src_ids.shape[0], src_ids.shape[1], 4)

    def decode(self, tgt_ids, memory, src_ids):
        logits = torch.full((tgt_ids.shape[0], tgt_ids.shape[1], 5), -30.0)
        for row, ids in enumerate(tgt_ids.tolist()):
            for token, prob in self.table.get(tuple(ids[1:]), {EOS: 1.0}).items():
                logits[row, -1, token] = math.log(prob)
        return logits


def test_beam_finds_the_better_sequence_that_greedy_misses():
    # greedy: A (0.6), then A (0.4), then <eos> (1.0): P = 0.24.  Better: B (0.4) then <eos> (0.9): P = 0.36.
    model = Table({(): {A: 0.6, B: 0.4}, (A,): {A: 0.4, B: 0.3, EOS: 0.3}, (A, A): {EOS: 1.0}, (B,): {EOS: 0.9, A: 0.05, B: 0.05}})
    src = torch.ones(1, 3, dtype=torch.long)
    assert greedy_decode(model, src, max_len=5).tolist() == [[A, A, EOS]]
    out, score = beam_search(model, src, beam_size=2, max_len=5, length_penalty_alpha=0.0, return_scores=True)
    assert out.tolist() == [[B, EOS]]
    assert score.item() == pytest.approx(math.log(0.36), abs=1e-5)
    out, score = beam_search(model, src, beam_size=2, max_len=5, length_penalty_alpha=0.6, return_scores=True)
    assert out.tolist() == [[B, EOS]] and score.item() == pytest.approx(math.log(0.36) / length_penalty(2, 0.6), abs=1e-5)
    assert beam_search(model, src, beam_size=1, max_len=5).tolist() == [[A, A, EOS]], "one beam is greedy"


def test_length_penalty_decides_between_short_and_long():
    # "<eos>" has P = 0.5; "A <eos>" has P = 0.45: plain log P prefers the short one, alpha = 1 the long one.
    model = Table({(): {EOS: 0.5, A: 0.5}, (A,): {EOS: 0.9, B: 0.1}})
    src = torch.ones(1, 2, dtype=torch.long)
    assert beam_search(model, src, beam_size=2, max_len=4, length_penalty_alpha=0.0).tolist() == [[EOS]]
    assert beam_search(model, src, beam_size=2, max_len=4, length_penalty_alpha=1.0).tolist() == [[A, EOS]]
    assert length_penalty(1, 0.6) == pytest.approx(1.0) and length_penalty(7, 0.6) == pytest.approx(2 ** 0.6)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_of_one_equals_greedy(alpha):
    model, src = model_that_stops()
    greedy = greedy_decode(model, src, max_len=10)
    assert torch.equal(beam_search(model, src, beam_size=1, max_len=10, length_penalty_alpha=alpha), greedy)


@pytest.mark.slow
def test_beam_in_a_batch_equals_beam_alone_and_scores_at_least_greedy():
    model, src = model_that_stops()
    batch, scores = beam_search(model, src, beam_size=4, max_len=10, length_penalty_alpha=0.0, return_scores=True)
    greedy = greedy_decode(model, src, max_len=10)
    for i in range(src.shape[0]):
        alone = beam_search(model, src[i:i + 1], beam_size=4, max_len=10, length_penalty_alpha=0.0)
        width = alone.shape[1]
        assert torch.equal(alone[0], batch[i, :width]) and (batch[i, width:] == PAD).all()
    # greedy's log-probability under the same model: beam search is not guaranteed to beat it in general
    # (a pruned prefix may have led higher), but on this model it does, and a broken search would not
    with torch.no_grad():
        for i in range(src.shape[0]):
            ids = [t for t in greedy[i].tolist() if t != PAD]
            ys = torch.tensor([[BOS] + ids])
            logp = torch.log_softmax(model(src[i:i + 1], ys[:, :-1]), -1)[0]
            greedy_logp = logp[torch.arange(len(ids)), torch.tensor(ids)].sum().item()
            assert scores[i].item() >= greedy_logp - 1e-5


def test_beam_restores_mode_and_refuses_bad_arguments():
    model, src = model_that_stops()
    model.train()
    beam_search(model, src, beam_size=2, max_len=4)
    assert model.training
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="beam_size must be a positive int"):
            beam_search(model, src, beam_size=bad, max_len=4)
    with pytest.raises(ValueError, match="length_penalty_alpha must be >= 0"):
        beam_search(model, src, beam_size=2, max_len=4, length_penalty_alpha=-0.5)
    with pytest.raises(ValueError, match="longer than the model's positional table"):
        beam_search(model, src, max_len=33)


@pytest.mark.slow
def test_the_kv_cache_changes_nothing():
    model, src = model_that_stops()
    assert torch.equal(greedy_decode(model, src, max_len=10), greedy_decode(model, src, max_len=10, use_cache=False))
    cached = beam_search(model, src, beam_size=3, max_len=10, return_scores=True)
    plain = beam_search(model, src, beam_size=3, max_len=10, return_scores=True, use_cache=False)
    assert torch.equal(cached[0], plain[0]) and torch.allclose(cached[1], plain[1], atol=1e-5)


def plain_beam_one(model, src, k, max_len, alpha):
    """Beam search for ONE sentence written as plainly as possible (notebook 06's `beam_search_one`):
    Python lists of (log P, prefix), no cache, no batching. Returns (tokens, log P / lp)."""
    with torch.no_grad():
        memory = model.encode(src)
        live, finished = [(0.0, [BOS])], []
        for step in range(1, max_len + 1):
            ys = torch.tensor([prefix for _, prefix in live])
            logits = model.decode(ys, memory.expand(len(live), -1, -1), src.expand(len(live), -1))[:, -1].float()
            logits[:, [PAD, BOS]] = float("-inf")                 # never outputs (before the softmax)
            logp = torch.log_softmax(logits, -1)
            candidates = sorted(((s + v, prefix + [t]) for (s, prefix), row in zip(live, logp.tolist())
                                 for t, v in enumerate(row) if v > float("-inf")), key=lambda c: -c[0])[: 2 * k]
            live = []
            for rank, (s, prefix) in enumerate(candidates):
                if prefix[-1] == EOS:
                    if rank < k:
                        finished.append((s / length_penalty(step, alpha), prefix[1:]))
                elif len(live) < k:
                    live.append((s, prefix))
            if len(finished) >= k or not live:
                break
        if len(finished) < k:
            finished += [(s / length_penalty(len(prefix) - 1, alpha), prefix[1:]) for s, prefix in live]
    score, tokens = max(finished, key=lambda f: f[0])
    return tokens, score


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_batched_beam_equals_the_plain_loop(seed):
    """The vectorised search (top-k over beam × vocabulary, cache rows reindexed) == the plain loop,
    for several beam sizes and penalties, with rows that end early and rows that hit max_len."""
    torch.manual_seed(seed)
    model = make_model(9, 9, n_layers=2, d_model=16, n_heads=2, d_ff=32, max_len=32, norm_first=bool(seed % 2)).eval()
    with torch.no_grad():
        model.generator.bias[EOS] += seed - 1.0                    # some seeds end early, some run to max_len
    src = torch.randint(3, 9, (5, 6))
    src[2, 3:] = PAD
    for k, alpha, max_len in ((1, 0.6, 8), (2, 0.0, 8), (3, 0.6, 6), (5, 1.5, 9)):
        out, scores = beam_search(model, src, beam_size=k, max_len=max_len, length_penalty_alpha=alpha,
                                  return_scores=True)
        for i in range(src.shape[0]):
            row = src[i:i + 1, : int((src[i] != PAD).sum())]
            tokens, score = plain_beam_one(model, row, k, max_len, alpha)
            got = [t for t in out[i].tolist() if t != PAD]
            assert got == tokens, f"k={k} alpha={alpha} row {i}: {got} != {tokens}"
            assert scores[i].item() == pytest.approx(score, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_several_alphas_in_one_search_equal_one_search_each(seed):
    """alpha only ranks the finished translations, so one search serves a list of alphas: each result
    equals the call with that alpha alone (tokens and scores), rows that hit max_len included."""
    torch.manual_seed(seed)
    model = make_model(9, 9, n_layers=2, d_model=16, n_heads=2, d_ff=32, max_len=32).eval()
    with torch.no_grad():
        model.generator.bias[EOS] += seed - 1.0
    src = torch.randint(3, 9, (6, 6))
    src[2, 3:] = PAD
    alphas = (0.0, 0.6, 1.5, 3.0)
    for k, max_len in ((2, 8), (4, 5)):
        together = beam_search(model, src, beam_size=k, max_len=max_len, length_penalty_alpha=alphas, return_scores=True)
        assert isinstance(together, list) and len(together) == len(alphas)
        for alpha, (out, scores) in zip(alphas, together):
            alone, alone_scores = beam_search(model, src, beam_size=k, max_len=max_len, length_penalty_alpha=alpha,
                                              return_scores=True)
            assert torch.equal(out, alone) and torch.equal(scores, alone_scores), f"k={k} alpha={alpha}"
        lengths = [(out != PAD).sum().item() for out, _ in together]
        assert lengths == sorted(lengths), "a larger alpha never picks shorter translations in total"
    one = beam_search(model, src, beam_size=2, max_len=8, length_penalty_alpha=[0.6])
    assert isinstance(one, list) and torch.equal(one[0], beam_search(model, src, beam_size=2, max_len=8))
    with pytest.raises(ValueError, match="empty sequence"):
        beam_search(model, src, beam_size=2, max_len=8, length_penalty_alpha=())
    with pytest.raises(ValueError, match="length_penalty_alpha must be >= 0"):
        beam_search(model, src, beam_size=2, max_len=8, length_penalty_alpha=(0.6, -1.0))


class CharTok:
    """A tiny tokenizer: 'a'..'f' are ids 3..8 (what translate needs: encode_batch and decode)."""

    def encode_batch(self, texts, add_special=False):
        return [([BOS] if add_special else []) + [3 + "abcdef".index(c) for c in t] + ([EOS] if add_special else [])
                for t in texts]

    def decode(self, ids):
        return "".join("abcdef"[i - 3] for i in ids if i >= 3)


@pytest.mark.slow
def test_translate_equals_decoding_each_sentence_alone_in_the_input_order():
    from utils.decode import translate

    torch.manual_seed(0)
    model = make_model(9, 9, n_layers=1, d_model=16, n_heads=2, d_ff=32, max_len=64).eval()
    with torch.no_grad():
        model.generator.bias[EOS] += 1.0
    tok = CharTok()
    sentences = ["abc", "f", "abcdefab", "dd", "eabc", "cafe", "b"]
    for beam in (1, 3):
        texts = translate(model, sentences, tok, beam_size=beam, batch_size=3, max_len=12)
        ids = translate(model, sentences, tok, beam_size=beam, batch_size=3, max_len=12, output="ids")
        for sentence, text, got in zip(sentences, texts, ids):
            src = torch.tensor(tok.encode_batch([sentence], add_special=True))
            alone = (greedy_decode(model, src, max_len=12) if beam == 1 else
                     beam_search(model, src, beam_size=beam, max_len=12))[0].tolist()
            alone = [t for t in alone if t != PAD]
            assert got == alone and text == tok.decode(alone)
    # a list of alphas: one list of translations per alpha, each as if asked alone; greedy ignores alpha
    alphas = [0.0, 1.0, 2.0]
    assert translate(model, sentences, tok, beam_size=3, batch_size=3, max_len=12, length_penalty_alpha=alphas) == [
        translate(model, sentences, tok, beam_size=3, batch_size=3, max_len=12, length_penalty_alpha=a) for a in alphas]
    assert translate(model, sentences, tok, max_len=12, length_penalty_alpha=alphas) == [
        translate(model, sentences, tok, max_len=12)] * 3
    # ids in, ids out, without a tokenizer; the default max_len follows the source length
    src_ids = tok.encode_batch(sentences, add_special=True)
    assert translate(model, src_ids, output="ids", max_len=12) == translate(model, sentences, tok, output="ids", max_len=12)
    assert all(len(t) <= int(1.5 * 10) + 10 for t in translate(model, src_ids, output="ids"))


def test_translate_refuses_bad_arguments():
    from utils.decode import translate

    model = make_model(9, 9, n_layers=1, d_model=16, n_heads=2, d_ff=32, max_len=64)
    with pytest.raises(TypeError, match="sentences must be a list .* got str"):
        translate(model, "abc", CharTok())
    with pytest.raises(TypeError, match="sentences must be a list .* got NoneType"):
        translate(model, None, CharTok())
    with pytest.raises(ValueError, match="tokenizer .* is needed"):
        translate(model, ["abc"])
    with pytest.raises(TypeError, match="tokenizer .* is needed .* got 'tok.json'"):
        translate(model, ["abc"], "tok.json")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        translate(model, [[1, 5, 2]], output="ids", device="gpu")
    with pytest.raises(ValueError, match="output must be"):
        translate(model, ["abc"], CharTok(), output="tokens")
    with pytest.raises(ValueError, match="batch_size"):
        translate(model, ["abc"], CharTok(), batch_size=0)
    with pytest.raises(ValueError, match="beam_size"):
        translate(model, ["abc"], CharTok(), beam_size=0)
