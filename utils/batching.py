"""Sentence pairs → padded batches for training: length buckets, a token budget, teacher forcing.

Notebook 05 builds each piece and measures why it matters::

    data = TokenBatches(src_ids, tgt_ids, max_tokens=4000)   # lists of ids, <bos> ... <eos> each
    for indices in data.batches(epoch=0):                      # one list of pair indices per batch
        batch = data.collate(indices)                          # Batch(src, tgt_in, tgt_out)
        logits = model(batch.src, batch.tgt_in)                # (batch, tgt_len, vocab), scored on tgt_out

* **Token budget**: ``n`` pairs padded to their longest source ``S`` and target ``T`` cost ``n * max(S, T)``
  tokens; :func:`token_budget_batches` sorts pairs by length and packs up to ``max_tokens`` (paper, 5.1).
* **Teacher forcing**: the decoder reads ``tgt_in = <bos> y1 … yn`` and predicts ``tgt_out = y1 … yn <eos>``.
* **Determinism**: an epoch's batches depend only on ``(seed, epoch)``, so a resumed run sees the
  batches the uninterrupted run would have; ``rank`` / ``world_size`` shard them for DDP.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from utils import checks
from utils.tokenize import BOS_ID, EOS_ID, PAD_ID

__all__ = ["Batch", "pad_sequences", "teacher_forcing", "collate", "token_budget_batches",
           "fixed_size_batches", "padding_fraction", "TokenBatches"]


@dataclass
class Batch:
    """One padded batch. ``src (batch, src_len)``; ``tgt_in`` and ``tgt_out (batch, tgt_len)``."""

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    pad_id: int = 0

    @property
    def n_tokens(self) -> int:
        """Target tokens the loss counts (not padding)."""
        return int((self.tgt_out != self.pad_id).sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device), self.pad_id)


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> Tensor:
    """Lists of ids → ``(len(seqs), longest)`` long tensor, each row padded on the right.
    Raises ``ValueError`` for no sequences, an empty one, or a ``pad_id`` that is also a token id in them;
    ``TypeError`` for text, float or bool ids (they would be cut to integers)."""
    if isinstance(seqs, (str, Tensor)) or not hasattr(seqs, "__len__"):
        raise TypeError(f"seqs must be a list of id lists, got {type(seqs).__name__}")
    checks.integer("pad_id", pad_id, at_least=0, hint=f"the tokenizer's <pad> id, {PAD_ID}")
    if len(seqs) == 0:
        raise ValueError("cannot pad an empty list of sequences")
    seqs = [checks.int_ids(f"seqs[{i}]", s) for i, s in enumerate(seqs)]
    lengths = [len(s) for s in seqs]
    if min(lengths) == 0:
        raise ValueError(f"sequence {lengths.index(0)} is empty; encode with add_special=True so every "
                         "sentence holds at least <bos> and <eos>")
    out = torch.full((len(seqs), max(lengths)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    if int((out == pad_id).sum()) != out.numel() - sum(lengths):
        raise ValueError(f"pad_id={pad_id} is a token id in seqs too: padding could not be told from it; use {PAD_ID}")
    return out


def teacher_forcing(tgt: Tensor) -> tuple[Tensor, Tensor]:
    """``(batch, T)`` padded targets ``<bos> y1 … yn <eos> <pad>…`` → ``(tgt_in, tgt_out)``, each
    ``(batch, T - 1)``: the decoder reads ``tgt_in[:, t]`` and must predict ``tgt_out[:, t] = tgt[:, t + 1]``.
    Raises ``ValueError`` if ``tgt`` is not 2-D with at least two columns (``<bos>`` and one more token)."""
    if checks.tensor("targets", tgt, dtype="int").dim() != 2 or tgt.shape[1] < 2:
        raise ValueError(f"targets must be (batch, T >= 2) ids such as <bos> ... <eos>, got shape {tuple(tgt.shape)}")
    return tgt[:, :-1], tgt[:, 1:]


def collate(src_seqs: Sequence[Sequence[int]], tgt_seqs: Sequence[Sequence[int]], pad_id: int = 0) -> Batch:
    """Pad source and target id lists into a :class:`Batch` (targets shifted for teacher forcing). Raises
    ``ValueError`` for lists of different lengths or a target not ``<bos> … <eos>`` (or what :func:`pad_sequences` refuses)."""
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(f"{len(src_seqs)} sources but {len(tgt_seqs)} targets; pairs must line up")
    if bad := [i for i, t in enumerate(tgt_seqs) if len(t) < 2 or t[0] != BOS_ID or t[-1] != EOS_ID]:
        raise ValueError(f"tgt_seqs[{bad[0]}] is not <bos> ... <eos> (ids {BOS_ID} ... {EOS_ID}); encode with add_special=True")
    tgt_in, tgt_out = teacher_forcing(pad_sequences(tgt_seqs, pad_id))
    return Batch(pad_sequences(src_seqs, pad_id), tgt_in, tgt_out, pad_id)


def token_budget_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], max_tokens: int,
                         seed: int = 0, shuffle: bool = True) -> list[list[int]]:
    """Group pair indices into batches of similar length costing at most ``max_tokens`` each; returns a
    list of batches, each a list of indices into the pairs (every index in exactly one).

    The pairs are shuffled (``seed``), sorted stably by (source length, target length) and cut
    greedily: a batch grows while ``n * max(S, T) <= max_tokens`` (``S``, ``T``: its longest source
    and target). With ``shuffle`` the batches' order is shuffled too.
    Raises ``ValueError`` for lengths of different counts or below 0, a non-positive ``max_tokens``, or a pair
    longer than ``max_tokens`` on its own (the message names it and the fix); ``TypeError`` for a length not an int."""
    if len(src_lens) != len(tgt_lens):
        raise ValueError(f"{len(src_lens)} source lengths but {len(tgt_lens)} target lengths")
    checks.positive_int("max_tokens", max_tokens)
    for name, lens in (("src_lens", src_lens), ("tgt_lens", tgt_lens)):   # the message for the first bad one
        bad = next((i for i, n in enumerate(lens) if type(n) is not int or n < 0), None)
        if bad is not None:
            checks.integer(f"{name}[{bad}]", lens[bad], at_least=0, hint="a sentence length")
    longest = [max(s, t) for s, t in zip(src_lens, tgt_lens)]
    too_long = [i for i, n in enumerate(longest) if n > max_tokens]
    if too_long:
        raise ValueError(f"pair {too_long[0]} has {longest[too_long[0]]} tokens, more than max_tokens={max_tokens} "
                         f"({len(too_long)} such pairs); raise max_tokens or drop pairs longer than it")
    rng = random.Random(seed)
    order = list(range(len(longest)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: (src_lens[i], tgt_lens[i]))        # stable: ties keep the random order
    batches, current, width = [], [], 0
    for i in order:
        if current and (len(current) + 1) * max(width, longest[i]) > max_tokens:
            batches.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, longest[i])
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def fixed_size_batches(n: int, batch_size: int, seed: int = 0, shuffle: bool = True) -> list[list[int]]:
    """The naive way, for comparison: ``batch_size`` random pairs a batch, whatever their lengths.
    Raises ``ValueError`` for a negative ``n`` or a ``batch_size`` that is not a positive int."""
    checks.positive_int("batch_size", batch_size)
    checks.integer("n", n, at_least=0, hint="the number of pairs")
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the padded ``(batch, longest)`` positions that are padding, over all batches. Raises
    ``ValueError`` for an empty batch, an index outside ``lengths`` or a negative length."""
    if any(len(b) == 0 for b in batches):
        raise ValueError("batches hold an empty batch; every batch needs at least one index")
    if bad := [i for b in batches for i in b if not 0 <= i < len(lengths)]:
        raise ValueError(f"index {bad[0]} is outside lengths (0 .. {len(lengths) - 1}); pass the lengths of the same corpus")
    lengths = [checks.integer(f"lengths[{i}]", n, at_least=0) for i, n in enumerate(lengths)]
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1.0 - real / total if total else 0.0


