"""The short training runs of notebooks 04 (the date model) and 05 (the short translator), in one place,
so that notebook 06, finding no checkpoint, trains exactly the same model: same seeds, same order of
random draws, the same weights. ``tests/test_short_runs.py`` binds each run to its notebook.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from utils.batching import TokenBatches, pad_sequences
from utils.runtime import set_seed
from utils.model import Transformer, make_model
from utils.tokenize import PAD_ID, BPETokenizer
from utils.schedules import warmup_schedule, warmup_then_cosine
from utils.train import make_optimizer, train

# ---------------------------------------------------------------- dates (notebook 04)
#: Notebook 04's date run: 2 + 2 layers, d_model 64, Adam 3e-3, warm-up then cosine decay; about 25 s on 2 cores.
DATE_RUN = dict(steps=600, warmup=80, batch=32, lr=3e-3)


def date_batch(pairs: Sequence[tuple[str, str]], tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids ``(n, S)`` (no specials) and target ids ``(n, T)`` (``<bos> … <eos>``), padded with ``<pad>``,
    by the ``CharTokenizer`` fitted on the training pairs (notebook 04's ``make_batch``)."""
    src = pad_sequences([tokenizer.encode(s) for s, _ in pairs], PAD_ID)                        # (n, S)
    tgt = pad_sequences([tokenizer.encode(t, add_special=True) for _, t in pairs], PAD_ID)      # (n, T)
    return src, tgt


def train_date_model(pairs: Sequence[tuple[str, str]], tokenizer: Any, *, steps: int = DATE_RUN["steps"],
                     warmup: int = DATE_RUN["warmup"], batch: int = DATE_RUN["batch"], lr: float = DATE_RUN["lr"],
                     progress: bool = False) -> Transformer:
    """Notebook 04, section 9: train its ``small_model`` (2 + 2 pre-LN layers, d_model 64, 4 heads, d_ff 256,
    no dropout) on ``pairs`` with batches drawn from a generator seeded 0; returned in evaluation mode.
    Raises ValueError for ``warmup`` not in ``[1, steps)`` or an empty ``pairs``.
    """
    if not 1 <= warmup < steps:
        raise ValueError(f"warmup must be in [1, steps={steps}), got {warmup}")
    if len(pairs) == 0:
        raise ValueError("pairs is empty: pass the training pairs, e.g. utils.synthetic.date_pairs(20000, seed=1)")
    set_seed(0)
    model = make_model(tokenizer.vocab_size, tokenizer.vocab_size, n_layers=2, d_model=64, n_heads=4, d_ff=256,
                       dropout=0.0, norm_first=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_then_cosine(s, warmup, steps))
    src_all, tgt_all = date_batch(pairs, tokenizer)                                             # (n, S), (n, T)
    gen = torch.Generator().manual_seed(0)
    for _ in tqdm(range(steps), desc="dates", mininterval=2.0, disable=not progress):
        idx = torch.randint(0, len(pairs), (batch,), generator=gen)
        src, tgt = src_all[idx], tgt_all[idx]
        src = src[:, : int((src != PAD_ID).sum(1).max())]                                       # drop all-padding columns
        logits = model(src, tgt[:, :-1])                                                        # (batch, T-1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


# ---------------------------------------------------------------- Multi30k (notebook 05)
#: Notebook 05's short run (its default on a CPU): about two minutes on a 2-core CPU.
SHORT_RUN = dict(vocab=2000, d_model=128, n_layers=2, n_heads=4, d_ff=256, dropout=0.0, max_tokens=600,
                 warmup=300, steps=1200)


def make_translator(vocab_size: int, run: dict = SHORT_RUN, dropout: float | None = None) -> Transformer:
    """Notebook 05's ``make_run_model``: a pre-LN Transformer with shared embeddings, sized by ``run``
    (``d_model``, ``n_layers``, ``n_heads``, ``d_ff``, ``dropout``; ``dropout`` overrides the run's)."""
    return make_model(vocab_size, vocab_size, n_layers=run["n_layers"], d_model=run["d_model"],
                      n_heads=run["n_heads"], d_ff=run["d_ff"], dropout=run["dropout"] if dropout is None else dropout,
                      norm_first=True, share_embeddings=True)


def train_short_translator(ds: Any, device: torch.device | str = "cpu", *, src: str = "de", tgt: str = "en",
                           steps: int | None = None, progress: bool = False) -> tuple[Transformer, BPETokenizer]:
    """Notebook 05's short run in one call (05 trains it in two halves with a resume between, the same
    weights): joint BPE on ``ds`` (:func:`utils.data.load_multi30k`'s ``train`` split), token-budget
    batches, ``SHORT_RUN["steps"]`` (or ``steps``) steps of :func:`utils.train.train` on ``device`` (bf16 on
    CUDA). Returns ``(model, tokenizer)``, the model in evaluation mode.
    """
    texts = list(ds["train"][src]) + list(ds["train"][tgt])
    tok = BPETokenizer.train(texts, vocab_size=SHORT_RUN["vocab"])
    data = TokenBatches(tok.encode_batch(ds["train"][src], add_special=True),
                        tok.encode_batch(ds["train"][tgt], add_special=True), max_tokens=SHORT_RUN["max_tokens"],
                        seed=0)
    device = torch.device(device)
    set_seed(0)
    model = make_translator(tok.vocab_size).to(device)
    opt = make_optimizer(model)
    train(model, data, opt, warmup_schedule(opt, SHORT_RUN["d_model"], SHORT_RUN["warmup"]),
          max_steps=SHORT_RUN["steps"] if steps is None else steps, device=device, bf16=device.type == "cuda",
          progress=progress)
    return model.eval(), tok
