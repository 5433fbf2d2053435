import random

import pytest
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from utils.bleu import corpus_bleu, ngrams, tokenize_13a
from utils.data import load_multi30k

TRICKY = ["A man, 3.5 feet tall, costs $1,000.00!", "Dogs (two) play -- in 1990-1995 &amp; &quot;snow&quot;.",
          "e-mail: x@y.com/z?  ", "It's 5-3.", "Ein Mann isst.\tDann", "   ", "", "end with period .",
          "{curly} [square] `back` ~tilde~ ^caret^ |pipe| 10,5 % <tag> &lt;b&gt;"]


@pytest.fixture(scope="module")
def multi30k_test():
    return load_multi30k()["test"]


def assert_same(hyps, refs_streams):
    ours = corpus_bleu(hyps, refs_streams)
    theirs = sacrebleu.corpus_bleu(hyps, refs_streams)
    assert ours.score == pytest.approx(theirs.score, abs=1e-9), (str(ours), str(theirs))
    assert ours.precisions == pytest.approx(theirs.precisions, abs=1e-9)
    assert ours.bp == pytest.approx(theirs.bp, abs=1e-12)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert ours.matches == list(theirs.counts) and ours.totals == list(theirs.totals)
    return ours, theirs


def test_tokenizer_equals_sacrebleu_13a(multi30k_test):
    tok = Tokenizer13a()
    for line in TRICKY + list(multi30k_test["en"]) + list(multi30k_test["de"]):
        assert tokenize_13a(line) == tok(line.rstrip()).split(), line


def test_ngrams_counts():
    counts = ngrams("the cat the cat".split(), 2)
    assert counts[("the",)] == 2 and counts[("the", "cat")] == 2 and counts[("cat", "the")] == 1
    assert sum(counts.values()) == 4 + 3


def test_equals_sacrebleu_on_noisy_copies_of_multi30k(multi30k_test):
    rng = random.Random(0)
    refs = list(multi30k_test["en"])
    for drop in (0.0, 0.1, 0.3, 0.6):
        hyps = []
        for ref in refs:
            words = [w for w in ref.split() if rng.random() >= drop]
            if rng.random() < 0.2:
                rng.shuffle(words)
            hyps.append(" ".join(words))
        ours, _ = assert_same(hyps, [refs])
        if drop == 0.0:
            assert ours.score > 60
        if drop == 0.6:
            assert ours.bp < 0.5, "much shorter output is penalised"


def test_identical_corpus_scores_100_and_single_stream_form(multi30k_test):
    refs = list(multi30k_test["en"])[:50]
    assert corpus_bleu(refs, refs).score == pytest.approx(100.0)
    assert corpus_bleu(refs, refs).score == corpus_bleu(refs, [refs]).score


def test_edge_cases():
    refs = ["the cat sat on the mat .", "a dog runs in the park", "two people walk"]
    # an empty hypothesis among others, short hypotheses (brevity penalty), hypotheses shorter than 4 words
    assert_same(["the cat sat on the mat .", "", "two people walk"], [refs])
    ours, _ = assert_same(["the cat", "a dog", "two"], [refs])
    assert ours.bp < 0.2 and ours.totals[3] == 0 and ours.score == 0.0, "no 4-grams at all: BLEU is 0"
    ours, _ = assert_same(["the cat sat on a hat .", "a dog runs in a garden", "two people walk slowly"], [refs])
    assert ours.bp == 1.0 and 0 < ours.score < 100
    ours, _ = assert_same(["xyz uvw rst qqq", "foo bar baz qux", "lorem ipsum dolor sit"], [refs])
    assert ours.score == 0.0 and ours.matches == [0, 0, 0, 0], "zero matches"
    assert_same(["", "", ""], [refs])
    # matches at orders 1-2 only: 'exp' smoothing for orders 3 and 4
    ours, _ = assert_same(["cat the mat the sat on", "dog a park the in runs", "walk two people"], [refs])
    assert ours.matches[2] == 0 and ours.precisions[2] > 0
    # clipping: "the the the the" earns the reference's count of "the"
    ours, _ = assert_same(["the the the the the the the", "a dog runs in the park", "two people walk"], [refs])
    assert ours.matches[0] == 2 + 6 + 3


def test_multiple_references():
    hyps = ["the cat is on the mat", "there is a cat here"]
    refs1 = ["the cat sat on the mat", "a cat is here"]
    refs2 = ["there is a cat on the mat", "there is a cat right here"]
    assert_same(hyps, [refs1, refs2])


def test_lowercase_option():
    hyps, refs = ["The Cat sat on THE mat"], ["the cat sat on the mat"]
    assert corpus_bleu(hyps, refs, lowercase=True).score == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score)
    assert corpus_bleu(hyps, refs).score < 100, "cased by default"


def test_errors():
    with pytest.raises(ValueError, match="2 hypotheses but a reference stream of 1"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        corpus_bleu([], [])


def test_str_looks_like_sacrebleu():
    for hyps, refs in [(["the cat sat on a mat today"], ["the cat sat on the mat"]), (["a cat"], ["the cat sat on the mat"])]:
        assert str(corpus_bleu(hyps, refs)) == str(sacrebleu.corpus_bleu(hyps, [refs]))
