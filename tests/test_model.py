import random

import pytest
import torch

from utils.attention import causal_mask
from utils.checkpoint import ConfigMismatchError
from utils.model import count_parameters, make_model
from utils.torch_compat import transformer_to_torch

# nn.Transformer's eval fast path warns about nested tensors; irrelevant here.
pytestmark = [pytest.mark.filterwarnings("ignore:.*nested tensors:UserWarning"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor:UserWarning")]
PAD = 0


def random_batch(gen, vocab, batch, length, min_len):
    ids = torch.randint(4, vocab, (batch, length), generator=gen)
    for i in range(batch):
        n = int(torch.randint(min_len, length + 1, (1,), generator=gen))
        ids[i, n:] = PAD
    return ids


def torch_logits(model, src, tgt):
    ref = transformer_to_torch(model).eval()
    with torch.no_grad():
        h = ref(model.embed_src(src), model.embed_tgt(tgt), tgt_mask=~causal_mask(tgt.shape[1]),
                src_key_padding_mask=src == PAD, tgt_key_padding_mask=tgt == PAD,
                memory_key_padding_mask=src == PAD)
        return model.generator(h)


CONFIGS = [  # (n_layers, d_model, n_heads, d_ff, src_vocab, tgt_vocab, norm_first)
    (1, 16, 1, 32, 11, 13, False),
    (2, 32, 4, 64, 50, 60, True),
    (3, 24, 6, 40, 30, 30, False),
    (2, 64, 8, 128, 100, 7, True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "L{}-d{}-h{}-ff{}-v{}x{}-{}".format(*c))
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)], ids=["f32", "f64"])
def test_equals_nn_transformer(cfg, dtype, tol):
    n_layers, d, h, ff, sv, tv, nf = cfg
    torch.manual_seed(sum(cfg[:5]))
    model = make_model(sv, tv, n_layers=n_layers, d_model=d, n_heads=h, d_ff=ff, dropout=0.1, norm_first=nf)
    model = model.to(dtype).eval()
    gen = torch.Generator().manual_seed(1)
    src, tgt = random_batch(gen, sv, 4, 9, 2), random_batch(gen, tv, 4, 7, 2)
    with torch.no_grad():
        ours = model(src, tgt)
    theirs = torch_logits(model, src, tgt)
    real = tgt != PAD
    assert ours.shape == (4, 7, tv) and ours.dtype == dtype
    err = (ours - theirs)[real].abs().max().item()
    assert err < tol, f"max difference {err:.3g} at non-padding positions"


def test_to_torch_copies_every_parameter():
    model = make_model(20, 20, n_layers=2, d_model=16, n_heads=2, d_ff=32, norm_first=True)
    ref = transformer_to_torch(model)
    ours_core = sum(p.numel() for p in [*model.encoder.parameters(), *model.decoder.parameters()])
    assert ours_core == sum(p.numel() for p in ref.parameters())
    post = transformer_to_torch(make_model(20, 20, n_layers=2, d_model=16, n_heads=2, d_ff=32, norm_first=False))
    assert post.encoder.norm is None and post.decoder.norm is None, "the paper's post-LN stack has no final norm"


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_mask_guarantee(norm_first):
    torch.manual_seed(0)
    model = make_model(30, 30, n_layers=2, d_model=32, n_heads=4, d_ff=64, norm_first=norm_first).eval()
    src = torch.randint(4, 30, (2, 6))
    tgt = torch.randint(4, 30, (2, 8))
    changed = tgt.clone()
    changed[:, 5] = (changed[:, 5] + 1 - 4) % 26 + 4  # a different future token at position 5
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    assert torch.equal(a[:, :5], b[:, :5]), "positions before 5 must not see token 5"
    assert not torch.allclose(a[:, 5:], b[:, 5:]), "positions from 5 on do see it"


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_guarantee(norm_first):
    torch.manual_seed(0)
    model = make_model(30, 30, n_layers=2, d_model=32, n_heads=4, d_ff=64, norm_first=norm_first).eval()
    src = torch.randint(4, 30, (2, 6))
    tgt = torch.randint(4, 30, (2, 5))
    pad = lambda x, n: torch.cat([x, torch.full((x.shape[0], n), PAD)], 1)  # noqa: E731
    with torch.no_grad():
        base = model(src, tgt)
        more = model(pad(src, 3), pad(tgt, 2))
    assert torch.allclose(base, more[:, :5], atol=1e-5), "appending padding must change nothing"


def test_encode_decode_match_forward_and_embeddings():
    torch.manual_seed(0)
    model = make_model(25, 35, n_layers=1, d_model=16, n_heads=2, d_ff=32).eval()
    src, tgt = torch.randint(1, 25, (3, 5)), torch.randint(1, 35, (3, 4))
    memory = model.encode(src)
    assert memory.shape == (3, 5, 16)
    assert torch.equal(model.decode(tgt, memory, src), model(src, tgt))
    assert model.embed_src(src).shape == (3, 5, 16) and model.embed_tgt(tgt).shape == (3, 4, 16)


