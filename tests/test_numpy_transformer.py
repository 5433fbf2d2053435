import math

import numpy as np
import pytest
import torch

import utils.bonus.numpy_transformer as nt
from utils.bonus.numpy_transformer import Config
from utils.model import count_parameters


def random_params(config: Config, seed: int = 0) -> dict:
    """Every parameter random (float64), so that gamma = 1, beta = 0 and tiny weights cannot hide a bug."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) * 0.5 + k.endswith("gamma") for k, s in nt.param_shapes(config).items()}


def fd_error(loss_fn, arr, grad) -> float:
    return nt.relative_error(grad, nt.numerical_gradient(loss_fn, arr))


# ---------------------------------------------------------------- pieces, one at a time
@pytest.mark.parametrize("shape_in, d_out", [((5, 3), 4), ((2, 3, 5), 1), ((2, 1, 4, 6), 7)])
def test_linear_gradients(shape_in, d_out):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape_in), rng.standard_normal((shape_in[-1], d_out)), rng.standard_normal(d_out)
    R = rng.standard_normal((*shape_in[:-1], d_out))
    out, cache = nt.linear_forward(x, w, b)
    assert out.shape == R.shape
    np.testing.assert_allclose(out, np.einsum("...i,ij->...j", x, w) + b, atol=1e-12)
    dx, dw, db = nt.linear_backward(R, cache)
    f = lambda: (nt.linear_forward(x, w, b)[0] * R).sum()  # noqa: E731
    assert max(fd_error(f, x, dx), fd_error(f, w, dw), fd_error(f, b, db)) < 1e-8


def test_embedding_gradient_sums_repeated_ids():
    rng = np.random.default_rng(1)
    table, ids, R = rng.standard_normal((6, 3)), np.array([[2, 2, 2], [0, 2, 5]]), rng.standard_normal((2, 3, 3))
    out, cache = nt.embedding_forward(ids, table)
    np.testing.assert_array_equal(out[1, 2], table[5])
    dtable = nt.embedding_backward(R, cache)
    np.testing.assert_allclose(dtable[2], R[0].sum(0) + R[1, 1])  # id 2 is used four times
    assert np.all(dtable[[1, 3, 4]] == 0), "unused rows get no gradient"
    assert fd_error(lambda: (nt.embedding_forward(ids, table)[0] * R).sum(), table, dtable) < 1e-8


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 8), (1, 1, 3)])
def test_layer_norm_forward_matches_torch_and_gradients(shape):
    rng = np.random.default_rng(2)
    x, g, b, R = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1]), \
        rng.standard_normal(shape)
    out, cache = nt.layer_norm_forward(x, g, b)
    ref = torch.nn.functional.layer_norm(torch.tensor(x), (shape[-1],), torch.tensor(g), torch.tensor(b), 1e-5)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-12)
    dx, dg, db = nt.layer_norm_backward(R, cache)
    f = lambda: (nt.layer_norm_forward(x, g, b)[0] * R).sum()  # noqa: E731
    assert max(fd_error(f, x, dx), fd_error(f, g, dg), fd_error(f, b, db)) < 1e-7


def test_relu_softmax_and_cross_entropy_gradients():
    rng = np.random.default_rng(3)
    x, R = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    out, mask = nt.relu_forward(x)
    assert fd_error(lambda: (nt.relu_forward(x)[0] * R).sum(), x, nt.relu_backward(R, mask)) < 1e-8
    y, cache = nt.softmax_forward(x)
    np.testing.assert_allclose(y.sum(-1), 1.0)
    assert fd_error(lambda: (nt.softmax_forward(x)[0] * R).sum(), x, nt.softmax_backward(R, cache)) < 1e-8
    logits, targets = rng.standard_normal((2, 4, 7)) * 4, rng.integers(0, 7, (2, 4))
    loss, cache = nt.cross_entropy_forward(logits, targets)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits).flatten(0, 1), torch.tensor(targets).flatten())
    assert abs(loss - ref.item()) < 1e-12
    dlogits = nt.cross_entropy_backward(1.0, cache)
    np.testing.assert_allclose(dlogits.sum(-1), 0.0, atol=1e-15)  # p − onehot sums to zero
    assert fd_error(lambda: nt.cross_entropy_forward(logits, targets)[0], logits, dlogits) < 1e-8


def test_cross_entropy_is_stable_for_huge_logits():
    loss, cache = nt.cross_entropy_forward(np.array([[1e4, 0.0, -1e4]]), np.array([1]))
    assert np.isclose(loss, 1e4) and np.all(np.isfinite(nt.cross_entropy_backward(1.0, cache)))


@pytest.mark.parametrize("batch, seq, d_model, n_heads", [(1, 1, 4, 1), (2, 5, 8, 2), (3, 4, 12, 3), (1, 6, 8, 8)])
def test_attention_gradients_on_random_shapes(batch, seq, d_model, n_heads):
    rng = np.random.default_rng(4)
    x, R = rng.standard_normal((batch, seq, d_model)), rng.standard_normal((batch, seq, d_model))
    p = {"w_qkv": rng.standard_normal((d_model, 3 * d_model)) / 2, "b_qkv": rng.standard_normal(3 * d_model),
         "w_o": rng.standard_normal((d_model, d_model)) / 2, "b_o": rng.standard_normal(d_model)}
    out, cache = nt.attention_forward(x, p, n_heads)
    dx, grads = nt.attention_backward(R, cache)
    assert set(grads) == set(p)
    f = lambda: (nt.attention_forward(x, p, n_heads)[0] * R).sum()  # noqa: E731
    assert fd_error(f, x, dx) < 1e-7
    for k in p:
        assert fd_error(f, p[k], grads[k]) < 1e-7, k


def test_attention_equals_torch_and_is_causal():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 8))
    p = {"w_qkv": rng.standard_normal((8, 24)), "b_qkv": rng.standard_normal(24),
         "w_o": rng.standard_normal((8, 8)), "b_o": rng.standard_normal(8)}
    out, _ = nt.attention_forward(x, p, 2)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(p["w_qkv"].T))
        mha.in_proj_bias.copy_(torch.tensor(p["b_qkv"]))
        mha.out_proj.weight.copy_(torch.tensor(p["w_o"].T))
        mha.out_proj.bias.copy_(torch.tensor(p["b_o"]))
    xt = torch.tensor(x)
    blocked = torch.ones(6, 6, dtype=torch.bool).triu(1)  # PyTorch: True = blocked
    ref, _ = mha(xt, xt, xt, attn_mask=blocked, need_weights=False)
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-10)
    x2 = x.copy()
    x2[:, 4:] += 5.0  # change the future
    np.testing.assert_allclose(nt.attention_forward(x2, p, 2)[0][:, :4], out[:, :4], atol=1e-12)


def test_block_and_feed_forward_gradients():
    rng = np.random.default_rng(6)
    cfg = Config(vocab_size=5, context=4, d_model=6, n_heads=2, n_layers=1, d_ff=10)
    p = {k.removeprefix("blocks.0."): v for k, v in random_params(cfg, 6).items() if k.startswith("blocks.0.")}
    x, R = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 4, 6))
    dx, grads = nt.block_backward(R, nt.block_forward(x, p, 2)[1])
    assert set(grads) == set(p)
    f = lambda: (nt.block_forward(x, p, 2)[0] * R).sum()  # noqa: E731
    assert fd_error(f, x, dx) < 1e-7
    for k in p:
        assert fd_error(f, p[k], grads[k]) < 1e-7, k


# ---------------------------------------------------------------- the whole model
CONFIGS = [
    Config(vocab_size=7, context=5, d_model=4, n_heads=1, n_layers=1, d_ff=8),
    Config(vocab_size=11, context=6, d_model=8, n_heads=2, n_layers=2, d_ff=16, pos="sinusoidal"),
    Config(vocab_size=5, context=4, d_model=6, n_heads=3, n_layers=2, d_ff=4),
]


@pytest.mark.slow
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"d{c.d_model}h{c.n_heads}L{c.n_layers}-{c.pos}")
def test_every_parameter_matches_finite_differences(cfg):
    rng = np.random.default_rng(7)
    params = random_params(cfg, 7)
    ids, targets = rng.integers(0, cfg.vocab_size, (2, cfg.context)), rng.integers(0, cfg.vocab_size, (2, cfg.context))
    errors = nt.gradient_check(params, ids, targets, cfg)
    assert set(errors) == set(nt.param_shapes(cfg))
    bad = {k: e for k, e in errors.items() if not e < 1e-6}
    assert not bad, bad


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"d{c.d_model}h{c.n_heads}L{c.n_layers}-{c.pos}")
def test_gradients_equal_torch_autograd(cfg):
    rng = np.random.default_rng(8)
    params = random_params(cfg, 8)
    seq = cfg.context - 1  # shorter than the context: pos_emb rows beyond seq get zero gradient
    ids, targets = rng.integers(0, cfg.vocab_size, (3, seq)), rng.integers(0, cfg.vocab_size, (3, seq))
    loss, grads = nt.loss_and_grads(params, ids, targets, cfg)
    loss_t, leaves = nt.torch_loss(params, ids, targets, cfg)
    loss_t.backward()
    assert abs(loss - loss_t.item()) < 1e-12
    for k in params:
        assert grads[k].shape == params[k].shape
        assert nt.relative_error(grads[k], leaves[k].grad.numpy()) < 1e-10, k
    if cfg.pos == "learned":
        assert np.all(grads["pos_emb"][seq:] == 0)


def test_a_wrong_backward_is_caught(monkeypatch):
    """The gradient check can fail: break layer norm's backward (drop one term) and watch it."""
    cfg = CONFIGS[0]
    params = random_params(cfg, 9)
    rng = np.random.default_rng(9)
    ids, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))

    def broken(dout, cache):
        xhat, rstd, gamma = cache
        g = dout * gamma
        dx = rstd * (g - g.mean(axis=-1, keepdims=True))  # forgot the x̂ term
        return dx, (dout * xhat).reshape(-1, xhat.shape[-1]).sum(0), dout.reshape(-1, xhat.shape[-1]).sum(0)

    monkeypatch.setattr(nt, "layer_norm_backward", broken)
    errors = nt.gradient_check(params, ids, targets, cfg)
    assert errors["tok_emb"] > 1e-3 and errors["head.w"] < 1e-6, "layers below the bug are wrong, above it right"


