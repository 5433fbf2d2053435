"""The diagrams of notebooks 01–06 and 08, drawn by code in one visual language.

Every diagram is a function that draws one idea onto a white canvas; :func:`draw_all` writes each
as ``figures/NN_diagram_<name>.svg`` (the vector source, for the README and GitHub) and
``figures/NN_diagram_<name>.png`` (the raster that the notebooks embed as a markdown-cell
attachment, so that JupyterLab, Colab and GitHub all show it; see :func:`embed_in_notebooks`).

The visual language: the same colour for the same kind of thing in every picture (see
:data:`KINDS`): grey for tensors, purple for embeddings and positions, orange for learned linear
maps, green for attention, red for masks, yellow for normalisation, blue for the feed-forward
network, white for parameter-free operations (add, reshape, softmax). Words sit on the picture,
not in a legend; tensor shapes are written on the arrows; module names (``self_attn``,
``sublayers[0]``) are the ones in ``utils``. The background is opaque white, so a diagram reads the
same on a light and a dark JupyterLab theme.

Regenerate everything (figures and the notebooks' attachments) from the repository root, or only
check that the committed files are what the code draws now (writes nothing; exit status 1 if not)::

    python tools/diagrams.py
    python tools/diagrams.py --check

Output is deterministic: the same code and the same Matplotlib give the same bytes.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
FIGURES_DIR = REPO_ROOT / "figures"

#: kind → (fill, edge): one colour per kind of thing, in every diagram.
KINDS = {
    "tensor": ("#eef1f5", "#5b6b7f"),
    "embed": ("#efe4fb", "#7b4bb7"),
    "linear": ("#fde7cf", "#c76f16"),
    "attention": ("#dcf2e0", "#2f8f46"),
    "mask": ("#fbe0e0", "#c23b3b"),
    "norm": ("#fff4c2", "#a68b00"),
    "ffn": ("#dce9fb", "#2e6db5"),
    "op": ("#ffffff", "#5b6b7f"),
    "group": ("#f8f8f8", "#9aa4b1"),
}
#: colours for individual attention heads (a diagram's heads, not a kind of module)
HEAD_COLOURS = ["#e9a23b", "#4c9be8", "#56b870", "#d66ac2"]
TEXT = "#1d232b"
SHAPE_TEXT = "#45505e"
DPI = 150
UNIT = 0.5  # inches per diagram unit
#: a notebook shows a picture at most this wide (pixels); a wider PNG is scaled down to it
NOTEBOOK_WIDTH_PX = 900
#: every label must be at least this many pixels high (its font size, em) once the notebook has scaled it
MIN_LABEL_PX = 9.0
#: the colour of BPE's "▁" (U+2581, "a space was here"), so it never reads as an underscore
SPACE_MARK = KINDS["embed"][1]


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def top(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)

    @property
    def left(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w, self.y + self.h / 2)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)


class Canvas:
    """A white drawing area ``width`` × ``height`` diagram units, with boxes, arrows and labels."""

    def __init__(self, width: float, height: float, title: str | None = None):
        self.fig = plt.figure(figsize=(width * UNIT, height * UNIT), facecolor="white")
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(0, height)
        self.ax.set_axis_off()
        self.width, self.height = width, height
        if title:
            self.text(width / 2, height - 0.45, title, size=12.5, weight="bold")

    def box(self, x: float, y: float, w: float, h: float, label: str = "", kind: str = "op", *,
            size: float = 10, sub: str | None = None, radius: float = 0.12, lw: float = 1.4) -> Box:
        """A rounded box at (x, y) (lower-left corner) with a label and an optional smaller second line."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        fill, edge = KINDS[kind]
        self.ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}",
                                         facecolor=fill, edgecolor=edge, linewidth=lw, zorder=2))
        if sub:
            self.text(x + w / 2, y + h * 0.62, label, size=size, zorder=3)
            self.text(x + w / 2, y + h * 0.27, sub, size=size * 0.78, color=SHAPE_TEXT, zorder=3)
        elif label:
            self.text(x + w / 2, y + h / 2, label, size=size, zorder=3)
        return Box(x, y, w, h)

    def circle_plus(self, cx: float, cy: float, r: float = 0.22) -> Box:
        """The ⊕ of a residual addition."""
        self.ax.add_patch(plt.Circle((cx, cy), r, facecolor="white", edgecolor=KINDS["op"][1], lw=1.4, zorder=2))
        self.ax.plot([cx - r * 0.6, cx + r * 0.6], [cy, cy], color=TEXT, lw=1.3, zorder=3)
        self.ax.plot([cx, cx], [cy - r * 0.6, cy + r * 0.6], color=TEXT, lw=1.3, zorder=3)
        return Box(cx - r, cy - r, 2 * r, 2 * r)

    def text(self, x: float, y: float, s: str, *, size: float = 10, color: str = TEXT, ha: str = "center",
             va: str = "center", weight: str = "normal", style: str = "normal", zorder: int = 3, **kw):
        return self.ax.text(x, y, s, fontsize=size, color=color, ha=ha, va=va, fontweight=weight,
                            fontstyle=style, zorder=zorder, **kw)

    def token(self, x: float, y: float, s: str, *, size: float = 10, **kw):
        """A token's text centred at (x, y), its leading "▁" (U+2581, BPE's space mark) drawn in
        :data:`SPACE_MARK` over the same glyph, so it cannot be mistaken for an underscore."""
        t = self.text(x, y, s, size=size, **kw)
        if s.startswith("▁"):
            box = t.get_window_extent(self.fig.canvas.get_renderer())
            left = self.ax.transData.inverted().transform((box.x0, box.y0))[0]
            self.text(left, y, "▁", size=size, ha="left", color=SPACE_MARK, zorder=4,
                      **{k: v for k, v in kw.items() if k not in ("ha", "color", "zorder")})
        return t

    def arrow(self, start: tuple[float, float], end: tuple[float, float], label: str | None = None, *,
              label_side: str = "right", color: str = "#3b4450", lw: float = 1.4, rad: float = 0.0,
              size: float = 8.2, label_at: float = 0.5, dashed: bool = False) -> None:
        """An arrow from ``start`` to ``end``; ``label`` (a tensor shape, usually) beside its middle."""
        self.ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color=color, lw=lw,
                                          connectionstyle=f"arc3,rad={rad}", zorder=1, shrinkA=0, shrinkB=0,
                                          linestyle="--" if dashed else "-"))
        if label:
            mx = start[0] + (end[0] - start[0]) * label_at
            my = start[1] + (end[1] - start[1]) * label_at
            dx = {"right": 0.12, "left": -0.12, "above": 0, "below": 0}[label_side]
            dy = {"right": 0, "left": 0, "above": 0.16, "below": -0.16}[label_side]
            ha = {"right": "left", "left": "right", "above": "center", "below": "center"}[label_side]
            self.text(mx + dx, my + dy, label, size=size, color=SHAPE_TEXT, ha=ha, style="italic")

    def path(self, points: list[tuple[float, float]], *, color: str = "#3b4450", lw: float = 1.4,
             arrow_end: bool = True) -> None:
        """A polyline through ``points``, with an arrow head on the last segment (residual paths)."""
        xs, ys = zip(*points[:-1])
        self.ax.plot(xs, ys, color=color, lw=lw, zorder=1, solid_capstyle="round")
        if arrow_end:
            self.arrow(points[-2], points[-1], color=color, lw=lw)
        else:
            self.ax.plot(*zip(points[-2], points[-1]), color=color, lw=lw, zorder=1)

    def cells(self, x: float, y: float, values: np.ndarray, cell: float = 0.22, cmap: str = "RdBu_r",
              vmin: float = -1.0, vmax: float = 1.0, colours: list[str] | None = None) -> Box:
        """A row of small squares, one per vector component (a picture of a vector)."""
        cm = plt.get_cmap(cmap)
        for i, v in enumerate(values):
            fill = colours[i] if colours else cm((v - vmin) / (vmax - vmin))
            self.ax.add_patch(Rectangle((x + i * cell, y), cell, cell, facecolor=fill, edgecolor="white",
                                        lw=0.6, zorder=2))
        return Box(x, y, cell * len(values), cell)

    def grid(self, x: float, y: float, allowed: np.ndarray, cell: float = 0.2) -> Box:
        """A boolean mask as a grid: green = may attend, red = blocked (row 0 on top)."""
        rows, cols = allowed.shape
        for i in range(rows):
            for j in range(cols):
                fill = KINDS["attention"][1] if allowed[i, j] else "#f3b9b9"
                self.ax.add_patch(Rectangle((x + j * cell, y + (rows - 1 - i) * cell), cell, cell,
                                            facecolor=fill, edgecolor="white", lw=0.7, zorder=2))
        return Box(x, y, cols * cell, rows * cell)

    def save(self, stem: str, folder: Path = FIGURES_DIR) -> tuple[Path, Path]:
        """Write ``folder/stem.svg`` and ``folder/stem.png`` (opaque white, no timestamps); close the figure."""
        folder.mkdir(parents=True, exist_ok=True)
        svg, png = folder / f"{stem}.svg", folder / f"{stem}.png"
        with plt.rc_context({"svg.hashsalt": "attention-built-up", "svg.fonttype": "path"}):
            self.fig.savefig(svg, facecolor="white", bbox_inches="tight", pad_inches=0.12,
                             metadata={"Date": None, "Creator": None})
            self.fig.savefig(png, dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.12,
                             metadata={"Software": None})
        plt.close(self.fig)
        return svg, png


