"""A decoder-only language model (GPT) built from the encoder–decoder's pieces, with a KV cache.

Notebook 08 builds it step by step. A GPT block *is* :class:`utils.model.EncoderLayer` in pre-LN
order (masked self-attention + feed-forward, each in a :class:`~utils.layers.SublayerConnection`)
run with :func:`~utils.attention.causal_mask`; there is no encoder, so no cross-attention::

    model = make_gpt(vocab_size=65, context=128, n_layers=4, d_model=128, n_heads=4)
    logits = model(ids)                                    # (batch, seq, vocab), seq <= context
    out = generate(model, prompt, 200, temperature=0.8, top_k=20, generator=g)   # KV cache on
    out2 = generate(model, prompt, 200, temperature=0.8, top_k=20, generator=g2, use_cache=False)
    opt = gpt_optimizer(model, lr=2e-3)                    # training: utils.train.train, the one loop
    state = train(model, RandomWindows(train_ids, 32, 128), opt, WarmupCosine(opt, 2e-3, 100, total_steps=1000),
                  loss_fn=next_token_loss, max_steps=1000, clip_norm=1.0)
    val = evaluate_loss(model, val_ids)                    # mean next-token cross-entropy, nats

**The KV cache.** Generating token ``t + 1`` needs attention from position ``t`` to the keys and values
of positions ``0..t``. Those of ``0..t-1`` were computed at the previous steps and do not change
(causal mask: a position never sees later ones), so :class:`~utils.kv_cache.KVCache` keeps them and
each step runs the model on the ONE new token. :func:`~utils.kv_cache.cached_self_attention` (both
live in :mod:`utils.kv_cache`, since the encoder–decoder decodes with them too) does this with the same
:class:`~utils.attention.MultiHeadAttention` module (its ``in_proj_weight``/``in_proj_bias`` and
``out_proj``) and PyTorch's fused ``F.scaled_dot_product_attention`` (the kernel the module's
``need_weights=False`` path calls), so the cached and uncached paths share every weight.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils import checks
from utils.attention import causal_mask
from utils.embeddings import LearnedPositionalEmbedding, PositionalEncoding, TokenEmbedding
from utils.kv_cache import KVCache, cached_self_attention
from utils.layers import LayerNorm
from utils.model import EncoderLayer

__all__ = ["GPT", "make_gpt", "sample_next", "generate", "random_windows", "evaluate_loss", "Windows",
           "RandomWindows", "next_token_loss", "gpt_optimizer"]


# -- the model --------------------------------------------------------------------------------------
class GPT(nn.Module):
    """Token embeddings + positions → ``n_layers`` pre-LN blocks with a causal mask → LayerNorm
    → a linear layer to the vocabulary. Build it with :func:`make_gpt`, which records ``config``.

    ``blocks[i]`` is a :class:`utils.model.EncoderLayer` (``norm_first=True``): the same
    :class:`~utils.attention.MultiHeadAttention`, feed-forward network and sub-layer wrapper as the
    encoder–decoder. Position ``t``'s logits predict token ``t + 1`` from tokens ``0..t``.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        c = self.config = dict(config)
        d = c["d_model"]
        self.context = c["context"]
        self.tok_embed = TokenEmbedding(c["vocab_size"], d)                     # ids → vectors · √d_model
        if c["positions"] == "learned":                                         # GPT-1/2: a vector per position
            self.pos_embed = LearnedPositionalEmbedding(d, c["context"], c["dropout"])
        else:                                                                   # the paper's sinusoids
            self.pos_embed = PositionalEncoding(d, c["context"], c["dropout"])
        self.blocks = nn.ModuleList([EncoderLayer(d, c["n_heads"], c["d_ff"], c["dropout"], norm_first=True)
                                     for _ in range(c["n_layers"])])
        self.norm = LayerNorm(d)                                                # pre-LN needs a final norm
        self.head = nn.Linear(d, c["vocab_size"])                               # logits

    def _check(self, ids: Tensor, past: int) -> None:
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, seq) token ids, got shape {tuple(ids.shape)}; "
                             f"for one sequence use ids[None]")
        end = past + ids.shape[1]
        if end > self.context:
            where = f"{past} cached + {ids.shape[1]} new" if past else f"{ids.shape[1]}"
            raise ValueError(
                f"{where} positions exceed the model's context of {self.context} (config['context']): "
                f"it was built and trained for positions 0..{self.context - 1} only. Crop the input to its last "
                f"{self.context - past} tokens (ids[:, -{self.context - past}:]) or build the model with "
                f"context >= {end}")

    def embed(self, ids: Tensor, start: int = 0) -> Tensor:
        """``(batch, seq)`` ids at positions ``start .. start + seq - 1`` → ``(batch, seq, d_model)``."""
        x = self.tok_embed(ids)                                                 # (batch, seq, d_model)
        if isinstance(self.pos_embed, LearnedPositionalEmbedding):
            pos = self.pos_embed.embedding(torch.arange(start, start + ids.shape[1], device=ids.device))
        else:
            pos = self.pos_embed.pe[start: start + ids.shape[1]]               # (seq, d_model)
        return self.pos_embed.dropout(x + pos.to(x.dtype))

    def forward(self, ids: Tensor, cache: KVCache | None = None) -> Tensor:
        """Logits ``(batch, seq, vocab)`` for ids ``(batch, seq)``.

        Without ``cache``: the whole sequence, causal mask, every block's
        ``MultiHeadAttention(need_weights=False)``. With a :class:`KVCache`: ``ids`` are the NEXT
        positions after the ``cache.length`` cached ones; their keys and values are appended.

        Raises:
            ValueError: ids that are not 2-D, or more positions (cached + new) than ``context``.
            TypeError / ValueError: non-integer ids or ids outside the vocabulary (from TokenEmbedding).
        """
        past = cache.length if cache is not None else 0
        self._check(ids, past)
        x = self.embed(ids, past)                                               # (batch, seq, d_model)
        if cache is None:
            mask = causal_mask(ids.shape[1], ids.device)                        # (seq, seq)
            for block in self.blocks:
                x = block(x, mask)
        else:
            for i, block in enumerate(self.blocks):
                x = block.sublayers[0](x, lambda h, a=block.self_attn, i=i: cached_self_attention(a, h, cache, i))
                x = block.sublayers[1](x, block.ffn)
        return self.head(self.norm(x))                                          # (batch, seq, vocab)