class TokenBatches:
    """A parallel corpus of id lists, served as token-budget batches epoch by epoch.

    Args:
        src_ids, tgt_ids: one id list per sentence; targets ``<bos> … <eos>`` (``add_special=True``).
        max_tokens: the budget of :func:`token_budget_batches`; ``seed`` and the epoch fix its batches.
        shuffle: False gives one fixed, sorted order (for evaluation).
        rank, world_size: this process's shard; every process gets the same number of batches (the
            few left over are dropped for that epoch).

    Raises ``ValueError`` for corpora of different sizes, an empty corpus or sentence, a target that is not
    ``<bos> … <eos>``, a ``pad_id`` found in a sentence, a ``world_size`` below 1 or a ``rank`` outside
    ``0 .. world_size - 1``; ``TypeError`` for text, float or bool ids instead of integer id lists."""

    def __init__(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], max_tokens: int,
                 pad_id: int = 0, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} source sentences but {len(tgt_ids)} targets; pairs must line up")
        if len(src_ids) == 0:
            raise ValueError("the corpus is empty")
        checks.positive_int("world_size", world_size, hint="the number of processes")
        for name, v in (("rank", rank), ("seed", seed), ("pad_id", pad_id)):
            checks.integer(name, v, at_least=0 if name == "pad_id" else None)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0 .. world_size - 1 = {world_size - 1}, got {rank}")
        for name, corpus in (("src_ids", src_ids), ("tgt_ids", tgt_ids)):
            for i, ids in enumerate(corpus):            # text, float or bool ids are refused here
                ids = checks.int_ids(f"{name}[{i}]", ids)
                why = ("is empty" if len(ids) == 0 else f"holds pad_id={pad_id}, so padding could not be told from it"
                       if pad_id in ids else "" if name == "src_ids" or len(ids) > 1 and ids[0] == BOS_ID and
                       ids[-1] == EOS_ID else f"is not <bos> ... <eos> (ids {BOS_ID} ... {EOS_ID}), which teacher "
                       "forcing needs: the decoder starts from <bos> and learns to stop at <eos>")
                if why:
                    raise ValueError(f"{name}[{i}] {why}; encode with add_special=True and pad with <pad> ({PAD_ID})")
        self.src_ids, self.tgt_ids = list(src_ids), list(tgt_ids)
        self.max_tokens, self.pad_id, self.shuffle, self.seed = max_tokens, pad_id, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self._cache: tuple[int, list[list[int]]] | None = None
        if len(self.batches(0)) == 0:
            raise ValueError(f"{len(src_ids)} pairs make fewer batches than world_size={world_size}")

    def batches(self, epoch: int) -> list[list[int]]:
        """This process's batches for ``epoch`` (lists of pair indices); the same on every call."""
        if self._cache is None or self._cache[0] != epoch:
            every = token_budget_batches([len(s) for s in self.src_ids], [len(t) for t in self.tgt_ids],
                                         self.max_tokens, seed=self.seed * 100_003 + epoch, shuffle=self.shuffle)
            usable = len(every) - len(every) % self.world_size
            self._cache = (epoch, every[self.rank:usable:self.world_size])
        return self._cache[1]

    def __len__(self) -> int:
        """Batches per epoch for this process. The same every epoch: sorting fixes the sequence of
        lengths, and shuffling only changes which pairs of equal lengths share a batch."""
        return len(self.batches(0))

    def collate(self, indices: Sequence[int]) -> Batch:
        return collate([self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices], self.pad_id)

    def __iter__(self):
        """The batches of epoch 0 as :class:`Batch` objects (handy for evaluation)."""
        return (self.collate(b) for b in self.batches(0))
