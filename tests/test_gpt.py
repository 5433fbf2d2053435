import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.attention import MultiHeadAttention, causal_mask
from utils.bonus.gpt import (GPT, RandomWindows, evaluate_loss, generate, gpt_optimizer, make_gpt, next_token_loss,
                             random_windows, sample_next)
from utils.kv_cache import KVCache, cached_self_attention
from utils.model import EncoderLayer
from utils.schedules import WarmupCosine, warmup_cosine_lr
from utils.train import resume, train

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


CONFIGS = [  # (vocab, context, n_layers, d_model, n_heads, positions)
    (11, 16, 1, 8, 1, "sinusoidal"),
    (30, 32, 2, 32, 4, "sinusoidal"),
    (50, 24, 3, 24, 6, "learned"),
]
CONFIG_IDS = "v{}-ctx{}-L{}-d{}-h{}-{}".format


def model_for(cfg, seed=0) -> GPT:
    torch.manual_seed(seed)
    vocab, context, n_layers, d_model, n_heads, positions = cfg
    return make_gpt(vocab, context=context, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                    positions=positions).eval()


# -- structure: the same pieces as the encoder–decoder ------------------------------------------------
def test_reuses_utils_attention_and_layers():
    model = make_gpt(20, context=8, n_layers=3, d_model=16, n_heads=2)
    attns = [m for m in model.modules() if isinstance(m, (MultiHeadAttention, nn.MultiheadAttention))]
    assert len(attns) == 3 and all(type(m) is MultiHeadAttention for m in attns)
    assert all(type(b) is EncoderLayer for b in model.blocks)
    assert all(sub.norm_first for b in model.blocks for sub in b.sublayers), "pre-LN blocks"
    assert not any("cross" in name for name, _ in model.named_modules()), "no cross-attention"


def test_equals_torch_encoder_with_causal_mask():
    """A decoder-only stack is nn.TransformerEncoder (pre-LN) run with a causal mask."""
    torch.manual_seed(0)
    model = make_gpt(25, context=12, n_layers=2, d_model=16, n_heads=4, d_ff=40).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))                                  # LayerNorms away from (1, 0)
    layer = nn.TransformerEncoderLayer(16, 4, 40, dropout=0.0, batch_first=True, norm_first=True)
    ref = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False).eval()
    state = {}
    for i, block in enumerate(model.blocks):
        for k, v in block.self_attn.state_dict().items():
            state[f"layers.{i}.self_attn.{k}"] = v
        for k, v in block.ffn.state_dict().items():
            state[f"layers.{i}.{k}"] = v
        for j, sub in enumerate(block.sublayers, start=1):
            state[f"layers.{i}.norm{j}.weight"], state[f"layers.{i}.norm{j}.bias"] = sub.norm.weight, sub.norm.bias
    state["norm.weight"], state["norm.bias"] = model.norm.weight, model.norm.bias
    ref.load_state_dict(state)
    ids = torch.randint(0, 25, (3, 12))
    with torch.no_grad():
        expected = model.head(ref(model.embed(ids), mask=~causal_mask(12), is_causal=True))
        assert (model(ids) - expected).abs().max() < 1e-5


def test_causal():
    model = model_for(CONFIGS[1])
    ids = torch.randint(0, 30, (2, 20))
    changed = ids.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 30
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :12], b[:, :12]), "positions before 12 must not see token 12"
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-4


