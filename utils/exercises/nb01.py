"""The exercise checks of notebook 01 (see :mod:`utils.exercises` for how a check reports).

Each ``check_*`` calls the learner's function on inputs it builds, compares with a reference written
here, and raises ``AssertionError`` with a message that says what is wrong, never the right values.
Where a typical mistake has a recognisable result (a percentage, a tokenizer fitted on the wrong
text, sines and cosines swapped), the check recognises it and names it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from utils.embeddings import sinusoidal_positional_encoding
from utils.exercises import first_bad as _first_bad
from utils.tokenize import UNK_ID, WordTokenizer

# -- Exercise 1 · how rare is rare? ----------------------------------------------------------------------


def _unk_rates(train: list[str], sentences: list[str], min_freq: int) -> dict[str, float]:
    """The right rate and the rates of typical mistakes, each under the name of its hint."""
    tok = WordTokenizer.fit(train, min_freq=min_freq)
    ids = [tok.encode(s) for s in sentences]
    unks, n_tokens = sum(s.count(UNK_ID) for s in ids), sum(len(s) for s in ids)
    with_special = [tok.encode(s, add_special=True) for s in sentences]
    rates = {
        "right": unks / n_tokens,
        "count only the tokens of the sentences themselves, not the <bos> and <eos> that "
        "`add_special=True` adds": unks / sum(len(s) for s in with_special),
        "divide the <unk> tokens of all sentences by all their tokens; a mean of per-sentence rates "
        "gives short sentences too much weight": float(np.mean([s.count(UNK_ID) / len(s) for s in ids])),
        "count tokens, not sentences: the rate is the share of tokens that become <unk>":
            sum(UNK_ID in s for s in ids) / len(ids),
        "count every occurrence of an unknown token, not each distinct word once":
            len({w for s in sentences for w in tok.tokenize(s) if w not in tok.token_to_id})
            / len({w for s in sentences for w in tok.tokenize(s)}),
    }
    if min_freq > 1:
        rates["your rate does not depend on `min_freq`: fit the tokenizer with it"] = \
            _unk_rates(train, sentences, 1)["right"]
    return rates


def _unk_cases() -> list[tuple[list[str], list[str], int]]:
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(40)]
    zipf = 1 / np.arange(1, 41)

    def draw(n: int, lo: int, hi: int) -> list[str]:                     # n sentences of lo .. hi-1 words
        return [" ".join(rng.choice(words, size=rng.integers(lo, hi), p=zipf / zipf.sum())) for _ in range(n)]

    train = ["the cat sat on the mat", "the dog sat", "a cat ran"]
    sentences = ["the bird sat on a mat", "my dog ran fast"]
    return [(train, sentences, 1), (train, sentences, 2),
            (draw(60, 3, 9), draw(25, 1, 12), 1), (draw(60, 3, 9), draw(25, 1, 12), 3)]


def check_word_unk_rate(word_unk_rate: Callable[[list[str], list[str], int], float]) -> None:
    """Notebook 01, exercise 1: ``word_unk_rate(train, sentences, min_freq)`` → the share of the tokens of
    ``sentences`` that a ``WordTokenizer`` fitted on ``train`` with ``min_freq`` turns into ``<unk>``."""
    for train, sentences, min_freq in _unk_cases():
        rate = word_unk_rate(list(train), list(sentences), min_freq)
        assert isinstance(rate, float), f"return a float, got {type(rate).__name__}" + \
            (" (did you divide with `//`?)" if isinstance(rate, int) else "")
        assert 0 <= rate <= 1, "return a fraction between 0 and 1, not a percentage"
        rates = _unk_rates(train, sentences, min_freq)
        if abs(rate - rates["right"]) < 1e-12:
            continue
        if rate == 0:
            raise AssertionError("no token came out unknown, although some words of `sentences` never occur in "
                                 "`train`: fit the tokenizer on `train`, not on the sentences you measure")
        for hint, value in rates.items():
            if hint != "right" and abs(rate - value) < 1e-12:
                raise AssertionError(hint)
        raise AssertionError(f"with min_freq={min_freq} your rate differs from the share of <unk> among the "
                             "tokens of `sentences`")


# -- Exercise 2 · another base ---------------------------------------------------------------------------


def _pe(max_len: int, d_model: int, base: float, swap: bool = False) -> Tensor:
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]                      # (max_len, 1)
    angle = pos / base ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    pe[:, 0::2], pe[:, 1::2] = first(angle), second(angle)
    return pe


def check_positional_encoding_base(positional_encoding_base: Callable[[int, int, float], Tensor]) -> None:
    """Notebook 01, exercise 2: ``positional_encoding_base(max_len, d_model, base)`` → the sinusoidal table
    ``(max_len, d_model)`` in float64, with ``base`` in place of the paper's constant."""
    for max_len, d_model, base in [(50, 16, 10000.0), (50, 16, 100.0), (30, 8, 50.0)]:
        pe = positional_encoding_base(max_len, d_model, base)
        assert isinstance(pe, Tensor), f"return a torch.Tensor, got {type(pe).__name__}"
        assert tuple(pe.shape) == (max_len, d_model), \
            f"shape should be (max_len, d_model) = {(max_len, d_model)}, got {tuple(pe.shape)}"
        assert pe.dtype == torch.float64, f"compute and return float64, got {pe.dtype}"
        ref = _pe(max_len, d_model, base)
        diff = (pe - ref).abs()
        case = f"with d_model={d_model} and " + ("the paper's base" if base == 10000.0 else f"base={base:g}")
        if diff.max() < 1e-9:
            continue
        if base != 10000.0 and (pe - _pe(max_len, d_model, 10000.0)).abs().max() < 1e-9:
            raise AssertionError("your table does not change with `base`: use it where the paper has its constant")
        if (pe - _pe(max_len, d_model, base, swap=True)).abs().max() < 1e-9:
            raise AssertionError("the sines and the cosines sit in each other's columns: compare with the "
                                 "formula of section 3")
        if diff.max() < 1e-5:
            raise AssertionError("right only to float32 precision: compute in float64 from the start "
                                 "(the check compares to 1e-9)")
        bad_columns = sorted({int(c) for c in torch.nonzero(diff > 1e-9)[:, 1]})
        if 0 not in bad_columns and 1 not in bad_columns:
            raise AssertionError(f"{case}: the first pair of columns is right, but "
                                 f"pairs {sorted({c // 2 for c in bad_columns})} turn at the wrong speed: check "
                                 "the exponent")
        raise AssertionError(f"{case}: column {bad_columns[0]} does not follow the formula of section 3")


