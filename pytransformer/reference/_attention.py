"""Scaled dot-product attention in NumPy (reference), computed in float64
and returned in the input dtype. Same mask / causal / scale semantics as
pytransformer.ops._attention: bool masks are True = attend, float masks are
added, causal masks j > i, a fully masked row gives zeros."""
import numpy as np


def _probs(q, k, attn_mask, is_causal, scale):
    """(P, scale) in float64: P (B,H,Tq,Tk) = softmax(scale q k^T + mask)."""
    D = q.shape[-1]
    if scale is None:
        scale = 1.0 / np.sqrt(D) if D > 0 else 1.0
    q64, k64 = q.astype(np.float64), k.astype(np.float64)
    S = scale * (q64 @ np.swapaxes(k64, -1, -2))
    if attn_mask is not None:
        if attn_mask.dtype == np.bool_:
            S = S + np.where(attn_mask, 0.0, -np.inf)
        else:
            S = S + attn_mask.astype(np.float64)
    Tq, Tk = S.shape[-2:]
    if is_causal:
        S = np.where(np.arange(Tk)[None, :] > np.arange(Tq)[:, None], -np.inf, S)
    m = S.max(axis=-1, keepdims=True) if Tk else np.full(S.shape[:-1] + (1,), -np.inf)
    dead = m == -np.inf                      # fully masked rows
    E = np.exp(S - np.where(dead, 0.0, m))   # exp(-inf) = 0 in dead rows
    Z = E.sum(axis=-1, keepdims=True)
    P = np.where(dead, 0.0, E / np.where(dead, 1.0, Z))
    return P, scale


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None,
                                 need_weights=False):
    """out (B, H, Tq, Dv) = softmax(scale q k^T + attn_mask) v for q (B, H,
    Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv); attn_mask broadcastable to
    (B, H, Tq, Tk) or None; scale None means 1/sqrt(D). (out, P) when
    need_weights, P (B, H, Tq, Tk) the probabilities."""
    P, _ = _probs(q, k, attn_mask, is_causal, scale)
    out = (P @ v.astype(np.float64)).astype(q.dtype)
    return (out, P.astype(q.dtype)) if need_weights else out


def attention_backward(grad_out, q, k, v, attn_mask=None, is_causal=False, scale=None):
    """(dq, dk, dv), shaped like q, k, v, of scaled_dot_product_attention
    for upstream grad_out (B, H, Tq, Dv); the other arguments are the
    forward's (P is recomputed)."""
    P, scale = _probs(q, k, attn_mask, is_causal, scale)
    g = grad_out.astype(np.float64)
    q64, k64, v64 = q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)
    dv = np.swapaxes(P, -1, -2) @ g
    dP = g @ np.swapaxes(v64, -1, -2)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))   # softmax backward
    dq = scale * (dS @ k64)
    dk = scale * (np.swapaxes(dS, -1, -2) @ q64)
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)
