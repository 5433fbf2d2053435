"""The architecture diagrams (`tools/diagrams.py`) and how notebooks 01–04 carry them. Checks only:
nothing here writes into figures/ or notebooks/.

Route (see the README): each diagram is drawn by code into ``figures/NN_diagram_*.svg`` (vector
source) and ``.png``; a notebook shows it through a markdown-cell attachment
(``![...](attachment:NN_diagram_x.png)`` with the PNG in the cell's ``attachments``), which
JupyterLab, Colab (a notebook opened alone) and GitHub all render.
"""

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("diagrams", REPO / "tools" / "diagrams.py")
diagrams = importlib.util.module_from_spec(_spec)
sys.modules["diagrams"] = diagrams                 # dataclasses look their module up while it loads
_spec.loader.exec_module(diagrams)
ATTACHMENT, DIAGRAMS, draw_all, embed_in_notebooks = (diagrams.ATTACHMENT, diagrams.DIAGRAMS, diagrams.draw_all,
                                                      diagrams.embed_in_notebooks)
FIGURES = REPO / "figures"
# The notebooks embed_in_notebooks looks after (01–08; 07 shows none, so it must reference none).
DIAGRAM_NOTEBOOKS = sorted((REPO / "notebooks").glob("0[1-8]_*.ipynb"))


def markdown_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "markdown"]


def test_every_diagram_is_named_for_its_notebook_and_committed():
    for stem in DIAGRAMS:
        assert re.fullmatch(r"0[1-8]_diagram_[a-z0-9_]+", stem), stem
        for suffix in (".svg", ".png"):
            assert (FIGURES / f"{stem}{suffix}").is_file(), f"figures/{stem}{suffix} missing: run python tools/diagrams.py"
        pixels = np.asarray(Image.open(FIGURES / f"{stem}.png").convert("RGBA"))
        assert pixels[..., 3].min() == 255, f"{stem}.png must be opaque (a white box on a dark theme)"
        assert (pixels[0, 0, :3] == 255).all(), f"{stem}.png must have a white background"


@pytest.mark.slow
def test_drawing_is_reproducible(tmp_path):
    written = draw_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{s}{x}" for s in DIAGRAMS for x in (".svg", ".png"))
    for path in written:
        committed = FIGURES / path.name
        assert path.read_bytes() == committed.read_bytes(), \
            f"figures/{path.name} is not what tools/diagrams.py draws now: run python tools/diagrams.py"
    for svg in tmp_path.glob("*.svg"):
        text = svg.read_text(encoding="utf-8")
        assert "<dc:date>" not in text, "no timestamps in the SVG"
        assert 'fill="#ffffff"' in text or "fill: #ffffff" in text, "an opaque white background (dark themes)"


