"""The exercise checks of notebook 04 (`utils.exercises.nb04`): the reference and the notebook's worked
solutions pass; typical wrong answers fail, each with a message that shows neither the expected values
nor the code that solves the exercise; an untouched exercise reads "not attempted"."""

import ast
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import utils.model
from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb04 import (check_decoder_layer_forward, check_decoder_only_param_count,
                                  check_greedy_encode_once, check_positions_that_see_the_future)
from utils.tokenize import BOS_ID, EOS_ID, PAD_ID
from utils.torch_compat import mha_from_torch

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_encoder_decoder.ipynb"


# --- Exercise 1 · count a decoder-only model ------------------------------------------------------
def count(vocab, n_layers, d_model, d_ff):
    d = d_model
    layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * 2 * d
    return vocab * d + n_layers * layer + 2 * d + vocab


def count_without_final_norm(vocab, n_layers, d_model, d_ff):
    return count(vocab, n_layers, d_model, d_ff) - 2 * d_model


def count_untied(vocab, n_layers, d_model, d_ff):
    return count(vocab, n_layers, d_model, d_ff) + vocab * d_model


def count_without_generator_bias(vocab, n_layers, d_model, d_ff):
    return count(vocab, n_layers, d_model, d_ff) - vocab


def count_one_norm_a_layer(vocab, n_layers, d_model, d_ff):
    return count(vocab, n_layers, d_model, d_ff) - n_layers * 2 * d_model


def count_as_float(vocab, n_layers, d_model, d_ff):
    return float(count(vocab, n_layers, d_model, d_ff))


# --- Exercise 2 · catch a leaking mask -------------------------------------------------------------
def _changed_at(tgt_ids, s, vocab):
    changed = tgt_ids.clone()
    changed[:, s] = (changed[:, s] - 4 + 1) % (vocab - 4) + 4
    return changed


def leaks(model, src_ids, tgt_ids):
    found = set()
    with torch.no_grad():
        base = model(src_ids, tgt_ids)
        for s in range(1, tgt_ids.shape[1]):
            moved = (model(src_ids, _changed_at(tgt_ids, s, base.shape[-1])) - base)[:, :s].abs().amax(dim=(0, 2))
            found.update(int(t) for t in torch.nonzero(moved > 0).flatten())
    return sorted(found)


def leaks_next_token_only(model, src_ids, tgt_ids):
    """Changes token t + 1 and looks at position t only."""
    found = []
    with torch.no_grad():
        base = model(src_ids, tgt_ids)
        for t in range(tgt_ids.shape[1] - 1):
            moved = (model(src_ids, _changed_at(tgt_ids, t + 1, base.shape[-1])) - base)[:, t].abs().max()
            if moved > 0:
                found.append(t)
    return found


def leaks_loose_threshold(model, src_ids, tgt_ids):
    found = set()
    with torch.no_grad():
        base = model(src_ids, tgt_ids)
        for s in range(1, tgt_ids.shape[1]):
            moved = (model(src_ids, _changed_at(tgt_ids, s, base.shape[-1])) - base)[:, :s].abs().amax(dim=(0, 2))
            found.update(int(t) for t in torch.nonzero(moved > 0.1).flatten())
    return sorted(found)


def leaks_including_the_changed_position(model, src_ids, tgt_ids):
    found = set()
    with torch.no_grad():
        base = model(src_ids, tgt_ids)
        for s in range(1, tgt_ids.shape[1]):
            moved = (model(src_ids, _changed_at(tgt_ids, s, base.shape[-1])) - base)[:, :s + 1].abs().amax(dim=(0, 2))
            found.update(int(t) for t in torch.nonzero(moved > 0).flatten())
    return sorted(found)


def leaks_reports_the_changed_token(model, src_ids, tgt_ids):
    found = set()
    with torch.no_grad():
        base = model(src_ids, tgt_ids)
        for s in range(1, tgt_ids.shape[1]):
            moved = (model(src_ids, _changed_at(tgt_ids, s, base.shape[-1])) - base)[:, :s].abs().max()
            if moved > 0:
                found.add(s)
    return sorted(found)


# --- Exercise 3 · the decoder layer's forward pass -------------------------------------------------
def decoder_forward(layer, y, memory, tgt_mask, memory_mask):
    self_attn, cross_attn = mha_from_torch(layer.self_attn), mha_from_torch(layer.multihead_attn)
    blocks = [lambda h: self_attn(h, h, h, tgt_mask)[0], lambda h: cross_attn(h, memory, memory, memory_mask)[0],
              lambda h: layer.linear2(F.relu(layer.linear1(h)))]
    for block, norm in zip(blocks, (layer.norm1, layer.norm2, layer.norm3)):
        y = y + block(norm(y)) if layer.norm_first else norm(y + block(y))
    return y


def decoder_post_ln_always(layer, y, memory, tgt_mask, memory_mask):
    self_attn, cross_attn = mha_from_torch(layer.self_attn), mha_from_torch(layer.multihead_attn)
    blocks = [lambda h: self_attn(h, h, h, tgt_mask)[0], lambda h: cross_attn(h, memory, memory, memory_mask)[0],
              lambda h: layer.linear2(F.relu(layer.linear1(h)))]
    for block, norm in zip(blocks, (layer.norm1, layer.norm2, layer.norm3)):
        y = norm(y + block(y))
    return y


def decoder_without_causal_mask(layer, y, memory, tgt_mask, memory_mask):
    return decoder_forward(layer, y, memory, tgt_mask | True, memory_mask)


def decoder_without_memory_mask(layer, y, memory, tgt_mask, memory_mask):
    return decoder_forward(layer, y, memory, tgt_mask, None)


