"""What the scripts promise a user who runs them for hours: nothing they write destroys a result or
mixes two runs, ``--resume`` continues the same run or says which flag changed, every argument and
output is checked before the work, and one diverging variant or a Ctrl-C does not lose an ablation
study. Tiny runs (a model of width 16, a few steps); the ones that train are marked slow."""

import json
import sys
from pathlib import Path

import pytest
import torch

from test_scripts import TINY_GPT, TINY_MT, load_script
from utils.checkpoint import save_checkpoint
from utils.model import make_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's recipes/
import recipes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


@pytest.fixture(scope="module")
def mt():
    return load_script("train_translator")


@pytest.fixture(scope="module")
def gpt():
    return load_script("train_gpt")


def no_data(module, monkeypatch) -> list:
    """Make the script's data loaders fail loudly; returns a list that records whether one was called."""
    started = []
    for loader in ("load_multi30k", "load_tiny_shakespeare"):
        if loader in module.main.__globals__:
            monkeypatch.setitem(module.main.__globals__, loader, lambda *_, **__: started.append(1) or 1 / 0)
    return started


# -- results and models never destroyed or mixed ----------------------------------------------------------
@pytest.mark.parametrize("script, tiny", [("train_translator", TINY_MT), ("train_gpt", TINY_GPT)])
@pytest.mark.parametrize("stale", ["run.pt", "run.snapshots.pt", "run.avg.pt"])
def test_a_new_run_refuses_an_earlier_runs_files_and_force_removes_them(script, tiny, stale, tmp_path, monkeypatch):
    """A new run on a checkpoint name whose checkpoint, snapshots or average are there stops before any
    work; --force removes the earlier run's snapshots and average, so none is taken for the new run's."""
    module = load_script(script)
    started = no_data(module, monkeypatch)
    (tmp_path / stale).write_bytes(b"an earlier run")
    argv = [*tiny, "--steps", "2", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "out")]
    with pytest.raises(FileExistsError, match="--force.*--checkpoint"):
        module.main(argv)
    assert not started and (tmp_path / stale).read_bytes() == b"an earlier run"
    with pytest.raises(ZeroDivisionError):                    # --force: on to the data (made to fail here)
        module.main([*argv, "--force"])
    assert not (tmp_path / "run.snapshots.pt").exists() and not (tmp_path / "run.avg.pt").exists()


@pytest.mark.parametrize("script", ["train_translator", "train_gpt"])
@pytest.mark.parametrize("name, message", [("d0.1", "ending in .pt"), ("run", "ending in .pt"),
                                           ("other.snapshots.pt", "snapshot file of another"),
                                           ("other.avg.pt", "averaged model of another")])
def test_checkpoint_names_cannot_collide(script, name, message, tmp_path, capsys):
    """``d0.1`` and ``d0.3`` (or ``run`` and ``run.pt``) would share one snapshot file: names end in .pt,
    and none is named like another checkpoint's companion."""
    recipe = "multi30k_30min" if script == "train_translator" else "gpt_shakespeare"
    with pytest.raises(SystemExit):
        load_script(script).parse_args([recipe, "--checkpoint", str(tmp_path / name)])
    assert "--checkpoint" in (err := capsys.readouterr().err) and message in err


@pytest.mark.parametrize("script, tiny", [("train_translator", TINY_MT), ("train_gpt", TINY_GPT)])
def test_two_runs_never_write_one_checkpoint(script, tiny, tmp_path, monkeypatch):
    """While a run holds its checkpoint, a second run on it stops at once (the last writer would win)."""
    module = load_script(script)
    started = no_data(module, monkeypatch)
    argv = [*tiny, "--steps", "2", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "out")]
    with recipes.run_lock(tmp_path / "run.pt"):               # the first run, still training
        with pytest.raises(RuntimeError, match=f"another run is writing the checkpoint {tmp_path / 'run.pt'}"):
            module.main(argv)
    assert not started
    killed = tmp_path / ".run.pt.k1ll3d.tmp"                  # what a save killed with kill -9 leaves
    killed.write_bytes(b"half a checkpoint")
    with pytest.raises(ZeroDivisionError):                    # the first run is over: on to the data
        module.main(argv)
    assert not killed.exists()


