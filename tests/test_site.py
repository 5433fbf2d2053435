"""The course's website: every built page opened in headless Chromium, as a reader would.

Build the site first (``.ci/run`` does, before ``pytest``)::

    jupyter-book build . --config book/_config.yml --toc book/_toc.yml -W --keep-going

The browser test serves ``_build/html`` with a local ``http.server`` and opens every page with
Playwright (``requirements-site.txt``) in Debian's ``chromium``. It is skipped, with the reason,
when the site is not built or the browser is missing. Requests to other hosts (MathJax's CDN,
the Colab badge) are blocked, as on a machine without internet. On every page it asserts that
each local picture loaded, that no console error was logged except for a blocked request, and
that every internal link answers 200 with its anchor present, and that no link goes to GitHub
for a notebook or a document that has a page here. A notebook's page must also show
its Colab badge and every picture its notebook holds (at least one), write its
math as MathJax markup (``\\(...\\)``, never a raw ``$...$``), and keep each worked solution
folded. The theme's search must find a notebook.

The link checker and the page check are tested on a small broken site (``broken_site``), so this
file fails when a link or a picture is broken.
"""

from __future__ import annotations

import functools
import html.parser
import json
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
BUILD = "jupyter-book build . --config book/_config.yml --toc book/_toc.yml -W --keep-going"
BLOB = "https://github.com/attention-built-up/attention-built-up/blob/main/"     # a file of the repository
COLAB = "https://colab.research.google.com/github/attention-built-up/attention-built-up/blob/main/notebooks/"


# ---------------------------------------------------------------- serving and link checking

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Server:
    """``root`` served on 127.0.0.1 at a free port, in a thread, for as long as the ``with`` lasts."""

    def __init__(self, root: Path):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Ids(html.parser.HTMLParser):
    """The anchors of a page (``id`` and ``name`` attributes) and the targets of its links."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update(attrs[key] for key in ("id", "name") if attrs.get(key))
        if tag in ("a", "link") and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def parse_page(text: str) -> _Ids:
    parser = _Ids()
    parser.feed(text)
    return parser


def is_local(url: str, base: str) -> bool:
    return url.startswith(base) or url.startswith("data:")


def broken_links(links: dict[str, list[str]], base: str) -> list[str]:
    """Each link (absolute URL, by the page it is on) under ``base`` that does not answer 200,
    or whose ``#anchor`` is not an ``id`` of the page it points to."""
    problems, pages = [], {}
    for page, hrefs in sorted(links.items()):
        for href in sorted(set(hrefs)):
            if not href.startswith(base):
                continue
            target, _, anchor = href.partition("#")
            target = target.split("?")[0]
            if target not in pages:
                try:
                    with urllib.request.urlopen(target, timeout=30) as answer:
                        body = answer.read().decode("utf-8", "replace")
                        pages[target] = (answer.status, body if target.endswith(".html") else "")
                except urllib.error.HTTPError as error:
                    pages[target] = (error.code, "")
            status, body = pages[target]
            where = f"{page[len(base):] or '/'} -> {href[len(base):]}"
            if status != 200:
                problems.append(f"{where}: HTTP {status}")
            elif anchor and body and urllib.parse.unquote(anchor) not in parse_page(body).ids:
                problems.append(f"{where}: no anchor #{anchor}")
    return problems


# ---------------------------------------------------------------- one page in the browser

_PAGE_FACTS = """async () => {
    for (const img of document.images) img.loading = "eager";
    await Promise.all([...document.images].map(img => img.complete ? null :
        new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
    const article = document.querySelector("article") || document.body;
    const skip = "pre, code, script, style, .math, .cell_output, .highlight, mjx-container, .MathJax";
    const texts = [];
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode;
        if (!node.parentElement.closest(skip)) texts.push(node.textContent);
    }
    const hidden = [...document.querySelectorAll(".cell.tag_hide-input")];
    return {
        images: [...document.images].map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth,
                                                  in_article: article.contains(img)})),
        links: [...document.querySelectorAll("a[href], link[href]")].map(a => a.href),
        text: texts.join(" "),
        math: [...article.querySelectorAll(".math")].map(m => m.textContent.trim()),
        badges: [...document.querySelectorAll("a[href^='https://colab.research.google.com/github/'] img")]
            .map(img => img.closest("a").href),
        solutions: hidden.map(cell => {
            const input = cell.querySelector(".cell_input");
            return {folded: !!input && !input.checkVisibility(),
                    has_toggle: !!cell.querySelector("details:not([open]) > summary")};
        }),
        widget_views: document.querySelectorAll("script[type*='jupyter.widget']").length,
    };
}"""

RAW_MATH = re.compile(r"\$\$|\$[^\s$][^$]*?\$")


