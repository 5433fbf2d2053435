"""Argument checks: one line in a public function, one message that names the argument, what it expects
and what it got, e.g. ``d_model = checks.positive_int("d_model", d_model)``. NumPy scalars pass where Python
numbers do; ``True`` is never an int. The wrong kind of value raises :class:`ArgumentTypeError` (a
``TypeError`` that is also a ``ValueError``); a value out of range raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (caught by ``except TypeError`` and by ``except ValueError``)."""


def _got(value: Any) -> str:
    return repr(value) if isinstance(value, (int, float, str, type(None), np.number)) else type(value).__name__


def _fail(name: str, expects: str, value: Any, hint: str = "", kind: type[Exception] = ValueError) -> None:
    raise kind(f"{name} must be {expects}, got {_got(value)}{f'; {hint}' if hint else ''}")


def integer(name: str, value: Any, *, at_least: int | None = None, below: int | None = None, hint: str = "",
            allow_none: bool = False) -> int | None:
    """An int (or NumPy integer, never a bool) with ``at_least <= value < below``; ``None`` if ``allow_none``."""
    if value is None and allow_none:
        return None
    ends = [f"{o} {b}" for o, b in ((">=", at_least), ("<", below)) if b is not None]
    expects = ("a positive integer" if ends == [">= 1"] else f"an integer in {at_least} .. {below - 1}"
               if len(ends) == 2 else " ".join(["an integer", *ends])) + (" or None" if allow_none else "")
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        _fail(name, expects, value, hint, ArgumentTypeError)
    if (at_least is not None and value < at_least) or (below is not None and value >= below):
        _fail(name, expects, value, hint)
    return int(value)


def positive_int(name: str, value: Any, *, hint: str = "", allow_none: bool = False) -> int | None:
    """An int >= 1: a size, a number of steps; ``integer(name, value, at_least=0)`` allows 0."""
    return integer(name, value, at_least=1, hint=hint, allow_none=allow_none)


def number(name: str, value: Any, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, at_most: float | None = None, hint: str = "", allow_none: bool = False,
           expects: str = "") -> float | None:
    """A finite number (int, float or NumPy scalar; not a bool, NaN or inf) within the bounds given, e.g.
    ``number("lr", lr, above=0)``; ``None`` if ``allow_none``. ``expects`` rewords the message."""
    if value is None and allow_none:
        return None
    bounds = [(op, b) for op, b in ((">", above), (">=", at_least), ("<", below), ("<=", at_most)) if b is not None]
    if not expects:
        expects = ("positive (a finite number > 0)" if bounds == [(">", 0)] else ">= 0 (a finite number)"
                   if bounds == [(">=", 0)] else "a finite number " + " and ".join(f"{o} {b:g}" for o, b in bounds))
        expects += ", or None" if allow_none else ""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        _fail(name, expects, value, hint, ArgumentTypeError)
    v = float(value)
    if not (math.isfinite(v) and all({">": v > b, ">=": v >= b, "<": v < b, "<=": v <= b}[o] for o, b in bounds)):
        _fail(name, expects, value, hint)
    return v


