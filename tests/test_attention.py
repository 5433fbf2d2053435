import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention
from utils.torch_compat import mask_from_torch, mha_from_torch, mha_to_torch

B, H, SQ, SK, D = 3, 4, 5, 7, 8


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def random_mask(*shape, p=0.7):
    """A random boolean mask in which every query row allows at least one key."""
    m = torch.rand(*shape) < p
    m[..., 0] = True
    return m


# -- scaled_dot_product_attention -------------------------------------------------------------
@pytest.mark.parametrize("lead", [(), (2,), (B, H)])
@pytest.mark.parametrize("sq, sk, dk, dv", [(1, 1, 1, 1), (5, 7, 8, 3), (6, 6, 16, 16)])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_pytorch_builtin(lead, sq, sk, dk, dv, masked):
    torch.manual_seed(sq * 100 + sk * 10 + dk + len(lead))
    q, k, v = rand(*lead, sq, dk), rand(*lead, sk, dk), rand(*lead, sk, dv)
    mask = random_mask(*lead, sq, sk) if masked else None
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert out.shape == (*lead, sq, dv) and w.shape == (*lead, sq, sk)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(w.sum(-1), torch.ones(*lead, sq))
    if masked:
        assert (w[~mask.expand_as(w)] == 0).all()


def test_weights_are_softmax_of_scaled_scores():
    q, k, v = rand(4, 6), rand(5, 6), rand(5, 2)
    _, w = scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.T / 6**0.5, dim=-1)
    torch.testing.assert_close(w, expected)


@pytest.mark.parametrize("shape", [(SQ, SK), (B, 1, 1, SK), (B, 1, SQ, SK), (B, H, SQ, SK), (SK,), (1, SK)])
def test_masks_broadcast_from_every_documented_shape(shape):
    torch.manual_seed(1)
    q, k, v = rand(B, H, SQ, D), rand(B, H, SK, D), rand(B, H, SK, D)
    mask = random_mask(*shape)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    full = mask.expand(B, H, SQ, SK)
    out_full, w_full = scaled_dot_product_attention(q, k, v, full.clone())
    torch.testing.assert_close(out, out_full)
    torch.testing.assert_close(w, w_full)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=full))
    assert (w[~full] == 0).all() and (w[full] > 0).all()


def test_fully_masked_rows_give_zeros_not_nan():
    q, k, v = rand(2, SQ, D, dtype=torch.float64), rand(2, SK, D, dtype=torch.float64), rand(2, SK, D, dtype=torch.float64)
    mask = random_mask(2, SQ, SK)
    mask[0, 1] = False  # query 1 of sentence 0 may see nothing
    mask[1] = False  # sentence 1 sees nothing at all
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert not out.isnan().any() and not w.isnan().any()
    assert (out[0, 1] == 0).all() and (w[0, 1] == 0).all() and (out[1] == 0).all() and (w[1] == 0).all()
    torch.testing.assert_close(w[0, 0].sum(), torch.tensor(1.0, dtype=torch.float64))
    # the naive softmax really is NaN there: this is what the function protects against
    naive = torch.softmax((q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf")), -1)
    assert naive[1].isnan().all()


def test_float64_stays_float64_and_matches():
    q, k, v = (rand(2, 3, 4, dtype=torch.float64) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, causal_mask(3))
    assert out.dtype == w.dtype == torch.float64
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-12, atol=1e-12)


def test_gradients_through_masked_positions_are_exactly_zero():
    torch.manual_seed(2)
    q, k, v = (rand(2, 4, 6, dtype=torch.float64).requires_grad_() for _ in range(3))
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[:, :, 3] = False  # key 3 is padding for everyone
    mask[1, 2] = False  # one fully masked query row
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    (out * torch.randn_like(out)).sum().backward()
    for g in (q.grad, k.grad, v.grad):
        assert not g.isnan().any()
    assert (k.grad[:, 3] == 0).all() and (v.grad[:, 3] == 0).all(), "masked keys/values must get no gradient"
    assert (q.grad[1, 2] == 0).all(), "a query that sees nothing gets no gradient"
    assert (k.grad[:, :3].abs() > 0).any() and (v.grad[:, :3].abs() > 0).all()
    # no NaN even inside: anomaly mode checks the output of every backward step
    with pytest.warns(UserWarning, match="Anomaly"), torch.autograd.detect_anomaly(check_nan=True):
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        out.sum().backward()
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask)[0],
                                    (q.detach().requires_grad_(), k.detach().requires_grad_(),
                                     v.detach().requires_grad_()))


