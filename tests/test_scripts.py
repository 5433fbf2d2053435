"""The scripts (scripts/ and benchmarks/) on tiny runs: exact resume, output paths checked before any
work, committed results never overwritten by default, arguments validated, strict JSON. Each run takes
a few seconds (a few hundred sentences, a model of width 16); the tests that train are marked slow."""

import importlib.util
import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE_NAMES = sorted(p.stem for p in (ROOT / "recipes").glob("*.py") if not p.stem.startswith("_"))


def load_script(name: str):
    folder = "benchmarks" if name in ("speed", "decode_speed") else "scripts"
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


@pytest.fixture(scope="module")
def multi30k():
    return load_script("train_translator")


@pytest.fixture(scope="module")
def gpt():
    return load_script("train_gpt")


TINY_MT = ["multi30k_30min", "--average", "0", "--beam", "0", "--limit", "150", "--vocab", "80", "--d-model", "16", "--layers", "1", "--heads", "2", "--d-ff", "32",
           "--max-tokens", "300", "--warmup", "2", "--no-progress"]
TINY_GPT = ["gpt_shakespeare", "--d-model", "16", "--layers", "1", "--heads", "2", "--context", "16", "--batch", "4", "--dropout", "0.1",
            "--no-progress"]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("average", [[], ["--average", "3", "--average-every", "2"]], ids=["last", "average"])
def test_multi30k_resume_equals_the_uninterrupted_run(multi30k, tmp_path, average):
    def run(name: str, steps: int, *extra: str) -> dict:
        return multi30k.main([*TINY_MT, *average, "--steps", str(steps), "--checkpoint", str(tmp_path / f"{name}.pt"),
                              "--out", str(tmp_path / name), *extra])

    straight = run("straight", 8)["metrics"]
    run("resumed", 4)                                            # the interrupted run ...
    with pytest.raises(FileExistsError, match="--force"):        # it finished and wrote its report
        run("resumed", 8, "--resume")
    report = run("resumed", 8, "--resume", "--force")           # ... continued
    resumed = report["metrics"]
    assert resumed["steps"] == straight["steps"] == 8
    assert same_weights(weights(tmp_path / "resumed.pt"), weights(tmp_path / "straight.pt"))
    if average:
        assert resumed["averaged_last"] == straight["averaged_last"] == 3
        assert same_weights(weights(tmp_path / "resumed.avg.pt"), weights(tmp_path / "straight.avg.pt"))
    assert [resumed[f"valid_{k}"] for k in ("loss", "ppl", "acc")] == [straight[f"valid_{k}"] for k in ("loss", "ppl", "acc")]
    assert ((tmp_path / "resumed" / "train.test.hyp.en").read_text()
            == (tmp_path / "straight" / "train.test.hyp.en").read_text())
    assert json.loads((tmp_path / "resumed" / "train.json").read_text()) == report
    # The dropout stream matters: without restoring it the weights differ (the test can fail).
    assert report["details"]["model"]["dropout"] > 0


@pytest.mark.slow
def test_start_from_continues_a_copy_and_leaves_the_other_recipes_checkpoint(multi30k, tmp_path, monkeypatch):
    """``multi30k_75min`` starts from ``multi30k_30min``'s checkpoint: it trains on a copy (the
    30-minute checkpoint stays byte for byte), and the continuation equals an uninterrupted run."""
    monkeypatch.setattr(multi30k.recipes, "CHECKPOINTS", tmp_path / "checkpoints")
    tiny = [a for a in TINY_MT if a != "multi30k_30min"]
    multi30k.main(["multi30k_30min", *tiny, "--steps", "4", "--out", str(tmp_path / "30")])
    source = tmp_path / "checkpoints" / "multi30k_30min.pt"
    before = source.read_bytes()
    report = multi30k.main(["multi30k_75min", *tiny, "--steps", "8", "--minutes", "5", "--out", str(tmp_path / "75")])
    assert source.read_bytes() == before, "the other recipe's checkpoint was written"
    straight = multi30k.main(["multi30k_30min", *tiny, "--steps", "8", "--out", str(tmp_path / "straight"),
                              "--checkpoint", str(tmp_path / "straight.pt")])
    assert report["metrics"]["steps"] == 8 and report["settings"]["start_from"] == "multi30k_30min"
    assert same_weights(weights(tmp_path / "checkpoints" / "multi30k_75min.pt"), weights(tmp_path / "straight.pt"))
    assert report["metrics"]["valid_loss"] == straight["metrics"]["valid_loss"]