def check_page(context, url: str, base: str, redirects: bool = False) -> tuple[list[str], dict]:
    """Open ``url`` in a new tab (a page that ``redirects`` is checked where it lands); return the
    problems seen and the page's facts."""
    page = context.new_page()
    errors = []

    def on_console(message):
        where = (message.location or {}).get("url", "")
        if message.type == "error" and not (where and not is_local(where, base)):
            errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.goto(url, wait_until="load")
    if redirects:
        page.wait_for_url(lambda landed: landed != url, wait_until="load")
    facts = page.evaluate(_PAGE_FACTS)
    page.close()
    problems = list(errors)
    for image in facts["images"]:
        if is_local(image["src"], base) and image["width"] == 0:
            problems.append(f"picture did not load: {image['src'][:120]}")
    raw = RAW_MATH.findall(facts["text"])
    if raw:
        problems.append(f"raw $ math left in the text: {raw[:3]}")
    for math in facts["math"]:
        if not math.startswith(("\\(", "\\[", "\\begin")):
            problems.append(f"math not in MathJax's delimiters: {math[:60]!r}")
    return problems, facts


def pictures_in(cells: list[dict]) -> int:
    """The pictures a notebook holds: image outputs, attached diagrams, local images in markdown."""
    count = 0
    for cell in cells:
        if cell["cell_type"] == "code":
            count += sum(any(m.startswith("image/") for m in o.get("data", {})) for o in cell.get("outputs", []))
        elif cell["cell_type"] == "markdown":
            targets = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", "".join(cell["source"]))
            count += sum(not t.startswith(("http://", "https://")) for t in targets)
    return count


def check_notebook_page(facts: dict, notebook: Path, base: str) -> list[str]:
    """What a notebook's page must show beyond any page: its Colab badge, every picture the notebook
    holds (at least one), its solutions folded, no empty widget view."""
    problems = []
    if COLAB + notebook.name not in facts["badges"]:
        problems.append("no Colab badge for this notebook")
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    held = pictures_in(cells)                  # every notebook holds at least one (asserted here)
    shown = sum(i["in_article"] and is_local(i["src"], base) and i["width"] > 0 for i in facts["images"])
    if held == 0 or shown == 0:
        problems.append("no figure on the page: every notebook page shows at least one")
    if shown < held:
        problems.append(f"{shown} pictures shown of the {held} the notebook holds")
    hidden = sum(bool(c["metadata"].get("jupyter", {}).get("source_hidden")) for c in cells if c["cell_type"] == "code")
    shown = facts["solutions"]
    if len(shown) != hidden or not all(s["folded"] and s["has_toggle"] for s in shown):
        problems.append(f"{hidden} solution cells in the notebook, folded on the page: {shown}")
    if facts["widget_views"]:
        problems.append("a widget view (empty without a kernel) instead of its stored picture")
    return problems