def test_a_replaced_checkpoint_keeps_its_permissions_and_a_read_only_one_is_kept(tmp_path, monkeypatch):
    from utils.checkpoint import check_writable

    path = tmp_path / "run.pt"
    save_checkpoint(path, {}, {}, step=1)
    path.chmod(0o600)                                         # private: stays private
    save_checkpoint(path, {}, {}, step=2)
    assert path.stat().st_mode & 0o777 == 0o600 and torch.load(path, weights_only=True)["step"] == 2
    path.chmod(0o444)                                         # read-only: the user keeps it
    with pytest.raises(PermissionError, match="read-only .*chmod u\\+w"):
        save_checkpoint(path, {}, {}, step=3)
    with pytest.raises(PermissionError, match="read-only"):   # and a run says so before any work
        check_writable(path, "--checkpoint")
    assert torch.load(path, weights_only=True)["step"] == 2 and path.stat().st_mode & 0o777 == 0o444
    mt = load_script("train_translator")
    started = no_data(mt, monkeypatch)
    with pytest.raises(PermissionError, match="--checkpoint"):
        mt.main([*TINY_MT, "--steps", "2", "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--force"])
    assert not started and torch.load(path, weights_only=True)["step"] == 2


def fake_run(path, run_id, step=4, steps=(2, 4), config=None, scale=1.0):
    """A training checkpoint and its snapshot file as the translator writes them (tiny tensors)."""
    config = config or {"d_model": 2}
    weights = {"w": torch.full((2,), float(step)) * scale}
    ck = {"config": config, "model": weights, "train_state": {"step": step},
          "run": None if run_id is None else {"id": run_id, "settings": {}}}
    snaps = {"config": config, "steps": list(steps), "run_id": run_id,
             "snapshots": [{"w": torch.full((2,), float(s))} for s in steps]}
    return ck, snaps


@pytest.mark.parametrize("case, message", [
    (lambda: (fake_run("p", "a")[0], fake_run("p", "b")[1]), "run b there, run a in the checkpoint"),
    (lambda: (fake_run("p", "a")[0], fake_run("p", None)[1]), "run \\(none recorded\\) there"),
    (lambda: (fake_run("p", "a")[0], fake_run("p", "a", config={"d_model": 4})[1]), "another model configuration"),
    (lambda: (fake_run("p", "a", step=2)[0], fake_run("p", "a")[1]), "steps \\[4\\], after the checkpoint's step 2"),
    (lambda: (fake_run("p", None, step=6)[0], fake_run("p", None)[1]), "neither records a run identity"),
    (lambda: (fake_run("p", None, scale=2.0)[0], fake_run("p", None)[1]), "neither records a run identity"),
])
def test_a_snapshot_file_of_another_run_is_refused(case, message):
    checkpoint, snapshots = case()
    with pytest.raises(ValueError, match=message):
        recipes.check_snapshots(checkpoint, snapshots, "run.pt", "run.snapshots.pt")


def test_a_snapshot_file_of_the_same_run_is_accepted():
    recipes.check_snapshots(*fake_run("p", "a", step=7), "run.pt", "run.snapshots.pt")   # interrupted after step 4
    recipes.check_snapshots(*fake_run("p", None), "run.pt", "run.snapshots.pt")          # the last snapshot = the weights


