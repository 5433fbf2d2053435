"""A Transformer language model in pure NumPy, forward *and* backward, with a hand-written Adam.

Notebook 07 derives every piece; this module and :mod:`utils.bonus.numpy_layers` (the pieces) hold
the finished versions. Each piece is a pair

* ``*_forward(inputs..., params) -> (out, cache)``: the output, plus what the backward pass needs;
* ``*_backward(dout, cache) -> grads``: given ``dL/dout``, the gradients of the inputs and params.

Simple pieces (:func:`linear_forward`, :func:`layer_norm_forward`, ...) take their parameters as
arrays and return gradients as a tuple; composite pieces (attention, feed-forward, block, model)
take a dict of parameters and return a dict of gradients with the same keys.

The model is **decoder-only with pre-LN blocks** (GPT-2's layout, not the paper's post-LN
encoder–decoder; notebook 03 compares the two orders)::

    x = E[ids] + P[:T]                                   (B, T, D)  learned or sinusoidal P
    each block:  x = x + CausalMHA(LN1(x));  x = x + FFN(LN2(x))    FFN = ReLU(x W1 + b1) W2 + b2
    logits = LN_f(x) W_out + b_out                       (B, T, V)
    loss = mean cross-entropy(logits, targets)

Weights are stored ``(in, out)`` so that ``y = x @ W + b`` (PyTorch's ``nn.Linear`` stores
``(out, in)``). :func:`torch_loss` is the same model written with PyTorch's built-ins, used to
check our gradients against ``torch.autograd``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The pieces live in numpy_layers; imported here too, so ``nt.linear_forward`` etc. work in notebook 07.
from utils import checks
from utils.bonus.numpy_layers import (  # noqa: F401
    Params, _prefixed, _sub, attention_backward, attention_forward, block_backward, block_forward,
    cross_entropy_backward, cross_entropy_forward, embedding_backward, embedding_forward, feed_forward_backward,
    feed_forward_forward, layer_norm_backward, layer_norm_forward, linear_backward, linear_forward, merge_heads,
    relu_backward, relu_forward, softmax_backward, softmax_forward, split_heads)
from utils.embeddings import sinusoidal_positional_encoding


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Sizes of the model. ``d_ff`` defaults to ``4 * d_model``; ``pos`` is ``"learned"`` (a
    trained table ``pos_emb``) or ``"sinusoidal"`` (the paper's fixed table, no parameter).

    Raises:
        ValueError: a non-positive size, ``n_heads`` not dividing ``d_model``, an unknown ``pos``,
            an odd ``d_model`` with sinusoidal positions, or ``eps <= 0``.
    """

    vocab_size: int
    context: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int | None = None
    pos: str = "learned"
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model if isinstance(self.d_model, int) else None)
        for name in ("vocab_size", "context", "d_model", "n_heads", "n_layers", "d_ff"):
            checks.positive_int(name, getattr(self, name))
        checks.heads_divide(self.d_model, self.n_heads)
        checks.one_of("pos", self.pos, ("learned", "sinusoidal"))
        if self.pos == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal positions pair a sine with a cosine, so d_model must be even; "
                             f"got d_model={self.d_model}")
        checks.number("eps", self.eps, above=0, hint="it keeps layer norm's division finite")


