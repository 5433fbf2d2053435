"""Training (notebook 05): the loss, the optimiser, THE training loop (the translator's and the GPT's),
resumable checkpoints. The loop is plain PyTorch: forward and loss, backward, (clip), step the
optimiser and the schedule, log into ``state.history``; validate each epoch or every ``eval_every`` steps::

    optimizer = make_optimizer(model)                               # Adam(β=(0.9, 0.98), ε=1e-9), lr=1
    scheduler = warmup_schedule(optimizer, d_model=256, warmup=400) # utils.schedules: the paper's
    state = train(model, train_data, optimizer, scheduler, valid=valid_data, max_steps=2000,
                  checkpoint_path="checkpoints/run.pt", checkpoint_every=500, tokenizer=tok)
    state = resume("checkpoints/run.pt", model, optimizer, scheduler)   # later, in a fresh process

**Resuming is exact on the CPU**: a checkpoint holds the weights, optimiser, scheduler, the
:class:`TrainState` and every random state, and :class:`utils.batching.TokenBatches` rebuilds any
epoch from its seed, so N steps straight or N/2 + resume + N/2 give the same weights bit for bit.
Under ``torchrun`` pass the DDP-wrapped model: only rank 0 shows progress and writes checkpoints.
"""

from __future__ import annotations

import functools
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from utils import checks
from utils.batching import Batch, TokenBatches
from utils.checkpoint import check_writable, load_checkpoint, save_checkpoint
from utils.runtime import get_device

__all__ = ["label_smoothed_cross_entropy", "translation_loss", "make_optimizer", "evaluate", "TrainState", "train",
           "save_training_checkpoint", "resume", "get_rng_state", "set_rng_state"]


def label_smoothed_cross_entropy(logits: Tensor, target: Tensor, epsilon: float = 0.1, pad_id: int | None = 0,
                                 reduction: str = "mean") -> Tensor:
    """Cross-entropy against the smoothed target ``q = (1 - ε)·onehot(y) + ε/V`` (section 5.4).

    ``-Σ_v q_v log p_v = (1 - ε)·(-log p_y) + ε·mean_v(-log p_v)``, averaged over the positions whose
    target is not ``pad_id``. Equal to ``F.cross_entropy(..., label_smoothing=ε, ignore_index=pad_id)``,
    except that a batch with no real token gives 0 (PyTorch gives NaN): padding never poisons a step.
    ``logits``: ``(..., V)``; ``target``: ``(...)`` ids; ``reduction``: ``"mean"`` (per real token) or ``"sum"``.
    Raises ``ValueError`` for shapes that do not match, ε outside [0, 1], or an unknown reduction."""
    checks.tensor("logits", logits, dtype="float")
    if checks.tensor("target", target, dtype="int").shape != logits.shape[:-1]:
        raise ValueError(f"logits {tuple(logits.shape)} must be target {tuple(target.shape)} + (vocab,)")
    checks.number("epsilon", epsilon, at_least=0, at_most=1, hint="the label smoothing ε")
    checks.one_of("reduction", reduction, ("mean", "sum"))
    logp = F.log_softmax(logits.float(), dim=-1)                       # (..., V)
    real = target != pad_id if pad_id is not None else torch.ones_like(target, dtype=torch.bool)
    nll = -logp.gather(-1, target.masked_fill(~real, 0).unsqueeze(-1)).squeeze(-1)   # (...) -log p_y
    uniform = -logp.mean(dim=-1)                                       # (...) mean_v -log p_v
    total = ((1.0 - epsilon) * nll + epsilon * uniform).masked_fill(~real, 0.0).sum()   # over the real tokens
    return total if reduction == "sum" else total / real.sum().clamp(min=1)


def make_optimizer(model: nn.Module, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-9) -> torch.optim.Adam:
    """Adam with the paper's β and ε and ``lr=1``, for :func:`utils.schedules.warmup_schedule` to scale. Raises
    ``TypeError`` if ``model`` is not an ``nn.Module``, ``ValueError`` for β outside [0, 1) or ε not positive."""
    checks.instance("model", model, nn.Module, "an nn.Module", hint="pass the model, not its parameters")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    checks.number("eps", eps, above=0)
    return torch.optim.Adam(model.parameters(), lr=1.0, betas=betas, eps=eps)