def test_dropout_on_the_weights():
    torch.manual_seed(3)
    q, k, v = rand(2, 50, 8), rand(2, 50, 8), torch.ones(2, 50, 1)
    out, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 50))  # returned weights are pre-dropout
    assert not torch.allclose(out, torch.ones_like(out)), "dropout should change the mix"
    assert abs(out.mean().item() - 1.0) < 0.1, "inverted dropout keeps the expectation"


@pytest.mark.parametrize("q_shape, k_shape, v_shape, match", [
    ((2, 3, 8), (2, 4, 6), (2, 4, 8), r"d_k=8.*d_k=6"),
    ((2, 3, 8), (2, 4, 8), (2, 5, 8), "same seq_k"),
    ((8,), (4, 8), (4, 8), "at least 2"),
])
def test_shape_errors(q_shape, k_shape, v_shape, match):
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(rand(*q_shape), rand(*k_shape), rand(*v_shape))


def test_mask_errors_name_the_problem_and_the_fix():
    q, k, v = rand(B, H, SQ, D), rand(B, H, SK, D), rand(B, H, SK, D)
    with pytest.raises(ValueError, match=r"\(5, 5\).*\(3, 4, 5, 7\).*\(seq_q, seq_k\) = \(5, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="cannot broadcast"):  # would enlarge the output: refused
        scaled_dot_product_attention(rand(SQ, D), rand(SK, D), rand(SK, D), torch.ones(2, SQ, SK, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"torch.float32.*mask == 0"):
        scaled_dot_product_attention(q, k, v, torch.zeros(SQ, SK))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, [[True]])


# -- masks ----------------------------------------------------------------------------------
def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert causal_mask(1).tolist() == [[True]]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="positive int"):
            causal_mask(bad)


def test_padding_mask_and_combination():
    ids = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    m = padding_mask(ids, pad_id=0)
    assert m.shape == (2, 1, 1, 4) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    both = m & causal_mask(4)
    assert both.shape == (2, 1, 4, 4)
    assert both[1, 0].tolist() == [[1, 0, 0, 0]] * 4 and both[0, 0, 3].tolist() == [1, 1, 1, 0]
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        padding_mask(ids[0], 0)


def test_mask_from_torch():
    attn = torch.triu(torch.ones(3, 3, dtype=torch.bool), 1)  # torch: True = blocked
    kpm = torch.tensor([[False, False, True], [False, True, True]])
    ours = mask_from_torch(attn, kpm)
    assert ours.shape == (2, 1, 3, 3)
    assert torch.equal(ours, causal_mask(3) & padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]), 0))
    additive = torch.zeros(3, 3).masked_fill(attn, float("-inf"))
    assert torch.equal(mask_from_torch(additive), causal_mask(3))
    assert mask_from_torch() is None
    per_head = torch.rand(2 * 4, 3, 3) < 0.5
    assert mask_from_torch(per_head, n_heads=4).shape == (2, 4, 3, 3)
    with pytest.raises(ValueError, match="n_heads"):
        mask_from_torch(per_head)
    with pytest.raises(ValueError, match="additive bias"):
        mask_from_torch(torch.full((3, 3), 0.5))


# -- MultiHeadAttention -----------------------------------------------------------------------
def pair(d_model=32, n_heads=4, bias=True, dropout=0.0):
    torch.manual_seed(4)
    ref = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, bias=bias, batch_first=True)
    return ref, mha_from_torch(ref)


def both_paths(mha, *args, mask=None):
    out, w = mha(*args, mask=mask)
    fused, none = mha(*args, mask=mask, need_weights=False)
    assert none is None
    torch.testing.assert_close(fused, out, rtol=1e-5, atol=1e-5)
    return out, w


