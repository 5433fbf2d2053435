"""The exercise checks of notebook 07 (see :mod:`utils.exercises` for how a check reports).

Each check builds its own inputs, runs the learner's piece and compares it with PyTorch (autograd,
``torch.optim.AdamW``, ``torch.nn.utils.clip_grad_norm_``) or with centred finite differences. A
failure says what is wrong (a shape, a parameter, a step, an array that was replaced) without the
right values."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from utils.bonus.numpy_transformer import numerical_gradient, relative_error


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GPT-2's tanh approximation of GELU; the cache is ``x``."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), x


def rms_norm_forward(x: np.ndarray, gamma: np.ndarray, eps: float = 1e-6):
    """``y = gamma * x * r`` with ``r = 1 / sqrt(mean(x²) + eps)`` (..., 1); the cache is ``(x, r, gamma)``."""
    r = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)          # (..., 1)
    return x * r * gamma, (x, r, gamma)


def _array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    assert value is not None, f"{name}: nothing was returned (a missing `return`?)"
    value = np.asarray(value)
    assert value.shape == shape, f"{name} should have shape {shape}, got {value.shape}"
    assert np.isfinite(value).all(), f"{name} contains NaN or infinity"
    return value


def check_gelu_backward(gelu_backward: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Notebook 07, exercise 1: ``gelu_backward(dout, x)`` → ``dx`` (shaped like ``x``), equal to
    finite differences and to ``F.gelu(..., approximate="tanh")``'s gradient."""
    r = np.random.default_rng(0)
    x, dout = r.standard_normal((3, 7)) * 2, r.standard_normal((3, 7))
    dx = _array("dx", gelu_backward(dout.copy(), gelu_forward(x)[1].copy()), x.shape)
    ones = _array("dx for dout = 1", gelu_backward(np.ones_like(x), x.copy()), x.shape)
    if np.allclose(ones, dx, atol=1e-6):
        raise AssertionError("dx does not change with dout: multiply the derivative by the incoming gradient")
    numeric = numerical_gradient(lambda: (gelu_forward(x)[0] * dout).sum(), x)
    if relative_error(dx, numeric) > 1e-6:
        near_zero = np.abs(x) < 0.5
        far = ~near_zero
        if relative_error(dx[far], numeric[far]) > 1e-6 and relative_error(dx[near_zero], numeric[near_zero]) < 1e-3:
            raise AssertionError("dx is close to finite differences near x = 0 and wrong for larger |x|: "
                                 "check the derivative of the cubic term inside tanh")
        raise AssertionError("dx differs from finite differences of gelu_forward: differentiate both factors "
                             "of ½·x·(1 + tanh u), the product rule")
    xt = torch.tensor(x, requires_grad=True)
    (F.gelu(xt, approximate="tanh") * torch.tensor(dout)).sum().backward()
    assert np.allclose(dx, xt.grad.numpy(), atol=1e-10), "dx differs from PyTorch's GELU (approximate='tanh')"


def check_rms_norm_backward(rms_norm_backward: Callable) -> None:
    """Notebook 07, exercise 2: ``rms_norm_backward(dout, cache)`` → ``(dx, dgamma)`` for the cache
    ``(x, r, gamma)`` of :func:`rms_norm_forward`, equal to autograd through ``F.rms_norm``."""
    r = np.random.default_rng(1)
    x, gamma, dout = r.standard_normal((2, 3, 6)) + 0.5, r.standard_normal(6), r.standard_normal((2, 3, 6))
    result = rms_norm_backward(dout.copy(), rms_norm_forward(x, gamma)[1])
    assert isinstance(result, tuple) and len(result) == 2, "return a pair (dx, dgamma)"
    dx = _array("dx", result[0], x.shape)
    dgamma = _array("dgamma", result[1], gamma.shape) if np.shape(result[1]) != x.shape else None
    assert dgamma is not None, ("dgamma has one value per position: gamma is shared by every position, "
                                "so its gradient adds them up")
    xt, gt = torch.tensor(x, requires_grad=True), torch.tensor(gamma, requires_grad=True)
    (F.rms_norm(xt, (6,), gt, eps=1e-6) * torch.tensor(dout)).sum().backward()
    assert np.allclose(dgamma, gt.grad.numpy(), atol=1e-10), \
        "dgamma differs from autograd's: gamma multiplies the normalised x, not x itself"
    if not np.allclose(dx, xt.grad.numpy(), atol=1e-10):
        only_direct = dout * gamma * rms_norm_forward(x, gamma)[1][1]
        if np.allclose(dx, only_direct, atol=1e-10):
            raise AssertionError("dx treats r as a constant: r depends on every x_i as well (the hint's ∂r/∂x_i)")
        raise AssertionError("dx differs from autograd's gradient through F.rms_norm")


