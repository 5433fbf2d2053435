import random

import pytest
import torch

from utils.batching import (Batch, TokenBatches, collate, fixed_size_batches, pad_sequences, padding_fraction,
                            teacher_forcing, token_budget_batches)

PAD, BOS, EOS = 0, 1, 2


def corpus(n=500, seed=0):
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        k = rng.randint(1, 30)
        src.append([BOS] + [rng.randint(4, 50) for _ in range(k)] + [EOS])
        tgt.append([BOS] + [rng.randint(4, 50) for _ in range(max(1, k + rng.randint(-3, 3)))] + [EOS])
    return src, tgt


def test_pad_and_teacher_forcing():
    padded = pad_sequences([[1, 5, 6, 2], [1, 7, 2]], PAD)
    assert padded.tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]] and padded.dtype == torch.long
    tgt_in, tgt_out = teacher_forcing(padded)
    assert tgt_in.tolist() == [[1, 5, 6], [1, 7, 2]]
    assert tgt_out.tolist() == [[5, 6, 2], [7, 2, 0]]
    assert (tgt_in[:, 0] == BOS).all(), "the decoder starts from <bos>"
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_sequences([[1, 2], []])
    with pytest.raises(ValueError, match="empty list"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"T >= 2"):
        teacher_forcing(torch.ones(3, 1, dtype=torch.long))


def test_collate_lines_up_pairs():
    batch = collate([[1, 9, 2], [1, 8, 8, 8, 2]], [[1, 5, 2], [1, 6, 7, 2]])
    assert isinstance(batch, Batch)
    assert batch.src.shape == (2, 5) and batch.tgt_in.shape == (2, 3) and batch.tgt_out.shape == (2, 3)
    assert batch.n_tokens == 2 + 3, "target tokens the loss counts: y1..yn and <eos>"
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        collate([[1, 2], [1, 2]], [[1, 2]])


def test_token_budget_batches_cover_everything_within_budget():
    src, tgt = corpus()
    sl, tl = [len(s) for s in src], [len(t) for t in tgt]
    batches = token_budget_batches(sl, tl, max_tokens=200, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(src))), "every pair exactly once"
    for b in batches:
        assert len(b) * max(max(sl[i], tl[i]) for i in b) <= 200
    assert batches == token_budget_batches(sl, tl, 200, seed=3), "deterministic for a seed"
    assert batches != token_budget_batches(sl, tl, 200, seed=4)
    # Packing: no two neighbouring batches (in length order) could have been merged.
    assert len(batches) < len(src) / 4


def test_bucketing_wastes_less_padding_than_naive_batches():
    src, tgt = corpus(2000)
    lengths = [len(s) for s in src]
    budget = token_budget_batches(lengths, [len(t) for t in tgt], max_tokens=600)
    naive = fixed_size_batches(len(src), batch_size=len(src) // len(budget))
    assert padding_fraction(budget, lengths) < 0.1 < 0.3 < padding_fraction(naive, lengths)
    assert padding_fraction([[0, 1]], [3, 3]) == 0.0 and padding_fraction([[0, 1]], [1, 3]) == pytest.approx(1 / 3)


def test_token_budget_errors():
    with pytest.raises(ValueError, match="pair 1 has 9 tokens, more than max_tokens=8"):
        token_budget_batches([3, 9, 2], [3, 4, 2], max_tokens=8)
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        token_budget_batches([3], [3], max_tokens=0)
    with pytest.raises(ValueError, match="2 source lengths but 1 target"):
        token_budget_batches([3, 3], [3], max_tokens=8)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fixed_size_batches(5, 0)


def test_token_batches_epochs_and_shards():
    src, tgt = corpus(600)
    data = TokenBatches(src, tgt, max_tokens=300, seed=1)
    e0, e1 = data.batches(0), data.batches(1)
    assert e0 != e1 and e0 == TokenBatches(src, tgt, 300, seed=1).batches(0), "new order per epoch, same per seed"
    assert len(e0) == len(e1) == len(data), "sorting fixes the batch count"
    shards = [TokenBatches(src, tgt, 300, seed=1, rank=r, world_size=3).batches(2) for r in range(3)]
    assert len({len(s) for s in shards}) == 1, "every process gets the same number of batches"
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen)), "shards are disjoint"
    whole = {i for b in data.batches(2) for i in b}
    assert set(seen) <= whole and len(whole) - len(seen) < 3 * max(len(b) for b in data.batches(2))
    fixed = TokenBatches(src, tgt, 300, shuffle=False)
    batches = list(fixed)
    assert all(isinstance(b, Batch) for b in batches) and len(batches) == len(fixed)
    lengths = [b.src.shape[1] for b in batches]
    assert lengths == sorted(lengths), "without shuffling: one sorted order (for evaluation)"


def test_ids_that_would_be_misread_are_refused():
    with pytest.raises(TypeError, match=r"seqs\[0\]\[1\] is 5.7"):
        pad_sequences([[1, 5.7, 2]])                                   # would be cut to 5
    with pytest.raises(TypeError, match="integer token ids"):
        pad_sequences([torch.tensor([1.0, 2.0])])
    with pytest.raises(ValueError, match="pad_id=2 is a token id in seqs too"):
        pad_sequences([[1, 5, 2], [1, 2]], pad_id=2)                   # padding would look like <eos>
    with pytest.raises(ValueError, match=r"tgt_ids\[1\] is not <bos> ... <eos>"):
        TokenBatches([[1, 5, 2]] * 2, [[1, 6, 2], [6, 7]], 50)
    with pytest.raises(ValueError, match=r"src_ids\[0\] holds pad_id=5"):
        TokenBatches([[1, 5, 2]], [[1, 6, 2]], 50, pad_id=5)
    with pytest.raises(TypeError, match=r"tgt_ids\[0\]\[1\] is True"):
        TokenBatches([[1, 5, 2]], [[1, True, 2]], 50)
    with pytest.raises(ValueError, match=r"src_lens\[0\] must be an integer >= 0, got -3"):
        token_budget_batches([-3, 2], [2, 2], 8)
    with pytest.raises(TypeError, match=r"tgt_lens\[1\] must be an integer >= 0, got 2.5"):
        token_budget_batches([2, 2], [2, 2.5], 8)


def test_token_batches_errors():
    with pytest.raises(ValueError, match="2 source sentences but 1 targets"):
        TokenBatches([[1, 2], [1, 2]], [[1, 2]], 10)
    with pytest.raises(ValueError, match="rank must be in 0 .. world_size - 1 = 1"):
        TokenBatches([[1, 2]], [[1, 2]], 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="empty"):
        TokenBatches([], [], 10)
    with pytest.raises(ValueError, match="fewer batches than world_size=4"):
        TokenBatches([[1, 2]] * 3, [[1, 2]] * 3, 2, world_size=4)