def test_shared_embeddings_and_parameter_count():
    shared = make_model(100, 100, n_layers=1, d_model=16, n_heads=2, d_ff=32, share_embeddings=True)
    assert shared.src_embed.embedding.weight is shared.tgt_embed.embedding.weight is shared.generator.weight
    untied = make_model(100, 100, n_layers=1, d_model=16, n_heads=2, d_ff=32)
    assert count_parameters(untied) - count_parameters(shared) == 2 * 100 * 16
    base = make_model(37000, 37000, share_embeddings=True)
    assert 60e6 < count_parameters(base) < 66e6  # the paper reports ~65M for its base model
    with pytest.raises(ValueError, match="one joint vocabulary"):
        make_model(100, 90, share_embeddings=True)


def test_attention_maps_are_collected_on_request():
    torch.manual_seed(0)
    model = make_model(20, 20, n_layers=2, d_model=16, n_heads=4, d_ff=32).eval()
    src, tgt = torch.randint(4, 20, (3, 6)), torch.randint(4, 20, (3, 5))
    src[0, 4:] = PAD
    with torch.no_grad():
        plain = model(src, tgt)
        with model.attention_maps() as maps:
            collected = model(src, tgt)
    assert torch.allclose(plain, collected, atol=1e-5), "the explicit path gives the same logits"
    assert [len(maps[k]) for k in ("encoder_self", "decoder_self", "cross")] == [2, 2, 2]
    assert maps["encoder_self"][0].shape == (3, 4, 6, 6)
    assert maps["decoder_self"][1].shape == (3, 4, 5, 5) and maps["cross"][1].shape == (3, 4, 5, 6)
    assert torch.allclose(maps["cross"][0].sum(-1), torch.ones(3, 4, 5))
    assert (maps["cross"][0][0, :, :, 4:] == 0).all(), "padding gets no attention"
    assert (maps["decoder_self"][0].triu(1) == 0).all(), "no attention to the future"
    assert model.decoder.layers[0].cross_attn_weights is None, "nothing kept after the block"


def _random_attention_case(seed):
    """A small random model configuration and padded batch shape (both norm orders, 1/2/4 heads)."""
    rng = random.Random(seed)
    heads = (1, 2, 4)[seed % 3]
    return dict(n_layers=rng.randint(1, 3), n_heads=heads, d_model=heads * rng.choice((4, 8)),
                d_ff=rng.choice((16, 32)), src_vocab=rng.randint(8, 40), tgt_vocab=rng.randint(8, 40),
                norm_first=seed % 2 == 1, batch=rng.randint(2, 4), src_len=rng.randint(3, 9),
                tgt_len=rng.randint(2, 8))


def _padded_ids(gen, vocab, batch, length):
    """Random ids whose rows hold 1..length real tokens; row 0 is always padded, the last never is."""
    ids = torch.randint(4, vocab, (batch, length), generator=gen)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0], lengths[-1] = max(1, length - 2), length
    ids[torch.arange(length) >= lengths[:, None]] = PAD
    return ids


ATTENTION_CASES = [_random_attention_case(seed) for seed in range(6)]


@pytest.mark.parametrize("case", ATTENTION_CASES,
                         ids=lambda c: "L{n_layers}-h{n_heads}-d{d_model}-{norm}-b{batch}-s{src_len}-t{tgt_len}".format(
                             norm="pre" if c["norm_first"] else "post", **c))