def check_adamw(adamw_class: type) -> None:
    """Notebook 07, exercise 3: ``AdamW(params, lr, betas, eps, weight_decay)`` with ``step(params,
    grads)`` (in place) equal to ``torch.optim.AdamW`` over several steps."""
    # with a zero gradient Adam's own step is 0: only the decay moves the weights
    zero = {"w": np.full(3, 4.0)}
    adamw_class(zero, lr=0.1, weight_decay=0.5).step(zero, {"w": np.zeros(3)})
    ref_zero = torch.full((3,), 4.0, dtype=torch.float64, requires_grad=True)
    ref_zero.grad = torch.zeros(3, dtype=torch.float64)
    torch.optim.AdamW([ref_zero], lr=0.1, weight_decay=0.5).step()
    if not np.allclose(zero["w"], ref_zero.detach().numpy()):
        raise AssertionError("with a zero gradient only the weight decay should move the weights, and it moves "
                             "them by the wrong amount: is the decay outside Adam's ratio, and scaled as the "
                             "exercise says?")
    r = np.random.default_rng(2)
    ours = {"w": r.standard_normal((4, 3)), "b": r.standard_normal(3)}
    ref = [torch.tensor(v, requires_grad=True) for v in ours.values()]
    opt, opt_t = adamw_class(ours, lr=0.05, weight_decay=0.1), torch.optim.AdamW(ref, lr=0.05, weight_decay=0.1)
    for step in range(1, 5):
        grads = {k: r.standard_normal(v.shape) for k, v in ours.items()}
        opt.step(ours, grads)
        for p_t, g in zip(ref, grads.values()):
            p_t.grad = torch.tensor(g)
        opt_t.step()
        for (k, v), p_t in zip(ours.items(), ref):
            assert np.allclose(v, p_t.detach().numpy(), atol=1e-12), \
                (f"after step {step}, {k} differs from torch.optim.AdamW's, though the decay alone is right: "
                 "the decay acts on the weights as they were before this step's Adam update")


def check_clip_grad_norm(clip_grad_norm: Callable[[dict, float], float]) -> None:
    """Notebook 07, exercise 4: ``clip_grad_norm(grads, max_norm)`` scales the arrays of ``grads``
    in place (the same array objects afterwards) as ``torch.nn.utils.clip_grad_norm_`` does and
    returns the global norm measured before clipping."""
    r = np.random.default_rng(3)
    for scale, max_norm in [(10.0, 1.0), (0.01, 1.0), (3.0, 0.5)]:
        grads = {"a": r.standard_normal((3, 4)) * scale, "b": r.standard_normal(5) * scale}
        arrays = dict(grads)                                                # the learner's function must keep these
        ref = [torch.tensor(v) for v in grads.values()]
        for t in ref:
            t.grad = t.clone()
        norm_t = float(torch.nn.utils.clip_grad_norm_(ref, max_norm))
        norm = clip_grad_norm(grads, max_norm)
        label = "large gradients" if norm_t > max_norm else "small gradients"
        assert set(grads) == set(arrays), "keep the same names in grads"
        replaced = [k for k in grads if grads[k] is not arrays[k]]
        assert not replaced, (f"{label}: grads[{replaced[0]!r}] is a new array: scale the arrays in place, so that "
                              "every other reference to them (an optimiser's, a model's) sees the clipped values")
        assert norm is not None, "return the global norm measured before clipping"
        assert np.isclose(float(norm), norm_t), \
            f"{label}: the returned norm is not the global norm of all the gradients before clipping"
        for (k, v), t in zip(grads.items(), ref):
            assert np.allclose(v, t.grad.numpy()), \
                f"{label}: {k} differs from torch.nn.utils.clip_grad_norm_'s result"