@pytest.mark.parametrize("bias", [True, False])
def test_mha_self_attention_equals_pytorch(bias):
    ref, ours = pair(bias=bias)
    x = rand(B, 6, 32)
    expected, expected_w = ref(x, x, x, average_attn_weights=False)
    out, w = both_paths(ours, x, x, x)
    assert out.shape == (B, 6, 32) and w.shape == (B, 4, 6, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, expected_w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("same_kv", [True, False])
def test_mha_cross_attention_different_lengths(same_kv):
    ref, ours = pair()
    x, mem = rand(B, 4, 32), rand(B, 9, 32)
    val = mem if same_kv else rand(B, 9, 32)
    expected, expected_w = ref(x, mem, val, average_attn_weights=False)
    out, w = both_paths(ours, x, mem, val)
    assert w.shape == (B, 4, 4, 9)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, expected_w, rtol=1e-5, atol=1e-5)


def test_mha_key_padding_and_causal_masks_equal_pytorch():
    ref, ours = pair()
    ids = torch.tensor([[4, 5, 6, 7, 8, 9], [4, 5, 6, 0, 0, 0], [4, 5, 6, 7, 0, 0]])
    x = rand(3, 6, 32)
    kpm = ids == 0  # torch: True = padding
    exp, exp_w = ref(x, x, x, key_padding_mask=kpm, average_attn_weights=False)
    out, w = both_paths(ours, x, x, x, mask=padding_mask(ids, 0))
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, exp_w, rtol=1e-5, atol=1e-5)
    causal = ~causal_mask(6)  # torch: True = blocked
    exp, exp_w = ref(x, x, x, attn_mask=causal, key_padding_mask=kpm, average_attn_weights=False)
    ours_mask = padding_mask(ids, 0) & causal_mask(6)
    out, w = both_paths(ours, x, x, x, mask=ours_mask)
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, exp_w, rtol=1e-5, atol=1e-5)
    assert torch.equal(mask_from_torch(causal, kpm), ours_mask)


def test_mha_per_head_mask_and_fully_masked_rows_in_both_paths():
    _, ours = pair()
    x = rand(2, 5, 32).requires_grad_()
    mask = random_mask(2, 4, 5, 5)
    mask[0, 1, 2] = False  # head 1, query 2 of sentence 0 sees nothing
    mask[1, :, 4] = False  # query 4 of sentence 1 sees nothing in any head
    out, w = ours(x, x, x, mask=mask)
    fused, _ = ours(x, x, x, mask=mask, need_weights=False)
    assert not out.isnan().any() and not fused.isnan().any()
    torch.testing.assert_close(fused, out, rtol=1e-5, atol=1e-5)
    assert (w[0, 1, 2] == 0).all() and (w[1, :, 4] == 0).all()
    # a query that sees nothing in every head leaves only the output projection's bias
    torch.testing.assert_close(out[1, 4], ours.out_proj.bias)
    fused.sum().backward()
    assert not x.grad.isnan().any()


def test_mha_weights_views_and_round_trip():
    ref, ours = pair()
    assert ours.w_q.shape == ours.w_k.shape == ours.w_v.shape == ours.w_o.shape == (32, 32)
    torch.testing.assert_close(torch.cat([ours.w_q, ours.w_k, ours.w_v]), ref.in_proj_weight)
    assert ours.w_q.data_ptr() == ours.in_proj_weight.data_ptr(), "w_q is a view, not a copy"
    assert ours.in_proj_weight.data_ptr() != ref.in_proj_weight.data_ptr(), "mha_from_torch copies"
    back = mha_to_torch(ours)
    assert isinstance(back, nn.MultiheadAttention) and back.batch_first
    for (n1, p1), (n2, p2) in zip(ref.state_dict().items(), back.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    x = rand(2, 3, 32)
    torch.testing.assert_close(back(x, x, x)[0], ours(x, x, x)[0], rtol=1e-5, atol=1e-5)
    no_bias = MultiHeadAttention(16, 2, bias=False)
    assert mha_to_torch(no_bias).in_proj_bias is None
    assert mha_from_torch(mha_to_torch(no_bias)).in_proj_bias is None
    f64 = mha_from_torch(nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64))
    assert f64.in_proj_weight.dtype == torch.float64


def test_mha_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="batch_first=True"):
        mha_from_torch(nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match="kdim=4, vdim=8"):
        mha_from_torch(nn.MultiheadAttention(8, 2, kdim=4, batch_first=True))
    with pytest.raises(ValueError, match="add_bias_kv"):
        mha_from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True))


