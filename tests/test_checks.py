"""utils.checks: every helper passes good values (NumPy scalars too) and refuses bad ones with a message that
names the argument, what it expects and what it got."""

import math
import re

import numpy as np
import pytest
import torch

from utils import checks
from utils.checks import ArgumentTypeError


def test_argument_type_error_is_both_kinds():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_positive_int_accepts(value):
    out = checks.positive_int("d_model", value)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-2, ValueError), (2.0, ArgumentTypeError),
                                        (True, ArgumentTypeError), ("8", ArgumentTypeError),
                                        (None, ArgumentTypeError), (np.float64(2), ArgumentTypeError)])
def test_positive_int_refuses(value, exc):
    with pytest.raises(exc, match=re.escape(f"d_model must be a positive integer, got {value!r}")):
        checks.positive_int("d_model", value)


def test_positive_int_hint_and_none():
    assert checks.positive_int("limit", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"limit must be a positive integer or None, got 0; pairs per split"):
        checks.positive_int("limit", 0, hint="pairs per split", allow_none=True)


def test_integer_ranges():
    assert checks.integer("n", 0, at_least=0) == 0
    assert checks.integer("rank", np.int64(1), at_least=0, below=2) == 1
    assert checks.integer("seed", -5) == -5
    with pytest.raises(ValueError, match=r"n must be an integer >= 0, got -1"):
        checks.integer("n", -1, at_least=0)
    with pytest.raises(ValueError, match=r"rank must be an integer in 0 \.\. 1, got 2"):
        checks.integer("rank", 2, at_least=0, below=2)
    with pytest.raises(ArgumentTypeError, match="seed must be an integer, got 1.5"):
        checks.integer("seed", 1.5)


@pytest.mark.parametrize("value", [0.5, 3, np.float32(0.25), np.float64(1e-9), np.int64(2)])
def test_positive_accepts(value):
    out = checks.number("lr", value, above=0)
    assert out == pytest.approx(float(value)) and type(out) is float


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                        (math.inf, ValueError), (True, ArgumentTypeError), ("1e-3", ArgumentTypeError),
                                        (None, ArgumentTypeError), (torch.tensor(0.1), ArgumentTypeError)])
def test_positive_refuses(value, exc):
    with pytest.raises(exc, match=r"lr must be positive \(a finite number > 0\), got "):
        checks.number("lr", value, above=0)


def test_number_bounds_and_messages():
    assert checks.number("temperature", 0, at_least=0) == 0.0
    assert checks.number("clip_norm", None, above=0, allow_none=True) is None
    assert checks.number("epsilon", 1, at_least=0, at_most=1) == 1.0
    with pytest.raises(ValueError, match=r"temperature must be >= 0 \(a finite number\), got -0.5"):
        checks.number("temperature", -0.5, at_least=0)
    with pytest.raises(ValueError, match=r"epsilon must be a finite number >= 0 and <= 1, got 1.5"):
        checks.number("epsilon", 1.5, at_least=0, at_most=1)
    with pytest.raises(ValueError, match=r"carve_fraction must be a finite number > 0 and < 0.5, got 0.5"):
        checks.number("carve_fraction", 0.5, above=0, below=0.5)
    with pytest.raises(ValueError, match=r"clip_norm must be positive .*, or None, got 0"):
        checks.number("clip_norm", 0, above=0, allow_none=True)


@pytest.mark.parametrize("p", [0, 0.0, 0.1, 0.999, np.float32(0.3)])
def test_probability_accepts(p):
    assert checks.probability("dropout", p) == pytest.approx(float(p))


@pytest.mark.parametrize("p, exc", [(1.0, ValueError), (-0.1, ValueError), (math.nan, ValueError),
                                    (None, ArgumentTypeError), ("0.1", ArgumentTypeError), (False, ArgumentTypeError)])
def test_probability_refuses(p, exc):
    with pytest.raises(exc, match=r"dropout must be a probability in \[0, 1\), got .*; use 0.0 to switch it off"):
        checks.probability("dropout", p)


def test_one_of():
    assert checks.one_of("reduction", "sum", ("mean", "sum")) == "sum"
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'avg'"):
        checks.one_of("reduction", "avg", ("mean", "sum"))
    with pytest.raises(ValueError, match="kind must be one of 'char', 'word', 'bpe', got None"):
        checks.one_of("kind", None, ("char", "word", "bpe"))


def test_instance():
    assert checks.instance("norm_first", False, bool, "True or False") is False
    with pytest.raises(ArgumentTypeError, match=r"norm_first must be True or False, got 'yes'"):
        checks.instance("norm_first", "yes", bool, "True or False")
    with pytest.raises(TypeError, match=r"model must be an nn.Module, got generator; pass the model itself"):
        checks.instance("model", (p for p in []), torch.nn.Module, "an nn.Module", hint="pass the model itself")


def test_tensor_accepts():
    x = torch.zeros(2, 3)
    assert checks.tensor("q", x, ndim=2, dtype="float") is x
    assert checks.tensor("mask", torch.ones(3, dtype=torch.bool), ndim=(1, 2)) is not None
    assert checks.tensor("ids", torch.tensor([[1, 2]]), ndim=2, dtype="int", shape="(batch, seq)") is not None


