import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from utils import runtime  # noqa: E402


def test_set_seed_repeats_every_generator():
    runtime.set_seed(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    runtime.set_seed(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    runtime.set_seed(124)
    assert random.random() != a[0]


@pytest.mark.parametrize("bad, exc", [(1.5, TypeError), ("1", TypeError), (True, TypeError), (-1, ValueError), (2**32, ValueError)])
def test_set_seed_rejects_bad_seeds(bad, exc):
    with pytest.raises(exc, match="seed"):
        runtime.set_seed(bad)


def test_get_device_detects_and_accepts_choices(monkeypatch):
    monkeypatch.delenv("ATTN_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.get_device().type == expected
    assert runtime.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("ATTN_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")


def test_get_device_errors(monkeypatch):
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        runtime.get_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no GPU"):
        runtime.get_device("cuda")


def test_get_device_takes_a_device_and_names_where_the_choice_came_from(monkeypatch):
    monkeypatch.delenv("ATTN_DEVICE", raising=False)
    assert runtime.get_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="map_location must be 'cpu' or 'cuda'"):
        runtime.get_device("gpu", name="map_location")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="map_location='cuda:1' asks for a GPU, but no GPU is visible"):
        runtime.get_device("cuda:1", name="map_location")
    monkeypatch.setenv("ATTN_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="ATTN_DEVICE='cuda' asks for a GPU"):
        runtime.get_device()
    monkeypatch.setenv("ATTN_DEVICE", "  ")                      # blank: as if unset
    assert runtime.get_device() == torch.device("cpu")


def test_save_figure_writes_into_the_working_checkouts_figures(tmp_path, monkeypatch):
    """A notebook runs from notebooks/: its figures go beside it, into the checkout it runs in, even when
    ``utils`` is imported from another checkout (a shared virtual environment)."""
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = runtime.save_figure(fig, "line")
    assert path == tmp_path / "figures" / "line.png" and path.stat().st_size > 0
    assert not Path(runtime.__file__).resolve().is_relative_to(tmp_path)
    first = path.read_bytes()
    runtime.save_figure(fig, "line.png")
    assert path.read_bytes() == first, "saving twice must write identical bytes (no timestamps)"
    plt.close(fig)


@pytest.mark.parametrize("name", ["sub/plot.png", "../plot.png", ""])
def test_save_figure_rejects_paths(name):
    fig = plt.figure()
    with pytest.raises(ValueError, match="plain file name"):
        runtime.save_figure(fig, name)
    plt.close(fig)


def test_cpu_model_reads_proc_cpuinfo_or_falls_back(monkeypatch, tmp_path):
    name = runtime.cpu_model()
    assert isinstance(name, str) and name.strip() == name and name
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t: x\n")
    real_path = runtime.Path
    monkeypatch.setattr(runtime, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert runtime.cpu_model() == "Test CPU 9000"
    monkeypatch.setattr(runtime, "Path", lambda p: tmp_path / "missing")
    monkeypatch.setattr(runtime.platform, "processor", lambda: "")
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    assert runtime.cpu_model() == "x86_64", "no /proc/cpuinfo: the machine's architecture"
