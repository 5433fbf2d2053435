import pytest
import torch
from torch import nn

from utils.decode import greedy_decode
from utils.model import make_model

PAD, BOS, EOS = 0, 1, 2


def naive_greedy(model, src, max_len):
    """Notebook 04's first version: re-run the whole model on the prefix, every row to the end."""
    ys = torch.full((src.shape[0], 1), BOS)
    with torch.no_grad():
        for _ in range(max_len):
            next_id = model(src, ys)[:, -1].argmax(-1)
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
        self.calls = 0
        return torch.zeros(src_ids.shape[0], src_ids.shape[1], 4)

    def decode(self, tgt_ids, memory, src_ids):
        self.calls += 1
        step = tgt_ids.shape[1] - 1
        logits = torch.zeros(tgt_ids.shape[0], tgt_ids.shape[1], self.vocab)
        logits[torch.arange(tgt_ids.shape[0]), -1, self.script[:, step]] = 1.0
        return logits


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
