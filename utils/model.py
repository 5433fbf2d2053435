"""The encoder–decoder Transformer of Vaswani et al. (2017), assembled from notebooks 01–03 and
proven equal to ``torch.nn.Transformer`` (:func:`utils.torch_compat.transformer_to_torch`). ::

    model = make_model(src_vocab, tgt_vocab, n_layers=6, d_model=512, n_heads=8, d_ff=2048, dropout=0.1)
    logits = model(src_ids, tgt_ids)          # (batch, tgt_len, tgt_vocab); masks built inside
    memory = model.encode(src_ids)            # (batch, src_len, d_model)

``norm_first=False`` is the paper's post-LN layer ``LN(x + sublayer(x))``; ``norm_first=True`` the
pre-LN ``x + sublayer(LN(x))`` of most modern code, with one final ``LayerNorm`` after each stack.
Attention runs PyTorch's fused kernel and keeps no weights, except inside ``with model.attention_maps()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from utils import checks
from utils.attention import MultiHeadAttention, causal_mask, check_vectors, padding_mask
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.embeddings import PositionalEncoding, TokenEmbedding
from utils.kv_cache import KVCache, cached_cross_attention, cached_self_attention
from utils.layers import LayerNorm, PositionwiseFeedForward, SublayerConnection
from utils.runtime import get_device

__all__ = ["EncoderLayer", "DecoderLayer", "Encoder", "Decoder", "Transformer", "make_model", "check_translator",
           "count_parameters"]


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each inside a :class:`SublayerConnection`:
    ``x (batch, src_len, d_model)``, ``src_mask`` boolean broadcastable to ``(batch, heads, src_len,
    src_len)`` (True = may attend) → ``(batch, src_len, d_model)``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.sublayers = nn.ModuleList([SublayerConnection(d_model, dropout, norm_first) for _ in range(2)])
        self.keep_weights = False                 # set by Transformer.attention_maps()
        self.self_attn_weights: Tensor | None = None

    def _self_attn(self, x: Tensor, mask: Tensor | None) -> Tensor:
        out, self.self_attn_weights = self.self_attn(x, x, x, mask, need_weights=self.keep_weights)
        return out

    def forward(self, x: Tensor, src_mask: Tensor | None = None) -> Tensor:
        x = self.sublayers[0](x, lambda h: self._self_attn(h, src_mask))
        return self.sublayers[1](x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder's output, then the feed-forward network,
    each inside a :class:`SublayerConnection`: ``y (batch, tgt_len, d_model)``, ``memory (batch, src_len,
    d_model)``, ``tgt_mask`` broadcastable to ``(batch, heads, tgt_len, tgt_len)``, ``memory_mask`` to
    ``(batch, heads, tgt_len, src_len)`` → ``(batch, tgt_len, d_model)``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.sublayers = nn.ModuleList([SublayerConnection(d_model, dropout, norm_first) for _ in range(3)])
        self.keep_weights = False
        self.self_attn_weights: Tensor | None = None
        self.cross_attn_weights: Tensor | None = None

    def _self_attn(self, y: Tensor, mask: Tensor | None) -> Tensor:
        out, self.self_attn_weights = self.self_attn(y, y, y, mask, need_weights=self.keep_weights)
        return out

    def _cross_attn(self, y: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        out, self.cross_attn_weights = self.cross_attn(y, memory, memory, mask, need_weights=self.keep_weights)
        return out

    def forward(self, y: Tensor, memory: Tensor, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        y = self.sublayers[0](y, lambda h: self._self_attn(h, tgt_mask))
        y = self.sublayers[1](y, lambda h: self._cross_attn(h, memory, memory_mask))
        return self.sublayers[2](y, self.ffn)


class Encoder(nn.Module):
    """``n_layers`` encoder layers; with ``norm_first`` a final :class:`LayerNorm` (``norm``)."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool):
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first)
                                     for _ in range(n_layers)])
        self.norm = LayerNorm(d_model) if norm_first else None

    def forward(self, x: Tensor, src_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, src_mask)
        return self.norm(x) if self.norm is not None else x


