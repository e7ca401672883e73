"""Every autograd Function: gradients by finite differences in float64
(pytransformer.autograd.gradcheck), and every kernel Function's forward and
input gradients against pytransformer.reference in float32.

gradcheck runs on small shapes (each element costs two forward passes) with
its own tolerances (eps 1e-6, rtol 1e-3, atol 1e-5). Inputs of functions with
a kink (relu, abs, max) are kept away from it so the central difference does
not straddle it. The reference comparisons use the float32 tolerances of
tests/helpers.py (FWD_TOL for values, GRAD_TOL for gradients).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer import reference as ref
from pytransformer.autograd import Tensor, cat, gradcheck, kernels, stack
from pytransformer.autograd.basic import Permute
from pytransformer.nn import functional as F
from tests.helpers import assert_close, rand, seeds

F64 = np.float64


def leaf(a, requires_grad=True):
    """A float64 leaf tensor on a copy of `a`."""
    return Tensor(np.array(a, dtype=F64), requires_grad=requires_grad)


def away_from_zero(rng, shape, margin=0.1):
    """Random values with |x| >= margin (no kink inside the difference)."""
    x = rng.standard_normal(shape)
    return np.where(x < 0, -1, 1) * (margin + np.abs(x))


def check(fn, *arrays):
    """gradcheck fn over float64 leaves made from `arrays`."""
    assert gradcheck(fn, [leaf(a) for a in arrays])


def grad_fn_name(t):
    return type(t.grad_fn).__name__


# ----------------------------------------------------------------------------
# arithmetic with broadcasting

small = st.integers(1, 3)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together: b drops leading dims of a and
    turns some of the rest into 1 (or a does, when swapped)."""
    a = draw(st.lists(small, min_size=0, max_size=3))
    keep = draw(st.integers(0, len(a)))
    b = [1 if draw(st.booleans()) else s for s in a[len(a) - keep:]]
    if draw(st.booleans()):
        a, b = b, a
    return tuple(a), tuple(b)


OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
       "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@pytest.mark.parametrize("op", sorted(OPS))
@given(shapes=broadcast_pair(), seed=seeds)
def test_binary_broadcast_gradcheck(op, shapes, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shapes[0])
    b = away_from_zero(rng, shapes[1], 0.5)   # a safe divisor
    f = OPS[op]
    out = f(leaf(a, False), leaf(b, False))
    assert grad_fn_name(f(leaf(a), leaf(b))) == op.capitalize()
    np.testing.assert_array_equal(out.data, f(a, b))
    check(f, a, b)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("other", [2.5, -3, np.float64(1.5), np.float32(0.75),
                                   np.array(2.0), np.array([[1.5], [-2.0]])])
def test_binary_with_constant_both_sides(op, other):
    """Tensor op constant and constant op Tensor (the reflected methods)."""
    rng = np.random.default_rng(1)
    x = away_from_zero(rng, (2, 3), 0.5)
    f = OPS[op]
    const = np.asarray(other, dtype=F64) if isinstance(other, np.ndarray) else other
    assert gradcheck(lambda t: f(t, const), [leaf(x)])
    assert gradcheck(lambda t: f(const, t), [leaf(x)])
    np.testing.assert_allclose(f(const, leaf(x)).data, f(np.asarray(other, F64), x))


def test_neg_pow_exp_log_tanh_abs_gradcheck():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3))
    pos = np.abs(x) + 0.5
    check(lambda t: -t, x)
    for p in (2, 3, -1.5, 0.5, 0.0):
        check(lambda t: t ** p, pos)
    check(lambda t: t ** 2, x)
    check(lambda t: t.sqrt(), pos)
    check(lambda t: t.exp(), x)
    check(lambda t: t.log(), pos)
    check(lambda t: t.tanh(), x)
    check(lambda t: t.abs(), away_from_zero(rng, (2, 3)))
    for name, fn in (("Neg", lambda t: -t), ("Pow", lambda t: t ** 2), ("Exp", Tensor.exp),
                     ("Log", Tensor.log), ("Tanh", Tensor.tanh), ("Abs", Tensor.abs)):
        assert grad_fn_name(fn(leaf(pos))) == name


def test_abs_gradient_at_zero_is_zero():
    x = leaf([-2.0, 0.0, 3.0])
    x.abs().sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("mask_shape", [(2, 3, 4), (2, 1, 4), (4,), (1, 3, 1)])
@pytest.mark.parametrize("value", [0.0, -1e9, float("-inf")])
def test_masked_fill_gradcheck(mask_shape, value):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4))
    mask = rng.random(mask_shape) < 0.5
    y = leaf(x).masked_fill(mask, value)
    full = np.broadcast_to(mask, x.shape)
    np.testing.assert_array_equal(y.data, np.where(full, value, x))
    # the filled positions get no gradient (value may be -inf: only use it via exp)
    check(lambda t: t.masked_fill(mask, value).exp(), x)
    t = leaf(x)
    t.masked_fill(mask, value).exp().sum().backward()
    assert np.all(t.grad[full] == 0) and np.all(t.grad[~full] != 0)