# ---------------------------------------------------------------------------------------------
# 01 · text → tokens → ids → embedding rows → + positions
# ---------------------------------------------------------------------------------------------

def _sinusoid(pos: int, d: int) -> np.ndarray:
    i = np.arange(0, d, 2)
    angle = pos / 10000 ** (i / d)
    out = np.zeros(d)
    out[0::2], out[1::2] = np.sin(angle), np.cos(angle)
    return out


#: The diagram's caption as notebook 01's tokenizer cuts it: ``BPETokenizer.train(train_en, vocab_size=8000)``
#: on the 29,000 English training captions of Multi30k (notebook 01, section 1), then
#: ``encode("a dog and a cat", add_special=True)``. Computed once and written here, so drawing needs
#: no data; ``tests/test_diagrams.py::test_bpe_examples_are_the_real_tokenizations`` recomputes them.
TEXT_TO_VECTORS_EXAMPLE = ("a dog and a cat", ["<bos>", "▁a", "▁dog", "▁and", "▁a", "▁cat", "<eos>"],
                           [1, 84, 207, 121, 84, 700, 2])


def text_to_vectors() -> Canvas:
    """Notebook 01: the whole road from a caption to the encoder's input (real BPE-8000 ids)."""
    caption, tokens, ids = TEXT_TO_VECTORS_EXAMPLE
    d = 8
    rng = np.random.default_rng(3)
    table = {t: rng.normal(0, 0.55, d) for t in dict.fromkeys(tokens)}
    c = Canvas(21.5, 11.6, "From text to the encoder's input (notebook 01)")
    col0, step = 6.2, 1.9
    xs = [col0 + k * step for k in range(len(tokens))]
    label_x = 0.3
    small = 8.6

    def stage(y, title, module):
        c.text(label_x, y + 0.22, title, ha="left", size=10.5, weight="bold")
        c.text(label_x, y - 0.24, module, ha="left", size=small, color=SHAPE_TEXT, family="monospace")

    # text
    y_text = 10.0
    stage(y_text, "text", "a caption (str)")
    c.box(xs[1] - 0.7, y_text - 0.35, xs[-2] - xs[1] + 1.4, 0.7, f'"{caption}"', "tensor", size=11)
    # tokens
    y_tok = 8.4
    stage(y_tok, "tokens", "BPETokenizer.tokenize")
    for x, t in zip(xs, tokens):
        c.box(x - 0.75, y_tok - 0.32, 1.5, 0.64, "", "tensor")
        c.token(x, y_tok, t, size=10)
    c.arrow((xs[3], y_text - 0.38), (xs[3], y_tok + 0.36), "split into subwords; add <bos>, <eos>", size=small)
    c.text(xs[-1] + 0.85, y_tok + 0.2, "▁ (U+2581) marks", ha="left", size=small, color=SPACE_MARK)
    c.text(xs[-1] + 0.85, y_tok - 0.2, "a space before it", ha="left", size=small, color=SPACE_MARK)
    # ids
    y_ids = 6.9
    stage(y_ids, "ids", "encode(..., add_special=True)")
    for x, i in zip(xs, ids):
        c.arrow((x, y_tok - 0.34), (x, y_ids + 0.3))
        c.box(x - 0.5, y_ids - 0.28, 1.0, 0.56, str(i), "tensor", size=10)
    c.text(xs[-1] + 0.85, y_ids, f"(batch, seq)\n= (1, {len(ids)})", ha="left", size=small, color=SHAPE_TEXT,
           style="italic")
    # embedding rows
    y_emb = 5.2
    stage(y_emb, "embedding rows × √d_model", "TokenEmbedding: W[id] · √d_model")
    cell = 0.19
    for x, t in zip(xs, tokens):
        c.arrow((x, y_ids - 0.3), (x, y_emb + 0.24))
        c.cells(x - d * cell / 2, y_emb - cell / 2, np.tanh(table[t]), cell=cell)
    c.text(xs[-1] + 0.85, y_emb, f"(1, {len(ids)}, d_model)", ha="left", size=small, color=SHAPE_TEXT, style="italic")
    same = [k for k, t in enumerate(tokens) if tokens.count(t) > 1]
    for k in same:
        c.text(xs[k], y_emb - 0.47, f"row {ids[k]}", size=small, color=KINDS["embed"][1])
    # positions
    y_pos = 3.5
    stage(y_pos, "+ position vectors", "PositionalEncoding: + PE[pos]")
    for k, x in enumerate(xs):
        c.text(x - d * cell / 2 - 0.18, y_pos, "+", size=11, weight="bold")
        c.cells(x - d * cell / 2, y_pos - cell / 2, _sinusoid(k, d), cell=cell)
        c.text(x, y_pos - 0.42, f"pos {k}", size=small, color=SHAPE_TEXT)
    # sum
    y_in = 1.6
    stage(y_in, "= encoder input", "(then dropout 0.1)")
    for k, (x, t) in enumerate(zip(xs, tokens)):
        c.arrow((x, y_pos - 0.6), (x, y_in + 0.24))
        c.cells(x - d * cell / 2, y_in - cell / 2, np.tanh(table[t] + 0.6 * _sinusoid(k, d)), cell=cell)
    c.text(xs[-1] + 0.85, y_in, f"(1, {len(ids)}, d_model)", ha="left", size=small, color=SHAPE_TEXT, style="italic")
    for k in same:
        c.text(xs[k], y_in - 0.45, "now differ", size=small, color=KINDS["embed"][1])
    c.text(c.width / 2, 0.45, "ids: notebook 01's BPE, 8,000 tokens, trained on the training captions; "
           "each small square is one of d_model numbers (here 8 of 512); red > 0, blue < 0",
           size=small, color=SHAPE_TEXT)
    return c


# ---------------------------------------------------------------------------------------------
# 02 · scaled dot-product attention, with shapes and the two masks
# ---------------------------------------------------------------------------------------------

def attention_flow() -> Canvas:
    """Notebook 02: the data flow of one attention, the paper's figure 2 (left) with shapes and masks."""
    c = Canvas(18.6, 12.6, "Scaled dot-product attention (notebook 02)")
    cx, w, h = 5.2, 3.6, 0.8
    x0 = cx - w / 2
    q = c.box(1.2, 0.6, 1.6, 0.75, "Q", "tensor", size=12)
    k = c.box(4.4, 0.6, 1.6, 0.75, "K", "tensor", size=12)
    v = c.box(8.3, 0.6, 1.6, 0.75, "V", "tensor", size=12)
    c.text(q.centre[0], 0.3, "(batch, heads, seq_q, d_k)", size=7.8, color=SHAPE_TEXT, style="italic")
    c.text(k.centre[0] + 0.35, 0.3, "(…, seq_k, d_k)", size=7.8, color=SHAPE_TEXT, style="italic")
    c.text(v.centre[0], 0.3, "(…, seq_k, d_v)", size=7.8, color=SHAPE_TEXT, style="italic")
    mm1 = c.box(x0, 2.2, w, h, "MatMul  Q Kᵀ", "attention", sub="one dot product per (query, key)")
    c.arrow(q.top, (mm1.x + 0.6, mm1.y))
    c.arrow(k.top, (mm1.x + w - 0.6, mm1.y), "Kᵀ: transpose(-2, -1)", label_side="right")
    sc = c.box(x0, 3.9, w, h, "Scale  ÷ √d_k", "op", sub="keeps the scores' variance at 1")
    c.arrow(mm1.top, sc.bottom, "scores (…, seq_q, seq_k)")
    mk = c.box(x0, 5.6, w, h, "Mask  (optional)", "mask", sub="masked_fill(~mask, −∞)")
    c.arrow(sc.top, mk.bottom, "(…, seq_q, seq_k)")
    sm = c.box(x0, 7.3, w, h, "SoftMax over keys", "attention", sub="each row ≥ 0, sums to 1")
    c.arrow(mk.top, sm.bottom, "(…, seq_q, seq_k)")
    mm2 = c.box(x0, 9.3, w, h, "MatMul  weights · V", "attention", sub="a weighted sum of values")
    c.arrow(sm.top, (mm2.x + 0.6, mm2.y), "weights (…, seq_q, seq_k)", label_side="left", label_at=0.45)
    c.path([v.top, (v.centre[0], 8.9), (mm2.x + w - 0.6, 8.9), (mm2.x + w - 0.6, mm2.y)])
    out = c.box(cx - 1.0, 10.75, 2.0, 0.7, "output", "tensor", size=11)
    c.arrow(mm2.top, out.bottom, "(…, seq_q, d_v)")
    c.text(0.25, 11.75, "utils.attention.scaled_dot_product_attention(q, k, v, mask)  →  (output, weights)",
           ha="left", size=8.6, family="monospace", color=SHAPE_TEXT)
    # the masks, on the right
    mx = 10.3
    c.text(mx, 7.75, "where the masks act (True = may attend)", ha="left", size=10, weight="bold")
    pad = np.array([[1, 1, 1, 1, 0, 0]] * 6, dtype=bool)
    causal = np.tril(np.ones((6, 6), dtype=bool))
    g1 = c.grid(mx, 5.5, pad)
    c.text(mx + 1.45, 6.95, "padding mask", ha="left", size=9.3, weight="bold", color=KINDS["mask"][1])
    c.text(mx + 1.45, 6.55, "padding_mask(ids, pad_id)", ha="left", size=7.6, family="monospace")
    c.text(mx + 1.45, 6.2, "(batch, 1, 1, seq_k):", ha="left", size=7.8, color=SHAPE_TEXT, style="italic")
    c.text(mx + 1.45, 5.85, "no query looks at <pad> keys", ha="left", size=7.8)
    c.text(mx + 1.45, 5.5, "encoder self-attn, cross-attn,\ndecoder self-attn", ha="left", size=7.8, va="top")
    g2 = c.grid(mx, 2.7, causal)
    c.text(mx + 1.45, 4.15, "look-ahead (causal) mask", ha="left", size=9.3, weight="bold", color=KINDS["mask"][1])
    c.text(mx + 1.45, 3.75, "causal_mask(size)", ha="left", size=7.6, family="monospace")
    c.text(mx + 1.45, 3.4, "(seq_q, seq_k): query i sees", ha="left", size=7.8, color=SHAPE_TEXT, style="italic")
    c.text(mx + 1.45, 3.05, "keys j ≤ i only", ha="left", size=7.8)
    c.text(mx + 1.45, 2.7, "decoder self-attention only", ha="left", size=7.8, va="top")
    c.text(mx, 2.2, "decoder self-attention: padding & causal\n(broadcast to (batch, 1, seq_q, seq_k))",
           ha="left", size=7.8, va="top")
    for g in (g1, g2):
        c.text(g.x - 0.12, g.y + g.h / 2, "query", rotation=90, size=7, color=SHAPE_TEXT, ha="right")
        c.text(g.x + g.w / 2, g.y + g.h + 0.12, "key", size=7, color=SHAPE_TEXT, va="bottom")
    c.arrow((mx - 0.1, 5.9), (mk.right[0] + 0.05, mk.right[1] + 0.1), color=KINDS["mask"][1], rad=0.15, dashed=True)
    c.arrow((mx - 0.1, 3.3), (mk.right[0] + 0.05, mk.right[1] - 0.1), color=KINDS["mask"][1], rad=-0.25, dashed=True)
    c.text(mx, 1.05, "a masked score becomes −∞, so its weight exp(−∞) = 0;\nthe other weights of the row still sum to 1",
           ha="left", size=7.8, va="top", color=SHAPE_TEXT)
    return c


