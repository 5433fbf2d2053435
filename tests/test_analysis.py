"""utils.analysis: notebook 06's measurements of what the heads do, each checked against a case whose
answer is known (a head that looks only at the previous token, a uniform head, a beam search's own
scores, a head switched off by hand)."""

import math

import numpy as np
import pytest
import torch

from utils.analysis import (KINDS, attention_maps_for, head_stats, head_statistics, mean_of, model_scores,
                            monotone_fraction, pattern_mask, peaks_inside, punctuation_ids, queries_that_train,
                            ratio_to_uniform, switched_off, uniform_attention)
from utils.decode import beam_search, greedy_decode, length_penalty
from utils.model import make_model
from utils.tokenize import BOS_ID, EOS_ID, PAD_ID

pytestmark = pytest.mark.usefixtures("one_thread")
PAD = PAD_ID


def tiny_model(seed=5, **kw):
    torch.manual_seed(seed)
    return make_model(30, 30, n_layers=2, d_model=16, n_heads=4, d_ff=32, **kw).eval()


def padded(gen, n, length, low):
    """(n, length) ids in 4..29, right-padded to lengths in low..length (row 3 full)."""
    ids = torch.randint(4, 30, (n, length), generator=gen)
    lengths = torch.randint(low, length + 1, (n,), generator=gen)
    lengths[3] = length
    ids[torch.arange(length) >= lengths[:, None]] = PAD
    return ids


# -- attention_maps_for ------------------------------------------------------------------------------------
def test_attention_maps_for_many_sentences_equal_one_pass_at_every_real_query():
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    src, tgt = padded(gen, 11, 9, 2), padded(gen, 11, 8, 1)
    with torch.no_grad(), model.attention_maps() as one:
        model(src, tgt)
    many = attention_maps_for(model, src, tgt, batch_size=3)          # 4 batches, most trimmed
    real_q = {"encoder_self": src != PAD, "decoder_self": tgt != PAD, "cross": tgt != PAD}
    real_k = {"encoder_self": src != PAD, "decoder_self": tgt != PAD, "cross": src != PAD}
    for kind in KINDS:
        assert len(many[kind]) == 2
        for a, b in zip(many[kind], one[kind]):
            assert a.shape == b.shape
            q = real_q[kind][:, None, :, None].expand_as(a)            # (n, heads, Q, K)
            torch.testing.assert_close(a[q], b[q], atol=1e-6, rtol=1e-5)
            assert not a.masked_select(~real_k[kind][:, None, None, :]).any(), f"{kind}: no weight on padding"
    assert model.decoder.layers[0].cross_attn_weights is None, "the layers forget their weights afterwards"


def test_attention_maps_for_refuses_bad_arguments():
    model = tiny_model()
    src, tgt = torch.randint(4, 30, (3, 5)), torch.randint(4, 30, (3, 4))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        attention_maps_for(model, src, tgt, batch_size=0)
    with pytest.raises(ValueError, match="one batch size"):
        attention_maps_for(model, src, tgt[:2])
    with pytest.raises(ValueError, match=r"src_ids must be \(batch, src_len\)"):
        attention_maps_for(model, src[0], tgt)
    with pytest.raises(TypeError, match="integer token ids"):
        attention_maps_for(model, src.float(), tgt)


# -- head statistics ---------------------------------------------------------------------------------------
def test_queries_that_train_leave_out_padding_and_the_decoders_eos():
    ids = torch.tensor([[BOS_ID, 7, 8, EOS_ID, PAD], [BOS_ID, 9, EOS_ID, PAD, PAD]])
    assert queries_that_train(ids, decoder=False).tolist() == [[True] * 4 + [False], [True] * 3 + [False] * 2]
    assert queries_that_train(ids, decoder=True).tolist() == [[True] * 3 + [False] * 2,
                                                              [True] * 2 + [False] * 3]


def test_uniform_attention_spreads_evenly_over_the_keys_it_may_see():
    q = torch.tensor([[BOS_ID, 5, 6, PAD]])
    u = uniform_attention(q, q, causal=True)                           # (1, 1, 4, 4)
    assert u.shape == (1, 1, 4, 4)
    torch.testing.assert_close(u[0, 0, 2], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))
    assert (u[0, 0].triu(1) == 0).all() and (u[..., 3] == 0).all(), "nothing on the future or on padding"
    keys = torch.tensor([[BOS_ID, 5, PAD, PAD, PAD]])
    torch.testing.assert_close(uniform_attention(q, keys, causal=False)[0, 0, :, :2], torch.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="same sequence"):
        uniform_attention(q, keys, causal=True)