def test_tensor_refuses():
    with pytest.raises(ArgumentTypeError, match=r"q must be a torch.Tensor, got list; wrap it: torch.as_tensor\(q\)"):
        checks.tensor("q", [[1.0]])
    with pytest.raises(ValueError, match=r"ids must be \(batch, seq\), got shape \(2,\)"):
        checks.tensor("ids", torch.tensor([1, 2]), ndim=2, shape="(batch, seq)")
    with pytest.raises(ValueError, match=r"mask must be 2 or 3-D, got shape \(4,\)"):
        checks.tensor("mask", torch.ones(4), ndim=(2, 3))
    with pytest.raises(TypeError, match=r"q must be a floating-point tensor, got torch.int64; use q.float\(\)"):
        checks.tensor("q", torch.tensor([1]), dtype="float")
    for bad in (torch.float32, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match=rf"ids must hold integer token ids .*got {bad}; use ids.long\(\)"):
            checks.tensor("ids", torch.zeros(2, dtype=bad), dtype="int")


def test_int_ids_accepts():
    assert checks.int_ids("ids", (1, np.int64(2), 3)) == [1, 2, 3]
    assert checks.int_ids("ids", list(torch.tensor([4, 5]))) == [4, 5]                  # 0-d tensors
    with pytest.raises(ArgumentTypeError, match=r"ids\[0\] is 4.0, not an integer token id"):
        checks.int_ids("ids", list(torch.tensor([4.0, 5.0])))
    assert checks.int_ids("ids", [], vocab_size=5) == []
    t = torch.tensor([[0, 4]])
    assert checks.int_ids("ids", t, vocab_size=5) is t
    a = np.array([1, 2], dtype=np.uint8)
    assert checks.int_ids("ids", a) is a


@pytest.mark.parametrize("ids, pattern", [
    ([1, 2.0], r"ids\[1\] is 2.0, not an integer token id"),
    ([True, 1], r"ids\[0\] is True, not an integer token id"),
    ("abc", r"ids must be a sequence of integer token ids, got 'abc'; encode the text first"),
    (5, r"ids must be a sequence of integer token ids, got 5"),
    (torch.tensor([1.5]), r"ids must hold integer token ids .*got torch.float32; use ids.long\(\)"),
    (np.array([1.0]), r"ids must hold integer token ids .*got float64; use ids.astype\(int\)"),
    (np.array([True]), r"ids must hold integer token ids .*got bool"),
])
def test_int_ids_refuses_non_integers(ids, pattern):
    with pytest.raises(ArgumentTypeError, match=pattern):
        checks.int_ids("ids", ids)


@pytest.mark.parametrize("ids", [[0, 5], [-1, 2], torch.tensor([[1, 9]]), np.array([7])])
def test_int_ids_refuses_ids_outside_the_vocabulary(ids):
    with pytest.raises(ValueError, match=r"ids hold ids .* outside the vocabulary 0 \.\. 4"):
        checks.int_ids("ids", ids, vocab_size=5)


def test_strings():
    assert checks.strings("texts", ("a cat", "a dog")) == ["a cat", "a dog"]
    assert checks.strings("texts", (t for t in ["x"])) == ["x"]
    with pytest.raises(ArgumentTypeError, match=r"hypotheses must be a list of sentences, got a single str .*"
                                                r"wrap it in a list: \[hypotheses\]"):
        checks.strings("hypotheses", "a cat sat")
    with pytest.raises(ArgumentTypeError, match="texts must be a list of sentences, got a single bytes"):
        checks.strings("texts", b"a cat")
    with pytest.raises(ArgumentTypeError, match="texts must be a list of sentences, got 3"):
        checks.strings("texts", 3)
    with pytest.raises(ArgumentTypeError, match=r"hyps\[1\] is a list, not a str; decode ids first"):
        checks.strings("hyps", ["a", [1, 2]], hint="decode ids first")


def test_heads_divide():
    checks.heads_divide(512, 8)
    with pytest.raises(ValueError, match=r"n_heads=5 does not divide d_model=512; pick a divisor such as 1, 2, 4, 8, 16"):
        checks.heads_divide(512, 5)


def test_messages_are_long_enough_to_say_what_to_do():
    """tests/test_bad_inputs.py asks for more than 25 characters; even a short argument name gets them."""
    for thunk in (lambda: checks.positive_int("n", 0), lambda: checks.number("lr", math.nan),
                  lambda: checks.one_of("mode", "x", ("a", "b")), lambda: checks.probability("p", 2)):
        with pytest.raises(ValueError) as err:
            thunk()
        assert len(str(err.value)) > 25


def test_scores_refuse_a_single_string_instead_of_sentences():
    """A str is a sequence of characters: scored as one, it would give a wrong answer without a word."""
    from utils.bleu import corpus_bleu
    from utils.bonus.squad import squad_scores

    for thunk, name in ((lambda: corpus_bleu("a cat sat", ["a cat sat"]), "hypotheses"),
                        (lambda: corpus_bleu(["a cat sat"], "a cat sat"), "references"),
                        (lambda: squad_scores("ab", ["a", "b"]), "predictions"),
                        (lambda: squad_scores(["a", "b"], "ab"), "references")):
        with pytest.raises(TypeError, match=rf"{name} must be a list of sentences, got a single str"):
            thunk()


def test_token_ids_are_never_floats_or_bools():
    from utils.decode import greedy_decode
    from utils.model import make_model
    from utils.tokenize import CharTokenizer

    tok = CharTokenizer.fit(["ab"])
    with pytest.raises(TypeError, match=r"ids\[0\] is True, not an integer token id"):
        tok.decode([True, 4])
    model = make_model(12, 12, n_layers=1, d_model=8, n_heads=2, d_ff=16, max_len=16)
    with pytest.raises(TypeError, match="src_ids must hold integer token ids"):
        greedy_decode(model, torch.tensor([[1, 5, 2]]).bool(), 4)
    config = make_model(np.int64(12), 12, n_layers=1, d_model=np.int64(8), n_heads=2, d_ff=16).config
    assert config["d_model"] == 8 and type(config["d_model"]) is int and type(config["src_vocab"]) is int
