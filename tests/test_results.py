"""The committed results and the docs that quote them: every report in the one schema, every test BLEU
recomputed from the translations committed beside it, and every figure in docs/results.md and
docs/experiments.md found in the report it cites."""

import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import recipes  # noqa: E402

REPORTS = sorted(p for p in (ROOT / "results").rglob("*.json") if p.name != "seeds.json")   # seeds.json: its own test
SEEDS_JSON = ROOT / "results" / "multi30k_2h" / "seeds" / "seeds.json"


def recipe_of(path: Path) -> str:
    """The recipe a report belongs to: the folder under results/ (a seed run sits in results/<recipe>/seeds/seedN/)."""
    return path.relative_to(ROOT / "results").parts[0]
RESULTS_MD = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
EXPERIMENTS_MD = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")

#: A figure in the docs: a number with a decimal point or thousands commas (settings such as "beam 4"
#: or "8 tokens" are not figures).
FIGURE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(?![\d])")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def numbers_in(data) -> list[float]:
    """Every number a report holds: its numeric values and the numbers written inside its strings
    (sacreBLEU's detail lines)."""
    if isinstance(data, bool) or data is None:
        return []
    if isinstance(data, (int, float)):
        return [float(data)]
    if isinstance(data, str):
        return [float(x) for x in NUMBER.findall(data)]
    if isinstance(data, dict):
        return [x for key, value in data.items() for x in numbers_in(key) + numbers_in(value)]
    return [x for value in data for x in numbers_in(value)]


def figures(text: str) -> list[str]:
    return FIGURE.findall(text)


def found(figure: str, numbers: list[float]) -> bool:
    """True when some report number, rounded to the figure's decimals, is the figure."""
    value = float(figure.replace(",", ""))
    places = len(figure.split(".")[1]) if "." in figure else 0
    return any(math.isclose(round(n, places), value, abs_tol=1e-9) for n in numbers)


def cited_reports(text: str) -> list[Path]:
    paths = re.findall(r"((?:results|benchmarks)/[\w./-]+\.json)", text)
    assert paths, f"no report cited in: {text[:120]}"
    return [ROOT / p for p in dict.fromkeys(paths)]


# ------------------------------------------------------------------ the reports


def test_every_recipe_has_results_and_every_result_a_recipe():
    folders = sorted(p.name for p in (ROOT / "results").iterdir() if p.is_dir())
    assert folders == recipes.names(), "results/<recipe>/ folders and recipes/<recipe>.py files must agree"


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_every_report_is_in_the_one_schema(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert tuple(data) == recipes.REPORT_KEYS
    assert data["recipe"] == recipe_of(path) and data["stage"] == path.stem
    assert data["command"].startswith("python scripts/") and f" {data['recipe']}" in data["command"]
    assert all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in data["metrics"].values())
    for t in data["translations"]:
        assert set(t) == {"file", "split", "lowercase", "metric"} and t["metric"] in data["metrics"]
        assert (path.parent / t["file"]).is_file(), f"{path}: {t['file']} is missing"