def make_gpt(vocab_size: int, context: int = 128, n_layers: int = 4, d_model: int = 128, n_heads: int = 4,
             d_ff: int | None = None, dropout: float = 0.0, positions: str = "sinusoidal") -> GPT:
    """A GPT with the whole configuration in one place.

    Args:
        vocab_size: number of token ids.
        context: the longest sequence (learned positions 0..context-1).
        n_layers, d_model, n_heads: blocks, width, heads (``n_heads`` must divide ``d_model``).
        d_ff: feed-forward width; default ``4 * d_model`` (as GPT and the paper).
        dropout: on embeddings, attention weights, sub-layer outputs and inside the FFN.
        positions: ``"sinusoidal"`` (the paper's fixed table, :class:`~utils.embeddings.PositionalEncoding`)
            or ``"learned"`` (GPT's, :class:`~utils.embeddings.LearnedPositionalEmbedding`).

    Initialisation: as :func:`utils.model.make_model` (Xavier-uniform matrices in the blocks and the
    output layer, ``N(0, 1/d_model)`` token embeddings, zero output bias).

    Raises:
        ValueError: non-positive sizes, ``n_heads`` not dividing ``d_model``, dropout outside [0, 1),
            an unknown ``positions``.
    """
    checks.one_of("positions", positions, ("sinusoidal", "learned"))
    vocab_size, context, n_layers, d_model, n_heads = (checks.positive_int(name, v) for name, v in (
        ("vocab_size", vocab_size), ("context", context), ("n_layers", n_layers), ("d_model", d_model),
        ("n_heads", n_heads)))
    d_ff = 4 * d_model if d_ff is None else checks.positive_int("d_ff", d_ff)
    checks.heads_divide(d_model, n_heads)
    checks.probability("dropout", dropout)
    config = dict(vocab_size=vocab_size, context=context, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                  d_ff=d_ff, dropout=float(dropout), positions=positions)
    model = GPT(config)
    for p in model.blocks.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    nn.init.xavier_uniform_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