# ---------------------------------------------------------------------------------------------
# 03 · heads split and merged; the sub-layer in two orders
# ---------------------------------------------------------------------------------------------

def _matrix(c: Canvas, x: float, y: float, rows: int, col_blocks: list[tuple[int, str]], cell: float = 0.22,
            row_labels: bool = False) -> Box:
    """A seq × width matrix drawn as cells, its columns coloured in blocks (one colour per head)."""
    col = 0
    for n, colour in col_blocks:
        for j in range(n):
            for i in range(rows):
                shade = 0.55 + 0.45 * ((i * 3 + j) % 5) / 4
                c.ax.add_patch(Rectangle((x + (col + j) * cell, y + (rows - 1 - i) * cell), cell, cell,
                                         facecolor=colour, alpha=shade, edgecolor="white", lw=0.5, zorder=2))
        col += n
    if row_labels:
        for i in range(rows):
            c.text(x - 0.08, y + (rows - 1 - i) * cell + cell / 2, str(i), size=8, ha="right", color=SHAPE_TEXT)
    return Box(x, y, col * cell, rows * cell)


def heads_split_merge() -> Canvas:
    """Notebook 03: the reshape and transposes that split d_model into heads and merge them back.

    Two rows: the split (projected queries → view → transpose), then attention in every head and the
    merge (transpose back → reshape → W^O). The merged output is drawn green, as attention's output:
    new numbers, laid out in the input's column blocks (head i in columns i·d_k …)."""
    seq, d_k, h = 5, 3, 4
    cell = 0.3
    small, code = 8.6, 8.6
    c = Canvas(17.6, 10.9, "Multi-head attention: split into heads, attend, merge (notebook 03)")
    blocks = [(d_k, col) for col in HEAD_COLOURS[:h]]
    green = KINDS["attention"][1]

    def heading(x, y, title, sub, sub_colour=SHAPE_TEXT):
        c.text(x, y + 0.38, title, size=11, weight="bold")
        c.text(x, y, sub, size=small, color=sub_colour)

    def shape(x, y, s):
        c.text(x, y, s, size=small, color=SHAPE_TEXT, style="italic")

    def step(x_from, x_to, y, *lines):
        c.arrow((x_from + 0.15, y), (x_to - 0.15, y))
        for k, line in enumerate(lines):
            c.text((x_from + x_to) / 2, y + 0.3 + 0.34 * (len(lines) - 1 - k), line, size=code, family="monospace")

    # ---- row 1: split --------------------------------------------------------------------------
    mid = 7.2
    y0 = mid - seq * cell / 2
    a = _matrix(c, 0.75, y0, seq, blocks, cell, row_labels=True)
    heading(a.centre[0], y0 + seq * cell + 0.45, "$Q = xW^Q$", "in_proj_weight: one matmul", KINDS["linear"][1])
    shape(a.centre[0], y0 - 0.35, "(batch, seq, d_model)")
    c.text(a.centre[0], y0 - 0.75, "columns i·d_k … are head i", size=small, color=SHAPE_TEXT)
    # view: (batch, seq, heads, d_k): the same numbers, each position's row cut into h pieces
    x2, gap_x, gap_y = 7.45, 0.12, 0.08
    rows_h = seq * (cell + gap_y) - gap_y
    for i in range(seq):
        for hh in range(h):
            _matrix(c, x2 + hh * (d_k * cell + gap_x), mid + rows_h / 2 - (i + 1) * cell - i * gap_y, 1,
                    [(d_k, HEAD_COLOURS[hh])], cell)
    b_w = h * (d_k * cell + gap_x) - gap_x
    step(a.x + a.w, x2, mid, ".view(b, s, h, d_k)")
    heading(x2 + b_w / 2, y0 + seq * cell + 0.45, "reshape", "each row cut into h pieces")
    shape(x2 + b_w / 2, y0 - 0.35, "(batch, seq, heads, d_k)")
    # transpose: (batch, heads, seq, d_k): heads become the outer axis, one matrix each
    x3 = 14.05
    mw, mh = d_k * cell, seq * cell
    for hh in range(h):
        col, row = hh % 2, hh // 2
        m = _matrix(c, x3 + col * (mw + 0.8), mid + 0.15 - row * (mh + 0.3), seq, [(d_k, HEAD_COLOURS[hh])], cell)
        c.text(m.x + m.w + 0.1, m.y + m.h / 2, f"head {hh}", size=small, ha="left", color=SHAPE_TEXT, rotation=90)
    split_w = 2 * mw + 0.8
    step(x2 + b_w, x3, mid, ".transpose(1, 2)")
    heading(x3 + split_w / 2, mid + 0.15 + mh + 0.3, "split", "one (seq × d_k) matrix per head")
    shape(x3 + split_w / 2, mid - 0.15 - mh - 0.35, "(batch, heads, seq, d_k)")

    # ---- row 2: attend and merge -----------------------------------------------------------------
    mid2 = 2.35
    att = c.box(0.6, mid2 - 0.7, 3.3, 1.4, "attention", "attention", sub="in every head at once", size=11)
    turn_y = 4.55
    c.path([(x3 + split_w + 0.35, mid), (x3 + split_w + 0.6, mid), (x3 + split_w + 0.6, turn_y),
            (att.centre[0], turn_y), att.top])
    c.text(9.0, turn_y + 0.25, "Q, K and V, each split the same way", size=small, color=SHAPE_TEXT)
    shape(att.centre[0], att.y - 0.35, "weights (batch, heads, seq, seq)")
    x5 = 8.6
    merged = [(d_k, green)] * h
    mg = _matrix(c, x5, mid2 - seq * cell / 2, seq, merged, cell)
    for hh in range(1, h):
        xs = x5 + hh * d_k * cell
        c.ax.plot([xs, xs], [mg.y - 0.08, mg.y + mg.h + 0.08], color=TEXT, lw=1.1, zorder=3)
    for hh in range(h):
        c.text(x5 + (hh + 0.5) * d_k * cell, mg.y + mg.h + 0.22, str(hh), size=small, color=SHAPE_TEXT)
    c.text(x5 - 0.1, mg.y + mg.h + 0.22, "head", size=small, color=SHAPE_TEXT, ha="right")
    step(att.x + att.w, x5, mid2, ".transpose(1, 2)", ".reshape(b, s, d_model)")
    shape((att.x + att.w + x5) / 2, mid2 - 0.35, "(batch, heads, seq, d_k)")
    heading(mg.centre[0], mg.y + mg.h + 0.75, "merge = Concat(heads)", "head i back in columns i·d_k …")
    shape(mg.centre[0], mg.y - 0.35, "(batch, seq, d_model)")
    wo = c.box(13.3, mid2 - 0.7, 1.8, 1.4, "$W^O$", "linear", sub="out_proj", size=12)
    c.arrow((mg.x + mg.w + 0.15, mid2), wo.left)
    out = c.box(15.9, mid2 - 0.35, 1.4, 0.7, "output", "tensor", size=10)
    c.arrow(wo.right, out.left)
    shape(out.centre[0], out.y - 0.35, "(batch, seq, d_model)")
    c.text(c.width / 2, 0.3, "merging with .reshape alone (no transpose back) keeps the shape "
           "and mixes positions: the classic bug", size=9, color=KINDS["mask"][1], style="italic")
    return c