def test_float32_model_agrees_with_float64():
    cfg = CONFIGS[1]
    p64 = random_params(cfg, 10)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    rng = np.random.default_rng(10)
    ids, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    (l64, g64), (l32, g32) = nt.loss_and_grads(p64, ids, targets, cfg), nt.loss_and_grads(p32, ids, targets, cfg)
    assert abs(l64 - l32) < 1e-5
    assert all(g32[k].dtype == np.float32 and nt.relative_error(g32[k], g64[k]) < 1e-4 for k in p64)


def test_model_is_causal():
    cfg = CONFIGS[1]
    params = random_params(cfg, 11)
    ids = np.array([[1, 2, 3, 4, 5, 6]])
    changed = ids.copy()
    changed[0, 4:] = [0, 0]
    a, b = nt.model_forward(params, ids, cfg)[0], nt.model_forward(params, changed, cfg)[0]
    np.testing.assert_allclose(a[0, :4], b[0, :4], atol=1e-12)
    assert not np.allclose(a[0, 4:], b[0, 4:])


def test_init_params_shapes_values_and_determinism():
    cfg = Config(vocab_size=20, context=8, d_model=16, n_heads=4, n_layers=3)
    p = nt.init_params(cfg, seed=3)
    assert list(p) == list(nt.param_shapes(cfg)) and all(v.dtype == np.float32 for v in p.values())
    assert all(p[k].shape == s for k, s in nt.param_shapes(cfg).items())
    assert np.all(p["blocks.2.ln1.gamma"] == 1) and np.all(p["blocks.0.attn.b_qkv"] == 0)
    assert 0.015 < p["tok_emb"].std() < 0.025
    assert p["blocks.0.ffn.w2"].std() < 0.6 * p["blocks.0.ffn.w1"].std(), "residual projections are scaled down"
    q = nt.init_params(cfg, seed=3, dtype=np.float64)
    assert all(np.allclose(p[k], q[k], atol=1e-7) for k in p)
    assert not np.allclose(nt.init_params(cfg, seed=4)["tok_emb"], p["tok_emb"])
    d, f, v, c, L = 16, 64, 20, 8, 3
    assert count_parameters(p) == v * d + c * d + L * (4 * d + 3 * d * d + 3 * d + d * d + d + 2 * d * f + f + d) \
        + 2 * d + d * v + v
    assert "pos_emb" not in nt.init_params(Config(20, 8, 16, 4, 1, pos="sinusoidal"))


