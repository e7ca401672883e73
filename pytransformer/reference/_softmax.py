"""Softmax, log_softmax and cross-entropy in NumPy (reference).

Same conventions as pytransformer.ops._softmax, including the special
values: an all -inf row gives softmax 0 / log_softmax -inf; NaN or +inf in
a row makes the row NaN. Computed in the input dtype, like the kernels.
"""
import numpy as np


def _row_max(x):
    """Row max with all -inf rows replaced by 0, so x - max never makes
    -inf - (-inf) = NaN (those rows then give exp(-inf) = 0)."""
    m = x.max(axis=-1, keepdims=True)
    return np.where(m == -np.inf, 0, m).astype(x.dtype)


def logsumexp(x):
    """log(sum(exp(x))) over the last axis; -inf for an all -inf row."""
    m = _row_max(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return (np.log(np.exp(x - m).sum(axis=-1, keepdims=True)) + m)[..., 0]


def softmax(x):
    """exp(x - max) / sum(exp(x - max)) over the last axis."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        e = np.exp(x - _row_max(x))
        s = e.sum(axis=-1, keepdims=True)
        return np.where(s == 0, 0, e / np.where(s == 0, 1, s)).astype(x.dtype)


def log_softmax(x):
    """x - logsumexp(x) over the last axis; -inf for an all -inf row."""
    lse = logsumexp(x)[..., None]
    with np.errstate(invalid="ignore"):
        y = x - lse
    # all -inf rows: -inf - (-inf) would be NaN
    return np.where(lse == -np.inf, -np.inf, y).astype(x.dtype)


def softmax_backward(grad_out, y):
    """Vector-Jacobian product of softmax for y = softmax(x) and upstream
    grad_out g (y's shape): y * (g - sum(g * y)) over the last axis."""
    return (y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))).astype(y.dtype)


def log_softmax_backward(grad_out, y):
    """Vector-Jacobian product of log_softmax for y = log_softmax(x) and
    upstream grad_out g (y's shape): g - exp(y) * sum(g) over the last axis."""
    return (grad_out - np.exp(y) * grad_out.sum(axis=-1, keepdims=True)).astype(y.dtype)


def _smoothed_onehot(targets, C, label_smoothing, dtype):
    """q[..., c] = (1 - ls) * [c == target] + ls / C (rows of any target)."""
    safe = np.clip(targets, 0, max(C - 1, 0))
    q = np.full(targets.shape + (C,), label_smoothing / C if C else 0.0)
    np.put_along_axis(q, safe[..., None], (1 - label_smoothing) + label_smoothing / C, axis=-1)
    return q.astype(dtype)


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """PyTorch's cross_entropy of logits (..., C) against integer targets
    (...), the class axis last. Per row (1-ls) * -logp[t] + ls *
    mean_c(-logp[c]) with ls = label_smoothing, 0 where targets ==
    ignore_index; reduction 'mean' over non-ignored rows (NaN if none), 'sum'
    (0-d), or 'none' (shape (...))."""
    C = logits.shape[-1]
    logp = log_softmax(logits).astype(np.float64)
    keep = targets != ignore_index
    safe = np.where(keep, targets, 0)
    nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0] if C else np.zeros(targets.shape)
    loss = (1 - label_smoothing) * nll
    if label_smoothing != 0:
        loss = loss + label_smoothing * (-logp.mean(axis=-1))
    loss = np.where(keep, loss, 0.0)
    if reduction == "none":
        return loss.astype(logits.dtype)
    if reduction == "sum":
        return np.asarray(loss.sum(), dtype=logits.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(loss.sum() / keep.sum(), dtype=logits.dtype)


def cross_entropy_backward(grad_loss, logits, targets, ignore_index=-100,
                           label_smoothing=0.0, reduction="mean"):
    """dlogits = g * (softmax(logits) - smoothed one-hot), 0 on ignored rows;
    g = grad_loss per row ('none'), grad_loss ('sum'), grad_loss / count ('mean')."""
    C = logits.shape[-1]
    keep = targets != ignore_index
    if reduction == "none":
        g = np.asarray(grad_loss, dtype=np.float64)
    elif reduction == "sum":
        g = np.full(targets.shape, float(grad_loss))
    else:
        count = keep.sum()
        g = np.full(targets.shape, float(grad_loss) / count if count else 0.0)
    p = softmax(logits).astype(np.float64)
    q = _smoothed_onehot(targets, C, label_smoothing, np.float64)
    d = g[..., None] * (p - q)
    return np.where(keep[..., None], d, 0.0).astype(logits.dtype)