def test_masked_fill_refuses_a_non_bool_mask():
    with pytest.raises(TypeError, match="mask"):
        leaf(np.zeros(3)).masked_fill(np.array([1, 0, 1]), 0.0)


# ----------------------------------------------------------------------------
# reductions

DIMS = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean_gradcheck(dim, keepdim):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4))
    axis = dim if not isinstance(dim, tuple) else tuple(d % 3 for d in dim)
    for name, np_fn in (("sum", np.sum), ("mean", np.mean)):
        y = getattr(leaf(x), name)(dim=dim, keepdim=keepdim)
        np.testing.assert_allclose(y.data, np_fn(x, axis=axis, keepdims=keepdim), rtol=1e-14)
        check(lambda t: getattr(t, name)(dim=dim, keepdim=keepdim), x)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_amax_gradcheck_without_ties(dim, keepdim):
    x = np.random.default_rng(5).permutation(24).reshape(2, 3, 4) * 0.1  # distinct
    axis = dim if not isinstance(dim, tuple) else tuple(d % 3 for d in dim)
    y = leaf(x).amax(dim=dim, keepdim=keepdim)
    np.testing.assert_array_equal(y.data, np.amax(x, axis=axis, keepdims=keepdim))
    check(lambda t: t.amax(dim=dim, keepdim=keepdim), x)


@given(data=st.data(), seed=seeds)
def test_reductions_random_shapes_and_dims(data, seed):
    shape = tuple(data.draw(st.lists(small, min_size=1, max_size=4), label="shape"))
    dims = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1,
                              max_size=len(shape), unique_by=lambda d: d % len(shape)),
                     label="dims")
    keepdim = data.draw(st.booleans(), label="keepdim")
    dim = tuple(dims)
    x = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.25
    axis = tuple(d % len(shape) for d in dims)
    for name, np_fn in (("sum", np.sum), ("mean", np.mean), ("amax", np.amax)):
        y = getattr(leaf(x), name)(dim=dim, keepdim=keepdim)
        np.testing.assert_allclose(y.data, np_fn(x, axis=axis, keepdims=keepdim), rtol=1e-14)
        check(lambda t: getattr(t, name)(dim=dim, keepdim=keepdim), x)


def test_amax_and_max_share_the_gradient_among_ties():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    (x.amax(dim=1) * leaf([1.0, 4.0], False)).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [2, 2, 0]])
    y = leaf([[5.0, 1.0], [5.0, 5.0]])
    y.max().backward()   # dim=None: the global maximum, 3 ties
    np.testing.assert_allclose(y.grad, [[1 / 3, 0], [1 / 3, 1 / 3]])


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_dim_gradcheck_and_indices(dim, keepdim):
    x = np.random.default_rng(6).permutation(24).reshape(2, 3, 4) * 0.1
    values, idx = leaf(x).max(dim=dim, keepdim=keepdim)
    assert grad_fn_name(values) == "MaxDim" and not idx.requires_grad
    np.testing.assert_array_equal(values.data, np.max(x, axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(idx.data, np.argmax(x, axis=dim, keepdims=keepdim)
                                  if keepdim else np.argmax(x, axis=dim))
    check(lambda t: t.max(dim=dim, keepdim=keepdim), x)   # the int indices are skipped


def test_max_dim_gives_the_gradient_to_the_first_tie():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    x.max(dim=1)[0].sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [1, 0, 0]])


# ----------------------------------------------------------------------------
# shapes and indexing

SHAPE_FNS = {
    "reshape": lambda t: t.reshape(4, -1),
    "view": lambda t: t.view((3, 2, 4)),
    "flatten": lambda t: t.flatten(1),
    "unsqueeze": lambda t: t.unsqueeze(-2),
    "squeeze": lambda t: t.unsqueeze(0).squeeze(),
    "permute": lambda t: t.permute(2, 0, 1),
    "permute_neg": lambda t: t.permute(-1, -3, -2),
    "transpose": lambda t: t.transpose(0, 2),
    "T": lambda t: t.T,
    "expand": lambda t: t[:, :1].expand(5, -1, 3, -1),
    "expand_same": lambda t: t.expand(2, 3, 4),
    "split": lambda t: t.split(3, dim=-1)[1],
    "chunk": lambda t: t.chunk(2, dim=1)[0],
    "narrow": lambda t: t.narrow(2, 1, 2),
}