@pytest.mark.slow
def test_gpt_interrupted_and_resumed_equals_the_uninterrupted_run(gpt, tmp_path, monkeypatch):
    def run(name: str, *extra: str) -> dict:
        return gpt.main([*TINY_GPT, "--steps", "6", "--checkpoint", str(tmp_path / f"{name}.pt"),
                         "--out", str(tmp_path / name), *extra])

    straight = run("straight")
    real = gpt.next_token_loss
    calls = {"n": 0}

    def interrupted(*args, **kwargs):                            # Ctrl-C in step 4
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gpt, "next_token_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("resumed")
    monkeypatch.setattr(gpt, "next_token_loss", real)
    saved = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert saved["train_state"]["step"] == 3, "the interrupted run saved the 3 steps it took"
    resumed = run("resumed", "--resume")["metrics"]
    assert same_weights(weights(tmp_path / "resumed.pt"), weights(tmp_path / "straight.pt"))
    assert resumed["val_loss"] == straight["metrics"]["val_loss"] and resumed["steps"] == 6


@pytest.mark.parametrize("script, tiny", [("train_gpt", TINY_GPT + ["--steps", "2"]),
                                          ("train_translator", TINY_MT + ["--steps", "2"])])
@pytest.mark.parametrize("which", ["--out", "--checkpoint"])
def test_unwritable_paths_fail_before_any_work(script, tiny, which, tmp_path, monkeypatch):
    module = load_script(script)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bad_paths = [a_file / "sub"]                                 # a folder that cannot exist: its parent is a file
    if os.name == "posix" and os.geteuid() != 0:                # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        bad_paths.append(locked / "sub")
    started = []
    monkeypatch.setitem(module.main.__globals__, "load_multi30k" if script == "train_translator"
                        else "load_tiny_shakespeare", lambda **_: started.append(1) or 1 / 0)
    paths = {"--out": str(tmp_path / "out"), "--checkpoint": str(tmp_path / "ck.pt")}
    for bad in bad_paths:
        args = {**paths, which: str(bad if which == "--out" else bad / "ck.pt")}
        with pytest.raises(OSError, match=str(bad.parent.resolve())):
            module.main([*tiny, *[x for kv in args.items() for x in kv]])
    assert not started, "the data was loaded before the paths were checked"


