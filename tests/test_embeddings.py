import math

import numpy as np
import pytest
import torch

from utils.embeddings import (LearnedPositionalEmbedding, PositionalEncoding, TokenEmbedding,
                              sinusoidal_positional_encoding)


def numpy_pe(max_len: int, d_model: int) -> np.ndarray:
    """The paper's formula, written independently: one loop per entry."""
    pe = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for i in range(d_model // 2):
            pe[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d_model))
            pe[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d_model))
    return pe


def test_formula_spot_values():
    pe = sinusoidal_positional_encoding(60, 8, dtype=torch.float64)
    assert pe.shape == (60, 8) and pe.dtype == torch.float64
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 4, dtype=torch.float64))
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0))
    assert pe[1, 1].item() == pytest.approx(math.cos(1.0))
    assert pe[50, 2].item() == pytest.approx(math.sin(50 / 10000 ** (2 / 8)))
    assert pe[50, 7].item() == pytest.approx(math.cos(50 / 10000 ** (6 / 8)))


@pytest.mark.parametrize("max_len, d_model", [(1, 2), (50, 16), (300, 64)])
def test_equals_numpy_reference(max_len, d_model):
    ref = numpy_pe(max_len, d_model)
    np.testing.assert_allclose(sinusoidal_positional_encoding(max_len, d_model, torch.float64).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(sinusoidal_positional_encoding(max_len, d_model).numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("k", [1, 7, 40])
def test_shift_by_k_is_one_rotation_for_every_position(k):
    d_model, max_len = 32, 200
    pe = sinusoidal_positional_encoding(max_len, d_model, torch.float64)
    omega = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    c, s = torch.cos(omega * k), torch.sin(omega * k)
    rotation = torch.block_diag(*[torch.stack([torch.stack([ci, si]), torch.stack([-si, ci])]) for ci, si in zip(c, s)])
    assert torch.allclose(pe[k:], pe[:-k] @ rotation.T, atol=1e-10)
    assert torch.allclose(rotation @ rotation.T, torch.eye(d_model, dtype=torch.float64), atol=1e-12)
    # and the dot product depends only on the distance k
    dots = (pe[k:] * pe[:-k]).sum(-1)
    assert torch.allclose(dots, torch.cos(omega * k).sum().expand_as(dots), atol=1e-9)


def test_dtype_float64_and_bad_arguments():
    assert sinusoidal_positional_encoding(4, 6, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="d_model=7 is odd.*even d_model such as 8"):
        sinusoidal_positional_encoding(10, 7)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="max_len must be a positive int"):
            sinusoidal_positional_encoding(bad, 8)
        with pytest.raises(ValueError, match="d_model must be a positive int"):
            sinusoidal_positional_encoding(8, bad)
    with pytest.raises(TypeError, match="floating-point"):
        sinusoidal_positional_encoding(4, 8, dtype=torch.int64)


def test_token_embedding_scales_a_lookup():
    torch.manual_seed(0)
    emb = TokenEmbedding(100, 64)
    ids = torch.tensor([[5, 7, 5], [99, 0, 1]])
    out = emb(ids)
    assert out.shape == (2, 3, 64)
    assert torch.allclose(out, emb.embedding.weight[ids] * 8.0)
    assert isinstance(emb.embedding, torch.nn.Embedding)
    assert emb(ids.int()).shape == (2, 3, 64), "int32 ids work too"
    # initialised N(0, 1/d_model): the scaled vectors have length about sqrt(d_model)
    assert abs(emb.embedding.weight.std().item() - 64**-0.5) < 0.01
    norms = emb(torch.arange(100)[None]).norm(dim=-1)
    assert 0.8 * 8 < norms.mean().item() < 1.2 * 8


def test_token_embedding_pad_row_is_zero_and_gets_no_gradient():
    emb = TokenEmbedding(10, 4, pad_id=0)
    assert torch.count_nonzero(emb.embedding.weight[0]) == 0
    emb(torch.tensor([[0, 3, 0]])).sum().backward()
    grad = emb.embedding.weight.grad
    assert torch.count_nonzero(grad[0]) == 0 and torch.all(grad[3] == 2.0)
    with pytest.raises(ValueError, match="pad_id=10 is outside"):
        TokenEmbedding(10, 4, pad_id=10)


def test_token_embedding_errors():
    emb = TokenEmbedding(50, 8)
    with pytest.raises(TypeError, match="integers.*torch.float32"):
        emb(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="token id 57 is outside the vocabulary of 50 tokens.*max id seen 57"):
        emb(torch.tensor([[1, 57, 3]]))
    with pytest.raises(ValueError, match="token id -1 is outside"):
        emb(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        TokenEmbedding(0, 8)


@pytest.mark.parametrize("cls", [PositionalEncoding, LearnedPositionalEmbedding])
def test_positional_modules_errors(cls):
    module = cls(16, max_len=10)
    assert module(torch.zeros(2, 10, 16)).shape == (2, 10, 16)
    with pytest.raises(ValueError, match=r"sequence length 11 exceeds max_len=10.*max_len >= 11"):
        module(torch.zeros(1, 11, 16))
    with pytest.raises(ValueError, match="built for d_model=16 but x's last dimension is 12"):
        module(torch.zeros(1, 5, 12))
    with pytest.raises(ValueError, match=r"shape \(batch, seq, d_model\)"):
        module(torch.zeros(16))
    with pytest.raises(ValueError, match="dropout"):
        cls(16, dropout=1.0)


def test_positional_encoding_adds_the_table_and_is_not_saved():
    module = PositionalEncoding(32, max_len=100)
    x = torch.randn(3, 20, 32)
    assert torch.allclose(module(x), x + sinusoidal_positional_encoding(20, 32))
    assert "pe" in dict(module.named_buffers()) and module.state_dict() == {}
    assert sum(p.numel() for p in module.parameters()) == 0
    x64 = x.double()
    out64 = module.double()(x64)
    assert out64.dtype == torch.float64
    # .double() converts the stored float32 table: float64 arithmetic, float32-rounded table values
    assert torch.allclose(out64, x64 + sinusoidal_positional_encoding(20, 32, torch.float64), atol=1e-6)


def test_positional_encoding_dropout_only_in_training():
    torch.manual_seed(0)
    module = PositionalEncoding(16, dropout=0.5)
    x = torch.randn(4, 8, 16)
    module.train()
    out = module(x)
    assert (out == 0).float().mean().item() > 0.3
    module.eval()
    assert torch.allclose(module(x), x + sinusoidal_positional_encoding(8, 16))


def test_learned_positional_embedding():
    torch.manual_seed(0)
    module = LearnedPositionalEmbedding(16, max_len=12)
    assert sum(p.numel() for p in module.parameters()) == 12 * 16
    x = torch.randn(2, 5, 16)
    out = module(x)
    assert torch.allclose(out, x + module.embedding.weight[:5])
    out.sum().backward()
    grad = module.embedding.weight.grad
    assert torch.all(grad[:5] == 2.0) and torch.count_nonzero(grad[5:]) == 0, "only used positions learn"
    assert set(module.state_dict()) == {"embedding.weight"}