# -- sampling and generation ------------------------------------------------------------------------
def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None, *, top_p: float | None = None) -> Tensor:
    """Draw one token per row from ``softmax(logits / temperature)``, restricted to the ``top_k`` best
    and to the nucleus of mass ``top_p``.

    Args:
        logits: ``(batch, vocab)``.
        temperature: > 0 divides the logits (below 1 sharpens, above 1 flattens); 0 means greedy
            (``argmax``, no random number drawn).
        top_k: keep only the ``top_k`` largest logits (``None`` keeps all; larger than the vocabulary
            keeps all). ``top_k=1`` is greedy.
        generator: a ``torch.Generator`` on the logits' device, for repeatable draws.
        top_p: nucleus sampling (Holtzman et al., 2020): keep the smallest set of likeliest tokens
            whose probabilities (after the temperature and ``top_k``) add up to at least ``top_p``;
            a token is kept when the tokens likelier than it hold less than ``top_p``. ``None`` or 1
            keeps all.

    Returns:
        ``(batch,)`` token ids (``torch.long``).

    Raises:
        ValueError: logits not 2-D, a negative or non-finite temperature, ``top_k < 1``, or
            ``top_p`` outside (0, 1].
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, vocab), got shape {tuple(logits.shape)}; take logits[:, -1]")
    checks.number("temperature", temperature, at_least=0, hint="0 = greedy")
    checks.positive_int("top_k", top_k, allow_none=True, hint="top_k=1 is greedy")
    checks.number("top_p", top_p, above=0, at_most=1, allow_none=True, hint="1 keeps every token")
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature                                       # (batch, vocab)
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]                         # (batch, 1): the k-th largest
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        ranked, order = scaled.sort(dim=-1, descending=True)                    # (batch, vocab), likeliest first
        p_ranked = ranked.softmax(dim=-1)
        outside = p_ranked.cumsum(dim=-1) - p_ranked >= top_p                   # the likelier ones already hold top_p
        scaled = scaled.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    probs = scaled.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)          # (batch,)


@torch.no_grad()
def generate(model: GPT, ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True, top_p: float | None = None) -> Tensor:
    """Extend every prompt by ``max_new_tokens`` tokens, one at a time (see :func:`sample_next`).

    ``use_cache=True`` runs the prompt once, then the model on ONE new token per step with a
    :class:`KVCache`; ``use_cache=False`` re-runs the model on the whole sequence so far (its last
    ``context`` tokens) every step. Both give the same tokens for the same ``generator`` state. The
    model is run in evaluation mode (no dropout) and its mode is restored afterwards.

    Args:
        model: a :class:`GPT`.
        ids: prompts ``(batch, prompt_len)``, ``prompt_len >= 1``.
        max_new_tokens: tokens to add (>= 0).

    Returns:
        ``(batch, prompt_len + max_new_tokens)``: the prompts followed by the new tokens.

    Raises:
        ValueError: an empty prompt, a negative ``max_new_tokens``, or, with ``use_cache=True``,
            ``prompt_len + max_new_tokens > context`` (the cache cannot slide: every cached key
            belongs to a fixed position). Without the cache a longer text is fine.
    """
    if ids.dim() != 2 or ids.shape[1] < 1:
        raise ValueError(f"ids must be (batch, prompt_len) with prompt_len >= 1, got shape {tuple(ids.shape)}")
    checks.integer("max_new_tokens", max_new_tokens, at_least=0)
    prompt_len, context = ids.shape[1], model.context
    if use_cache and prompt_len + max_new_tokens > context:
        raise ValueError(
            f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} = {prompt_len + max_new_tokens} "
            f"positions exceeds the model's context of {context}; a KV cache cannot slide past it (each cached key "
            f"belongs to a fixed position). Ask for at most {max(context - prompt_len, 0)} new tokens, shorten the "
            f"prompt, or pass use_cache=False, which re-reads the last {context} tokens at every step")
    was_training = model.training
    model.eval()
    try:
        out = ids
        if max_new_tokens == 0:
            return out
        cache = KVCache() if use_cache else None
        logits = model(ids if use_cache else ids[:, -context:], cache)[:, -1]   # (batch, vocab)
        for step in range(max_new_tokens):
            next_id = sample_next(logits, temperature, top_k, generator, top_p=top_p)[:, None]  # (batch, 1)
            out = torch.cat([out, next_id], dim=1)
            if step + 1 < max_new_tokens:
                logits = (model(next_id, cache) if use_cache else model(out[:, -context:]))[:, -1]
        return out
    finally:
        model.train(was_training)


# -- data, evaluation, training ---------------------------------------------------------------------
def random_windows(data: Tensor, batch_size: int, context: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``batch_size`` random windows of a 1-D id tensor: inputs and the same shifted by one.

    Returns:
        ``(x, y)``, each ``(batch_size, context)``: ``y[:, t] = data[start + t + 1]`` is the token
        that follows ``x[:, t] = data[start + t]``.

    Raises:
        ValueError: ``data`` not 1-D or shorter than ``context + 1``.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if data.numel() < context + 1:
        raise ValueError(f"data holds {data.numel()} tokens; a window of context={context} needs "
                         f"{context + 1} (inputs + one target); use a shorter context or more text")
    starts = torch.randint(0, data.numel() - context, (batch_size,), generator=generator)     # (batch,)
    windows = data[starts[:, None] + torch.arange(context + 1)]                # (batch, context + 1)
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def evaluate_loss(model: GPT, data: Tensor, context: int | None = None, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats per token) over ALL of ``data``.

    ``data`` (1-D ids) is cut into consecutive windows of ``context + 1`` tokens overlapping by one,
    so every token but the first is predicted exactly once, from up to ``context`` tokens before it
    (the start of each window sees less; a sliding window would see more and cost ``context`` times
    as much). Runs in evaluation mode and restores the model's mode.

    Raises:
        ValueError: ``data`` not 1-D or with fewer than 2 tokens, or ``context`` above the model's.
    """
    context = model.context if context is None else context
    if checks.positive_int("context", context, hint="or None for the model's") > model.context:
        raise ValueError(f"context={context} exceeds the model's context of {model.context}")
    checks.positive_int("batch_size", batch_size)
    checks.tensor("data", data, dtype="int")
    if data.dim() != 1 or data.numel() < 2:
        raise ValueError(f"data must be a 1-D tensor of at least 2 token ids, got shape {tuple(data.shape)}")
    device = next(model.parameters()).device
    n_full = (data.numel() - 1) // context
    starts = torch.arange(n_full) * context
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, n_full, batch_size):
            idx = starts[i: i + batch_size, None] + torch.arange(context + 1)  # (b, context + 1)
            w = data[idx].to(device)
            logits = model(w[:, :-1])
            total += F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="sum").item()
            count += w[:, 1:].numel()
        tail = data[n_full * context:].to(device)                               # the last, shorter window
        if tail.numel() > 1:
            logits = model(tail[None, :-1])
            total += F.cross_entropy(logits[0].float(), tail[1:], reduction="sum").item()
            count += tail.numel() - 1
    finally:
        model.train(was_training)
    return total / count


