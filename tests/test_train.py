import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.batching import TokenBatches
from utils.checkpoint import ConfigMismatchError, load_checkpoint
from utils.model import make_model
from utils.tokenize import CharTokenizer, tokenizer_from_dict
from utils.schedules import WarmupInverseSqrt, warmup_schedule
from utils.train import (TrainState, evaluate, get_rng_state, label_smoothed_cross_entropy, make_optimizer, resume,
                         save_training_checkpoint, set_rng_state, train)

PAD, BOS, EOS, V = 0, 1, 2, 20


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


# -- loss -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 1.0])
def test_loss_equals_torch_cross_entropy(eps):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, V, generator=gen) * 3
    target = torch.randint(3, V, (4, 7), generator=gen)
    target[1, 3:] = PAD
    target[2, 5:] = PAD
    ours = label_smoothed_cross_entropy(logits, target, eps, PAD)
    theirs = F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=eps, ignore_index=PAD)
    assert torch.allclose(ours, theirs, atol=1e-6), (ours, theirs)
    ours_sum = label_smoothed_cross_entropy(logits, target, eps, PAD, reduction="sum")
    theirs_sum = F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=eps, ignore_index=PAD,
                                 reduction="sum")
    assert torch.allclose(ours_sum, theirs_sum, atol=1e-4)


def test_loss_gradients_equal_torch_and_padding_is_ignored():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, V, generator=gen, requires_grad=True)
    target = torch.randint(3, V, (3, 5), generator=gen)
    target[0, 2:] = PAD
    label_smoothed_cross_entropy(logits, target, 0.1, PAD).backward()
    ours = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=0.1, ignore_index=PAD).backward()
    assert torch.allclose(ours, logits.grad, atol=1e-7)
    assert (ours[0, 2:] == 0).all(), "padded positions get no gradient"


def test_no_nan_when_a_row_or_the_whole_batch_is_padding():
    logits = torch.randn(2, 4, V, requires_grad=True)
    target = torch.tensor([[5, 6, 2, PAD], [PAD] * 4])                  # row 1 is all padding
    loss = label_smoothed_cross_entropy(logits, target, 0.1, PAD)
    assert torch.isfinite(loss)
    assert torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=0.1,
                                                ignore_index=PAD))
    all_pad = torch.full((2, 4), PAD)
    assert F.cross_entropy(logits.flatten(0, 1), all_pad.flatten(), ignore_index=PAD).isnan(), "PyTorch: NaN"
    loss = label_smoothed_cross_entropy(logits, all_pad, 0.1, PAD)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all() and (logits.grad == 0).all()
    # extreme logits stay finite too
    huge = torch.full((1, 2, V), -1e4)
    huge[0, :, 5] = 1e4
    assert torch.isfinite(label_smoothed_cross_entropy(huge, torch.tensor([[5, 7]]), 0.1, PAD))


def test_smoothing_lower_bound_and_errors():
    # with smoothing, even a perfect one-hot prediction pays; the best prediction is q itself
    eps, target = 0.1, torch.tensor([[4]])
    q = torch.full((1, 1, V), eps / V)
    q[0, 0, 4] += 1 - eps
    entropy = -(q * q.log()).sum()
    assert torch.allclose(label_smoothed_cross_entropy(q.log(), target, eps, PAD), entropy)
    assert label_smoothed_cross_entropy(torch.randn(1, 1, V), target, eps, PAD) > entropy
    with pytest.raises(ValueError, match="must be target"):
        label_smoothed_cross_entropy(torch.randn(2, 3, V), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothed_cross_entropy(torch.randn(2, V), torch.zeros(2, dtype=torch.long), epsilon=1.5)
    with pytest.raises(ValueError, match="reduction"):
        label_smoothed_cross_entropy(torch.randn(2, V), torch.zeros(2, dtype=torch.long), reduction="none")


# -- schedule -----------------------------------------------------------------------------------------
def paper_lr(step, d_model, warmup):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def test_schedule_values_at_known_steps():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)   # any optimiser with lr=1
    sched = warmup_schedule(opt, d_model=512, warmup=4000)
    lrs = {}
    for step in range(1, 16001):
        lrs[step] = opt.param_groups[0]["lr"]                   # the lr the step-th optimizer.step() uses
        opt.step()
        sched.step()
    assert lrs[1] == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert lrs[4000] == pytest.approx(6.9877e-4, rel=1e-4), "the peak: (512 · 4000)^-0.5"
    assert lrs[4000] == max(lrs.values())
    assert lrs[2000] == pytest.approx(lrs[4000] / 2), "linear warm-up"
    assert lrs[16000] == pytest.approx(lrs[4000] / 2), "then 1/sqrt(step)"
    for s in (1, 10, 399, 4000, 4001, 12345):
        assert lrs[s] == pytest.approx(paper_lr(s, 512, 4000), rel=1e-12)
    f = WarmupInverseSqrt(256, 400, scale=2.0)
    assert f(399) == pytest.approx(2 * (256 * 400) ** -0.5)