# -- the KV cache -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: CONFIG_IDS(*c))
def test_cached_forward_equals_full_forward(cfg):
    model = model_for(cfg)
    vocab, context = cfg[0], cfg[1]
    ids = torch.randint(0, vocab, (3, context))
    cache = KVCache()
    with torch.no_grad():
        full = model(ids)
        pieces = [model(ids[:, :5], cache)]                                    # prompt ("prefill") of 5
        pieces += [model(ids[:, 5:9], cache)]                                  # a chunk of 4
        pieces += [model(ids[:, t: t + 1], cache) for t in range(9, context)]  # then one at a time
    assert cache.length == context and len(cache.keys) == cfg[2]
    assert (torch.cat(pieces, 1) - full).abs().max() < 1e-5


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: CONFIG_IDS(*c))
@pytest.mark.parametrize("temperature, top_k", [(0.0, None), (1.0, None), (0.8, 5)])
def test_cached_generation_equals_uncached(cfg, temperature, top_k):
    model = model_for(cfg)
    vocab, context = cfg[0], cfg[1]
    prompt = torch.randint(0, vocab, (4, 3))
    runs = []
    for use_cache in (True, False):
        gen = torch.Generator().manual_seed(7)
        runs.append(generate(model, prompt, context - 3, temperature=temperature, top_k=top_k,
                             generator=gen, use_cache=use_cache))
    assert runs[0].shape == (4, context)
    assert torch.equal(runs[0][:, :3], prompt)
    assert torch.equal(runs[0], runs[1])
    if temperature > 0:
        assert not torch.equal(runs[0], generate(model, prompt, context - 3, temperature=0.0)), "sampling samples"


def test_cached_self_attention_on_empty_cache_equals_the_module():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4).eval()
    with torch.no_grad():
        attn.in_proj_bias.normal_()
        x = torch.randn(2, 7, 16)
        ours = cached_self_attention(attn, x, KVCache(), 0)
        explicit, _ = attn(x, x, x, causal_mask(7), need_weights=True)
    assert (ours - explicit).abs().max() < 1e-5


def test_cache_memory_and_errors():
    model = model_for(CONFIGS[1])                                              # 2 layers, d_model 32
    cache = KVCache()
    with torch.no_grad():
        model(torch.randint(0, 30, (3, 10)), cache)
        assert cache.nbytes == 2 * 2 * 3 * 10 * 32 * 4
        assert tuple(cache.keys[0].shape) == (3, 4, 10, 8)
        with pytest.raises(ValueError, match="cache holds a batch of 3"):
            model(torch.randint(0, 30, (2, 1)), cache)
        with pytest.raises(ValueError, match="cannot be cached before layer"):
            cached_self_attention(model.blocks[0].self_attn, torch.randn(3, 1, 32), KVCache(), 1)


def test_context_overflow_errors():
    model = model_for(CONFIGS[1])                                              # context 32
    with pytest.raises(ValueError, match=r"33 positions exceed the model's context of 32.*ids\[:, -32:\]"):
        model(torch.zeros(1, 33, dtype=torch.long))
    cache = KVCache()
    with torch.no_grad():
        model(torch.zeros(1, 30, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="30 cached \\+ 3 new positions exceed"):
        model(torch.zeros(1, 3, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="exceeds the model's context of 32.*at most 22 new tokens.*use_cache=False"):
        generate(model, torch.zeros(1, 10, dtype=torch.long), 23)
    long = generate(model, torch.zeros(1, 10, dtype=torch.long), 40, temperature=0, use_cache=False)
    assert long.shape == (1, 50), "without a cache the window slides"
    with pytest.raises(ValueError, match="\\(batch, seq\\)"):
        model(torch.zeros(5, dtype=torch.long))


def test_generate_details():
    model = model_for(CONFIGS[0]).train()
    prompt = torch.randint(0, 11, (2, 4))
    assert torch.equal(generate(model, prompt, 0), prompt)
    generate(model, prompt, 3)
    assert model.training, "generate restores the training mode"
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, prompt, -1)
    with pytest.raises(ValueError, match="prompt_len >= 1"):
        generate(model, prompt[:, :0], 3)


# -- sampling -----------------------------------------------------------------------------------------
def test_top_k_1_and_temperature_0_are_greedy():
    torch.manual_seed(0)
    logits = torch.randn(500, 40) * 3
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, 1.0, top_k=1, generator=gen), logits.argmax(-1))
    assert torch.equal(sample_next(logits, 5.0, top_k=1, generator=gen), logits.argmax(-1))
    state = gen.get_state()
    assert torch.equal(sample_next(logits, 0.0, generator=gen), logits.argmax(-1))
    assert torch.equal(gen.get_state(), state), "temperature 0 draws no random number"