def param_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in the order the model uses them."""
    c = config
    shapes: dict[str, tuple[int, ...]] = {"tok_emb": (c.vocab_size, c.d_model)}
    if c.pos == "learned":
        shapes["pos_emb"] = (c.context, c.d_model)
    for i in range(c.n_layers):
        b = f"blocks.{i}."
        shapes |= {b + "ln1.gamma": (c.d_model,), b + "ln1.beta": (c.d_model,),
                   b + "attn.w_qkv": (c.d_model, 3 * c.d_model), b + "attn.b_qkv": (3 * c.d_model,),
                   b + "attn.w_o": (c.d_model, c.d_model), b + "attn.b_o": (c.d_model,),
                   b + "ln2.gamma": (c.d_model,), b + "ln2.beta": (c.d_model,),
                   b + "ffn.w1": (c.d_model, c.d_ff), b + "ffn.b1": (c.d_ff,),
                   b + "ffn.w2": (c.d_ff, c.d_model), b + "ffn.b2": (c.d_model,)}
    return shapes | {"ln_f.gamma": (c.d_model,), "ln_f.beta": (c.d_model,),
                     "head.w": (c.d_model, c.vocab_size), "head.b": (c.vocab_size,)}


def init_params(config: Config, seed: int = 0, dtype=np.float32) -> Params:
    """Random weights: ``N(0, 0.02²)`` for embeddings and matrices (GPT-2's choice; the two
    projections that write into the residual stream get ``0.02 / sqrt(2 n_layers)``), zeros for
    biases and ``beta``, ones for ``gamma``. Deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(("gamma",)):
            params[name] = np.ones(shape, dtype)
        elif len(shape) == 1:
            params[name] = np.zeros(shape, dtype)
        else:
            std = 0.02 / math.sqrt(2 * config.n_layers) if name.endswith(("w_o", "w2")) else 0.02
            params[name] = (rng.standard_normal(shape) * std).astype(dtype)
    return params


def check_params(params: Params, config: Config) -> None:
    """Raise ``ValueError`` naming the first missing, unexpected or wrongly shaped parameter."""
    shapes = param_shapes(config)
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        raise ValueError(f"params do not fit this Config: missing {missing[:3]}, unexpected {extra[:3]}; "
                         f"build them with init_params(config)")
    for k, shape in shapes.items():
        if params[k].shape != shape:
            raise ValueError(f"param {k!r} has shape {params[k].shape} but this Config needs {shape}")


# -- the whole model ----------------------------------------------------------------------------
def _check_ids(ids: np.ndarray, config: Config, name: str = "ids") -> None:
    ids = checks.int_ids(name, np.asarray(ids))
    if ids.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, seq), got {ids.shape}; for one sequence use ids[None]")
    if ids.shape[1] > config.context:
        raise ValueError(f"sequence length {ids.shape[1]} exceeds context={config.context}; "
                         f"crop to the last {config.context} tokens or build a Config with a larger context")
    if ids.size and (ids.min() < 0 or ids.max() >= config.vocab_size):
        raise ValueError(f"{name} hold values in [{ids.min()}, {ids.max()}] but the vocabulary has "
                         f"{config.vocab_size} tokens (valid ids 0 .. {config.vocab_size - 1})")


def model_forward(params: Params, ids: np.ndarray, config: Config):
    """ids ``(B, T)`` ints → logits ``(B, T, V)`` and the cache for :func:`model_backward`.

    Raises:
        ValueError / TypeError: ids that are not 2-D integers in the vocabulary, sequences longer
            than ``config.context``, or params that do not fit ``config``.
    """
    _check_ids(ids, config)
    check_params(params, config)
    t = ids.shape[1]
    x, c_emb = embedding_forward(ids, params["tok_emb"])           # (B, T, D)
    if config.pos == "learned":
        x = x + params["pos_emb"][:t]
    else:
        x = x + sinusoidal_positional_encoding(t, config.d_model, torch.float64).numpy().astype(x.dtype)
    c_blocks = []
    for i in range(config.n_layers):
        x, c = block_forward(x, _sub(params, f"blocks.{i}."), config.n_heads, config.eps)
        c_blocks.append(c)
    h, c_lnf = layer_norm_forward(x, params["ln_f.gamma"], params["ln_f.beta"], config.eps)
    logits, c_head = linear_forward(h, params["head.w"], params["head.b"])  # (B, T, V)
    return logits, (c_emb, t, c_blocks, c_lnf, c_head, config)


