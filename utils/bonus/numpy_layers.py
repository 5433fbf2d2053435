"""The pieces of the NumPy Transformer (notebook 07), each a forward/backward pair.

* ``*_forward(inputs..., params) -> (out, cache)``: the output, plus what the backward pass needs;
* ``*_backward(dout, cache) -> grads``: given ``dL/dout``, the gradients of the inputs and params.

Simple pieces (:func:`linear_forward`, :func:`layer_norm_forward`, ...) take their parameters as
arrays and return gradients as a tuple; composite pieces (attention, feed-forward, block) take a
dict of parameters and return a dict of gradients with the same keys.
:mod:`utils.bonus.numpy_transformer` stacks them into the model.
"""

from __future__ import annotations

import math

import numpy as np

Params = dict[str, np.ndarray]


# -- simple pieces: arrays in, tuple of gradients out -------------------------------------------
def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """``y = x @ w + b``: x ``(..., d_in)``, w ``(d_in, d_out)``, b ``(d_out,)`` → ``(..., d_out)``.

    The leading axes are flattened first: one (N, d_in) @ (d_in, d_out) product is one BLAS call,
    while NumPy runs a 3-D @ 2-D product as many small ones (far slower with several threads).
    """
    y = x.reshape(-1, x.shape[-1]) @ w + b                          # (N, d_out)
    return y.reshape(*x.shape[:-1], w.shape[1]), (x, w)


def linear_backward(dout: np.ndarray, cache):
    """→ ``(dx, dw, db)``: ``dx = dout wᵀ``, ``dw = xᵀ dout`` and ``db = Σ dout`` over every position."""
    x, w = cache
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])  # (N, d_in), (N, d_out)
    return (d2 @ w.T).reshape(x.shape), x2.T @ d2, d2.sum(axis=0)


def embedding_forward(ids: np.ndarray, table: np.ndarray):
    """Row lookup: ids ``(B, T)`` ints, table ``(V, D)`` → ``(B, T, D)``."""
    return table[ids], (ids, table.shape)


def embedding_backward(dout: np.ndarray, cache) -> np.ndarray:
    """→ ``dtable (V, D)``: row ``v`` collects ``dout`` of every position whose id is ``v``."""
    ids, shape = cache
    dtable = np.zeros(shape, dout.dtype)
    np.add.at(dtable, ids.reshape(-1), dout.reshape(-1, shape[1]))
    return dtable


def layer_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5):
    """``gamma ⊙ (x − mean) / sqrt(var + eps) + beta`` over the last axis (biased variance)."""
    mean = x.mean(axis=-1, keepdims=True)                          # (..., 1)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)      # (..., 1)
    xhat = (x - mean) * rstd                                       # (..., D)
    return xhat * gamma + beta, (xhat, rstd, gamma)


def layer_norm_backward(dout: np.ndarray, cache):
    """→ ``(dx, dgamma, dbeta)`` with ``dx = rstd (g − mean(g) − x̂ mean(g ⊙ x̂))``, ``g = dout ⊙ gamma``."""
    xhat, rstd, gamma = cache
    g = dout * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    d = xhat.shape[-1]
    return dx, (dout * xhat).reshape(-1, d).sum(axis=0), dout.reshape(-1, d).sum(axis=0)


def relu_forward(x: np.ndarray):
    return np.maximum(x, 0), x > 0


def relu_backward(dout: np.ndarray, cache) -> np.ndarray:
    return dout * cache


def softmax_forward(z: np.ndarray):
    """Softmax over the last axis (``-inf`` entries get probability 0); the cache is the output."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    return y, y


def softmax_backward(dout: np.ndarray, cache) -> np.ndarray:
    """``dz = y ⊙ (dy − Σ_j dy_j y_j)``, row by row."""
    y = cache
    return y * (dout - (dout * y).sum(axis=-1, keepdims=True))


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray):
    """Mean of ``−log softmax(logits)[target]`` over all positions: logits ``(..., V)``, targets
    ``(...)`` ints → a scalar (nats per token)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))       # (..., V)
    loss = -np.take_along_axis(logp, targets[..., None], axis=-1).mean()
    return loss, (np.exp(logp), targets)


def cross_entropy_backward(dloss: float, cache) -> np.ndarray:
    """``dlogits = (softmax(logits) − onehot(target)) / N`` times ``dloss``."""
    probs, targets = cache
    d = probs.copy()
    np.put_along_axis(d, targets[..., None], np.take_along_axis(d, targets[..., None], axis=-1) - 1, axis=-1)
    return d * (dloss / targets.size)