@pytest.mark.parametrize("path", DIAGRAM_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shows_its_diagrams_as_attachments(path):
    number = path.name[:2]
    referenced = []
    for cell in markdown_cells(path):
        text = "".join(cell["source"])
        names = ATTACHMENT.findall(text)
        assert not re.search(r"!\[[^\]]*\]\((?!attachment:|https://)[^)]*\)", text), \
            "an image with a relative path does not show in Colab: use an attachment"
        for name in names:
            assert (FIGURES / name).is_file() and (FIGURES / name).with_suffix(".svg").is_file(), name
            data = cell.get("attachments", {}).get(name, {}).get("image/png")
            assert data, f"{name} is referenced but not attached: run python tools/diagrams.py"
            assert base64.b64decode(data) == (FIGURES / name).read_bytes(), \
                f"the attached {name} is stale: run python tools/diagrams.py"
        assert set(cell.get("attachments", {})) <= set(names), "an attachment nothing refers to"
        referenced += names
    expected = sorted(f"{stem}.png" for stem in DIAGRAMS if stem.startswith(number))
    assert sorted(set(referenced)) == expected, f"{path.name} should show {expected}"


def test_embedding_is_idempotent():
    assert embed_in_notebooks(DIAGRAM_NOTEBOOKS, write=False) == [], \
        "the notebooks' attachments are out of date: run python tools/diagrams.py"


def test_docs_state_the_route():
    doc = REPO / "docs" / "diagrams.md"
    doc = doc if doc.is_file() else REPO / "README.md"
    text = doc.read_text(encoding="utf-8")
    assert "python tools/diagrams.py" in text and "attachment" in text, f"{doc.name} does not give the route"
    for stem in DIAGRAMS:
        assert f"figures/{stem}.svg" in text, f"{doc.name} does not list figures/{stem}.svg"


def test_embedding_keeps_a_learners_own_attachment(tmp_path):
    stem = next(iter(DIAGRAMS))
    mine = {"image/png": base64.b64encode(b"my own drawing").decode("ascii")}
    cell = {"cell_type": "markdown", "metadata": {}, "attachments": {"mine.png": mine},
            "source": [f"![diagram](attachment:{stem}.png) and ![mine](attachment:mine.png)"]}
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert embed_in_notebooks([nb]) == [nb]
    attached = json.loads(nb.read_text())["cells"][0]["attachments"]
    assert attached["mine.png"] == mine, "a picture the learner attached is theirs: kept"
    assert base64.b64decode(attached[f"{stem}.png"]["image/png"]) == (FIGURES / f"{stem}.png").read_bytes()
    assert embed_in_notebooks([nb]) == [], "a second run changes nothing"


def test_labels_read_at_notebook_width():
    """A notebook scales a PNG wider than NOTEBOOK_WIDTH_PX down to it: every label must stay at least
    MIN_LABEL_PX high there, and no picture may be wider than 3:1 (a strip whose labels shrink to nothing)."""
    for stem, draw in DIAGRAMS.items():
        canvas = draw()
        try:
            sizes = [t.get_fontsize() for t in canvas.ax.texts if t.get_text().strip()]
        finally:
            diagrams.plt.close(canvas.fig)
        width, height = Image.open(FIGURES / f"{stem}.png").size
        assert width <= 3 * height, f"{stem}.png is {width}x{height}, wider than 3:1: draw it in rows"
        scale = min(1.0, diagrams.NOTEBOOK_WIDTH_PX / width)
        smallest = min(sizes) * diagrams.DPI / 72 * scale
        assert smallest >= diagrams.MIN_LABEL_PX, \
            f"{stem}: its smallest label is {smallest:.1f} px high at {diagrams.NOTEBOOK_WIDTH_PX} px, below {diagrams.MIN_LABEL_PX}"


def test_beam_diagram_is_what_beam_search_finds():
    """The tree and the ranking drawn in 06_diagram_beam_search come from BEAM_TABLE by the rule of
    utils.decode.beam_search: run beam_search itself on that table and get the same winners and scores."""
    import math

    import torch
    from torch import nn

    from utils.decode import beam_search, length_penalty
    from utils.tokenize import BOS_ID, EOS_ID, PAD_ID

    table = diagrams.BEAM_TABLE
    assert all(abs(sum(row.values()) - 1) < 1e-12 for row in table.values()), "each row of the table is a distribution"
    words = sorted({w for row in table.values() for w in row} - {"<eos>"})
    ids = {"<eos>": EOS_ID, **{w: 4 + i for i, w in enumerate(words)}}
    names = {i: w for w, i in ids.items()}

    class Table(nn.Module):
        pad_id = PAD_ID

        def encode(self, src_ids):
            return torch.zeros(src_ids.shape[0], src_ids.shape[1], 1)

        def decode(self, tgt_ids, memory, src_ids):
            logits = torch.full((tgt_ids.shape[0], tgt_ids.shape[1], 4 + len(words)), -30.0)
            for row, prefix in enumerate(tgt_ids.tolist()):
                key = tuple(names[i] for i in prefix[1:] if i != PAD_ID)
                for word, q in table.get(key, {"<eos>": 1.0}).items():
                    logits[row, -1, ids[word]] = math.log(q)
            return logits

    steps = diagrams.beam_tree()
    for alpha in (0.0, diagrams.BEAM_ALPHA):
        assert diagrams.length_penalty(3, alpha) == length_penalty(3, alpha)
        out, score = beam_search(Table(), torch.ones(1, 1, dtype=torch.long), beam_size=diagrams.BEAM_SIZE,
                                 max_len=6, length_penalty_alpha=alpha, return_scores=True, bos_id=BOS_ID)
        best, best_score = diagrams.finished_ranking(steps, alpha)[0]
        assert [names[i] for i in out[0].tolist() if i != PAD_ID] == list(best.words), alpha
        assert abs(score.item() - best_score) < 1e-5, alpha
    plain, penalised = diagrams.finished_ranking(steps, 0.0), diagrams.finished_ranking(steps, diagrams.BEAM_ALPHA)
    assert len(plain[0][0].words) < len(penalised[0][0].words), "the picture's point: the penalty re-ranks them"
    # the numbers written on the picture add up as a reader checks them, to two decimals
    total = {(): 0.0}
    for step in steps:
        for h in step:
            total[h.words] = h.logp
            assert round(round(total[h.words[:-1]], 2) + round(h.word_logp, 2), 2) == round(h.logp, 2), h.words


@pytest.mark.slow
def test_bpe_examples_are_the_real_tokenizations():
    """The ids drawn in 01_diagram_text_to_vectors and 05_diagram_teacher_forcing are written in
    tools/diagrams.py; recompute them as notebooks 01 and 05 train their tokenizers."""
    from utils.data import load_multi30k
    from utils.short_runs import SHORT_RUN
    from utils.tokenize import BPETokenizer

    ds = load_multi30k()
    caption, tokens, ids = diagrams.TEXT_TO_VECTORS_EXAMPLE
    bpe = BPETokenizer.train(list(ds["train"]["en"]), vocab_size=8000)              # notebook 01
    assert bpe.encode(caption, add_special=True) == ids
    assert [bpe.id_to_token[i] for i in ids] == tokens
    source, target, tokens, ids = diagrams.TEACHER_FORCING_EXAMPLE
    assert (ds["validation"][52]["de"], ds["validation"][52]["en"]) == (source, target)
    joint = BPETokenizer.train(list(ds["train"]["de"]) + list(ds["train"]["en"]), vocab_size=SHORT_RUN["vocab"])
    assert joint.encode(target, add_special=True) == ids                           # notebook 05's short run
    assert [joint.id_to_token[i] for i in ids] == tokens