def model_backward(dlogits: np.ndarray, cache) -> Params:
    """dlogits ``(B, T, V)`` → gradients of every parameter (same keys as ``params``)."""
    c_emb, t, c_blocks, c_lnf, c_head, config = cache
    dh, dw, db = linear_backward(dlogits, c_head)
    dx, dg, dbeta = layer_norm_backward(dh, c_lnf)
    grads = {"head.w": dw, "head.b": db, "ln_f.gamma": dg, "ln_f.beta": dbeta}
    for i in reversed(range(config.n_layers)):
        dx, g = block_backward(dx, c_blocks[i])
        grads |= _prefixed(g, f"blocks.{i}.")
    if config.pos == "learned":
        dpos = np.zeros((config.context, config.d_model), dx.dtype)
        dpos[:t] = dx.sum(axis=0)                                  # every sequence shares P
        grads["pos_emb"] = dpos
    grads["tok_emb"] = embedding_backward(dx, c_emb)
    return {k: grads[k] for k in param_shapes(config)}


def model_loss(params: Params, ids: np.ndarray, targets: np.ndarray, config: Config) -> float:
    """Mean cross-entropy (nats per token) of predicting ``targets (B, T)`` from ``ids (B, T)``."""
    _check_ids(targets, config, "targets")
    if np.shape(targets) != np.shape(ids):
        raise ValueError(f"targets must have the shape of ids {np.shape(ids)}, got {np.shape(targets)}")
    logits, _ = model_forward(params, ids, config)
    return float(cross_entropy_forward(logits, targets)[0])


def loss_and_grads(params: Params, ids: np.ndarray, targets: np.ndarray, config: Config):
    """One forward and one backward pass → ``(loss, grads)``."""
    _check_ids(targets, config, "targets")
    if np.shape(targets) != np.shape(ids):
        raise ValueError(f"targets must have the shape of ids {np.shape(ids)}, got {np.shape(targets)}")
    logits, cache = model_forward(params, ids, config)
    loss, c_ce = cross_entropy_forward(logits, targets)
    return float(loss), model_backward(cross_entropy_backward(1.0, c_ce), cache)


def generate(params: Params, config: Config, prompt: list[int], n_new: int, rng: np.random.Generator,
             temperature: float = 1.0) -> list[int]:
    """Append ``n_new`` tokens to ``prompt``, each sampled from ``softmax(logits / temperature)``
    given the last ``config.context`` tokens; ``temperature=0`` takes the most likely token."""
    if not prompt:
        raise ValueError("prompt must hold at least one token id")
    checks.number("temperature", temperature, at_least=0, hint="0 = greedy")
    ids = list(prompt)
    for _ in range(n_new):
        logits, _ = model_forward(params, np.array([ids[-config.context:]]), config)
        last = logits[0, -1].astype(np.float64)                    # (V,)
        if temperature == 0:
            ids.append(int(last.argmax()))
            continue
        probs, _ = softmax_forward(last / temperature)
        ids.append(int(rng.choice(len(probs), p=probs)))
    return ids