def test_untrained_model_predicts_about_uniformly():
    cfg = Config(vocab_size=50, context=16)
    params = nt.init_params(cfg, seed=0)
    ids = np.random.default_rng(0).integers(0, 50, (4, 16))
    loss = nt.model_loss(params, ids, np.roll(ids, -1, axis=1), cfg)
    assert abs(loss - math.log(50)) < 0.1


# ---------------------------------------------------------------- Adam and training
@pytest.mark.parametrize("lr, betas, eps", [(1e-3, (0.9, 0.999), 1e-8), (0.05, (0.5, 0.9), 1e-6), (0.1, (0.0, 0.99), 1e-8)])
def test_adam_equals_torch(lr, betas, eps):
    rng = np.random.default_rng(12)
    ours = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    ref = [torch.tensor(v, requires_grad=True) for v in ours.values()]
    opt, opt_t = nt.Adam(ours, lr, betas, eps), torch.optim.Adam(ref, lr=lr, betas=betas, eps=eps)
    for step in range(5):
        grads = {k: rng.standard_normal(v.shape) * 10.0 ** (-step) for k, v in ours.items()}
        opt.step(ours, grads)
        for t, g in zip(ref, grads.values()):
            t.grad = torch.tensor(g)
        opt_t.step()
        for (k, v), t in zip(ours.items(), ref):
            np.testing.assert_allclose(v, t.detach().numpy(), rtol=0, atol=1e-13, err_msg=f"step {step}, {k}")
    assert opt.t == 5


