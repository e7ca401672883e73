"""Softmax and log_softmax over the last axis, and cross-entropy fused with
log_softmax (torch.nn.functional.softmax(x, -1), log_softmax(x, -1),
cross_entropy).

Special values, per row (x is one row of the last axis):
  * -inf entries get probability 0 (log-probability -inf);
  * a row of all -inf gives softmax 0 and log_softmax -inf everywhere (no
    NaN; PyTorch gives NaN there), and its logsumexp is -inf; cross-entropy
    of such a row is +inf and its gradient is -(smoothed one-hot) * dloss;
  * a NaN entry makes the whole row NaN, and so does a +inf entry
    (inf - inf), as in PyTorch;
  * logits of magnitude 1e4 are fine (the row max is subtracted first).

Cross-entropy works on logits (..., C) with integer targets (...) — the
class axis is the LAST axis (PyTorch's (N, C, d1, ...) layout would need a
moveaxis first). ignore_index rows contribute 0 to the loss and get a zero
gradient. reduction='mean' divides by the number of non-ignored rows; when
every row is ignored that is 0/0 and the loss is NaN, as in PyTorch (the
gradient is then all zeros).

cross_entropy_backward without `out` reuses the array it returned last
time when that is large (_SPARE_MIN_BYTES or more), of the same shape and
dtype, and nothing refers to it any more: a training step drops its
dlogits after the projection's backward, so the next step writes into the
same memory instead of page-faulting a fresh array in (the kernel's first
touch of each page of a fresh array makes the system zero it). The cost:
that one array is kept after its caller drops it, until the next call
replaces it (release_spare() lets it go).
"""
import sys

import numpy as np

from pytransformer import _core
from pytransformer.validation import (c_order, choice_arg, flag_arg, float_checked, gradient_out,
                                      index_array, index_checked, int_arg, no_overlap, out_array,
                                      real_arg)
from pytransformer.ops._layout import rows

REDUCTIONS = ("mean", "sum", "none")

_SPARE_MIN_BYTES = 16 << 20
_spare = {}                 # "dlogits": the large array cross_entropy_backward returned last
# Reuse reads reference counts, which free-threaded builds do not keep exactly.
_COUNTS_REFS = getattr(sys, "_is_gil_enabled", lambda: True)()


def _sole_refs():
    """What sys.getrefcount says of an array only one local refers to."""
    a = np.empty(1)
    return sys.getrefcount(a)


_SOLE = _sole_refs()


def _take_spare(shape, dtype):
    """The spare dlogits array if it has this shape and dtype and nothing
    but this function refers to it (the caller dropped it, with every view
    of it); else None. Taken out of _spare first, so two threads never get
    the same array."""
    buf = _spare.pop("dlogits", None)
    if buf is None or buf.shape != shape or buf.dtype != dtype or sys.getrefcount(buf) > _SOLE:
        return None
    return buf


def release_spare():
    """Let go of the array cross_entropy_backward keeps for reuse (see the
    module docstring); the next large call allocates again."""
    _spare.clear()


def _softmax(name, x, out, log):
    x = float_checked(name, x, min_ndim=1)
    N, C = rows(x)
    y = out_array("out", out, x.shape, x.dtype)
    x = c_order(x)
    # a row is read whole before it is written: out may be x itself
    no_overlap((("out", out),), ((name, x),), (("out", name),))
    _core.softmax_forward(y.reshape(N, C), x.reshape(N, C), log)
    return y


def softmax(x, out=None):
    """exp(x) / sum(exp(x)) over the last axis of x (any leading shape).
    `out` may be x itself."""
    return _softmax("x", x, out, False)


def log_softmax(x, out=None):
    """x - logsumexp(x) over the last axis of x (any leading shape).
    `out` may be x itself."""
    return _softmax("x", x, out, True)


def _softmax_backward(grad_out, y, log, out, accumulate):
    y = float_checked("y", y, min_ndim=1)
    dy = float_checked("grad_out", grad_out, y.dtype, shape=y.shape)
    accumulate = flag_arg("accumulate", accumulate)
    N, C = rows(y)
    dx = gradient_out("out", out, y.shape, y.dtype, accumulate)
    y, dy = c_order(y), c_order(dy)
    no_overlap((("out", out),), (("grad_out", dy), ("y", y)))
    _core.softmax_backward(dx.reshape(N, C), dy.reshape(N, C), y.reshape(N, C), log, accumulate)
    return dx


def softmax_backward(grad_out, y, out=None, accumulate=False):
    """dx = y * (grad_out - sum(grad_out * y)) for y = softmax(x). `out`, if
    given, is overwritten with dx, or dx is added to it with accumulate=True
    (which needs `out`); it must not overlap grad_out or y."""
    return _softmax_backward(grad_out, y, False, out, accumulate)


def log_softmax_backward(grad_out, y, out=None, accumulate=False):
    """dx = grad_out - exp(y) * sum(grad_out) for y = log_softmax(x). `out`,
    if given, is overwritten with dx, or dx is added to it with
    accumulate=True (which needs `out`); it must not overlap grad_out or y."""
    return _softmax_backward(grad_out, y, True, out, accumulate)