def _sublayer_column(c: Canvas, x: float, pre: bool) -> None:
    w, h = 3.0, 0.75
    cx = x + w / 2
    c.box(cx - 0.8, 0.5, 1.6, 0.6, "x", "tensor", size=11)
    c.text(cx + 0.95, 0.8, "(batch, seq, d_model)", size=7.8, color=SHAPE_TEXT, style="italic", ha="left")
    ys = [1.7, 3.0, 4.3] if pre else [1.7, 3.0]
    kinds = (["norm", "ffn", "op"] if pre else ["ffn", "op"])
    labels = (["LayerNorm", "sub-layer f", "Dropout"] if pre else ["sub-layer f", "Dropout"])
    subs = (["norm", "attention or FFN", "p = 0.1"] if pre else ["attention or FFN", "p = 0.1"])
    boxes = []
    prev = (cx, 1.1)
    for y, k, lab, sub in zip(ys, kinds, labels, subs):
        b = c.box(x, y, w, h, lab, "attention" if lab.startswith("sub") and False else k, sub=sub)
        c.arrow(prev, b.bottom)
        prev = b.top
        boxes.append(b)
    plus_y = ys[-1] + 1.35
    plus = c.circle_plus(cx, plus_y)
    c.arrow(prev, plus.bottom)
    # residual path
    rx = x - 0.55
    c.path([(cx, 1.35), (rx, 1.35), (rx, plus_y), (plus.left[0], plus_y)], color=KINDS["tensor"][1])
    c.text(rx - 0.12, (1.35 + plus_y) / 2, "residual", rotation=90, size=8, color=SHAPE_TEXT, ha="right")
    if pre:
        out = c.box(cx - 0.8, plus_y + 0.8, 1.6, 0.6, "y", "tensor", size=11)
        c.arrow(plus.top, out.bottom)
        c.text(cx + 0.95, out.centre[1], "stream never normalised:\na final LayerNorm ends the stack",
               size=7.6, color=SHAPE_TEXT, ha="left")
    else:
        ln = c.box(x, plus_y + 0.65, w, h, "LayerNorm", "norm", sub="norm, on the residual path")
        c.arrow(plus.top, ln.bottom)
        out = c.box(cx - 0.8, ln.y + ln.h + 0.6, 1.6, 0.6, "y", "tensor", size=11)
        c.arrow(ln.top, out.bottom)


def sublayer_post_pre_ln() -> Canvas:
    """Notebook 03: SublayerConnection, post-LN (the paper) and pre-LN side by side."""
    c = Canvas(18.0, 10.0, "One sub-layer: residual, dropout and LayerNorm in two orders (notebook 03)")
    _sublayer_column(c, 2.0, pre=False)
    _sublayer_column(c, 11.0, pre=True)
    for cx, title, formula, call in [(3.5, "post-LN (the paper)", "y = LayerNorm(x + Dropout(f(x)))",
                                      "SublayerConnection(d, norm_first=False)"),
                                     (12.5, "pre-LN (GPT-2 and most since)", "y = x + Dropout(f(LayerNorm(x)))",
                                      "SublayerConnection(d, norm_first=True)")]:
        c.text(cx, 8.75, title, size=11, weight="bold")
        c.text(cx, 8.35, formula, size=8.6, family="monospace")
        c.text(cx, 8.0, call, size=7.6, family="monospace", color=SHAPE_TEXT)
    c.ax.plot([9.0, 9.0], [0.4, 8.0], color="#c8ced6", lw=1, ls=":")
    return c


# ---------------------------------------------------------------------------------------------
# 04 · encoder layer, decoder layer, the whole model (the paper's figure 1, redrawn)
# ---------------------------------------------------------------------------------------------

def _layer_stack(c: Canvas, x: float, y: float, w: float, parts: list[tuple[str, str, str]], *,
                 h: float = 0.72, gap: float = 0.5, residual_x: float | None = None,
                 side_inputs: dict[int, str] | None = None) -> list[Box]:
    """Sub-layers bottom-up, each followed by 'Add & Norm' with its residual path (post-LN)."""
    boxes = []
    cx = x + w / 2
    cur_y = y
    prev_top = None
    rx = residual_x if residual_x is not None else x - 0.35
    for idx, (label, kind, sub) in enumerate(parts):
        split_y = cur_y - gap / 2 if prev_top is not None else cur_y - 0.35
        b = c.box(x, cur_y, w, h, label, kind, sub=sub, size=9.5)
        if prev_top is not None:
            c.arrow(prev_top, b.bottom)
        an = c.box(x, cur_y + h + gap * 0.7, w, h * 0.72, "Add & Norm", "norm", size=9)
        c.arrow(b.top, an.bottom)
        c.path([(cx, split_y), (rx, split_y), (rx, an.centre[1]), an.left], color=KINDS["tensor"][1], lw=1.2)
        boxes.append(b)
        boxes.append(an)
        prev_top = an.top
        cur_y = an.y + an.h + gap
    return boxes


def encoder_layer() -> Canvas:
    """Notebook 04: one encoder layer, post-LN, with module names and shapes."""
    c = Canvas(11.5, 7.8, "EncoderLayer (notebook 04)")
    x, w = 3.0, 4.4
    cx = x + w / 2
    inp = c.box(cx - 1.0, 0.45, 2.0, 0.6, "x", "tensor", size=11)
    c.text(cx + 1.15, 0.75, "(batch, S, d_model)", size=8, color=SHAPE_TEXT, style="italic", ha="left")
    boxes = _layer_stack(c, x, 1.9, w, [
        ("Multi-head self-attention", "attention", "self_attn(x, x, x, src_mask)"),
        ("Feed-forward network", "ffn", "ffn: Linear → ReLU → Linear"),
    ])
    c.arrow(inp.top, boxes[0].bottom, label="Q = K = V = x", label_side="right", label_at=0.55)
    labels = ["sublayers[0]", "sublayers[1]"]
    for an, lab in zip(boxes[1::2], labels):
        c.text(an.x + an.w + 0.15, an.centre[1], lab, size=7.8, family="monospace", ha="left", color=SHAPE_TEXT)
    out = c.box(cx - 1.0, boxes[-1].top[1] + 0.6, 2.0, 0.6, "out", "tensor", size=11)
    c.arrow(boxes[-1].top, out.bottom)
    c.text(cx + 1.15, out.centre[1], "(batch, S, d_model): same shape,\nso layers stack", size=8,
           color=SHAPE_TEXT, style="italic", ha="left")
    mask = c.box(8.1, 2.0, 3.0, 0.55, "src padding mask", "mask", size=8.6)
    c.text(mask.centre[0], mask.y - 0.25, "(batch, 1, 1, S)", size=7.6, color=SHAPE_TEXT, style="italic")
    c.arrow(mask.left, (x + w, 2.27), color=KINDS["mask"][1], dashed=True)
    c.text(0.25, 0.2, "post-LN shown (the paper); norm_first=True moves each norm before its sub-layer",
           size=7.8, color=SHAPE_TEXT, ha="left")
    return c


