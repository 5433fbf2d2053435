"""Pictures of attention and of translation quality: one head's heatmap, a layers × heads grid, the
source–target alignment of one sentence, BLEU per sentence length, and the showcase figures.

Every function takes torch tensors or NumPy arrays, draws on the ``ax`` it is given (or on a new
figure sized to the data) and returns what it drew on; nothing calls ``plt.show()``. Weights are
``(q_len, k_len)``: one row per query (y axis), one column per key (x axis), coloured from 0 to 1.
Layers and heads are counted from 0, as ``maps["cross"][layer][:, head]`` indexes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from utils import checks

__all__ = ["plot_attention", "plot_attention_grid", "plot_alignment", "plot_bleu_by_length", "token_label",
           "showcase_sentence", "plot_showcase"]

#: Key labels are rotated 90° when any is longer than one character or there are more than this many.
_MAX_UPRIGHT_LABELS = 12


def _to_numpy(x: Any) -> np.ndarray:
    """A float NumPy copy of a tensor (any device, dtype, with or without grad) or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=float)


def _check_labels(shape: tuple[int, int], x_labels: Sequence[str] | None, y_labels: Sequence[str] | None,
                  x_name: str = "x_labels", y_name: str = "y_labels") -> None:
    """Labels must count the keys (columns) and the queries (rows) of a ``(q_len, k_len)`` map."""
    q_len, k_len = shape
    for name, labels, n, what, one in ((x_name, x_labels, k_len, "keys (columns)", "key"),
                                       (y_name, y_labels, q_len, "queries (rows)", "query")):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} labels but the weights of shape {shape} have {n} {what}; "
                             f"pass one label per {one}, or None for no tick labels")


def _set_ticks(ax: Axes, x_labels: Sequence[str] | None, y_labels: Sequence[str] | None) -> None:
    """Label every column with a key and every row with a query; None leaves that axis bare."""
    x_labels, y_labels = [] if x_labels is None else x_labels, [] if y_labels is None else y_labels
    rotate = len(x_labels) > _MAX_UPRIGHT_LABELS or any(len(str(s)) > 1 for s in x_labels)
    ax.set_xticks(range(len(x_labels)), [str(s) for s in x_labels], rotation=90 if rotate else 0)
    ax.set_yticks(range(len(y_labels)), [str(s) for s in y_labels])


def plot_attention(weights: Any, x_labels: Sequence[str] | None, y_labels: Sequence[str] | None,
                   ax: Axes | None = None, *, title: str | None = None, vmax: float | None = None,
                   cmap: str = "viridis", colorbar: bool = False) -> Axes:
    """Heatmap of one head's attention weights; returns the axes (``ax.images[0].get_array()``: the weights).

    Args:
        weights: ``(q_len, k_len)``: row ``i`` is how query ``i`` spreads its attention over the keys.
        x_labels, y_labels: ``k_len`` key tokens along the x axis (rotated 90° when any is longer than
            one character or there are many), ``q_len`` query tokens down the y axis; None: no labels.
        ax: the axes to draw on (None: a new figure sized to the labels); ``title``: the axes' title.
        vmax: the weight drawn brightest (default 1; the scale starts at 0). ``cmap``: a colour map
            name; ``colorbar``: add a colour bar beside the heatmap.

    Raises:
        ValueError: ``weights`` not 2-D, label counts that differ from its shape, or ``vmax <= 0``.
    """
    w = _to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (q_len, k_len) for one head, got shape {w.shape}; "
                         f"select one example and one head first, e.g. maps['cross'][layer][0, head]")
    _check_labels(w.shape, x_labels, y_labels)
    vmax = 1.0 if vmax is None else checks.number("vmax", vmax, above=0, hint="the colour scale runs from 0 to vmax")
    if ax is None:
        q_len, k_len = w.shape
        _, ax = plt.subplots(figsize=(max(2.5, 0.4 * k_len + 1.2 + 0.8 * colorbar), max(2.0, 0.4 * q_len + 1.0)),
                             layout="constrained")
    image = ax.imshow(w, vmin=0.0, vmax=vmax, cmap=cmap)
    _set_ticks(ax, x_labels, y_labels)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return ax


def _stack_layers(maps: Any) -> np.ndarray:
    """A list of ``(heads, q, k)`` maps, one per layer, or a 4-D array → ``(layers, heads, q, k)``."""
    if isinstance(maps, (list, tuple)):
        if len(maps) == 0:
            raise ValueError("maps is empty; pass one (heads, q_len, k_len) map per layer")
        layers = [_to_numpy(m) for m in maps]
        for i, m in enumerate(layers):
            if m.ndim != 3:
                hint = (" — it still has the batch dimension; select one example, e.g. [m[0] for m in maps['cross']]"
                        if m.ndim == 4 else "")
                raise ValueError(f"maps[{i}] must be (heads, q_len, k_len), got shape {m.shape}{hint}")
            if m.shape != layers[0].shape:
                raise ValueError(f"every layer's map must have the same shape, but maps[0] is {layers[0].shape} "
                                 f"and maps[{i}] is {m.shape}")
        return np.stack(layers)
    arr = _to_numpy(maps)
    if arr.ndim != 4:
        raise ValueError(f"maps must be a list of (heads, q_len, k_len) maps, one per layer, or one "
                         f"(layers, heads, q_len, k_len) array; got an array of shape {arr.shape}")
    return arr