def test_temperature_towards_zero_approaches_greedy():
    torch.manual_seed(1)
    logits = torch.randn(2000, 30)
    gen = torch.Generator().manual_seed(0)
    agree = [(sample_next(logits, t, generator=gen) == logits.argmax(-1)).float().mean().item()
             for t in (2.0, 1.0, 0.5, 0.1, 1e-5)]
    assert all(a < b for a, b in zip(agree, agree[1:])), f"agreement with argmax must grow as T falls: {agree}"
    gaps = logits.topk(2).values.diff(dim=-1).abs().min()
    assert gaps / 1e-5 > 20 and agree[-1] == 1.0, "far below the smallest gap between the two best: always the best"


def test_top_k_keeps_only_the_k_best_and_matches_softmax():
    torch.manual_seed(2)
    logits = torch.randn(1, 10).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    draws = sample_next(logits, 1.0, top_k=3, generator=gen)
    best3 = set(logits[0].topk(3).indices.tolist())
    assert set(draws.tolist()) == best3
    freq = torch.bincount(draws, minlength=10).float() / len(draws)
    expected = torch.zeros(10)
    idx = list(best3)
    expected[idx] = logits[0, idx].softmax(-1)
    assert (freq - expected).abs().max() < 0.02
    draws = sample_next(logits, 1.0, top_k=100, generator=gen)              # k above the vocabulary: all kept
    freq = torch.bincount(draws, minlength=10).float() / len(draws)
    assert (freq - logits[0].softmax(-1)).abs().max() < 0.02


def test_sample_next_errors():
    with pytest.raises(ValueError, match="temperature"):
        sample_next(torch.zeros(1, 5), -0.5)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(torch.zeros(1, 5), float("nan"))
    with pytest.raises(ValueError, match="top_k"):
        sample_next(torch.zeros(1, 5), top_k=0)
    with pytest.raises(ValueError, match="logits\\[:, -1\\]"):
        sample_next(torch.zeros(1, 4, 5))


# -- data, evaluation, training -------------------------------------------------------------------------
def test_random_windows():
    data = torch.arange(100)
    x, y = random_windows(data, 8, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 10)
    assert torch.equal(y, x + 1) and int(y.max()) <= 99
    with pytest.raises(ValueError, match="needs 11"):
        random_windows(torch.arange(10), 2, 10)
    with pytest.raises(ValueError, match="1-D"):
        random_windows(torch.zeros(2, 50, dtype=torch.long), 2, 10)


@pytest.mark.parametrize("n", [41, 45, 2])
def test_evaluate_loss_predicts_every_token_once(n):
    model = model_for(CONFIGS[0])                                              # context 16
    data = torch.randint(0, 11, (n,))
    got = evaluate_loss(model, data, batch_size=2)
    with torch.no_grad():                                                      # token i from tokens (i//16)*16 .. i-1
        nll = []
        for i in range(1, n):
            start = (i - 1) // 16 * 16
            logits = model(data[None, start:i])[0, -1]
            nll.append(F.cross_entropy(logits[None], data[i: i + 1]).item())
    assert math.isclose(got, sum(nll) / len(nll), rel_tol=1e-5)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        evaluate_loss(model, data, context=17)