@pytest.mark.parametrize("script, argv", [
    ("train_gpt", ["--batch", "0"]), ("train_gpt", ["--lr", "nan"]), ("train_gpt", ["--heads", "3"]),
    ("train_gpt", ["--steps", "0"]), ("train_gpt", ["--dropout", "1.5"]), ("train_gpt", ["--context", "0"]),
    ("train_gpt", ["--min-lr", "1"]), ("train_gpt", ["--warmup", "-1"]),
    ("train_translator", ["--max-tokens", "0"]), ("train_translator", ["--vocab", "3"]),
    ("train_translator", ["--average-every", "0"]), ("train_translator", ["--heads", "3"]),
    ("train_translator", ["--smoothing", "2"]), ("train_translator", ["--beam", "-1"]),
    ("train_translator", ["--steps", "0"]), ("train_translator", ["--minutes", "-1"]),
    ("train_translator", ["--resume", "--checkpoint", "/nonexistent/ck.pt"]),
    ("train_translator", ["--cooldown", "10"]), ("train_translator", ["--cooldown", "90", "--steps", "100"]),
    ("ablations", ["--steps", "0"]), ("ablations", ["--quick", "--eval-every", "-1"]),
    ("speed", ["--only", "nosuchcase"]), ("speed", ["--repeats", "0"]),
    ("decode_speed", ["--batch-size", "0"]), ("decode_speed", ["--beam", "1"]),
    ("choose", ["--alphas", "nan"]), ("choose", ["--alphas", "-1"]),
])
def test_script_arguments_are_checked(script, argv, capsys):
    module = load_script(script)
    recipe = {"train_gpt": ["gpt_shakespeare"], "train_translator": ["multi30k_30min"], "ablations": ["ablations"],
              "choose": ["multi30k_2h"]}
    with pytest.raises(SystemExit) as err:
        module.parse_args([*recipe.get(script, []), *argv])
    assert err.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.parametrize("script, argv, message", [
    ("train_translator", [], "no recipe named"), ("train_translator", ["nosuchrecipe"], "no recipe named 'nosuchrecipe'"),
    ("train_translator", ["gpt_shakespeare"], "is run by scripts/train_gpt.py"),
    ("train_gpt", ["multi30k_2h"], "is run by scripts/train_translator.py"),
    ("choose", ["multi30k_2h", "--checkpoint", "/nonexistent/run.pt"], "no training checkpoint at /nonexistent/run.pt"),
    ("compare_runs", ["multi30k_2h"], "sets no compare_step"),
])
def test_recipe_names_are_checked(script, argv, message, capsys):
    with pytest.raises(SystemExit):
        load_script(script).parse_args(argv)
    err = capsys.readouterr().err
    assert message in err or (not argv and "recipe" in err)