def test_schedule_state_round_trip_and_errors():
    opt = make_optimizer(torch.nn.Linear(2, 2))
    sched = warmup_schedule(opt, 128, 100, scale=0.5)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"d_model": 128, "warmup": 100, "scale": 0.5, "total": 0, "cooldown": 0}, \
        "the numbers are stored"
    opt2 = make_optimizer(torch.nn.Linear(2, 2))
    sched2 = warmup_schedule(opt2, 1, 1)                          # wrong numbers, overwritten by the state
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="create it with lr=1.0"):
        warmup_schedule(torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3), 128, 100)
    with pytest.raises(ValueError, match="warmup must be a positive int"):
        warmup_schedule(opt, 128, 0)
    with pytest.raises(ValueError, match="must fit after the warm-up"):
        warmup_schedule(opt, 128, 100, cooldown=50)                    # no total given
    with pytest.raises(ValueError, match="cooldown must be an integer >= 0"):
        warmup_schedule(opt, 128, 100, total=500, cooldown=-1)


def test_cooldown_follows_the_paper_then_falls_linearly_to_zero():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_schedule(opt, d_model=64, warmup=10, total=100, cooldown=40)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])                      # the lr of optimiser steps 1 … 100
        opt.step()
        sched.step()
    for s in range(1, 61):
        assert lrs[s - 1] == pytest.approx(paper_lr(s, 64, 10), rel=1e-12), "the paper's, up to the cool-down"
    for s in range(61, 101):                                       # then paper × (100 - (s - 1)) / 40
        assert lrs[s - 1] == pytest.approx(paper_lr(s, 64, 10) * (101 - s) / 40, rel=1e-12)
    assert lrs[-1] == pytest.approx(paper_lr(100, 64, 10) / 40) and lrs[-1] < lrs[60] / 20
    old = {"d_model": 64, "warmup": 10, "scale": 1.0}                 # a checkpoint from before the cool-down
    again = warmup_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 64, 10)
    again.load_state_dict({**sched.state_dict(), "lr_lambdas": [old]})
    assert again.lr_lambdas[0](500) == pytest.approx(paper_lr(501, 64, 10)), "loads as the paper's schedule"


# -- the loop ---------------------------------------------------------------------------------------
def copy_corpus(n, seed=0):
    """Reverse a random sequence: a task a tiny model learns in a few hundred steps."""
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        body = [rng.randint(4, V - 1) for _ in range(rng.randint(2, 8))]
        src.append([BOS, *body, EOS])
        tgt.append([BOS, *body[::-1], EOS])
    return src, tgt


def tiny_setup(dropout=0.1, seed=0):
    torch.manual_seed(seed)
    model = make_model(V, V, n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=dropout, norm_first=True)
    opt = make_optimizer(model)
    sched = warmup_schedule(opt, 32, warmup=20, scale=2.0)
    return model, opt, sched


@pytest.fixture(scope="module")
def data():
    src, tgt = copy_corpus(400)
    vsrc, vtgt = copy_corpus(100, seed=1)
    return TokenBatches(src, tgt, max_tokens=120, seed=0), TokenBatches(vsrc, vtgt, 200, shuffle=False)


def test_train_learns_logs_and_validates(data):
    train_data, valid_data = data
    model, opt, sched = tiny_setup()
    before = evaluate(model, valid_data)
    state = train(model, train_data, opt, sched, valid=valid_data, max_epochs=3, device="cpu", progress=False)
    assert state.epoch == 3 and state.batch_in_epoch == 0 and state.step == 3 * len(train_data)
    assert [h["step"] for h in state.history] == list(range(1, state.step + 1))
    assert [v["epoch"] for v in state.valid] == [1, 2, 3], "validated at the end of each epoch"
    for h in state.history[:30]:
        assert h["lr"] == pytest.approx(2.0 * paper_lr(h["step"], 32, 20))
    assert state.valid[-1]["loss"] < before["loss"] - 0.5, (before, state.valid[-1])
    assert state.valid[-1]["ppl"] == pytest.approx(math.exp(state.valid[-1]["loss"]))
    assert state.tokens == sum(h["tokens"] for h in state.history) > 0
    assert model.training, "train() leaves the model in training mode"


def test_evaluate_equals_cross_entropy_by_hand(data):
    _, valid_data = data
    model, _, _ = tiny_setup(dropout=0.3)
    result = evaluate(model, valid_data)
    losses, correct, tokens = [], 0, 0
    model.eval()
    with torch.no_grad():
        for b in valid_data:
            logits = model(b.src, b.tgt_in)
            losses.append(F.cross_entropy(logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD,
                                          reduction="sum"))
            correct += int(((logits.argmax(-1) == b.tgt_out) & (b.tgt_out != PAD)).sum())
            tokens += b.n_tokens
    assert result["tokens"] == tokens
    assert result["loss"] == pytest.approx(float(sum(losses)) / tokens, rel=1e-5)
    assert result["acc"] == pytest.approx(correct / tokens)


