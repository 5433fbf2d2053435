"""Learning-rate schedules, one home for all of them: the paper's warm-up then ``∝ 1/√step``
(:func:`warmup_schedule`, notebook 05), warm-up then a cosine to 0 (:func:`warmup_then_cosine`, notebook
04's date model), and warm-up times a cosine over the run's steps or minutes (:class:`WarmupCosine`,
notebook 08's GPT). The first two are ``LambdaLR`` factors: the optimiser's ``lr`` times ``f(step)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from utils import checks

__all__ = ["WarmupInverseSqrt", "warmup_schedule", "warmup_then_cosine", "warmup_cosine_lr", "WarmupCosine"]


@dataclass
class WarmupInverseSqrt:
    """The paper's learning rate (section 5.3) as a ``LambdaLR`` factor of a base lr of 1:
    ``lr(s) = scale · d_model^-0.5 · min(s^-0.5, s · warmup^-1.5)`` for optimiser step ``s = 1, 2, …``
    (the peak at ``s = warmup``). ``cooldown > 0`` (not in the paper) scales the last ``cooldown`` of
    ``total`` steps by a factor falling linearly to 0. A dataclass, so ``state_dict`` stores its numbers."""

    d_model: int
    warmup: int
    scale: float = 1.0
    total: int = 0
    cooldown: int = 0

    def __call__(self, step: int) -> float:  # LambdaLR passes 0 before the first optimiser step
        s = step + 1
        lr = self.scale * self.d_model ** -0.5 * min(s ** -0.5, s * self.warmup ** -1.5)
        if self.cooldown > 0:
            lr *= min(1.0, max(0.0, (self.total - step) / self.cooldown))
        return lr


def warmup_schedule(optimizer: torch.optim.Optimizer, d_model: int, warmup: int,
                    scale: float = 1.0, *, total: int = 0, cooldown: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`WarmupInverseSqrt`; call ``scheduler.step()`` after each ``optimizer.step()``.

    Raises:
        ValueError: ``warmup`` or ``d_model`` below 1, a ``cooldown`` below 0 or above ``total - warmup``, or
            an optimiser whose lr is not 1 (the schedule *is* the learning rate: :func:`make_optimizer`).
    """
    checks.instance("optimizer", optimizer, torch.optim.Optimizer, "a torch.optim.Optimizer", hint="make_optimizer(model)")
    d_model, warmup = checks.positive_int("d_model", d_model), checks.positive_int("warmup", warmup)
    scale = checks.number("scale", scale, above=0, hint="it multiplies the paper's learning rate")
    total, cooldown = checks.integer("total", total, at_least=0), checks.integer("cooldown", cooldown, at_least=0)
    if cooldown > 0 and cooldown > total - warmup:
        raise ValueError(f"cooldown={cooldown} must fit after the warm-up: at most total - warmup = {total - warmup} "
                         "(give total, the run's number of optimiser steps)")
    lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    if any(lr != 1.0 for lr in lrs):
        raise ValueError(f"the optimiser has lr={lrs}, but the schedule gives the whole learning rate; "
                         "create it with lr=1.0 (make_optimizer does) and use `scale` to change the rate")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupInverseSqrt(d_model, warmup, scale, total, cooldown))


def warmup_then_cosine(step: int, warmup: int, steps: int) -> float:
    """The date model's factor on the learning rate at ``step`` (notebook 04): linear warm-up over
    ``warmup`` steps, then a cosine to 0 over the remaining ``steps - warmup``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


def warmup_cosine_lr(step: int, progress: float, lr: float, warmup: int, min_lr: float) -> float:
    """The GPT's learning rate (notebook 08): linear warm-up over ``warmup`` steps times a cosine from
    ``lr`` down to ``min_lr``; ``progress`` in [0, 1] is the fraction of the steps or minutes done."""
    cosine = min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return cosine * min(1.0, (step + 1) / warmup) if warmup > 0 else cosine


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """:func:`warmup_cosine_lr` as a scheduler that sets every group's learning rate (not a factor).
    Progress is steps done / ``total_steps`` or elapsed seconds / ``total_seconds``, whichever is
    further along; the elapsed time rides in ``state_dict``, so a resumed run continues the cosine.
    Raises ValueError for neither total given, a non-positive ``lr`` or total, a negative ``warmup``, or
    ``min_lr`` outside ``[0, lr]``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, warmup: int, min_lr: float | None = None, *,
                 total_steps: int | None = None, total_seconds: float | None = None):
        if total_steps is None and total_seconds is None:
            raise ValueError("give total_steps, total_seconds or both: the cosine needs to know where the run ends")
        lr = checks.number("lr", lr, above=0)
        min_lr = checks.number("min_lr", lr / 10 if min_lr is None else min_lr, at_least=0, at_most=lr,
                               hint="the cosine goes down from lr to min_lr")
        self.lr, self.warmup, self.min_lr = lr, checks.integer("warmup", warmup, at_least=0), min_lr
        self.total_steps = checks.positive_int("total_steps", total_steps, allow_none=True)
        self.total_seconds = checks.number("total_seconds", total_seconds, above=0, allow_none=True)
        self.seconds, self._t0 = 0.0, time.perf_counter()        # seconds: elapsed before this process
        super().__init__(optimizer)

    def progress(self) -> float:
        """The fraction of the run done, in [0, 1] once the run is over."""
        done = self.last_epoch / self.total_steps if self.total_steps else 0.0
        if self.total_seconds:
            done = max(done, (self.seconds + time.perf_counter() - self._t0) / self.total_seconds)
        return done

    def get_lr(self) -> list[float]:
        value = warmup_cosine_lr(self.last_epoch, self.progress(), self.lr, self.warmup, self.min_lr)
        return [value for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        state = {k: v for k, v in super().state_dict().items() if k != "_t0"}
        state["seconds"] = self.seconds + time.perf_counter() - self._t0
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue a saved run: the same ``lr``, ``warmup`` and ``min_lr`` (else ``ValueError``); its length
        (``total_steps``, ``total_seconds``) may change."""
        changed = [f"{k}: {state_dict[k]!r} saved, {getattr(self, k)!r} now" for k in ("lr", "warmup", "min_lr")
                   if k in state_dict and state_dict[k] != getattr(self, k)]
        if changed:
            raise ValueError(f"the checkpoint was trained with another schedule ({'; '.join(changed)}); resume "
                             "with the same settings")
        length = {"total_steps": self.total_steps, "total_seconds": self.total_seconds}
        super().load_state_dict(state_dict)
        self.__dict__.update(length, _t0=time.perf_counter())
