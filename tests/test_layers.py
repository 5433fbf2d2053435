import pytest
import torch
from torch import nn

from utils.layers import LayerNorm, PositionwiseFeedForward, SublayerConnection


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values, so that γ = 1, β = 0 cannot hide a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# ---------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_layernorm_equals_torch(dtype, tol):
    torch.manual_seed(0)
    ours = randomised(LayerNorm(64, eps=1e-5)).to(dtype)
    ref = nn.LayerNorm(64, eps=1e-5).to(dtype)
    ref.load_state_dict(ours.state_dict())  # same names: weight, bias
    x = torch.randn(3, 7, 64, dtype=dtype) * 2 + 0.5
    torch.testing.assert_close(ours(x), ref(x), atol=tol * 4, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_layernorm_in_half_precision_is_torch_to_one_rounding(dtype):
    ours = randomised(LayerNorm(64)).to(dtype)
    ref = nn.LayerNorm(64).to(dtype)
    ref.load_state_dict(ours.state_dict())
    x = (torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) * 3 + 5).to(dtype)   # a large mean
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.dtype == dtype
    step = torch.finfo(dtype).eps * want.float().abs().clamp(min=1)       # one rounding of the larger values
    assert ((got.float() - want.float()).abs() <= step).all()
    with torch.no_grad():
        assert LayerNorm(64)(x).dtype == torch.float32, "float32 weights (autocast): a float32 output, as before"