def test_stopping_rules_and_errors(data):
    train_data, valid_data = data
    model, opt, sched = tiny_setup()
    state = train(model, train_data, opt, sched, valid=valid_data, max_steps=5, eval_every=2, device="cpu",
                  progress=False)
    assert state.step == 5 and state.batch_in_epoch == 5 and state.epoch == 0
    assert [v["step"] for v in state.valid] == [2, 4, 5], "every 2 steps, and once at the end"
    state = train(model, train_data, opt, sched, state=state, max_steps=5, device="cpu", progress=False)
    assert state.step == 5, "max_steps counts the resumed state's steps"
    state = train(model, train_data, opt, sched, max_minutes=0, device="cpu", progress=False)
    assert state.step == 0, "no time, no step"
    with pytest.raises(ValueError, match="training never stops"):
        train(model, train_data, opt, sched)
    with pytest.raises(ValueError, match="bf16 autocast is meant for GPUs"):
        train(model, train_data, opt, sched, max_steps=1, bf16=True, device="cpu")


def test_gradient_clipping_bounds_the_update(data):
    train_data, _ = data
    model, _, _ = tiny_setup(dropout=0.0)
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    train(model, train_data, opt, None, max_steps=1, clip_norm=1e-3, smoothing=0.0, device="cpu", progress=False)
    moved = torch.sqrt(sum(((p - s) ** 2).sum() for p, s in zip(model.parameters(), start)))
    assert moved <= 1e-3 * (1 + 1e-4), "one SGD step of lr 1 moves the weights by at most the clip norm"


# -- checkpoints and resuming ---------------------------------------------------------------------
def test_rng_state_round_trip():
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_checkpoint_round_trip_loads_with_weights_only(data, tmp_path):
    train_data, _ = data
    model, opt, sched = tiny_setup()
    tok = CharTokenizer.fit(["abc"])
    state = train(model, train_data, opt, sched, max_steps=4, device="cpu", progress=False)
    path = save_training_checkpoint(tmp_path / "run.pt", model, opt, sched, state, tok)
    raw = torch.load(path, weights_only=True)                      # plain data only
    assert set(raw) >= {"model", "config", "optimizer", "scheduler", "train_state", "rng", "tokenizer"}
    assert raw["config"] == model.config and raw["train_state"]["step"] == 4
    assert tokenizer_from_dict(raw["tokenizer"]).id_to_token == tok.id_to_token
    fresh, opt2, sched2 = tiny_setup(seed=123)
    restored = resume(path, fresh, opt2, sched2)
    assert restored == state
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] and sched2.last_epoch == sched.last_epoch == 4


def test_mismatched_config_is_refused(data, tmp_path):
    train_data, _ = data
    model, opt, sched = tiny_setup()
    state = train(model, train_data, opt, sched, max_steps=1, device="cpu", progress=False)
    path = save_training_checkpoint(tmp_path / "run.pt", model, opt, sched, state)
    other = make_model(V, V, n_layers=2, d_model=32, n_heads=2, d_ff=64, dropout=0.1, norm_first=True)
    with pytest.raises(ConfigMismatchError, match="n_layers: .* has 1, expected 2"):
        resume(path, other, make_optimizer(other))


def test_interrupted_checkpoint_during_training_keeps_the_old_one(data, tmp_path, monkeypatch):
    train_data, _ = data
    model, opt, sched = tiny_setup()
    path = tmp_path / "run.pt"
    train(model, train_data, opt, sched, max_steps=3, checkpoint_path=path, checkpoint_every=3, device="cpu",
          progress=False)
    good = path.read_bytes()
    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)                          # half a file, then the power goes
        f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        train(model, train_data, opt, sched, state=TrainState(step=3), max_steps=6, checkpoint_path=path,
              checkpoint_every=3, device="cpu", progress=False)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    assert load_checkpoint(path)["train_state"]["step"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("steps", [12, 2 * 24])   # the split falls mid-epoch; and on an epoch boundary
def test_resume_reproduces_the_uninterrupted_run(data, tmp_path, steps):
    train_data, valid_data = data
    assert len(train_data) == 24, "the second case needs 24 batches an epoch"
    torch.manual_seed(99)
    model, opt, sched = tiny_setup()
    straight = train(model, train_data, opt, sched, valid=valid_data, max_steps=steps, device="cpu", progress=False)

    first, opt1, sched1 = tiny_setup()
    train(first, train_data, opt1, sched1, max_steps=steps // 2, checkpoint_path=tmp_path / "half.pt",
          device="cpu", progress=False)
    torch.rand(5)                                                  # anything may happen in between
    second, opt2, sched2 = tiny_setup(seed=7)                      # a fresh model, different init
    state = resume(tmp_path / "half.pt", second, opt2, sched2)
    resumed = train(second, train_data, opt2, sched2, valid=valid_data, state=state, max_steps=steps,
                    device="cpu", progress=False)
    for (name, a), b in zip(model.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert resumed.valid[-1]["loss"] == straight.valid[-1]["loss"]

    # The test can fail: without restoring the random state (dropout), the runs part ways.
    third, opt3, sched3 = tiny_setup()
    state = resume(tmp_path / "half.pt", third, opt3, sched3, restore_rng=False)
    train(third, train_data, opt3, sched3, state=state, max_steps=steps, device="cpu", progress=False)
    assert not torch.equal(third.generator.weight, model.generator.weight)