def probability(name: str, p: Any, *, hint: str = "use 0.0 to switch it off") -> float:
    """A dropout rate (or Adam's β): a number in ``[0, 1)``; 1 would drop everything."""
    return number(name, p, at_least=0, below=1, hint=hint, expects="a probability in [0, 1)")


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of a few allowed values, e.g. ``one_of("reduction", reduction, ("mean", "sum"))``."""
    if value not in choices:
        names = [repr(c) for c in choices]
        _fail(name, " or ".join(names) if len(names) <= 2 else f"one of {', '.join(names)}", value)
    return value


def instance(name: str, value: Any, cls: type | tuple[type, ...], what: str, *, hint: str = "") -> Any:
    """An instance of ``cls``, named ``what`` in the message, e.g. ``instance("flag", v, bool, "True or False")``."""
    if not isinstance(value, cls):
        _fail(name, what, value, hint, ArgumentTypeError)
    return value


def _refuse_non_integer(name: str, x: Tensor | np.ndarray) -> None:
    numpy = isinstance(x, np.ndarray)                        # NumPy's dtype kinds: i signed, u unsigned integers
    if x.dtype.kind not in "iu" if numpy else x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must hold integer token ids (integers such as torch.long; a float or bool "
                                f"id would be cut), got {x.dtype}; use {name}{'.astype(int)' if numpy else '.long()'}")


def tensor(name: str, x: Any, *, ndim: int | tuple[int, ...] | None = None, dtype: str | None = None,
           shape: str = "") -> Tensor:
    """A ``torch.Tensor`` with ``ndim`` dimensions (or one of a tuple), of dtype ``"float"`` or ``"int"`` (integer
    ids); ``shape`` names the dimensions for the message, e.g. ``"(batch, seq)"``."""
    if not isinstance(x, Tensor):
        _fail(name, "a torch.Tensor", x, f"wrap it: torch.as_tensor({name})", ArgumentTypeError)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if dims is not None and x.dim() not in dims:
        raise ValueError(f"{name} must be {shape or ' or '.join(map(str, dims)) + '-D'}, got shape {tuple(x.shape)}")
    if dtype == "int":
        _refuse_non_integer(name, x)
    if dtype == "float" and not x.dtype.is_floating_point:
        raise ArgumentTypeError(f"{name} must be a floating-point tensor, got {x.dtype}; use {name}.float()")
    return x


def int_ids(name: str, ids: Any, vocab_size: int | None = None) -> Any:
    """Token ids: an integer tensor or array (returned as it is) or a sequence of ints (returned as a list).
    Floats and bools are refused; with ``vocab_size``, every id must lie in ``0 .. vocab_size - 1``."""
    if isinstance(ids, (Tensor, np.ndarray)):
        _refuse_non_integer(name, ids)
    else:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            _fail(name, "a sequence of integer token ids", ids, "encode the text first", ArgumentTypeError)
        ids = [v.item() if isinstance(v, (Tensor, np.ndarray)) and v.ndim == 0 else v for v in ids]  # 0-d: its number
        bad = next((i for i, v in enumerate(ids) if not isinstance(v, (int, np.integer)) or isinstance(v, bool)), None)
        if bad is not None:
            raise ArgumentTypeError(f"{name}[{bad}] is {_got(ids[bad])}, not an integer token id; token ids are "
                                    "integers (argmax gives integers), never floats or bools")
        ids = [int(v) for v in ids]
    flat = torch.as_tensor(ids).reshape(-1) if vocab_size is not None else ()
    if len(flat) and not 0 <= int(flat.min()) <= int(flat.max()) < vocab_size:
        raise ValueError(f"{name} hold ids {int(flat.min())} .. {int(flat.max())}, outside the vocabulary "
                         f"0 .. {vocab_size - 1}; encode with the tokenizer the model was built for")
    return ids


def strings(name: str, texts: Any, *, hint: str = "every item must be a sentence") -> list[str]:
    """A list of sentences. A single ``str`` is refused: it would be read character by character."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        got = f"a single {type(texts).__name__} ({texts[:30]!r}...)" if isinstance(texts, (str, bytes)) else _got(texts)
        raise ArgumentTypeError(f"{name} must be a list of sentences, got {got}; wrap it in a list: [{name}]")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ArgumentTypeError(f"{name}[{bad}] is a {type(texts[bad]).__name__}, not a str; {hint}")
    return texts


def heads_divide(d_model: int, n_heads: int) -> None:
    """``n_heads`` must divide ``d_model`` so that every head gets ``d_model // n_heads`` features."""
    if d_model % n_heads:
        divisors = ", ".join(str(d) for d in range(1, min(d_model, 16) + 1) if d_model % d == 0)
        raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}; pick a divisor such as {divisors}")
