"""Text → tokens → ids, and back: character, word and subword (BPE) tokenizers with one interface
and four special tokens at fixed ids: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.

``encode(text, add_special=True)`` wraps the ids in ``<bos>`` … ``<eos>``; ``decode(ids)`` drops them
again. Text is text: ``<eos>`` typed inside a sentence is five characters, never the control id 2.
The word and BPE tokenizers NFC-normalise first ("fa\u0308hrt" and "fährt" give the same tokens).
``to_dict()`` / :func:`tokenizer_from_dict` make a tokenizer plain data that rides in a checkpoint.
The BPE merges come from Hugging Face ``tokenizers``; notebook 01 writes the merge loop by hand.
"""

from __future__ import annotations

import json
import re
import unicodedata

import regex
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from utils import checks

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_SKIPPED_ON_DECODE = {PAD_ID, BOS_ID, EOS_ID}


class Tokenizer:
    """A vocabulary (``id_to_token``, ``token_to_id``); subclasses cut text (``tokenize``) and glue it back."""

    kind = "base"

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            dupes = sorted(t for t, c in Counter(tokens).items() if c > 1)[:5]
            raise ValueError(f"vocabulary has duplicate tokens, e.g. {dupes}")
        self.id_to_token: list[str] = tokens
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def detokenize(self, tokens: Sequence[str]) -> str:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        """Ids of ``text``'s tokens; unknown tokens become ``<unk>`` (id 3). Raises TypeError for a non-string."""
        checks.instance("text", text, str, "a str", hint="for a list of sentences use encode_batch")
        ids = [self.token_to_id.get(t, UNK_ID) for t in self.tokenize(text)]
        return [BOS_ID, *ids, EOS_ID] if add_special else ids

    def encode_batch(self, texts: Iterable[str], add_special: bool = False) -> list[list[int]]:
        """:meth:`encode` of every sentence. Raises TypeError for a single string (or a non-string item)."""
        return [self.encode(t, add_special) for t in checks.strings("texts", texts)]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids`` (ints or a 1-D tensor). ``skip_special`` drops ``<pad> <bos> <eos>``.
        Raises ``TypeError`` if not a flat sequence of ints, ``ValueError`` for an id outside ``0 .. vocab_size - 1``."""
        if isinstance(ids, str) or getattr(ids, "ndim", 1) != 1:
            raise TypeError(f"ids must be a flat sequence of ints or a 1-D tensor, got "
                            f"{type(ids).__name__}{tuple(ids.shape) if hasattr(ids, 'shape') else ''}; "
                            "decode a batch row by row: [tok.decode(row) for row in out]")
        ids = [int(i) for i in checks.int_ids("ids", ids, self.vocab_size)]
        if skip_special:
            ids = [i for i in ids if i not in _SKIPPED_ON_DECODE]
        return self.detokenize([self.id_to_token[i] for i in ids])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": self.id_to_token}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _vocab_from_counts(counts: Counter, min_freq: int, max_size: int | None) -> list[str]:
    checks.positive_int("min_freq", min_freq)
    checks.integer("max_size", max_size, at_least=len(SPECIAL_TOKENS) + 1, allow_none=True,
                   hint=f"room beyond the {len(SPECIAL_TOKENS)} special tokens")
    # Most frequent first; ties broken alphabetically so the vocabulary is deterministic.
    kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIAL_TOKENS),
                  key=lambda t: (-counts[t], t))
    if max_size is not None:
        kept = kept[: max_size - len(SPECIAL_TOKENS)]
    return SPECIAL_TOKENS + kept


class CharTokenizer(Tokenizer):
    """One token per character. Tiny vocabulary, long sequences; the round trip is exact for
    every text whose characters were seen in training."""

    kind = "char"

    @classmethod
    def fit(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> "CharTokenizer":
        """Every character seen ``min_freq`` times in ``texts`` (a list of strings; TypeError for one str)."""
        counts = Counter()
        for t in checks.strings("texts", texts):
            counts.update(t)
        return cls(_vocab_from_counts(counts, min_freq, max_size))

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)


# A word (regex's \w, unlike re's, keeps combining marks and joiners), else one grapheme such as a ZWJ emoji.
_WORD_RE = regex.compile(r"\w+|(?!\s)\X")
_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}।॥،؛؟۔])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")
_JOINERS = re.compile(r" ?([-'/]) ?")


class WordTokenizer(Tokenizer):
    """Words and punctuation marks as tokens (``"T-shirt."`` → ``T - shirt .``): short sequences, a large
    vocabulary, ``<unk>`` for every unseen word. :meth:`detokenize` guesses where the spaces were (none
    before ``.,!?;:`` or the Hindi and Arabic stops, none around ``- ' /``), exact for ordinary prose, not
    for every string. A word keeps its combining marks; an emoji sequence is one token.
    """

    kind = "word"

    def __init__(self, tokens: Sequence[str], lowercase: bool = False):
        super().__init__(tokens)
        self.lowercase = lowercase

    @classmethod
    def fit(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None,
            lowercase: bool = False) -> "WordTokenizer":
        """The words and punctuation marks of ``texts`` (a list of strings; TypeError for one str), NFC."""
        counts = Counter()
        for t in checks.strings("texts", texts):
            t = unicodedata.normalize("NFC", t)
            counts.update(_WORD_RE.findall(t.lower() if lowercase else t))
        return cls(_vocab_from_counts(counts, min_freq, max_size), lowercase=lowercase)

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", text)
        return _WORD_RE.findall(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        text = _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", " ".join(tokens)))
        return _JOINERS.sub(r"\1", text)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "lowercase": self.lowercase}


class BPETokenizer(Tokenizer):
    """Byte-pair-encoding subwords (Hugging Face ``tokenizers``). Each word is prefixed with ``▁`` (the
    Metaspace scheme of SentencePiece), so decoding puts every single space back.
    """

    kind = "bpe"

    def __init__(self, hf: HFTokenizer):
        vocab = hf.get_vocab()
        super().__init__([t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])])
        self.hf = _without_added_tokens(hf)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "BPETokenizer":
        """Learn merges on ``texts`` until the vocabulary holds ``vocab_size`` tokens (or no pair occurs
        ``min_frequency`` times). ValueError: no room beyond the specials; TypeError: a single string."""
        checks.integer("vocab_size", vocab_size, at_least=len(SPECIAL_TOKENS) + 1,
                       hint=f"room beyond the {len(SPECIAL_TOKENS)} special tokens")
        checks.positive_int("min_frequency", min_frequency)
        texts = checks.strings("texts", texts)
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.normalizer = normalizers.NFC()
        hf.pre_tokenizer = pre_tokenizers.Metaspace()
        hf.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=SPECIAL_TOKENS, show_progress=False)
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    def tokenize(self, text: str) -> list[str]:
        return self.hf.encode(text, add_special_tokens=False).tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.hf.decoder.decode(list(tokens))

    def encode_batch(self, texts: Iterable[str], add_special: bool = False) -> list[list[int]]:
        encodings = self.hf.encode_batch(checks.strings("texts", texts), add_special_tokens=False)
        return [[BOS_ID, *e.ids, EOS_ID] if add_special else e.ids for e in encodings]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self.hf.to_str()}


def _without_added_tokens(hf: HFTokenizer) -> HFTokenizer:
    """The same tokenizer without Hugging Face's "added tokens", which would cut the literal text
    ``<eos>`` out of a sentence as the control token; the specials stay in the vocabulary (ids 0-3)."""
    data = json.loads(hf.to_str())
    if not data.get("added_tokens"):
        return hf
    data["added_tokens"] = []
    return HFTokenizer.from_str(json.dumps(data))


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict`'s output. Raises ``ValueError`` for an unknown
    ``kind`` or a dict without the fields it needs, ``TypeError`` for anything but a dict."""
    checks.instance("data", data, dict, "the dict that Tokenizer.to_dict() returned")
    kind = data.get("kind")
    need = {"char": "tokens", "word": "tokens", "bpe": "json"}.get(kind)
    if need is None:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char', 'word' or 'bpe'")
    if need not in data:
        raise ValueError(f"a {kind!r} tokenizer dict needs the key {need!r}; it has {sorted(data)}")
    if kind == "bpe":
        return BPETokenizer(HFTokenizer.from_str(data["json"]))
    tokens = data["tokens"]
    return CharTokenizer(tokens) if kind == "char" else WordTokenizer(tokens, data.get("lowercase", False))