@pytest.mark.slow
def test_resume_and_choose_refuse_the_snapshots_of_another_run(mt, tmp_path):
    """Two runs with one setting apart; the second's snapshot file put beside the first's checkpoint is
    refused, naming both files, by --resume --average and by choose.py, before any work."""
    for name, seed in (("a", "0"), ("b", "1")):
        mt.main([*TINY_MT, "--seed", seed, "--average", "2", "--average-every", "2", "--steps", "4",
                 "--checkpoint", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / name)])
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["run"]["id"] for n in "ab")
    assert a != b and torch.load(tmp_path / "a.snapshots.pt", weights_only=True)["run_id"] == a
    (tmp_path / "a.snapshots.pt").write_bytes((tmp_path / "b.snapshots.pt").read_bytes())
    with pytest.raises(ValueError, match=f"does not belong to the training checkpoint {tmp_path / 'a.pt'}"):
        mt.main([*TINY_MT, "--average", "2", "--average-every", "2", "--steps", "6", "--resume", "--force",
                 "--checkpoint", str(tmp_path / "a.pt"), "--out", str(tmp_path / "a")])
    choose = load_script("choose")
    with pytest.raises(SystemExit, match=f"run {b} there, run {a} in the checkpoint"):
        choose.main(["multi30k_30min", "--checkpoint", str(tmp_path / "a.pt"), "--average-choices", "1", "--limit", "5",
                     "--out", str(tmp_path / "best"), "--save", str(tmp_path / "best.pt")])
    assert not (tmp_path / "best.pt").exists()
    compare = load_script("compare_runs")
    with pytest.raises(SystemExit, match="run a: the snapshot file"):
        compare.main(["multi30k_cooldown_1950", "--run", f"a={tmp_path / 'a.pt'}", "--run", f"b={tmp_path / 'b.pt'}",
                      "--step", "4", "--limit", "5", "--out", str(tmp_path / "compare")])


def test_choose_never_saves_over_a_kept_model_a_training_checkpoint_or_snapshots(tmp_path, monkeypatch, capsys):
    choose = load_script("choose")
    run = tmp_path / "run.pt"
    save_checkpoint(run, {}, {}, train_state={"step": 1})           # a training checkpoint
    other = tmp_path / "other.pt"
    save_checkpoint(other, {}, {}, train_state={"step": 1})
    base = ["multi30k_30min", "--checkpoint", str(run), "--out", str(tmp_path / "out")]
    for save, message in ((run, "is a training checkpoint"), (tmp_path / "run.snapshots.pt", "snapshot file"),
                          (other, "holds a training checkpoint")):
        with pytest.raises(SystemExit):
            choose.parse_args([*base, "--save", str(save), "--force"])
        assert message in capsys.readouterr().err
    kept = tmp_path / "kept.best.pt"                                 # a chosen model kept from earlier
    kept.write_bytes(b"kept")
    started = no_data(choose, monkeypatch)
    with pytest.raises(FileExistsError, match="--force"):
        choose.main([*base, "--save", str(kept)])
    assert kept.read_bytes() == b"kept" and not started


# -- resume that is what it says --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mt_run(tmp_path_factory, mt):
    folder = tmp_path_factory.mktemp("mt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                          # as the tests that resume it (one_thread)
    mt.main([*TINY_MT, "--steps", "2", "--checkpoint", str(folder / "run.pt"), "--out", str(folder / "out")])
    torch.set_num_threads(threads)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("flag", [["--warmup", "3"], ["--lr-scale", "2"], ["--max-tokens", "200"], ["--seed", "1"],
                                  ["--smoothing", "0.2"], ["--limit", "100"], ["--vocab", "90"], ["--dropout", "0.2"],
                                  ["--average", "2"], ["--max-len", "300"]])
def test_translator_resume_refuses_a_changed_setting_naming_the_flag(mt, mt_run, flag, monkeypatch):
    started = no_data(mt, monkeypatch)
    with pytest.raises(ValueError, match=f"--resume: the run in .* was trained with {flag[0]} "):
        mt.main([*TINY_MT, "--steps", "4", "--resume", "--force", *flag, "--checkpoint", str(mt_run / "run.pt"),
                 "--out", str(mt_run / "out")])
    assert not started, "the data was loaded before the settings were compared"


@pytest.mark.slow
def test_translator_resume_records_what_may_change(mt, mt_run, tmp_path):
    """The same settings and a longer --steps continue the run (same identity); the report says what changed."""
    before = torch.load(mt_run / "run.pt", weights_only=True)["run"]
    report = mt.main([*TINY_MT, "--steps", "3", "--resume", "--checkpoint", str(mt_run / "run.pt"),
                      "--out", str(tmp_path / "out")])
    assert report["details"]["run"] == {"id": before["id"], "resumed_from_step": 2,
                                        "changed_on_resume": ["out", "steps"]}
    assert torch.load(mt_run / "run.pt", weights_only=True)["run"]["id"] == before["id"]


@pytest.mark.slow
def test_translator_resume_of_a_cooling_run_refuses_new_steps(mt, tmp_path, monkeypatch):
    argv = [*TINY_MT, "--cooldown", "1", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "out")]
    mt.main([*argv, "--steps", "3"])
    no_data(mt, monkeypatch)
    with pytest.raises(ValueError, match="--steps 3 \\(now 5\\)"):
        mt.main([*argv, "--steps", "5", "--resume", "--force"])


