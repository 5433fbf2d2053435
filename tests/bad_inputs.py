"""Bad inputs a careless learner (or a damaged file) gives the public functions of ``utils``, and what
each should get: a clear error (the right exception, a message naming the argument) or the right
answer. ``tests/test_bad_inputs.py`` runs every case; run this file to count the outcomes::

    python tests/bad_inputs.py          # counts: handled / clear error / obscure error / silent
    python tests/bad_inputs.py -v       # and one line per case

Each case is ``(name, thunk, expected)``: ``expected`` is ``(ExceptionTypes, regex)`` for a case
that must raise, or ``None`` for a case whose thunk returns True when the answer is right.
Outcomes: ``handled`` (right answer), ``clear`` (expected error, message matches), ``obscure``
(another exception, or a message that does not name the problem), ``silent`` (a wrong answer or
no error).
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import attention, batching, bleu, checkpoint, decode, embeddings, exercises, layers, tokenize  # noqa: E402
from utils import schedules, torch_compat  # noqa: E402
from utils.bonus import gpt as gpt_mod  # noqa: E402
from utils.exercises import nb02  # noqa: E402
from utils import model as model_mod  # noqa: E402
from utils import train as train_mod  # noqa: E402

CASES: list[tuple[str, object, tuple | None]] = []
V = ValueError
T = TypeError
VT = (ValueError, TypeError)


def case(name: str, expected: tuple | None):
    def register(fn):
        CASES.append((name, fn, expected))
        return fn
    return register


def raises(name: str, exc, pattern: str, thunk) -> None:
    CASES.append((name, thunk, (exc, pattern)))


def tiny_model(**kw):
    torch.manual_seed(0)
    return model_mod.make_model(12, 12, n_layers=1, d_model=8, n_heads=2, d_ff=16, max_len=32, **kw)


def tiny_data():
    src = [[1, 4 + i % 5, 5, 2] for i in range(12)]
    tgt = [[1, 6, 4 + i % 7, 2] for i in range(12)]
    return batching.TokenBatches(src, tgt, max_tokens=16, seed=0)


def tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="bad_inputs_"))


SRC = torch.tensor([[1, 5, 6, 2]])
Q = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))  # no draw from the global stream

# -- attention -----------------------------------------------------------------------------------
raises("MultiHeadAttention(8.0, 2)", VT, "d_model", lambda: attention.MultiHeadAttention(8.0, 2))
raises("MultiHeadAttention(8, 2.0)", VT, "n_heads", lambda: attention.MultiHeadAttention(8, 2.0))
raises("MultiHeadAttention(dropout=None)", VT, "dropout", lambda: attention.MultiHeadAttention(8, 2, dropout=None))
raises("MultiHeadAttention(dropout='0.1')", VT, "dropout", lambda: attention.MultiHeadAttention(8, 2, dropout="0.1"))
raises("MultiHeadAttention(dropout=1.0)", V, "dropout", lambda: attention.MultiHeadAttention(8, 2, dropout=1.0))
raises("MultiHeadAttention(8, 3)", V, "does not divide", lambda: attention.MultiHeadAttention(8, 3))
raises("MultiHeadAttention(0, 1)", V, "positive", lambda: attention.MultiHeadAttention(0, 1))
raises("sdpa(dropout_p=-0.1)", V, "dropout_p", lambda: attention.scaled_dot_product_attention(Q, Q, Q, dropout_p=-0.1))
raises("sdpa(dropout_p=1.5)", V, "dropout", lambda: attention.scaled_dot_product_attention(Q, Q, Q, dropout_p=1.5))
raises("sdpa(dropout_p=None)", VT, "dropout_p", lambda: attention.scaled_dot_product_attention(Q, Q, Q, dropout_p=None))
raises("sdpa(q as a list)", T, "q must be a torch.Tensor", lambda: attention.scaled_dot_product_attention(Q.tolist(), Q, Q))
raises("sdpa(integer q, k, v)", T, "floating-point", lambda: attention.scaled_dot_product_attention(
    Q.long(), Q.long(), Q.long()))
raises("sdpa(batch 2 vs 3)", V, "leading", lambda: attention.scaled_dot_product_attention(
    Q, torch.randn(3, 3, 4), torch.randn(3, 3, 4)))
raises("sdpa(float64 k)", T, "dtype", lambda: attention.scaled_dot_product_attention(Q, Q.double(), Q))
raises("sdpa(int mask)", T, "boolean", lambda: attention.scaled_dot_product_attention(
    Q, Q, Q, mask=torch.ones(3, 3, dtype=torch.long)))
raises("sdpa(mask of wrong shape)", V, "cannot broadcast", lambda: attention.scaled_dot_product_attention(
    Q, Q, Q, mask=torch.ones(5, 5, dtype=torch.bool)))
raises("mask_from_torch(int key_padding_mask)", T, "integer dtype", lambda: torch_compat.mask_from_torch(
    key_padding_mask=torch.zeros(2, 3, dtype=torch.long)))
raises("mask_from_torch(uint8 key_padding_mask)", T, "integer dtype", lambda: torch_compat.mask_from_torch(
    key_padding_mask=torch.zeros(2, 3, dtype=torch.uint8)))
raises("mask_from_torch(3-D mask, wrong n_heads)", V, "n_heads", lambda: torch_compat.mask_from_torch(
    torch.zeros(6, 3, 3, dtype=torch.bool), n_heads=4))
raises("mask_from_torch(3-D mask, n_heads=0)", V, "n_heads", lambda: torch_compat.mask_from_torch(
    torch.zeros(6, 3, 3, dtype=torch.bool), n_heads=0))
raises("mask_from_torch(1-D attn_mask)", V, "attn_mask", lambda: torch_compat.mask_from_torch(
    torch.zeros(3, dtype=torch.bool)))
raises("mask_from_torch(1-D key_padding_mask)", V, "key_padding_mask", lambda: torch_compat.mask_from_torch(
    key_padding_mask=torch.zeros(3, dtype=torch.bool)))
raises("mask_from_torch(float bias mask)", V, "0 \\(attend\\) and -inf", lambda: torch_compat.mask_from_torch(
    torch.full((3, 3), 0.5)))
raises("causal_mask(0)", V, "size", lambda: attention.causal_mask(0))
raises("causal_mask(3.0)", V, "size", lambda: attention.causal_mask(3.0))
raises("padding_mask(1-D ids)", V, "batch, seq", lambda: attention.padding_mask(torch.tensor([1, 2]), 0))
raises("MHA forward(wrong d_model)", V, "d_model", lambda: attention.MultiHeadAttention(8, 2)(
    torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)))
raises("MHA forward(3-D mask, 3 heads for 2)", V, "cannot broadcast", lambda: (lambda x: attention.MultiHeadAttention(8, 2)(
    x, x, x, mask=torch.ones(1, 3, 3, 3, dtype=torch.bool)))(torch.randn(1, 3, 8)))

# -- model -----------------------------------------------------------------------------------------
raises("make_model(pad_id=None)", V, "pad_id", lambda: tiny_model(pad_id=None))
raises("make_model(pad_id=12)", V, "pad_id", lambda: tiny_model(pad_id=12))
raises("make_model(pad_id=-1)", V, "pad_id", lambda: tiny_model(pad_id=-1))
raises("make_model(dropout=None)", V, "dropout", lambda: tiny_model(dropout=None))
raises("make_model(dropout=1.2)", V, "dropout", lambda: tiny_model(dropout=1.2))
raises("make_model(n_heads=3)", V, "does not divide", lambda: model_mod.make_model(12, 12, d_model=8, n_heads=3))
raises("make_model(d_model=6, n_heads=2): odd d_head fine, but d_model 7", V, "d_model",
       lambda: model_mod.make_model(12, 12, d_model=7, n_heads=7))
raises("make_model(norm_first='yes')", T, "norm_first", lambda: tiny_model(norm_first="yes"))
raises("make_model(src_vocab=12.0)", V, "src_vocab", lambda: model_mod.make_model(12.0, 12))
raises("make_model(share_embeddings, 12 vs 13)", V, "share_embeddings",
       lambda: model_mod.make_model(12, 13, share_embeddings=True))

# -- decoding --------------------------------------------------------------------------------------
raises("greedy_decode(eos_id=0)", V, "eos_id", lambda: decode.greedy_decode(tiny_model(), SRC, 5, eos_id=0))
raises("greedy_decode(eos_id=1 = bos)", V, "eos_id", lambda: decode.greedy_decode(tiny_model(), SRC, 5, eos_id=1))
raises("greedy_decode(eos_id=99)", V, "eos_id", lambda: decode.greedy_decode(tiny_model(), SRC, 5, eos_id=99))
raises("greedy_decode(bos_id=0 = pad)", V, "bos_id", lambda: decode.greedy_decode(tiny_model(), SRC, 5, bos_id=0))
raises("greedy_decode(src id 40 of 12)", V, "vocabulary", lambda: decode.greedy_decode(
    tiny_model(), torch.tensor([[1, 40, 2]]), 5))
raises("greedy_decode(negative src id)", V, "vocabulary", lambda: decode.greedy_decode(
    tiny_model(), torch.tensor([[1, -3, 2]]), 5))
raises("greedy_decode(float src)", T, "integer", lambda: decode.greedy_decode(tiny_model(), SRC.float(), 5))
raises("greedy_decode(src as a list)", T, "src_ids", lambda: decode.greedy_decode(tiny_model(), [[1, 5, 2]], 5))
raises("greedy_decode(src of length 0)", V, "src_ids", lambda: decode.greedy_decode(
    tiny_model(), torch.zeros(1, 0, dtype=torch.long), 5))
raises("greedy_decode(max_len=0)", V, "max_len", lambda: decode.greedy_decode(tiny_model(), SRC, 0))
raises("greedy_decode(max_len=99 > table)", V, "max_len", lambda: decode.greedy_decode(tiny_model(), SRC, 99))
raises("greedy_decode(model = nn.Linear)", T, "encode", lambda: decode.greedy_decode(nn.Linear(2, 2), SRC, 5))
raises("beam_search(eos_id=0)", V, "eos_id", lambda: decode.beam_search(tiny_model(), SRC, 2, 5, eos_id=0))
raises("beam_search(beam_size=0)", V, "beam_size", lambda: decode.beam_search(tiny_model(), SRC, 0, 5))
raises("beam_search(alpha=-1)", V, "length_penalty_alpha", lambda: decode.beam_search(
    tiny_model(), SRC, 2, 5, length_penalty_alpha=-1))
raises("length_penalty(-10, 0.6)", V, "length", lambda: decode.length_penalty(-10, 0.6))
raises("length_penalty(5, -1)", V, "alpha", lambda: decode.length_penalty(5, -1))
raises("length_penalty(5, nan)", V, "alpha", lambda: decode.length_penalty(5, math.nan))
raises("length_penalty(5, None)", V, "alpha", lambda: decode.length_penalty(5, None))

# -- training --------------------------------------------------------------------------------------


def _train(**kw):
    model = tiny_model()
    opt = train_mod.make_optimizer(model)
    args = dict(max_steps=2, device="cpu", progress=False)
    args.update(kw)
    return train_mod.train(model, args.pop("data", tiny_data()), opt, **args)


raises("train(eval_every=0)", V, "eval_every", lambda: _train(eval_every=0))
raises("train(checkpoint_every=0)", V, "checkpoint_every", lambda: _train(checkpoint_every=0,
                                                                          checkpoint_path=tmp() / "c.pt"))
raises("train(checkpoint_every=5, no path)", V, "checkpoint_path", lambda: _train(checkpoint_every=5))
raises("train(max_steps=0)", V, "max_steps", lambda: _train(max_steps=0))
raises("train(max_steps=2.5)", V, "max_steps", lambda: _train(max_steps=2.5))
raises("train(max_epochs=-1)", V, "max_epochs", lambda: _train(max_epochs=-1))
raises("train(max_minutes=-1)", V, "max_minutes", lambda: _train(max_minutes=-1))
raises("train(smoothing=1.5)", V, "smoothing", lambda: _train(smoothing=1.5))
raises("train(clip_norm=0)", V, "clip_norm", lambda: _train(clip_norm=0))
raises("train(data = a list of batches)", T, "TokenBatches", lambda: _train(data=list(tiny_data())))
raises("train(state = a dict)", T, "TrainState", lambda: _train(state={"step": 0}))
raises("train(checkpoint_path=<a file>/x.pt)", OSError, "cannot write", lambda: _train(
    checkpoint_path=(lambda d: (d / "f").write_text("x") and d / "f" / "x.pt")(tmp())))
raises("train(checkpoint_path=<a folder>)", OSError, "is a folder", lambda: _train(checkpoint_path=tmp()))
raises("evaluate(data = a list)", T, "TokenBatches", lambda: train_mod.evaluate(tiny_model(), list(tiny_data())))
raises("label_smoothed_cross_entropy(float target)", T, "integer", lambda: train_mod.label_smoothed_cross_entropy(
    torch.randn(2, 3, 5), torch.zeros(2, 3)))
raises("label_smoothed_cross_entropy(epsilon=None)", V, "epsilon", lambda: train_mod.label_smoothed_cross_entropy(
    torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long), None))
raises("warmup_schedule(warmup=0)", V, "warmup", lambda: schedules.warmup_schedule(
    train_mod.make_optimizer(tiny_model()), 8, 0))
raises("warmup_schedule(warmup=10.5)", V, "warmup", lambda: schedules.warmup_schedule(
    train_mod.make_optimizer(tiny_model()), 8, 10.5))
raises("warmup_schedule(scale=-1)", V, "scale", lambda: schedules.warmup_schedule(
    train_mod.make_optimizer(tiny_model()), 8, 10, scale=-1))
raises("warmup_schedule(model instead of optimizer)", T, "optimizer", lambda: schedules.warmup_schedule(
    tiny_model(), 8, 10))
raises("make_optimizer(model.parameters())", T, "nn.Module", lambda: train_mod.make_optimizer(
    tiny_model().parameters()))
raises("make_optimizer(betas=(0.9, 1.5))", V, "beta", lambda: train_mod.make_optimizer(tiny_model(), betas=(0.9, 1.5)))


def _resume_into(optimizer_factory, model_only: bool = False):
    d = tmp()
    model = tiny_model()
    if model_only:
        model.save(d / "m.pt")
    else:
        train_mod.train(model, tiny_data(), train_mod.make_optimizer(model), max_steps=1, device="cpu",
                        progress=False, checkpoint_path=d / "m.pt")
    fresh = tiny_model()
    return train_mod.resume(d / "m.pt", fresh, optimizer_factory(fresh))


raises("resume(Adam state into SGD)", V, "another kind of optimiser", lambda: _resume_into(
    lambda m: torch.optim.SGD(m.parameters(), lr=0.1)))
raises("resume(a model-only file)", V, "not a training checkpoint", lambda: _resume_into(
    train_mod.make_optimizer, model_only=True))


@case("train: NaN loss stops with an error", (FloatingPointError, "loss is nan"))
def _nan_train():
    model = tiny_model()
    with torch.no_grad():
        model.generator.bias.fill_(math.nan)
    _train_model(model)


def _train_model(model, **kw):
    return train_mod.train(model, tiny_data(), train_mod.make_optimizer(model), max_steps=2, device="cpu",
                           progress=False, **kw)


@case("train: an error in a run saves what it trained", None)
def _error_saves():
    d = tmp()
    model = tiny_model()
    calls = {"n": 0}
    real = model.forward

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory (simulated)")
        return real(*a, **k)

    model.forward = failing
    try:
        _train_model(model, checkpoint_path=d / "run.pt")
    except RuntimeError:
        pass
    return (d / "run.pt").is_file() and checkpoint.load_checkpoint(d / "run.pt")["train_state"]["step"] == 2


# -- GPT -------------------------------------------------------------------------------------------
GPT_IDS = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0))
raises("make_gpt(dropout=None)", V, "dropout", lambda: gpt_mod.make_gpt(10, 8, 1, 8, 2, dropout=None))
raises("make_gpt(dropout=1.0)", V, "dropout", lambda: gpt_mod.make_gpt(10, 8, 1, 8, 2, dropout=1.0))
raises("make_gpt(n_heads=3)", V, "does not divide", lambda: gpt_mod.make_gpt(10, 8, 1, 8, 3))
raises("make_gpt(positions='rope')", V, "positions", lambda: gpt_mod.make_gpt(10, 8, positions="rope"))
raises("evaluate_loss(context=0)", V, "context", lambda: gpt_mod.evaluate_loss(gpt_mod.make_gpt(10, 8, 1, 8, 2),
                                                                              GPT_IDS, context=0))
raises("evaluate_loss(batch_size=0)", V, "batch_size", lambda: gpt_mod.evaluate_loss(
    gpt_mod.make_gpt(10, 8, 1, 8, 2), GPT_IDS, batch_size=0))
raises("evaluate_loss(float data)", T, "integer", lambda: gpt_mod.evaluate_loss(
    gpt_mod.make_gpt(10, 8, 1, 8, 2), GPT_IDS.float()))
raises("evaluate_loss(data as a list)", T, "tensor", lambda: gpt_mod.evaluate_loss(
    gpt_mod.make_gpt(10, 8, 1, 8, 2), GPT_IDS.tolist()))


def _gpt_train(model=None, ids=GPT_IDS, steps=2, batch_size=4, context=8, lr=1e-3, min_lr=None, warmup=1, **kw):
    """The GPT through utils.train.train, as notebook 08 and scripts/train_gpt.py run it."""
    model = model if model is not None else gpt_mod.make_gpt(10, 8, 1, 8, 2)
    opt = gpt_mod.gpt_optimizer(model, lr)
    return train_mod.train(model, gpt_mod.RandomWindows(ids, batch_size, context), opt,
                           schedules.WarmupCosine(opt, lr, warmup, min_lr, total_steps=2),
                           loss_fn=gpt_mod.next_token_loss, max_steps=steps, device="cpu", progress=False, **kw)


raises("RandomWindows(batch_size=0)", V, "batch_size", lambda: _gpt_train(batch_size=0))
raises("gpt_optimizer(lr=nan)", V, "lr", lambda: _gpt_train(lr=math.nan))
raises("WarmupCosine(min_lr > lr)", V, "min_lr", lambda: _gpt_train(lr=1e-3, min_lr=1e-2))
raises("RandomWindows(context=0)", V, "context", lambda: _gpt_train(context=0))
raises("GPT training with context=99 > the model's", V, "context", lambda: _gpt_train(context=99))
raises("WarmupCosine(warmup=-5)", V, "warmup", lambda: _gpt_train(warmup=-5))
raises("RandomWindows(float data)", T, "integer", lambda: _gpt_train(ids=GPT_IDS.float()))
raises("train(max_steps=2.5) for the GPT", V, "max_steps", lambda: _gpt_train(steps=2.5))
raises("GPT training with a NaN loss", FloatingPointError, "loss is nan", lambda: _gpt_train(
    (lambda m: (torch.nn.init.constant_(m.head.bias, math.nan), m)[1])(gpt_mod.make_gpt(10, 8, 1, 8, 2))))
raises("GPT training with checkpoint_path=<a folder>", OSError, "is a folder", lambda: _gpt_train(
    checkpoint_path=tmp()))

# -- batching --------------------------------------------------------------------------------------
raises("TokenBatches(world_size=0)", V, "world_size", lambda: batching.TokenBatches([[1, 2]], [[1, 2]], 8,
                                                                                    world_size=0))
raises("TokenBatches(rank=2.0)", T, "rank", lambda: batching.TokenBatches([[1, 2]], [[1, 2]], 8, rank=1.0,
                                                                          world_size=2))
raises("TokenBatches(text, not ids)", T, "encode", lambda: batching.TokenBatches(["a b"], ["c d"], 8))
raises("TokenBatches(an empty sentence)", V, "empty", lambda: batching.TokenBatches([[1, 2], []], [[1, 2], [1, 2]], 8))
raises("TokenBatches(targets of one id)", V, "teacher forcing", lambda: batching.TokenBatches([[1, 2]], [[1]], 8))
raises("TokenBatches(max_tokens=0)", V, "max_tokens", lambda: batching.TokenBatches([[1, 2]], [[1, 2]], 0))
raises("pad_sequences(strings)", T, "encode", lambda: batching.pad_sequences(["abc", "de"]))
raises("pad_sequences(pad_id=None)", T, "pad_id", lambda: batching.pad_sequences([[1, 2]], pad_id=None))
raises("fixed_size_batches(n=-1)", V, "n ", lambda: batching.fixed_size_batches(-1, 4))
raises("fixed_size_batches(batch_size=2.5)", V, "batch_size", lambda: batching.fixed_size_batches(10, 2.5))
raises("padding_fraction(index outside lengths)", V, "outside", lambda: batching.padding_fraction([[0, 5]], [3, 4]))
raises("teacher_forcing(float targets)", T, "integer", lambda: batching.teacher_forcing(torch.zeros(2, 4)))
raises("collate(3 sources, 2 targets)", V, "line up", lambda: batching.collate([[1, 2]] * 3, [[1, 2]] * 2))

# -- embeddings and layers -------------------------------------------------------------------------
raises("TokenEmbedding(pad_id=1.5)", VT, "pad_id", lambda: embeddings.TokenEmbedding(10, 8, pad_id=1.5))
raises("TokenEmbedding forward(a list)", T, "tensor", lambda: embeddings.TokenEmbedding(10, 8)([[1, 2]]))
raises("TokenEmbedding forward(id 10 of 10)", V, "outside", lambda: embeddings.TokenEmbedding(10, 8)(
    torch.tensor([[10]])))
raises("PositionalEncoding(dropout=None)", V, "dropout", lambda: embeddings.PositionalEncoding(8, dropout=None))
raises("PositionalEncoding(max_len=0)", V, "max_len", lambda: embeddings.PositionalEncoding(8, max_len=0))
raises("LearnedPositionalEmbedding(dropout='x')", V, "dropout", lambda: embeddings.LearnedPositionalEmbedding(
    8, 10, dropout="x"))
raises("LearnedPositionalEmbedding(d_model=0)", V, "d_model", lambda: embeddings.LearnedPositionalEmbedding(0, 10))
raises("sinusoidal_positional_encoding(odd d_model)", V, "odd", lambda: embeddings.sinusoidal_positional_encoding(
    10, 7))
raises("LayerNorm(eps=0)", V, "eps", lambda: layers.LayerNorm(8, eps=0))
raises("LayerNorm(d_model=8.0)", V, "d_model", lambda: layers.LayerNorm(8.0))
raises("PositionwiseFeedForward(dropout=None)", V, "dropout", lambda: layers.PositionwiseFeedForward(8, 16, None))
raises("SublayerConnection(dropout=-0.1)", V, "dropout", lambda: layers.SublayerConnection(8, -0.1))

# -- tokenizers ------------------------------------------------------------------------------------
raises("WordTokenizer.fit(a str)", T, "list of sentences", lambda: tokenize.WordTokenizer.fit("a cat sat"))
raises("CharTokenizer.fit(a str)", T, "list of sentences", lambda: tokenize.CharTokenizer.fit("a cat sat"))
raises("BPETokenizer.train(a str)", T, "list of sentences", lambda: tokenize.BPETokenizer.train("a cat sat", 30))
raises("encode_batch(a str)", T, "list of sentences", lambda: tokenize.CharTokenizer.fit(["ab"]).encode_batch("ab"))
raises("encode(a list)", T, "encode_batch", lambda: tokenize.WordTokenizer.fit(["a b"]).encode(["a", "b"]))
raises("BPE encode(a list)", T, "encode_batch", lambda: tokenize.BPETokenizer.train(["a b c"], 30).encode(["a b"]))
raises("fit(a list holding a number)", T, "str", lambda: tokenize.WordTokenizer.fit(["a b", 3]))
raises("fit(min_freq=0)", V, "min_freq", lambda: tokenize.WordTokenizer.fit(["a b"], min_freq=0))
raises("fit(min_freq=1.5)", V, "min_freq", lambda: tokenize.WordTokenizer.fit(["a b"], min_freq=1.5))
raises("BPETokenizer.train(vocab_size=30.5)", V, "vocab_size", lambda: tokenize.BPETokenizer.train(["a b"], 30.5))
raises("BPETokenizer.train(min_frequency=0)", V, "min_frequency", lambda: tokenize.BPETokenizer.train(
    ["a b"], 30, min_frequency=0))
raises("decode(a 2-D tensor)", T, "row by row", lambda: tokenize.CharTokenizer.fit(["ab"]).decode(
    torch.tensor([[4, 5]])))
raises("decode(float ids)", T, "integers", lambda: tokenize.CharTokenizer.fit(["ab"]).decode([4.7, 5.2]))
raises("decode(id outside)", V, "outside", lambda: tokenize.CharTokenizer.fit(["ab"]).decode([99]))
raises("tokenizer_from_dict(a str)", T, "to_dict", lambda: tokenize.tokenizer_from_dict("char"))
raises("tokenizer_from_dict({'kind': 'char'})", V, "tokens", lambda: tokenize.tokenizer_from_dict({"kind": "char"}))


@case("BPE: literal '<eos>' text is not the control id", None)
def _bpe_literal_eos():
    tok = tokenize.BPETokenizer.train(["a cat sat on the mat", "the dog ran"], vocab_size=40)
    return tokenize.EOS_ID not in tok.encode("the <eos> cat") and tokenize.EOS_ID not in tok.encode_batch(
        ["the <eos> cat"])[0]


@case("BPE from an old dict: literal '<eos>' is still text", None)
def _bpe_old_dict():
    tok = tokenize.BPETokenizer.train(["a cat sat on the mat", "the dog ran"], vocab_size=40)
    data = json.loads(tok.hf.to_str())
    data["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, t in enumerate(tokenize.SPECIAL_TOKENS)]
    old = tokenize.tokenizer_from_dict({"kind": "bpe", "json": json.dumps(data)})
    return tokenize.EOS_ID not in old.encode("x <eos> y")


@case("WordTokenizer: NFD 'fährt' = NFC 'fährt'", None)
def _word_nfc():
    tok = tokenize.WordTokenizer.fit([unicodedata.normalize("NFC", "er fährt heim")])
    return tok.encode(unicodedata.normalize("NFD", "er fährt heim")) == tok.encode("er fährt heim") and \
        tokenize.UNK_ID not in tok.encode(unicodedata.normalize("NFD", "er fährt heim"))


@case("WordTokenizer.fit on NFD text, encode NFC", None)
def _word_nfc_fit():
    tok = tokenize.WordTokenizer.fit([unicodedata.normalize("NFD", "er fährt heim")])
    return tokenize.UNK_ID not in tok.encode("er fährt heim")


# -- BLEU ------------------------------------------------------------------------------------------
raises("corpus_bleu(str, str)", T, "list of sentences", lambda: bleu.corpus_bleu("a cat", "a cat"))
raises("corpus_bleu(list, str)", T, "list of sentences", lambda: bleu.corpus_bleu(["a cat"], "a cat"))
raises("corpus_bleu(ids, not text)", T, "decode", lambda: bleu.corpus_bleu([[1, 2]], ["a b"]))
raises("corpus_bleu(max_order=0)", V, "max_order", lambda: bleu.corpus_bleu(["a"], ["a"], max_order=0))
raises("corpus_bleu(2 hyps, 1 ref)", V, "reference", lambda: bleu.corpus_bleu(["a", "b"], ["a"]))

# -- checkpoints -----------------------------------------------------------------------------------
STATE = nn.Linear(2, 2).state_dict()


def _round_trip(**extra):
    path = checkpoint.save_checkpoint(tmp() / "c.pt", STATE, {"d": 2}, **extra)
    return checkpoint.load_checkpoint(path)


@case("save_checkpoint(np.int64 step) loads back as 7", None)
def _np_int():
    return _round_trip(step=np.int64(7))["step"] == 7


@case("save_checkpoint(np.float32) loads back", None)
def _np_float():
    return _round_trip(loss=np.float32(1.5))["loss"] == 1.5


@case("save_checkpoint(np.ndarray) loads back", None)
def _np_array():
    return torch.equal(_round_trip(hist=np.arange(3))["hist"], torch.arange(3))


@case("save_checkpoint(Path in the config) loads back", None)
def _path_config():
    path = checkpoint.save_checkpoint(tmp() / "c.pt", STATE, {"data": Path("x/y")})
    return checkpoint.load_checkpoint(path)["config"]["data"] == "x/y"


raises("save_checkpoint(a tokenizer object)", T, "tokenizer", lambda: _round_trip(
    tokenizer=tokenize.CharTokenizer.fit(["ab"])))
raises("save_checkpoint(a function in the config)", T, "config", lambda: checkpoint.save_checkpoint(
    tmp() / "c.pt", STATE, {"act": print}))
raises("save_checkpoint(path is a folder)", OSError, "is a folder", lambda: checkpoint.save_checkpoint(
    tmp(), STATE, {}))
raises("save_checkpoint(config = a list)", T, "config", lambda: checkpoint.save_checkpoint(tmp() / "c.pt", STATE, [1]))


def _bad_file(content: bytes, name: str = "c.pt") -> Path:
    p = tmp() / name
    p.write_bytes(content)
    return p


def _truncated() -> Path:
    good = checkpoint.save_checkpoint(tmp() / "c.pt", STATE, {"d": 2})
    good.write_bytes(good.read_bytes()[:200])
    return good


raises("load_checkpoint(truncated)", V, "not a readable checkpoint", lambda: checkpoint.load_checkpoint(_truncated()))
raises("load_checkpoint(a text file)", V, "not a readable checkpoint", lambda: checkpoint.load_checkpoint(
    _bad_file(b"hello, world\n")))
raises("load_checkpoint(an empty file)", V, "not a readable checkpoint", lambda: checkpoint.load_checkpoint(
    _bad_file(b"")))
raises("load_checkpoint(a bare state dict)", V, "not a checkpoint", lambda: checkpoint.load_checkpoint(
    (lambda p: (torch.save(STATE, p), p)[1])(tmp() / "s.pt")))


@case("save_checkpoint: file gets the umask's permissions", None)
def _umask():
    import os
    mask = os.umask(0o022)
    try:
        path = checkpoint.save_checkpoint(tmp() / "c.pt", STATE, {})
        return (path.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(mask)


@case("save_checkpoint: a failed save leaves no temporary file", None)
def _no_orphan():
    d = tmp()
    real = torch.save

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    torch.save = boom
    try:
        checkpoint.save_checkpoint(d / "c.pt", STATE, {})
    except OSError:
        pass
    finally:
        torch.save = real
    try:
        checkpoint.save_checkpoint(d / "c.pt", STATE, {"f": print})
    except TypeError:
        pass
    return list(d.iterdir()) == []


# -- exercises -------------------------------------------------------------------------------------
@case("exercises.check(test returning False) is not solved", None)
def _check_false():
    return exercises.check("ex", lambda: False) is False


raises("exercises.check(test_fn() instead of test_fn)", T, "function", lambda: exercises.check("ex", None))


# -- data files ------------------------------------------------------------------------------------
def _with_data(files: dict[str, bytes], loader: str):
    import os

    from utils import data
    d = tmp()
    shared = Path(os.environ.get("ATTN_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    for f in list(data.MULTI30K_FILES.values()):
        for lang in ("de", "en"):
            target = d / "multi30k" / f"{f}.{lang}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((shared / "multi30k" / f"{f}.{lang}").read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n")
    lines = {f"{f}.{lang}": len((d / "multi30k" / f"{f}.{lang}").read_bytes().splitlines())
             for f in data.MULTI30K_FILES.values() for lang in ("de", "en")}
    for f in data.MULTI30K_FILES.values():   # make the pairs parallel again after cutting
        n = min(lines[f"{f}.de"], lines[f"{f}.en"])
        for lang in ("de", "en"):
            p = d / "multi30k" / f"{f}.{lang}"
            p.write_bytes(b"\n".join(p.read_bytes().splitlines()[:n]) + b"\n")
    (d / "tinyshakespeare").mkdir()
    (d / "tinyshakespeare" / "input.txt").write_bytes(b"First Citizen:\nBefore we proceed any further.\n" * 10)
    for name, content in files.items():
        (d / name).write_bytes(content)
    old = os.environ.get("ATTN_DATA_DIR")
    os.environ["ATTN_DATA_DIR"] = str(d)
    try:
        return getattr(data, loader)()
    finally:
        if old is None:
            del os.environ["ATTN_DATA_DIR"]
        else:
            os.environ["ATTN_DATA_DIR"] = old


raises("load_multi30k(an empty test.en and .de)", V, "test_2016_flickr.(de|en) is empty", lambda: _with_data(
    {"multi30k/test_2016_flickr.en": b"", "multi30k/test_2016_flickr.de": b""}, "load_multi30k"))
raises("load_multi30k(train.de 1 line longer)", V, "train.de has", lambda: _with_data(
    {"multi30k/train.de": b"ein Satz\n" * 50, "multi30k/train.en": b"a sentence\n" * 49}, "load_multi30k"))
raises("load_multi30k(a latin-1 val.de)", V, "val.de is not UTF-8", lambda: _with_data(
    {"multi30k/val.de": "Ein Mann fährt.\n".encode("latin-1")}, "load_multi30k"))
raises("load_tiny_shakespeare(a latin-1 file)", V, "input.txt is not UTF-8", lambda: _with_data(
    {"tinyshakespeare/input.txt": "Thou art façade.\n".encode("latin-1") * 5}, "load_tiny_shakespeare"))
raises("load_tiny_shakespeare(an empty file)", V, "input.txt is empty", lambda: _with_data(
    {"tinyshakespeare/input.txt": b""}, "load_tiny_shakespeare"))


@case("load_multi30k: a UTF-8 BOM is not part of the first sentence", None)
def _bom():
    ds = _with_data({"multi30k/val.de": b"\xef\xbb\xbfEin Satz.\n", "multi30k/val.en": b"A sentence.\n"},
                    "load_multi30k")
    return ds["validation"]["de"][0] == "Ein Satz."


@case("load_tiny_shakespeare: a UTF-8 BOM is dropped", None)
def _bom_shakespeare():
    ds = _with_data({"tinyshakespeare/input.txt": b"\xef\xbb\xbf" + b"First Citizen:\n" * 20}, "load_tiny_shakespeare")
    return ds["train"]["text"][0].startswith("First")


@case("a relative ATTN_DATA_DIR is shown resolved in the error", None)
def _relative_dir():
    import os

    from utils import data
    old = os.environ.get("ATTN_DATA_DIR")
    os.environ["ATTN_DATA_DIR"] = "no/such/dir"
    try:
        data.load_multi30k()
    except data.DataNotFoundError as err:
        return str(Path("no/such/dir").resolve()) in str(err)
    finally:
        if old is None:
            del os.environ["ATTN_DATA_DIR"]
        else:
            os.environ["ATTN_DATA_DIR"] = old
    return False


# -- silent wrong answers: values that must be refused or handled right ------------------------------
def _numpy_transformer():
    from utils.bonus import numpy_transformer
    return numpy_transformer


def _squad():
    from utils.bonus import squad
    return squad


raises("ngrams(a str, not a list of words)", T, "list of words", lambda: bleu.ngrams("the cat sat"))
raises("corpus_bleu(lowercase='False')", T, "lowercase", lambda: bleu.corpus_bleu(["A cat"], ["a cat"], lowercase="False"))
raises("squad_scores(references = SQuAD answers dicts)", T, "text", lambda: _squad().squad_scores(
    ["Denver"], [{"text": ["Denver"], "answer_start": [3]}]))
raises("squad_scores(a reference that is bytes)", T, "str", lambda: _squad().squad_scores(["ab"], [b"ab"]))
raises("exact_match(a list as the prediction)", T, "prediction", lambda: _squad().exact_match(["a b"], "a b"))
raises("relative_error(shapes (3,) and (1,))", V, "shape", lambda: _numpy_transformer().relative_error(
    np.ones(3), np.ones(1)))
raises("relative_error(shapes (3, 1) and (1, 3))", V, "shape", lambda: _numpy_transformer().relative_error(
    np.ones((3, 1)), np.ones((1, 3))))
raises("pad_sequences(float ids)", T, "integer", lambda: batching.pad_sequences([[1.7, 2.2]]))
raises("pad_sequences(bool ids)", T, "integer", lambda: batching.pad_sequences([[1, True, 2]]))
raises("pad_sequences(a float array)", T, "integer", lambda: batching.pad_sequences([np.array([1.5, 2.5])]))
raises("pad_sequences(a float tensor)", T, "integer", lambda: batching.pad_sequences([torch.tensor([1.5, 2.5])]))
raises("pad_sequences(pad_id=-1)", V, "pad_id", lambda: batching.pad_sequences([[1, 2]], pad_id=-1))
raises("pad_sequences(pad_id = a real id)", V, "pad_id", lambda: batching.pad_sequences([[1, 5, 2], [1, 2]], pad_id=2))
raises("collate(pad_id = a real id)", V, "pad_id", lambda: batching.collate([[1, 5, 2]], [[1, 6, 2]], pad_id=1))
raises("TokenBatches(float source ids)", T, "integer", lambda: batching.TokenBatches([[1, 5.5, 2]], [[1, 6, 2]], 8))
raises("TokenBatches(bool target ids)", T, "integer", lambda: batching.TokenBatches([[1, 5, 2]], [[1, True, 2]], 8))
raises("TokenBatches(targets without <bos>)", V, "<bos>", lambda: batching.TokenBatches([[1, 5, 2]], [[6, 7, 2]], 8))
raises("TokenBatches(targets without <eos>)", V, "<eos>", lambda: batching.TokenBatches([[1, 5, 2]], [[1, 6, 7]], 8))
raises("TokenBatches(pad_id = a real id)", V, "pad_id", lambda: batching.TokenBatches([[1, 5, 2]], [[1, 6, 2]], 8,
                                                                                     pad_id=5))
raises("token_budget_batches(a negative length)", V, "src_lens", lambda: batching.token_budget_batches(
    [-3, 2], [2, 2], 8))
raises("token_budget_batches(a float length)", VT, "tgt_lens", lambda: batching.token_budget_batches(
    [2, 2], [2.5, 2], 8))
raises("token_budget_batches(a bool length)", VT, "src_lens", lambda: batching.token_budget_batches(
    [True, 2], [2, 2], 8))
raises("decode(bool ids)", T, "integer", lambda: tokenize.CharTokenizer.fit(["ab"]).decode([True, 4]))
raises("decode(a float array)", T, "integer", lambda: tokenize.CharTokenizer.fit(["ab"]).decode(np.array([4.0, 5.0])))


@case("LayerNorm in bfloat16 = nn.LayerNorm in bfloat16", None)
def _layer_norm_bf16():
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)).mul(3).add(5).bfloat16()
    ours, ref = layers.LayerNorm(32).bfloat16()(x), nn.LayerNorm(32).bfloat16()(x)
    return ours.dtype == torch.bfloat16 and torch.equal(ours, ref)


@case("LayerNorm in float16 = nn.LayerNorm in float16 (to one rounding)", None)
def _layer_norm_fp16():
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)).mul(3).add(5).half()
    ours, ref = (m.half()(x).detach() for m in (layers.LayerNorm(32), nn.LayerNorm(32)))
    one_rounding = torch.from_numpy(np.spacing(ref.abs().numpy())).float()     # float16's step at each value
    return ours.dtype == torch.float16 and bool(((ours.float() - ref.float()).abs() <= one_rounding).all())


class _Colour(__import__("enum").IntEnum):
    RED = 1


class _Name(str):
    pass


@case("save_checkpoint(an IntEnum) loads back as its int", None)
def _int_enum():
    got = _round_trip(colour=_Colour.RED, config_like={"colour": _Colour.RED})
    return type(got["colour"]) is int and got["colour"] == 1 and type(got["config_like"]["colour"]) is int


@case("save_checkpoint(a str subclass) loads back as a str", None)
def _str_subclass():
    got = _round_trip(name=_Name("base"), keys={_Name("k"): 1})
    return type(got["name"]) is str and got["name"] == "base" and list(got["keys"]) == ["k"]


@case("save_checkpoint(a NumPy array of strings) loads back as a list", None)
def _np_str_array():
    return _round_trip(words=np.array(["a", "b"]))["words"] == ["a", "b"]


raises("save_checkpoint(np.datetime64) is refused, naming the key", T, "when", lambda: _round_trip(
    when=np.datetime64("2020-01-01")))


def _word_round_trip(texts: list[str]) -> bool:
    tok = tokenize.WordTokenizer.fit(texts)
    return all(tok.decode(tok.encode(t)) == t and tokenize.UNK_ID not in tok.encode(t) for t in texts)


@case("WordTokenizer round trip: Devanagari", None)
def _word_devanagari():
    return _word_round_trip(["नमस्ते दुनिया", "मैं हिंदी सीख रहा हूँ।"])


@case("WordTokenizer round trip: Arabic with vowel marks", None)
def _word_arabic():
    return _word_round_trip(["السَّلَامُ عَلَيْكُمْ", "كيف حالك؟", "یہ اردو ہے۔"])


@case("WordTokenizer round trip: combining marks NFC cannot compose", None)
def _word_marks():
    return _word_round_trip([unicodedata.normalize("NFC", "q\u0303uo ve\u0300\u0323t")])  # ẹ + a grave stays a mark


@case("WordTokenizer round trip: ZWJ emoji, skin tones, flags", None)
def _word_emoji():
    return _word_round_trip(["a family 👨\u200d👩\u200d👧 waves 👋🏽 under 🇩🇪"])


@case("WordTokenizer: a word with a combining mark is one token", None)
def _word_one_token():
    return len(tokenize.WordTokenizer.fit(["नमस्ते"]).encode("नमस्ते")) == 1


def _quiet_check(test) -> tuple[bool, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            ok = exercises.check("ex", test)
        except SystemExit:
            return "escaped", "SystemExit escaped check"
    return ok, out.getvalue()


@case("exercises.check(a failing generator test) is not solved", None)
def _check_generator():
    def test():
        assert 1 + 1 == 3, "wrong"
        yield
    ok, printed = _quiet_check(test)
    return ok is False and "wrong" in printed


@case("exercises.check(a passing generator test) runs it and is solved", None)
def _check_generator_ok():
    ran = []

    def test():
        ran.append(1)
        yield
    return _quiet_check(test)[0] is True and ran == [1]


@case("exercises.check(an async test) is not solved", None)
def _check_async():
    async def test():
        assert False, "never run"
    ok, printed = _quiet_check(test)
    return ok is False and "solved" not in printed


@case("exercises.check(a test calling sys.exit) returns False", None)
def _check_exit():
    return _quiet_check(lambda: sys.exit(3))[0] is False


@case("exercises.check(assert without a message) prints the failing line", None)
def _check_bare_assert():
    def test():
        answer = 2
        assert answer == 3
    ok, printed = _quiet_check(test)
    return ok is False and "assert answer == 3" in printed


@case("check_masked_attention_numpy(a correct float32 answer) is solved", None)
def _check_float32():
    def float32_attention(q, k, v, mask):                        # by hand, as the exercise asks, in float32
        q, k, v = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
        scores = q @ np.swapaxes(k, -1, -2) / np.float32(np.sqrt(q.shape[-1]))
        if mask is not None:
            scores = np.where(mask, scores, np.float32(-np.inf))
        e = np.exp(scores - scores.max(-1, keepdims=True))
        w = e / e.sum(-1, keepdims=True)
        return w @ v, w
    return _quiet_check(lambda: nb02.check_masked_attention_numpy(float32_attention))[0] is True


def _diagrams():
    import importlib.util
    spec = importlib.util.spec_from_file_location("diagrams", Path(__file__).resolve().parents[1] / "tools" / "diagrams.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["diagrams"] = module
    spec.loader.exec_module(module)
    return module


@case("embed_in_notebooks keeps a learner's own image attachment", None)
def _embed_keeps_own():
    diagrams = _diagrams()
    stem = next(iter(diagrams.DIAGRAMS))
    mine = {"image/png": "aGVsbG8="}
    cell = {"cell_type": "markdown", "metadata": {}, "source": [f"![d](attachment:{stem}.png) ![me](attachment:mine.png)"],
            "attachments": {"mine.png": mine}}
    nb = tmp() / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    diagrams.embed_in_notebooks([nb])
    attached = json.loads(nb.read_text())["cells"][0]["attachments"]
    return attached.get("mine.png") == mine and f"{stem}.png" in attached


raises("collate(a target without <bos> ... <eos>)", V, r"tgt_seqs\[1\].*<bos>",
       lambda: batching.collate([[1, 5, 2], [1, 6, 2]], [[1, 5, 2], [5, 6]]))
raises("padding_fraction(a negative length)", V, r"lengths\[1\]", lambda: batching.padding_fraction([[0, 1]], [3, -2]))
raises("corpus_bleu(a hypothesis whose references are all None)", V, "hypothesis 1 has no reference",
       lambda: bleu.corpus_bleu(["a b c", "d e f"], [["a b c", None], ["a b c", None]]))
raises("corpus_bleu(references=[None])", T, "references must be", lambda: bleu.corpus_bleu(["a b c"], [None]))
# (helper F adds its cases above this line)


# -- errors that name the argument or variable at fault ---------------------------------------------
class ScriptExit(Exception):
    """A script's ``SystemExit`` (its message, or argparse's on stderr) as an exception the probe classifies."""


def _script(name: str):
    import importlib.util
    folder = "benchmarks" if name == "decode_speed" else "scripts"
    spec = importlib.util.spec_from_file_location(f"script_{name}", Path(__file__).resolve().parents[1] / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, *argv):
    """``main(argv)`` of a script; its exit becomes :class:`ScriptExit` with the message."""
    import contextlib
    import io
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return _script(name).main([str(a) for a in argv])
    except SystemExit as stop:
        raise ScriptExit(stop.code if isinstance(stop.code, str) else err.getvalue().strip()[-300:]) from None


def _with(env: dict | None = None, gpu: bool = True):
    """Run a thunk with environment variables set (``None``: unset) and, with ``gpu=False``, no GPU visible."""
    import os

    def wrap(thunk):
        def run():
            old = {k: os.environ.get(k) for k in env or {}}
            real = torch.cuda.is_available, torch.cuda.device_count
            for k, v in (env or {}).items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
            if not gpu:
                torch.cuda.is_available, torch.cuda.device_count = (lambda: False), (lambda: 0)
            try:
                return thunk()
            finally:
                torch.cuda.is_available, torch.cuda.device_count = real
                for k, v in old.items():
                    os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        return run
    return wrap


def _saved(kind: str) -> Path:
    """A checkpoint of ``kind``: "gpt" (a GPT training run's), "no_tokenizer" (a translator's ``model.save``)
    or "short" (a translator with its tokenizer whose positional table holds 12 positions)."""
    d = tmp()
    if kind == "gpt":
        m = gpt_mod.make_gpt(10, 8, 1, 8, 2)
        return train_mod.save_training_checkpoint(d / "gpt.pt", m, gpt_mod.gpt_optimizer(m, 1e-3), None,
                                                  train_mod.TrainState(), tokenize.CharTokenizer.fit(["ab"]))
    if kind == "no_tokenizer":
        return tiny_model().save(d / "m.pt")
    tok = tokenize.CharTokenizer.fit(["Ein Mann fährt Rad.", "Zwei Hunde spielen im Schnee."])
    torch.manual_seed(0)
    m = model_mod.make_model(tok.vocab_size, tok.vocab_size, n_layers=1, d_model=8, n_heads=2, d_ff=16, max_len=12)
    return m.save(d / "short.pt", tokenizer=tok.to_dict())


NO_GPU = dict(gpu=False)
raises("load_checkpoint(map_location='cuda'), no GPU", RuntimeError, "map_location.*no GPU.*'cpu'", _with(**NO_GPU)(
    lambda: checkpoint.load_checkpoint(tiny_model().save(tmp() / "m.pt"), map_location="cuda")))
raises("Transformer.load(map_location='cuda'), no GPU", RuntimeError, "map_location.*no GPU.*'cpu'", _with(**NO_GPU)(
    lambda: model_mod.Transformer.load(tiny_model().save(tmp() / "m.pt"), map_location="cuda")))
raises("Transformer.load(map_location='gpu')", V, "map_location", lambda: model_mod.Transformer.load(
    tiny_model().save(tmp() / "m.pt"), map_location="gpu"))
raises("Transformer.load(a GPT checkpoint)", V, "another kind", lambda: model_mod.Transformer.load(_saved("gpt")))


@case("get_device(torch.device('cpu'))", None)
def _device_object():
    from utils import runtime
    return runtime.get_device(torch.device("cpu")) == torch.device("cpu")


raises("get_device('gpu')", V, "prefer.*'cpu'", lambda: __import__("utils.runtime").runtime.get_device("gpu"))
raises("get_device('cuda'), no GPU", RuntimeError, "no GPU.*'cpu'", _with(**NO_GPU)(
    lambda: __import__("utils.runtime").runtime.get_device("cuda")))
raises("ATTN_DEVICE=gpu", V, "ATTN_DEVICE.*'cpu'", _with({"ATTN_DEVICE": "gpu"})(
    lambda: __import__("utils.runtime").runtime.get_device()))
raises("ATTN_DEVICE=cuda, no GPU", RuntimeError, "ATTN_DEVICE.*no GPU", _with({"ATTN_DEVICE": "cuda"}, gpu=False)(
    lambda: __import__("utils.runtime").runtime.get_device()))
raises("train(device='gpu')", V, "device.*'cpu'", lambda: _train(device="gpu"))
raises("train(device='cuda:0'), no GPU", RuntimeError, "device.*no GPU", _with(**NO_GPU)(lambda: _train(device="cuda:0")))

DDP = {"MASTER_ADDR": None, "MASTER_PORT": None, "LOCAL_RANK": None}
for _env_case, _pattern in (({"WORLD_SIZE": "two"}, "WORLD_SIZE.*integer"), ({"WORLD_SIZE": "0"}, "WORLD_SIZE.*positive"),
                            ({"WORLD_SIZE": "2", "RANK": None}, "RANK.*torchrun"),
                            ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK.*integer"),
                            ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK.*0 .. 1"),
                            ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "LOCAL_RANK.*integer")):
    raises(f"train_translator under {' '.join(f'{k}={v}' for k, v in _env_case.items())}", VT, _pattern,
           _with({**DDP, "RANK": "0", **_env_case})(lambda: _script("train_translator").setup_distributed("cpu")))


def _data_dir(value: str):
    from utils import data
    return _with({"ATTN_DATA_DIR": value, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})(data.load_multi30k)()


raises("ATTN_DATA_DIR='' (empty)", V, "ATTN_DATA_DIR.*empty", lambda: _data_dir(""))
raises("ATTN_DATA_DIR='  ' (blank)", V, "ATTN_DATA_DIR.*empty", lambda: _data_dir("  "))
raises("ATTN_DATA_DIR=<a file>", OSError, "ATTN_DATA_DIR.*not a folder", lambda: _data_dir(
    str(_bad_file(b"x", "data.txt"))))

X = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(0))
MHA = attention.MultiHeadAttention(8, 2)
raises("MHA forward(float64 inputs)", T, "query.*float64.*float32", lambda: MHA(X.double(), X.double(), X.double()))
raises("MHA forward(float64 key and value)", T, "key.*float64", lambda: MHA(X, X.double(), X.double()))
raises("MHA forward(integer vectors)", T, "query.*int64", lambda: MHA(X.long(), X.long(), X.long()))
raises("MHA forward(token ids, not vectors)", V, "query.*d_model", lambda: MHA(SRC, SRC, SRC))
raises("EncoderLayer forward(float64)", T, "float64.*float32", lambda: model_mod.EncoderLayer(8, 2, 16)(X.double()))
raises("cached_self_attention(float64 x)", T, "x.*float64", lambda: __import__("utils.kv_cache").kv_cache.cached_self_attention(
    MHA, X.double(), __import__("utils.kv_cache").kv_cache.KVCache(), 0))
raises("PositionalEncoding(ids, not vectors)", T, "x.*int64", lambda: embeddings.PositionalEncoding(4)(
    torch.tensor([[1, 5, 6, 2]])))
raises("model.encode(float ids)", T, "src_ids.*integer", lambda: tiny_model().encode(SRC.float()))
raises("model(src, float tgt)", T, "tgt_ids.*integer", lambda: tiny_model()(SRC, SRC.float()))
raises("model.decode(memory in float64)", T, "memory.*float64", lambda: (lambda m: m.decode(
    SRC, m.encode(SRC).double(), SRC))(tiny_model()))
raises("model.decode(ids as memory)", VT, "memory", lambda: (lambda m: m.decode(SRC, SRC, SRC))(tiny_model()))
raises("model.decode_step(memory in float64)", T, "memory.*float64", lambda: (lambda m: m.decode_step(
    SRC[:, :1], m.encode(SRC).double(), SRC, __import__("utils.kv_cache").kv_cache.KVCache()))(tiny_model()))


@case("a float64 model translates (dtype checked against the weights)", None)
def _double_model():
    m = tiny_model().double()
    return m(SRC, SRC).dtype == torch.float64 and decode.greedy_decode(m, SRC, 5).dtype == torch.long


def _translate_long():
    """A sentence longer than the positional table, last in length order: refused before any batch."""
    model, calls = tiny_model(), []
    real = model.encode
    model.encode = lambda src: (calls.append(1), real(src))[1]
    try:
        decode.translate(model, [[1, 5, 2]] * 4 + [[1] + [5] * 40 + [2]], output="ids", batch_size=2)
    except ValueError as err:
        if calls:
            raise RuntimeError(f"refused only after decoding {len(calls)} batches: {err}") from err
        raise


raises("translate(a sentence longer than the table)", V, "max_len=32.*sentence 4 of 42 tokens", _translate_long)
raises("greedy_decode(a source longer than the table)", V, "src_ids.*42.*max_len=32", lambda: decode.greedy_decode(
    tiny_model(), torch.tensor([[1] + [5] * 40 + [2]]), 5))
raises("translate(sentences=None)", T, "sentences must be a list", lambda: decode.translate(tiny_model(), None))
raises("translate(tokenizer=<a path>)", T, "tokenizer.*'tok.json'", lambda: decode.translate(tiny_model(), ["a b"], "tok.json"))
raises("translate(device='gpu')", V, "device must be 'cpu' or 'cuda'", lambda: decode.translate(
    tiny_model(), [[1, 5, 2]], output="ids", device="gpu"))
raises("translate(a GPT)", T, "encoder–decoder", lambda: decode.translate(gpt_mod.make_gpt(10, 8, 1, 8, 2), [[1, 5, 2]],
                                                                       output="ids"))
raises("train_translator.py --resume --checkpoint <a GPT's>", V, "another kind", lambda: _run(
    "train_translator", "multi30k_30min", "--resume", "--checkpoint", _saved("gpt"), "--out", tmp() / "o", "--steps", 2))
raises("choose.py --checkpoint <a GPT's>", ScriptExit, "another kind", lambda: (lambda d: _run(
    "choose", "multi30k_30min", "--checkpoint", _saved("gpt"), "--out", d / "out", "--save", d / "best.pt"))(tmp()))
raises("showcase.py --checkpoint <a GPT's>", ScriptExit, "another kind", lambda: (lambda d: _run(
    "showcase", "multi30k_30min", "--checkpoint", _saved("gpt"), "--prefix", d / "f_", "--json", d / "s.json"))(tmp()))
raises("decode_speed.py --checkpoint <a GPT's>", ScriptExit, "another kind", lambda: _run(
    "decode_speed", "--checkpoint", _saved("gpt"), "--out", tmp() / "d.json", "--quick"))
raises("showcase.py --checkpoint <no tokenizer>", ScriptExit, "no tokenizer", lambda: (lambda d: _run(
    "showcase", "multi30k_30min", "--checkpoint", _saved("no_tokenizer"), "--prefix", d / "f_", "--json", d / "s.json"))(tmp()))
raises("decode_speed.py --checkpoint <no tokenizer>", ScriptExit, "no tokenizer", lambda: _run(
    "decode_speed", "--checkpoint", _saved("no_tokenizer"), "--out", tmp() / "d.json", "--quick"))
raises("decode_speed.py, sentences longer than the table", ScriptExit, "longer than.*max_len 12", lambda: _run(
    "decode_speed", "--checkpoint", _saved("short"), "--out", tmp() / "d.json", "--quick"))
# (helper G adds its cases above this line)


# -- running ---------------------------------------------------------------------------------------
def outcome(thunk, expected) -> tuple[str, str]:
    """(outcome, detail) of one case."""
    try:
        result = thunk()
    except Exception as err:  # noqa: BLE001 - classifying every error is the point
        detail = f"{type(err).__name__}: {str(err)[:160]}"
        if expected is None:
            return "obscure", detail
        exc, pattern = expected
        if isinstance(err, exc) and re.search(pattern, str(err)):
            return "clear", detail
        return "obscure", detail
    if expected is None:
        return ("handled", "") if result is True else ("silent", f"returned {result!r}")
    return "silent", f"no error (returned {type(result).__name__})"


def main(argv: list[str]) -> Counter:
    import contextlib
    import io

    counts: Counter = Counter()
    for name, thunk, expected in CASES:
        with contextlib.redirect_stdout(io.StringIO()):
            kind, detail = outcome(thunk, expected)
        counts[kind] += 1
        if "-v" in argv:
            print(f"{kind:8} {name:55} {detail}")
    print(f"{len(CASES)} bad inputs: " + ", ".join(f"{counts[k]} {k}" for k in ("handled", "clear", "obscure", "silent")))
    return counts


if __name__ == "__main__":
    main(sys.argv[1:])
