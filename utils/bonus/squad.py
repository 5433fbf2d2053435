"""The bonus notebook 09: any Hugging Face data set as (source, target) pairs (:func:`load_pairs`;
:func:`toy_squad` is a small offline SQuAD), and SQuAD's metrics, exact match and token F1, as the
official evaluation script (v1.1) defines them.

An extractive answer is a short span ("Denver Broncos"); a prediction that differs only in case,
punctuation, an article or spacing ("the denver broncos.") is the same answer. So both metrics first
**normalise** a string the official way, in this order: lowercase; delete every ASCII punctuation
character (``string.punctuation``); delete the whole words ``a``, ``an``, ``the``; collapse whitespace.

* **Exact match** (EM): 1 if the normalised prediction equals a normalised reference, else 0.
* **Token F1**: the normalised strings split on whitespace; the overlap is the size of the multiset
  intersection of the two token lists; precision = overlap / prediction tokens, recall = overlap / reference
  tokens, F1 = 2PR / (P + R), and 0 when nothing overlaps (two empty strings score 0, as in v1.1).

A question may have several references (SQuAD's ``answers.text``): each metric takes its **maximum**
over them. The corpus figure is the mean over questions, × 100.

    >>> squad_scores(["the Denver Broncos"], [["Denver Broncos", "Broncos"]])
    {'exact_match': 100.0, 'f1': 100.0, 'n': 1}
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from utils import checks
from utils.data import DataNotFoundError

__all__ = ["load_pairs", "toy_squad", "PairSplits", "SQUAD_FEATURES", "VALIDATION_ALIASES", "normalize_answer",
           "exact_match", "token_f1", "squad_scores"]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _references(prediction: str, references: str | Sequence[str]) -> list[str]:
    checks.instance("prediction", prediction, str, "one answer (a str)", hint="score many with squad_scores")
    if isinstance(references, (dict, bytes)):           # list() of SQuAD's answers dict gives its keys
        raise TypeError(f"references must be an answer (a str) or a list of them, got a {type(references).__name__}; "
                        "from SQuAD's answers pass answers['text'], and decode bytes first")
    refs = [references] if isinstance(references, str) else checks.strings("references", references)
    if not refs:
        raise ValueError("no reference answer given; pass a string or a non-empty list of strings "
                         "(SQuAD's answers.text for one question)")
    return refs


def _f1_one(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the normalised ``prediction`` equals any normalised reference, else 0.0. Raises ``ValueError``
    for an empty list of references, ``TypeError`` for a prediction or reference that is not text."""
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in _references(prediction, references)))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """Token F1 in [0, 1] of ``prediction`` against its best reference (see the module docstring); raises as
    :func:`exact_match`."""
    return max(_f1_one(prediction, r) for r in _references(prediction, references))