@pytest.mark.slow
@pytest.mark.parametrize("flag", [["--steps", "4"], ["--lr", "0.002"], ["--warmup", "3"], ["--seed", "1"],
                                  ["--dropout", "0.2"], ["--batch", "3"], ["--weight-decay", "0.2"]])
def test_gpt_resume_refuses_a_changed_setting_naming_the_flag(gpt, tmp_path, flag, monkeypatch):
    """``--steps`` too: a new length would move where the cosine ends, another schedule than the run's."""
    argv = [*TINY_GPT, "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "out")]
    gpt.main([*argv, "--steps", "2"])
    started = no_data(gpt, monkeypatch)
    changed = dict(zip(flag[::2], flag[1::2]))
    with pytest.raises(ValueError, match=f"trained with {flag[0]} "):
        gpt.main([*argv, "--steps", changed.get("--steps", "2"), "--resume", "--force",
                  *[x for k, v in changed.items() if k != "--steps" for x in (k, v)]])
    assert not started


@pytest.mark.slow
def test_gpt_resume_on_another_thread_count_says_so(gpt, tmp_path):
    """Sums in another order give other bits: a resume on another thread count is recorded, not hidden."""
    argv = [*TINY_GPT, "--steps", "2", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "out")]
    first = gpt.main([*argv, "--threads", "1"])
    threads = torch.get_num_threads()
    try:
        again = gpt.main([*argv, "--threads", "2", "--resume", "--force"])
    finally:
        torch.set_num_threads(threads)
    assert again["details"]["run"] == {"id": first["details"]["run"]["id"], "resumed": True,
                                       "changed_on_resume": ["threads", "threads 1 -> 2"]}


@pytest.mark.slow
def test_resume_refuses_another_scripts_checkpoint_and_weights_alone(mt, gpt, tmp_path, monkeypatch):
    gpt.main([*TINY_GPT, "--steps", "2", "--checkpoint", str(tmp_path / "gpt.pt"), "--out", str(tmp_path / "g")])
    make_model(12, 12, n_layers=1, d_model=8, n_heads=2, d_ff=16).save(tmp_path / "best.pt", tokenizer={})  # weights alone
    started = no_data(mt, monkeypatch)
    for checkpoint, message in (("gpt.pt", "is a checkpoint of another kind.*not a translator"),
                                ("best.pt", "holds weights but no training state")):
        with pytest.raises(ValueError, match=message):
            mt.main([*TINY_MT, "--steps", "4", "--resume", "--checkpoint", str(tmp_path / checkpoint),
                     "--out", str(tmp_path / "out")])
    assert not started