def decoder_layer() -> Canvas:
    """Notebook 04: one decoder layer: masked self-attention, cross-attention, FFN."""
    c = Canvas(13.8, 9.9, "DecoderLayer (notebook 04)")
    x, w = 3.5, 5.3
    cx = x + w / 2
    inp = c.box(cx - 1.0, 0.45, 2.0, 0.6, "y", "tensor", size=11)
    c.text(cx + 1.15, 0.75, "(batch, T, d_model)", size=8, color=SHAPE_TEXT, style="italic", ha="left")
    boxes = _layer_stack(c, x, 1.9, w, [
        ("Masked multi-head self-attention", "attention", "self_attn(y, y, y, tgt_mask)"),
        ("Multi-head cross-attention", "attention", "cross_attn(y, memory, memory, memory_mask)"),
        ("Feed-forward network", "ffn", "ffn"),
    ])
    c.arrow(inp.top, boxes[0].bottom, label="Q = K = V = y", label_side="right", label_at=0.55)
    for an, lab in zip(boxes[1::2], ["sublayers[0]", "sublayers[1]", "sublayers[2]"]):
        c.text(an.x + an.w + 0.15, an.centre[1], lab, size=7.8, family="monospace", ha="left", color=SHAPE_TEXT)
    out = c.box(cx - 1.0, boxes[-1].top[1] + 0.6, 2.0, 0.6, "out", "tensor", size=11)
    c.arrow(boxes[-1].top, out.bottom)
    c.text(cx + 1.15, out.centre[1], "(batch, T, d_model)", size=8, color=SHAPE_TEXT, style="italic", ha="left")
    # memory into cross-attention (keys and values)
    cross = boxes[2]
    mem = c.box(0.3, cross.y - 1.1, 2.3, 0.65, "memory", "tensor", size=10)
    c.text(mem.centre[0], mem.y - 0.22, "encoder output", size=7.6, color=SHAPE_TEXT)
    c.text(mem.centre[0], mem.y - 0.5, "(batch, S, d_model)", size=7.6, color=SHAPE_TEXT, style="italic")
    c.path([mem.top, (mem.centre[0], cross.centre[1]), cross.left], color=KINDS["attention"][1])
    c.text(mem.centre[0] + 0.1, cross.centre[1] + 0.22, "K, V", size=8.2, ha="left", color=KINDS["attention"][1])
    # masks
    m1 = c.box(10.4, boxes[0].y + 0.05, 3.1, 0.62, "causal & tgt padding", "mask", size=8.4)
    c.text(m1.centre[0], m1.y - 0.22, "(batch, 1, T, T)", size=7.6, color=SHAPE_TEXT, style="italic")
    c.arrow(m1.left, (x + w, boxes[0].centre[1]), color=KINDS["mask"][1], dashed=True)
    m2 = c.box(10.4, cross.y + 0.05, 3.1, 0.62, "src padding", "mask", size=8.4)
    c.text(m2.centre[0], m2.y - 0.22, "(batch, 1, 1, S)", size=7.6, color=SHAPE_TEXT, style="italic")
    c.arrow(m2.left, (x + w, cross.centre[1]), color=KINDS["mask"][1], dashed=True)
    c.text(0.25, 0.2, "post-LN shown (the paper). Cross-attention, scores (batch, heads, T, S), is the only place the decoder reads the source",
           size=7.8, color=SHAPE_TEXT, ha="left")
    return c


def _mini_layer(c: Canvas, x: float, y: float, w: float, parts: list[tuple[str, str, str]]) -> tuple[float, list[Box]]:
    """A compact post-LN layer inside a stack: each sub-layer (its module name, what it is) and its
    'Add & Norm' (``sublayers[i]``) with the residual path; returns the top y and the sub-layer boxes."""
    h, hn, gap = 0.78, 0.4, 0.22
    cx = x + w / 2
    cur = y
    prev = None
    boxes = []
    for i, (name, kind, what) in enumerate(parts):
        b = c.box(x, cur, w, h, "", kind, radius=0.08)
        c.text(cx, cur + h * 0.65, name, size=9.5, family="monospace", weight="bold")
        c.text(cx, cur + h * 0.28, what, size=8.0, color=SHAPE_TEXT)
        if prev is not None:
            c.arrow(prev, b.bottom, lw=1.1)
        an = c.box(x, cur + h + gap, w, hn, f"Add & Norm · sublayers[{i}]", "norm", size=8.0, radius=0.06)
        c.arrow(b.top, an.bottom, lw=1.1)
        c.path([(cx, cur - gap / 2), (x - 0.18, cur - gap / 2), (x - 0.18, an.centre[1]), an.left],
               color=KINDS["tensor"][1], lw=1.0)
        boxes.append(b)
        prev = an.top
        cur = an.y + hn + gap
    return cur - gap, boxes


def transformer_model() -> Canvas:
    """Notebook 04: the paper's figure 1 redrawn, in one order (post-LN, ``norm_first=False``, the
    paper's and :func:`utils.model.make_model`'s default): stacks, embeddings, generator, with the
    attribute names of :mod:`utils.model` (``self_attn``, ``cross_attn``, ``ffn``, ``sublayers[i]``)."""
    c = Canvas(18.0, 14.7, "The Transformer, post-LN: the paper's figure 1 redrawn (notebook 04: utils.model)")
    ex, dx, w = 2.9, 10.4, 4.6
    ecx, dcx = ex + w / 2, dx + w / 2
    small = 8.4
    # inputs
    src = c.box(ecx - 1.3, 1.25, 2.6, 0.6, "source ids", "tensor", size=9.5)
    tgt = c.box(dcx - 1.8, 1.25, 3.6, 0.6, "target ids, shifted right", "tensor", size=9)
    c.text(src.right[0] + 0.1, src.centre[1], "(batch, S)", size=small, color=SHAPE_TEXT, style="italic", ha="left")
    c.text(tgt.right[0] + 0.1, tgt.centre[1], "(batch, T)", size=small, color=SHAPE_TEXT, style="italic", ha="left")
    se = c.box(ex, 2.3, w, 0.62, "src_embed  × √d_model", "embed", size=9.5)
    te = c.box(dx, 2.3, w, 0.62, "tgt_embed  × √d_model", "embed", size=9.5)
    c.arrow(src.top, se.bottom)
    c.arrow(tgt.top, te.bottom)
    sp = c.box(ex, 3.35, w, 0.62, "+ src_pos (sinusoids), dropout", "embed", size=9)
    tp = c.box(dx, 3.35, w, 0.62, "+ tgt_pos (sinusoids), dropout", "embed", size=9)
    c.arrow(se.top, sp.bottom)
    c.arrow(te.top, tp.bottom)
    # encoder stack
    enc_y = 4.65
    enc_top, _ = _mini_layer(c, ex + 0.4, enc_y + 0.45, w - 0.8, [("self_attn", "attention", "multi-head self-attention"),
                                                                  ("ffn", "ffn", "feed-forward network")])
    c.box(ex - 0.45, enc_y, w + 0.9, enc_top - enc_y + 0.3, "", "group", radius=0.2, lw=1.2)
    c.ax.patches[-1].set_zorder(0)
    c.text(ex - 0.6, (enc_y + enc_top) / 2 + 0.2, "N ×", size=12, weight="bold", ha="right")
    c.text(ex - 0.6, (enc_y + enc_top) / 2 - 0.3, "encoder.layers", size=small, family="monospace",
           ha="right", color=SHAPE_TEXT)
    c.arrow(sp.top, (ecx, enc_y + 0.45), "(batch, S, d_model)", label_at=0.35, size=small)
    mem_y = enc_top + 1.1
    c.arrow((ecx, enc_top + 0.3), (ecx, mem_y - 0.2))
    c.text(ecx, mem_y, "memory  (batch, S, d_model)", size=9.5, weight="bold")
    c.text(ecx, mem_y + 0.45, "K and V of every decoder layer's cross_attn", size=small, color=KINDS["attention"][1])
    # decoder stack
    dec_y = 4.65
    dec_top, dec_boxes = _mini_layer(c, dx + 0.4, dec_y + 0.45, w - 0.8, [
        ("self_attn", "attention", "masked self-attention"),
        ("cross_attn", "attention", "cross-attention to memory"),
        ("ffn", "ffn", "feed-forward network")])
    c.box(dx - 0.45, dec_y, w + 0.9, dec_top - dec_y + 0.3, "", "group", radius=0.2, lw=1.2)
    c.ax.patches[-1].set_zorder(0)
    c.text(dx + w + 0.6, (dec_y + dec_top) / 2 + 0.2, "× N", size=12, weight="bold", ha="left")
    c.text(dx + w + 0.6, (dec_y + dec_top) / 2 - 0.3, "decoder.layers", size=small, family="monospace",
           ha="left", color=SHAPE_TEXT)
    c.arrow(tp.top, (dcx, dec_y + 0.45), "(batch, T, d_model)", label_at=0.35, size=small)
    # memory → every decoder layer's cross-attention
    cross = dec_boxes[1]
    mx = 8.45
    c.path([(ecx + 2.2, mem_y), (mx, mem_y), (mx, cross.centre[1]), cross.left],
           color=KINDS["attention"][1], lw=1.6)
    c.text((mx + cross.x) / 2, cross.centre[1] + 0.25, "K, V", size=9, color=KINDS["attention"][1])
    # top of the decoder: straight into the generator (post-LN: no final norm)
    gen = c.box(dx, dec_top + 1.1, w, 0.62, "generator: Linear(d_model, V)", "linear", size=9.5)
    c.arrow((dcx, dec_top + 0.3), gen.bottom, "(batch, T, d_model)", size=small)
    smx = c.box(dx, gen.top[1] + 0.75, w, 0.72, "softmax", "op", size=10, sub="in the loss / when decoding")
    c.arrow(gen.top, smx.bottom, "logits (batch, T, V)", size=small)
    c.text(dcx, smx.top[1] + 0.35, "next-token probabilities", size=10, weight="bold")
    c.text(0.3, 0.75, "Drawn post-LN (norm_first=False, the paper's order and make_model's default): "
           "sub-layer, add the residual, then LayerNorm.", size=small, color=SHAPE_TEXT, ha="left")
    c.text(0.3, 0.35, "Pre-LN (norm_first=True) puts each LayerNorm before its sub-layer and adds a final "
           "encoder.norm and decoder.norm.", size=small, color=SHAPE_TEXT, ha="left")
    c.text(0.3, c.height - 1.05, "share_embeddings=True: src_embed, tgt_embed and the generator's\n"
           "weight are one (V, d_model) matrix", size=small, color=KINDS["embed"][1], ha="left", va="top")
    return c