# -- evaluation ---------------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def evaluate(model: nn.Module, data: TokenBatches) -> dict[str, float]:
    """Unsmoothed loss per target token, perplexity ``exp(loss)`` and next-token accuracy (teacher
    forcing) over ``data``'s epoch-0 batches, in eval mode. Returns ``{"loss", "ppl", "acc", "tokens"}``.
    Raises TypeError when ``data`` is not a :class:`~utils.batching.TokenBatches`.
    """
    checks.instance("data", data, TokenBatches, "a utils.batching.TokenBatches",
                    hint="wrap encoded sentences in TokenBatches(src_ids, tgt_ids, max_tokens=...)")
    core = _unwrap(model)
    device = next(core.parameters()).device
    was_training = core.training
    core.eval()
    loss_sum, correct, tokens = 0.0, 0, 0
    try:
        for batch in data:
            batch = batch.to(device)
            logits = core(batch.src, batch.tgt_in)                      # (batch, T, V)
            real = batch.tgt_out != batch.pad_id
            loss_sum += float(label_smoothed_cross_entropy(logits, batch.tgt_out, 0.0, batch.pad_id, "sum"))
            correct += int(((logits.argmax(-1) == batch.tgt_out) & real).sum())
            tokens += int(real.sum())
    finally:
        core.train(was_training)
    loss = loss_sum / max(tokens, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "acc": correct / max(tokens, 1), "tokens": tokens}