# -- failures before the work --------------------------------------------------------------------------
@pytest.mark.parametrize("script, argv", [
    ("compare_runs", ["--alphas", "nan"]), ("compare_runs", ["--limit", "0"]), ("choose", ["--threads", "0"]),
    ("ablations", ["--threads", "0"]), ("showcase", ["--alpha", "nan"]), ("showcase", ["--beam", "0"]),
])
def test_every_argument_is_checked_before_any_work(script, argv, tmp_path, capsys):
    """A NaN length penalty or a zero count is refused by argparse, naming the flag (NaN < 0 is False)."""
    ck = tmp_path / "run.pt"
    save_checkpoint(ck, {}, {}, train_state={"step": 1})
    (tmp_path / "run.snapshots.pt").write_bytes(b"")
    recipe = {"compare_runs": ["multi30k_cooldown_1950", "--run", f"a={ck}", "--run", f"b={ck}"],
              "choose": ["multi30k_2h", "--checkpoint", str(ck)], "ablations": ["ablations"],
              "showcase": ["multi30k_2h", "--checkpoint", str(ck)]}[script]
    module = load_script(script)
    with pytest.raises(SystemExit) as err:
        (module.main if script == "showcase" else module.parse_args)([*recipe, *argv])
    assert err.value.code == 2 and argv[0] in capsys.readouterr().err


def test_showcase_checks_its_outputs_before_any_work(tmp_path):
    showcase = load_script("showcase")
    (tmp_path / "run.pt").write_bytes(b"not read: the outputs are checked first")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    base = ["multi30k_2h", "--quick", "--checkpoint", str(tmp_path / "run.pt")]
    with pytest.raises(OSError, match="--json report"):
        showcase.main([*base, "--json", str(a_file / "s.json"), "--prefix", str(tmp_path / "fig_")])
    with pytest.raises(OSError, match="--prefix figure"):
        showcase.main([*base, "--json", str(tmp_path / "s.json"), "--prefix", str(a_file / "fig_")])


def test_ablations_checks_its_arguments_and_out_before_any_work(tmp_path, monkeypatch, capsys):
    ablations = load_script("ablations")
    for argv in (["--steps", "0"], ["--quick", "--steps", "0"], ["--steps=0"]):
        with pytest.raises(SystemExit):
            ablations.parse_args(["ablations", *argv])
        assert "--steps must be a positive int" in capsys.readouterr().err
    a_file = tmp_path / "results.txt"
    a_file.write_text("x")
    started = no_data(ablations, monkeypatch)
    with pytest.raises(NotADirectoryError, match="--out"):
        ablations.main(["ablations", "--quick", "--out", str(a_file)])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ablation_curves.png").write_bytes(b"a committed figure")
    with pytest.raises(FileExistsError, match="--force"):
        ablations.main(["ablations", "--quick", "--out", str(tmp_path / "out")])
    assert not started


def test_too_long_sentences_stop_the_translator_before_training(mt, tmp_path, monkeypatch):
    """A sentence beyond the positional table would let the run train fully and die at its first
    validation; the script stops before the first step, naming --max-len and the length needed."""
    trained = []
    monkeypatch.setitem(mt.main.__globals__, "train", lambda *a, **k: trained.append(1) or 1 / 0)
    with pytest.raises(ValueError, match=r"longer than the positional table \(--max-len 12; the longest has \d+ "
                                         r"tokens\): raise --max-len"):
        mt.main([*TINY_MT, "--limit", "20", "--max-len", "12", "--steps", "2", "--checkpoint", str(tmp_path / "r.pt"),
                 "--out", str(tmp_path / "out")])
    assert not trained


def test_showcase_checks_sentence_lengths_before_decoding(tmp_path, monkeypatch):
    from utils.model import make_model
    from utils.tokenize import BPETokenizer

    tok = BPETokenizer.train(["ein Hund läuft", "a dog runs"], vocab_size=40)
    make_model(tok.vocab_size, tok.vocab_size, n_layers=1, d_model=8, n_heads=2, d_ff=8, max_len=8,
               share_embeddings=True).save(tmp_path / "short.pt", tokenizer=tok.to_dict())
    showcase = load_script("showcase")
    decoded = []
    monkeypatch.setitem(showcase.main.__globals__, "translate", lambda *a, **k: decoded.append(1) or 1 / 0)
    with pytest.raises(SystemExit, match="longer than the positional table .*max_len 8"):
        showcase.main(["multi30k_2h", "--quick", "--checkpoint", str(tmp_path / "short.pt"),
                       "--prefix", str(tmp_path / "fig_"), "--json", str(tmp_path / "s.json")])
    assert not decoded