@pytest.mark.slow
def test_nan_loss_stops_the_gpt_script_and_json_is_strict(gpt, tmp_path):
    with pytest.raises(FloatingPointError, match="loss is nan"):
        gpt.main([*TINY_GPT, "--steps", "3", "--lr", "1e30", "--clip-norm", "1e30", "--checkpoint",
                  str(tmp_path / "ck.pt"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "train.json").exists()
    with pytest.raises(ValueError):
        json.dumps({"val_loss": math.nan}, allow_nan=False)      # what the scripts now pass


@pytest.mark.slow
def test_choose_picks_the_best_validation_setting_and_decodes_test_once(multi30k, tmp_path):
    multi30k.main([*TINY_MT, "--average", "3", "--average-every", "2", "--steps", "6",
                   "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "run")])
    choose = load_script("choose")
    with pytest.raises(SystemExit, match="only 3 snapshots"):
        choose.main(["multi30k_30min", "--checkpoint", str(tmp_path / "run.pt"), "--average-choices", "4", "--limit", "20",
                     "--out", str(tmp_path / "best"), "--save", str(tmp_path / "best.pt")])
    report = choose.main(["multi30k_30min", "--checkpoint", str(tmp_path / "run.pt"), "--average-choices", "1", "3",
                          "--beams", "2", "--alphas", "0.6", "1.0", "--limit", "20", "--out", str(tmp_path / "best"),
                          "--save", str(tmp_path / "best.pt")])
    metrics, details = report["metrics"], report["details"]
    val = details["validation"]
    assert set(val["averaging_greedy"]) == {"1", "3"} and len(val["decoding"]) == 3     # greedy + beam 2 × 2 alphas
    best_k = max((1, 3), key=lambda k: val["averaging_greedy"][str(k)]["bleu"])
    best = max(val["decoding"], key=lambda r: r["bleu"])
    assert details["chosen"] == {"run": str(tmp_path / "run.pt"), "checkpoint": str(tmp_path / "run.pt"),
                                 "averaged_last": best_k, "beam": best["beam"], "alpha": best["alpha"]}
    assert (metrics["averaged_last"], metrics["beam"], metrics["alpha"]) == (best_k, best["beam"], best["alpha"])
    assert [r["validation_bleu"] for r in details["runs"]] == [best["bleu"]] == [metrics["validation_bleu"]]
    hyps = (tmp_path / "best" / "choose.test.hyp.en").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 20 == metrics["test_pairs"]
    import sacrebleu
    refs = [line for line in (Path(os.environ["ATTN_DATA_DIR"]) / "multi30k" / "test_2016_flickr.en")
            .read_text(encoding="utf-8").splitlines()][:20]
    assert math.isclose(sacrebleu.BLEU().corpus_score(hyps, [refs]).score, metrics["test_bleu"], abs_tol=0.006)
    assert metrics["test_bleu_lowercased"] >= metrics["test_bleu"]      # lowercasing can only add matches
    assert metrics["checkpoint_steps"] == 6
    assert [t["metric"] for t in report["translations"]] == ["test_bleu", "test_bleu_lowercased"]
    assert json.loads((tmp_path / "best" / "choose.json").read_text()) == report
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert saved["decoding"] == {"beam": best["beam"], "alpha": best["alpha"]} and saved["averaged_last"] == best_k
    assert saved["run_id"] == torch.load(tmp_path / "run.pt", weights_only=True)["run"]["id"], "which run it came from"
    # the saved weights are the chosen average of the snapshots
    snaps = torch.load(tmp_path / "run.snapshots.pt", weights_only=True)["snapshots"]
    name = next(k for k, v in saved["model"].items() if v.is_floating_point())
    assert torch.allclose(saved["model"][name], torch.stack([s[name] for s in snaps[-best_k:]]).mean(0))
    with pytest.raises(FileExistsError, match="--force"):           # the report is there now
        choose.main(["multi30k_30min", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "best"),
                     "--save", str(tmp_path / "other.pt")])
    with pytest.raises(SystemExit):                                 # the chosen weights would replace the run
        choose.parse_args(["multi30k_30min", "--checkpoint", str(tmp_path / "run.pt"), "--save", str(tmp_path / "run.pt")])


@pytest.mark.slow
def test_choose_chooses_the_run_too_on_validation(multi30k, tmp_path):
    """Two runs (different vocabularies and lengths), listed in both orders: the one whose best setting
    scores higher on validation is decoded on test and saved wherever it is listed, and the report keeps
    the other's tables."""
    for name, vocab, steps in (("a", "300", 2), ("b", "200", 8)):
        multi30k.main([*TINY_MT, "--vocab", vocab, "--average", "2", "--average-every", "2", "--steps", str(steps),
                       "--checkpoint", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / name)])
    choose = load_script("choose")
    chosen = []
    for order in (("a", "b"), ("b", "a")):
        report = choose.main(["multi30k_30min", "--checkpoint", *(str(tmp_path / f"{n}.pt") for n in order),
                              "--average-choices", "1", "--beams", "2", "--alphas", "0.6", "--limit", "20",
                              "--out", str(tmp_path / "best"), "--save", str(tmp_path / "best.pt"), "--force"])
        details = report["details"]
        scores = [r["validation_bleu"] for r in details["runs"]]
        assert scores[0] != scores[1], "a tie would only test the tie rule"
        winner = scores.index(max(scores))
        assert details["chosen"]["checkpoint"] == str(tmp_path / f"{order[winner]}.pt")
        assert report["metrics"]["checkpoint_steps"] == {"a": 2, "b": 8}[order[winner]]
        assert details["runs"][winner]["vocab"] == details["model"]["src_vocab"]
        assert "validation" in details["runs"][1 - winner] and "validation" not in details["runs"][winner]
        saved = torch.load(tmp_path / "best.pt", weights_only=True)
        assert saved["config"]["src_vocab"] == details["runs"][winner]["vocab"]
        chosen.append(order[winner])
    assert chosen[0] == chosen[1], "the same run wins whichever is listed first"


@pytest.mark.slow
def test_decode_speed_records_what_it_measured(multi30k, tmp_path):
    multi30k.main([*TINY_MT, "--steps", "2", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "run")])
    speed = load_script("decode_speed")
    out = tmp_path / "speed.json"
    record = speed.main(["--checkpoint", str(tmp_path / "run.pt"), "--quick", "--out", str(out)])
    assert record["sentences"] == 100 and set(record["decode"]) == {"greedy", "beam 4"}
    assert record["decode"]["greedy"]["batch_size"] == 500 and record["decode"]["beam 4"]["batch_size"] == 125
    assert all(r["seconds"] > 0 and 0 <= r["bleu"] <= 100 for r in record["decode"].values())
    assert set(record["step_vs_forward_batch_100"]) == {"8", "16", "32"}
    speed.main(["--checkpoint", str(tmp_path / "run.pt"), "--quick", "--out", str(out), "--batch-size", "7",
                "--label", "small"])
    saved = json.loads(out.read_text())
    assert set(saved) == {"default", "small"}, "one file holds every label"
    assert saved["small"]["command"].endswith("--quick --batch-size 7 --label small")
    assert f"--checkpoint {tmp_path / 'run.pt'} --quick" in saved["small"]["command"], "a checkpoint not the default is named"
    assert {r["batch_size"] for r in saved["small"]["decode"].values()} == {7}
    with pytest.raises(SystemExit):                                  # a label already stored needs --force
        speed.parse_args(["--checkpoint", str(tmp_path / "run.pt"), "--out", str(out), "--label", "small"])


@pytest.mark.slow
def test_compare_runs_measures_each_run_at_the_same_step_on_validation(multi30k, tmp_path):
    for name, extra in (("paper", []), ("cool", ["--cooldown", "3"])):
        multi30k.main([*TINY_MT, "--steps", "6", "--average", "3", "--average-every", "2", *extra,
                       "--checkpoint", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / name)])
    compare = load_script("compare_runs")
    runs = ["multi30k_cooldown_1950", "--run", f"paper={tmp_path / 'paper.pt'}", "--run", f"cool={tmp_path / 'cool.pt'}"]
    out = tmp_path / "compare"
    report = compare.main([*runs, "--step", "6", "--limit", "12", "--alphas", "0.6", "2.0", "--out", str(out)])
    rows = report["details"]["runs"]
    assert set(rows) == {"paper", "cool"} and report["metrics"]["validation_pairs"] == 12
    assert all(r["step"] == 6 and set(r["valid_beam5_bleu"]) == {"0.6", "2"} for r in rows.values())
    assert report["metrics"]["cool_valid_beam5_bleu_alpha2"] == rows["cool"]["valid_beam5_bleu"]["2"]
    assert rows["paper"]["valid_loss"] != rows["cool"]["valid_loss"], "the cool-down changed the last steps"
    at_four = compare.main([*runs, "--step", "4", "--limit", "12", "--out", str(tmp_path / "four")])["details"]["runs"]
    assert at_four["paper"]["valid_loss"] == at_four["cool"]["valid_loss"], "identical before the cool-down starts"
    assert json.loads((out / "compare.json").read_text())["details"]["runs"] == rows
    with pytest.raises(SystemExit, match="no snapshot at step 5"):
        compare.main([*runs, "--step", "5", "--limit", "12", "--out", str(tmp_path / "five")])
    with pytest.raises(SystemExit):
        compare.parse_args(["multi30k_cooldown_1950", "--run", f"paper={tmp_path / 'paper.pt'}", "--step", "6"])  # one run