# -- random states, as plain data ---------------------------------------------------------------------
def get_rng_state() -> dict[str, Any]:
    """Python, NumPy and PyTorch (CPU and CUDA) random states as tensors and lists (``weights_only``-safe)."""
    version, py_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(py_state), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the loop -------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """Where training stands: ``step`` optimiser steps done, in ``epoch`` after ``batch_in_epoch`` of its
    batches; ``seconds`` of training and ``tokens`` (target tokens, this process) so far; ``history`` one
    ``{"step", "loss", "lr", "tokens"}`` per step; ``valid`` one :func:`evaluate` dict (+ step, epoch) per check."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    tokens: int = 0
    history: list[dict] = field(default_factory=list)
    valid: list[dict] = field(default_factory=list)


def translation_loss(model: nn.Module, batch: Batch, smoothing: float = 0.1) -> Tensor:
    """:func:`train`'s default ``loss_fn``: :func:`label_smoothed_cross_entropy` of the translator's logits."""
    return label_smoothed_cross_entropy(model(batch.src, batch.tgt_in), batch.tgt_out, smoothing, batch.pad_id)


def _train_step(model: nn.Module, batch: Any, optimizer, scheduler, loss_fn: Callable, clip_norm: float | None,
                bf16: bool, device_type: str, phase: dict) -> float:
    """One update; a non-finite loss or gradient raises *before* anything changes, so the weights stay
    finite. ``phase["updating"]`` is set once the weights start to change."""
    model.train()
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the training loss is {loss.item()}; the weights were not updated with "
                                 "it. Lower the learning rate, clip gradients (clip_norm) or check the data")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm is not None else math.inf)
    if not torch.isfinite(norm):
        raise FloatingPointError(f"a gradient is {norm.item()} while the loss is {loss.item():.4g}; the weights were "
                                 "not updated with it. Lower the learning rate or check the model for a 0/0")
    phase["updating"] = True
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def train(model: nn.Module, data: TokenBatches, optimizer: torch.optim.Optimizer, scheduler=None, *,
          valid: TokenBatches | None = None, state: TrainState | None = None, smoothing: float = 0.1,
          loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
          max_steps: int | None = None, max_epochs: int | None = None, max_minutes: float | None = None,
          eval_every: int | None = None, clip_norm: float | None = None, bf16: bool = False,
          device: str | torch.device | None = None, checkpoint_path: str | Path | None = None,
          checkpoint_every: int | None = None, tokenizer=None, checkpoint_extra: dict | None = None,
          progress: bool = True) -> TrainState:
    """Train until ``max_steps`` (total, counting a resumed ``state``), ``max_epochs`` or ``max_minutes``
    (of this call) is reached, whichever comes first; returns the updated :class:`TrainState`.

    Args:
        model: a ``utils.model.Transformer`` (DDP-wrapped or not), or any model with a ``config`` dict
            and its ``loss_fn`` (notebook 08's GPT).
        data: a :class:`~utils.batching.TokenBatches` or a source like it: ``batches(epoch)`` (the same for
            the same epoch, so a resume draws what the uninterrupted run did), ``collate(indices)`` (a batch
            with ``.to(device)``, ``.n_tokens``) and ``len`` (the GPT's ``RandomWindows``).
        loss_fn: ``loss_fn(model, batch)`` → the loss (default :func:`translation_loss` with ``smoothing``, ε).
        clip_norm: clip the gradient's global norm to this; ``bf16``: bfloat16 autocast (CUDA only).
        checkpoint_path: write :func:`save_training_checkpoint` there every ``checkpoint_every`` steps, at
            the end, and on an error (a NaN loss, Ctrl-C), with ``tokenizer`` and ``checkpoint_extra``.

    Raises:
        ValueError: no stopping rule, a limit, ``eval_every`` or ``checkpoint_every`` that is not a positive number,
            ``smoothing`` outside [0, 1], a non-positive ``clip_norm``, ``checkpoint_every`` without ``checkpoint_path``,
            bf16 asked for on a CPU, or an unknown ``device`` (RuntimeError: a GPU that is not visible).
        TypeError: ``data`` not a batch source, ``valid`` not a ``TokenBatches``, ``state`` not a :class:`TrainState`,
            ``optimizer`` not an optimiser, ``loss_fn`` not callable, a ``tokenizer`` without ``to_dict``.
        OSError: ``checkpoint_path`` cannot be written (checked before the first step).
        FloatingPointError: the loss or a gradient became NaN or infinite (the checkpoint holds the last
            finite weights). A Ctrl-C inside a step saves the last complete step and the random state the
            interrupted step began from, so a resume repeats that step exactly.
    """
    if max_steps is None and max_epochs is None and max_minutes is None:
        raise ValueError("give max_steps, max_epochs or max_minutes, or training never stops")
    for name, v in (("max_steps", max_steps), ("max_epochs", max_epochs), ("eval_every", eval_every),
                    ("checkpoint_every", checkpoint_every)):
        checks.positive_int(name, v, allow_none=True)
    checks.number("max_minutes", max_minutes, at_least=0, allow_none=True)
    checks.number("clip_norm", clip_norm, above=0, allow_none=True)
    checks.number("smoothing", smoothing, at_least=0, at_most=1, hint="the label smoothing ε")
    if checkpoint_every is not None and checkpoint_path is None:
        raise ValueError("checkpoint_every needs checkpoint_path: where should the checkpoints go?")
    if not all(callable(getattr(data, m, None)) for m in ("batches", "collate", "__len__")):
        raise TypeError(f"data must be a utils.batching.TokenBatches (or a source with batches(epoch), collate(indices) "
                        f"and len), got {type(data).__name__}")
    if valid is not None:
        checks.instance("valid", valid, TokenBatches, "a utils.batching.TokenBatches")
    loss_fn = functools.partial(translation_loss, smoothing=smoothing) if loss_fn is None else loss_fn
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function loss_fn(model, batch) -> loss, got {type(loss_fn).__name__}")
    if state is not None:
        checks.instance("state", state, TrainState, "a TrainState", hint="what train or resume returned")
    checks.instance("optimizer", optimizer, torch.optim.Optimizer, "a torch.optim.Optimizer",
                    hint="make_optimizer(model)")
    device = get_device(device, name="device")                  # e.g. "cuda:1" under torchrun
    if bf16 and device.type != "cuda":
        raise ValueError("bf16 autocast is meant for GPUs here; on a CPU train in float32 (bf16=False)")
    model.to(device)
    state = state if state is not None else TrainState()
    distributed = dist.is_available() and dist.is_initialized()
    main = not distributed or dist.get_rank() == 0
    if checkpoint_path is not None and main:
        check_writable(checkpoint_path)                          # fail now, not after the first N steps
    if tokenizer is not None and not callable(getattr(tokenizer, "to_dict", None)):
        raise TypeError(f"tokenizer must be a utils.tokenize tokenizer (with to_dict), got {type(tokenizer).__name__}")
    t0, seconds0 = time.perf_counter(), state.seconds
    bar = tqdm(total=max_steps, initial=state.step, disable=not (progress and main), unit="step",
               mininterval=2.0, dynamic_ncols=True)

    def out_of_time() -> bool:  # under DDP every process must stop at the same step: rank 0 decides
        if max_minutes is None:
            return False
        late = time.perf_counter() - t0 >= 60 * max_minutes
        if distributed:
            flag = torch.tensor([float(late)], device=device if dist.get_backend() == "nccl" else "cpu")
            dist.broadcast(flag, src=0)
            late = bool(flag.item())
        return late

    def validate() -> None:
        if valid is not None:
            state.valid.append({"step": state.step, "epoch": state.epoch, **evaluate(model, valid)})
            bar.set_postfix(loss=f"{state.history[-1]['loss']:.3f}" if state.history else "-",
                            valid=f"{state.valid[-1]['loss']:.3f}")

    def save() -> None:
        if checkpoint_path is not None and main:
            save_training_checkpoint(checkpoint_path, model, optimizer, scheduler, state, tokenizer,
                                     **(checkpoint_extra or {}))

    stop, saved_at, phase = False, None, None
    try:
        while not stop and (max_epochs is None or state.epoch < max_epochs):
            batches = data.batches(state.epoch)                  # the same on every run: (seed, epoch)
            while state.batch_in_epoch < len(batches):
                if (max_steps is not None and state.step >= max_steps) or out_of_time():
                    stop = True
                    break
                phase = {"rng": get_rng_state(), "updating": False}  # what a Ctrl-C inside the step restores
                batch = data.collate(batches[state.batch_in_epoch]).to(device)
                lr = optimizer.param_groups[0]["lr"]               # the rate this step uses
                loss = _train_step(model, batch, optimizer, scheduler, loss_fn, clip_norm, bf16, device.type, phase)
                state.step += 1
                state.batch_in_epoch += 1
                state.tokens += batch.n_tokens
                state.seconds = seconds0 + time.perf_counter() - t0
                state.history.append({"step": state.step, "loss": loss, "lr": lr, "tokens": batch.n_tokens})
                phase = None                                     # the step is complete
                bar.update(1)
                if state.step % 10 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                if eval_every is not None and state.step % eval_every == 0:
                    validate()
                if checkpoint_every is not None and state.step % checkpoint_every == 0:
                    save()
                    saved_at = state.step
            if not stop:                                         # the epoch ran to its end
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if eval_every is None:
                    validate()
        if valid is not None and (not state.valid or state.valid[-1]["step"] != state.step):
            validate()
    except BaseException:                  # keep what was trained, as it was after the last complete step
        if phase is not None and phase["updating"]:             # stopped inside the update: weights half-changed
            print(f"stopped inside the update of step {state.step + 1}: not saved, the last checkpoint stays as it was")
        elif saved_at != state.step:
            if phase is not None:                                # stopped before the update: as if the step
                set_rng_state(phase["rng"])                      # had not begun (its dropout draws undone)
            try:
                save()
            except Exception as err:                             # report the original error, not this one
                print(f"could not save the checkpoint after the error: {err}")
        bar.close()
        raise
    save()
    bar.close()
    return state


# -- checkpoints -----------------------------------------------------------------------------------------
def save_training_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                             state: TrainState, tokenizer=None, **extra: Any) -> Path:
    """Everything needed to resume, written atomically by :func:`utils.checkpoint.save_checkpoint`:
    weights, ``model.config``, optimiser, scheduler, :class:`TrainState`, RNG states, ``tokenizer.to_dict()``."""
    core = _unwrap(model)
    return save_checkpoint(path, core.state_dict(), core.config, optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict() if scheduler is not None else None,
                           train_state=asdict(state), rng=get_rng_state(),
                           tokenizer=tokenizer.to_dict() if tokenizer is not None else None, **extra)


def resume(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, scheduler=None,
           restore_rng: bool = True) -> TrainState:
    """Load a :func:`save_training_checkpoint` file into ``model`` (and the optimiser, scheduler and random
    generators) and return its :class:`TrainState`. Move the model to its device first.

    Raises ``utils.checkpoint.ConfigMismatchError`` for a file made for another ``model.config``;
    ``FileNotFoundError``, ``ValueError`` as :func:`utils.checkpoint.load_checkpoint`, and ``ValueError`` for a file
    without the training state (e.g. one written by ``model.save``) or an optimiser of another kind than the one
    whose state was saved (Adam's state does not fit SGD)."""
    core = _unwrap(model)
    if not hasattr(core, "config"):
        raise TypeError(f"model must carry its config (build it with make_model), got {type(core).__name__}")
    data = load_checkpoint(path, expected_config=core.config)
    needed = ["train_state"] + (["optimizer"] if optimizer is not None else []) + (["rng"] if restore_rng else [])
    missing = [k for k in needed if data.get(k) is None]
    if missing:
        raise ValueError(f"{path} holds no {', '.join(missing)}: it is not a training checkpoint (written by "
                         "train or save_training_checkpoint); load weights alone with Transformer.load")
    core.load_state_dict(data["model"])
    if optimizer is not None:
        stored = data["optimizer"]["param_groups"]
        if len(stored) != len(optimizer.param_groups) or any(
                set(a) - {"params", "initial_lr"} != set(b) - {"params", "initial_lr"}
                for a, b in zip(stored, optimizer.param_groups)):
            raise ValueError(f"{path} holds the state of another kind of optimiser (settings "
                             f"{sorted(set(stored[0]) - {'params', 'initial_lr'})}) than the "
                             f"{type(optimizer).__name__} given; resume with the same optimiser (make_optimizer)")
        optimizer.load_state_dict(data["optimizer"])
    if scheduler is not None and data.get("scheduler") is not None:
        scheduler.load_state_dict(data["scheduler"])
    if restore_rng:
        set_rng_state(data["rng"])
    return TrainState(**data["train_state"])