def test_head_stats_score_known_heads():
    n = 5
    ids = torch.tensor([[BOS_ID, 5, 6, 7, EOS_ID]])                   # 5 real queries and keys
    previous = torch.eye(n).roll(-1, dims=1)                           # row i looks at i - 1 (row 0 at 4)
    itself = torch.eye(n)
    on_punct = torch.zeros(n, n)
    on_punct[:, 2] = 1.0                                               # every row on key 2, "punctuation"
    attn = torch.stack([previous, itself, on_punct])[None]             # (1, 3 heads, 5, 5)
    sums, counts = head_stats(attn, ids, ids, decoder=False, punct_ids=torch.tensor([6]))
    assert counts.tolist() == [5.0]
    assert sums["previous"][0].tolist() == [4.0, 0.0, 1.0], "rows 1..4 on i - 1; row 0 counts 0"
    assert sums["itself"][0].tolist() == [0.0, 5.0, 1.0]
    assert sums["punctuation"][0].tolist() == [1.0, 1.0, 5.0]
    assert torch.allclose(sums["entropy"], torch.zeros(1, 3), atol=1e-6), "one key a row: entropy 0"
    dec_sums, dec_counts = head_stats(attn, ids, ids, decoder=True, punct_ids=torch.tensor([6]))
    assert dec_counts.tolist() == [4.0] and dec_sums["itself"][0, 1] == 4.0, "the decoder's <eos> query is left out"
    uniform_sums, _ = head_stats(uniform_attention(ids, ids, causal=False), ids, ids, False, torch.tensor([6]))
    torch.testing.assert_close(uniform_sums["entropy"], torch.tensor([[5 * math.log(5)]]))
    with pytest.raises(ValueError, match=r"must be \(batch, heads, Q, K\) for query_ids"):
        head_stats(attn[:, :, :4], ids, ids, False, torch.tensor([6]))
    with pytest.raises(ValueError, match=r"attn must be \(batch, heads, Q, K\)"):
        head_stats(attn[0], ids, ids, False, torch.tensor([6]))


def test_head_statistics_of_a_model_and_the_uniform_baseline():
    model = tiny_model()
    gen = torch.Generator().manual_seed(1)
    src, tgt = padded(gen, 6, 7, 3), padded(gen, 6, 6, 2)
    src[:, 0] = tgt[:, 0] = BOS_ID
    maps = attention_maps_for(model, src, tgt)
    stats = head_statistics(maps, src, tgt, torch.tensor([4, 5]))
    assert set(stats) == set(KINDS) and all(len(stats[k]) == 2 for k in KINDS)
    measured, uniform, counts = stats["encoder_self"][0]
    assert measured["entropy"].shape == (6, 4) and uniform["entropy"].shape == (6, 1)
    assert counts.tolist() == (src != PAD).sum(1).float().tolist()
    n = (src != PAD).sum(1).float()
    torch.testing.assert_close(mean_of(uniform["entropy"], counts), ((n * n.log()).sum() / n.sum()).reshape(1))
    for kind in KINDS:
        for measured, uniform, counts in stats[kind]:
            ent = mean_of(measured["entropy"], counts)
            assert (ent >= 0).all() and (ent <= mean_of(uniform["entropy"], counts) + 1e-5).all(), \
                f"{kind}: no head spreads wider than uniform over the keys it may see"
    r = ratio_to_uniform(stats, "previous", "decoder_self", 1, 2)
    measured, uniform, _ = stats["decoder_self"][1]
    assert math.isclose(r, float(measured["previous"][:, 2].sum() / uniform["previous"].sum()), rel_tol=1e-6)
    with pytest.raises(ValueError, match="metric must be one of"):
        ratio_to_uniform(stats, "entropies", "cross", 0, 0)
    with pytest.raises(ValueError, match="maps has no"):
        head_statistics({"cross": maps["cross"]}, src, tgt, torch.tensor([4]))
    with pytest.raises(ValueError, match="no query was counted"):
        mean_of(torch.zeros(2, 4), torch.zeros(2))


def test_punctuation_ids():
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", "▁a", ".", "▁,", "▁1", "!?", "▁", "é"]
    assert punctuation_ids(vocab).tolist() == [5, 6, 8]


