"""The benchmark scripts on tiny runs: exact resume, output paths checked before any work, arguments
validated, strict JSON. Each run takes a few seconds (a few hundred sentences, a model of width 16)."""

import importlib.util
import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


@pytest.fixture(scope="module")
def multi30k():
    return load_script("train_multi30k")


@pytest.fixture(scope="module")
def gpt():
    return load_script("train_gpt")


TINY_MT = ["--limit", "150", "--vocab", "80", "--d-model", "16", "--layers", "1", "--heads", "2", "--d-ff", "32",
           "--max-tokens", "300", "--warmup", "2", "--no-progress"]
TINY_GPT = ["--d-model", "16", "--layers", "1", "--heads", "2", "--context", "16", "--batch", "4", "--dropout", "0.1",
            "--no-progress"]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("average", [[], ["--average", "3", "--average-every", "2"]], ids=["last", "average"])
def test_multi30k_resume_equals_the_uninterrupted_run(multi30k, tmp_path, average):
    def run(name: str, steps: int, *extra: str) -> dict:
        return multi30k.main([*TINY_MT, *average, "--steps", str(steps), "--checkpoint", str(tmp_path / f"{name}.pt"),
                              "--out", str(tmp_path / name), *extra])

    straight = run("straight", 8)
    run("resumed", 4)                                            # the interrupted run ...
    resumed = run("resumed", 8, "--resume")                     # ... continued
    assert resumed["steps"] == straight["steps"] == 8
    assert same_weights(weights(tmp_path / "resumed.pt"), weights(tmp_path / "straight.pt"))
    if average:
        assert resumed["averaged_last"] == straight["averaged_last"] == 3
        assert same_weights(weights(tmp_path / "resumed.avg.pt"), weights(tmp_path / "straight.avg.pt"))
    assert resumed["valid"] == straight["valid"]
    assert ((tmp_path / "resumed" / "multi30k_test.hyp.en").read_text()
            == (tmp_path / "straight" / "multi30k_test.hyp.en").read_text())
    # The dropout stream matters: without restoring it the weights differ (the test can fail).
    assert straight["model"]["dropout"] > 0