def plot_attention_grid(maps: Any, x_labels: Sequence[str] | None = None, y_labels: Sequence[str] | None = None,
                        *, title: str | None = None, max_heads: int | None = None,
                        cell_size: float = 1.8, colorbar: bool = False, gamma: float | None = None) -> Figure:
    """Every head of every layer for one example: rows are layers, columns heads. Returns the figure;
    ``fig.axes`` are titled ``"layer i · head h"`` row by row, then the colour bar's axes if any.

    Args:
        maps: one ``(heads, q_len, k_len)`` tensor per layer (one example selected, e.g.
            ``[m[0] for m in maps["encoder_self"]]``) or a ``(layers, heads, q_len, k_len)`` array.
        x_labels, y_labels: key and query tokens, on the bottom row and left column (None: no labels).
        title: the figure's title; ``max_heads``: draw only the first heads of each layer (default all);
            ``cell_size``: one heatmap's width and height in inches; ``colorbar``: one for the grid.
        gamma: a power scale ``w ** gamma`` (``PowerNorm``, still 0 to 1): ``0.5`` lifts small weights,
            so a diffuse head (every weight near ``1 / k_len``) shows its pattern. None: linear.

    Raises:
        ValueError: maps of the wrong dimensions or shapes, label counts unlike ``(q_len, k_len)``, or a
            non-positive ``max_heads`` / ``cell_size`` / ``gamma``.
    """
    checks.number("gamma", gamma, above=0, allow_none=True, hint="0.5 lifts small weights; None for a linear scale")
    checks.positive_int("max_heads", max_heads, allow_none=True, hint="None for all heads")
    checks.number("cell_size", cell_size, above=0, hint="inches per heatmap")
    stacked = _stack_layers(maps)
    if max_heads is not None:
        stacked = stacked[:, :max_heads]
    n_layers, n_heads = stacked.shape[:2]
    _check_labels(stacked.shape[2:], x_labels, y_labels)
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(cell_size * n_heads, cell_size * n_layers),
                             squeeze=False, layout="constrained")
    for i in range(n_layers):
        for h in range(n_heads):
            plot_attention(stacked[i, h], x_labels if i == n_layers - 1 else None, y_labels if h == 0 else None,
                           axes[i, h], title=f"layer {i} · head {h}")
            if gamma is not None:
                axes[i, h].images[0].set_norm(PowerNorm(gamma, vmin=0.0, vmax=1.0))
    if colorbar:
        fig.colorbar(axes[0, 0].images[0], ax=axes, shrink=0.6,
                     label="attention weight" + (f" (colour ∝ weight ** {gamma:g})" if gamma is not None else ""))
    if title is not None:
        fig.suptitle(title)
    return fig


def plot_alignment(cross: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str], ax: Axes | None = None,
                   *, title: str | None = None, mark_max: bool = True) -> Axes:
    """Where each generated target token looked in the source: cross-attention of one sentence. Returns
    the axes: ``ax.images[0]`` the (head-averaged) map, ``ax.lines[0]`` the dots at ``(argmax column, row)``.

    ``cross`` is ``(tgt_len, src_len)``, or ``(heads, tgt_len, src_len)`` averaged over the heads; the
    ``src_tokens`` go along the x axis, the ``tgt_tokens`` down the y axis; ``mark_max`` puts a red dot on
    each row's largest weight. Raises ValueError for ``cross`` not 2-D or 3-D, or token counts unlike its shape.
    """
    w = _to_numpy(cross)
    if w.ndim == 3:
        w = w.mean(axis=0)
    elif w.ndim != 2:
        raise ValueError(f"cross must be (tgt_len, src_len) or (heads, tgt_len, src_len) for one sentence, "
                         f"got shape {w.shape}; select one example first, e.g. maps['cross'][-1][0]")
    _check_labels(w.shape, src_tokens, tgt_tokens, "src_tokens", "tgt_tokens")
    ax = plot_attention(w, src_tokens, tgt_tokens, ax, title=title)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if mark_max:
        rows = np.flatnonzero(w.sum(axis=1) > 0)
        ax.plot(w[rows].argmax(axis=1), rows, linestyle="none", marker="o", markersize=4, color="red")
    return ax


