"""Parity with PyTorch: our modules, loaded with the weights of PyTorch modules
of the same configuration, give PyTorch's outputs and gradients.

The fixtures (tests/fixtures/nn/*.npz) were recorded with torch 2.13.0 by
tests/fixtures/make_nn_fixtures.py (see tests/fixtures/README.md); this file
only reads them with NumPy.

Tolerances (float32): outputs rtol 1e-5 / atol 2e-5, gradients rtol 1e-4 /
atol 1e-4 (summed over up to 2+2 layers of 16-wide float32 arithmetic in a
different order than PyTorch's kernels).
"""
import json
import pathlib

import numpy as np
import pytest

from pytransformer import nn
from pytransformer.autograd import tensor

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "nn"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz") if p.stem != "square_subsequent_mask")
OUT_TOL = dict(rtol=1e-5, atol=2e-5)
GRAD_TOL = dict(rtol=1e-4, atol=1e-4)


def _load(case):
    z = np.load(FIXTURES / f"{case}.npz", allow_pickle=False)
    cfg = json.loads(str(z["config"]))
    group = {}
    for k in z.files:
        head, _, rest = k.partition("/")
        if rest:
            group.setdefault(head, {})[rest] = z[k]
    return cfg, group


def _build(cfg):
    init = dict(cfg["init"])
    kind = cfg["module"]
    if kind == "MultiheadAttention":
        return nn.MultiheadAttention(**init)
    if kind == "TransformerEncoderLayer":
        return nn.TransformerEncoderLayer(**init)
    if kind == "TransformerDecoderLayer":
        return nn.TransformerDecoderLayer(**init)
    if kind == "Transformer":
        return nn.Transformer(**init)
    if kind in ("TransformerEncoder", "TransformerDecoder"):
        layer_kw = init.pop("encoder_layer" if kind == "TransformerEncoder" else "decoder_layer")
        norm = init.pop("norm")
        if norm is not None:
            norm = nn.LayerNorm(norm["LayerNorm"]["normalized_shape"], eps=norm["LayerNorm"]["eps"])
        if kind == "TransformerEncoder":
            return nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer_kw), init["num_layers"],
                                         norm=norm, enable_nested_tensor=init["enable_nested_tensor"])
        return nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer_kw), init["num_layers"],
                                     norm=norm)
    raise AssertionError(f"unknown module {kind}")


def _run(case, same_tensor=False):
    cfg, g = _load(case)
    module = _build(cfg)
    module.load_state_dict(g["param"])   # strict: the keys and shapes are PyTorch's
    inputs = {n: tensor(g["input"][n], requires_grad=True) for n in cfg["inputs"]}
    if same_tensor:  # one tensor as query, key and value: its gradient is the sum
        inputs["key"] = inputs["value"] = inputs["query"]
    masks = {n: g["input"][n] for n in cfg["masks"]}
    args = [inputs[n] for n in cfg["inputs"]]
    out = module(*args, **masks, **cfg["call"])
    outs = out if isinstance(out, tuple) else (out,)
    outs = {n: o for n, o in zip(cfg["outputs"], outs)}
    loss = sum((o * tensor(g["upstream"][n])).sum() for n, o in outs.items())
    loss.backward()
    return cfg, g, module, inputs, outs


@pytest.mark.parametrize("case", CASES)
def test_outputs_and_gradients_match_pytorch(case):
    cfg, g, module, inputs, outs = _run(case)
    for name, o in outs.items():
        np.testing.assert_allclose(o.data, g["output"][name], err_msg=f"output {name}",
                                   **OUT_TOL)
    params = dict(module.named_parameters())
    assert sorted(params) == sorted(g["param"])
    for key, p in params.items():
        np.testing.assert_allclose(p.grad, g["grad"][f"param/{key}"],
                                   err_msg=f"grad of {key}", **GRAD_TOL)
    for name in cfg["grad_inputs"]:
        np.testing.assert_allclose(inputs[name].grad, g["grad"][f"input/{name}"],
                                   err_msg=f"grad of input {name}", **GRAD_TOL)


def _is_self_attention(case):
    z = np.load(FIXTURES / f"{case}.npz", allow_pickle=False)
    return ("input/key" in z.files and np.array_equal(z["input/query"], z["input/key"])
            and np.array_equal(z["input/key"], z["input/value"]))


SELF_ATTENTION = [c for c in CASES if _is_self_attention(c)]


@pytest.mark.parametrize("case", SELF_ATTENTION)
def test_self_attention_with_one_input_tensor(case):
    """query is key is value: the packed single-GEMM path gives the same
    outputs, and the input gradient is the sum of PyTorch's three."""
    cfg, g, module, inputs, outs = _run(case, same_tensor=True)
    for name, o in outs.items():
        np.testing.assert_allclose(o.data, g["output"][name], **OUT_TOL)
    total = sum(g["grad"][f"input/{n}"] for n in ("query", "key", "value"))
    np.testing.assert_allclose(inputs["query"].grad, total, **GRAD_TOL)


def test_masked_row_gives_bias_like_pytorch():
    """A fully masked query row: PyTorch's need_weights=False path returns
    out_proj.bias there; so do we (and no NaN anywhere)."""
    cfg, g, module, inputs, outs = _run("mha_masked_row")
    out = outs["attn_output"].data
    assert np.all(np.isfinite(out))
    rows = np.all(g["input"]["attn_mask"], axis=-1) if g["input"]["attn_mask"].dtype == bool \
        else np.all(np.isinf(g["input"]["attn_mask"]), axis=-1)
    assert rows.any()
    np.testing.assert_allclose(out[:, rows], np.broadcast_to(
        module.out_proj.bias.data, out[:, rows].shape), rtol=1e-6, atol=1e-6)


def test_square_subsequent_mask_matches_pytorch():
    z = np.load(FIXTURES / "square_subsequent_mask.npz", allow_pickle=False)
    expected = z["output/mask"]
    got = nn.Transformer.generate_square_subsequent_mask(expected.shape[0]).data
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