def test_layernorm_normalises_each_position_with_the_biased_variance():
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    y = LayerNorm(4, eps=0.0 + 1e-12)(x)
    mean, var = 3.0, ((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4  # /4, not /3
    torch.testing.assert_close(y, (x - mean) / var**0.5)
    assert abs(y.mean().item()) < 1e-6 and abs(y.var(unbiased=False).item() - 1) < 1e-5


def test_layernorm_gradients_equal_torch():
    torch.manual_seed(1)
    ours = randomised(LayerNorm(16), seed=1).double()
    ref = nn.LayerNorm(16).double()
    ref.load_state_dict(ours.state_dict())
    x1 = torch.randn(5, 16, dtype=torch.double, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    w = torch.randn(5, 16, dtype=torch.double)
    (ours(x1) * w).sum().backward()
    (ref(x2) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    assert torch.autograd.gradcheck(LayerNorm(6).double(), (torch.randn(2, 6, dtype=torch.double, requires_grad=True),))


def test_layernorm_state_dict_names():
    assert list(LayerNorm(8).state_dict()) == list(nn.LayerNorm(8).state_dict()) == ["weight", "bias"]


# ---------------------------------------------------------------- feed-forward
def test_ffn_equals_the_formula():
    torch.manual_seed(2)
    ffn = PositionwiseFeedForward(8, 32)
    x = torch.randn(2, 5, 8)
    w1, b1, w2, b2 = ffn.linear1.weight, ffn.linear1.bias, ffn.linear2.weight, ffn.linear2.bias
    expected = torch.clamp(x @ w1.T + b1, min=0) @ w2.T + b2
    torch.testing.assert_close(ffn(x), expected)
    assert ffn.linear1.weight.shape == (32, 8) and ffn.linear2.weight.shape == (8, 32)


def test_ffn_acts_on_each_position_separately():
    torch.manual_seed(3)
    ffn = PositionwiseFeedForward(8, 16)
    x = torch.randn(1, 6, 8)
    row_by_row = torch.stack([ffn(x[:, i]) for i in range(6)], dim=1)
    torch.testing.assert_close(ffn(x), row_by_row)


def test_ffn_matches_torch_encoder_layer_weights():
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=40, dropout=0.0, batch_first=True)
    ffn = PositionwiseFeedForward(16, 40)
    missing = ffn.load_state_dict({k: v for k, v in layer.state_dict().items() if k.startswith("linear")})
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.randn(3, 4, 16)
    expected = layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))  # PyTorch's _ff_block
    torch.testing.assert_close(ffn(x), expected)


# ---------------------------------------------------------------- sub-layer connection
@pytest.mark.parametrize("norm_first", [False, True])
def test_sublayer_connection_equals_the_formula(norm_first):
    torch.manual_seed(5)
    block = SublayerConnection(8, norm_first=norm_first)
    randomised(block.norm, seed=5)
    assert isinstance(block.norm, LayerNorm)
    ffn = PositionwiseFeedForward(8, 16)
    x = torch.randn(2, 3, 8)
    ref_norm = nn.LayerNorm(8)
    ref_norm.load_state_dict(block.norm.state_dict())
    expected = x + ffn(ref_norm(x)) if norm_first else ref_norm(x + ffn(x))
    torch.testing.assert_close(block(x, ffn), expected)
    other = SublayerConnection(8, norm_first=not norm_first)
    other.norm.load_state_dict(block.norm.state_dict())
    assert not torch.allclose(other(x, ffn), expected, atol=1e-3), "the two orders must differ"


def test_pre_ln_keeps_the_identity_path():
    block = SublayerConnection(4, norm_first=True)
    x = torch.randn(2, 4) * 10
    torch.testing.assert_close(block(x, lambda h: torch.zeros_like(h)), x)  # x + 0 = x, never normalised
    post = SublayerConnection(4, norm_first=False)(x, lambda h: torch.zeros_like(h))
    torch.testing.assert_close(post, nn.functional.layer_norm(x, (4,)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_dropout_is_active_in_train_and_off_in_eval(norm_first):
    torch.manual_seed(6)
    block = SublayerConnection(32, dropout=0.5, norm_first=norm_first)
    ffn = PositionwiseFeedForward(32, 64, dropout=0.5)
    x = torch.randn(4, 5, 32)
    block.train()
    ffn.train()
    a, b = block(x, ffn), block(x, ffn)
    assert not torch.allclose(a, b), "in train mode two passes must drop different units"
    block.eval()
    ffn.eval()
    clean = SublayerConnection(32, norm_first=norm_first)
    clean.load_state_dict(block.state_dict())
    no_drop = PositionwiseFeedForward(32, 64)
    no_drop.load_state_dict(ffn.state_dict())
    torch.testing.assert_close(block(x, ffn), clean(x, no_drop))
    torch.testing.assert_close(block(x, ffn), block(x, ffn))


def test_ffn_dropout_zeroes_hidden_units_in_train():
    torch.manual_seed(7)
    ffn = PositionwiseFeedForward(4, 1000, dropout=0.5).train()
    seen = {}
    ffn.dropout.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    ffn(torch.randn(1, 4))
    frac = (seen["out"] == 0).float().mean().item()
    assert 0.6 < frac < 0.9, frac  # about half ReLU zeros, then half of the rest dropped


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("make", [
    lambda: LayerNorm(0), lambda: LayerNorm(-3), lambda: LayerNorm(2.5),
    lambda: PositionwiseFeedForward(0, 8), lambda: PositionwiseFeedForward(8, -1),
    lambda: SublayerConnection(0),
])
def test_non_positive_sizes_are_rejected(make):
    with pytest.raises(ValueError, match="must be a positive integer"):
        make()


def test_bad_eps_and_dropout():
    with pytest.raises(ValueError, match="eps must be positive"):
        LayerNorm(4, eps=0.0)
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
            PositionwiseFeedForward(4, 8, dropout=p)
        with pytest.raises(ValueError, match="dropout"):
            SublayerConnection(4, dropout=p)


@pytest.mark.parametrize("module, name", [
    (LayerNorm(512), "LayerNorm"),
    (PositionwiseFeedForward(512, 2048), "PositionwiseFeedForward"),
])
def test_width_mismatch_names_both_numbers(module, name):
    with pytest.raises(ValueError, match=rf"{name} was built with d_model=512 .* last dimension is 256"):
        module(torch.randn(2, 3, 256))


def test_sublayer_connection_errors():
    block = SublayerConnection(8)
    with pytest.raises(ValueError, match="d_model=8 .* last dimension is 6"):
        block(torch.randn(2, 6), lambda h: h)
    with pytest.raises(ValueError, match="scalar"):
        LayerNorm(8)(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"sublayer returned \(2, 4\) .* needs shape \(2, 8\)"):
        block(torch.randn(2, 8), lambda h: h[:, :4])
    with pytest.raises(ValueError, match="returned tuple .* wrapped"):
        block(torch.randn(2, 8), lambda h: (h, None))