def test_mha_dropout_active_in_train_and_off_in_eval():
    torch.manual_seed(5)
    mha = MultiHeadAttention(32, 4, dropout=0.5)
    x = rand(2, 10, 32)
    for need_weights in (True, False):
        mha.train()
        a, b = mha(x, x, x, need_weights=need_weights)[0], mha(x, x, x, need_weights=need_weights)[0]
        assert not torch.allclose(a, b), "dropout should make two training passes differ"
        mha.eval()
        a, b = mha(x, x, x, need_weights=need_weights)[0], mha(x, x, x, need_weights=need_weights)[0]
        assert torch.equal(a, b)
    mha.eval()
    torch.testing.assert_close(mha(x, x, x)[0], mha(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-5)
    mha.train()
    _, w = mha(x, x, x)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 10))  # weights are pre-dropout


def test_mha_errors():
    with pytest.raises(ValueError, match=r"n_heads=5 does not divide d_model=512; pick a divisor such as 1, 2, 4, 8, 16"):
        MultiHeadAttention(512, 5)
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(8, 2, dropout=1.0)
    with pytest.raises(ValueError, match="positive"):
        MultiHeadAttention(8, 0)
    mha = MultiHeadAttention(32, 4)
    x = rand(2, 5, 32)
    with pytest.raises(ValueError, match=r"d_model=32.*\(2, 5, 16\)"):
        mha(x, rand(2, 5, 16), rand(2, 5, 16))
    with pytest.raises(ValueError, match="share the batch"):
        mha(x, rand(2, 6, 32), rand(2, 7, 32))
    with pytest.raises(ValueError, match=r"\(2, 1, 1, 4\).*\(2, 4, 5, 5\)"):
        mha(x, x, x, mask=torch.ones(2, 1, 1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask == 0"):
        mha(x, x, x, mask=torch.zeros(5, 5))


# -- the KV cache, utils.kv_cache (used by utils.model.Transformer.decode_step and utils.bonus.gpt) ----------------------
def test_cached_cross_attention_equals_the_module_and_projects_memory_once():
    from utils.kv_cache import KVCache, cached_cross_attention

    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4).eval()
    memory = torch.randn(3, 5, 16)
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9], [5, 0, 0, 0, 0]])
    mask = padding_mask(ids, 0)                                              # (3, 1, 1, 5)
    cache = KVCache()
    steps = [torch.randn(3, 1, 16) for _ in range(3)]
    for x in steps:
        want = attn(x, memory, memory, mask, need_weights=False)[0]
        got = cached_cross_attention(attn, x, memory, cache, 0, mask)
        assert torch.allclose(got, want, atol=1e-6)
    # after the first step the memory is not read again: a different memory changes nothing
    assert torch.allclose(cached_cross_attention(attn, steps[0], torch.zeros_like(memory), cache, 0, mask),
                          attn(steps[0], memory, memory, mask, need_weights=False)[0], atol=1e-6)
    assert len(cache.cross_keys) == 1 and cache.cross_keys[0].shape == (3, 4, 5, 4)
    assert cache.length == 0 and cache.nbytes == 2 * 3 * 5 * 16 * 4
    with pytest.raises(ValueError, match="one KVCache per batch"):
        cached_cross_attention(attn, torch.randn(2, 1, 16), memory[:2], cache, 0)
    with pytest.raises(ValueError, match="run the layers in order"):
        cached_cross_attention(attn, steps[0], memory, cache, 2)


def test_kv_cache_reorder_moves_rows():
    from utils.kv_cache import KVCache, cached_cross_attention, cached_self_attention

    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).eval()
    cache = KVCache()
    cached_self_attention(attn, torch.randn(3, 2, 8), cache, 0)
    cached_cross_attention(attn, torch.randn(3, 1, 8), torch.randn(3, 4, 8), cache, 0)
    before = [t.clone() for t in (cache.keys[0], cache.values[0], cache.cross_keys[0], cache.cross_values[0])]
    rows = torch.tensor([2, 2, 0])
    cache.reorder(rows, cross=False)
    assert torch.equal(cache.keys[0], before[0][rows]) and torch.equal(cache.values[0], before[1][rows])
    assert torch.equal(cache.cross_keys[0], before[2]), "cross=False leaves the cross-attention entries"
    cache.reorder(rows)
    assert torch.equal(cache.cross_values[0], before[3][rows])