@pytest.mark.parametrize("name", sorted(SHAPE_FNS))
def test_shape_functions_gradcheck(name):
    x = np.random.default_rng(7).standard_normal((2, 3, 4))
    # a non-uniform upstream (gradcheck projects on random directions) makes
    # a permutation or a wrong sum-back visible
    check(SHAPE_FNS[name], x)


def test_shape_functions_match_numpy():
    x = np.arange(24.0).reshape(2, 3, 4)
    t = leaf(x)
    np.testing.assert_array_equal(t.permute(2, 0, 1).data, x.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.transpose(0, 2).data, np.swapaxes(x, 0, 2))
    np.testing.assert_array_equal(t[:, :1].expand(5, -1, 3, -1).data,
                                  np.broadcast_to(x[:, :1], (5, 2, 3, 4)))
    assert grad_fn_name(t.reshape(24)) == "Reshape"
    assert grad_fn_name(t.T) == "Permute"
    assert grad_fn_name(t.expand(2, 3, 4)) == "Expand"
    with pytest.raises(ValueError, match="permutation"):
        t.permute(0, 0, 1)
    with pytest.raises(ValueError, match="reshape"):
        t.reshape(5, -1)
    with pytest.raises(ValueError, match="expand"):
        t.expand(2, 5, 4)


INDICES = {
    "int": 1,
    "neg_int": -1,
    "slices": (slice(1, None), slice(None, None, 2)),
    "neg_steps": (slice(None, None, -1), slice(2, 0, -1), slice(None, None, -2)),
    "ellipsis_none": (Ellipsis, None, 1),
    "int_and_slice": (0, slice(None), slice(1, 3)),
    "repeated_rows": [0, 0, 1, 0],
    "repeated_pairs": (np.array([0, 1, 1, 1]), np.array([2, 2, 0, 2])),
    "mixed_advanced": (slice(None), [1, 1, 0], slice(None, None, -1)),
    "bool_full": "bool_full",
    "bool_rows": np.array([True, False]),
    "bool_last": (Ellipsis, np.array([True, False, True, True])),
}


@pytest.mark.parametrize("name", sorted(INDICES))
def test_getitem_gradcheck(name):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4))
    index = INDICES[name]
    if name == "bool_full":
        index = rng.random((2, 3, 4)) < 0.5
    y = leaf(x)[index]
    np.testing.assert_array_equal(y.data, x[index])
    check(lambda t: t[index], x)


@st.composite
def basic_index(draw, shape):
    """A random basic index for `shape`: per dim an int (maybe negative) or a
    slice with any start/stop/step (negative steps included)."""
    parts = []
    for n in shape[:draw(st.integers(1, len(shape)))]:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 1, n + 1)
            step = draw(st.none() | st.sampled_from([1, 2, 3, -1, -2]))
            parts.append(slice(draw(bound), draw(bound), step))
    return tuple(parts)


@given(data=st.data(), seed=seeds)
def test_getitem_random_basic_indices(data, seed):
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3), label="shape"))
    index = data.draw(basic_index(shape), label="index")
    x = np.random.default_rng(seed).standard_normal(shape)
    y = leaf(x)[index]
    np.testing.assert_array_equal(y.data, x[index])
    if y.data.size:
        check(lambda t: t[index], x)
    # a random advanced index along the first dim, repeats allowed
    rows = data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=5),
                     label="rows")
    check(lambda t: t[rows], x)


def test_getitem_repeated_indices_accumulate():
    x = leaf([1.0, 2.0, 3.0])
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])


def test_getitem_with_tensor_indices():
    x = leaf(np.arange(6.0).reshape(2, 3))
    ids = Tensor(np.array([2, 2, 0]))
    mask = x > 2.5
    x[:, ids].sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 0, 2], [1, 0, 2]])
    x.grad = None
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad, mask.data.astype(F64))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_gradcheck(dim):
    rng = np.random.default_rng(9)
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, n in zip(shapes, (1, 2, 3)):
        s[dim] = n   # different sizes along dim
    arrays = [rng.standard_normal(s) for s in shapes]
    y = cat([leaf(a) for a in arrays], dim=dim)
    np.testing.assert_array_equal(y.data, np.concatenate(arrays, axis=dim))
    check(lambda *ts: cat(ts, dim=dim), *arrays)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_stack_gradcheck(dim):
    rng = np.random.default_rng(10)
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    np.testing.assert_array_equal(stack([leaf(a) for a in arrays], dim=dim).data,
                                  np.stack(arrays, axis=dim))
    check(lambda *ts: stack(ts, dim=dim), *arrays)


def test_cat_and_stack_refuse_mixed_float_dtypes():
    a, b = Tensor(np.zeros(2, np.float32)), Tensor(np.zeros(2))
    with pytest.raises(TypeError, match="dtype"):
        cat([a, b])
    with pytest.raises(TypeError, match="dtype"):
        stack([a, b])


