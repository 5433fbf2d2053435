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
# Notebooks 01–04 carry diagrams today; widen this list when a later notebook gets one.
DIAGRAM_NOTEBOOKS = sorted((REPO / "notebooks").glob("0[1-4]_*.ipynb"))


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
