"""The exercise checks of notebook 01 (`utils.exercises.nb01`): each passes its reference and the
notebook's worked solution, fails typical wrong answers with a hint of its own that shows neither the
answer's values nor the solving code, and reads "not attempted" for an untouched answer."""

import ast
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from exercise_checks import assert_fails_without_revealing, assert_untouched_is_not_attempted
from utils.exercises import check
from utils.exercises.nb01 import (check_encoder_input, check_positional_encoding_base, check_relative_dot,
                                  check_word_unk_rate)
from utils.tokenize import UNK_ID, WordTokenizer

NOTEBOOK = next((Path(__file__).resolve().parents[1] / "notebooks").glob("01_*.ipynb"))


# --- references ---------------------------------------------------------------------------------------------
def word_unk_rate(train, sentences, min_freq):
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    ids = [i for s in sentences for i in tok.encode(s)]
    return ids.count(UNK_ID) / len(ids)


def positional_encoding_base(max_len, d_model, base, dtype=torch.float64, exponent_step=2, swap=False):
    pos = torch.arange(max_len, dtype=dtype)[:, None]
    angle = pos / base ** (torch.arange(0, d_model // 2 * exponent_step, exponent_step, dtype=dtype) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=dtype)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    pe[:, 0::2], pe[:, 1::2] = first(angle), second(angle)
    return pe


def encoder_input(ids, table):
    return table[ids] * math.sqrt(table.shape[1]) + positional_encoding_base(ids.shape[1], table.shape[1], 10000.0,
                                                                               dtype=table.dtype)


def relative_dot(k, d_model):
    omega = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
    return float(np.cos(omega * k).sum())


# --- wrong answers, each a typical mistake, with a phrase its hint must contain --------------------------------
def unk_percentage(train, sentences, min_freq):
    return 100 * word_unk_rate(train, sentences, min_freq)


def unk_ignores_min_freq(train, sentences, min_freq):
    return word_unk_rate(train, sentences, 1)


def unk_counts_bos_eos(train, sentences, min_freq):
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    ids = [i for s in sentences for i in tok.encode(s, add_special=True)]
    return ids.count(UNK_ID) / len(ids)


def unk_mean_per_sentence(train, sentences, min_freq):
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    return float(np.mean([tok.encode(s).count(UNK_ID) / len(tok.encode(s)) for s in sentences]))


def unk_share_of_sentences(train, sentences, min_freq):
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    return sum(UNK_ID in tok.encode(s) for s in sentences) / len(sentences)


def unk_fit_on_sentences(train, sentences, min_freq):
    return word_unk_rate(sentences, sentences, 1)


def unk_integer_division(train, sentences, min_freq):
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    ids = [i for s in sentences for i in tok.encode(s)]
    return ids.count(UNK_ID) // len(ids)


def unk_distinct_words(train, sentences, min_freq):
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    words = Counter(w for s in sentences for w in tok.tokenize(s))
    return sum(w not in tok.token_to_id for w in words) / len(words)


def pe_swapped(max_len, d_model, base):
    return positional_encoding_base(max_len, d_model, base, swap=True)


def pe_ignores_base(max_len, d_model, base):
    return positional_encoding_base(max_len, d_model, 10000.0)


def pe_float32_inside(max_len, d_model, base):
    return positional_encoding_base(max_len, d_model, base, dtype=torch.float32).double()


def pe_returns_float32(max_len, d_model, base):
    return positional_encoding_base(max_len, d_model, base).float()


def pe_exponent_i(max_len, d_model, base):
    return positional_encoding_base(max_len, d_model, base, exponent_step=1)


def enc_returns_float32(ids, table):
    return encoder_input(ids, table).float()


def enc_positions_float32(ids, table):
    return table[ids] * math.sqrt(table.shape[1]) + positional_encoding_base(ids.shape[1], table.shape[1], 10000.0,
                                                                               dtype=torch.float32)


def enc_no_scale(ids, table):
    return table[ids] + positional_encoding_base(ids.shape[1], table.shape[1], 10000.0, dtype=table.dtype)


def enc_sin_cos_swapped(ids, table):
    return table[ids] * math.sqrt(table.shape[1]) + pe_swapped(ids.shape[1], table.shape[1], 10000.0)


def dot_with_sines(k, d_model):
    omega = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
    return float(np.sin(omega * k).sum())


def dot_one_term_per_column(k, d_model):
    omega = 10000.0 ** (-np.arange(d_model) / d_model)
    return float(np.cos(omega * k).sum())


def dot_abs_wrong_sign(k, d_model):
    return relative_dot(abs(k), d_model) if k >= 0 else -relative_dot(-k, d_model)


CASES = {
    "word_unk_rate": (check_word_unk_rate, word_unk_rate, [
        (unk_percentage, "not a percentage"), (unk_ignores_min_freq, "min_freq"), (unk_counts_bos_eos, "<bos>"),
        (unk_mean_per_sentence, "per-sentence"), (unk_share_of_sentences, "not sentences"),
        (unk_fit_on_sentences, "fit the tokenizer on `train`"), (unk_integer_division, "//"),
        (unk_distinct_words, "every occurrence")]),
    "positional_encoding_base": (check_positional_encoding_base, positional_encoding_base, [
        (pe_swapped, "sines and the cosines"), (pe_ignores_base, "does not change with `base`"),
        (pe_float32_inside, "float32 precision"), (pe_returns_float32, "float64"),
        (pe_exponent_i, "wrong speed")]),
    "encoder_input": (check_encoder_input, encoder_input, [
        (enc_returns_float32, "table's dtype"), (enc_positions_float32, "float32 precision"),
        (enc_no_scale, "scale factor"), (enc_sin_cos_swapped, "does not follow the formula")]),
    "relative_dot": (check_relative_dot, relative_dot, [
        (dot_with_sines, "your sum is zero"), (dot_one_term_per_column, "count the terms"),
        (dot_abs_wrong_sign, "k=-7")]),
}
GIVEAWAYS = ("sqrt(", "np.sin", "np.cos", "torch.sin", "torch.cos", "10000", "expected", "should be [",
             "min_freq=min_freq", "add_special=False", "** (", "arange(", ".count(")



def notebook_solutions():
    """The functions the notebook's `# SOLUTION` cells define, built from their source."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    namespace = {"math": math, "np": np, "torch": torch, "WordTokenizer": WordTokenizer, "UNK_ID": UNK_ID}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("# SOLUTION"):
            defs = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
            exec(compile(ast.Module(body=defs, type_ignores=[]), str(NOTEBOOK), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    checker, reference, _ = CASES[name]
    checker(reference)
    assert check(name, lambda: checker(reference)) is True
    assert "solved" in capsys.readouterr().out


@pytest.mark.parametrize("name", CASES)
def test_notebook_solution_passes(name):
    checker = CASES[name][0]
    checker(notebook_solutions()[name])


@pytest.mark.parametrize("name, wrong, hint", [(n, w, h) for n, (_, _, ws) in CASES.items() for w, h in ws],
                         ids=lambda x: getattr(x, "__name__", None) if callable(x) else None)
def test_wrong_answer_fails_with_its_hint(name, wrong, hint, capsys):
    assert_fails_without_revealing(name, CASES[name][0], wrong, GIVEAWAYS, capsys, hint=hint)


def test_each_check_has_two_or_more_wrong_answers_with_distinct_hints():
    for name, (_, _, wrongs) in CASES.items():
        assert len(wrongs) >= 2, name
        assert len({hint for _, hint in wrongs}) == len(wrongs), f"{name}: two mistakes share one hint"


@pytest.mark.parametrize("name", CASES)
def test_untouched_exercise_is_not_attempted(name, capsys):
    assert_untouched_is_not_attempted(name, CASES[name][0], capsys)


def test_every_exercise_cell_only_calls_its_check():
    """The learner's cells hold no check code: each calls a check_* of utils.exercises.nb01."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    stubs = [s for s in code if "raise NotImplementedError" in s and not s.startswith("# SOLUTION")]
    assert len(stubs) == len(CASES)
    for stub in stubs:
        assert re.search(r"check\(\"Exercise \d\", lambda: check_\w+\(\w+\)\)", stub), stub
        assert "assert" not in stub and "def check_" not in stub, f"check code in the learner's cell: {stub}"
