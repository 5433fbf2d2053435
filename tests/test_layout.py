"""The shape of the repository: a small `utils`, a front-page README, no history in the files.

These hold what makes the project easy to pick up: `utils` stays small enough to read (the main
path under a line budget, no long module, no import cycle, the bonus models optional), the README
gets a newcomer to the set-up command quickly, and the files describe the course, not how it grew.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"
MAIN_PATH_BUDGET = 4000
MODULE_BUDGET = 400


def utils_modules() -> dict[str, Path]:
    """Every module of the package by dotted name, e.g. ``utils.model`` or ``utils.bonus.gpt``."""
    modules = {}
    for path in sorted(UTILS.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imported_utils_modules(path: Path, known: set[str]) -> set[str]:
    """The ``utils`` modules a file imports (``from utils.x import y`` and ``import utils.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known and n != "utils"}
    return found


def is_main_path(name: str) -> bool:
    """The package the notebooks build; the bonus models and the exercise checks (one module a notebook,
    course apparatus rather than the Transformer) are beside it."""
    return not name.startswith(("utils.bonus", "utils.exercises"))


def test_utils_main_path_is_small():
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in utils_modules().items()}
    too_long = {name: n for name, n in lines.items() if n > MODULE_BUDGET}
    assert not too_long, f"modules over {MODULE_BUDGET} lines: {too_long}; split them by idea"
    main = sum(n for name, n in lines.items() if is_main_path(name))
    assert main <= MAIN_PATH_BUDGET, f"utils main path has {main} lines, over the budget of {MAIN_PATH_BUDGET}"


def test_main_path_never_imports_the_bonus_models_and_has_no_cycle():
    modules = utils_modules()
    graph = {name: imported_utils_modules(path, set(modules)) for name, path in modules.items()}
    for name, deps in graph.items():
        if is_main_path(name):
            assert not any(d.startswith("utils.bonus") for d in deps), f"{name} imports a bonus model: {deps}"

    def visit(name, stack):
        assert name not in stack, "import cycle: " + " → ".join([*stack, name])
        for dep in graph.get(name, ()):
            visit(dep, [*stack, name])

    for name in graph:
        visit(name, [])


def test_cycle_finder_can_fail():
    graph = {"utils.a": {"utils.b"}, "utils.b": {"utils.a"}}
    with pytest.raises(AssertionError, match="import cycle"):
        def visit(name, stack):
            assert name not in stack, "import cycle: " + " → ".join([*stack, name])
            for dep in graph.get(name, ()):
                visit(dep, [*stack, name])
        visit("utils.a", [])


def test_package_docstrings_list_every_module():
    """``utils/__init__.py`` gives the reading order of the main path; ``utils/bonus/__init__.py`` the rest."""
    for package in (UTILS, UTILS / "bonus"):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
        listed = set(re.findall(r"``(\w+)``", doc))
        here = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
        assert here <= listed, f"{package.relative_to(ROOT)}/__init__.py does not list {sorted(here - listed)}"


def test_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme) <= 8000, f"README has {len(readme):,} characters; move detail to docs/"
    setup = readme.find("pip install -r requirements.txt")
    assert 0 <= setup < 3000, f"the set-up command starts at character {setup}, not in the first 3,000"
    test = readme.find("python -m pytest")
    assert 0 <= test < 3000, f"the test command starts at character {test}, not in the first 3,000"


HISTORY = re.compile(r"\b[Ii]ssue \d+|\b(first|second|third) edition\b|\b[Ss]ession \d+|\.\./shared|"
                     r"as it was before|borrowed|\bbenchmarks/results\b")


def text_files() -> list[Path]:
    folders = ["utils", "scripts", "recipes", "benchmarks", "tools", "docs", "tests", "notebooks"]
    files = [ROOT / "README.md"]
    for folder in folders:
        files += [p for p in sorted((ROOT / folder).rglob("*")) if p.suffix in {".py", ".md", ".ipynb"}]
    return [p for p in files if p.name != "test_layout.py"]


def readable_text(path: Path) -> str:
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells)


def test_no_project_history_or_development_paths():
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)!r}" for p in text_files()
            for m in HISTORY.finditer(readable_text(p))]
    assert not hits, "history or development paths (git keeps the history; data lives in $ATTN_DATA_DIR):\n" + \
        "\n".join(hits)


def test_history_pattern_can_fail():
    for text in ["see issue 13", "the second edition", "data in ../shared/data", "session 9 measured"]:
        assert HISTORY.search(text), text
    assert not HISTORY.search("the model's second layer reads the sequence")
