"""Sphinx glue for the course's website (book/_config.yml loads it; nothing here runs a notebook).

- ``read_notebook``: myst-nb's reader for ``.ipynb`` (``nb_custom_formats``). A worked solution
  (a cell with ``metadata.jupyter.source_hidden``, folded in JupyterLab) gets myst-nb's
  ``hide-input`` tag, so it stays folded on the page. The widget explorer's stored state is dropped,
  so the page shows the static picture above it and the text that says where its sliders run.
- ``site_link``: the notebooks link to each other by absolute GitHub URLs (they must work in
  Colab); on the site such a link goes to the site's own page. A relative link to a file of the
  repository that is not a page (a recipe, a report, a folder) goes to that file on GitHub.
  A link to a path that does not exist is left alone, so the build warns (and ``-W`` fails it).
"""

from __future__ import annotations

import posixpath
import re
import warnings
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]                      # the repository root: the build's source
REPOSITORY = "https://github.com/attention-built-up/attention-built-up"
BLOB = REPOSITORY + "/blob/main/"
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
_TARGET = re.compile(r"\]\(([^)\s]+)\)")                       # the target of an inline Markdown link
_SITE_DOCS: set[str] = set()                                   # docnames of the site's pages, set per build


def _docname(path: str) -> str | None:
    """``notebooks/01_x.ipynb`` -> ``notebooks/01_x`` when that is one of the site's pages."""
    stem, suffix = posixpath.splitext(path)
    if suffix in (".md", ".ipynb") and (stem in _SITE_DOCS or not _SITE_DOCS and (ROOT / path).is_file()):
        return stem
    return None


def site_link(target: str, docdir: str) -> str:
    """Where a link written in the document in folder ``docdir`` (relative to the root) should go."""
    path, hash_, anchor = target.partition("#")
    if path.startswith(BLOB):                                   # GitHub URL of a file of this repository
        repo_path = path[len(BLOB):]
        if _docname(repo_path):
            return posixpath.relpath(repo_path, docdir or ".") + hash_ + anchor
        return target
    if not path or ":" in path or path.startswith("/"):         # external, mailto, attachment, same page
        return target
    repo_path = posixpath.normpath(posixpath.join(docdir, path))
    local = ROOT / repo_path
    if repo_path.startswith("..") or not local.exists() or _docname(repo_path):
        return target
    if local.is_file() and local.suffix in IMAGE_SUFFIXES:      # pictures stay on the site
        return target
    kind = "tree/main/" if local.is_dir() else "blob/main/"
    return f"{REPOSITORY}/{kind}{repo_path.rstrip('/')}" + hash_ + anchor


def rewrite_links(markdown: str, docdir: str) -> str:
    return _TARGET.sub(lambda m: "](" + site_link(m.group(1), docdir) + ")", markdown)


def inline_attachments(cell) -> str:
    """A markdown cell's source with each ``attachment:NAME`` picture written in as a data URI."""
    source = cell.source
    for name, bundle in cell.get("attachments", {}).items():
        for mime, data in bundle.items():
            if mime.startswith("image/"):
                data = "".join(data) if isinstance(data, list) else data
                source = source.replace(f"(attachment:{name})", f"(data:{mime};base64,{data.strip()})")
                break
    return source


def read_notebook(text: str) -> nbformat.NotebookNode:
    """Read a notebook for its page (see the module's docstring); the file itself is not changed."""
    with warnings.catch_warnings():                             # cells without ids: not the page's business
        warnings.simplefilter("ignore")
        nb = nbformat.reads(text, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(inline_attachments(cell), "notebooks")
            continue
        if cell.cell_type != "code":
            continue
        if cell.metadata.get("jupyter", {}).get("source_hidden"):
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
        for output in cell.get("outputs", []):
            output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    return nb


def _remember_pages(app, env, added, changed, removed):
    _SITE_DOCS.clear()
    _SITE_DOCS.update(env.found_docs)
    return []


def _rewrite_markdown_page(app, docname, source):
    if Path(app.env.doc2path(docname)).suffix == ".md":
        source[0] = rewrite_links(source[0], posixpath.dirname(docname))


def _one_of_each_script(app, pagename, templatename, context, doctree):
    """Inline scripts of sphinx-thebe and sphinx-togglebutton reach each page twice with Sphinx 7.4
    (once with the file name ``None``, once ``""``), and a second ``const THEBE_JS_URL`` is a
    console error. Keep the first of identical scripts."""
    seen, scripts = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", script) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts


def setup(app):
    app.connect("html-page-context", _one_of_each_script)
    app.connect("env-get-outdated", _remember_pages)
    app.connect("source-read", _rewrite_markdown_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