def _ce_args(logits, targets, ignore_index, label_smoothing, reduction):
    """Checked (logits, targets, N, C, ignore_index, label_smoothing):
    types, shapes and options only; logits and targets are returned as
    given (the caller converts them with _ce_arrays once every shape of the
    call is checked)."""
    logits = float_checked("logits", logits, min_ndim=1)
    C = logits.shape[-1]
    ignore_index = int_arg("ignore_index", ignore_index, -2**63, 2**63)
    index_checked("targets", targets)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets: expected shape {logits.shape[:-1]} "
                         f"(logits.shape[:-1]), got {targets.shape}")
    ls = real_arg("label_smoothing", label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing}")
    choice_arg("reduction", reduction, REDUCTIONS)
    N, _ = rows(logits)
    return logits, targets, N, C, ignore_index, ls


def _ce_arrays(logits, targets, C, ignore_index):
    """logits C-ordered, targets value-checked and int64 C-ordered."""
    return c_order(logits), index_array("targets", targets, 0, C, ignore=ignore_index)


def cross_entropy_forward(logits, targets, ignore_index=-100, label_smoothing=0.0,
                          reduction="mean"):
    """Return (loss, lse). logits (..., C) float32/float64, targets (...) ints
    in [0, C) or == ignore_index. Per row
        loss = (1 - ls) * (-logp[t]) + ls * mean_c(-logp[c]),  logp = log_softmax
    (0 for ignored rows), then reduced: 'none' -> shape (...), 'sum' -> 0-d,
    'mean' -> 0-d sum / number of non-ignored rows (NaN if there are none).
    lse (...) is the row logsumexp, what cross_entropy_backward needs."""
    logits, targets, N, C, ignore_index, ls = _ce_args(
        logits, targets, ignore_index, label_smoothing, reduction)
    logits, targets = _ce_arrays(logits, targets, C, ignore_index)
    lead = logits.shape[:-1]
    loss = np.empty(lead, logits.dtype)
    lse = np.empty(lead, logits.dtype)
    _core.cross_entropy_forward(loss.reshape(N), lse.reshape(N), logits.reshape(N, C),
                                targets.reshape(N), ignore_index, ls)
    if reduction == "none":
        return loss, lse
    # Summed in float64 serially (fixed order), then rounded once.
    total = loss.sum(dtype=np.float64)
    if reduction == "mean":
        count = int(np.count_nonzero(targets != ignore_index))
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.float64(total) / np.float64(count)
    return np.asarray(total, dtype=logits.dtype), lse


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0,
                  reduction="mean"):
    """Cross-entropy of logits (..., C) against targets (...); see
    cross_entropy_forward."""
    return cross_entropy_forward(logits, targets, ignore_index, label_smoothing,
                                 reduction)[0]


def cross_entropy_backward(grad_loss, logits, targets, lse, ignore_index=-100,
                           label_smoothing=0.0, reduction="mean", out=None, accumulate=False):
    """Return dlogits (..., C) = g * (softmax(logits) - ((1-ls) onehot + ls/C)),
    zero on ignored rows, where g is grad_loss (shape (...)) for 'none',
    grad_loss (a 0-d array or a number) for 'sum', and grad_loss / (number of
    non-ignored rows) for 'mean'. lse comes from cross_entropy_forward.
    `out`, if given, is overwritten with dlogits, or dlogits is added to it
    with accumulate=True (which needs `out`); it must not overlap logits,
    lse, targets or grad_loss. Without `out`, a large result may be written
    into the memory of the one this function returned last, once nothing
    refers to that any more (see the module docstring)."""
    logits, targets, N, C, ignore_index, ls = _ce_args(
        logits, targets, ignore_index, label_smoothing, reduction)
    lead = logits.shape[:-1]
    lse = float_checked("lse", lse, logits.dtype, shape=lead)
    if reduction == "none":
        g = float_checked("grad_loss", grad_loss, logits.dtype, shape=lead)
    else:
        if isinstance(grad_loss, np.ndarray):
            g = float_checked("grad_loss", grad_loss, logits.dtype)
            if g.size != 1 or g.ndim > 1:
                raise ValueError(f"grad_loss: expected shape () for reduction "
                                 f"{reduction!r}, got {g.shape}")
            g = float(g.reshape(()))
        elif isinstance(grad_loss, (float, int, np.floating, np.integer)) \
                and not isinstance(grad_loss, (bool, np.bool_)):
            g = real_arg("grad_loss", grad_loss)
        else:
            raise TypeError(f"grad_loss: expected a 0-d numpy.ndarray or a number, "
                            f"got {type(grad_loss).__name__}")
    accumulate = flag_arg("accumulate", accumulate)
    if out is not None or accumulate:
        out = gradient_out("out", out, logits.shape, logits.dtype, accumulate)
    logits, targets = _ce_arrays(logits, targets, C, ignore_index)
    lse = c_order(lse)
    if reduction == "none":
        g = c_order(g).reshape(N)
    else:
        if reduction == "mean":
            count = int(np.count_nonzero(targets != ignore_index))
            # count == 0: every row is ignored, nothing reads g.
            g = g / count if count else 0.0
        g = np.asarray(g, dtype=logits.dtype)
    no_overlap((("out", out),), (("logits", logits), ("lse", lse), ("targets", targets),
                                 ("grad_loss", g)))
    # allocated after the targets' value scan, stored into (no zeroing pass)
    spare = out is None and _COUNTS_REFS and logits.nbytes >= _SPARE_MIN_BYTES
    dlogits = out
    if spare:
        dlogits = _take_spare(logits.shape, logits.dtype)
    if dlogits is None:
        dlogits = np.empty(logits.shape, logits.dtype)
    _core.cross_entropy_backward(dlogits.reshape(N, C), logits.reshape(N, C), lse.reshape(N),
                                 targets.reshape(N), g, ignore_index, ls, accumulate)
    if spare:
        _spare["dlogits"] = dlogits
    return dlogits