def test_default_outputs_belong_to_the_checkout_of_the_script(multi30k, tmp_path, monkeypatch):
    """Run from another folder, a script's default report and checkpoint paths are still this checkout's."""
    monkeypatch.chdir(tmp_path)
    args = multi30k.parse_args(["multi30k_30min"])
    assert args.out == ROOT / "results" / "multi30k_30min" and args.checkpoint == ROOT / "checkpoints" / "multi30k_30min.pt"
    choose = load_script("choose").parse_args
    ck = tmp_path / "run.pt"
    ck.write_bytes(b"")
    args = choose(["multi30k_2h", "--checkpoint", str(ck)])
    assert args.out == ROOT / "results" / "multi30k_2h" and args.save == ROOT / "checkpoints" / "multi30k_2h.best.pt"


@pytest.mark.parametrize("script, argv", [
    ("train_translator", ["multi30k_2h", "--steps", "2", "--cooldown", "0", "--checkpoint", "{tmp}/ck.pt"]),
    ("train_translator", ["multi30k_30min", "--steps", "2", "--checkpoint", "{tmp}/ck.pt"]),
    ("train_gpt", ["gpt_shakespeare", "--steps", "2", "--checkpoint", "{tmp}/ck.pt"]),
    ("choose", ["multi30k_2h", "--checkpoint", "{tmp}/run.pt", "--save", "{tmp}/best.pt"]),
    ("ablations", ["ablations", "--quick"]),
    ("showcase", ["multi30k_2h", "--quick", "--checkpoint", "{tmp}/run.pt", "--prefix", "{tmp}/fig_"]),
    ("showcase", ["multi30k_2h", "--quick", "--checkpoint", "{tmp}/run.pt", "--json", "{tmp}/s.json"]),
])
def test_a_default_run_never_writes_over_a_committed_report(script, argv, tmp_path, monkeypatch):
    """A smoke run as the docstrings show it, minus --out, stops before any work: the committed report
    stays, and the error names the way on (--force or another --out)."""
    (tmp_path / "run.pt").write_bytes(b"")
    module = load_script(script)
    for loader in ("load_multi30k", "load_tiny_shakespeare"):
        if loader in module.main.__globals__:
            monkeypatch.setitem(module.main.__globals__, loader, lambda **_: 1 / 0)
    committed = {path: path.read_bytes() for path in (ROOT / "results").rglob("*.json")}
    with pytest.raises(FileExistsError, match="--force"):
        module.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert {path: path.read_bytes() for path in (ROOT / "results").rglob("*.json")} == committed


