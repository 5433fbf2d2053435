import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils import data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir():
    value = os.environ.get("ATTN_DATA_DIR")
    assert value, "ATTN_DATA_DIR must name the data folder (CI sets it; set it to your local copy of the data)"
    return Path(value)


def test_multi30k_from_local_files(data_dir):
    ds = data.load_multi30k()
    assert {k: len(v) for k, v in ds.items()} == {"train": 29000, "validation": 1014, "test": 1000}
    assert ds["train"].column_names == ["de", "en"]
    assert ds["train"][0] == {"de": "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
                              "en": "Two young, White males are outside near many bushes."}
    assert ds["test"][-1]["en"] == (data_dir / "multi30k/test_2016_flickr.en").read_text("utf-8").splitlines()[-1].strip()
    assert all(s == s.strip() and s for s in ds["train"]["de"]), "lines are stripped and never empty"


def test_multi30k_limit_keeps_the_first_pairs_of_each_split(data_dir):
    full, few = data.load_multi30k(), data.load_multi30k(limit=5)
    assert {k: len(v) for k, v in few.items()} == {"train": 5, "validation": 5, "test": 5}
    assert all(few[split][:] == full[split][:5] for split in full), "the first pairs, in order"
    assert len(data.load_multi30k(limit=5000)["test"]) == 1000, "a limit above a split's size keeps it whole"
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive int"):
            data.load_multi30k(limit=bad)


def test_tiny_shakespeare_split_90_5_5(data_dir):
    ds = data.load_tiny_shakespeare()
    text = (data_dir / "tinyshakespeare/input.txt").read_text("utf-8")
    parts = [ds[s][0]["text"] for s in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [1003854, 55770, 55770]
    assert "".join(parts) == text
    assert parts[0].startswith("First Citizen:")


def test_missing_local_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "multi30k").mkdir()
    (tmp_path / "multi30k" / "train.de").write_text("Hallo\n", encoding="utf-8")
    monkeypatch.setenv("ATTN_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_multi30k()
    msg = str(err.value)
    assert "lacks multi30k/train.en" in msg and "bentrevett/multi30k" in msg and "ATTN_DATA_DIR" in msg
    with pytest.raises(data.DataNotFoundError, match="tinyshakespeare/input.txt"):
        data.load_tiny_shakespeare()


def test_unequal_parallel_files_are_refused(tmp_path, monkeypatch, data_dir):
    (tmp_path / "multi30k").mkdir()
    for f in (data_dir / "multi30k").iterdir():
        (tmp_path / "multi30k" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "multi30k" / "val.en").write_text("one line\n", encoding="utf-8")
    monkeypatch.setenv("ATTN_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="val.de has 1014 lines but .en has 1"):
        data.load_multi30k()


@pytest.mark.parametrize("loader, hub_id, file", [
    ("load_multi30k", "bentrevett/multi30k", "multi30k/test_2016_flickr.en"),
    ("load_tiny_shakespeare", "karpathy/tiny_shakespeare", "tinyshakespeare/input.txt"),
])
def test_offline_without_data_dir_raises_one_clear_error(tmp_path, loader, hub_id, file):
    """No ATTN_DATA_DIR, no network (the hub forced offline, an empty cache): our error, not a
    raw ConnectionError. Runs in a fresh interpreter because `datasets` reads these at import."""
    env = {k: v for k, v in os.environ.items() if k != "ATTN_DATA_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = (f"from utils import data\n"
            f"try:\n    data.{loader}()\nexcept data.DataNotFoundError as e:\n    print(e)\n"
            f"else:\n    raise SystemExit('no error raised')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    assert hub_id in out.stdout and "ATTN_DATA_DIR" in out.stdout and file in out.stdout
    assert "not reachable" in out.stdout
