"""Embedding lookup and sinusoidal positions in NumPy (reference)."""
import numpy as np


def embedding(ids, weight):
    """y = weight[ids], shape ids.shape + (C,)."""
    return weight[np.asarray(ids, dtype=np.int64)]


def embedding_backward(grad_out, ids, num_embeddings, padding_idx=None):
    """dweight (V, C): grad_out rows summed at their ids (np.add.at handles
    repeated ids); the padding_idx row stays zero."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    C = grad_out.shape[-1]
    dw = np.zeros((num_embeddings, C), grad_out.dtype)
    np.add.at(dw, ids, grad_out.reshape(-1, C))
    if padding_idx is not None:
        dw[padding_idx] = 0
    return dw


def sinusoidal_positions(T, C, base=10000.0, dtype=np.float32):
    """The (T, C) table pe[t, 2i] = sin(t / base^(2i/C)), pe[t, 2i+1] =
    cos(t / base^(2i/C)), computed in float64 and returned as `dtype`."""
    t = np.arange(T, dtype=np.float64)[:, None]
    col = np.arange(C)
    two_i = (col - col % 2).astype(np.float64)      # 2i for columns 2i and 2i+1
    angle = t / base ** (two_i / C)
    pe = np.where(col % 2 == 0, np.sin(angle), np.cos(angle))
    return pe.reshape(T, C).astype(dtype)