# -- composite pieces: dict of params in, dict of gradients out ---------------------------------
def split_heads(t: np.ndarray, n_heads: int) -> np.ndarray:
    b, s, d = t.shape                                              # (B, T, D)
    return t.reshape(b, s, n_heads, d // n_heads).transpose(0, 2, 1, 3)  # (B, H, T, d_k)


def merge_heads(t: np.ndarray) -> np.ndarray:
    b, h, s, dk = t.shape                                          # (B, H, T, d_k)
    return t.transpose(0, 2, 1, 3).reshape(b, s, h * dk)           # (B, T, D)


def attention_forward(x: np.ndarray, p: Params, n_heads: int):
    """Causal multi-head self-attention: x ``(B, T, D)`` → ``(B, T, D)``.

    ``p``: ``w_qkv (D, 3D)``, ``b_qkv (3D,)`` (Q, K, V side by side), ``w_o (D, D)``, ``b_o (D,)``.
    """
    qkv, c_qkv = linear_forward(x, p["w_qkv"], p["b_qkv"])         # (B, T, 3D)
    q, k, v = (split_heads(t, n_heads) for t in np.split(qkv, 3, axis=-1))  # (B, H, T, d_k) each
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.swapaxes(-1, -2)) * scale                      # (B, H, T, T)
    t = x.shape[1]
    future = np.triu(np.ones((t, t), dtype=bool), k=1)             # True above the diagonal
    weights, _ = softmax_forward(np.where(future, -np.inf, scores))  # (B, H, T, T), 0 on the future
    out, c_o = linear_forward(merge_heads(weights @ v), p["w_o"], p["b_o"])
    return out, (c_qkv, q, k, v, weights, scale, c_o)


def attention_backward(dout: np.ndarray, cache):
    """→ ``(dx, grads)`` with ``grads`` keyed like ``p``."""
    c_qkv, q, k, v, weights, scale, c_o = cache
    dmerged, dw_o, db_o = linear_backward(dout, c_o)
    dheads = split_heads(dmerged, q.shape[1])                      # (B, H, T, d_k)
    dweights = dheads @ v.swapaxes(-1, -2)                         # (B, H, T, T)
    dv = weights.swapaxes(-1, -2) @ dheads                         # (B, H, T, d_k)
    dscores = softmax_backward(dweights, weights) * scale          # masked entries: weight 0 → 0
    dq = dscores @ k                                               # (B, H, T, d_k)
    dk = dscores.swapaxes(-1, -2) @ q
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, 3D)
    dx, dw_qkv, db_qkv = linear_backward(dqkv, c_qkv)
    return dx, {"w_qkv": dw_qkv, "b_qkv": db_qkv, "w_o": dw_o, "b_o": db_o}


def feed_forward_forward(x: np.ndarray, p: Params):
    """``ReLU(x w1 + b1) w2 + b2``: ``(..., D) → (..., d_ff) → (..., D)``."""
    h, c1 = linear_forward(x, p["w1"], p["b1"])
    a, c_relu = relu_forward(h)
    out, c2 = linear_forward(a, p["w2"], p["b2"])
    return out, (c1, c_relu, c2)


def feed_forward_backward(dout: np.ndarray, cache):
    c1, c_relu, c2 = cache
    da, dw2, db2 = linear_backward(dout, c2)
    dx, dw1, db1 = linear_backward(relu_backward(da, c_relu), c1)
    return dx, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}


def _sub(p: Params, prefix: str) -> Params:
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def _prefixed(grads: Params, prefix: str) -> Params:
    return {prefix + k: v for k, v in grads.items()}


def block_forward(x: np.ndarray, p: Params, n_heads: int, eps: float = 1e-5):
    """One pre-LN block: ``x + attn(ln1(x))``, then ``+ ffn(ln2(·))``. ``(B, T, D) → (B, T, D)``."""
    h1, c_ln1 = layer_norm_forward(x, p["ln1.gamma"], p["ln1.beta"], eps)
    a, c_attn = attention_forward(h1, _sub(p, "attn."), n_heads)
    x = x + a                                                      # residual 1
    h2, c_ln2 = layer_norm_forward(x, p["ln2.gamma"], p["ln2.beta"], eps)
    f, c_ffn = feed_forward_forward(h2, _sub(p, "ffn."))
    return x + f, (c_ln1, c_attn, c_ln2, c_ffn)                    # residual 2


def block_backward(dout: np.ndarray, cache):
    """A residual ``y = x + f(x)`` sends ``dout`` down both paths: ``dx = dout + f'(x)ᵀ dout``."""
    c_ln1, c_attn, c_ln2, c_ffn = cache
    dh2, g_ffn = feed_forward_backward(dout, c_ffn)
    dx2, dg2, db2 = layer_norm_backward(dh2, c_ln2)
    dmid = dout + dx2                                              # through residual 2
    dh1, g_attn = attention_backward(dmid, c_attn)
    dx1, dg1, db1 = layer_norm_backward(dh1, c_ln1)
    grads = {"ln1.gamma": dg1, "ln1.beta": db1, "ln2.gamma": dg2, "ln2.beta": db2}
    return dmid + dx1, grads | _prefixed(g_attn, "attn.") | _prefixed(g_ffn, "ffn.")