# -- where a head peaks ------------------------------------------------------------------------------------
def test_pattern_mask_and_peaks_inside():
    mask = pattern_mask(["March 3, 1998", "1998/03/03"], r"\d{4}", 14)
    assert mask[0].nonzero().flatten().tolist() == [9, 10, 11, 12] and mask[1, :4].all() and mask[1].sum() == 4
    weights = torch.zeros(2, 3, 2, 14)                                 # (n, heads, rows, K)
    weights[:, 0, :, 10] = 1.0                                         # head 0: both rows on key 10
    weights[:, 1, 0, 10] = weights[:, 1, 1, 13] = 1.0                  # head 1: row 1 on key 13
    weights[:, 2, :, 2] = 1.0                                          # head 2: key 2
    assert peaks_inside(weights, mask).tolist() == [[True, False, False], [False, False, True]]
    weights[0, 1, 1, 12] = 2.0                                         # date 0, head 1: row 1 now on the year
    assert peaks_inside(weights, mask)[0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="no match"):
        pattern_mask(["no year"], r"\d{4}", 10)
    with pytest.raises(ValueError, match="beyond width"):
        pattern_mask(["in 1998"], r"\d{4}", 5)
    with pytest.raises(ValueError, match=r"mask must be \(n, K\)"):
        peaks_inside(weights, mask[:, :5])


# -- switching a head off ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_switched_off_equals_zeroing_that_heads_columns_of_w_o(kind):
    model = tiny_model(norm_first=True)
    src, tgt = torch.randint(4, 30, (3, 7)), torch.randint(4, 30, (3, 5))
    with torch.no_grad():
        before = model(src, tgt)
        with switched_off(model, 1, 2, kind):
            off = model(src, tgt)
        assert torch.equal(model(src, tgt), before), "leaving the block removes the hook"
        layers = model.encoder.layers if kind == "encoder_self" else model.decoder.layers
        attn = layers[1].cross_attn if kind == "cross" else layers[1].self_attn
        attn.out_proj.weight[:, 8:12] = 0.0                            # head 2 of 4, d_head 4: its input columns
        by_hand = model(src, tgt)
    torch.testing.assert_close(off, by_hand, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(off, before), "the head mattered"


def test_switched_off_holds_for_cached_decoding_and_refuses_bad_heads():
    model = tiny_model(norm_first=True)
    src = torch.randint(4, 30, (4, 6))
    with switched_off(model, -1, 0):
        cached = greedy_decode(model, src, max_len=8)
        plain = greedy_decode(model, src, max_len=8, use_cache=False)
    assert torch.equal(cached, plain), "the KV-cache path calls the same out_proj"
    with pytest.raises(ValueError, match=r"head must be an integer in 0 \.\. 3"):
        with switched_off(model, 0, 4):
            pass
    with pytest.raises(ValueError, match="layer must be an integer"):
        with switched_off(model, 2, 0):
            pass
    with pytest.raises(ValueError, match="kind must be one of"):
        with switched_off(model, 0, 0, kind="self"):
            pass
    assert all(not layer.cross_attn.out_proj._forward_pre_hooks for layer in model.decoder.layers)


# -- the model's own score ---------------------------------------------------------------------------------
def test_model_scores_are_what_beam_search_maximises():
    model = tiny_model()
    gen = torch.Generator().manual_seed(2)
    src = padded(gen, 6, 7, 3)
    out, scores = beam_search(model, src, beam_size=3, max_len=6, length_penalty_alpha=0.6, return_scores=True)
    src_lists = [[t for t in row if t != PAD] for row in src.tolist()]
    hyps = [[t for t in row if t != PAD] for row in out.tolist()]
    ours = model_scores(model, src_lists, hyps, alpha=0.6, batch_size=4)
    assert ours.shape == (6,) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, scores.double().numpy(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():                                               # one by hand: the chain rule
        logits = model(torch.tensor([src_lists[0]]), torch.tensor([[BOS_ID, *hyps[0][:-1]]]))[0]   # (T, V)
        logp = logits[:, 2:].log_softmax(-1)                            # <pad> 0 and <bos> 1 are never outputs
    assert PAD_ID == 0 and BOS_ID == 1
    by_hand = sum(logp[t, tok - 2].item() for t, tok in enumerate(hyps[0])) / length_penalty(len(hyps[0]), 0.6)
    assert math.isclose(ours[0], by_hand, rel_tol=1e-5, abs_tol=1e-5)
    with pytest.raises(ValueError, match="one translation per source"):
        model_scores(model, src_lists, hyps[:2])
    with pytest.raises(ValueError, match="empty translation"):
        model_scores(model, src_lists[:1], [[]])
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        model_scores(model, src_lists, hyps, alpha=-1.0)


# -- alignment ---------------------------------------------------------------------------------------------
def test_monotone_fraction():
    assert monotone_fraction([[0, 1, 1, 3], [2]]) == 1.0
    assert monotone_fraction([[3, 2, 1], [0, 5]]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="two items"):
        monotone_fraction([[1], []])
