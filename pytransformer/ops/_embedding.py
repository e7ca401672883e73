"""Token embedding (torch.nn.functional.embedding) and the fixed sinusoidal
position table of "Attention Is All You Need"."""
import numpy as np

from pytransformer import _core
from pytransformer.validation import (FLOAT_DTYPES, c_order, check_alloc, flag_arg, float_checked,
                                      gradient_out, index_array, index_checked, int_arg,
                                      no_overlap, out_array, real_arg)


def _padding_row(padding_idx, V):
    """padding_idx normalised to [0, V) (negative counts from the end, as in
    PyTorch), or None."""
    if padding_idx is None:
        return None
    padding_idx = int_arg("padding_idx", padding_idx)
    if not -V <= padding_idx < V:
        raise ValueError(f"padding_idx: must be in [{-V}, {V}), got {padding_idx}")
    return padding_idx % V


def _ids(ids, V):
    """ids as C-contiguous int64 in [0, V), keeping a 0-d shape (which
    np.ascontiguousarray would turn into (1,))."""
    shape = ids.shape if isinstance(ids, np.ndarray) else None
    ids = index_array("ids", ids, 0, V)
    return ids.reshape(shape)


def embedding_forward(ids, weight, padding_idx=None, out=None):
    """Return (y, ids64): y = weight[ids] of shape ids.shape + (C,), for an
    integer array `ids` of any shape (every value in [0, V), else ValueError
    naming the first bad one) and weight (V, C). ids64 is ids as a
    C-contiguous int64 array, what embedding_backward needs. padding_idx only
    matters for the backward (that row gets no gradient), as in PyTorch.
    `out` must not overlap weight or ids."""
    weight = float_checked("weight", weight, ndim=2)
    V, C = weight.shape
    _padding_row(padding_idx, V)
    index_checked("ids", ids)
    y = out_array("out", out, ids.shape + (C,), weight.dtype)
    weight, ids = c_order(weight), _ids(ids, V)
    no_overlap((("out", out),), (("weight", weight), ("ids", ids)))
    _core.embedding_forward(y.reshape(ids.size, C), ids.reshape(-1), weight)
    return y, ids


def embedding(ids, weight, padding_idx=None, out=None):
    """y = weight[ids]; see embedding_forward."""
    return embedding_forward(ids, weight, padding_idx, out)[0]


def embedding_backward(grad_out, ids, num_embeddings, padding_idx=None, grad_weight=None,
                       accumulate=False):
    """Return dweight (num_embeddings, C): the rows of grad_out (shape
    ids.shape + (C,)) summed at their ids (repeated ids accumulate; the
    result does not depend on the thread count). The padding_idx row gets no
    gradient (zeros). When grad_weight is given (a C-contiguous writable
    (V, C) array of grad_out's dtype) the gradient is stored into it, or
    with accumulate=True (which needs grad_weight) added to it, and it is
    returned -- no (V, C) allocation; added to, its padding_idx row is left
    as it was. grad_weight must not overlap grad_out or ids."""
    V = int_arg("num_embeddings", num_embeddings, 0)
    dy = float_checked("grad_out", grad_out, min_ndim=1)
    C = dy.shape[-1]
    pad = _padding_row(padding_idx, V)
    index_checked("ids", ids)
    if dy.shape != ids.shape + (C,):
        raise ValueError(f"grad_out: expected shape {ids.shape + (C,)} (ids.shape + (C,)), "
                         f"got {dy.shape}")
    check_alloc("num_embeddings", (V, C), dy.dtype)
    accumulate = flag_arg("accumulate", accumulate)
    if grad_weight is not None or accumulate:
        grad_weight = gradient_out("grad_weight", grad_weight, (V, C), dy.dtype, accumulate)
    dy, ids = c_order(dy), _ids(ids, V)
    # allocated after the ids' value scan, stored into (no zeroing pass)
    dw = np.empty((V, C), dy.dtype) if grad_weight is None else grad_weight
    no_overlap((("grad_weight", grad_weight),), (("grad_out", dy), ("ids", ids)))
    saved = dw[pad].copy() if pad is not None and accumulate else None
    _core.embedding_backward(dw, dy.reshape(ids.size, C), ids.reshape(-1), accumulate)
    if pad is not None:
        dw[pad] = saved if accumulate else 0
    return dw


def sinusoidal_positions(T, C, base=10000.0, dtype=np.float32, out=None):
    """Return the (T, C) table pe[t, 2i] = sin(t / base^(2i/C)),
    pe[t, 2i+1] = cos(t / base^(2i/C)) (odd C: the last column is a sin),
    computed in double and rounded once to `dtype` (float32 or float64)."""
    T, C = int_arg("T", T), int_arg("C", C)
    if T < 0 or C < 0:
        raise ValueError(f"T, C: must be >= 0, got {(T, C)}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    base = real_arg("base", base)
    if not base > 0:
        raise ValueError(f"base: must be > 0, got {base}")
    check_alloc("T, C", (T, C), dtype)
    pe = out_array("out", out, (T, C), dtype)
    _core.sinusoidal_positions(pe, base)
    return pe
