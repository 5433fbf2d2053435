"""Every number the notebooks' prose quotes is one a cell prints, one the code sets, or a cited figure.

A number typed into markdown drifts the first time a notebook is re-run with other data, another
seed or another recipe. This test reads each notebook's JSON (nothing is executed) and binds every
quoted number to something that cannot drift silently.

What counts as a quoted number (``quoted_numbers``), in markdown cells only:

* decimals (``36.5``), numbers with thousands separators (``1,014``), percentages (``19 %``,
  ``19%``), factors (``4.8×``), millions (``65 million``) and plain integers of 10 or more;
* skipped as not a measurement: LaTeX (``$...$``, ``$$...$$``), inline and fenced code, link
  targets, HTML tags, URLs, heading numbers (``## 3 · ...``), years (1900–2099), references
  (``section 3.4``, ``§3.2.1``, ``Table 3``, ``issue #2302``, ``PyTorch 2.5``), numbers right after
  a hyphen, slash, ``#`` or a letter (ids, ranges, names), durations (``40 s``, ``90 seconds``:
  the time a notebook takes depends on the machine), and plain integers below 10.

A quoted number passes when

1. that notebook's stored outputs (stream text and ``text/plain``) print it, digits compared with
   thousands separators removed on both sides, never as part of a longer number. Prose may round
   what a cell prints: ``36.5`` matches a printed 36.47, ``39,700`` a printed 39,691 (integers of
   four digits or more round to tens, hundreds, ... keeping two digits), ``63.1 million`` a printed
   63,119,496. A percentage must be printed with ``%`` (a prose "25 %" is not excused by an
   unrelated 25 in a table); or
2. a code cell of that notebook writes it: a setting (``n_steps=600``, ``20_000``) that changes
   together with the code; or
3. it is listed for that notebook in ``CITED`` (the paper's figures, other papers' figures, facts
   of a data set, runs documented in ``docs/``), each with its source; or in ``ARITHMETIC`` (an
   expression that must round to it and whose operands the notebook prints, sets or cites, such as
   chance ``100 / 8``); or in ``SET_IN`` (a setting written elsewhere or in another form, bound to
   a literal that must still be in that file).

``KNOWN_DRIFT`` lists the quoted numbers that pass none of these today: prose that no longer says
what the outputs say, or that quotes a figure nothing prints. It is debt, not an excuse: the test
fails when a listed number starts to pass (delete its entry) and when an unlisted one fails.
The rules match a number anywhere in the notebook's outputs, not in the printed line the sentence
means: they catch a typed number that no run printed, not every misquotation.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_NOT_PROSE = re.compile(
    r"```.*?```"                  # fenced code
    r"|\$\$.*?\$\$|\$[^$\n]*\$"   # LaTeX
    r"|`[^`\n]*`"                 # inline code
    r"|\]\([^)]*\)"               # link targets
    r"|<[^>\n]+>"                 # HTML tags
    r"|https?://\S+"              # bare URLs
    r"|^\s*#+[^\S\n]*[\d.]*",      # heading markers and their section numbers
    re.S | re.M)
_NUMBER = re.compile(
    r"(?<![\w.,#§/-])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+)"  # 1,014 / 36.5 / 512
    r"([^\S\n]?%|×|[^\S\n]million)?"                              # 19 % / 19% / 4.8× / 65 million
    r"(?![\w]|\.\d)")
_REFERENCE_BEFORE = re.compile(
    r"(?:sections?|§|table|row|figure|chapter|equation|issue|pytorch|python|version)\s*#?$",
    re.I)
_DURATION_AFTER = re.compile(r"^[^\S\n]?(?:s|sec|seconds?|minutes?|min|hours?|ms)\b")
_YEAR = re.compile(r"(?:19|20)\d\d")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers a markdown text quotes, as written ("36.5", "1,014", "19 %", "4.8×"), by the rules above."""
    text = _NOT_PROSE.sub(" ", markdown)
    found = []
    for m in _NUMBER.finditer(text):
        number, suffix = m.group(1), (m.group(2) or "").strip()
        plain = number.replace(",", "")
        if _YEAR.fullmatch(plain) and not suffix:
            continue
        if _REFERENCE_BEFORE.search(text[max(0, m.start() - 12):m.start()]):
            continue
        if _DURATION_AFTER.match(text[m.end():m.end() + 9]):
            continue
        if "." not in plain and "," not in number and not suffix and int(plain) < 10:
            continue
        found.append(number + {"%": " %", "million": " million"}.get(suffix, suffix))
    return found