class Windows(NamedTuple):
    """A batch of windows: inputs ``x`` and targets ``y``, each ``(batch, context)``."""
    x: Tensor
    y: Tensor

    @property
    def n_tokens(self) -> int:                              # what utils.train.train counts
        return self.y.numel()

    def to(self, device: torch.device | str) -> "Windows":
        return Windows(self.x.to(device), self.y.to(device))


class RandomWindows:
    """Random training windows of ``data`` as batches for :func:`utils.train.train`, the loop the
    translator uses too: the same protocol as :class:`~utils.batching.TokenBatches`.

    ``batches(epoch)``: an epoch's ``steps_per_epoch`` batches of window starts (default: about one pass
    over the text), from one generator seeded with ``seed`` that each epoch continues, the stream of
    :func:`random_windows` with ``torch.Generator().manual_seed(seed)``; so a resumed run draws the
    windows of the uninterrupted one. ``collate(starts)`` cuts the :class:`Windows`.

    Raises:
        ValueError: ``data`` not 1-D or shorter than ``context + 1``, non-positive sizes.
        TypeError: ``data`` not a tensor of integer ids.
    """

    def __init__(self, data: Tensor, batch_size: int, context: int, seed: int = 0,
                 steps_per_epoch: int | None = None):
        checks.tensor("data", data, dtype="int")
        batch_size, context = checks.positive_int("batch_size", batch_size), checks.positive_int("context", context)
        checks.positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
        if data.dim() != 1 or data.numel() < context + 1:
            raise ValueError(f"data must be a 1-D tensor of at least context + 1 = {context + 1} ids, "
                             f"got shape {tuple(data.shape)}")
        self.data, self.batch_size, self.context = data, batch_size, context
        self.steps_per_epoch = steps_per_epoch or max(1, (data.numel() - 1) // (batch_size * context))
        self._states = [torch.Generator().manual_seed(seed).get_state()]  # the generator at each epoch's start

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _draw(self, gen: torch.Generator) -> list[Tensor]:
        return [torch.randint(0, self.data.numel() - self.context, (self.batch_size,), generator=gen)
                for _ in range(self.steps_per_epoch)]

    def batches(self, epoch: int) -> list[Tensor]:
        gen = torch.Generator()
        while len(self._states) <= epoch:                      # replay earlier epochs once
            gen.set_state(self._states[-1])
            self._draw(gen)
            self._states.append(gen.get_state())
        gen.set_state(self._states[epoch])
        return self._draw(gen)

    def collate(self, starts: Tensor) -> Windows:
        windows = self.data[starts[:, None] + torch.arange(self.context + 1)]  # (batch, context + 1)
        return Windows(windows[:, :-1], windows[:, 1:])


def next_token_loss(model: GPT, batch: Windows) -> Tensor:
    """Mean next-token cross-entropy of ``model(batch.x)`` against ``batch.y``: the GPT's ``loss_fn``
    for :func:`utils.train.train`."""
    return F.cross_entropy(model(batch.x).flatten(0, 1), batch.y.flatten())


def gpt_optimizer(model: GPT, lr: float = 2e-3, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW (β 0.9, 0.99) with weight decay on the weight matrices only (not on biases, LayerNorm
    gains or embeddings). Pair it with :class:`utils.schedules.WarmupCosine`.

    Raises:
        ValueError: a non-positive ``lr`` or a negative ``weight_decay``.
    """
    lr, weight_decay = checks.number("lr", lr, above=0), checks.number("weight_decay", weight_decay, at_least=0)
    decayed = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    others = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": weight_decay},
                              {"params": others, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))