def test_gpt_interrupted_and_resumed_equals_the_uninterrupted_run(gpt, tmp_path, monkeypatch):
    def run(name: str, *extra: str) -> dict:
        return gpt.main([*TINY_GPT, "--steps", "6", "--checkpoint", str(tmp_path / f"{name}.pt"),
                         "--out", str(tmp_path / name), *extra])

    straight = run("straight")
    real = gpt.train_gpt.__globals__["random_windows"]
    calls = {"n": 0}

    def interrupted(*args, **kwargs):                            # Ctrl-C before step 4
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(gpt.train_gpt.__globals__, "random_windows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("resumed")
    monkeypatch.setitem(gpt.train_gpt.__globals__, "random_windows", real)
    saved = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert saved["gpt_run"]["step"] == 3, "the interrupted run saved the 3 steps it took"
    resumed = run("resumed", "--resume")
    assert same_weights(weights(tmp_path / "resumed.pt"), weights(tmp_path / "straight.pt"))
    assert resumed["val_loss"] == straight["val_loss"] and resumed["steps"] == 6


@pytest.mark.parametrize("script, tiny", [("train_gpt", TINY_GPT + ["--steps", "2"]),
                                          ("train_multi30k", TINY_MT + ["--steps", "2"])])
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
    monkeypatch.setitem(module.main.__globals__, "load_multi30k" if script == "train_multi30k"
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
    ("train_multi30k", ["--max-tokens", "0"]), ("train_multi30k", ["--vocab", "3"]),
    ("train_multi30k", ["--average-every", "0"]), ("train_multi30k", ["--heads", "3"]),
    ("train_multi30k", ["--smoothing", "2"]), ("train_multi30k", ["--beam", "-1"]),
    ("train_multi30k", ["--steps", "0"]), ("train_multi30k", ["--minutes", "-1"]),
    ("train_multi30k", ["--resume", "--checkpoint", "/nonexistent/ck.pt"]),
    ("train_multi30k", ["--cooldown", "10"]), ("train_multi30k", ["--cooldown", "90", "--steps", "100"]),
    ("speed", ["--only", "nosuchcase"]), ("speed", ["--repeats", "0"]),
    ("decode_speed", ["--batch-size", "0"]), ("decode_speed", ["--beam", "1"]),
])
def test_benchmark_arguments_are_checked(script, argv, capsys):
    module = load_script(script)
    with pytest.raises(SystemExit) as err:
        module.parse_args(argv)
    assert err.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_nan_loss_stops_the_gpt_benchmark_and_json_is_strict(gpt, tmp_path):
    with pytest.raises(FloatingPointError, match="loss is nan"):
        gpt.main([*TINY_GPT, "--steps", "3", "--lr", "1e30", "--clip-norm", "1e30", "--checkpoint",
                  str(tmp_path / "ck.pt"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "gpt_shakespeare.json").exists()
    with pytest.raises(ValueError):
        json.dumps({"val_loss": math.nan}, allow_nan=False)      # what the scripts now pass


def test_choose_on_validation_picks_the_best_validation_setting_and_decodes_test_once(multi30k, tmp_path):
    multi30k.main([*TINY_MT, "--average", "3", "--average-every", "2", "--steps", "6",
                   "--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "run")])
    choose = load_script("choose_on_validation")
    with pytest.raises(SystemExit, match="only 3 snapshots"):
        choose.main(["--checkpoint", str(tmp_path / "run.pt"), "--average-choices", "4", "--limit", "20",
                     "--out", str(tmp_path / "best"), "--save", str(tmp_path / "best.pt")])
    report = choose.main(["--checkpoint", str(tmp_path / "run.pt"), "--average-choices", "1", "3", "--beams", "2",
                          "--alphas", "0.6", "1.0", "--limit", "20", "--out", str(tmp_path / "best"),
                          "--save", str(tmp_path / "best.pt"), "--train-report", str(tmp_path / "run" / "multi30k.json")])
    val = report["validation"]
    assert set(val["averaging_greedy"]) == {"1", "3"} and len(val["decoding"]) == 3     # greedy + beam 2 × 2 alphas
    best_k = max((1, 3), key=lambda k: val["averaging_greedy"][str(k)]["bleu"])
    best = max(val["decoding"], key=lambda r: r["bleu"])
    assert report["chosen"] == {"checkpoint": str(tmp_path / "run.pt"), "averaged_last": best_k,
                                "beam": best["beam"], "alpha": best["alpha"]}
    assert [r["validation_bleu"] for r in report["runs"]] == [best["bleu"]]
    hyps = (tmp_path / "best" / "multi30k_test.hyp.en").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 20 == report["test"]["pairs"]
    import sacrebleu
    refs = [line for line in (Path(os.environ["ATTN_DATA_DIR"]) / "multi30k" / "test_2016_flickr.en")
            .read_text(encoding="utf-8").splitlines()][:20]
    assert math.isclose(sacrebleu.BLEU().corpus_score(hyps, [refs]).score, report["test"]["bleu"], abs_tol=0.006)
    assert report["test"]["bleu_lowercased"] >= report["test"]["bleu"]      # lowercasing can only add matches
    assert report["training"]["steps"] == 6
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert saved["decoding"] == {"beam": best["beam"], "alpha": best["alpha"]} and saved["averaged_last"] == best_k
    # the saved weights are the chosen average of the snapshots
    snaps = torch.load(tmp_path / "run.snapshots.pt", weights_only=True)["snapshots"]
    name = next(k for k, v in saved["model"].items() if v.is_floating_point())
    assert torch.allclose(saved["model"][name], torch.stack([s[name] for s in snaps[-best_k:]]).mean(0))


def test_choose_on_validation_chooses_the_run_too_on_validation(multi30k, tmp_path):
    """Two runs (different vocabularies and lengths), listed in both orders: the one whose best setting
    scores higher on validation is decoded on test and saved wherever it is listed, and the report keeps
    the other's tables."""
    for name, vocab, steps in (("a", "300", 2), ("b", "200", 8)):
        multi30k.main([*TINY_MT, "--vocab", vocab, "--average", "2", "--average-every", "2", "--steps", str(steps),
                       "--checkpoint", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / name)])
    choose = load_script("choose_on_validation")
    with pytest.raises(SystemExit):                                       # one training report per run
        choose.parse_args(["--checkpoint", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                           "--train-report", str(tmp_path / "a" / "multi30k.json")])
    chosen = []
    for order in (("a", "b"), ("b", "a")):
        report = choose.main(["--checkpoint", *(str(tmp_path / f"{n}.pt") for n in order),
                              "--average-choices", "1", "--beams", "2", "--alphas", "0.6", "--limit", "20",
                              "--out", str(tmp_path / "best"), "--save", str(tmp_path / "best.pt"), "--train-report",
                              *(str(tmp_path / n / "multi30k.json") for n in order)])
        scores = [r["validation_bleu"] for r in report["runs"]]
        assert scores[0] != scores[1], "a tie would only test the tie rule"
        winner = scores.index(max(scores))
        assert report["chosen"]["checkpoint"] == str(tmp_path / f"{order[winner]}.pt")
        assert report["training"]["steps"] == {"a": 2, "b": 8}[order[winner]]
        assert report["runs"][winner]["vocab"] == report["model"]["src_vocab"]
        assert "validation" in report["runs"][1 - winner] and "validation" not in report["runs"][winner]
        saved = torch.load(tmp_path / "best.pt", weights_only=True)
        assert saved["config"]["src_vocab"] == report["runs"][winner]["vocab"]
        chosen.append(order[winner])
    assert chosen[0] == chosen[1], "the same run wins whichever is listed first"


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
    assert set(saved) == {"after", "small"}, "one file holds every label"
    assert saved["small"]["command"].endswith("--quick --batch-size 7 --label small")
    assert f"--checkpoint {tmp_path / 'run.pt'} --quick" in saved["small"]["command"], "a checkpoint not the default is named"
    assert {r["batch_size"] for r in saved["small"]["decode"].values()} == {7}


def test_compare_runs_measures_each_run_at_the_same_step_on_validation(multi30k, tmp_path):
    for name, extra in (("paper", []), ("cool", ["--cooldown", "3"])):
        multi30k.main([*TINY_MT, "--steps", "6", "--average", "3", "--average-every", "2", *extra,
                       "--checkpoint", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / name)])
    compare = load_script("compare_runs")
    runs = ["--run", f"paper={tmp_path / 'paper.pt'}", "--run", f"cool={tmp_path / 'cool.pt'}"]
    out = tmp_path / "compare.json"
    report = compare.main([*runs, "--step", "6", "--limit", "12", "--alphas", "0.6", "2.0", "--out", str(out)])
    rows = report["runs"]
    assert set(rows) == {"paper", "cool"} and report["validation_pairs"] == 12
    assert all(r["step"] == 6 and set(r["valid_beam5_bleu"]) == {"0.6", "2"} for r in rows.values())
    assert rows["paper"]["valid_loss"] != rows["cool"]["valid_loss"], "the cool-down changed the last steps"
    at_four = compare.main([*runs, "--step", "4", "--limit", "12", "--out", str(tmp_path / "four.json")])["runs"]
    assert at_four["paper"]["valid_loss"] == at_four["cool"]["valid_loss"], "identical before the cool-down starts"
    assert json.loads(out.read_text())["runs"] == rows
    with pytest.raises(SystemExit, match="no snapshot at step 5"):
        compare.main([*runs, "--step", "5", "--limit", "12", "--out", str(out)])
    with pytest.raises(SystemExit):
        compare.parse_args(["--run", f"paper={tmp_path / 'paper.pt'}", "--step", "6"])      # one run only


def test_every_committed_test_bleu_is_what_sacrebleu_gives_on_the_committed_translations():
    """The README's BLEU figures come from these reports: each must be reproducible from the
    translations committed beside it (sacreBLEU 13a on test_2016_flickr, cased, and lowercased
    where the report has it)."""
    import sacrebleu

    from utils.data import load_multi30k

    refs = list(load_multi30k()["test"]["en"])
    checked = 0
    for report in sorted((ROOT / "benchmarks" / "results").rglob("multi30k.json")):
        data = json.loads(report.read_text())
        pairs = []                                                      # (figure, hypotheses file, lowercase)
        if isinstance(data.get("test"), dict):                          # choose_on_validation.py
            pairs.append((data["test"]["bleu"], report.parent / data["test"]["hypotheses"], False))
            pairs.append((data["test"]["bleu_lowercased"], report.parent / data["test"]["hypotheses"], True))
        elif "test_bleu" in data and (report.parent / "multi30k_test.hyp.en").is_file():   # train_multi30k.py
            pairs.append((data["test_bleu"], report.parent / "multi30k_test.hyp.en", False))
        for figure, hyp_file, lowercase in pairs:
            hyps = hyp_file.read_text(encoding="utf-8").splitlines()
            assert len(hyps) == len(refs), f"{hyp_file}: {len(hyps)} lines for {len(refs)} test sentences"
            score = sacrebleu.corpus_bleu(hyps, [refs], lowercase=lowercase).score
            assert round(score, 2) == figure, f"{report.relative_to(ROOT)} says {figure}, its translations give {score:.2f}"
            checked += 1
    assert checked >= 8, f"only {checked} committed figures found: did the results move?"