def test_adam_first_step_is_lr_times_sign():
    p = {"w": np.array([1.0, 1.0, 1.0])}
    nt.Adam(p, lr=0.1).step(p, {"w": np.array([1e-3, -50.0, 2.0])})
    np.testing.assert_allclose(p["w"], [0.9, 1.1, 0.9], atol=1e-6)


def test_short_training_run_lowers_the_loss():
    data = np.tile(np.array([0, 1, 2, 3, 4, 2, 1]), 60)  # a fixed cycle: each next token follows from context
    cfg = Config(vocab_size=5, context=8, d_model=16, n_heads=2, n_layers=1)
    params = nt.init_params(cfg, seed=0)
    opt = nt.Adam(params, lr=1e-2)
    rng = np.random.default_rng(0)
    x_eval, y_eval = nt.random_batch(data, 16, 8, np.random.default_rng(1))
    before = nt.model_loss(params, x_eval, y_eval, cfg)
    losses = []
    for _ in range(60):
        loss, grads = nt.loss_and_grads(params, *nt.random_batch(data, 16, 8, rng), cfg)
        opt.step(params, grads)
        losses.append(loss)
    after = nt.model_loss(params, x_eval, y_eval, cfg)
    assert before > 1.4 and after < 0.3, (before, after)
    assert all(v.dtype == np.float32 for v in params.values())


def test_training_is_deterministic():
    def run():
        cfg = Config(vocab_size=5, context=4, d_model=8, n_heads=2, n_layers=1)
        params, rng = nt.init_params(cfg, seed=1), np.random.default_rng(2)
        opt = nt.Adam(params, lr=1e-2)
        data = np.arange(100) % 5
        for _ in range(5):
            opt.step(params, nt.loss_and_grads(params, *nt.random_batch(data, 4, 4, rng), cfg)[1])
        return params

    a, b = run(), run()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_random_batch_targets_are_shifted_inputs():
    data = np.arange(100)
    x, y = nt.random_batch(data, 6, 10, np.random.default_rng(0))
    assert x.shape == y.shape == (6, 10)
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)