def plot_bleu_by_length(buckets: list[str], scores: list[float], counts: list[int], ax: Axes | None = None,
                        *, title: str | None = None) -> Axes:
    """Bar chart of BLEU per source-length bucket, each bar topped by its number of sentences. Returns the
    axes: ``ax.patches`` the bars, ``ax.texts`` their counts. ``buckets`` name the buckets (e.g. ``"1-10"``),
    ``scores`` give each one's BLEU, ``counts`` its sentences. Raises ValueError for empty or unequal lists.
    """
    if not len(buckets) == len(scores) == len(counts):
        raise ValueError(f"buckets, scores and counts must have one entry per bucket, got lengths "
                         f"{len(buckets)}, {len(scores)} and {len(counts)}")
    if len(buckets) == 0:
        raise ValueError("no buckets to plot; pass at least one (bucket, score, count)")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.8 * len(buckets) + 1.5), 3.0), layout="constrained")
    bars = ax.bar(range(len(buckets)), [float(s) for s in scores], tick_label=[str(b) for b in buckets])
    ax.bar_label(bars, labels=[f"n={c}" for c in counts], padding=2, fontsize="small")
    top = max(float(s) for s in scores)
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)  # room for the counts above the bars
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("BLEU")
    if title is not None:
        ax.set_title(title)
    return ax


# -- the showcase: the pictures a visitor sees first (notebook 06, scripts/showcase.py) ---------

def token_label(token: str) -> str:
    """A readable tick label for a BPE piece: ``'▁Hund'`` (a word's start) → ``'Hund'``; ``'en'`` (a
    piece inside a word) → ``'·en'``; specials such as ``'<eos>'`` unchanged."""
    return token[1:] if token.startswith("▁") else token if token.startswith("<") else "·" + token


def showcase_sentence(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str], *,
                      min_words: int = 8, max_words: int = 14) -> int:
    """The index of the sentence the showcase draws: among sources of ``min_words`` to ``max_words``
    words, the first whose translation has the highest sentence BLEU (sacreBLEU) against its
    reference. Use it on the validation set, never the test set. Raises ValueError for lists of
    different lengths, or no source in the length range.
    """
    import sacrebleu

    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(f"sources, hypotheses and references must have one entry per sentence, got lengths "
                         f"{len(sources)}, {len(hypotheses)} and {len(references)}")
    candidates = [i for i, s in enumerate(sources) if min_words <= len(s.split()) <= max_words]
    if not candidates:
        raise ValueError(f"no source has {min_words} to {max_words} words; widen the range")
    scores = [sacrebleu.sentence_bleu(hypotheses[i], [references[i]]).score for i in candidates]
    return candidates[int(np.argmax(scores))]


def plot_showcase(maps: dict, src_tokens: Sequence[str], in_tokens: Sequence[str], out_tokens: Sequence[str],
                  caption: str, *, cell_size: float = 2.6, gamma: float = 0.5) -> dict[str, Figure]:
    """The showcase figures of one translated sentence, captioned (e.g. ``"model: 6M, test BLEU 38.5"``):
    ``{"alignment", "encoder_grid", "decoder_grid"}``, every layer's cross-attention (:func:`plot_alignment`)
    and the layers × heads grids of the encoder's and decoder's self-attention (:func:`plot_attention_grid`
    with ``cell_size``, ``gamma`` and a colour bar).

    ``maps`` is ``model.attention_maps()`` of one sentence (``(1, heads, q_len, k_len)`` per layer and
    kind); ``src_tokens`` label the encoder positions, ``in_tokens`` what each decoder position reads
    (``<bos>`` + translation), ``out_tokens`` what it writes. Raises ValueError for ``maps`` without the
    three kinds, or token counts that differ from the maps' shapes.
    """
    if not {"encoder_self", "decoder_self", "cross"} <= set(maps):
        raise ValueError(f"maps must hold 'encoder_self', 'decoder_self' and 'cross' (model.attention_maps()), "
                         f"got {sorted(maps)}")
    n_layers = len(maps["cross"])
    fig, axes = plt.subplots(1, n_layers, figsize=(4.4 * n_layers, 4.9), squeeze=False, layout="constrained")
    for layer, ax in enumerate(axes[0]):
        plot_alignment(maps["cross"][layer][0], src_tokens, out_tokens, ax=ax,
                       title=f"cross-attention, layer {layer} (mean of heads)")
    figs = {"alignment": fig}
    for side, tokens, what in (("encoder", src_tokens, "Encoder self-attention"),
                               ("decoder", in_tokens, "Decoder masked self-attention")):
        figs[f"{side}_grid"] = plot_attention_grid([m[0] for m in maps[f"{side}_self"]], tokens, tokens,
                                                   cell_size=cell_size, colorbar=True, gamma=gamma,
                                                   title=f"{what}: every layer and head")
    for f in figs.values():
        f.supxlabel(caption, fontsize="small", color="dimgrey")
    return figs