def test_lr_schedule():
    assert warmup_cosine_lr(0, 0.0, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine_lr(9, 0.0, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_lr(500, 0.5, 1.0, 10, 0.1) == pytest.approx(0.55)
    assert warmup_cosine_lr(999, 1.0, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_random_windows_are_the_stream_of_random_windows_epoch_after_epoch():
    data = torch.arange(500)
    source = RandomWindows(data, 4, 16, seed=3, steps_per_epoch=5)
    gen = torch.Generator().manual_seed(3)
    drawn = [starts for epoch in range(3) for starts in source.batches(epoch)]
    for starts in drawn:
        x, y = random_windows(data, 4, 16, gen)
        batch = source.collate(starts)
        assert torch.equal(batch.x, x) and torch.equal(batch.y, y) and batch.n_tokens == 64
    fresh = RandomWindows(data, 4, 16, seed=3, steps_per_epoch=5)              # a resumed run starts at epoch 2
    assert all(torch.equal(a, b) for a, b in zip(fresh.batches(2), drawn[10:]))
    assert len(RandomWindows(data, 4, 16)) == 499 // 64, "an epoch is about one pass over the text"
    with pytest.raises(ValueError, match="at least context \\+ 1"):
        RandomWindows(torch.arange(10), 2, 10)
    with pytest.raises(TypeError, match="integer token ids"):
        RandomWindows(data.float(), 2, 10)


def test_warmup_cosine_sets_the_schedule_value_and_resumes():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = WarmupCosine(opt, 3e-3, 4, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [warmup_cosine_lr(s, s / 20, 3e-3, 4, 3e-3 / 10) for s in range(20)], "the value, bit for bit"
    again = WarmupCosine(torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1.0), 3e-3, 4, total_steps=20)
    again.load_state_dict(sched.state_dict())
    assert again.last_epoch == 20 and again.get_lr() == sched.get_lr()
    longer = WarmupCosine(torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1.0), 3e-3, 4, total_steps=40)
    longer.load_state_dict(sched.state_dict())
    assert longer.total_steps == 40 and longer.progress() == 0.5, "a resumed run may be longer"
    with pytest.raises(ValueError, match="another schedule"):
        WarmupCosine(torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1.0), 1e-3, 4,
                     total_steps=20).load_state_dict(sched.state_dict())
    timed = WarmupCosine(torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1.0), 1.0, 0, total_seconds=1e-9)
    assert timed.progress() >= 1.0 and timed.get_lr() == [pytest.approx(0.1)], "past the time budget: min_lr"
    with pytest.raises(ValueError, match="total_steps, total_seconds"):
        WarmupCosine(opt, 1e-3, 10)
    with pytest.raises(ValueError, match="min_lr"):
        WarmupCosine(opt, 1e-3, 10, 1e-2, total_steps=5)
    with pytest.raises(ValueError, match="warmup"):
        WarmupCosine(opt, 1e-3, -1, total_steps=5)


def gpt_training(model, text, steps, lr=1e-2, stop=None, state=None, **kwargs):
    """The GPT through utils.train.train: AdamW, warm-up + cosine over ``steps``, random windows, clipping
    at 1; stops after ``stop`` steps (default: all); ``state="resume"`` continues ``checkpoint_path``."""
    opt = gpt_optimizer(model, lr)
    sched = WarmupCosine(opt, lr, 5, total_steps=steps)
    if state == "resume":
        state = resume(kwargs["checkpoint_path"], model, opt, sched)
    return train(model, RandomWindows(text, 8, 16, seed=3), opt, sched, loss_fn=next_token_loss,
                 max_steps=stop or steps, clip_norm=1.0, device="cpu", progress=False, state=state, **kwargs)


TEXT = torch.tensor([ord(c) - 97 for c in "abcdefghij" * 60])                  # a predictable sequence


def test_short_training_lowers_the_loss_and_repeats():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = make_gpt(10, context=16, n_layers=1, d_model=16, n_heads=2)
        before = evaluate_loss(model, TEXT)
        runs.append([h["loss"] for h in gpt_training(model, TEXT, 60).history])
        after = evaluate_loss(model, TEXT)
    assert runs[0] == runs[1], "same seed, same losses"
    assert before > 2.0 and after < 0.5 * before, f"validation loss {before:.3f} → {after:.3f}"
    assert sum(runs[0][-5:]) / 5 < 0.5 * sum(runs[0][:5]) / 5


