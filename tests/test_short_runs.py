"""utils.short_runs holds the short training runs of notebooks 04 and 05: these tests bind each run to the
notebook that builds it, by running the notebook's own cells (read from the .ipynb) for a few steps
next to the run on the same data and asserting equal weights, to the bit."""

import ast
import json
from pathlib import Path

import pytest
import torch

from utils import short_runs
from utils.batching import TokenBatches
from utils.synthetic import date_pairs
from utils.tokenize import BPETokenizer, CharTokenizer

REPO = Path(__file__).resolve().parents[1]


def cells(name: str) -> list[str]:
    nb = json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def functions(sources: list[str], names: set[str]) -> str:
    """The source of the top-level functions called ``names`` in the notebook's code cells."""
    found = {}
    for src in sources:
        tree = ast.parse(src)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found[node.name] = ast.get_source_segment(src, node)
    assert set(found) == names, f"the notebook no longer defines {sorted(names - set(found))}"
    return "\n\n".join(found.values())


def cell_with(sources: list[str], marker: str, replace: dict[str, str] | None = None) -> str:
    """The one code cell that contains ``marker``, with ``replace`` applied and its top-level asserts removed
    (they hold for the full run, not for a few steps)."""
    hits = [s for s in sources if marker in s]
    assert len(hits) == 1, f"expected one cell containing {marker!r}, found {len(hits)}"
    src = hits[0]
    for old, new in (replace or {}).items():
        assert old in src, f"the cell no longer contains {old!r}"
        src = src.replace(old, new)
    tree = ast.parse(src)
    tree.body = [n for n in tree.body if not isinstance(n, ast.Assert)]
    return ast.unparse(tree)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_date_recipe_equals_notebook_04():
    src04 = cells("04_encoder_decoder.ipynb")
    pairs = date_pairs(600, seed=1)
    tok = CharTokenizer.fit([text for pair in pairs for text in pair])
    ns = {"train_pairs": pairs, "tok": tok, "V": tok.vocab_size}
    exec("import math, time\nimport torch\nimport torch.nn.functional as F\n"
         "from torch.nn.utils.rnn import pad_sequence\nfrom tqdm.auto import tqdm\n"
         "from utils.runtime import set_seed\nfrom utils.model import make_model\nfrom utils.tokenize import PAD_ID\n", ns)
    exec(functions(src04, {"make_batch", "loss_fn", "small_model", "adam"}), ns)
    exec(cell_with(src04, "STEPS, WARMUP, BATCH = ",
                   {"STEPS, WARMUP, BATCH = 600, 80, 32": "STEPS, WARMUP, BATCH = 12, 4, 16"}), ns)
    ours = short_runs.train_date_model(pairs, tok, steps=12, warmup=4, batch=16)
    assert same_weights(ns["date_model"], ours), "utils.short_runs.train_date_model drifted from notebook 04's loop"
    assert short_runs.DATE_RUN == {"steps": 600, "warmup": 80, "batch": 32, "lr": 3e-3}
    assert "STEPS, WARMUP, BATCH = 600, 80, 32" in "".join(src04) and "adam(date_model, 3e-3)" in "".join(src04)
    src, tgt = ns["make_batch"](pairs[:5])
    assert all(torch.equal(x, y) for x, y in zip((src, tgt), short_runs.date_batch(pairs[:5], tok)))


def test_date_recipe_refuses_bad_arguments():
    pairs = date_pairs(10, seed=1)
    tok = CharTokenizer.fit([text for pair in pairs for text in pair])
    with pytest.raises(ValueError, match="warmup"):
        short_runs.train_date_model(pairs, tok, steps=5, warmup=5)
    with pytest.raises(ValueError, match="empty"):
        short_runs.train_date_model([], tok, steps=5, warmup=1)


def tiny_multi30k(n: int = 160) -> dict:
    """A Multi30k-shaped toy: German/English sentences made of a few words, deterministic."""
    de = ["ein", "Mann", "eine", "Frau", "Hund", "spielt", "läuft", "im", "Park", "mit", "dem", "Ball"]
    en = ["a", "man", "woman", "dog", "plays", "runs", "in", "the", "park", "with", "ball"]
    g = torch.Generator().manual_seed(0)
    pick = lambda words, k: " ".join(words[int(i)] for i in torch.randint(0, len(words), (k,), generator=g))  # noqa: E731
    rows = [(pick(de, 3 + i % 7), pick(en, 3 + i % 6)) for i in range(n)]
    return {"train": {"de": [d for d, _ in rows], "en": [e for _, e in rows]}}