def _digits(number: str) -> str:
    return number.replace(",", "").rstrip(" %×")


_PRINTED = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(?!\d)(\s?%)?")


def _forms(text: str) -> set[str]:
    """Every number printed in ``text`` (separators already removed), at its printed precision and
    rounded to each shorter one; a percentage also as ``"N %"``. ``"30.04%"`` gives 30.04, 30.0, 30,
    30.04 %, 30.0 %, 30 %: prose may round what a cell prints, not invent it."""
    forms = set()
    for m in _PRINTED.finditer(text):
        printed, percent = m.group(1), m.group(2)
        decimals = len(printed.partition(".")[2])
        rounded = [printed if d == decimals else f"{float(printed):.{d}f}" for d in range(decimals, -1, -1)]
        if not decimals:                          # 41640 -> 41600, 42000 (from 4 digits, keeping 2 or more)
            rounded += [str(round(int(printed), -k)) for k in range(1, len(printed) - 1) if len(printed) >= 4]
        forms.update(rounded)
        if percent:
            forms.update(r + " %" for r in rounded)
    return forms


def _key(number: str) -> str:
    """The form a quoted number is looked up in: digits without separators, "N %" for a percentage,
    "63.1 million" as 63100000."""
    if number.endswith(" million"):
        return str(round(float(_digits(number[:-len(" million")])) * 1_000_000))
    return _digits(number) + (" %" if number.endswith("%") else "")


def _outputs(cells: list[dict]) -> set[str]:
    texts = []
    for cell in cells:
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")))
            texts.append("".join(out.get("data", {}).get("text/plain", "")))
    return _forms("\n".join(texts).replace(",", ""))


def _code(cells: list[dict]) -> set[str]:
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return _forms(source.replace("_", "").replace(",", ""))


def check(path: Path, cited: dict[str, str]) -> tuple[dict[str, list[str]], list[tuple[int, str]]]:
    """Sort a notebook's quoted numbers into 'output', 'code' and 'cited'; return those and the mismatches."""
    cells = _cells(path)
    outputs, code = _outputs(cells), _code(cells)
    kinds: dict[str, list[str]] = {"output": [], "code": [], "cited": []}
    mismatches = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for number in quoted_numbers("".join(cell["source"])):
            if _key(number) in outputs:
                kinds["output"].append(number)
            elif _key(number) in code:
                kinds["code"].append(number)
            elif number in cited:
                kinds["cited"].append(number)
            else:
                mismatches.append((index, number))
    return kinds, mismatches