def test_the_training_loop_is_the_hand_written_one_bit_for_bit():
    torch.manual_seed(0)
    model = make_gpt(10, context=16, n_layers=1, d_model=16, n_heads=2)
    torch.manual_seed(0)
    ours = make_gpt(10, context=16, n_layers=1, d_model=16, n_heads=2)
    opt, gen, by_hand = gpt_optimizer(model, 1e-2), torch.Generator().manual_seed(3), []
    model.train()
    for step in range(8):                                           # notebook 08's loop, written out
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(step, step / 8, 1e-2, 5, 1e-3)
        x, y = random_windows(TEXT, 8, 16, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        by_hand.append(loss.item())
    assert [h["loss"] for h in gpt_training(ours, TEXT, 8).history] == by_hand
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ours.state_dict().values()))


def test_interrupted_and_resumed_equals_the_uninterrupted_run(tmp_path):
    def fresh():
        torch.manual_seed(0)
        return make_gpt(10, context=16, n_layers=1, d_model=16, n_heads=2, dropout=0.1)   # dropout: RNG state too

    straight = gpt_training(fresh(), TEXT, 12, checkpoint_path=tmp_path / "straight.pt")
    gpt_training(fresh(), TEXT, 12, stop=6, checkpoint_path=tmp_path / "half.pt")
    ck = torch.load(tmp_path / "half.pt", weights_only=True)
    assert ck["train_state"]["step"] == 6 and "scheduler" in ck, "the one checkpoint format of utils.train"
    torch.manual_seed(123)                                          # the resumed run restores the RNG itself
    model = make_gpt(10, context=16, n_layers=1, d_model=16, n_heads=2, dropout=0.1)
    resumed = gpt_training(model, TEXT, 12, checkpoint_path=tmp_path / "half.pt", state="resume")
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    final = torch.load(tmp_path / "straight.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())


def test_make_gpt_errors():
    with pytest.raises(ValueError, match="n_heads=3 does not divide d_model=16"):
        make_gpt(10, d_model=16, n_heads=3)
    with pytest.raises(ValueError, match="context must be a positive int"):
        make_gpt(10, context=0)
    with pytest.raises(ValueError, match="positions must be 'sinusoidal' or 'learned'"):
        make_gpt(10, positions="rotary")
    learned = make_gpt(10, context=8, d_model=16, n_heads=2, positions="learned")
    assert learned.pos_embed.embedding.weight.shape == (8, 16)
    assert "pos_embed.pe" not in make_gpt(10, context=8, d_model=16, n_heads=2).state_dict(), "sinusoids are not stored"
    assert make_gpt(10, d_model=16, n_heads=2).config["d_ff"] == 64


@pytest.mark.slow
def test_training_script_runs_and_writes_its_report(tmp_path):
    path = Path(__file__).resolve().parents[1] / "scripts" / "train_gpt.py"
    spec = importlib.util.spec_from_file_location("train_gpt_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = script.main(["gpt_shakespeare", "--minutes", "0.02", "--d-model", "16", "--layers", "1", "--heads", "2",
                          "--context", "32", "--warmup", "5", "--out", str(tmp_path), "--no-progress", "--threads", "1",
                          "--checkpoint", str(tmp_path / "gpt.pt")])              # not the repository's checkpoints/
    saved = json.loads((tmp_path / "train.json").read_text())
    assert saved == report
    for key in ("val_loss", "train_seconds", "parameters", "steps"):
        assert key in saved["metrics"], f"the report lacks {key}"
    assert "device" in saved["environment"] and "torch" in saved["environment"]
    metrics = saved["metrics"]
    assert metrics["steps"] >= 1 and 1.0 < metrics["val_loss"] < 5.0 and saved["details"]["model"]["d_model"] == 16
    assert (tmp_path / "gpt.pt").is_file(), "the run is checkpointed"
    with pytest.raises(SystemExit):
        script.parse_args(["gpt_shakespeare", "--minutes", "0"])