@pytest.mark.parametrize("script, argv, message", [
    ("speed", ["--quick"], "--force"), ("decode_speed", ["--quick", "--checkpoint", "{ck}"], "--force"),
    ("decode_speed", ["--checkpoint", "{ck}", "--out", "{tmp}"], "is a folder"),
    ("decode_speed", ["--checkpoint", "{ck}", "--out", "{ck}"], "not a JSON file"),
])
def test_a_default_benchmark_never_writes_over_its_committed_report(script, argv, message, tmp_path, capsys):
    ck = tmp_path / "run.pt"
    ck.write_bytes(b"")
    with pytest.raises(SystemExit):
        load_script(script).parse_args([a.replace("{ck}", str(ck)).replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_showcase_draws_from_a_checkpoint_into_the_working_folder(multi30k, tmp_path, monkeypatch):
    """A relative --prefix and --json are taken from the working folder, and the report is in the one schema."""
    multi30k.main([*TINY_MT, "--steps", "3", "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "run")])
    monkeypatch.chdir(tmp_path)
    report = load_script("showcase").main(["multi30k_2h", "--quick", "--checkpoint", str(tmp_path / "run.pt"),
                                           "--prefix", "pics/fig_", "--json", "show.json"])
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["fig_alignment.png", "fig_decoder_grid.png",
                                                                    "fig_encoder_grid.png"]
    assert json.loads((tmp_path / "show.json").read_text()) == report and report["stage"] == "showcase"
    assert report["metrics"]["test_bleu"] is None, "--quick measures no test BLEU"


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_every_recipe_is_read_by_its_script(name, tmp_path):
    """Each recipe names a script whose flags take every one of its settings (a typo in a recipe fails here)."""
    import recipes

    settings = recipes.load(name)
    script = load_script(settings["script"])
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"")
    args = script.parse_args([name] + (["--checkpoint", str(ck)] if settings["script"] != "ablations" else []))
    later = getattr(script, "LATER_SETTINGS", ())
    for key, value in settings.items():
        if key not in ("script", *later):
            assert getattr(args, key) == value, f"{name}: {key}"