def test_attention_maps_are_distributions_that_respect_every_mask(case):
    c = dict(case)
    batch, src_len, tgt_len = c.pop("batch"), c.pop("src_len"), c.pop("tgt_len")
    torch.manual_seed(sum(case.values()))
    model = make_model(**c, dropout=0.1, share_embeddings=False).eval()
    gen = torch.Generator().manual_seed(7)
    src, tgt = _padded_ids(gen, c["src_vocab"], batch, src_len), _padded_ids(gen, c["tgt_vocab"], batch, tgt_len)
    with torch.no_grad():
        plain = model(src, tgt)
        with model.attention_maps() as maps:
            inside = model(src, tgt)
        after = model(src, tgt)
    assert torch.allclose(inside, plain, atol=1e-5), "collecting the weights must not change the logits"
    assert torch.equal(after, plain), "after the block the model is back on the fused path"

    L, H = c["n_layers"], c["n_heads"]
    expected = {"encoder_self": (batch, H, src_len, src_len), "decoder_self": (batch, H, tgt_len, tgt_len),
                "cross": (batch, H, tgt_len, src_len)}
    assert sorted(maps) == sorted(expected)
    src_real, tgt_real = src != PAD, tgt != PAD                                 # (batch, len)
    queries = {"encoder_self": src_real, "decoder_self": tgt_real, "cross": tgt_real}
    keys = {"encoder_self": src_real, "decoder_self": tgt_real, "cross": src_real}
    for kind, shape in expected.items():
        assert len(maps[kind]) == L, f"{kind}: one map per layer"
        for i, w in enumerate(maps[kind]):
            where = f"{kind}[{i}]"
            assert isinstance(w, torch.Tensor) and w.shape == shape, f"{where}: {tuple(w.shape)} != {shape}"
            rows = queries[kind][:, None, :].expand(batch, H, shape[2])        # real query rows
            sums = w.sum(-1)[rows]
            assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5), f"{where}: rows must sum to 1"
            padded_keys = ~keys[kind][:, None, None, :].expand(shape)
            assert (w[padded_keys] == 0).all(), f"{where}: padded keys must get exactly zero weight"
            assert (w >= 0).all(), f"{where}: negative weight"
            if kind == "decoder_self":
                assert (w.triu(1) == 0).all(), f"{where}: attention to the future"
    for layer in [*model.encoder.layers, *model.decoder.layers]:
        assert not layer.keep_weights and layer.self_attn_weights is None, "nothing kept after the block"


def test_save_load_round_trip_and_config_mismatch(tmp_path):
    torch.manual_seed(0)
    model = make_model(40, 40, n_layers=1, d_model=16, n_heads=2, d_ff=32, share_embeddings=True).eval()
    path = model.save(tmp_path / "m.pt", step=3)
    again = type(model).load(path, expected_config=model.config).eval()
    src, tgt = torch.randint(4, 40, (2, 5)), torch.randint(4, 40, (2, 4))
    assert torch.equal(model(src, tgt), again(src, tgt))
    assert again.generator.weight is again.src_embed.embedding.weight, "tying survives loading"
    other = dict(model.config, d_model=32)
    with pytest.raises(ConfigMismatchError, match="d_model: .* has 16, expected 32"):
        type(model).load(path, expected_config=other)


def test_input_errors():
    model = make_model(10, 10, n_layers=1, d_model=8, n_heads=2, d_ff=16)
    with pytest.raises(ValueError, match="src_ids must be"):
        model(torch.zeros(5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="different batch sizes"):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_heads=3 does not divide d_model=8"):
        make_model(10, 10, d_model=8, n_heads=3)
    with pytest.raises(ValueError, match="n_layers must be a positive int"):
        make_model(10, 10, n_layers=0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_states_are_the_forward_without_its_output_layer(norm_first):
    torch.manual_seed(4)
    model = make_model(30, 30, n_layers=2, d_model=16, n_heads=4, d_ff=32, norm_first=norm_first).eval()
    src, tgt = torch.randint(4, 30, (3, 7)), torch.randint(4, 30, (3, 6))
    src[1, 5:], tgt[2, 4:] = PAD, PAD                                  # both paddings must stay masked
    with torch.no_grad(), model.attention_maps() as full:
        logits = model(src, tgt)                                       # (3, 6, 30)
    with torch.no_grad(), model.attention_maps() as maps:
        states = model.decoder_states(tgt, model.encode(src), src)     # (3, 6, 16)
    assert states.shape == (3, 6, 16)
    torch.testing.assert_close(model.generator(states), logits, atol=1e-6, rtol=1e-6)
    for kind in ("encoder_self", "decoder_self", "cross"):
        assert all(torch.equal(a, b) for a, b in zip(maps[kind], full[kind], strict=True)), kind


@pytest.mark.parametrize("norm_first", [False, True])
def test_decode_step_with_a_cache_equals_the_full_decode(norm_first):
    from utils.kv_cache import KVCache

    torch.manual_seed(3)
    model = make_model(30, 30, n_layers=2, d_model=16, n_heads=4, d_ff=32, norm_first=norm_first, max_len=12).eval()
    src, tgt = torch.randint(4, 30, (3, 7)), torch.randint(4, 30, (3, 6))
    src[1, 5:] = PAD                                                   # padded source rows must stay masked
    with torch.no_grad():
        memory = model.encode(src)
        full = model.decode(tgt, memory, src)                          # (3, 6, 30)
        cache = KVCache()
        steps = [model.decode_step(tgt[:, t:t + 1], memory, src, cache) for t in range(6)]
    assert cache.length == 6 and len(cache.keys) == 2
    for t, logits in enumerate(steps):
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
    with torch.no_grad(), pytest.raises(ValueError, match="beyond the positional table"):
        for t in range(7):                                             # positions 6 .. 12: 12 is one too many
            model.decode_step(tgt[:, :1], memory, src, cache)
