"""Decoding speed: how fast a trained translator turns the 1,000 test sentences into English.

    python benchmarks/decode_speed.py                          # the model scripts/choose.py multi30k_2h saved
    python benchmarks/decode_speed.py --checkpoint checkpoints/multi30k_30min.pt --out /tmp/decode.json
    python benchmarks/decode_speed.py --quick --out /tmp/quick.json   # 100 sentences, a smoke run

What is measured, with the model in ``--checkpoint`` (default ``checkpoints/multi30k_2h.best.pt``, written
by ``scripts/choose.py multi30k_2h``; any translator checkpoint saved with its tokenizer will do: another kind,
such as a GPT's, is refused before anything is timed, as is a test sentence longer than the model's positional
table), on ``test_2016_flickr``:

* **sentences per second** for greedy decoding and for beam search (beam 4, alpha 0.6), through
  ``utils.decode.translate`` (sorted by length, in batches of ``--batch-size`` sentences, by default
  ``translate``'s: about 500 prefixes a step; the source encoded once, a KV cache);
  the BLEU of each is printed too, so a fast but broken decoder shows.
* **one decoder step against the model's full forward**: the time of ``Transformer.decode_step`` for
  ONE new token with a KV cache holding ``t - 1`` positions (and the cross-attention keys), against
  ``Transformer.decode`` on the whole prefix of ``t`` tokens (what decoding without a cache runs at
  every step), for a batch of 100 sentences, ``t`` = 8, 16, 32. The ratio is the cache's gain.

Each figure is the median of ``--repeats`` runs. The machine should be otherwise idle; the load
average is recorded. Results go to ``--out`` (default ``benchmarks/decode_speed.json`` of this checkout)
under the ``--label`` given (default ``default``), so one file can hold several runs; a label already
in the file is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import sacrebleu
import torch

from utils.batching import pad_sequences
from utils.data import load_multi30k
from utils.decode import default_batch_size, translate
from utils.kv_cache import KVCache
from utils.checkpoint import load_checkpoint
from utils.model import Transformer, check_translator
from utils.runtime import cpu_model
from utils.tokenize import tokenizer_from_dict

ROOT = Path(__file__).resolve().parents[1]  # the checkout


DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "multi30k_2h.best.pt"


def shown(path: Path) -> str:
    """A path as the README writes it: relative to the repository when it is inside it."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "decode_speed.json")
    p.add_argument("--label", default="default", help="the key this run's figures are stored under")
    p.add_argument("--force", action="store_true", help="replace the figures already stored under --label")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (the median is kept)")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="sentences decoded together (default: translate's, 500 // beam size)")
    p.add_argument("--quick", action="store_true", help="100 test sentences, one repeat")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.beam < 2:
        p.error(f"--beam must be at least 2 (greedy is always measured), got {args.beam}")
    if not args.checkpoint.is_file():
        p.error(f"--checkpoint {args.checkpoint} does not exist; train one first with "
                "python scripts/train_translator.py multi30k_2h and python scripts/choose.py multi30k_2h "
                "(docs/results.md), or pass another")
    if args.out.is_dir():
        p.error(f"--out {args.out} is a folder; give a file name such as {args.out / 'decode_speed.json'}")
    if not args.out.parent.is_dir() or not os.access(args.out.parent, os.W_OK):
        p.error(f"--out {args.out}: the folder {args.out.parent} does not exist or is not writable")
    if args.out.is_file() and not args.force:
        try:
            stored = json.loads(args.out.read_text())
        except ValueError:
            p.error(f"--out {args.out} is not a JSON file; pass another --out")
        if not isinstance(stored, dict):
            p.error(f"--out {args.out} does not hold a JSON object of labels; pass another --out")
        if args.label in stored:
            p.error(f"--out {args.out} already holds --label {args.label} (committed figures or an earlier run); "
                    "pass --force to replace them, another --label, or --out elsewhere")
    return args


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_against_forward(model: Transformer, src: torch.Tensor, lengths: tuple[int, ...], repeats: int) -> dict:
    """Seconds of one cached decoder step vs. the full decode of the same prefix, per prefix length."""
    out = {}
    with torch.no_grad():
        memory = model.encode(src)                                             # (b, S, d_model)
        for t in lengths:
            prefix = torch.randint(4, model.config["tgt_vocab"], (src.shape[0], t), generator=torch.Generator().manual_seed(t))
            prefix[:, 0] = 1                                                   # <bos>

            def filled_cache() -> KVCache:
                cache = KVCache()
                model.decode_step(prefix[:, :-1], memory, src, cache)          # positions 0 .. t-2
                return cache

            caches = [filled_cache() for _ in range(5 * repeats)]

            def one_step():
                model.decode_step(prefix[:, -1:], memory, src, caches.pop())

            def full():
                model.decode(prefix, memory, src)[:, -1]

            step = statistics.median(median_seconds(one_step, 1) for _ in range(5 * repeats))
            forward = median_seconds(full, 5 * repeats)
            out[str(t)] = {"step_ms": round(1e3 * step, 3), "full_forward_ms": round(1e3 * forward, 3),
                           "forward_over_step": round(forward / step, 2)}
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        data = check_translator(load_checkpoint(args.checkpoint), args.checkpoint)   # a translator's, before any work
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if data.get("tokenizer") is None:
        raise SystemExit(f"{args.checkpoint} holds no tokenizer (saved without tokenizer=...): pass a checkpoint "
                         "that scripts/choose.py or scripts/train_translator.py wrote")
    model = Transformer.load(args.checkpoint).eval()
    tok = tokenizer_from_dict(data["tokenizer"])
    test = load_multi30k()["test"]
    src, ref = list(test["de"]), list(test["en"])
    if args.quick:
        src, ref, args.repeats = src[:100], ref[:100], 1
    longest = max(len(ids) for ids in tok.encode_batch(src, add_special=True))
    if longest > model.config["max_len"]:                       # fail now, not in the middle of the timings
        raise SystemExit(f"a test sentence of {longest} tokens is longer than the positional table of "
                         f"{args.checkpoint} (max_len {model.config['max_len']}): it cannot be translated; retrain "
                         "with a larger --max-len or --vocab")
    results: dict = {}
    for name, beam in (("greedy", 1), (f"beam {args.beam}", args.beam)):
        hyps: list[str] = []

        batch_size = default_batch_size(beam) if args.batch_size is None else args.batch_size

        def run(beam=beam, batch_size=batch_size):
            hyps[:] = translate(model, src, tok, beam_size=beam, batch_size=batch_size)

        seconds = median_seconds(run, args.repeats)
        bleu = sacrebleu.corpus_bleu(hyps, [ref]).score
        results[name] = {"seconds": round(seconds, 2), "sentences_per_second": round(len(src) / seconds, 1),
                         "bleu": round(bleu, 2), "batch_size": batch_size}
        print(f"{name:>8}: {len(src)} sentences in {seconds:.2f} s = {len(src) / seconds:.0f} sentences/s "
              f"(BLEU {bleu:.2f}; batches of {batch_size})")
    batch = tok.encode_batch(src[:100], add_special=True)
    src_ids = pad_sequences(batch, model.pad_id)                               # (100, S)
    steps = step_against_forward(model, src_ids, (8, 16, 32), args.repeats)
    for t, r in steps.items():
        print(f"prefix of {t:>2} tokens, batch of {len(batch)}: one cached step {r['step_ms']:.2f} ms, "
              f"full forward {r['full_forward_ms']:.2f} ms ({r['forward_over_step']:.1f}×)")
    record = {
        "command": "python benchmarks/decode_speed.py"
        + ("" if args.checkpoint.resolve() == DEFAULT_CHECKPOINT.resolve() else f" --checkpoint {shown(args.checkpoint)}")
        + (" --quick" if args.quick else "")
        + ("" if args.batch_size is None else f" --batch-size {args.batch_size}")
        + ("" if args.label == "default" else f" --label {args.label}"),
        "checkpoint": shown(args.checkpoint),
        "checkpoint_steps": data.get("steps"),
        "sentences": len(src), "decode": results, "step_vs_forward_batch_100": steps,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
        "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
    }
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    previous[args.label] = record
    args.out.write_text(json.dumps(previous, indent=2, allow_nan=False) + "\n")
    print(f"wrote {args.out} [{args.label}]")
    return record


if __name__ == "__main__":
    main()
