"""Links between notebooks must work in JupyterLab, in Colab (where a notebook is opened alone, so a
relative link such as ``02_x.ipynb`` points nowhere) and on GitHub: they are absolute GitHub URLs
built from the repository URL in pyproject.toml, and they point at notebooks that exist."""

import json
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPO_URL = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
NOTEBOOK_URL = REPO_URL + "/blob/main/notebooks/"
CHECKED = sorted((REPO / "notebooks").glob("*.ipynb"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def links(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [m for c in cells if c["cell_type"] == "markdown" for m in LINK.findall("".join(c["source"]))]


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.name)
def test_links_to_notebooks_are_absolute_and_resolve(path):
    targets = [u for u in links(path) if ".ipynb" in u and "colab.research.google.com" not in u]
    for url in targets:
        assert url.startswith(NOTEBOOK_URL), \
            f"{url!r}: link notebooks as {NOTEBOOK_URL}NN_name.ipynb, which works in JupyterLab, Colab and GitHub"
        name = url[len(NOTEBOOK_URL):].split("#")[0]
        assert (REPO / "notebooks" / name).is_file(), f"{url} points at a notebook that does not exist"
    number = int(path.name[:2])
    if 1 < number <= 6:                                    # the main series; 07 to 09 are bonus notebooks
        assert any(f"/{number - 1:02d}_" in u for u in targets), "a notebook links the one before it"


def test_there_are_notebooks_to_check():
    assert len(CHECKED) == 9                                 # 01-06, and the bonus notebooks 07-09