# The paper (Vaswani et al.), other papers, facts of the data sets, and runs documented in docs/.
CITED: dict[str, dict[str, str]] = {
    "01": {
        "31,014": "Multi30k's size: 29,000 training + 1,014 validation + 1,000 test pairs (Elliott et al.)",
        "37,000": "the paper's shared BPE vocabulary, section 5.1",
        "25.7": "the paper's Table 3 row (E): BLEU with learned positional embeddings",
        "25.8": "the paper's Table 3 base model: BLEU with sinusoids",
    },
    "03": {
        "4000": "the paper's warm-up steps, section 5.3",
    },
    "04": {
        "65 million": "the paper's Table 3: parameters of the base model",
        "213 million": "the paper's Table 3: parameters of the big model",
        "32000": "the paper's English-French word-piece vocabulary, section 5.1",
    },
    "05": {
        "39.82": "docs/experiments.md: validation BLEU of the 4,000-token vocabulary run",
        "40.50": "docs/experiments.md: validation BLEU of the 8,000-token vocabulary run",
        "25,000": "the paper's batch size in source and in target tokens, section 5.1",
        "4.67": "the paper's Table 3 row (D), no label smoothing: perplexity",
        "25.3": "the paper's Table 3 row (D), no label smoothing: BLEU",
        "4.92": "the paper's Table 3 base model, label smoothing 0.1: perplexity",
        "25.8": "the paper's Table 3 base model, label smoothing 0.1: BLEU",
        "100,000": "the paper's training steps for the base model, section 5.2",
    },
    "09": {
        "87,599": "SQuAD v1.1's training questions (Rajpurkar et al.)",
        "10,570": "SQuAD v1.1's development questions (Rajpurkar et al.)",
        "40 %": "SQuAD paper's logistic-regression baseline: 40.4 % exact match",
        "51 %": "SQuAD paper's logistic-regression baseline: 51.0 % F1",
    },
    "07": {
        "1.1 million": "tiny Shakespeare's size: 1,115,394 characters",
        "65": "tiny Shakespeare's distinct characters",
    },
    "08": {
        "1,115,394": "tiny Shakespeare's size in characters",
        "1,024": "GPT-2's context in tokens (Radford et al., 2019); exercise 3's check uses it",
        "4,096": "the context of a 7B model such as Llama 2 (Touvron et al., 2023); exercise 3's check uses it",
    },
}

# Numbers the prose derives from settings by arithmetic: the expression must round to the quoted number.
ARITHMETIC: dict[str, dict[str, str]] = {
    "03": {"12.5 %": "100 / 8"},                         # chance with a vocabulary of 8
    "04": {
        "3 %": "100 * (65 - 63.1) / 65",                 # our base model's printed 63.1M against 65M
        "1 %": "100 * (214.3 - 213) / 213",              # our big model's printed 214.3M against 213M
    },
    "06": {"98.3 %": "100 * (1 - 0.05 / 3)"},            # a 95 % interval, Bonferroni over three roles
    "07": {
        "871": "(1_115_394 - int(1_115_394 * 0.9)) // 2 // 64",   # validation split in windows of 64
    },
    "08": {
        "1.8 million": "900 * 16 * 128 / 1e6",           # steps x windows x characters
        "31": "32 - 1",                                  # sequence lengths 32..512 less a one-token prompt
        "511": "512 - 1",
    },
}

# Settings written in another form than the prose's (a fraction for a percentage), or in the library:
# the literal must still be in that file.
SET_IN: dict[str, dict[str, tuple[str, str]]] = {
    "05": {"500": ("utils/decode.py", "500 // beam_size")},               # translate's default batch size
    "06": {"70 %": ("notebooks/06_testing_attention_maps.ipynb", "< 0.7 * len(ref.split())")},  # 'too short'
    "07": {                                              # tiny Shakespeare's 90 / 5 / 5 % split
        "90": ("utils/data.py", "len(text) * 0.9"),
        "5 %": ("utils/data.py", "(len(text) - i) // 2"),
    },
    "08": {
        "90 %": ("utils/data.py", "len(text) * 0.9"),
        "5 %": ("utils/data.py", "(len(text) - i) // 2"),
    },
}

# Debt: quoted numbers that match none of the above today. Each entry says what it should become.
# The test fails when one of them starts to match: then delete its entry.
KNOWN_DRIFT: dict[str, dict[str, str]] = {
}


def _rounds_to(value: float, number: str) -> bool:
    digits = _digits(number.removesuffix(" million"))
    decimals = len(digits.partition(".")[2])
    return f"{value:.{decimals}f}" == digits


_OPERAND = re.compile(r"\d[\d_]*(?:\.\d+)?(?:e\d+)?")
_CONSTANTS = {"1", "2", "100", "1e6", "1_115_394"}   # units, and tiny Shakespeare's size (CITED in 08)