def pages_of(site: Path) -> list[Path]:
    skip = ("_static", "_sources", "_downloads", "_images")
    return sorted(p for p in site.rglob("*.html") if p.relative_to(site).parts[0] not in skip)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in requirements-site.txt")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def offline_context(browser, base: str, width: int = 1280):
    """A browser tab set that reaches only ``base``: every other request is blocked."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.route("**/*", lambda route: route.continue_() if is_local(route.request.url, base) else route.abort())
    return context


@pytest.fixture
def broken_site(tmp_path):
    """Two pages: one good, one with a missing page, a missing anchor and a missing picture."""
    (tmp_path / "good.html").write_text('<h1 id="top">good</h1><a href="bad.html#here">next</a>')
    (tmp_path / "bad.html").write_text(
        '<article><p id="here">$x$ and <span class="math">\\(y\\)</span></p>'
        '<a href="good.html">fine</a> <a href="good.html#top">fine</a> <a href="missing.html">broken</a>'
        ' <a href="good.html#nowhere">broken anchor</a> <img src="missing.png"></article>')
    return tmp_path


def _links_of(site: Path, base: str) -> dict[str, list[str]]:
    links = {}
    for page in pages_of(site):
        url = base + page.relative_to(site).as_posix()
        links[url] = [urllib.parse.urljoin(url, h) for h in parse_page(page.read_text()).hrefs]
    return links


# ---------------------------------------------------------------- tests of the checks themselves

def test_link_checker_finds_the_broken_links(broken_site):
    with Server(broken_site) as server:
        problems = broken_links(_links_of(broken_site, server.url), server.url)
    assert sorted(problems) == ["bad.html -> good.html#nowhere: no anchor #nowhere", "bad.html -> missing.html: HTTP 404"]


def test_page_check_fails_on_a_broken_page(browser, broken_site):
    with Server(broken_site) as server:
        context = offline_context(browser, server.url)
        problems, facts = check_page(context, server.url + "bad.html", server.url)
        context.close()
        problems += broken_links({server.url + "bad.html": facts["links"]}, server.url)
    assert any(p.startswith("picture did not load") for p in problems), problems
    assert any("raw $ math" in p for p in problems), problems
    assert any("missing.html: HTTP 404" in p for p in problems), problems
    assert any("no anchor #nowhere" in p for p in problems), problems
    assert any(p.startswith("console:") for p in problems), problems        # the 404 of missing.png


def test_pictures_in_counts_outputs_attachments_and_local_images():
    cells = [{"cell_type": "code", "outputs": [{"data": {"image/png": "", "text/plain": ""}}, {"text": "x"}]},
             {"cell_type": "markdown", "source": ["![a](attachment:a.png) ![b](../figures/b.png)\n"]},
             {"cell_type": "markdown", "source": "[![Open In Colab](https://colab.research.google.com/x.svg)](u)"}]
    assert pictures_in(cells) == 3


# ---------------------------------------------------------------- the built site

def _built():
    if not (SITE / "index.html").is_file():
        pytest.skip(f"the site is not built: run `{BUILD}` (.ci/run does)")


def test_every_notebook_and_doc_has_a_page():
    _built()
    wanted = [f"notebooks/{nb.stem}.html" for nb in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    wanted += ["book/index.html", "book/running.html", "docs/results.html", "docs/experiments.html"]
    missing = [page for page in wanted if not (SITE / page).is_file()]
    assert not missing, f"no page for {missing}: is it in book/_toc.yml? rebuild with `{BUILD}`"


def test_every_page_in_the_browser(browser):
    _built()
    problems, links = [], {}
    with Server(SITE) as server:
        context = offline_context(browser, server.url)
        for page in pages_of(SITE):
            name = page.relative_to(SITE).as_posix()
            redirects = 'http-equiv="Refresh"' in page.read_text()       # index.html: to book/index.html
            found, facts = check_page(context, server.url + name, server.url, redirects)
            if name.startswith("notebooks/"):
                found += check_notebook_page(facts, ROOT / "notebooks" / (page.stem + ".ipynb"), server.url)
            found += [f"links to GitHub instead of this site: {href}" for href in facts["links"]
                      if href.startswith(BLOB) and (SITE / href[len(BLOB):]).with_suffix(".html").is_file()]
            problems += [f"{name}: {p}" for p in found]
            links[server.url + name] = facts["links"]
        context.close()
        problems += broken_links(links, server.url)
    assert not problems, "\n".join(problems)


def test_search_finds_a_notebook(browser):
    _built()
    with Server(SITE) as server:
        context = offline_context(browser, server.url)
        page = context.new_page()
        page.goto(server.url + "search.html?q=softmax", wait_until="load")
        page.wait_for_selector("#search-results ul.search li a", timeout=30000)
        found = page.locator("#search-results ul.search li a").evaluate_all("links => links.map(a => a.href)")
        context.close()
    assert any("/notebooks/" in href for href in found), found


# ---------------------------------------------------------------- book/_ext/course_site.py, without a build

def _course_site():
    import importlib.util
    spec = importlib.util.spec_from_file_location("course_site", ROOT / "book" / "_ext" / "course_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_go_to_the_site_or_to_github():
    site = _course_site()
    nb01 = "notebooks/01_tokens_embeddings_positions.ipynb"
    assert site.site_link(site.BLOB + nb01, "notebooks") == "01_tokens_embeddings_positions.ipynb"
    assert site.site_link(site.BLOB + "docs/results.md#the-reports", "notebooks") == "../docs/results.md#the-reports"
    assert site.site_link("../recipes/multi30k_2h.py", "docs") == site.BLOB + "recipes/multi30k_2h.py"
    assert site.site_link("../recipes/", "docs") == site.REPOSITORY + "/tree/main/recipes"
    for kept in ("../figures/06_showcase_alignment.png", "results.md", "../notebooks/no_such.ipynb",
                 "https://arxiv.org/abs/1706.03762", "attachment:x.png", "#anchor"):
        assert site.site_link(kept, "docs") == kept


def test_notebook_reader_folds_solutions_inlines_diagrams_and_drops_widget_views():
    import nbformat
    site = _course_site()
    nb = nbformat.v4.new_notebook()
    diagram = nbformat.v4.new_markdown_cell("![d](attachment:d.png)")
    diagram.attachments = {"d.png": {"image/png": "iVBORw0KGgo="}}
    solution = nbformat.v4.new_code_cell("# SOLUTION", metadata={"jupyter": {"source_hidden": True}})
    widget = nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "t"})])
    nb.cells = [diagram, solution, widget]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    read = site.read_notebook(nbformat.writes(nb))
    assert read.cells[0].source == "![d](data:image/png;base64,iVBORw0KGgo=)"
    assert "hide-input" in read.cells[1].metadata["tags"]
    assert list(read.cells[2].outputs[0].data) == ["text/plain"]
    assert "widgets" not in read.metadata
