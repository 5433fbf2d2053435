import json
import unicodedata

import pytest
import torch

from utils.data import load_multi30k
from utils.tokenize import (BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, BPETokenizer, CharTokenizer,
                            WordTokenizer, tokenizer_from_dict)

TEXTS = ["A man in a blue T-shirt is riding a bike.", "Two dogs play in the snow!", "A girl (left) smiles, waving."]


@pytest.fixture(scope="module")
def multi30k():
    return load_multi30k()


@pytest.fixture(scope="module")
def bpe(multi30k):
    return BPETokenizer.train(list(multi30k["train"]["en"])[:5000], vocab_size=1000)


def all_tokenizers(bpe):
    return [CharTokenizer.fit(TEXTS), WordTokenizer.fit(TEXTS), bpe]


def test_special_ids_are_fixed(bpe):
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for tok in all_tokenizers(bpe):
        assert tok.id_to_token[:4] == SPECIAL_TOKENS
        assert [tok.token_to_id[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_on_seen_text(text, bpe):
    for tok in all_tokenizers(bpe):
        ids = tok.encode(text)
        assert UNK_ID not in ids
        assert tok.decode(ids) == text
        wrapped = tok.encode(text, add_special=True)
        assert wrapped[0] == BOS_ID and wrapped[-1] == EOS_ID and wrapped[1:-1] == ids
        assert tok.decode(wrapped + [PAD_ID, PAD_ID]) == text
        assert tok.decode(torch.tensor(wrapped)) == text


def test_bpe_round_trip_on_held_out_sentences(bpe, multi30k):
    held_out = list(multi30k["validation"]["en"])
    assert all(bpe.decode(bpe.encode(s)) == s for s in held_out)
    assert bpe.encode_batch(held_out[:5], add_special=True) == [bpe.encode(s, add_special=True) for s in held_out[:5]]


def test_word_round_trip_on_most_real_captions(multi30k):
    train = list(multi30k["train"]["en"])[:3000]
    tok = WordTokenizer.fit(train)
    exact = sum(tok.decode(tok.encode(s)) == s for s in train) / len(train)
    assert exact > 0.98, exact  # the misses are quotes and ' re: spacing the words cannot recover


@pytest.mark.parametrize("text", [
    "नमस्ते दुनिया, मैं हिंदी सीख रहा हूँ।",                    # Devanagari: vowel signs and virama are marks
    "السَّلَامُ عَلَيْكُمْ، كيف حالك؟",                          # Arabic: harakat are marks
    "mi\u200cخواهم",                                           # a zero-width non-joiner inside a word
    "a family 👨\u200d👩\u200d👧 waves 👋🏽 under 🇩🇪 1️⃣",      # emoji joined by ZWJ, a skin tone, a flag
])
def test_word_tokenizer_keeps_marks_and_emoji_sequences_whole(text):
    tok = WordTokenizer.fit([text])
    assert tok.decode(tok.encode(text)) == text
    assert not any(t[0].isspace() or unicodedata.category(t[0]).startswith("M") or t[0] == "\u200d"
                   for t in tok.tokenize(text)), "no token starts with a mark or a joiner"


def test_word_tokens_of_ordinary_prose_are_unchanged():
    tok = WordTokenizer.fit(TEXTS)
    assert tok.tokenize("A man's T-shirt (blue), 3.5 km/h!") == \
        ["A", "man", "'", "s", "T", "-", "shirt", "(", "blue", ")", ",", "3", ".", "5", "km", "/", "h", "!"]


def test_unknowns_become_unk(bpe):
    char = CharTokenizer.fit(["abc"])
    assert char.encode("abz") == [char.token_to_id["a"], char.token_to_id["b"], UNK_ID]
    assert char.decode(char.encode("abz")) == "ab<unk>"
    word = WordTokenizer.fit(["the cat sat"])
    assert word.encode("the dog sat")[1] == UNK_ID
    assert UNK_ID in bpe.encode("snow ☃")  # a character never seen in training


def test_vocab_order_and_limits():
    tok = WordTokenizer.fit(["b a a c c c"], min_freq=2)
    assert tok.id_to_token[4:] == ["c", "a"]  # most frequent first; "b" is below min_freq
    assert WordTokenizer.fit(["b a a c c c"], max_size=5).id_to_token[4:] == ["c"]
    assert WordTokenizer.fit(["The the"], lowercase=True).id_to_token[4:] == ["the"]
    with pytest.raises(ValueError, match="min_freq"):
        CharTokenizer.fit(["x"], min_freq=0)
    with pytest.raises(ValueError, match="max_size"):
        CharTokenizer.fit(["x"], max_size=4)


def test_bpe_is_deterministic_and_shortens_sequences(multi30k):
    train = list(multi30k["train"]["en"])[:3000]
    a, b = BPETokenizer.train(train, 600), BPETokenizer.train(train, 600)
    assert a.id_to_token == b.id_to_token and a.vocab_size == 600
    big = BPETokenizer.train(train, 3000)
    assert sum(map(len, big.encode_batch(train))) < sum(map(len, a.encode_batch(train)))
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(train, 4)


def test_serialisation_round_trip(bpe):
    for tok in [*all_tokenizers(bpe), WordTokenizer.fit(TEXTS, lowercase=True)]:
        again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))    # plain JSON-able data
        assert type(again) is type(tok) and again.id_to_token == tok.id_to_token
        assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])
        assert tokenizer_from_dict(tok.to_dict()).decode(tok.encode(TEXTS[1])) == tok.decode(tok.encode(TEXTS[1]))


def test_errors():
    tok = CharTokenizer.fit(["ab"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([0, 99])
    with pytest.raises(ValueError, match="must start with"):
        CharTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer([*SPECIAL_TOKENS, "a", "a"])
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({"kind": "sentencepiece"})