# ---------------------------------------------------------------------------------------------
# 05 · teacher forcing: the target shifted, the causal mask, a loss at every position
# ---------------------------------------------------------------------------------------------

#: A Multi30k validation pair (row 52) as notebook 05's short run cuts it: the joint BPE of
#: ``utils.short_runs`` (``BPETokenizer.train(train_de + train_en, vocab_size=2000)``), then
#: ``encode(english, add_special=True)``. Computed once and written here, so drawing needs no data;
#: ``tests/test_diagrams.py::test_bpe_examples_are_the_real_tokenizations`` recomputes them.
TEACHER_FORCING_EXAMPLE = ("Zwei Mädchen gehen eine Straße entlang.", "Two girls walking down the street.",
                           ["<bos>", "▁Two", "▁girls", "▁walking", "▁down", "▁the", "▁street.", "<eos>"],
                           [1, 266, 918, 416, 410, 156, 675, 2])


def teacher_forcing() -> Canvas:
    """Notebook 05: teacher forcing. The decoder reads ``tgt[:, :-1]`` and is scored on ``tgt[:, 1:]``;
    the causal mask lets position t see inputs 0..t only; one loss term per position."""
    source, _, tokens, ids = TEACHER_FORCING_EXAMPLE
    n = len(tokens) - 1                                            # positions: 7
    small = 8.6
    c = Canvas(20.6, 9.6, "Teacher forcing: read the target shifted right, predict every next token (notebook 05)")
    step, x0 = 1.52, 5.75                                           # column t sits at x0 + t * step

    def col(t):
        return x0 + t * step

    def token_box(t, k, y, faded=False):
        """Target token k drawn in column t at height y (box 1.36 × 0.9: the token, its id below)."""
        kind = "group" if faded else "tensor"
        c.box(col(t) - 0.68, y, 1.36, 0.9, "", kind, lw=1.0 if faded else 1.4)
        colour = "#9aa4b1" if faded else TEXT
        c.token(col(t), y + 0.6, tokens[k], size=9.5, color=colour)
        c.text(col(t), y + 0.22, str(ids[k]), size=small, color="#9aa4b1" if faded else SHAPE_TEXT)

    def stage(y, title, code):
        c.text(0.3, y + 0.22, title, ha="left", size=10.5, weight="bold")
        c.text(0.3, y - 0.22, code, ha="left", size=small, color=SHAPE_TEXT, family="monospace")

    # decoder input: tgt[:, :-1] (the <eos> is never read)
    y_in = 1.45
    stage(y_in + 0.45, "decoder input", "tgt_in = tgt[:, :-1]")
    for t in range(n):
        token_box(t, t, y_in)
    token_box(n, n, y_in, faded=True)
    c.text(col(n), y_in - 0.25, "dropped", size=small, color="#9aa4b1")
    for t in range(n):
        c.text(col(t), y_in - 0.25, f"t = {t}", size=small, color=SHAPE_TEXT)
    # decoder
    y_dec, h_dec = 2.95, 2.1
    dec = c.box(col(0) - 0.75, y_dec, col(n - 1) - col(0) + 1.5, h_dec, "", "attention", lw=1.4)
    c.text(dec.centre[0], y_dec + h_dec - 0.3, "decoder: masked self_attn, cross_attn to the source, ffn (× N)",
           size=9.5)
    c.text(dec.centre[0], y_dec + h_dec - 0.68, "model.decode(tgt_in, memory, src_ids)", size=small,
           family="monospace", color=SHAPE_TEXT)
    for t in range(n):
        c.arrow((col(t), y_in + 0.9), (col(t), y_dec), lw=1.2)
    # what position 3 sees
    seen, focus = KINDS["attention"][1], 3
    top = (col(focus), y_dec + 0.95)
    for j in range(n):
        if j <= focus:
            c.ax.plot([col(j), top[0]], [y_dec + 0.08, top[1]], color=seen, lw=1.6, zorder=3)
        else:
            mid = (col(j) + (top[0] - col(j)) * 0.45, y_dec + 0.08 + (top[1] - y_dec - 0.08) * 0.45)
            c.ax.plot([col(j), mid[0]], [y_dec + 0.08, mid[1]], color=KINDS["mask"][1], lw=1.3, ls="--", zorder=3)
            c.text(mid[0], mid[1] + 0.02, "×", size=11, color=KINDS["mask"][1], weight="bold")
    c.ax.add_patch(plt.Circle(top, 0.09, color=seen, zorder=4))
    c.text(top[0] + 0.2, top[1] + 0.05, f"position {focus} sees inputs 0–{focus} only", size=small, color=seen,
           ha="left", weight="bold")
    # one loss term per position
    y_loss = 5.65
    stage(y_loss + 0.3, "loss per position", "−log p_t(label_t)")
    for t in range(n):
        c.arrow((col(t), y_dec + h_dec), (col(t), y_loss), lw=1.2)
        c.box(col(t) - 0.6, y_loss, 1.2, 0.6, "−log p", "op", size=9)
    c.text(col(0) - 0.75, (y_dec + h_dec + y_loss) / 2, "logits (1, 7, V)", size=small, color=SHAPE_TEXT,
           style="italic", ha="right")
    c.text(col(n) - 0.3, y_loss + 0.45, "loss = their mean", size=9.5, ha="left", weight="bold")
    c.text(col(n) - 0.3, y_loss + 0.05, "(<pad> labels are skipped)", size=small, ha="left", color=SHAPE_TEXT)
    # labels: tgt[:, 1:] (the <bos> is never predicted)
    y_lab = 6.95
    stage(y_lab + 0.45, "labels", "tgt_out = tgt[:, 1:]")
    for t in range(n):
        token_box(t, t + 1, y_lab)
        c.arrow((col(t), y_lab), (col(t), y_loss + 0.6), lw=1.2)
    token_box(-1, 0, y_lab, faded=True)
    c.text(col(-1), y_lab + 1.12, "dropped", size=small, color="#9aa4b1")
    c.text(col(n) - 0.3, y_lab + 0.62, "the same sentence,", size=small, ha="left", color=SHAPE_TEXT)
    c.text(col(n) - 0.3, y_lab + 0.26, "one column to the left", size=small, ha="left", color=SHAPE_TEXT)
    # the causal mask, all positions
    gx, gy, cell = 17.8, y_dec + 0.1, 0.24
    g = c.grid(gx, gy, np.tril(np.ones((n, n), dtype=bool)), cell=cell)
    c.ax.add_patch(Rectangle((gx, gy + (n - 1 - focus) * cell), n * cell, cell, fill=False, edgecolor=TEXT,
                             lw=1.4, zorder=3))
    c.text(g.x + g.w / 2, g.y + g.h + 0.2, "causal_mask(7)", size=small, family="monospace")
    c.text(g.x - 0.12, g.y + g.h / 2, "position t", rotation=90, size=small, color=SHAPE_TEXT, ha="right")
    c.text(g.x + g.w + 0.12, g.y + (n - 0.5 - focus) * cell, f"row {focus}", size=small, ha="left")
    c.text(g.x + g.w / 2, g.y - 0.22, "inputs it may see", size=small, color=SHAPE_TEXT)
    c.text(0.3, 0.75, f'One Multi30k validation pair: source "{source}", target tgt (1, {len(ids)}), '
           "cut by notebook 05's joint BPE (2,000 tokens).", size=small, color=SHAPE_TEXT, ha="left")
    c.text(0.3, 0.35, "utils.batching.teacher_forcing(tgt) returns (tgt_in, tgt_out); all 7 predictions "
           "come from one forward pass.", size=small, color=SHAPE_TEXT, ha="left")
    return c


# ---------------------------------------------------------------------------------------------
# 06 · beam search as a tree of hypotheses, and the length penalty
# ---------------------------------------------------------------------------------------------