# ----------------------------------------------------------------------------
# matrix products

@pytest.mark.parametrize("a_shape,b_shape,fn", [
    ((3, 4), (4, 5), "MatMul2D"),
    ((2, 3, 4), (4, 5), "MatMul2D"),        # N-D @ 2-D: one GEMM on the C core
    ((2, 1, 3, 4), (4, 2), "MatMul2D"),
    ((2, 3, 4), (2, 4, 5), "MatMul"),       # batched
    ((2, 1, 3, 4), (3, 4, 5), "MatMul"),    # broadcast batch dims
    ((3, 4), (2, 4, 5), "MatMul"),          # 2-D broadcast against a batch
    ((4,), (4,), "MatMul"),                 # 1-D operands
    ((4,), (4, 5), "MatMul"),
    ((3, 4), (4,), "MatMul"),
    ((4,), (2, 4, 5), "MatMul"),
    ((2, 3, 4), (4,), "MatMul"),
])
def test_matmul_gradcheck(a_shape, b_shape, fn):
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    y = leaf(a) @ leaf(b)
    assert grad_fn_name(y) == fn
    np.testing.assert_allclose(y.data, a @ b, rtol=1e-12, atol=1e-12)
    check(lambda s, t: s @ t, a, b)


def test_matmul2d_with_a_transposed_weight_and_an_array_operand():
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))
    check(lambda s, t: s @ t.T, x, w)      # w.T is a non-contiguous view
    arr = rng.standard_normal((4, 2))
    assert gradcheck(lambda s: s @ arr, [leaf(x)])
    assert gradcheck(lambda s: arr.T @ s, [leaf(rng.standard_normal((4, 3)))])


def test_matmul_bad_operands():
    a = leaf(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="do not match"):
        a @ leaf(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="dtype"):
        a @ Tensor(np.zeros((3, 2), np.float32))


# ----------------------------------------------------------------------------
# dtype and copies

def test_cast_gradient_comes_back_in_the_input_dtype():
    x = leaf([1.0, 2.0, 3.0])
    y = x.float()
    assert y.dtype == np.float32 and grad_fn_name(y) == "Cast"
    (y * Tensor(np.array([1.5, -2.0, 4.0], np.float32))).sum().backward()
    assert x.grad.dtype == F64
    np.testing.assert_array_equal(x.grad, [1.5, -2.0, 4.0])
    assert x.to(F64) is x   # no-op cast: no node


def test_cast_round_trip_gradient():
    # float64 -> float32 -> float64: the upstream gradient passes through
    # float32 on its way back (finite differences in float32 say nothing)
    x = leaf(np.random.default_rng(13).standard_normal((2, 3)))
    u = np.random.default_rng(14).standard_normal((2, 3))
    y = x.float().double()
    assert y.dtype == F64 and grad_fn_name(y) == "Cast"
    y.backward(u)
    np.testing.assert_array_equal(x.grad, u.astype(np.float32).astype(F64))


def test_clone_and_contiguous_gradcheck():
    x = np.random.default_rng(15).standard_normal((3, 4))
    check(lambda t: t.clone() * 2.0, x)
    check(lambda t: t.T.contiguous(), x)
    t = leaf(x)
    c = t.clone()
    assert grad_fn_name(c) == "Clone" and not np.shares_memory(c.data, t.data)


# ----------------------------------------------------------------------------
# kernel Functions: gradcheck in float64

@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias):
    rng = np.random.default_rng(20)
    args = [rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))]
    if bias:
        args.append(rng.standard_normal(5))
    y = F.linear(*[leaf(a) for a in args])
    assert grad_fn_name(y) == "Linear"
    check(F.linear, *args)


