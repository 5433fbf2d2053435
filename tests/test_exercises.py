"""The build-it-yourself exercises of notebooks 01–04 (`utils.exercises`): each check passes
the reference solution, and fails every wrong answer with a message that says what is wrong
without giving the right numbers away."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.attention import scaled_dot_product_attention
from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb01 import check_encoder_input
from utils.exercises.nb02 import check_masked_attention_numpy
from utils.exercises.nb03 import check_multi_head_from_packed
from utils.exercises.nb04 import check_decoder_layer_forward
from utils.torch_compat import mha_from_torch


# --- reference solutions (the notebooks' worked solutions are the same code) ---------------------
def encoder_input(ids, table):
    d_model = table.shape[1]
    pos = torch.arange(ids.shape[1], dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(ids.shape[1], d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * omega), torch.cos(pos * omega)
    return table[ids] * math.sqrt(d_model) + pe


def masked_attention(Q, K, V, mask=None):
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    scores = scores - scores.max(-1, keepdims=True)
    e = np.exp(scores)
    w = e / e.sum(-1, keepdims=True)
    return w @ V, w


def multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    d = query.shape[-1]
    d_k = d // n_heads
    (wq, wk, wv), (bq, bk, bv) = np.split(w_in, 3), np.split(b_in, 3)

    def split(t):
        b, s, _ = t.shape
        return t.reshape(b, s, n_heads, d_k).transpose(0, 2, 1, 3)

    q, k, v = split(query @ wq.T + bq), split(key @ wk.T + bk), split(value @ wv.T + bv)
    mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
    out, w = masked_attention(q, k, v, mask)
    b, h, s, _ = out.shape
    return out.transpose(0, 2, 1, 3).reshape(b, s, d) @ w_out.T + b_out, w


def decoder_forward(layer, y, memory, tgt_mask, memory_mask):
    self_attn, cross_attn = mha_from_torch(layer.self_attn), mha_from_torch(layer.multihead_attn)
    blocks = [lambda h: self_attn(h, h, h, tgt_mask)[0], lambda h: cross_attn(h, memory, memory, memory_mask)[0],
              lambda h: layer.linear2(F.relu(layer.linear1(h)))]
    for block, norm in zip(blocks, (layer.norm1, layer.norm2, layer.norm3)):
        y = y + block(norm(y)) if layer.norm_first else norm(y + block(y))
    return y


# --- wrong answers, each a typical mistake ---------------------------------------------------
def enc_no_scale(ids, table):
    return encoder_input(ids, table) - table[ids] * (math.sqrt(table.shape[1]) - 1)


def enc_sin_cos_swapped(ids, table):
    out = encoder_input(ids, table) - encoder_input(ids, table * 0)
    d = table.shape[1]
    pos = torch.arange(ids.shape[1], dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(ids.shape[1], d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.cos(pos * omega), torch.sin(pos * omega)
    return out + pe


def enc_wrong_shape(ids, table):
    return encoder_input(ids, table)[0]


def att_mask_with_zero(Q, K, V, mask=None):                 # the classic bug: 0 instead of -inf
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    w = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    return w @ V, w


def att_no_scale(Q, K, V, mask=None):
    return masked_attention(Q * np.sqrt(Q.shape[-1]), K, V, mask)


def att_softmax_wrong_axis(Q, K, V, mask=None):
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores)
    w = e / e.sum(-2, keepdims=True)
    return w @ V, w


def mh_merge_without_transpose(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    out, w = multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask)
    # recompute the merge the buggy way
    d = query.shape[-1]
    _, wv = None, np.split(w_in, 3)[2]
    v = (value @ wv.T + np.split(b_in, 3)[2]).reshape(value.shape[0], value.shape[1], n_heads, d // n_heads)
    heads = w @ v.transpose(0, 2, 1, 3)
    return heads.reshape(query.shape[0], query.shape[1], d) @ w_out.T + b_out, w


def mh_ignores_padding(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    return multi_head(query, key, value, w_in, b_in, w_out, b_out, n_heads, None)


def mh_heads_interleaved(query, key, value, w_in, b_in, w_out, b_out, n_heads, key_padding_mask=None):
    d = query.shape[-1]
    perm = np.arange(d).reshape(d // n_heads, n_heads).T.reshape(-1)      # columns dealt out round-robin
    w_in = w_in.reshape(3, d, d)[:, perm].reshape(3 * d, d)
    b_in = b_in.reshape(3, d)[:, perm].reshape(-1)
    out, w = multi_head(query, key, value, w_in, b_in, w_out[:, perm], b_out, n_heads, key_padding_mask)
    return out, w


def dec_post_ln_always(layer, y, memory, tgt_mask, memory_mask):
    norm_first, layer.norm_first = layer.norm_first, False
    try:
        return decoder_forward(layer, y, memory, tgt_mask, memory_mask)
    finally:
        layer.norm_first = norm_first


def dec_no_causal_mask(layer, y, memory, tgt_mask, memory_mask):
    return decoder_forward(layer, y, memory, tgt_mask.any(-2, keepdim=True).expand_as(tgt_mask), memory_mask)


def dec_no_memory_mask(layer, y, memory, tgt_mask, memory_mask):
    return decoder_forward(layer, y, memory, tgt_mask, None)


def dec_skips_cross_attention(layer, y, memory, tgt_mask, memory_mask):
    return decoder_forward(layer, y, memory * 0, tgt_mask, memory_mask)


def dec_ffn_before_cross(layer, y, memory, tgt_mask, memory_mask):
    self_attn, cross_attn = mha_from_torch(layer.self_attn), mha_from_torch(layer.multihead_attn)
    blocks = [lambda h: self_attn(h, h, h, tgt_mask)[0], lambda h: layer.linear2(F.relu(layer.linear1(h))),
              lambda h: cross_attn(h, memory, memory, memory_mask)[0]]
    for block, norm in zip(blocks, (layer.norm1, layer.norm2, layer.norm3)):
        y = y + block(norm(y)) if layer.norm_first else norm(y + block(y))
    return y


CASES = {
    "encoder_input": (check_encoder_input, encoder_input, [enc_no_scale, enc_sin_cos_swapped, enc_wrong_shape]),
    "masked_attention": (check_masked_attention_numpy, masked_attention,
                         [att_mask_with_zero, att_no_scale, att_softmax_wrong_axis]),
    "multi_head": (check_multi_head_from_packed, multi_head,
                   [mh_merge_without_transpose, mh_ignores_padding, mh_heads_interleaved]),
    "decoder_layer": (check_decoder_layer_forward, decoder_forward,
                      [dec_post_ln_always, dec_no_causal_mask, dec_no_memory_mask, dec_skips_cross_attention,
                       dec_ffn_before_cross]),
}



@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)                                                     # raises if it fails
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, _, ws) in CASES.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_wrong_answer_fails_without_revealing(name, wrong, capsys):
    checker, _, _ = CASES[name]
    assert_fails_without_revealing(name, checker, wrong, ("sqrt(", "np.sin", "torch.sin", "-inf", "float('-inf')",
                                                          "transpose(0, 2, 1, 3)", "norm1(", "10000", "expected"), capsys)


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_reference_attention_equals_utils():
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 5, 2))
    out, w = masked_attention(q, k, v, np.tril(np.ones((5, 5), dtype=bool)))
    ref_out, ref_w = scaled_dot_product_attention(*(torch.from_numpy(t) for t in (q, k, v)),
                                                  torch.ones(5, 5, dtype=torch.bool).tril())
    assert np.allclose(out, ref_out.numpy()) and np.allclose(w, ref_w.numpy())


@pytest.mark.parametrize("number", ["01", "02", "03", "04"])
def test_build_exercise_is_called_and_its_solution_hidden(number):
    import json
    from pathlib import Path
    path = next((Path(__file__).resolve().parents[1] / "notebooks").glob(f"{number}_*.ipynb"))
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    code = ["".join(c["source"]) for c in cells]
    assert any(re.search(r"check\([^)]*lambda: check_\w+\(", s) for s in code), "the build exercise uses utils.exercises"
    for cell, text in zip(cells, code):
        if text.startswith("# SOLUTION"):
            assert cell["metadata"].get("jupyter", {}).get("source_hidden"), "worked solutions start hidden"



def test_check_reports_each_outcome(capsys):
    def unsolved():
        raise NotImplementedError

    def wrong():
        assert 1 + 1 == 3, "1 + 1 should be 3 here"

    def crashing():
        return [][0]

    assert check("E1", unsolved) is False
    assert check("E2", wrong) is False
    assert check("E3", crashing) is False
    assert check("E4", lambda: None) is True
    out = capsys.readouterr().out
    parts = [out.index(f"E{i}:") for i in range(1, 5)]
    e1, e2, e3, e4 = (out[a:b] for a, b in zip(parts, parts[1:] + [len(out)]))
    assert "not attempted" in e1
    assert "not right yet" in e2 and "1 + 1 should be 3" in e2
    assert "IndexError" in e3
    assert "solved" in e4


def test_check_runs_what_it_is_given_and_never_raises(capsys, tmp_path, monkeypatch):
    ran = []
    (tmp_path / "learner.py").write_text("def bare_assert():\n    answer = 2\n    assert answer == 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))         # a learner's module: pytest does not rewrite its asserts
    from learner import bare_assert

    def generator_ok():
        ran.append("ok")
        yield

    def generator_wrong():
        assert False, "wrong inside a generator"
        yield

    async def asynchronous():
        ran.append("async")

    assert check("G1", generator_ok) is True and ran == ["ok"], "a test with yield is run, not just created"
    assert check("G2", generator_wrong) is False
    assert check("A1", asynchronous) is False and "async" not in ran
    assert check("S1", lambda: __import__("sys").exit(2)) is False, "sys.exit must not escape check"
    assert check("B1", bare_assert) is False
    out = capsys.readouterr().out
    assert "wrong inside a generator" in out and "`async`" in out and "SystemExit" in out
    assert "this failed: assert answer == 3" in out, "an assert without a message shows its line"


def test_a_correct_float32_answer_is_solved(capsys):
    def float32_attention(q, k, v, mask):
        m = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool))
        out, w = scaled_dot_product_attention(*(torch.from_numpy(a).float() for a in (q, k, v)), m)
        return out.numpy(), w.numpy()
    assert check("F32", lambda: check_masked_attention_numpy(float32_attention)) is True, capsys.readouterr().out