def test_choose_checks_sentence_lengths_against_each_model():
    choose = load_script("choose")
    choose.check_fits("a", 5, {"validation": [[1, 2, 3]], "test": [[1] * 5]})
    with pytest.raises(SystemExit, match="run a: 2 test sentence\\(s\\) are longer .*max_len 5; the longest has 7"):
        choose.check_fits("a", 5, {"validation": [[1, 2, 3]], "test": [[1] * 6, [1] * 7]})


# -- an ablation study survives a diverging variant and a Ctrl-C -----------------------------------------
TINY_ABLATIONS = ["ablations", "--quick", "--steps", "3", "--eval-every", "3", "--overfit-steps", "2", "--no-progress"]


@pytest.fixture
def ablations(monkeypatch):
    module = load_script("ablations")
    monkeypatch.setitem(module.VARIANTS, "huge_lr", {"lr_scale": 1e30})     # a learning rate that must diverge
    return module


def comparable(runs: dict) -> dict:
    return {name: {k: v for k, v in run.items() if not k.endswith("seconds")} for name, run in runs.items()}


@pytest.mark.slow
def test_a_diverging_variant_is_reported_and_the_study_goes_on(ablations, tmp_path):
    report = ablations.main([*TINY_ABLATIONS, "--only", "huge_lr", "baseline", "--out", str(tmp_path)])
    runs = report["details"]["runs"]
    assert runs["huge_lr"]["diverged"] is True and "loss is" in runs["huge_lr"]["error"]
    assert runs["huge_lr"]["steps"] < 3 and "valid_bleu_greedy" not in runs["huge_lr"]
    assert runs["baseline"]["diverged"] is False and runs["baseline"]["steps"] == 3
    assert report["metrics"]["huge_lr_valid_bleu_greedy"] is None
    assert json.loads((tmp_path / "ablations.json").read_text()) == report         # strict JSON: no NaN
    assert (tmp_path / "ablation_curves.png").is_file() and not (tmp_path / ablations.PARTIAL).exists()