# -- checking: finite differences and PyTorch -----------------------------------------------------
def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``‖a − b‖ / (‖a‖ + ‖b‖)`` (0 when both are 0): scale-free, unlike an absolute tolerance.
    Raises ``ValueError`` when the shapes differ (broadcasting would compare the wrong entries)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"relative_error needs arrays of one shape, got shape {a.shape} and shape {b.shape}; "
                         "compare a gradient with the gradient of the same parameter")
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def numerical_gradient(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centred differences ``(f(x + h e_i) − f(x − h e_i)) / 2h`` for every entry of ``x``.

    ``f`` takes no argument and reads ``x``, which is perturbed in place and restored.

    Raises:
        TypeError: unless ``x`` is float64 (in float32 the rounding error, about 1e-7 / h,
            swamps the difference).
    """
    if x.dtype != np.float64:
        raise TypeError(f"finite differences need float64 arrays, got {x.dtype}; cast with .astype(np.float64)")
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def gradient_check(params: Params, ids: np.ndarray, targets: np.ndarray, config: Config,
                   h: float = 1e-5) -> dict[str, float]:
    """Relative error between :func:`loss_and_grads` and finite differences, per parameter.
    Needs float64 params (see :func:`numerical_gradient`); use a tiny model, it costs two forward
    passes per number."""
    _, grads = loss_and_grads(params, ids, targets, config)
    return {name: relative_error(grads[name], numerical_gradient(lambda: model_loss(params, ids, targets, config),
                                                                 params[name], h))
            for name in params}


def torch_loss(params: Params, ids: np.ndarray, targets: np.ndarray, config: Config):
    """The same model with PyTorch's built-ins (``F.layer_norm``, ``F.scaled_dot_product_attention``
    with ``is_causal=True``, ``F.cross_entropy``), on copies of ``params`` that require grad.

    Returns ``(loss, leaves)``: call ``loss.backward()`` and read ``leaves[name].grad``.
    """
    check_params(params, config)
    _check_ids(ids, config)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    c, t = config, ids.shape[1]
    x = F.embedding(torch.as_tensor(ids, dtype=torch.long), P["tok_emb"])
    if c.pos == "learned":
        x = x + P["pos_emb"][:t]
    else:
        x = x + sinusoidal_positional_encoding(t, c.d_model, dtype=torch.float64).to(x.dtype)
    for i in range(c.n_layers):
        p = _sub(P, f"blocks.{i}.")
        h = F.layer_norm(x, (c.d_model,), p["ln1.gamma"], p["ln1.beta"], c.eps)
        q, k, v = (u.unflatten(-1, (c.n_heads, -1)).transpose(1, 2)
                   for u in F.linear(h, p["attn.w_qkv"].T, p["attn.b_qkv"]).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(-2)
        x = x + F.linear(a, p["attn.w_o"].T, p["attn.b_o"])
        h = F.layer_norm(x, (c.d_model,), p["ln2.gamma"], p["ln2.beta"], c.eps)
        x = x + F.linear(F.relu(F.linear(h, p["ffn.w1"].T, p["ffn.b1"])), p["ffn.w2"].T, p["ffn.b2"])
    h = F.layer_norm(x, (c.d_model,), P["ln_f.gamma"], P["ln_f.beta"], c.eps)
    logits = F.linear(h, P["head.w"].T, P["head.b"])
    loss = F.cross_entropy(logits.flatten(0, -2), torch.as_tensor(targets, dtype=torch.long).flatten())
    return loss, P


# -- training -------------------------------------------------------------------------------------
class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction, as ``torch.optim.Adam`` computes it::

        m ← β1 m + (1 − β1) g        v ← β2 v + (1 − β2) g²
        θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + eps)

    :meth:`step` updates ``params`` in place.

    Raises:
        ValueError: a non-positive ``lr`` or ``eps``, betas outside [0, 1), or (in ``step``)
            gradients whose names or shapes differ from the parameters'.
    """

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        checks.number("lr", lr, above=0)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}; (0.9, 0.999) is usual")
        checks.number("eps", eps, above=0)
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: Params, grads: Params) -> None:
        if grads.keys() != self.m.keys():
            raise ValueError(f"grads have names {sorted(set(grads) ^ set(self.m))[:3]} that the optimiser's "
                             f"params lack (or the reverse); pass the grads of the same params")
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for k, g in grads.items():
            if g.shape != params[k].shape:
                raise ValueError(f"grad {k!r} has shape {g.shape} but the param has {params[k].shape}")
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            params[k] -= self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)


def random_batch(data: np.ndarray, batch_size: int, context: int, rng: np.random.Generator):
    """``batch_size`` random windows of ``data`` (1-D ids): inputs ``(B, context)`` and targets
    shifted by one. Raises ``ValueError`` if ``data`` is not longer than ``context``."""
    if len(data) <= context:
        raise ValueError(f"data has {len(data)} tokens; it needs more than context={context}")
    starts = rng.integers(0, len(data) - context, size=batch_size)
    idx = starts[:, None] + np.arange(context)                     # (B, T)
    return data[idx], data[idx + 1]
