from fractions import Fraction

import pytest
import torch
from torch import nn

from utils.checkpoint import ConfigMismatchError, load_checkpoint, save_checkpoint

CONFIG = {"d_model": 8, "n_layers": 2, "norm_first": True}


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_round_trip_with_extras(tmp_path):
    model = make()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck" / "model.pt", model.state_dict(), CONFIG, optimizer=opt.state_dict(),
                           step=7, tokenizer={"kind": "char", "tokens": ["<pad>", "<bos>", "<eos>", "<unk>", "a"]},
                           rng=torch.get_rng_state())
    data = load_checkpoint(path, expected_config=CONFIG)
    assert data["config"] == CONFIG and data["step"] == 7
    fresh = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    fresh.load_state_dict(data["model"])
    x = torch.randn(2, 8)
    assert torch.equal(fresh(x), model(x))
    opt2 = torch.optim.Adam(fresh.parameters())
    opt2.load_state_dict(data["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"], "no temporary files left behind"


def test_subclasses_of_plain_types_are_stored_as_the_plain_value(tmp_path):
    import enum

    import numpy as np

    class Size(enum.IntEnum):
        SMALL = 8

    class Name(str):
        pass

    path = save_checkpoint(tmp_path / "s.pt", make().state_dict(), {"d_model": Size.SMALL, "name": Name("base")},
                           words=np.array(["a", "b"]), flags=np.array([True, False]))
    data = load_checkpoint(path)                                   # weights_only: a subclass would not load
    assert data["config"] == {"d_model": 8, "name": "base"}
    assert type(data["config"]["d_model"]) is int and type(data["config"]["name"]) is str
    assert data["words"] == ["a", "b"] and data["flags"].tolist() == [True, False]
    with pytest.raises(TypeError, match=r"when is a datetime\.date"):
        save_checkpoint(tmp_path / "d.pt", make().state_dict(), {}, when=np.datetime64("2020-01-01"))


def test_mismatched_config_names_every_difference(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", make().state_dict(), CONFIG)
    with pytest.raises(ConfigMismatchError) as err:
        load_checkpoint(path, expected_config={"d_model": 16, "n_layers": 2, "dropout": 0.1, "norm_first": True})
    msg = str(err.value)
    assert "d_model: " in msg and "has 8, expected 16" in msg
    assert "dropout: " in msg and "'<missing>'" in msg
    assert "n_layers" not in msg


def test_interrupted_save_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", make().state_dict(), CONFIG, step=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the learner pressed stop mid-save

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, make().state_dict(), CONFIG, step=2)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_loads_with_weights_only_and_refuses_foreign_files(tmp_path):
    # Any pickled object that is not plain data is refused (weights_only=True runs no pickled code).
    torch.save({"format": 1, "config": {}, "model": {}, "obj": Fraction(1, 3)}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", {}, CONFIG, model=1)
