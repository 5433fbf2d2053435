"""utils.bonus.squad.load_pairs, offline: small data sets built here with the hub's exact schemas."""

import os
import subprocess
import sys

import datasets
import pytest
from datasets import Dataset, DatasetDict, Features, Sequence, Translation, Value

from utils.bonus import squad
from utils.bonus.squad import load_pairs

# SQuAD v1.1 as the hub describes it (rajpurkar/squad, plain_text), written out here independently.
SQUAD = Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                  "question": Value("string"),
                  "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")})})


def squad_like(n_titles=12, per_title=4, valid_titles=3, unanswerable=(), seed_text="") -> DatasetDict:
    """train and validation only (SQuAD has no public test split); every title its own paragraph."""
    def rows(split, titles, offset):
        out = {k: [] for k in SQUAD}
        for t in range(titles):
            title = f"{split}-article-{t}"
            context = f"Article {t} of {split}{seed_text}. Its answer is word{t}x and also w{t}y."
            for q in range(per_title):
                k = offset + t * per_title + q
                answers = [] if k in unanswerable else [f"word{t}x", f"w{t}y"]
                out["id"].append(f"{split}{k}")
                out["title"].append(title)
                out["context"].append(context)
                out["question"].append(f"What is question {q} about {title}?")
                out["answers"].append({"text": answers, "answer_start": [context.index(a) for a in answers]})
        return Dataset.from_dict(out, features=SQUAD)
    return DatasetDict({"train": rows("train", n_titles, 0), "validation": rows("validation", valid_titles, 1000)})


def test_squad_schema_constant_and_toy_set():
    assert squad.SQUAD_FEATURES == SQUAD
    toy = squad.toy_squad()
    assert list(toy) == ["train", "validation"] and toy["train"].features == SQUAD
    assert (len(toy["train"]), len(toy["validation"])) == (9, 6)
    for split in toy.values():
        for row in split:
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                assert row["context"][start: start + len(text)] == text
    assert len(set(toy["train"]["title"]) & set(toy["validation"]["title"])) == 0


@pytest.mark.parametrize("route", ["memory", "disk"])
def test_squad_missing_test_split_and_nested_answers(tmp_path, route):
    raw = squad_like(unanswerable={5})
    arg = raw
    if route == "disk":
        raw.save_to_disk(str(tmp_path / "squad"))
        arg = tmp_path / "squad"
    pairs = load_pairs(arg, ["question", "context"], "answers.text", group_by="title", carve_fraction=0.25,
                       keep=["answers"])
    assert list(pairs) == ["train", "validation", "test"]
    assert pairs.carved == ["validation"]
    assert "carved from" in pairs.origin["validation"] and "'validation' split (it has no 'test'" in pairs.origin["test"]
    assert pairs.dropped["train"] + pairs.dropped["validation"] == 1 and pairs.dropped["test"] == 0, "the unanswerable row"
    assert pairs["train"].column_names == ["source", "target", "answers"]
    # test = the source's validation split, in order; the first answer is the target; question + context the source
    assert len(pairs["test"]) == len(raw["validation"])
    first = raw["validation"][0]
    assert pairs["test"][0]["source"] == f"question: {first['question']} context: {first['context']}"
    assert pairs["test"][0]["target"] == first["answers"]["text"][0] == "word0x"
    assert pairs["test"][0]["answers"]["text"] == ["word0x", "w0y"], "keep carries every reference along"
    # validation + train = the source's train (less the one unanswerable row), by whole titles, about 25 %
    titles = lambda split: {s.split(" context: Article ")[1].split(".")[0] for s in pairs[split]["source"]}  # noqa: E731
    assert titles("train").isdisjoint(titles("validation"))
    assert len(pairs["train"]) + len(pairs["validation"]) == len(raw["train"]) - 1
    assert len(titles("validation")) == 3, "12 titles × 25 % = 3 whole titles"
    assert "whole 'title' groups, seed 0" in pairs.origin["validation"]
    assert "rows without an answer left out" in pairs.describe()


def test_carving_is_deterministic_and_seeded():
    raw = squad_like()
    a = load_pairs(raw, "question", "answers.text", group_by="title", carve_fraction=0.25)
    b = load_pairs(raw, "question", "answers.text", group_by="title", carve_fraction=0.25)
    c = load_pairs(raw, "question", "answers.text", group_by="title", carve_fraction=0.25, seed=1)
    assert list(a["validation"]["source"]) == list(b["validation"]["source"])
    assert list(a["validation"]["source"]) != list(c["validation"]["source"])


def test_without_group_rows_are_carved_one_by_one():
    raw = squad_like()
    pairs = load_pairs(raw, "question", "answers.text[1]", carve_fraction=0.1)
    assert len(pairs["validation"]) == round(0.1 * len(raw["train"])) == 5
    assert set(pairs["train"]["target"]) == {f"w{t}y" for t in range(12)}, "[1] picks the second answer"