@pytest.mark.slow
def test_an_interrupted_study_keeps_its_finished_variants_and_continues(ablations, tmp_path, monkeypatch):
    only = ["--only", "baseline", "no_smoothing"]
    straight = ablations.main([*TINY_ABLATIONS, *only, "--out", str(tmp_path / "straight")])
    real, calls = ablations.train, []

    def interrupted(*args, **kwargs):                        # Ctrl-C in the second variant
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(ablations.main.__globals__, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ablations.main([*TINY_ABLATIONS, *only, "--out", str(tmp_path / "cut")])
    kept = json.loads((tmp_path / "cut" / ablations.PARTIAL).read_text())
    assert list(kept["runs"]) == ["baseline"] and not (tmp_path / "cut" / "ablations.json").exists()
    monkeypatch.setitem(ablations.main.__globals__, "train", real)
    with pytest.raises(FileExistsError, match="other settings"):   # kept variants of another budget
        ablations.main([*TINY_ABLATIONS, "--steps", "4", *only, "--out", str(tmp_path / "cut")])
    resumed = ablations.main([*TINY_ABLATIONS, *only, "--out", str(tmp_path / "cut")])
    assert comparable(resumed["details"]["runs"]) == comparable(straight["details"]["runs"])
    assert not (tmp_path / "cut" / ablations.PARTIAL).exists()


# -- Ctrl-C inside a training step ------------------------------------------------------------------------
def interrupt_in_forward(builder, at_call: int):
    """``builder`` (make_model, make_gpt) whose model sends itself SIGINT inside its ``at_call``-th training
    forward pass, right after its first dropout has drawn its mask (the random state has moved on)."""
    import os
    import signal

    def build(*args, **kwargs):
        model = builder(*args, **kwargs)
        dropout = next(m for m in model.modules() if isinstance(m, torch.nn.Dropout))
        calls = []

        def hook(module, inputs, output):
            if module.training:
                calls.append(1)
                if len(calls) == at_call:
                    os.kill(os.getpid(), signal.SIGINT)
        dropout.register_forward_hook(hook)
        return model
    return build


@pytest.mark.slow
@pytest.mark.parametrize("script, tiny, builder", [("train_translator", TINY_MT, "make_model"),
                                                   ("train_gpt", TINY_GPT, "make_gpt")])
def test_ctrl_c_inside_the_forward_pass_resumes_bit_for_bit(script, tiny, builder, tmp_path, monkeypatch):
    """SIGINT inside step 4's forward pass: the checkpoint holds step 3 with the random state step 4
    began from, so the resumed run ends with the uninterrupted run's weights, bit for bit."""
    module = load_script(script)

    def run(name: str, *extra: str) -> dict:
        return module.main([*tiny, "--steps", "6", "--checkpoint", str(tmp_path / f"{name}.pt"),
                            "--out", str(tmp_path / name), *extra])

    run("straight")
    real = module.main.__globals__[builder]
    monkeypatch.setitem(module.main.__globals__, builder, interrupt_in_forward(real, at_call=4))
    with pytest.raises(KeyboardInterrupt):
        run("resumed")
    monkeypatch.setitem(module.main.__globals__, builder, real)
    assert torch.load(tmp_path / "resumed.pt", weights_only=True)["train_state"]["step"] == 3
    run("resumed", "--resume")
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)["model"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


class Weights(torch.nn.Module):
    """Two weights and a config: enough for utils.train.train and its checkpoints."""

    def __init__(self):
        super().__init__()
        self.config = {"n": 2}
        self.w = torch.nn.Parameter(torch.ones(2))


def test_a_nan_gradient_with_a_finite_loss_never_reaches_the_weights_or_the_checkpoint(tmp_path):
    from utils.batching import TokenBatches
    from utils.train import make_optimizer, train

    model = Weights()
    data = TokenBatches([[1, 5, 2]] * 4, [[1, 6, 2]] * 4, max_tokens=3)
    poisoned = lambda m, batch: (m.w * 0).sqrt().sum()        # noqa: E731 - loss 0, gradient 0 * inf = nan
    with pytest.raises(FloatingPointError, match="a gradient is nan while the loss is 0"):
        train(model, data, make_optimizer(model), loss_fn=poisoned, max_steps=3, device="cpu", progress=False,
              checkpoint_path=tmp_path / "run.pt")
    assert torch.equal(model.w.detach(), torch.ones(2))
    assert torch.equal(torch.load(tmp_path / "run.pt", weights_only=True)["model"]["w"], torch.ones(2))


def test_a_tokenizer_that_cannot_be_saved_fails_before_training(tmp_path):
    from utils.batching import TokenBatches
    from utils.train import make_optimizer, train

    model = Weights()
    steps = []
    with pytest.raises(TypeError, match="tokenizer must be a utils.tokenize tokenizer .* got str"):
        train(model, TokenBatches([[1, 5, 2]], [[1, 6, 2]], max_tokens=3), make_optimizer(model),
              loss_fn=lambda m, b: steps.append(1) or m.w.sum(), max_steps=2, device="cpu", progress=False,
              checkpoint_path=tmp_path / "run.pt", tokenizer=str(tmp_path / "tok.json"))
    assert not steps


def test_a_script_refuses_another_checkouts_utils(tmp_path):
    """A second clone sharing the virtual environment would run the first clone's utils: refused by name."""
    recipes.check_same_checkout(str(recipes.ROOT / "utils" / "__init__.py"))      # this checkout's: fine
    recipes.check_same_checkout(None)
    with pytest.raises(ImportError, match=f"runs with the utils package of another one \\({tmp_path / 'utils'}\\)"):
        recipes.check_same_checkout(str(tmp_path / "utils" / "__init__.py"))
