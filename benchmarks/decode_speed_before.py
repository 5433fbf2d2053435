"""The "before" of benchmarks/decode_speed.py: the same measurements with the decoder of commit d88c4ff.

    git worktree add ../before d88c4ff
    PYTHONPATH=../before python benchmarks/decode_speed_before.py              # --label before
    PYTHONPATH=../before python benchmarks/decode_speed_before.py --quick --out /tmp/before.json

With ``PYTHONPATH`` naming a checkout of d88c4ff, ``utils`` is that commit's package: its decoder
re-projected the cross-attention keys and values at every step, beam search looped over candidates
in Python, and finished sentences stayed in the batch. This script lends that package the few names
``decode_speed.py`` imports and d88c4ff did not have yet (the cache's new home, ``pad_sequences``,
``use_shared_data``, and ``translate``: below, d88c4ff's own loop from ``benchmarks/train_multi30k.py``,
with its batches of 100),
then runs ``decode_speed.py``'s ``main`` unchanged, so both runs measure the same things on the same
checkpoint and write to the same JSON under different labels.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

import utils.attention
import utils.batching
import utils.common
import utils.decode
import utils.gpt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if hasattr(utils.decode, "translate"):
    raise SystemExit("utils is this checkout's package, not d88c4ff's: run with PYTHONPATH=../before (see the docstring)")


def use_shared_data() -> None:
    os.environ.setdefault("ATTN_DATA_DIR", str(ROOT.parent / "shared" / "data"))


def pad_sequences(seqs, pad_id: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


def translate(model, sentences, tok, *, beam_size: int = 1, length_penalty_alpha: float = 0.6,
              batch_size: int = 100) -> list[str]:
    """d88c4ff's benchmarks/train_multi30k.py translate(): sort by length, pad, decode, restore the order."""
    ids = tok.encode_batch(sentences, add_special=True)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        src = pad_sequences([ids[i] for i in chunk], 0)
        max_len = min(model.config["max_len"] - 1, int(1.5 * width) + 10)
        if beam_size == 1:
            hyp = utils.decode.greedy_decode(model, src, max_len=max_len)
        else:
            hyp = utils.decode.beam_search(model, src, beam_size=beam_size, max_len=max_len,
                                           length_penalty_alpha=length_penalty_alpha)
        for row, i in enumerate(chunk):
            out[i] = tok.decode(hyp[row].tolist())
    return out


utils.attention.KVCache = utils.gpt.KVCache                 # d88c4ff kept the cache in the GPT module
utils.batching.pad_sequences = pad_sequences
utils.common.REPO_ROOT = ROOT                             # this checkout: its checkpoints and results
utils.common.use_shared_data = use_shared_data
utils.decode.translate = translate
utils.decode.default_batch_size = lambda beam_size: 100     # d88c4ff's loop decoded batches of 100

spec = importlib.util.spec_from_file_location("decode_speed", HERE / "decode_speed.py")
decode_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decode_speed)

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--label" or a.startswith("--label=") for a in argv):
        argv = [*argv, "--label", "before"]
    record = decode_speed.main(argv)
    args = decode_speed.parse_args(argv)
    results = json.loads(args.out.read_text())
    results[args.label]["command"] = ("PYTHONPATH=../before python benchmarks/decode_speed_before.py "
                                      + " ".join(argv)).strip()
    args.out.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