# --- Exercise 4 · greedy decoding that encodes once ------------------------------------------------
def greedy(model, src_ids, max_len):
    with torch.no_grad():
        memory = model.encode(src_ids)
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logits = model.decode(ys, memory, src_ids)[:, -1]
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            next_id = logits.argmax(-1).masked_fill(done, PAD_ID)
            ys = torch.cat([ys, next_id[:, None]], dim=1)
            done |= next_id == EOS_ID
            if done.all():
                break
    return ys[:, 1:]


def greedy_plain_argmax(model, src_ids, max_len):
    """No <pad>/<bos> suppression, no padding after <eos>, no early stop: every row runs max_len steps."""
    with torch.no_grad():
        memory = model.encode(src_ids)
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        for _ in range(max_len):
            ys = torch.cat([ys, model.decode(ys, memory, src_ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def greedy_without_suppression(model, src_ids, max_len):
    with torch.no_grad():
        memory = model.encode(src_ids)
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            next_id = model.decode(ys, memory, src_ids)[:, -1].argmax(-1).masked_fill(done, PAD_ID)
            ys = torch.cat([ys, next_id[:, None]], dim=1)
            done |= next_id == EOS_ID
            if done.all():
                break
    return ys[:, 1:]


def greedy_no_padding_after_eos(model, src_ids, max_len):
    with torch.no_grad():
        memory = model.encode(src_ids)
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        for _ in range(max_len):
            logits = model.decode(ys, memory, src_ids)[:, -1]
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
            if (ys == EOS_ID).any(dim=1).all():
                break
    return ys[:, 1:]


def greedy_never_stops_early(model, src_ids, max_len):
    with torch.no_grad():
        memory = model.encode(src_ids)
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logits = model.decode(ys, memory, src_ids)[:, -1]
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            next_id = logits.argmax(-1).masked_fill(done, PAD_ID)
            ys = torch.cat([ys, next_id[:, None]], dim=1)
            done |= next_id == EOS_ID
    return ys[:, 1:]


def greedy_encodes_every_step(model, src_ids, max_len):
    with torch.no_grad():
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logits = model(src_ids, ys)[:, -1]
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            next_id = logits.argmax(-1).masked_fill(done, PAD_ID)
            ys = torch.cat([ys, next_id[:, None]], dim=1)
            done |= next_id == EOS_ID
            if done.all():
                break
    return ys[:, 1:]


def greedy_keeps_bos(model, src_ids, max_len):
    return torch.cat([torch.full((src_ids.shape[0], 1), BOS_ID), greedy(model, src_ids, max_len - 1)], dim=1)


CASES = {
    "Exercise 1": (check_decoder_only_param_count, count,
                   [count_without_final_norm, count_untied, count_without_generator_bias, count_one_norm_a_layer,
                    count_as_float]),
    "Exercise 2": (check_positions_that_see_the_future, leaks,
                   [leaks_next_token_only, leaks_loose_threshold, leaks_including_the_changed_position,
                    leaks_reports_the_changed_token]),
    "Exercise 3": (check_decoder_layer_forward, decoder_forward,
                   [decoder_post_ln_always, decoder_without_causal_mask, decoder_without_memory_mask]),
    "Exercise 4": (check_greedy_encode_once, greedy,
                   [greedy_plain_argmax, greedy_without_suppression, greedy_no_padding_after_eos,
                    greedy_never_stops_early, greedy_encodes_every_step, greedy_keeps_bos]),
}

# What would give an answer away: the solving code, and the answers themselves.
GIVEAWAYS = ["-inf", "masked_fill", "argmax", "tril", "amax", "2 * d", "4 * d", "norm1(", "sqrt",
             "[0, 1, 2", "[0..", "0..4", "[1, 2]", "expected"]


def worked_solutions() -> dict[str, object]:
    """The functions the notebook's hidden '# SOLUTION' cells define, by exercise number."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    ns = {"torch": torch, "F": F, "nn": torch.nn, "BOS_ID": BOS_ID, "EOS_ID": EOS_ID, "PAD_ID": PAD_ID,
          "mha_from_torch": mha_from_torch, "utils": utils}
    names = {}
    for cell in cells:
        src = "".join(cell["source"])
        if cell["cell_type"] != "code" or not src.startswith("# SOLUTION"):
            continue
        tree = ast.parse(src)
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        exec(compile(ast.Module(body=defs, type_ignores=[]), "<solution>", "exec"), ns)
        number = re.search(r'assert check\("(Exercise \d)"', src).group(1)
        names[number] = ns[defs[0].name]
    return names


@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)                                                     # raises if it fails
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


def test_worked_solutions_pass(capsys):
    solutions = worked_solutions()
    assert set(solutions) == set(CASES), "one worked solution per exercise"
    for name, solution in solutions.items():
        assert check(name, lambda: CASES[name][0](solution)) is True, name
    assert capsys.readouterr().out.count("solved") == len(CASES)


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, _, ws) in CASES.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_wrong_answer_fails_without_revealing(name, wrong, capsys):
    message = assert_fails_without_revealing(name, CASES[name][0], wrong, GIVEAWAYS, capsys)
    if name == "Exercise 1":                                               # no count of the reference model
        assert not re.search(r"\d{4,}", message.replace("d_ff=512", "")), message


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_learner_cells_only_call_the_checks():
    """Every exercise cell of the notebook calls a check of utils.exercises.nb04 and holds no check code."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    learner = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
               and "raise NotImplementedError" in "".join(c["source"])]
    assert len(learner) == len(CASES)
    for src in learner:
        assert re.search(r'check\("Exercise \d", lambda: check_\w+\(\w+\)\)', src), src
        assert "assert" not in src and "def check_" not in src, "the check lives in utils.exercises.nb04"
