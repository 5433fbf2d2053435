"""Notebook hygiene, for every notebook in notebooks/.

nbval compares stored outputs with fresh ones, but it silently skips cells that were never
executed, and a trailing `;` does not stop it from recording output. These tests catch what nbval
cannot, and hold the conventions every notebook shares (the notebook rhythm: set-up cell, Colab badge, summary, exercises).
"""

import json
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SETUP_CELL = (REPO / "tests" / "setup_cell.py").read_text(encoding="utf-8").strip()
REPO_URL = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
IGNORE_MARK = "# NBVAL_IGNORE_OUTPUT"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else src).strip()


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and source(c)]


def markdown(nb: dict) -> str:
    return "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def colab_url(path: Path) -> str:
    return REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/") + f"/blob/main/notebooks/{path.name}"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
class TestNotebook:
    def test_name_and_kernel(self, path):
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), "name notebooks NN_topic.ipynb"
        assert load(path)["metadata"]["kernelspec"]["name"] == "python3"

    def test_title_and_colab_badge(self, path):
        first = load(path)["cells"][0]
        assert first["cell_type"] == "markdown" and source(first).startswith("# "), "the first cell is a '# Title'"
        assert BADGE_IMAGE in source(first) and colab_url(path) in source(first), \
            f"the first cell needs a Colab badge linking to {colab_url(path)}"

    def test_shared_setup_cell_first(self, path):
        first_code = code_cells(load(path))[0]
        assert source(first_code) == SETUP_CELL, "the first code cell must be tests/setup_cell.py, verbatim"
        assert f'REPO_URL = "{REPO_URL}"' in SETUP_CELL

    def test_executed_in_order_from_a_fresh_kernel(self, path):
        counts = [c.get("execution_count") for c in code_cells(load(path))]
        assert None not in counts, f"{counts.count(None)} code cell(s) never executed: nbval would skip them"
        assert counts == list(range(1, len(counts) + 1)), "re-run the notebook top to bottom from a fresh kernel"

    def test_no_stored_errors_and_no_trailing_semicolons(self, path):
        for i, cell in enumerate(code_cells(load(path))):
            assert not [o for o in cell.get("outputs", []) if o["output_type"] == "error"], f"code cell {i} stored an error"
            last = source(cell).splitlines()[-1].rstrip()
            assert last.startswith("#") or not last.endswith(";"), \
                f"code cell {i} ends with ';' which nbval still records: use plt.show() or assign to _"

    def test_variable_output_is_marked_and_still_asserts(self, path):
        for i, cell in enumerate(code_cells(load(path))):
            ignored = IGNORE_MARK in source(cell)
            streams = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o["output_type"] == "stream")
            if "\r" in streams or re.search(r"\d+(\.\d+)?\s*(it/s|s/it)", streams):
                assert ignored, f"code cell {i} stores a progress bar: mark it {IGNORE_MARK!r} or hide the bar"
            if ignored:
                assert re.search(r"^\s*assert\b", source(cell), re.M), f"code cell {i} is {IGNORE_MARK} but asserts nothing"

    def test_summary_exercises_and_solutions(self, path):
        nb = load(path)
        text = markdown(nb)
        assert re.search(r"^#+ .*What you built", text, re.M), "a '## What you built' summary section"
        assert re.search(r"^#+ .*Exercises", text, re.M), "an '## Exercises' section"
        assert re.search(r"^#+ .*Solutions", text, re.M), "a '## Solutions' section"
        code = "\n".join(source(c) for c in code_cells(nb))
        assert "check(" in code, "exercises use utils.exercises.check as their self-check"
        assert re.search(r"^assert check\(", code, re.M), "worked solutions assert that check(...) passes"


def test_readme_links_every_notebook_with_a_badge():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"README does not link {path.name}"
        assert colab_url(path) in readme, f"README has no Colab badge for {path.name}"
    assert REPO_URL in readme