def test_generate_greedy_sampling_and_context_cropping():
    cfg = Config(vocab_size=9, context=4, d_model=8, n_heads=2, n_layers=1)
    params = nt.init_params(cfg, seed=2, dtype=np.float64)
    params["head.b"][:] = np.arange(9)  # make token 8 the most likely everywhere
    out = nt.generate(params, cfg, [1, 2, 3, 4, 5, 6], 5, np.random.default_rng(0), temperature=0)
    assert out[:6] == [1, 2, 3, 4, 5, 6] and out[6:] == [8] * 5, "prompt kept, longer than context is fine"
    s1 = nt.generate(params, cfg, [1], 20, np.random.default_rng(5))
    s2 = nt.generate(params, cfg, [1], 20, np.random.default_rng(5))
    assert s1 == s2 and len(s1) == 21 and len(set(s1[1:])) > 1 and all(0 <= i < 9 for i in s1)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=64, n_heads=5), r"n_heads=5 does not divide d_model=64; pick a divisor such as 1, 2, 4, 8, 16"),
    (dict(d_model=0), "d_model must be a positive int"),
    (dict(n_layers=-1), "n_layers must be a positive int"),
    (dict(d_ff=2.5), "d_ff must be a positive int"),
    (dict(pos="rotary"), "pos must be 'learned' or 'sinusoidal'"),
    (dict(d_model=9, n_heads=3, pos="sinusoidal"), "d_model must be even; got d_model=9"),
    (dict(d_model=5, n_heads=1, pos="sinusoidal"), "d_model must be even"),
    (dict(eps=0.0), "eps must be positive"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Config(**{"vocab_size": 10, "context": 8, **kwargs})


def test_bad_inputs_have_clear_messages():
    cfg = Config(vocab_size=10, context=4, d_model=8, n_heads=2, n_layers=1)
    params = nt.init_params(cfg)
    ok = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(TypeError, match="integer token ids"):
        nt.model_forward(params, ok.astype(float), cfg)
    with pytest.raises(ValueError, match=r"shape \(batch, seq\), got \(4,\); for one sequence use ids\[None\]"):
        nt.model_forward(params, ok[0], cfg)
    with pytest.raises(ValueError, match="sequence length 5 exceeds context=4"):
        nt.model_forward(params, np.zeros((1, 5), dtype=int), cfg)
    with pytest.raises(ValueError, match=r"values in \[0, 10\] but the vocabulary has 10 tokens"):
        nt.model_forward(params, np.array([[0, 10]]), cfg)
    with pytest.raises(ValueError, match=r"targets hold values in \[-1, -1\]"):
        nt.loss_and_grads(params, ok, ok - 1, cfg)
    with pytest.raises(ValueError, match="targets must have the shape of ids"):
        nt.loss_and_grads(params, ok, ok[:, :3], cfg)
    with pytest.raises(ValueError, match=r"missing \['blocks.0.ffn.w1'\]"):
        nt.model_forward({k: v for k, v in params.items() if k != "blocks.0.ffn.w1"}, ok, cfg)
    with pytest.raises(ValueError, match=r"'head.w' has shape \(8, 11\) but this Config needs \(8, 10\)"):
        nt.model_forward(params | {"head.w": np.zeros((8, 11))}, ok, cfg)
    with pytest.raises(ValueError, match="missing .*unexpected"):
        nt.model_forward(nt.init_params(Config(10, 4, 8, 2, 1, pos="sinusoidal")), ok, cfg)
    with pytest.raises(TypeError, match="float64"):
        nt.numerical_gradient(lambda: 0.0, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="at least one token"):
        nt.generate(params, cfg, [], 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        nt.generate(params, cfg, [1], 3, np.random.default_rng(0), temperature=-1)
    with pytest.raises(ValueError, match="needs more than context=4"):
        nt.random_batch(np.arange(4), 2, 4, np.random.default_rng(0))


def test_adam_errors():
    p = {"w": np.zeros(3)}
    for kwargs, match in [(dict(lr=0), "lr must be positive"), (dict(betas=(0.9, 1.0)), r"betas must lie in \[0, 1\)"),
                          (dict(eps=-1e-8), "eps must be positive")]:
        with pytest.raises(ValueError, match=match):
            nt.Adam(p, **kwargs)
    opt = nt.Adam(p)
    with pytest.raises(ValueError, match="names"):
        opt.step(p, {"v": np.zeros(3)})
    with pytest.raises(ValueError, match=r"grad 'w' has shape \(4,\) but the param has \(3,\)"):
        opt.step(p, {"w": np.zeros(4)})


def test_relative_error_and_numerical_gradient():
    assert nt.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert nt.relative_error(np.ones(3), -np.ones(3)) == 1.0
    with pytest.raises(ValueError, match=r"shape \(3,\) and shape \(1,\)"):
        nt.relative_error(np.ones(3), np.ones(1))                  # broadcasting would give 0.0
    x = np.linspace(-2, 2, 7)
    np.testing.assert_allclose(nt.numerical_gradient(lambda: (x**3).sum(), x), 3 * x**2, atol=1e-8)
    assert np.array_equal(x, np.linspace(-2, 2, 7)), "x is restored after perturbing it"