def test_translation_dicts_alias_split_and_nothing_but_train():
    feats = Features({"translation": Translation(languages=["de", "en"])})
    rows = [{"translation": {"de": f"Satz {i}", "en": f"sentence {i}"}} for i in range(40)]
    raw = DatasetDict({"train": Dataset.from_list(rows[:30], features=feats),
                       "valid": Dataset.from_list(rows[30:], features=feats)})
    pairs = load_pairs(raw, "translation.de", "translation.en", names=("de", "en"))
    assert pairs["test"][0] == {"de": "Satz 30", "en": "sentence 30"}, "'valid' counts as validation, then becomes test"
    assert pairs.carved == ["validation"] and len(pairs["validation"]) == 2   # 5 % of 30, rounded

    only_train = Dataset.from_list(rows, features=feats)
    pairs = load_pairs(only_train, "translation.de", "translation.en", carve_fraction=0.1)
    assert pairs.carved == ["validation", "test"]
    sizes = {k: len(v) for k, v in pairs.items()}
    assert sizes == {"train": 32, "validation": 4, "test": 4}
    seen = [set(v["source"]) for v in pairs.values()]
    assert seen[0].isdisjoint(seen[1]) and seen[0].isdisjoint(seen[2]) and seen[1].isdisjoint(seen[2])
    assert set().union(*seen) == {f"Satz {i}" for i in range(40)}


def test_all_three_splits_are_kept_as_they_are(tmp_path):
    raw = DatasetDict({s: Dataset.from_dict({"q": [f"{s} q"], "a": [f"{s} a"]}) for s in ("train", "validation", "test")})
    pairs = load_pairs(raw, "q", "a")
    assert pairs.carved == [] and pairs["test"][0] == {"source": "test q", "target": "test a"}
    assert pairs.origin["train"] == "the given 'train' split"


def test_a_local_csv_file(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("src,tgt\n" + "".join(f"s{i},t{i}\n" for i in range(10)), encoding="utf-8")
    pairs = load_pairs(csv, "src", "tgt", carve_fraction=0.2)
    assert {k: len(v) for k, v in pairs.items()} == {"train": 6, "validation": 2, "test": 2}
    assert sorted(sum((list(v["source"]) for v in pairs.values()), [])) == sorted(f"s{i}" for i in range(10))
    assert "pairs.csv" in pairs.origin["validation"]


def test_errors_name_the_fix():
    raw = squad_like()
    with pytest.raises(ValueError, match="'answers' holds a record with fields \\['answer_start', 'text'\\].*'answers.text'"):
        load_pairs(raw, "question", "answers")
    with pytest.raises(KeyError, match="column 'questoin'.*'question'"):
        load_pairs(raw, "questoin", "answers.text")
    with pytest.raises(ValueError, match="holds int values, not text"):
        load_pairs(raw, "question", "answers.answer_start")
    with pytest.raises(ValueError, match="carve_fraction must be in"):
        load_pairs(raw, "question", "answers.text", carve_fraction=0.6)
    with pytest.raises(KeyError, match="no 'train' split"):
        load_pairs(DatasetDict({"validation": raw["validation"]}), "question", "answers.text")
    with pytest.raises(KeyError, match="group_by='topic'"):
        load_pairs(raw, "question", "answers.text", group_by="topic")
    with pytest.raises(TypeError, match="hub id, a local path"):
        load_pairs(42, "question", "answers.text")


def test_hub_id_offline_raises_one_clear_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = ("from utils.bonus import squad\nfrom utils.data import DataNotFoundError\n"
            "try:\n    squad.load_pairs('rajpurkar/squad', ['question', 'context'], 'answers.text')\n"
            "except DataNotFoundError as e:\n    print(e)\n"
            "else:\n    raise SystemExit('no error raised')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "rajpurkar/squad" in out.stdout and "save_to_disk" in out.stdout


def test_answers_as_a_list_of_records():
    """The other layout of nested answers ([{'text': ...}, ...], datasets.List of a record): the first record."""
    feats = Features({"q": Value("string"), "answers": datasets.List({"text": Value("string")})})
    raw = Dataset.from_dict({"q": ["a?", "b?", "c?"], "answers": [[{"text": "x"}, {"text": "y"}], [{"text": "z"}], []]},
                            features=feats)
    assert isinstance(raw[0]["answers"], list)
    pairs = load_pairs(DatasetDict({"train": raw, "validation": raw, "test": raw}), "q", "answers.text")
    assert list(pairs["test"]["target"]) == ["x", "z"] and pairs.dropped["test"] == 1