def test_relu_gelu_gradcheck():
    x = away_from_zero(np.random.default_rng(21), (3, 5))
    check(F.relu, x)
    check(lambda t: t.relu(), x)
    check(F.gelu, x)
    check(lambda t: F.gelu(t, approximate="tanh"), x)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(leaf(x), approximate="fast")


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "none"])
def test_bias_act_gradcheck(activation):
    rng = np.random.default_rng(22)
    b = rng.standard_normal(4)
    x = away_from_zero(rng, (2, 3, 4)) - b      # x + b away from relu's kink
    check(lambda s, t: kernels.BiasAct.apply(s, t, activation), x, b)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_ffn_gradcheck(activation):
    rng = np.random.default_rng(23)
    args = [rng.standard_normal((2, 3, 4)), rng.standard_normal((6, 4)), rng.standard_normal(6),
            rng.standard_normal((5, 6)), rng.standard_normal(5)]
    check(lambda *ts: kernels.ffn(*ts, activation=activation), *args)


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_softmax_log_softmax_gradcheck_every_dim(dim):
    x = np.random.default_rng(24).standard_normal((2, 3, 4)) * 2
    y = F.softmax(leaf(x), dim=dim)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    np.testing.assert_allclose(y.data, e / e.sum(axis=dim, keepdims=True), rtol=1e-12)
    check(lambda t: F.softmax(t, dim=dim), x)
    check(lambda t: F.log_softmax(t, dim=dim), x)
    check(lambda t: t.softmax(dim), x)
    check(lambda t: t.log_softmax(dim), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_gradcheck(reduction, label_smoothing, ignore):
    rng = np.random.default_rng(25)
    logits = rng.standard_normal((5, 4)) * 2
    targets = rng.integers(0, 4, 5)
    if ignore:
        targets[[1, 3]] = -100
    check(lambda t: F.cross_entropy(t, targets, reduction=reduction,
                                    label_smoothing=label_smoothing), logits)
    # a custom ignore_index, and (N, C, d) logits with classes on axis 1
    tgt = np.where(targets == -100, 2, targets)
    check(lambda t: F.cross_entropy(t, tgt, ignore_index=2, reduction=reduction,
                                    label_smoothing=label_smoothing), logits)
    x3 = rng.standard_normal((2, 4, 3))
    t3 = rng.integers(0, 4, (2, 3))
    check(lambda t: F.cross_entropy(t, t3, reduction=reduction,
                                    label_smoothing=label_smoothing), x3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_one_dim_logits_and_a_zero_dim_target(reduction):
    logits = np.random.default_rng(26).standard_normal(4)
    check(lambda t: F.cross_entropy(t, np.array(2), reduction=reduction), logits)


def test_cross_entropy_ignored_rows_get_zero_gradient():
    logits = leaf(np.random.default_rng(26).standard_normal((4, 3)))
    F.cross_entropy(logits, np.array([0, -100, 2, -100])).backward()
    assert np.all(logits.grad[[1, 3]] == 0) and np.all(logits.grad[[0, 2]] != 0)


@pytest.mark.parametrize("params", ["weight_bias", "none", "bias", "weight"])
def test_layer_norm_gradcheck(params):
    rng = np.random.default_rng(27)
    x = rng.standard_normal((2, 3, 5))
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    if params == "weight_bias":
        check(lambda s, u, v: F.layer_norm(s, (5,), u, v), x, w, b)
    elif params == "none":
        check(lambda s: F.layer_norm(s, 5), x)
    elif params == "bias":
        check(lambda s, v: F.layer_norm(s, 5, bias=v), x, b)
    else:
        check(lambda s, u: F.layer_norm(s, 5, weight=u), x, w)


def test_layer_norm_with_parameters_not_requiring_grad():
    rng = np.random.default_rng(28)
    x = rng.standard_normal((3, 4))
    w, b = leaf(rng.standard_normal(4), False), leaf(rng.standard_normal(4))
    assert gradcheck(lambda s, v: F.layer_norm(s, 4, w, v), [leaf(x), b])
    assert gradcheck(lambda v: F.layer_norm(leaf(x, False), 4, w, v), [b])


@pytest.mark.parametrize("padding_idx", [None, 1, -1])
def test_embedding_gradcheck(padding_idx):
    rng = np.random.default_rng(29)
    weight = rng.standard_normal((4, 3))
    ids = np.array([[1, 3, 1], [0, 1, 3]])       # repeated ids, the padding id
    if padding_idx is None:
        check(lambda w: F.embedding(ids, w), weight)
    else:
        # the forward reads the padding row but its gradient is 0 by design
        # (as in PyTorch), so differences run over the other rows only
        pad = padding_idx % 4
        pad_row = leaf(weight[pad:pad + 1], False)
        rows = np.delete(weight, pad, axis=0)
        check(lambda w: F.embedding(ids, cat([w[:pad], pad_row, w[pad:]]),
                                    padding_idx=padding_idx), rows)
    w = leaf(weight)
    y = F.embedding(Tensor(ids), w, padding_idx=padding_idx)
    np.testing.assert_array_equal(y.data, weight[ids])
    y.sum().backward()
    counts = np.bincount(ids.ravel(), minlength=4).astype(F64)
    if padding_idx is not None:
        counts[padding_idx % 4] = 0
    np.testing.assert_array_equal(w.grad, np.repeat(counts[:, None], 3, axis=1))


@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_dropout_gradient_is_mask_over_keep_probability(p):
    rng = np.random.default_rng(30)
    x = rng.standard_normal((4, 7))
    mask = ref.dropout_mask(x.shape, p, 1234).astype(F64)
    t = leaf(x)
    y = F.dropout(t, p=p, seed=1234)
    np.testing.assert_allclose(y.data, x * mask / (1 - p), rtol=1e-15)
    u = rng.standard_normal(x.shape)
    y.backward(u)
    np.testing.assert_allclose(t.grad, u * mask / (1 - p), rtol=1e-15)
    check(lambda s: F.dropout(s, p=p, seed=1234), x)


def test_dropout_identity_when_not_training_or_p_zero():
    t = leaf(np.ones(3))
    assert F.dropout(t, p=0.5, training=False) is t
    assert F.dropout(t, p=0.0) is t
    with pytest.raises(ValueError, match="p"):
        F.dropout(t, p=1.5)


# ----------------------------------------------------------------------------
# attention: fused (need_weights=False) and with weights

B, H, TQ, TK, D = 1, 2, 3, 4, 2


def attn_inputs(rng, dtype=F64, tq=TQ, tk=TK):
    return [rng.standard_normal(s).astype(dtype) for s in
            ((B, H, tq, D), (B, H, tk, D), (B, H, tk, D + 1))]


def masks(rng):
    """name -> (attn_mask, is_causal); bool True = attend."""
    bool_mask = rng.random((TQ, TK)) < 0.7
    bool_mask[:, 0] = True
    dead = bool_mask.copy()
    dead[1] = False                                  # a fully masked row
    float_mask = rng.standard_normal((B, 1, TQ, TK))
    float_dead = float_mask.copy()
    float_dead[0, 0, 2] = -np.inf
    return {"none": (None, False), "causal": (None, True), "bool": (bool_mask, False),
            "bool_causal": (bool_mask, True), "float": (float_mask, False),
            "bool_dead_row": (dead, False), "float_dead_row": (float_dead, False)}


MASK_NAMES = ["none", "causal", "bool", "bool_causal", "float", "bool_dead_row",
              "float_dead_row"]


@pytest.mark.parametrize("mask_name", MASK_NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_gradcheck(mask_name, need_weights):
    rng = np.random.default_rng(31)
    q, k, v = attn_inputs(rng)
    mask, causal = masks(rng)[mask_name]

    def fn(a, b, c):
        # with weights, gradcheck's loss projects BOTH outputs
        return kernels.scaled_dot_product_attention(a, b, c, attn_mask=mask, is_causal=causal,
                                                    need_weights=need_weights)

    out = fn(leaf(q), leaf(k), leaf(v))
    assert grad_fn_name(out[0] if need_weights else out) == (
        "AttentionWithWeights" if need_weights else "Attention")
    check(fn, q, k, v)
    ts = [leaf(a) for a in (q, k, v)]
    res = fn(*ts)
    loss = (res[0].sum() + (res[1] * res[1]).sum()) if need_weights else res.sum()
    loss.backward()
    for t in ts:
        assert np.all(np.isfinite(t.grad))
    if mask_name.endswith("dead_row"):
        row = 1 if mask_name == "bool_dead_row" else 2
        out = res[0] if need_weights else res
        assert np.all(out.data[:, :, row] == 0) and np.all(ts[0].grad[:, :, row] == 0)


def test_attention_with_weights_only_the_weights_in_the_loss():
    rng = np.random.default_rng(32)
    q, k, v = attn_inputs(rng)
    assert gradcheck(lambda a, b: kernels.scaled_dot_product_attention(
        a, b, leaf(v, False), need_weights=True)[1], [leaf(q), leaf(k)])


def test_functional_sdpa_on_3d_inputs_and_scale():
    rng = np.random.default_rng(33)
    q, k, v = (rng.standard_normal((2, n, 3)) for n in (3, 4, 4))
    mask = rng.random((3, 4)) < 0.6
    check(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask, scale=0.3),
          q, k, v)
    check(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), q, k, v)


def test_attention_refuses_a_mask_that_requires_grad():
    rng = np.random.default_rng(34)
    q, k, v = (leaf(a) for a in attn_inputs(rng))
    with pytest.raises(ValueError, match="attn_mask"):
        kernels.scaled_dot_product_attention(q, k, v, attn_mask=leaf(np.zeros((TQ, TK))))


# ----------------------------------------------------------------------------
# kernel Functions against pytransformer.reference (float32)

F32 = np.float32


def run(fn, arrays, upstream_seed=99):
    """Forward fn on float32 leaves, backward with a random upstream
    gradient; returns (output array, upstream, [input grads])."""
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    y = fn(*ts)
    g = np.random.default_rng(upstream_seed).standard_normal(y.shape).astype(F32)
    y.backward(g)
    assert y.dtype == F32 and all(t.grad.dtype == F32 for t in ts)
    return y.data, g, [t.grad for t in ts]


@given(seed=seeds, n=st.integers(1, 5), i=st.integers(1, 9), o=st.integers(1, 9),
       bias=st.booleans())
def test_linear_against_reference(seed, n, i, o, bias):
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, (2, n, i), F32), rand(rng, (o, i), F32)] + (
        [rand(rng, (o,), F32)] if bias else [])
    y, g, grads = run(F.linear, arrays)
    assert_close(y, ref.linear(*arrays), F32, scale=np.sqrt(i))
    dx, dw, db = ref.linear_backward(g, arrays[0], arrays[1], need_bias_grad=bias)
    assert_close(grads[0], dx, F32, grad=True, scale=np.sqrt(o))
    assert_close(grads[1], dw, F32, grad=True, scale=np.sqrt(2 * n))
    if bias:
        assert_close(grads[2], db, F32, grad=True, scale=np.sqrt(2 * n))