def _allowed(path: Path) -> dict[str, str]:
    """CITED, ARITHMETIC and SET_IN for one notebook, after checking that each arithmetic expression
    rounds to its number, uses only operands the notebook prints, sets or cites, and that each
    SET_IN literal is still in its file."""
    notebook, cells = path.name[:2], _cells(path)
    allowed = dict(CITED.get(notebook, {}))
    known = _outputs(cells) | _code(cells) | {_key(n) for n in allowed}
    for number, expression in ARITHMETIC.get(notebook, {}).items():
        assert _rounds_to(eval(expression, {}), number), f"{notebook}: {expression} does not round to {number}"
        loose = [o for o in _OPERAND.findall(expression) if o not in _CONSTANTS and o.replace("_", "") not in known]
        assert not loose, f"{notebook}: {number} = {expression} uses {loose}, which the notebook neither prints nor sets"
        allowed[number] = f"= {expression}"
    for number, (path, literal) in SET_IN.get(notebook, {}).items():
        assert literal in (REPO / path).read_text(encoding="utf-8"), \
            f"{notebook}: {number} is said to be set by {literal!r} in {path}, which no longer holds it"
        allowed[number] = f"set in {path}"
    return allowed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_quoted_numbers_are_printed_set_or_cited(path):
    notebook = path.name[:2]
    drift = KNOWN_DRIFT.get(notebook, {})
    _, mismatches = check(path, _allowed(path))
    new = [(cell, n) for cell, n in mismatches if n not in drift]
    assert not new, (
        f"{path.name}: markdown quotes numbers that no output prints, no code cell sets and no list "
        f"cites: {new} (cell index, number). Refer to the output that prints it, bind it with an assert, "
        f"or, for a figure of the paper or a data set, add it to CITED with its source")
    fixed = sorted(set(drift) - {n for _, n in mismatches})
    assert not fixed, f"{path.name}: {fixed} now match the outputs: delete them from KNOWN_DRIFT"


def test_allowlists_name_real_notebooks_and_quoted_numbers():
    """No stale entry: every listed number is still quoted by its notebook's markdown."""
    by_number = {p.name[:2]: p for p in NOTEBOOKS}
    for listing in (CITED, ARITHMETIC, SET_IN, KNOWN_DRIFT):
        for notebook, numbers in listing.items():
            cells = _cells(by_number[notebook])
            quoted = {n for c in cells if c["cell_type"] == "markdown" for n in quoted_numbers("".join(c["source"]))}
            assert set(numbers) <= quoted, f"{notebook}: {sorted(set(numbers) - quoted)} are no longer quoted"


def test_extractor_follows_its_rules():
    text = ("## 3 · Results\nThe loss fell to 1.82 (19 %, 4.8× faster) over 1,014 sentences and 12 steps, "
            "$d = 512$, `n=64`, [see](https://x.org/2048), as Vaswani et al. (2017) and section 3.4 say, "
            "in about 40 s; 3 heads, 65 million parameters.")
    assert quoted_numbers(text) == ["1.82", "19 %", "4.8×", "1,014", "12", "65 million"]


def test_a_made_up_mismatch_fails(tmp_path):
    """The check can fail: prose quoting 36.5 beside an output printing 36.4 is a mismatch."""
    notebook = {"cells": [
        {"cell_type": "code", "source": ["print(bleu)"], "outputs": [{"output_type": "stream", "text": ["BLEU 36.4, 19%\n"]}]},
        {"cell_type": "markdown", "source": ["The model scores 36.5 BLEU (19 % of them, not 25 %)."]},
    ]}
    path = tmp_path / "99_made_up.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    kinds, mismatches = check(path, {})
    assert mismatches == [(1, "36.5"), (1, "25 %")]
    assert kinds["output"] == ["19 %"]
    assert check(path, {"36.5": "made up", "25 %": "made up"})[1] == []