# -- Exercise 3 · the encoder's input: embedding rows × √d_model + sinusoidal positions -------------------


def _reference_encoder_input(ids: Tensor, table: Tensor) -> Tensor:
    pe = sinusoidal_positional_encoding(ids.shape[1], table.shape[1], torch.float64)
    return table.double()[ids] * math.sqrt(table.shape[1]) + pe


def check_encoder_input(encoder_input: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01, exercise 3: ``encoder_input(ids, table)`` → ``(batch, seq, d_model)`` in the table's
    dtype, the embedding rows of ``ids`` scaled by √d_model plus the sinusoidal position vectors,
    computed from the formula (in the table's dtype: float64 here, so right to 1e-9)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30, (2, 9), generator=g)
    ids[1, 4] = ids[0, 2]                                                  # one token at two positions
    table = torch.randn(30, 16, generator=g, dtype=torch.float64) / 4      # (vocab, d_model)
    out = encoder_input(ids, table)
    assert isinstance(out, Tensor), f"return a torch.Tensor, got {type(out).__name__}"
    assert tuple(out.shape) == (2, 9, 16), f"shape should be (batch, seq, d_model) = (2, 9, 16), got {tuple(out.shape)}"
    assert out.dtype == table.dtype, f"keep the table's dtype ({table.dtype}), got {out.dtype}"

    positions = encoder_input(ids, torch.zeros_like(table)).double()       # the token part vanishes
    ref_positions = _reference_encoder_input(ids, torch.zeros_like(table))
    assert torch.allclose(positions[0], positions[1], atol=1e-6), \
        "with an all-zero table, both sentences should get the same vectors (positions only); they differ"
    bad = _first_bad((positions[0] - ref_positions[0]).numpy(), 1e-5)
    if bad is not None:
        which = "a sine (even) column" if bad[1] % 2 == 0 else "a cosine (odd) column"
        raise AssertionError(f"with an all-zero table the output should be the position vectors alone; "
                             f"position {bad[0]}, column {bad[1]} ({which}) does not follow the formula")
    if _first_bad((positions[0] - ref_positions[0]).numpy(), 1e-9) is not None:
        raise AssertionError("the position vectors are right only to float32 precision: compute them in the "
                             "table's dtype")

    tokens = (out.double() - positions)                                     # the token part alone
    ref_tokens = table.double()[ids]
    if not torch.allclose(tokens, ref_tokens * math.sqrt(16), atol=1e-9):
        assert torch.allclose(tokens[0, 2], tokens[1, 4], atol=1e-6), \
            "the same token id must get the same token vector wherever it stands; it does not"
        cos = F.cosine_similarity(tokens.flatten(), ref_tokens.flatten(), dim=0).item()
        if cos > 0.9999:
            raise AssertionError("the token vectors point along the right table rows but have the wrong "
                                 "length: check the scale factor of section 2")
        raise AssertionError("the token part is not the table row of each id (scaled): check the lookup")
    bad = _first_bad((out.double() - _reference_encoder_input(ids, table)).numpy(), 1e-9)
    assert bad is None, f"the output at {bad} differs from token vector + position vector"


# -- Exercise 4 · relative positions in closed form ------------------------------------------------------


def check_relative_dot(relative_dot: Callable[[int, int], float]) -> None:
    """Notebook 01, exercise 4: ``relative_dot(k, d_model)`` → ``PE[pos] · PE[pos + k]`` computed without the
    table, compared with the dot products of the table's rows for several ``k`` (negative ones too)."""
    for d_model in (16, 512):
        table = sinusoidal_positional_encoding(400, d_model, torch.float64)   # (400, d_model)
        for k in (0, 1, 7, 100, -7, -100):
            got = relative_dot(k, d_model)
            try:
                got = float(got)
            except (TypeError, ValueError):
                raise AssertionError(f"return one number (a float), got {type(got).__name__}") from None
            assert math.isfinite(got), f"k={k}, d_model={d_model}: your result is not a finite number"
            ref = (table[200] @ table[200 + k]).item()
            if abs(got - ref) < 1e-8:
                continue
            if k == 0 and abs(got) < 1e-9:
                raise AssertionError(f"k=0, d_model={d_model}: your sum is zero, but the dot product of a position "
                                     "vector with itself is its squared length |PE[pos]|², which is not zero")
            if k == 0 and abs(got - 2 * ref) < 1e-8:
                raise AssertionError(f"k=0, d_model={d_model}: your sum is twice |PE[pos]|²; count the terms: "
                                     "one per sine–cosine pair")
            if k == 0:
                raise AssertionError(f"k=0, d_model={d_model}: differs from |PE[pos]|², the dot product of a "
                                     "position vector with itself")
            raise AssertionError(f"k={k}, d_model={d_model}: differs from the table's dot product "
                                 f"PE[pos] · PE[pos {'+' if k > 0 else '-'} {abs(k)}]")