@pytest.mark.parametrize("name", ["relu", "gelu", "gelu_tanh"])
def test_activations_against_reference(name):
    rng = np.random.default_rng(40)
    x = rand(rng, (3, 17), F32, 3.0)
    fn = {"relu": F.relu, "gelu": F.gelu,
          "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}[name]
    y, g, (dx,) = run(fn, [x])
    if name == "relu":
        assert_close(y, ref.relu(x), F32)
        assert_close(dx, ref.relu_backward(g, x), F32, grad=True)
    else:
        approx = "tanh" if name == "gelu_tanh" else "none"
        assert_close(y, ref.gelu(x, approx), F32)
        assert_close(dx, ref.gelu_backward(g, x, approx), F32, grad=True)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "none"])
def test_bias_act_and_ffn_against_reference(activation):
    rng = np.random.default_rng(41)
    x, b = rand(rng, (2, 3, 8), F32), rand(rng, (8,), F32)
    y, g, (dx, db) = run(lambda s, t: kernels.BiasAct.apply(s, t, activation), [x, b])
    assert_close(y, ref.bias_act(x, b, activation), F32)
    rdx, rdb = ref.bias_act_backward(g, x, b, activation)
    assert_close(dx, rdx, F32, grad=True)
    assert_close(db, rdb, F32, grad=True, scale=np.sqrt(6))
    if activation == "none":
        return
    arrays = [rand(rng, (2, 3, 8), F32), rand(rng, (16, 8), F32, 0.3), rand(rng, (16,), F32),
              rand(rng, (5, 16), F32, 0.3), rand(rng, (5,), F32)]
    y, g, grads = run(lambda *ts: kernels.ffn(*ts, activation=activation), arrays)
    assert_close(y, ref.ffn(*arrays, activation), F32, scale=4)
    for got, want in zip(grads, ref.ffn_backward(g, *arrays, activation)):
        assert_close(got, want, F32, grad=True, scale=4)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_log_softmax_against_reference(dim):
    rng = np.random.default_rng(42)
    x = rand(rng, (3, 4, 9), F32, 3.0)

    def moved(a):        # reference works on the last axis
        return np.moveaxis(a, dim, -1)

    y, g, (dx,) = run(lambda t: F.softmax(t, dim), [x])
    ry = ref.softmax(moved(x).astype(F64))
    assert_close(moved(y), ry, F32)
    assert_close(moved(dx), ref.softmax_backward(moved(g).astype(F64), ry), F32, grad=True)
    y, g, (dx,) = run(lambda t: F.log_softmax(t, dim), [x])
    ry = ref.log_softmax(moved(x).astype(F64))
    assert_close(moved(y), ry, F32, scale=4)
    assert_close(moved(dx), ref.log_softmax_backward(moved(g).astype(F64), ry), F32,
                 grad=True, scale=3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_against_reference(reduction, label_smoothing):
    rng = np.random.default_rng(43)
    logits = rand(rng, (6, 11), F32, 2.0)
    targets = rng.integers(0, 11, 6)
    targets[2] = -100
    opts = dict(ignore_index=-100, label_smoothing=label_smoothing, reduction=reduction)
    y, g, (dx,) = run(lambda t: F.cross_entropy(t, targets, **opts), [logits])
    assert_close(y, ref.cross_entropy(logits.astype(F64), targets, **opts), F32)
    want = ref.cross_entropy_backward(g.astype(F64), logits.astype(F64), targets, **opts)
    assert_close(dx, want, F32, grad=True)


@pytest.mark.parametrize("params", ["weight_bias", "none", "bias"])
def test_layer_norm_against_reference(params):
    rng = np.random.default_rng(44)
    x, w, b = rand(rng, (2, 3, 10), F32, 2.0), rand(rng, (10,), F32), rand(rng, (10,), F32)
    if params == "weight_bias":
        y, g, (dx, dw, db) = run(lambda s, u, v: F.layer_norm(s, 10, u, v), [x, w, b])
        assert_close(y, ref.layer_norm(x.astype(F64), w, b), F32)
        rdx, rdw, rdb = ref.layer_norm_backward(g.astype(F64), x.astype(F64), w.astype(F64))
        assert_close(dw, rdw, F32, grad=True, scale=3)
        assert_close(db, rdb, F32, grad=True, scale=3)
    elif params == "none":
        y, g, (dx,) = run(lambda s: F.layer_norm(s, 10), [x])
        assert_close(y, ref.layer_norm(x.astype(F64)), F32)
        rdx = ref.layer_norm_backward(g.astype(F64), x.astype(F64))[0]
    else:
        y, g, (dx, db) = run(lambda s, v: F.layer_norm(s, 10, bias=v), [x, b])
        assert_close(y, ref.layer_norm(x.astype(F64), None, b), F32)
        rdx = ref.layer_norm_backward(g.astype(F64), x.astype(F64))[0]
        assert_close(db, g.astype(F64).reshape(-1, 10).sum(0), F32, grad=True, scale=3)
    assert_close(dx, rdx, F32, grad=True, scale=2)


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_against_reference(padding_idx):
    rng = np.random.default_rng(45)
    weight = rand(rng, (5, 6), F32)
    ids = rng.integers(0, 5, (3, 4))
    ids[0, :2] = 2
    w = Tensor(weight.copy(), requires_grad=True)
    y = F.embedding(ids, w, padding_idx=padding_idx)
    g = rand(rng, y.shape, F32)
    y.backward(g)
    np.testing.assert_array_equal(y.data, ref.embedding(ids, weight))
    assert_close(w.grad, ref.embedding_backward(g, ids, 5, padding_idx), F32, grad=True)


def test_dropout_against_reference():
    rng = np.random.default_rng(46)
    x = rand(rng, (5, 13), F32)
    y, g, (dx,) = run(lambda t: F.dropout(t, p=0.3, seed=77), [x])
    mask = ref.dropout_mask(x.shape, 0.3, 77)
    assert_close(y, ref.dropout(x, mask, 0.3), F32)
    assert_close(dx, ref.dropout_backward(g, mask, 0.3), F32, grad=True)


def weights_path_backward(g_out, g_p, q, k, v, p, scale):
    """Reference gradients of (out, P) in float64 from the math:
    dP = g_p + g_out v^T, dS = P (dP - sum(dP P)), dq = scale dS k, ..."""
    dp = g_p + g_out @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return (scale * ds @ k, scale * np.swapaxes(ds, -1, -2) @ q,
            np.swapaxes(p, -1, -2) @ g_out)


@pytest.mark.parametrize("mask_name", MASK_NAMES)
def test_attention_against_reference(mask_name):
    rng = np.random.default_rng(47)
    q, k, v = attn_inputs(rng, F32)
    mask, causal = masks(rng)[mask_name]
    if mask is not None and mask.dtype == F64:
        mask = mask.astype(F32)
    opts = dict(attn_mask=mask, is_causal=causal)
    y, g, grads = run(lambda a, b, c: kernels.scaled_dot_product_attention(a, b, c, **opts),
                      [q, k, v])
    assert_close(y, ref.scaled_dot_product_attention(q, k, v, **opts), F32)
    for got, want in zip(grads, ref.attention_backward(g, q, k, v, **opts)):
        assert_close(got, want, F32, grad=True)
    # with weights but a loss over out only: the fused backward's result
    ts = [Tensor(a.copy(), requires_grad=True) for a in (q, k, v)]
    out, p = kernels.scaled_dot_product_attention(*ts, need_weights=True, **opts)
    out.backward(g)
    for t, want in zip(ts, ref.attention_backward(g, q, k, v, **opts)):
        assert_close(t.grad, want, F32, grad=True)
    # with weights: a loss over both outputs
    ts = [Tensor(a.copy(), requires_grad=True) for a in (q, k, v)]
    out, p = kernels.scaled_dot_product_attention(*ts, need_weights=True, **opts)
    rout, rp = ref.scaled_dot_product_attention(q, k, v, need_weights=True, **opts)
    assert_close(out.data, rout, F32)
    assert_close(p.data, rp, F32)
    g_out, g_p = rand(rng, out.shape, F32), rand(rng, p.shape, F32)
    ((out * Tensor(g_out)).sum() + (p * Tensor(g_p)).sum()).backward()
    p64 = rp.astype(F64)
    want = weights_path_backward(g_out.astype(F64), g_p.astype(F64), q.astype(F64),
                                 k.astype(F64), v.astype(F64), p64, 1 / np.sqrt(D))
    for t, w in zip(ts, want):
        assert np.all(np.isfinite(t.grad))
        assert_close(t.grad, w, F32, grad=True)


def test_softmax_of_a_permuted_view_uses_the_permute_function():
    x = leaf(np.random.default_rng(48).standard_normal((2, 3)))
    y = F.softmax(x, dim=0)
    assert isinstance(y.grad_fn, Permute)
