"""MultiheadAttention's dropout path (training with dropout > 0) masks as
the attention kernel does: its additive mask comes from the helper that
uses ops' own mask conversion, so with a vanishing dropout probability it
gives the kernel path's weights and outputs, for every kind of mask."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import nn
from pytransformer.autograd.tensor import Tensor


def _cases(rng, B, L, H):
    pad = np.zeros((B, L), bool)
    pad[1, 4:] = True                                      # sentence 1: 4 keys
    causal_bool = np.triu(np.ones((L, L), bool), 1)        # True = may not attend
    additive = rng.normal(0, 1, (L, L)).astype(np.float32)
    additive[0, 3] = additive[2, 5] = -np.inf
    per_head = rng.normal(0, 1, (B * H, L, L)).astype(np.float32)
    return {
        "none": {},
        "key padding": dict(key_padding_mask=pad),
        "bool attn_mask": dict(attn_mask=causal_bool),
        "float attn_mask": dict(attn_mask=additive),
        "per-head float + padding": dict(attn_mask=per_head, key_padding_mask=pad),
        "is_causal": dict(is_causal=True),
        "is_causal + padding": dict(is_causal=True, key_padding_mask=pad),
    }


@pytest.mark.parametrize("case", ["none", "key padding", "bool attn_mask", "float attn_mask",
                                  "per-head float + padding", "is_causal",
                                  "is_causal + padding"])
def test_dropout_path_masks_as_the_kernel(case):
    rng = np.random.default_rng(11)
    B, L, E, H = 2, 6, 8, 2
    pt.manual_seed(3)
    mha = nn.MultiheadAttention(E, H, dropout=1e-12)       # the dropout path, ~nothing dropped
    x = Tensor(rng.normal(0, 1, (B, L, E)).astype(np.float32))
    kw = _cases(rng, B, L, H)[case]
    mha.train()
    out_d, w_d = mha(x, x, x, average_attn_weights=False, **kw)
    mha.eval()
    out_k, w_k = mha(x, x, x, average_attn_weights=False, **kw)
    np.testing.assert_allclose(w_d.data, w_k.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_d.data, out_k.data, rtol=1e-5, atol=1e-6)
    if case != "none":
        assert (w_k.data == 0).any()                        # the mask did block something