@pytest.mark.parametrize("name", recipes.names())
def test_every_report_ran_its_recipe(name):
    """The settings each committed report records are the ones its recipe file gives."""
    settings = recipes.load(name)
    for path in sorted(p for p in (ROOT / "results" / name).rglob("*.json") if p.name != "seeds.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        seed_run = path.parent.parent.name == "seeds"
        for key, value in settings.items():
            if key in report["settings"] and not (seed_run and key == "choose_among"):
                assert report["settings"][key] == value, f"{path.relative_to(ROOT)}: {key}"
        if report["stage"] == "choose" and seed_run:    # a seed chooses within its own run
            assert len(report["settings"]["choose_among"]) == 1 and path.parent.name in report["settings"]["choose_among"][0]
        elif report["stage"] == "choose":
            assert report["settings"]["choose_among"] == settings.get("choose_among", [name])


def test_every_committed_test_bleu_is_what_sacrebleu_gives_on_the_committed_translations():
    """Each BLEU figure a report gives for a committed translation file must be reproducible from it
    (sacreBLEU 13a on test_2016_flickr, cased or lowercased as the report says)."""
    import sacrebleu

    from utils.data import load_multi30k

    refs = list(load_multi30k()["test"]["en"])
    checked = 0
    for path in REPORTS:
        data = json.loads(path.read_text(encoding="utf-8"))
        for t in data["translations"]:
            assert t["split"] == "test"
            hyps = (path.parent / t["file"]).read_text(encoding="utf-8").splitlines()
            assert len(hyps) == len(refs), f"{t['file']}: {len(hyps)} lines for {len(refs)} test sentences"
            score = sacrebleu.corpus_bleu(hyps, [refs], lowercase=t["lowercase"]).score
            figure = data["metrics"][t["metric"]]
            assert round(score, 2) == figure, f"{path.relative_to(ROOT)} says {figure}, its translations give {score:.2f}"
            checked += 1
    assert checked >= 16, f"only {checked} committed figures found: did the results move?"


# ------------------------------------------------------------------ docs/results.md


def result_rows() -> list[dict[str, str]]:
    lines = [line for line in RESULTS_MD.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_results_page_answers_each_question():
    rows = result_rows()
    assert len(rows) == 6
    questions = " ".join(row["question"] for row in rows)
    for words in ("fast as PyTorch", "30 minutes", "2 hours", "over seeds", "decode", "GPT"):
        assert words in questions
    for row in rows:
        assert row["command"].startswith("`python "), "one command a row"


@pytest.mark.parametrize("row", result_rows(), ids=lambda r: r["question"][:30])
def test_every_figure_on_the_results_page_is_in_its_report(row):
    numbers = [n for path in cited_reports(row["report"]) for n in numbers_in(json.loads(path.read_text()))]
    quoted = figures(row["figure"])
    assert quoted, "a row without figures"
    missing = [f for f in quoted if not found(f, numbers)]
    assert not missing, f"{missing} are not in {row['report']}"


def metric(path: str, *keys):
    data = json.loads((ROOT / path).read_text())
    for key in keys:
        data = data[key]
    return data


@pytest.mark.parametrize("question, figure", [
    ("fast as PyTorch", lambda: [f"{r['ratio']:.2f}" for r in metric("benchmarks/speed.json", "results")]),
    ("30 minutes", lambda: [f"{metric('results/multi30k_30min/train.json', 'metrics', 'test_bleu'):.2f}"]),
    ("2 hours", lambda: [f"**test BLEU {metric('results/multi30k_2h/choose.json', 'metrics', 'test_bleu'):.2f} cased**"]),
    ("over seeds", lambda: [f"**mean {metric(str(SEEDS_JSON), 'summary', 'mean'):.2f} ± "
                            f"{metric(str(SEEDS_JSON), 'summary', 'std'):.2f}**"]),
    ("decode", lambda: [f"**{metric('benchmarks/decode_speed.json', 'default', 'decode', k, 'seconds'):.2f} s**"
                        for k in ("greedy", "beam 4")]),
    ("GPT", lambda: [f"**validation loss {metric('results/gpt_shakespeare/train.json', 'metrics', 'val_loss'):.3f}"]),
])
def test_each_headline_figure_is_its_reports(question, figure):
    row = next(r for r in result_rows() if question in r["question"])
    for text in figure():
        assert text in row["figure"], f"{question}: the report gives {text}"


def test_the_readme_quotes_the_2_hour_translators_test_bleu():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"test BLEU {metric('results/multi30k_2h/choose.json', 'metrics', 'test_bleu'):.2f}" in readme
    assert "docs/results.md" in readme and "docs/experiments.md" in readme and "docs/diagrams.md" in readme


# ------------------------------------------------------------------ docs/experiments.md


def experiments() -> list[tuple[str, str, str]]:
    sections = re.split(r"^## ", EXPERIMENTS_MD, flags=re.M)[1:]
    out = []
    for section in sections:
        fields = dict(re.findall(r"^- \*\*(\w+):\*\* (.*?)(?=^- \*\*|\Z)", section, flags=re.M | re.S))
        out.append((section.splitlines()[0], fields.get("Figure", ""), fields.get("Report", "")))
    return out


def test_every_experiment_has_question_recipe_figure_report_conclusion():
    sections = re.split(r"^## ", EXPERIMENTS_MD, flags=re.M)[1:]
    assert len(sections) >= 10
    for section in sections:
        for field in ("Question", "Recipe", "Figure", "Report", "Conclusion"):
            assert f"- **{field}:**" in section, f"{section.splitlines()[0]}: no {field}"


@pytest.mark.parametrize("title, figure, report", experiments(), ids=lambda x: x[:30] if isinstance(x, str) else "")
def test_every_figure_of_an_experiment_is_in_its_reports(title, figure, report):
    numbers = [n for path in cited_reports(report) for n in numbers_in(json.loads(path.read_text()))]
    quoted = figures(figure)
    assert quoted, f"{title}: no figures"
    missing = [f for f in quoted if not found(f, numbers)]
    assert not missing, f"{title}: {missing} are not in {report}"


def test_figure_check_can_fail():
    numbers = numbers_in({"test_bleu": 40.72, "detail": "BLEU = 40.72 71.4/48.5"})
    assert found("40.72", numbers) and found("71.4", numbers) and not found("40.27", numbers)
    assert figures("3,100 steps, beam 4, α = 2.1, 40.72 BLEU") == ["3,100", "2.1", "40.72"]


# ------------------------------------------------------------------ the seeds of the headline recipe


def test_the_seeds_json_is_what_the_committed_translations_give_and_its_mean_meets_the_target():
    """results/multi30k_2h/seeds/seeds.json: at least 3 seeds, each test BLEU recomputed with sacreBLEU from
    the translations it names, the summary recomputed from them, and the target: mean test BLEU >= 40.0 cased."""
    import statistics

    import sacrebleu

    from utils.data import load_multi30k

    data = json.loads(SEEDS_JSON.read_text(encoding="utf-8"))
    refs = list(load_multi30k()["test"]["en"])
    seeds = data["seeds"]
    assert len(seeds) >= 3 and len({s["seed"] for s in seeds}) == len(seeds), "three or more distinct seeds"
    scores = []
    for s in seeds:
        hyps = (SEEDS_JSON.parent / s["hypotheses"]).read_text(encoding="utf-8").splitlines()
        assert len(hyps) == len(refs)
        score = round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
        assert score == s["test_bleu"], f"seed {s['seed']}: seeds.json says {s['test_bleu']}, the file gives {score}"
        train = json.loads((SEEDS_JSON.parent / s["train_report"]).read_text(encoding="utf-8"))
        assert train["settings"]["seed"] == s["seed"] and train["settings"]["steps"] == recipes.load("multi30k_2h")["steps"]
        scores.append(score)
    summary = data["summary"]
    assert summary["n"] == len(scores) and summary["mean"] == round(statistics.mean(scores), 2)
    assert summary["std"] == round(statistics.stdev(scores), 2)
    assert statistics.mean(scores) >= 40.0, f"mean test BLEU over the seeds {statistics.mean(scores):.2f} < 40.0"
    docs = RESULTS_MD + (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{summary['mean']:.2f} ± {summary['std']:.2f}" in docs, "the docs quote the seeds' mean ± std"


def test_seeds_script_refuses_to_overwrite_and_names_unknown_recipes():
    sys.path.insert(0, str(ROOT / "scripts"))
    import seeds

    with pytest.raises(FileExistsError, match="--force"):
        seeds.main(["multi30k_2h"])                       # the committed seeds.json stays as it is
    with pytest.raises(ValueError, match="no recipe named"):
        seeds.main(["multi30k_3h"])