class Decoder(nn.Module):
    """``n_layers`` decoder layers; with ``norm_first`` a final :class:`LayerNorm` (``norm``)."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool):
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first)
                                     for _ in range(n_layers)])
        self.norm = LayerNorm(d_model) if norm_first else None

    def forward(self, y: Tensor, memory: Tensor, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            y = layer(y, memory, tgt_mask, memory_mask)
        return self.norm(y) if self.norm is not None else y


class Transformer(nn.Module):
    """The whole encoder–decoder; build it with :func:`make_model`, which records ``config``. Inputs are
    ids ``(batch, len)`` padded with ``config["pad_id"]``; the masks are built inside."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        c = self.config = dict(config)
        d = c["d_model"]
        self.pad_id = c["pad_id"]
        self.src_embed = TokenEmbedding(c["src_vocab"], d, pad_id=c["pad_id"])
        self.tgt_embed = TokenEmbedding(c["tgt_vocab"], d, pad_id=c["pad_id"])
        self.src_pos = PositionalEncoding(d, c["max_len"], c["dropout"])
        self.tgt_pos = PositionalEncoding(d, c["max_len"], c["dropout"])
        args = (c["n_layers"], d, c["n_heads"], c["d_ff"], c["dropout"], c["norm_first"])
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)
        self.generator = nn.Linear(d, c["tgt_vocab"])  # logits over the target vocabulary

    # -- the five entry points ------------------------------------------------------------------
    def embed_src(self, src_ids: Tensor) -> Tensor:
        """``(batch, src_len)`` ids → ``(batch, src_len, d_model)``: √d_model-scaled embeddings + positions."""
        return self.src_pos(self.src_embed(src_ids))

    def embed_tgt(self, tgt_ids: Tensor) -> Tensor:
        """``(batch, tgt_len)`` ids → ``(batch, tgt_len, d_model)``."""
        return self.tgt_pos(self.tgt_embed(tgt_ids))

    def encode(self, src_ids: Tensor) -> Tensor:
        """``(batch, src_len)`` → memory ``(batch, src_len, d_model)``. Raises TypeError for non-integer ids."""
        checks.tensor("src_ids", src_ids, ndim=2, dtype="int", shape="(batch, length) token ids")
        return self.encoder(self.embed_src(src_ids), padding_mask(src_ids, self.pad_id))

    def decoder_states(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        """The decoder's output before the generator, ``(batch, tgt_len, d_model)`` (enough for the attention maps,
        far cheaper than logits). Raises TypeError for non-integer ``tgt_ids`` or a ``memory`` of another dtype."""
        batch, tgt_len = checks.tensor("tgt_ids", tgt_ids, ndim=2, dtype="int", shape="(batch, length) token ids").shape
        if check_vectors("memory", memory, self.generator.weight).shape[0] != batch:
            raise ValueError(f"src_ids (memory) and tgt_ids hold different batch sizes: {memory.shape[0]} vs {batch}")
        tgt_mask = padding_mask(tgt_ids, self.pad_id) & causal_mask(tgt_len, tgt_ids.device)  # (batch, 1, T, T)
        memory_mask = padding_mask(src_ids, self.pad_id)                                        # (batch, 1, 1, S)
        return self.decoder(self.embed_tgt(tgt_ids), memory, tgt_mask, memory_mask)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        """Logits ``(batch, tgt_len, tgt_vocab)``: position ``t`` predicts token ``t + 1``,
        seeing target tokens ``0..t`` and the whole (unpadded) source."""
        return self.generator(self.decoder_states(tgt_ids, memory, src_ids))

    def decode_step(self, new_ids: Tensor, memory: Tensor, src_ids: Tensor, cache: KVCache) -> Tensor:
        """Logits ``(batch, tgt_vocab)`` for the token after ``new_ids`` ``(batch, new)``, with a KV cache.

        ``new_ids`` sit at positions ``cache.length ..``; self-attention reads the earlier keys and
        values from ``cache`` (start each batch with ``KVCache()``) and appends the new ones;
        cross-attention projects ``memory`` once, at the first step (:mod:`utils.kv_cache`). Equal to
        ``decode(all_ids, memory, src_ids)[:, -1]`` in O(length) work per step instead of O(length²).
        Target padding is not masked: feed real tokens (:mod:`utils.decode` pads only finished rows).

        Raises ValueError for more positions than the positional table holds; TypeError as :meth:`decoder_states`."""
        past, new = cache.length, checks.tensor("new_ids", new_ids, ndim=2, dtype="int", shape="(batch, new)").shape[1]
        if past + new > self.config["max_len"]:
            raise ValueError(f"position {past + new - 1} is beyond the positional table (max_len="
                             f"{self.config['max_len']}); decode fewer tokens or build a larger max_len")
        x = self.tgt_embed(new_ids)                                                  # (batch, new, d_model)
        y = self.tgt_pos.dropout(x + self.tgt_pos.pe[past: past + new].to(x.dtype))
        memory_mask = padding_mask(src_ids, self.pad_id)                             # (batch, 1, 1, S)
        for i, layer in enumerate(self.decoder.layers):
            y = layer.sublayers[0](y, lambda h: cached_self_attention(layer.self_attn, h, cache, i))
            y = layer.sublayers[1](y, lambda h: cached_cross_attention(layer.cross_attn, h, memory, cache, i,
                                                                       memory_mask))
            y = layer.sublayers[2](y, layer.ffn)
        if self.decoder.norm is not None:
            y = self.decoder.norm(y)
        return self.generator(y[:, -1])                                              # (batch, tgt_vocab)

    def forward(self, src_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        """``(batch, src_len)``, ``(batch, tgt_len)`` → logits ``(batch, tgt_len, tgt_vocab)``. Raises ValueError for
        ids that are not 2-D or batches of different sizes, TypeError for ids that are not integers."""
        return self.decode(tgt_ids, self.encode(src_ids), src_ids)

    # -- looking inside -------------------------------------------------------------------------
    @contextlib.contextmanager
    def attention_maps(self) -> Iterator[dict[str, list[Tensor]]]:
        """Collect every attention weight computed inside the ``with`` block (the explicit, slower path).

        Yields a dict that, on leaving the block, holds ``"encoder_self"``, ``"decoder_self"`` and
        ``"cross"``: one ``(batch, heads, q_len, k_len)`` tensor per layer, from the LAST forward pass
        in the block (after step-by-step decoding, run one full forward).
        """
        layers = [*self.encoder.layers, *self.decoder.layers]
        for layer in layers:
            layer.keep_weights = True
        maps: dict[str, list[Tensor]] = {}
        try:
            yield maps
        finally:
            maps["encoder_self"] = [layer.self_attn_weights for layer in self.encoder.layers]
            maps["decoder_self"] = [layer.self_attn_weights for layer in self.decoder.layers]
            maps["cross"] = [layer.cross_attn_weights for layer in self.decoder.layers]
            for layer in layers:
                layer.keep_weights, layer.self_attn_weights = False, None
                if isinstance(layer, DecoderLayer):
                    layer.cross_attn_weights = None

    # -- saving -----------------------------------------------------------------------------------
    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write weights + config (+ ``extra``) atomically with :func:`utils.checkpoint.save_checkpoint`."""
        return save_checkpoint(path, self.state_dict(), self.config, **extra)

    @classmethod
    def load(cls, path: str | Path, expected_config: dict[str, Any] | None = None,
             map_location: str | torch.device = "cpu") -> "Transformer":
        """Rebuild a model from :meth:`save`'s file (``weights_only=True``). Raises ConfigMismatchError when
        the file's config differs from ``expected_config`` (each key listed), ValueError for a checkpoint of
        another kind (:func:`check_translator`), RuntimeError for a ``map_location`` GPU that is not visible."""
        device = get_device(map_location, name="map_location")
        data = check_translator(load_checkpoint(path, expected_config, device), path)
        model = make_model(**data["config"])
        model.load_state_dict(data["model"])
        return model.to(device)


def make_model(src_vocab: int, tgt_vocab: int, n_layers: int = 6, d_model: int = 512, n_heads: int = 8,
               d_ff: int = 2048, dropout: float = 0.1, norm_first: bool = False, pad_id: int = 0,
               share_embeddings: bool = False, max_len: int = 512) -> Transformer:
    """The whole configuration in one place (defaults: the paper's base model, post-LN).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes (with the special tokens); ``n_layers``: per stack.
        d_model, n_heads, d_ff: width, attention heads (must divide d_model), feed-forward width.
        dropout: on embeddings+positions, attention weights, sub-layer outputs and inside the FFN.
        norm_first: False = post-LN (the paper), True = pre-LN. ``pad_id``: masked out of attention.
        share_embeddings: tie both embeddings and the output layer to one matrix (the paper, with a
            joint BPE vocabulary); needs ``src_vocab == tgt_vocab``.
        max_len: the longest sequence the positional encodings cover.

    Initialisation: Xavier-uniform for every matrix of the stacks and the untied output layer (as
    ``nn.Transformer``), ``N(0, 1/d_model)`` for embeddings (``TokenEmbedding``).

    Raises ``ValueError`` for non-positive sizes, ``n_heads`` not dividing ``d_model``, dropout outside [0, 1),
    ``pad_id`` outside a vocabulary, or ``share_embeddings`` with different vocab sizes."""
    src_vocab, tgt_vocab, n_layers, d_model, n_heads, d_ff, max_len = (checks.positive_int(name, v) for name, v in (
        ("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab), ("n_layers", n_layers), ("d_model", d_model),
        ("n_heads", n_heads), ("d_ff", d_ff), ("max_len", max_len)))
    pad_id = checks.integer("pad_id", pad_id, at_least=0, below=min(src_vocab, tgt_vocab),
                            hint="an id inside both vocabularies; utils.tokenize uses 0")
    checks.probability("dropout", dropout)
    for name, v in (("norm_first", norm_first), ("share_embeddings", share_embeddings)):
        checks.instance(name, v, bool, "True or False")
    checks.heads_divide(d_model, n_heads)
    if d_model % 2:
        raise ValueError(f"d_model={d_model} is odd; the sinusoidal positions pair a sine with a cosine, so pick an "
                         f"even d_model such as {d_model + 1}")
    if share_embeddings and src_vocab != tgt_vocab:
        raise ValueError(f"share_embeddings=True needs one joint vocabulary, but src_vocab={src_vocab} and "
                         f"tgt_vocab={tgt_vocab}; train one tokenizer on both languages or set share_embeddings=False")
    config = dict(src_vocab=src_vocab, tgt_vocab=tgt_vocab, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                  d_ff=d_ff, dropout=float(dropout), norm_first=bool(norm_first), pad_id=pad_id,
                  share_embeddings=bool(share_embeddings), max_len=max_len)
    model = Transformer(config)
    for p in [*model.encoder.parameters(), *model.decoder.parameters(), model.generator.weight]:
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    nn.init.zeros_(model.generator.bias)
    if share_embeddings:
        model.tgt_embed.embedding.weight = model.src_embed.embedding.weight
        model.generator.weight = model.src_embed.embedding.weight
    return model


def check_translator(data: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    """``data`` (a loaded checkpoint) if it holds a :func:`make_model` translator; else ValueError naming its keys."""
    if not {"src_vocab", "tgt_vocab"} <= set(data.get("config", {})):
        raise ValueError(f"{path} is a checkpoint of another kind (its config has {sorted(data.get('config', {}))}), "
                         "not a translator's; pass one written by Transformer.save or scripts/train_translator.py")
    return data


def count_parameters(model: nn.Module | dict[str, Any]) -> int:
    """Number of distinct trainable parameters (a tied matrix counts once) of a module, or the
    numbers in a dict of arrays (the NumPy model's parameters, notebook 07)."""
    if isinstance(model, dict):
        return int(sum(v.size for v in model.values()))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