def test_short_translator_equals_notebook_05(tmp_path):
    """Notebook 05 trains its short run in two halves, with a checkpoint, a resume and validation in between;
    the recipe trains in one go. Both, for 8 steps on a toy corpus: the same weights."""
    src05 = cells("05_training_multi30k.ipynb")
    joined = "".join(src05)
    assert "SHORT_RUN" in joined and "make_translator" in joined, "notebook 05 builds its short run from utils.short_runs"
    ds = tiny_multi30k()
    ours, tok_ours = short_runs.train_short_translator(ds, "cpu", steps=8)

    tok = BPETokenizer.train(list(ds["train"]["de"]) + list(ds["train"]["en"]), vocab_size=short_runs.SHORT_RUN["vocab"])
    assert tok.to_dict() == tok_ours.to_dict()
    run = dict(short_runs.SHORT_RUN, steps=8, minutes=None)
    train_data = TokenBatches(tok.encode_batch(ds["train"]["de"], add_special=True),
                              tok.encode_batch(ds["train"]["en"], add_special=True), max_tokens=run["max_tokens"], seed=0)
    valid_data = TokenBatches(tok.encode_batch(ds["train"]["de"][:20], add_special=True),
                              tok.encode_batch(ds["train"]["en"][:20], add_special=True), max_tokens=4000, shuffle=False)
    ns = {"RUN": run, "tok": tok, "train_data": train_data, "valid_data": valid_data, "DEVICE": torch.device("cpu"),
          "REPO_ROOT": tmp_path}
    exec("import shutil, tempfile\nfrom pathlib import Path\nimport torch\nfrom utils.runtime import set_seed\n"
         "from utils.model import count_parameters\nfrom utils.short_runs import SHORT_RUN, make_translator\n"
         "from utils.schedules import warmup_schedule\nfrom utils.train import make_optimizer, resume, train\n", ns)
    exec(functions(src05, {"make_run_model"}), ns)
    exec(cell_with(src05, 'CHECKPOINT = Path(tempfile.mkdtemp()) / "multi30k_short.pt"'), ns)
    exec(cell_with(src05, "state = resume(CHECKPOINT, model, opt, sched)"), ns)
    assert ns["state"].step == 8
    assert same_weights(ns["model"], ours), "utils.short_runs.train_short_translator drifted from notebook 05's run"
    assert (tmp_path / "checkpoints" / "05_translator.pt").is_file()


def test_notebook_06_loads_what_notebooks_04_and_05_save_and_trains_it_the_same_way(tmp_path):
    """06 loads, by default, the files 05 and 04 save. When one is missing, 06 trains it with the recipe bound
    above (the translator on one thread, as 05 trains it), saves it there, and a second run loads the same weights.
    06's own cells run here, with the recipes shortened to a few steps."""
    src04, src05, src06 = (cells(f"{name}.ipynb") for name in
                           ("04_encoder_decoder", "05_training_multi30k", "06_testing_attention_maps"))
    assert any('model.save(REPO_ROOT / "checkpoints" / "05_translator.pt"' in s for s in src05)
    assert any('date_model.save(REPO_ROOT / "checkpoints" / "04_dates.pt"' in s for s in src04)
    assert any("torch.set_num_threads(1)" in s and "if not FULL" in s for s in src05), "05's short run: one thread"
    ds, threads = tiny_multi30k(), []

    def short_translator(data, device):
        threads.append(torch.get_num_threads())
        return short_runs.train_short_translator(data, device, steps=8)

    date_pairs_ = date_pairs(300, seed=1)
    date_tok = CharTokenizer.fit([text for pair in date_pairs_ for text in pair])
    ns = {"REPO_ROOT": tmp_path, "CHECKPOINTS": tmp_path / "checkpoints", "ds": ds, "DEVICE": torch.device("cpu"),
          "train_short_translator": short_translator, "date_train": date_pairs_, "date_tok": date_tok,
          "train_date_model": lambda pairs, tok: short_runs.train_date_model(pairs, tok, steps=12, warmup=4, batch=16)}
    exec("import time\nimport torch\nfrom utils.checkpoint import load_checkpoint\nfrom utils.model import make_model\n"
         "from utils.short_runs import DATE_RUN, SHORT_RUN\nfrom utils.tokenize import tokenizer_from_dict\n", ns)
    translator_cell = cell_with(src06, 'CHECKPOINT = CHECKPOINTS / "05_translator.pt"')
    date_cell = cell_with(src06, 'DATE_CHECKPOINT = CHECKPOINTS / "04_dates.pt"')
    for _ in range(2):                                                  # trained and saved, then loaded
        exec(translator_cell, ns)
        exec(date_cell, ns)
        assert same_weights(ns["model"], short_runs.train_short_translator(ds, "cpu", steps=8)[0])
        assert same_weights(ns["date_model"], short_runs.train_date_model(date_pairs_, date_tok, steps=12, warmup=4,
                                                                       batch=16))
    assert threads == [1], "06 trained the translator once, on one thread as 05 does, and then loaded it"
    assert ns["origin"] == ns["date_origin"] == "loaded"
    assert (tmp_path / "checkpoints" / "05_translator.pt").is_file() and (tmp_path / "checkpoints" / "04_dates.pt").is_file()
