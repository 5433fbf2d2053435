"""Speed: our attention and our whole Transformer against PyTorch's, on the same shapes and weights.

    python benchmarks/speed.py                 # about 3 minutes on a 2-core CPU
    python benchmarks/speed.py --quick         # a smoke run, about 30 s
    python benchmarks/speed.py --repeats 40 --out /tmp/speed.json

What is timed (each one forward + backward; the model cases also the Adam step):

* ``mha``: ``utils.attention.MultiHeadAttention(need_weights=False)`` against
  ``nn.MultiheadAttention(need_weights=False)`` holding the same weights (``from_torch``), as
  self-attention with a key-padding mask, in training mode with dropout 0.1.
* ``small`` and ``base``: one training step of ``utils.model.make_model(...)`` against the same
  model with its encoder and decoder replaced by :meth:`Transformer.to_torch` (``nn.Transformer``
  holding the same weights), so the embeddings, positions, generator, loss and optimiser are the
  same code on both sides and only the layers differ.

Machines are noisy (and this one may be shared), so the two sides are interleaved: every repeat
runs ours then theirs (or theirs then ours, alternating) on the same batch, and we report the
medians and the median of the per-repeat ratios. The ratio is the number to read; the
milliseconds depend on the machine. Writes a JSON file with the environment (torch version,
threads, device, CPU model) next to the numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.checkpoint import check_writable
from utils.model import Transformer, make_model
from utils.runtime import cpu_model
from utils.torch_compat import mha_from_torch, transformer_to_torch

ROOT = Path(__file__).resolve().parents[1]  # the checkout

PAD = 0


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):                        # not available on Windows
        return None


def padded_ids(gen: torch.Generator, vocab: int, batch: int, length: int, device: torch.device) -> Tensor:
    """Random ids ``(batch, length)`` in ``4 .. vocab-1``; rows end in padding, lengths ``length/2 .. length``."""
    ids = torch.randint(4, vocab, (batch, length), generator=gen)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen)
    lengths[0] = length                                     # the longest row fixes the padded width
    ids[torch.arange(length)[None, :] >= lengths[:, None]] = PAD
    return ids.to(device)


class TorchLayers(nn.Module):
    """Our embeddings and generator around ``nn.Transformer`` (``transformer_to_torch(model)``): the
    reference side of the whole-model benchmark. Same call signature as our model."""

    def __init__(self, model: Transformer):
        super().__init__()
        twin = copy.deepcopy(model)                          # its own embeddings, positions, generator
        self.src_embed, self.tgt_embed = twin.src_embed, twin.tgt_embed
        self.src_pos, self.tgt_pos, self.generator = twin.src_pos, twin.tgt_pos, twin.generator
        self.core = transformer_to_torch(model)

    def forward(self, src_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        src_pad, tgt_pad = src_ids == PAD, tgt_ids == PAD    # True = padding (PyTorch's convention)
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_ids.shape[1], device=tgt_ids.device,
                                                                dtype=torch.bool)   # True = blocked
        h = self.core(self.src_pos(self.src_embed(src_ids)), self.tgt_pos(self.tgt_embed(tgt_ids)),
                      tgt_mask=causal, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                      memory_key_padding_mask=src_pad, tgt_is_causal=True)
        return self.generator(h)


def train_step_fn(model: nn.Module, src: Tensor, tgt: Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    model.train()

    def step() -> None:
        logits = model(src, tgt[:, :-1])                     # (batch, tgt_len - 1, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def attention_fns(d_model: int, n_heads: int, batch: int, seq: int, device: torch.device):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(d_model, n_heads, dropout=0.1, batch_first=True, device=device).train()
    ours = mha_from_torch(theirs).train()
    x = torch.randn(batch, seq, d_model, device=device, requires_grad=True)
    ids = padded_ids(torch.Generator().manual_seed(1), 100, batch, seq, device)
    mask_ours = (ids != PAD)[:, None, None, :]               # (batch, 1, 1, seq), True = may attend
    mask_theirs = ids == PAD                                 # (batch, seq), True = padding

    def run_ours() -> None:
        out, _ = ours(x, x, x, mask_ours, need_weights=False)
        out.sum().backward()

    def run_theirs() -> None:
        out, _ = theirs(x, x, x, key_padding_mask=mask_theirs, need_weights=False)
        out.sum().backward()
    return run_ours, run_theirs


def model_fns(cfg: dict, batch: int, src_len: int, tgt_len: int, device: torch.device):
    torch.manual_seed(0)
    ours = make_model(**cfg).to(device)
    theirs = TorchLayers(ours).to(device)
    gen = torch.Generator().manual_seed(1)
    src = padded_ids(gen, cfg["src_vocab"], batch, src_len, device)
    tgt = padded_ids(gen, cfg["tgt_vocab"], batch, tgt_len + 1, device)
    return train_step_fn(ours, src, tgt), train_step_fn(theirs, src, tgt)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def compare(ours: Callable[[], None], theirs: Callable[[], None], repeats: int, warmup: int,
            device: torch.device) -> dict:
    """Interleave the two (alternating which goes first) and summarise the times in ms."""
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for r in range(repeats):
        pair = [(t_ours, ours), (t_theirs, theirs)]
        for times, fn in (pair if r % 2 == 0 else pair[::-1]):
            times.append(timed(fn, device))
    ms = lambda ts: 1000 * statistics.median(ts)  # noqa: E731
    return {"ours_ms": ms(t_ours), "torch_ms": ms(t_theirs), "ratio": ms(t_ours) / ms(t_theirs),
            "ratio_median_of_pairs": statistics.median(a / b for a, b in zip(t_ours, t_theirs)),
            "ratio_of_minima": min(t_ours) / min(t_theirs),
            "ours_min_ms": 1000 * min(t_ours), "torch_min_ms": 1000 * min(t_theirs), "repeats": repeats}


def cases(quick: bool) -> list[dict]:
    small = dict(src_vocab=4000, tgt_vocab=4000, n_layers=3, d_model=256, n_heads=4, d_ff=512,
                 dropout=0.1, share_embeddings=True)
    base = dict(src_vocab=37000, tgt_vocab=37000, n_layers=6, d_model=512, n_heads=8, d_ff=2048,
                dropout=0.1, share_embeddings=True)
    if quick:
        return [
            dict(name="mha", what="MultiHeadAttention fwd+bwd, d512 h8, batch 16 x 64",
                 make=lambda d: attention_fns(512, 8, 16, 64, d), repeats_scale=1.0),
            dict(name="small", what="train step, d256 3+3 ff512, batch 16 x 32",
                 make=lambda d: model_fns(small, 16, 32, 32, d), repeats_scale=1.0),
        ]
    return [
        dict(name="mha", what="MultiHeadAttention fwd+bwd, d512 h8, batch 32 x 128 (4096 tokens)",
             make=lambda d: attention_fns(512, 8, 32, 128, d), repeats_scale=2.0),
        dict(name="small", what="train step, d256 3+3 ff512 vocab 4000, batch 64 x 64 (4096 + 4096 tokens)",
             make=lambda d: model_fns(small, 64, 64, 64, d), repeats_scale=1.0),
        dict(name="base", what="train step, d512 6+6 ff2048 vocab 37000 (65M), batch 16 x 32 (512 + 512 tokens)",
             make=lambda d: model_fns(base, 16, 32, 32, d), repeats_scale=0.5),
    ]


CASE_NAMES = ("mha", "small", "base")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: an unknown --only case or a bad count stops before any timing
    (and before the committed results could be overwritten with an empty list)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed pairs per case (base gets half)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed pairs first")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats: a smoke test")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--only", nargs="+", choices=CASE_NAMES, help="run only these cases (mha, small, base)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "speed.json",
                        help="the report (default benchmarks/speed.json of this checkout)")
    parser.add_argument("--force", action="store_true", help="replace a report that is already there")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    if args.quick and args.only and "base" in args.only:
        parser.error("--only base: --quick has no 'base' case (it runs mha and small); drop --quick")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is visible")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; give a file name such as {args.out / 'speed.json'}")
    if args.out.exists() and not args.force:
        parser.error(f"--out {args.out} already exists (the committed figures or an earlier run); "
                     "pass --force to replace it, or --out elsewhere")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    check_writable(args.out, "--out file")                # fail now, not after the timings
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 3 if args.quick else args.repeats

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "cpu": cpu_model(), "threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "quick": args.quick,
           "load_average_1min_at_start": load_average()}
    print(f"torch {env['torch']}, {env['threads']} threads, {env['device']} ({env['gpu'] or env['cpu']})")
    print(f"{'case':<6} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} {'pairs':>6} {'minima':>6}  what")
    results = []
    for case in cases(args.quick):
        if args.only and case["name"] not in args.only:
            continue
        ours, theirs = case["make"](device)
        n = max(3, round(repeats * case["repeats_scale"])) if not args.quick else repeats
        r = compare(ours, theirs, n, args.warmup, device)
        r.update(name=case["name"], what=case["what"])
        results.append(r)
        print(f"{r['name']:<6} {r['ours_ms']:9.1f} {r['torch_ms']:9.1f} {r['ratio']:6.3f} "
              f"{r['ratio_median_of_pairs']:6.3f} {r['ratio_of_minima']:6.3f}  {r['what']}")
    print("ratio = median(ours) / median(torch); pairs = median of the per-repeat ratios; "
          "minima = min(ours) / min(torch); target <= 1.10")
    env["load_average_1min_at_end"] = load_average()   # other jobs on the machine make timings noisy
    report = {"environment": env, "results": results, "target_ratio": 1.1}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


if __name__ == "__main__":
    main()