#: The beam diagram's hand-written "model": after each prefix, the next word's probabilities (each
#: row sums to 1). The tree is what :func:`beam_tree` finds with it, by the rule of
#: :func:`utils.decode.beam_search`; ``tests/test_diagrams.py`` runs ``beam_search`` itself on this
#: table and checks the same winner for both alphas.
BEAM_TABLE: dict[tuple[str, ...], dict[str, float]] = {
    (): {"a": 0.6, "the": 0.3, "two": 0.1},
    ("a",): {"dog": 0.7, "cat": 0.2, "boy": 0.1},
    ("the",): {"dog": 0.87, "cat": 0.13},
    ("a", "dog"): {"runs": 0.6, "<eos>": 0.35, "sits": 0.05},
    ("the", "dog"): {"runs": 0.45, "sits": 0.4, "<eos>": 0.15},
    ("a", "dog", "runs"): {"<eos>": 0.55, "fast": 0.3, ".": 0.15},
    ("the", "dog", "runs"): {"fast": 0.6, ".": 0.3, "<eos>": 0.1},
}
BEAM_SIZE = 2
BEAM_ALPHA = 0.6


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016), as :func:`utils.decode.length_penalty`: ``((5 + |Y|) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class Hypothesis:
    words: tuple[str, ...]       # without <bos>
    word_logp: float             # log p of its last word
    logp: float                  # log P of the whole prefix
    rank: int                    # its rank among the step's 2k best extensions
    status: str                  # "live", "finished" or "pruned"


def beam_tree(table: dict[tuple[str, ...], dict[str, float]] = BEAM_TABLE, k: int = BEAM_SIZE,
              max_len: int = 10) -> list[list[Hypothesis]]:
    """Beam search on ``table`` by the rule of :func:`utils.decode.beam_search`: each step ranks every
    extension of the live prefixes by log P and examines the best 2k; an ``<eos>`` among the first k
    finishes a hypothesis, the first k others stay live, the rest are pruned. Stops when k have finished.
    Returns, per step, the examined extensions."""
    live, steps, n_finished = [()], [], 0
    for _ in range(max_len):
        logp = {h.words: h.logp for h in steps[-1]} if steps else {(): 0.0}
        cands = [(logp[p] + math.log(q), math.log(q), p + (w,)) for p in live for w, q in table[p].items()]
        cands = sorted(cands, key=lambda c: -c[0])[: 2 * k]          # stable: ties keep their order
        step, live = [], []
        for rank, (total, word_logp, words) in enumerate(cands):
            if words[-1] == "<eos>":
                status = "finished" if rank < k else "pruned"
            else:
                status = "live" if len(live) < k else "pruned"
                if status == "live":
                    live.append(words)
            n_finished += status == "finished"
            step.append(Hypothesis(words, word_logp, total, rank, status))
        steps.append(step)
        if n_finished >= k or not live:
            break
    return steps


def finished_ranking(steps: list[list[Hypothesis]], alpha: float) -> list[tuple[Hypothesis, float]]:
    """The finished hypotheses with their scores ``log P / lp(|Y|)`` (|Y| counts ``<eos>``), best first."""
    done = [h for step in steps for h in step if h.status == "finished"]
    return sorted(((h, h.logp / length_penalty(len(h.words), alpha)) for h in done), key=lambda hs: -hs[1])


def beam_search_tree() -> Canvas:
    """Notebook 06: beam search (k = 2) as a tree, and the length penalty re-ranking two finished
    translations of different lengths."""
    steps = beam_tree()
    small = 8.6
    c = Canvas(15.6, 13.4, f"Beam search, k = {BEAM_SIZE}, as a tree of hypotheses (notebook 06: utils.decode)")
    grey = "#9aa4b1"
    x_of = [0.9 + 3.2 * s for s in range(len(steps) + 1)]
    bw, bh = 1.85, 0.8
    top_y, gap = 10.7, 1.45
    pos: dict[tuple[str, ...], tuple[float, float]] = {}
    order = [()]
    pos[()] = (x_of[0], top_y - 1.5 * gap)
    # step headings
    for s in range(1, len(steps) + 1):
        c.text(x_of[s] + bw / 2, 12.25, f"step {s}", size=10, weight="bold")
    c.text(x_of[0] + 0.8, 12.25, "start", size=10, weight="bold")
    c.text(c.width / 2, 11.8, f"Each step extends every live prefix and examines the 2k = {2 * BEAM_SIZE} best "
           "extensions by log P:", size=small, color=SHAPE_TEXT)
    c.text(c.width / 2, 11.45, "an <eos> among the first k finishes a translation (thick box); the first k others "
           "stay live; the rest are pruned.", size=small, color=SHAPE_TEXT)
    c.text(x_of[0], 6.3, "on each edge: log p of that word", size=small, color=SHAPE_TEXT, ha="left",
           style="italic")
    c.box(pos[()][0], pos[()][1] - bh / 2, 1.6, bh, "<bos>", "tensor", size=10)
    for s, step in enumerate(steps, start=1):
        parents = [p for p in order if p in pos]
        ranked = sorted(step, key=lambda h: (parents.index(h.words[:-1]), h.rank))
        for i, h in enumerate(ranked):
            y = top_y - i * gap
            pos[h.words] = (x_of[s], y)
            px, py = pos[h.words[:-1]]
            pw = 1.6 if s == 1 else bw
            pruned = h.status == "pruned"
            colour = grey if pruned else "#3b4450"
            c.ax.plot([px + pw, x_of[s]], [py, y], color=colour, lw=1.0 if pruned else 1.5,
                      ls="--" if pruned else "-", zorder=1)
            at = 0.6                                               # the word's log p, on its edge
            c.text(px + pw + (x_of[s] - px - pw) * at, py + (y - py) * at, f"{h.word_logp:.2f}".replace("-", "−"),
                   size=small, color=grey if pruned else SHAPE_TEXT, style="italic", zorder=4,
                   bbox=dict(facecolor="white", edgecolor="none", pad=0.6))
            kind = "group" if pruned else "tensor"
            c.box(x_of[s], y - bh / 2, bw, bh, "", kind, lw=2.6 if h.status == "finished" else (1.0 if pruned else 1.4))
            c.text(x_of[s] + bw / 2, y + 0.15, h.words[-1], size=10, color=grey if pruned else TEXT,
                   weight="bold" if h.status == "finished" else "normal")
            c.text(x_of[s] + bw / 2, y - 0.2, f"log P {h.logp:.2f}".replace("-", "−"), size=small,
                   color=grey if pruned else SHAPE_TEXT)
            if pruned:
                c.text(x_of[s] + bw / 2, y - bh / 2 - 0.25, "pruned", size=small, color=grey)
        order = [h.words for h in ranked]
    last = steps[-1]
    c.text(x_of[len(steps)] + bw / 2, top_y - len(last) * gap + 0.45,
           f"{BEAM_SIZE} finished = k: the search stops", size=small, color=SHAPE_TEXT)
    # ---- ranking the finished translations -----------------------------------------------------
    y0 = 4.7
    c.ax.plot([0.4, c.width - 0.4], [y0 + 0.35, y0 + 0.35], color="#c8ced6", lw=1, ls=":")
    c.text(0.4, y0 - 0.1, "Ranking the finished translations (Wu et al. 2016, the paper's α = 0.6):",
           size=10.5, weight="bold", ha="left")
    c.text(0.4, y0 - 0.75, r"$\mathrm{score}(Y) = \log P(Y)\ /\ \mathrm{lp}(Y), \qquad "
           r"\mathrm{lp}(Y) = \left(\frac{5 + |Y|}{6}\right)^{\alpha}$", size=11.5, ha="left")
    c.text(9.9, y0 - 0.75, "|Y| counts <eos>, not <bos>", size=small, ha="left", color=SHAPE_TEXT)
    cols = [0.5, 4.6, 5.8, 7.6, 10.1, 12.6]
    heads = ["finished Y", "|Y|", "log P(Y)", "α = 0: score", "α = 0.6: lp(Y)", "α = 0.6: score"]
    yh = y0 - 1.6
    for x, head in zip(cols, heads):
        c.text(x, yh, head, size=9.5, weight="bold", ha="left")
    plain = finished_ranking(steps, 0.0)
    ranked = finished_ranking(steps, BEAM_ALPHA)
    done = sorted((h for h, _ in plain), key=lambda h: len(h.words))
    for r, h in enumerate(done):
        y = yh - 0.55 - r * 0.5
        s0, s6 = h.logp, h.logp / length_penalty(len(h.words), BEAM_ALPHA)
        best0, best6 = h is plain[0][0], h is ranked[0][0]
        cells = [" ".join(h.words), str(len(h.words)), f"{h.logp:.2f}", f"{s0:.2f}" + ("  ✓" if best0 else ""),
                 f"{length_penalty(len(h.words), BEAM_ALPHA):.2f}", f"{s6:.2f}" + ("  ✓" if best6 else "")]
        for j, (x, txt) in enumerate(zip(cols, cells)):
            bold = (j == 3 and best0) or (j == 5 and best6)
            c.text(x, y, txt.replace("-", "−"), size=9.5, ha="left", weight="bold" if bold else "normal",
                   color=KINDS["attention"][1] if bold else TEXT)
    short, long_ = done[0], done[-1]
    y = yh - 0.55 - len(done) * 0.5 - 0.25
    c.text(0.5, y, f"α = 0 ranks by plain log P: the shorter \"{' '.join(short.words[:-1])}\" wins, since every "
           "extra token multiplies in a probability below 1.", size=small, ha="left")
    c.text(0.5, y - 0.42, f"α = 0.6 divides the longer one's log P by more (lp {length_penalty(len(long_.words), BEAM_ALPHA):.2f}"
           f" against {length_penalty(len(short.words), BEAM_ALPHA):.2f}): \"{' '.join(long_.words[:-1])}\" wins.",
           size=small, ha="left")
    c.text(0.5, y - 0.84, "The search ranks prefixes by plain log P; α only ranks the finished ones: "
           f"beam_search(model, src, beam_size={BEAM_SIZE}, length_penalty_alpha=0.6).",
           size=small, ha="left", color=SHAPE_TEXT)
    return c


# ---------------------------------------------------------------------------------------------
# 08 · the KV cache, step by step
# ---------------------------------------------------------------------------------------------

def kv_cache_steps() -> Canvas:
    """Notebook 08: what :class:`utils.kv_cache.KVCache` holds while a GPT generates: at step t the
    newest token's q, k, v; k and v appended to the cached rows; q attends over all t cached keys."""
    n_steps, d_head = 4, 3
    chars = "ROME"
    cell, row_gap = 0.3, 0.06
    small = 8.6
    c = Canvas(19.6, 9.2, "The KV cache while a GPT generates: one layer, one head (notebook 08: utils.kv_cache)")
    old_fill, new_fill, new_edge = "#c9d1db", KINDS["linear"][0], KINDS["linear"][1]
    green = KINDS["attention"][1]
    rng = np.random.default_rng(8)
    x_first, pitch = 2.75, 4.3
    y_tok, y_proj, y_out, y_head = 1.75, 3.3, 6.55, 7.55
    y_newest = y_proj + cell + 0.4

    def vector(x, y, fill, edge):
        for j in range(d_head):
            c.ax.add_patch(Rectangle((x + j * cell, y), cell, cell, facecolor=fill, edgecolor=edge, lw=0.9, zorder=2))
        return Box(x, y, d_head * cell, cell)

    def stage(y, lines):
        c.text(0.3, y, lines[0], ha="left", size=10, weight="bold")
        for k, line in enumerate(lines[1:], start=1):
            mono = line.startswith("cache") or line.startswith("in_proj")
            c.text(0.3, y - 0.36 * k, line, ha="left", size=small, color=SHAPE_TEXT,
                   family="monospace" if mono else None, style="normal" if mono else "italic")

    stage(y_tok + 0.45, ["newest token", "(batch, 1)"])
    stage(y_proj + 0.35, ["its q, k, v", "in_proj"])
    stage(y_newest + 1.9, ["cache", "cache.keys[i]", "cache.values[i]", "(batch, heads,", " t, d_head)"])
    stage(y_out + 0.55, ["output", "(batch, heads,", " 1, d_head)"])
    for t in range(1, n_steps + 1):
        x = x_first + (t - 1) * pitch
        xq, xk, xw, xv = x, x + 1.45, x + 2.45, x + 2.9
        c.text(x + 2.0, y_head, f"step t = {t}", size=10.5, weight="bold")
        tok = c.box(xk + 0.1, y_tok, 1.6, 0.6, f"'{chars[t - 1]}'", "tensor", size=10.5)
        c.text(tok.right[0] + 0.1, tok.centre[1], f"$x_{t}$", size=10, ha="left", color=SHAPE_TEXT)
        # the newest token's projections
        q, k, v = (vector(xx, y_proj, new_fill, new_edge) for xx in (xq, xk, xv))
        for vec, name in ((q, "q"), (k, "k"), (v, "v")):
            c.text(vec.x + vec.w + 0.08, vec.centre[1], f"${name}_{t}$", size=10, ha="left")
            c.ax.plot([tok.centre[0], vec.centre[0]], [tok.y + tok.h, vec.y], color="#3b4450", lw=1.0, zorder=1)
        # the cache after appending: rows 1..t, the newest (t) at the bottom, right above k_t and v_t
        weights = rng.dirichlet(np.ones(t))
        rows = []
        for j in range(1, t + 1):
            y = y_newest + (t - j) * (cell + row_gap)
            fill, edge = (new_fill, new_edge) if j == t else (old_fill, "white")
            rows.append(vector(xk, y, fill, edge))
            vector(xv, y, fill, edge)
            c.ax.add_patch(Rectangle((xw, y), cell, cell, facecolor=plt.get_cmap("Greens")(0.15 + 0.8 * weights[j - 1]),
                                     edgecolor="white", lw=0.6, zorder=2))
            c.text(xk - 0.1, y + cell / 2, str(j), size=small, ha="right", color=SHAPE_TEXT)
        top = y_newest + n_steps * (cell + row_gap) + 0.05
        c.text(xk + 1.5 * cell, top + 0.2, "K", size=10, weight="bold")
        c.text(xw + cell / 2, top + 0.2, "w", size=10, weight="bold", color=green)
        c.text(xv + 1.5 * cell, top + 0.2, "V", size=10, weight="bold")
        for vec in (k, v):                                         # append: the new row joins the cache
            c.arrow((vec.centre[0], vec.y + cell + 0.03), (vec.centre[0], y_newest - 0.03), lw=1.2, color=new_edge)
        for r in rows:                                             # q_t · k_j for every cached key
            c.ax.plot([q.x + q.w, r.x - 0.36], [q.y + cell, r.y + cell / 2], color=green, lw=1.1, zorder=1)
        # output: the weighted sum of the t value rows
        out = vector(xv, y_out, KINDS["attention"][0], green)
        c.arrow((xv + 1.5 * cell, top + 0.42), (xv + 1.5 * cell, out.y - 0.03), lw=1.2, color=green)
        c.text(xk + 0.45, y_out + cell / 2, r"$\Sigma_j\, w_j v_j$", size=10, color=green)
        c.text(x + 2.0, y_tok - 0.3, f"cache length {t}: {t} dot product{'s' if t > 1 else ''}", size=small,
               color=SHAPE_TEXT)
    c.text(0.3, 0.75, "Grey rows are cached; the orange row is the newest token's k and v, appended along dim 2 "
           "(cached_self_attention). w = softmax(q_t · k_j / √d_head).", size=small, ha="left", color=SHAPE_TEXT)
    c.text(0.3, 0.35, "No mask: the newest token may see every cached key. Each layer i keeps its own "
           "cache.keys[i] and cache.values[i].", size=small, ha="left", color=SHAPE_TEXT)
    return c


#: every diagram: file stem → drawing function. The stem's prefix names the notebook that shows it.
DIAGRAMS: dict[str, Callable[[], Canvas]] = {
    "01_diagram_text_to_vectors": text_to_vectors,
    "02_diagram_attention": attention_flow,
    "03_diagram_heads_split_merge": heads_split_merge,
    "03_diagram_sublayer_post_pre_ln": sublayer_post_pre_ln,
    "04_diagram_encoder_layer": encoder_layer,
    "04_diagram_decoder_layer": decoder_layer,
    "04_diagram_transformer": transformer_model,
    "05_diagram_teacher_forcing": teacher_forcing,
    "06_diagram_beam_search": beam_search_tree,
    "08_diagram_kv_cache": kv_cache_steps,
}


def draw_all(folder: Path = FIGURES_DIR) -> list[Path]:
    """Draw every diagram into ``folder`` as SVG and PNG; return the paths written."""
    written = []
    for stem, draw in DIAGRAMS.items():
        written.extend(draw().save(stem, folder))
    return written


ATTACHMENT = re.compile(r"!\[[^\]]*\]\(attachment:([A-Za-z0-9_.-]+\.png)\)")


def embed_in_notebooks(notebooks: list[Path] | None = None, folder: Path = FIGURES_DIR, *,
                       write: bool = True) -> list[Path]:
    """Put each diagram (a PNG of :data:`DIAGRAMS`) that a markdown cell references as
    ``attachment:NAME.png`` into that cell's attachments (base64), so the notebook carries its own
    pictures; a diagram attachment nothing references goes. Every other attachment (a learner's own
    picture) is kept as it is. Returns the notebooks changed (with ``write=False``: the notebooks that
    would change; nothing is written).

    Raises:
        FileNotFoundError: if a referenced diagram is not in ``folder`` (run :func:`draw_all`).
    """
    notebooks = notebooks or sorted((REPO_ROOT / "notebooks").glob("0[1-8]_*.ipynb"))
    drawn = {f"{stem}.png" for stem in DIAGRAMS}
    changed = []
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        dirty = False
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            names = [n for n in ATTACHMENT.findall("".join(cell["source"])) if n in drawn]
            if not names and "attachments" not in cell:
                continue
            attachments = {k: v for k, v in cell.get("attachments", {}).items() if k not in drawn}   # not ours
            for name in names:
                png = folder / name
                if not png.is_file():
                    raise FileNotFoundError(f"{path.name} references {name}, which is not in {folder}; "
                                            "run `python tools/diagrams.py` to draw it")
                attachments[name] = {"image/png": base64.b64encode(png.read_bytes()).decode("ascii")}
            if cell.get("attachments") != attachments:
                if attachments:
                    cell["attachments"] = attachments
                else:
                    cell.pop("attachments", None)
                dirty = True
        if dirty:
            if write:
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


def stale_files() -> list[str]:
    """The committed figures and notebooks that differ from what the code draws now (writes nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        stale = [f"figures/{p.name}" for p in draw_all(Path(tmp))
                 if not (FIGURES_DIR / p.name).is_file() or (FIGURES_DIR / p.name).read_bytes() != p.read_bytes()]
    return stale + [str(p.relative_to(REPO_ROOT)) for p in embed_in_notebooks(write=False)]


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        stale = stale_files()
        for name in stale:
            print("stale:", name, "(run python tools/diagrams.py)")
        sys.exit(1 if stale else 0)
    for p in draw_all():
        print("wrote", p.relative_to(REPO_ROOT))
    for p in embed_in_notebooks():
        print("embedded diagrams in", p.relative_to(REPO_ROOT))
