"""The "before" of benchmarks/decode_speed.py: the same measurements with the decoder of commit d88c4ff.

    git worktree add ../before d88c4ff
    PYTHONPATH=../before python benchmarks/decode_speed_before.py --label before

With ``PYTHONPATH`` naming a checkout of d88c4ff, ``utils`` is that commit's package: its decoder
re-projected the cross-attention keys and values at every step, beam search looped over candidates
in Python, and finished sentences stayed in the batch; ``translate`` below is that commit's loop from
``benchmarks/train_multi30k.py``. Everything else is ``decode_speed.py``, so the two runs measure the same
things on the same checkpoint and write to the same JSON under different labels.
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

from utils.common import cpu_model
from utils.data import load_multi30k
from utils.decode import beam_search, greedy_decode
from utils.model import Transformer
from utils.gpt import KVCache  # d88c4ff kept the cache in the GPT module
from utils.tokenize import tokenizer_from_dict

import utils.decode

if hasattr(utils.decode, "translate"):
    raise SystemExit("utils is this checkout's package, not d88c4ff's: run with PYTHONPATH=../before (see the docstring)")
ROOT = Path(__file__).resolve().parents[1]


def use_shared_data():
    os.environ.setdefault('ATTN_DATA_DIR', str(ROOT.parent / 'shared' / 'data'))


def pad_sequences(seqs, pad):
    out = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def translate(model, tok_or_sentences, tok=None, beam_size=1, alpha=0.6, batch_size=100):
    """d88c4ff's benchmarks/train_multi30k.py translate(): sort by length, pad, decode, restore."""
    sentences = tok_or_sentences
    ids = tok.encode_batch(sentences, add_special=True)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        src = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, i in enumerate(chunk):
            src[row, : len(ids[i])] = torch.tensor(ids[i])
        max_len = min(model.config["max_len"] - 1, int(1.5 * width) + 10)
        if beam_size == 1:
            hyp = greedy_decode(model, src, max_len=max_len)
        else:
            hyp = beam_search(model, src, beam_size=beam_size, max_len=max_len, length_penalty_alpha=alpha)
        for row, i in enumerate(chunk):
            out[i] = tok.decode(hyp[row].tolist())
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "multi30k.best.pt")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_speed.json")
    p.add_argument("--label", default="before", help="the key this run's figures are stored under")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (the median is kept)")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--quick", action="store_true", help="100 test sentences, one repeat")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.beam < 2:
        p.error(f"--beam must be at least 2 (greedy is always measured), got {args.beam}")
    if not args.checkpoint.is_file():
        p.error(f"--checkpoint {args.checkpoint} does not exist; train one first with "
                "benchmarks/train_multi30k.py and benchmarks/choose_on_validation.py (README), or pass another")
    if not args.out.parent.is_dir() or not os.access(args.out.parent, os.W_OK):
        p.error(f"--out {args.out}: the folder {args.out.parent} does not exist or is not writable")
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
    use_shared_data()
    data = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model = Transformer.load(args.checkpoint).eval()
    tok = tokenizer_from_dict(data["tokenizer"])
    test = load_multi30k()["test"]
    src, ref = list(test["de"]), list(test["en"])
    if args.quick:
        src, ref, args.repeats = src[:100], ref[:100], 1
    results: dict = {}
    for name, beam in (("greedy", 1), (f"beam {args.beam}", args.beam)):
        hyps: list[str] = []

        def run(beam=beam):
            hyps[:] = translate(model, src, tok, beam_size=beam)

        seconds = median_seconds(run, args.repeats)
        bleu = sacrebleu.corpus_bleu(hyps, [ref]).score
        results[name] = {"seconds": round(seconds, 2), "sentences_per_second": round(len(src) / seconds, 1),
                         "bleu": round(bleu, 2)}
        print(f"{name:>8}: {len(src)} sentences in {seconds:.2f} s = {len(src) / seconds:.0f} sentences/s "
              f"(BLEU {bleu:.2f})")
    batch = tok.encode_batch(src[:100], add_special=True)
    src_ids = pad_sequences(batch, model.pad_id)                               # (100, S)
    steps = step_against_forward(model, src_ids, (8, 16, 32), args.repeats)
    for t, r in steps.items():
        print(f"prefix of {t:>2} tokens, batch of {len(batch)}: one cached step {r['step_ms']:.2f} ms, "
              f"full forward {r['full_forward_ms']:.2f} ms ({r['forward_over_step']:.1f}×)")
    record = {
        "command": "python benchmarks/decode_speed.py --label before (d88c4ff: PYTHONPATH=../before python benchmarks/decode_speed_before.py)" + (" --quick" if args.quick else ""),
        "checkpoint": str(args.checkpoint.resolve().relative_to(ROOT)) if args.checkpoint.resolve().is_relative_to(ROOT)
        else str(args.checkpoint),
        "checkpoint_steps": data.get("steps"),
        "sentences": len(src), "batch_size": 100, "decode": results, "step_vs_forward_batch_100": steps,
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