def squad_scores(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Corpus exact match and F1 in % (the official script's ``exact_match`` and ``f1``), and ``n``.

    Args:
        predictions: one answer string per question.
        references: per question, one reference string or a list of them.

    Raises:
        ValueError: no predictions, or lists of different lengths.
        TypeError: a single string where a list is expected (it would be scored letter by letter).
    """
    predictions = checks.strings("predictions", predictions, hint="one answer string per question")
    if isinstance(references, (str, bytes)):   # one reference (or a list of them) per question, never one string
        checks.strings("references", references)
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; give one "
                         "reference (or list of references) per prediction")
    em = sum(exact_match(p, r) for p, r in zip(predictions, references))
    f1 = sum(token_f1(p, r) for p, r in zip(predictions, references))
    n = len(predictions)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "n": n}


# -- any data set as (source, target) pairs ----------------------------------------------------------
VALIDATION_ALIASES = ("validation", "valid", "val", "dev")  #: split names that mean "validation" on the hub
#: SQuAD v1.1's schema on the hub (``rajpurkar/squad``, config ``plain_text``: train 87,599, validation 10,570).
SQUAD_FEATURES = datasets.Features({
    "id": datasets.Value("string"), "title": datasets.Value("string"), "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
})


class PairSplits(DatasetDict):
    """The ``DatasetDict`` :func:`load_pairs` returns (splits ``train``, ``validation``, ``test``, two text
    columns), plus where each split came from: ``origin[split]`` is a sentence, ``carved`` the splits cut
    out of ``train`` by :func:`load_pairs` (empty when the source had all three), ``dropped[split]`` the
    rows left out because their source or target was empty or missing. ``.map`` and friends return a plain
    ``DatasetDict``: read these first."""

    origin: dict[str, str]
    carved: list[str]
    dropped: dict[str, int]

    def describe(self) -> str:
        """One line per split: rows, origin, rows dropped."""
        return "\n".join(f"{split:<10} {len(rows):>7,} rows: {self.origin[split]}"
                         + (f" ({self.dropped[split]:,} rows without an answer left out)" if self.dropped[split] else "")
                         for split, rows in self.items())


def _parse_path(path: str) -> list[str | int]:
    """``"answers.text[0]"`` → ``["answers", "text", 0]``."""
    steps: list[str | int] = []
    for part in path.split("."):
        match = re.fullmatch(r"(.*?)((?:\[\d+\])*)", part)
        name, indices = match.group(1), match.group(2)
        if name:
            steps.append(name)
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", indices))
    if not steps or not isinstance(steps[0], str):
        raise ValueError(f"column path {path!r} must start with a column name, e.g. 'answers.text[0]'")
    return steps


def _follow(value, steps: list[str | int], path: str):
    """The text at ``steps`` inside one row's value; a list met before a field name, or at the end, gives
    its first element; an empty list gives None (the row is dropped)."""
    for step in [*steps[1:], None]:
        if isinstance(value, list) and not isinstance(step, int):
            if not value:
                return None
            value = value[0]
        if step is None:
            break
        if isinstance(step, int):
            if not isinstance(value, list):
                raise ValueError(f"{path!r}: [{step}] indexes a {type(value).__name__}, not a list")
            if step >= len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, dict):
                raise ValueError(f"{path!r}: field {step!r} asked of a {type(value).__name__}, not a record")
            if step not in value:
                raise ValueError(f"{path!r}: no field {step!r}; the record has {sorted(value)}")
            value = value[step]
    if isinstance(value, dict):
        texty = [k for k, v in value.items() if isinstance(v, str) or (isinstance(v, list) and v and isinstance(v[0], str))]
        raise ValueError(f"{path!r} holds a record with fields {sorted(value)}, not text; name the field, "
                         f"e.g. {path + '.' + (texty or sorted(value))[0]!r}")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{path!r} holds {type(value).__name__} values, not text; pick a text column")
    return value


def _open_source(data, config: str | None) -> tuple[DatasetDict, str]:
    """(a DatasetDict, how to name where it came from) for a hub id, a local path, or a data set in memory."""
    if isinstance(data, DatasetDict):
        return data, "the given"
    if isinstance(data, Dataset):
        return DatasetDict({"train": data}), "the given"
    checks.instance("data", data, (str, Path), "a hub id, a local path, a Dataset or a DatasetDict")
    path = Path(data).expanduser()
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()):
        loaded = datasets.load_from_disk(str(path))       # written by save_to_disk
        return (loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})), f"{str(path)!r}'s"
    builders = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
    if path.is_file() and path.suffix in builders:
        return datasets.load_dataset(builders[path.suffix], data_files=str(path)), f"{str(path)!r}'s"
    hub_id = str(data)
    try:
        try:
            return datasets.load_dataset(hub_id, config), "the hub's"
        except RuntimeError as err:                       # a repo that still holds a loading script
            if "script" not in str(err).lower():
                raise
            return datasets.load_dataset(hub_id, config, revision="refs/convert/parquet"), "the hub's"
    except ValueError:                                    # e.g. a config name that does not exist: its own message
        raise
    except Exception as err:  # ConnectionError, offline mode, an unknown id: all mean "not reachable"
        raise DataNotFoundError(
            f"Could not load {hub_id!r} from the Hugging Face hub ({type(err).__name__}: {str(err)[:200]}).\n"
            f"Check the id (https://huggingface.co/datasets/{hub_id}) and the network, or pass a local copy: "
            f"a folder written by DatasetDict.save_to_disk, a .csv/.json/.jsonl/.parquet file, or a "
            f"Dataset/DatasetDict in memory.") from err


def _carve(rows: Dataset, fractions: dict[str, float], group_by: str | None, seed: int) -> dict[str, list[int]]:
    """Row indices of each carved split (and of what stays in train): whole groups, shuffled with ``seed``."""
    keys = rows[group_by] if group_by is not None else range(len(rows))
    members: dict = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    groups = list(members)
    random.Random(seed).shuffle(groups)
    out: dict[str, list[int]] = {name: [] for name in fractions}
    position = 0
    for name, fraction in fractions.items():
        want = max(1, round(fraction * len(rows)))
        while len(out[name]) < want and position < len(groups) - 1:   # always leave train a group
            out[name].extend(members[groups[position]])
            position += 1
    out["train"] = sorted(i for g in groups[position:] for i in members[g])
    return {name: sorted(idx) for name, idx in out.items()}


def load_pairs(data: str | Path | Dataset | DatasetDict, source: str | list[str], target: str, *,
               config: str | None = None, names: tuple[str, str] = ("source", "target"),
               group_by: str | None = None, carve_fraction: float = 0.05, seed: int = 0,
               keep: tuple[str, ...] | list[str] = ()) -> PairSplits:
    """Any data set with text in it → ``train``/``validation``/``test`` splits of (source, target) text pairs.

    Args:
        data: a hub id (``"rajpurkar/squad"``; needs the internet), a folder written by
            ``save_to_disk``, a ``.csv``/``.json``/``.jsonl``/``.parquet`` file, or a ``Dataset`` (taken as
            ``train``) / ``DatasetDict`` in memory.
        source: the source column, or several columns whose texts are joined as ``"question: … context: …"``
            (each labelled with its column name, so the model can tell them apart).
        target: the target column.
            A column may be a path into nested records: ``"answers.text"`` (SQuAD), ``"translation.de"``
            (WMT, OPUS); ``[i]`` picks a list element (``"answers.text[1]"``), and a list met otherwise
            gives its **first** element (SQuAD's first answer). Rows whose source or target comes out empty
            or missing (SQuAD v2's unanswerable questions) are left out and counted in ``dropped``.
        config: the hub configuration (``"de-en"``), if the data set has several.
        names: the two output column names.
        group_by: a column whose rows stay together when a split is carved, e.g. ``"title"`` for SQuAD:
            its questions share paragraphs, and a paragraph on both sides of a split leaks answers.
        carve_fraction: the share of ``train`` rows given to each carved split.
        seed: the carving's shuffle (the same seed carves the same rows, on any machine).
        keep: columns carried along unchanged, e.g. ``["answers"]`` to score against every reference answer
            while training on the first.

    Missing splits are made deterministically (``valid``/``val``/``dev`` count as ``validation``):

    * no ``test`` but a ``validation`` (SQuAD; its test set is hidden): the source's ``validation`` is
      never used for choices, so it becomes our ``test``, and a new ``validation`` is carved from ``train``;
    * no ``validation``: carved from ``train``; neither: both carved from ``train``.

    Other splits (``unsupervised``, ``test_matched``, …) are left out.

    Returns:
        :class:`PairSplits`: a ``DatasetDict`` with the columns ``names`` (and ``keep``), and ``origin``,
        ``carved``, ``dropped`` saying what was done.

    Raises:
        DataNotFoundError: a hub id that cannot be loaded (no network, a wrong id).
        KeyError: a column that is not there (the message lists the columns) or no ``train`` split.
        ValueError: a path that leads to a record or a number instead of text, or a bad ``carve_fraction``.
    """
    checks.number("carve_fraction", carve_fraction, above=0, below=0.5, expects="in (0, 0.5)",
                  hint="0.05 gives each carved split 5 % of the training rows")
    raw, where = _open_source(data, config)
    splits: dict[str, Dataset] = {}
    for name, rows in raw.items():
        canonical = "validation" if name in VALIDATION_ALIASES else name
        if canonical in ("train", "validation", "test") and canonical not in splits:
            splits[canonical] = rows
    if "train" not in splits:
        raise KeyError(f"{where} data has no 'train' split (it has {list(raw)}); rename the split that holds "
                       f"the training rows to 'train'")
    sources = [source] if isinstance(source, str) else list(source)
    if not sources:
        raise ValueError("source names no column; give a column name or a list of them")
    paths = {p: _parse_path(p) for p in [*sources, target]}
    columns = splits["train"].column_names
    for p, steps in paths.items():
        if steps[0] not in columns:
            raise KeyError(f"column {steps[0]!r} (of {p!r}) is not in the data; its columns are {columns}")
    for col in keep:
        if col not in columns or col in names:
            raise KeyError(f"keep={col!r} must be a column other than {names}; its columns are {columns}")
    if group_by is not None and group_by not in columns:
        raise KeyError(f"group_by={group_by!r} is not a column; its columns are {columns}")

    origin = {name: f"{where} {name!r} split" for name in splits}
    carved: list[str] = []
    if "test" not in splits and "validation" in splits:
        splits["test"] = splits.pop("validation")
        origin["test"] = f"{where} 'validation' split (it has no 'test' split)"
        origin.pop("validation")
    missing = [name for name in ("validation", "test") if name not in splits]
    if missing:
        train_rows = splits["train"]
        parts = _carve(train_rows, {name: carve_fraction for name in missing}, group_by, seed)
        together = f", whole {group_by!r} groups" if group_by else ""
        for name in missing:
            splits[name] = train_rows.select(parts[name])
            origin[name] = (f"carved from {where} 'train': {len(parts[name]):,} of {len(train_rows):,} rows "
                            f"({carve_fraction:.0%}{together}, seed {seed})")
            carved.append(name)
        splits["train"] = train_rows.select(parts["train"])
        origin["train"] = f"{where} 'train' split less the carved {' and '.join(missing)}"

    src_name, tgt_name = names

    def to_pairs(batch: dict) -> dict:
        n = len(batch[columns[0]])
        texts = {p: [_follow(batch[steps[0]][i], steps, p) for i in range(n)] for p, steps in paths.items()}
        if len(sources) == 1:
            src = texts[sources[0]]
        else:
            src = [None if any(texts[p][i] is None for p in sources)
                   else " ".join(f"{p}: {texts[p][i]}" for p in sources) for i in range(n)]
        return {src_name: src, tgt_name: texts[target], **{col: batch[col] for col in keep}}

    out, dropped = {}, {}
    for name in ("train", "validation", "test"):
        rows = splits[name]
        pairs = rows.map(to_pairs, batched=True, remove_columns=rows.column_names)
        whole = [i for i, (s, t) in enumerate(zip(pairs[src_name], pairs[tgt_name])) if s and s.strip() and t and t.strip()]
        dropped[name] = len(pairs) - len(whole)
        out[name] = (pairs.select(whole) if dropped[name] else pairs).select_columns([src_name, tgt_name, *keep])
    result = PairSplits(out)
    result.origin, result.carved, result.dropped = {k: origin[k] for k in out}, carved, dropped
    return result


_TOY_SQUAD = {  # split → title → (context, [(question, [answers])]); our own sentences, SQuAD's shape
    "train": {
        "Multi30k": ("Multi30k extends the Flickr30k image collection with German translations of its English "
                     "captions. It was released in 2016 by Desmond Elliott and colleagues. Each of its 31,014 "
                     "images has one professional translation, and the 2016 test set holds 1,000 captions.",
                     [("Who released Multi30k?", ["Desmond Elliott and colleagues"]),
                      ("Which language were the captions translated into?", ["German"]),
                      ("How many captions does the 2016 test set hold?", ["1,000", "1,000 captions"])]),
        "Transformer": ("The Transformer was introduced in 2017 in the paper Attention Is All You Need. It "
                        "replaces recurrence with attention, so every position of a sentence is processed at "
                        "once. The base model has 65 million parameters and was trained for 12 hours on eight GPUs.",
                        [("In which year was the Transformer introduced?", ["2017"]),
                         ("What does the Transformer replace recurrence with?", ["attention"]),
                         ("How long was the base model trained?", ["12 hours", "12 hours on eight GPUs"])]),
        "BLEU": ("BLEU scores a machine translation by counting the word n-grams it shares with a human "
                 "reference. It was proposed by Kishore Papineni and colleagues at IBM in 2002. A brevity "
                 "penalty stops a system from scoring well by saying little.",
                 [("Who proposed BLEU?", ["Kishore Papineni and colleagues"]),
                  ("What does BLEU count?", ["the word n-grams it shares with a human reference"]),
                  ("What stops a system from scoring well by saying little?", ["A brevity penalty"])]),
    },
    "validation": {
        "Byte-pair encoding": ("Byte-pair encoding starts from single characters and repeatedly merges the most "
                               "frequent adjacent pair into a new token. Sennrich, Haddow and Birch applied it to "
                               "neural machine translation in 2016. A vocabulary of a few thousand tokens covers "
                               "rare words by splitting them into pieces.",
                               [("What does byte-pair encoding start from?", ["single characters"]),
                                ("Who applied byte-pair encoding to neural machine translation?",
                                 ["Sennrich, Haddow and Birch", "Sennrich"]),
                                ("How does the vocabulary cover rare words?", ["by splitting them into pieces"])]),
        "Label smoothing": ("Label smoothing trains a model against a target that keeps most of its probability on "
                            "the right token and spreads the rest evenly over the vocabulary. The Transformer used a "
                            "smoothing value of 0.1. It hurts perplexity but improves BLEU.",
                            [("What smoothing value did the Transformer use?", ["0.1"]),
                             ("What does label smoothing hurt?", ["perplexity"]),
                             ("Where does the target spread the rest of its probability?", ["evenly over the vocabulary"])]),
    },
}


def toy_squad() -> DatasetDict:
    """A 15-question stand-in for SQuAD that needs no network: SQuAD's exact schema (:data:`SQUAD_FEATURES`)
    and its splits (``train``: 3 articles, 9 questions; ``validation``: 2 articles, 6 questions; no ``test``),
    every ``answer_start`` the answer's character offset in its context, as in SQuAD."""
    splits = {}
    for split, articles in _TOY_SQUAD.items():
        rows: dict[str, list] = {name: [] for name in SQUAD_FEATURES}
        for title, (context, questions) in articles.items():
            for k, (question, answers) in enumerate(questions):
                rows["id"].append(f"toy-{split}-{title.lower().replace(' ', '-')}-{k}")
                rows["title"].append(title)
                rows["context"].append(context)
                rows["question"].append(question)
                rows["answers"].append({"text": answers, "answer_start": [context.index(a) for a in answers]})
        splits[split] = Dataset.from_dict(rows, features=SQUAD_FEATURES)
    return DatasetDict(splits)
