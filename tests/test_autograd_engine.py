"""The autograd engine: accumulation, graph shapes, freeing, grad mode,
version counters, in-place rules, dtypes, deep graphs, memory, and
gradcheck itself."""
import gc
import sys
import threading
import weakref

import numpy as np
import pytest

from pytransformer.autograd import (Function, GradcheckError, Parameter, Tensor, enable_grad,
                                    gradcheck, is_grad_enabled, kernels, no_grad, tensor)
from pytransformer.nn import functional as F

F64 = np.float64


def leaf(a, dtype=F64):
    return Tensor(np.array(a, dtype=dtype), requires_grad=True)


# ----------------------------------------------------------------------------
# gradients: accumulation and graph shapes

def test_gradients_accumulate_across_backward_calls():
    x = leaf([1.0, -2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, -4.0, 6.0])
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, -1.0, 9.0])
    x.grad = None
    x.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])


def test_a_tensor_used_twice_diamond_graph():
    x = leaf([2.0, 3.0])
    a = x * 3.0                # two paths from x to the loss, joined by Mul
    b = x.exp()
    y = a * b + a              # a used twice as well
    y.sum().backward()
    e = np.exp([2.0, 3.0])
    # d/dx (3x e^x + 3x) = 3 e^x + 3x e^x + 3
    np.testing.assert_allclose(x.grad, 3 * e + 3 * np.array([2.0, 3.0]) * e + 3, rtol=1e-14)
    z = leaf([1.5])
    (z * z * z).backward(np.ones(1))   # the same tensor twice in one node
    np.testing.assert_allclose(z.grad, [3 * 1.5 ** 2])


def test_retain_graph_false_frees_the_graph_and_true_keeps_it():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    z = (x * x).sum()
    x.grad = None
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="retain_graph"):
        z.backward()


def test_a_shared_subgraph_is_freed_by_the_first_backward():
    x = leaf([1.0, 2.0])
    h = x.exp()
    a, b = h.sum(), (h * 2.0).sum()
    a.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        b.backward()


def test_backward_of_a_non_scalar_needs_a_gradient():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(RuntimeError, match="gradient"):
        y.backward()
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])
    one = leaf([[3.0]])
    (one * 2.0).backward()     # a one-element output is allowed
    np.testing.assert_array_equal(one.grad, [[2.0]])


def test_a_gradient_of_the_wrong_shape_raises():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        y.backward(np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones((1, 2)))


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()


def test_backward_on_a_leaf_and_a_tensor_gradient():
    x = leaf([1.0, 2.0])
    x.backward(Tensor(np.array([3.0, 4.0])))
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_only_the_part_that_requires_grad_gets_gradients():
    x, c = leaf([1.0, 2.0]), Tensor(np.array([5.0, 6.0]))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [5.0, 6.0])
    y = x * 2.0
    assert y.grad is None and not y.is_leaf


def test_retain_grad_on_a_non_leaf():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    h.retain_grad()
    g = x * 2.0             # not retained
    (h * h + h + g).sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data + 1)
    assert g.grad is None
    np.testing.assert_array_equal(x.grad, 3 * (2 * h.data + 1) + 2)
    root = leaf([1.0, 2.0]) * 2.0   # the root of backward keeps its gradient too
    root.retain_grad()
    root.backward(np.array([5.0, 7.0]))
    np.testing.assert_array_equal(root.grad, [5.0, 7.0])
    with pytest.raises(RuntimeError, match="retain_grad"):
        Tensor(np.ones(2)).retain_grad()


def test_backward_returning_a_wrong_shape_is_named():
    class Bad(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return g[:1]

    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"shape \(1,\).*shape \(2,\)"):
        Bad.apply(x).sum().backward()


def test_zero_dim_results_and_gradients_stay_arrays():
    # NumPy turns 0-d array arithmetic into scalars, which the kernels refuse
    y = leaf(2.0) * 3.0
    assert isinstance(y.data, np.ndarray) and y.shape == ()
    np.testing.assert_array_equal(F.relu(y).data, 6.0)
    z = leaf([1.0, -2.0])
    (F.relu(z.sum() * -1.0) * 2.0).backward()     # ReLU gets a 0-d gradient
    np.testing.assert_array_equal(z.grad, [-2.0, -2.0])


# ----------------------------------------------------------------------------
# grad mode

def test_no_grad_results_do_not_require_grad():
    x = leaf([1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2.0
        z = F.linear(x.reshape(1, 2), leaf(np.ones((3, 2))))
    assert is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert not z.requires_grad and z.grad_fn is None
    with pytest.raises(RuntimeError):
        y.sum().backward()


def test_no_grad_as_a_decorator_nested_and_enable_grad_inside():
    x = leaf([1.0, 2.0])

    @no_grad()
    def double(t):
        return t * 2.0

    @enable_grad()
    def triple(t):
        return t * 3.0

    assert not double(x).requires_grad
    assert is_grad_enabled()
    assert double.__name__ == "double"
    with no_grad():
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()           # nested exit restores the outer state
        with enable_grad():
            y = x * 4.0
        assert not is_grad_enabled()
        assert triple(x).requires_grad
        assert not (x * 5.0).requires_grad
    assert y.requires_grad and is_grad_enabled()
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []
    with no_grad():
        t = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_detach_shares_data_and_leaves_the_graph():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert np.shares_memory(d.data, y.data)
    np.testing.assert_array_equal(d.numpy(), [2.0, 4.0])


def test_numpy_is_refused_while_requiring_grad():
    x = leaf([1.0])
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    with pytest.raises(RuntimeError, match="detach"):
        (x * 2.0).numpy()
    assert x.detach().numpy() is x.data


# ----------------------------------------------------------------------------
# version counters and in-place rules

def test_in_place_change_of_a_saved_input_is_detected():
    w = leaf([1.0, 2.0])
    y = (w * w).sum()
    with no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_in_place_change_of_a_saved_output_is_detected():
    x = leaf([1.0, 2.0])
    e = x.exp()                   # Exp saves its output, not its input
    loss = e.sum()
    with no_grad():
        e.add_(1.0)
    with pytest.raises(RuntimeError, match="output 0.*modified in place"):
        loss.backward()
    e = x.exp()
    loss = e.sum()
    e.detach().add_(1.0)          # through a detached alias of the saved output
    del e                         # the check does not need the output tensor alive
    with pytest.raises(RuntimeError, match="output 0.*modified in place"):
        loss.backward()


def test_in_place_through_detach_or_a_view_is_detected():
    w = leaf([1.0, 2.0, 3.0])
    y = (w * w).sum()
    w.detach().mul_(2.0)          # detach() shares data and the version counter
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()
    x = leaf(np.ones((2, 3)))
    v = x.reshape(6)              # a view of x's data
    y = (v * v).sum()
    with no_grad():
        x.mul_(2.0)               # changes what Mul saved through v
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()
    x = leaf(np.ones((2, 3)))
    y = (x * x).sum()
    with no_grad():
        x[0].fill_(5.0)           # a basic-index view of x, changed in place
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_a_copy_does_not_share_the_version_counter():
    w = leaf([1.0, 2.0])
    y = (w * w).sum()
    c = w.detach().clone()
    c.mul_(2.0)
    y.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])


def test_in_place_on_a_non_leaf_in_a_graph_is_refused():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    for op in (lambda: y.mul_(2.0), lambda: y.add_(1.0), lambda: y.zero_(),
               lambda: y.fill_(1.0), lambda: y.copy_(np.zeros(2)),
               lambda: y.masked_fill_(np.array([True, False]), 0.0),
               lambda: y.__setitem__(0, 1.0)):
        with pytest.raises(RuntimeError, match="in-place"):
            op()
    np.testing.assert_array_equal(y.data, [2.0, 4.0])


def test_in_place_on_a_leaf_requiring_grad_only_under_no_grad():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="no_grad"):
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="no_grad"):
        x[0] = 5.0
    with no_grad():
        x.add_(np.array([1.0, 1.0]), alpha=2)
        x[1] = 0.5
    np.testing.assert_array_equal(x.data, [3.0, 0.5])
    assert x._version == 2
    c = Tensor(np.zeros(2))       # no grad: in place is fine anywhere
    c.add_(1.0).mul_(3.0)
    np.testing.assert_array_equal(c.data, [3.0, 3.0])


def test_in_place_on_read_only_data_raises():
    x = Tensor(np.ones(3)).expand(2, 3)   # a broadcast view: read-only
    with pytest.raises(ValueError, match="read-only"):
        x.fill_(0.0)


# ----------------------------------------------------------------------------
# dtypes

def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="float32/float64"):
        Tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(TypeError, match="float32/float64"):
        tensor([1, 2]).requires_grad_()
    with pytest.raises(TypeError, match="float32/float64"):
        Parameter(np.array([1, 2]))
    ids = tensor([1, 2])
    assert ids.dtype == np.int64 and not ids.requires_grad


def test_tensor_defaults():
    assert tensor([1.0, 2.0]).dtype == np.float32
    assert tensor(np.ones(2)).dtype == np.float64
    assert Tensor(np.ones(2, np.float16)).dtype == np.float32
    a = np.ones(2)
    assert tensor(a).data is not a and Tensor(a).data is a
    assert Parameter(np.ones(2, np.float32)).requires_grad


@pytest.mark.parametrize("other", [2.5, 3, np.float64(1.5), np.float64(0.1), np.array(2.0),
                                   np.int64(2), True])
def test_float32_stays_float32_with_python_and_numpy_scalars(other):
    x = leaf([1.0, 2.0], np.float32)
    for y in (x + other, other + x, x - other, other - x, x * other, other * x,
              x / other, x ** 2, (x * other).sum(), (x * other).mean()):
        assert y.dtype == np.float32, (type(other), y.dtype)
    (other * x + x / other).sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_and_float64_tensors_do_not_mix():
    a, b = leaf([1.0], np.float32), leaf([1.0])
    for op in (lambda: a + b, lambda: a - b, lambda: a * b, lambda: a / b, lambda: b + a,
               lambda: a + np.ones(1)):
        with pytest.raises(TypeError, match="float32 and float64|float64 and float32"):
            op()


def test_comparisons_give_bool_tensors_outside_the_graph():
    x = leaf([1.0, 2.0, 3.0])
    m = x > 1.5
    assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.data, [False, True, True])


# ----------------------------------------------------------------------------
# deep graphs and memory

def test_a_deep_chain_runs_without_recursion_error():
    n = 5000
    assert n > sys.getrecursionlimit()
    x = leaf([1.0])
    y = x
    for _ in range(n):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(y.data, [n + 1.0])
    np.testing.assert_array_equal(x.grad, [1.0])
    del y   # dropping the chain must not recurse either
    gc.collect()


def test_the_graph_is_freed_after_backward():
    x = leaf(np.ones((3, 4)))
    h = x.exp()
    saved = weakref.ref(h.data)     # Mul and Exp hold h's array
    node = weakref.ref(h.grad_fn)
    loss = (h * h).sum()
    del h
    gc.collect()
    assert saved() is not None      # kept alive by the graph alone
    loss.backward()
    gc.collect()
    assert saved() is None and node() is None
    assert vars(loss.grad_fn) == {"_freed": True}


def test_retain_graph_keeps_saved_arrays_until_the_last_backward():
    x = leaf(np.ones((3, 4)))
    h = x.exp()
    saved = weakref.ref(h.data)
    loss = (h * h).sum()
    del h
    loss.backward(retain_graph=True)
    gc.collect()
    assert saved() is not None
    loss.backward()
    gc.collect()
    assert saved() is None


def test_no_grad_keeps_nothing_alive():
    x = leaf(np.ones((3, 4)))
    with no_grad():
        h = x.exp()
        saved = weakref.ref(h.data)
        y = h * h
    del h
    gc.collect()
    assert saved() is None and y.grad_fn is None


def _arrays(obj, depth=0):
    """Every ndarray reachable from a node's attributes (into tuples, lists
    and dicts, not into other Tensors' graphs)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)) and depth < 3:
        for o in obj:
            yield from _arrays(o, depth + 1)
    elif isinstance(obj, dict) and depth < 3:
        for o in obj.values():
            yield from _arrays(o, depth + 1)
    elif isinstance(obj, Tensor):
        yield obj.data


@pytest.mark.parametrize("causal", [False, True])
def test_attention_keeps_no_weights_unless_asked(causal):
    rng = np.random.default_rng(0)
    tq, tk = 5, 7
    q, k, v = (leaf(rng.standard_normal(s)) for s in ((1, 2, tq, 3), (1, 2, tk, 3),
                                                      (1, 2, tk, 4)))
    out = kernels.scaled_dot_product_attention(q, k, v, is_causal=causal)
    shapes = [a.shape for a in _arrays(vars(out.grad_fn))]
    assert shapes and all(s[-2:] != (tq, tk) for s in shapes), shapes
    out, p = kernels.scaled_dot_product_attention(q, k, v, is_causal=causal, need_weights=True)
    assert (1, 2, tq, tk) in [a.shape for a in _arrays(vars(out.grad_fn))]


# ----------------------------------------------------------------------------
# gradcheck itself

class WrongMul(Function):
    """x * y whose gradient for y is wrong (g x^2 instead of g x)."""

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, g):
        return g * self.y, g * self.x * self.x


class RightMul(WrongMul):
    def backward(self, g):
        return g * self.y, g * self.x


def test_gradcheck_catches_a_wrong_backward():
    rng = np.random.default_rng(1)
    x, y = leaf(rng.standard_normal(4) + 3), leaf(rng.standard_normal(4))
    assert gradcheck(RightMul.apply, [x, y])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(WrongMul.apply, [x, y])
    assert gradcheck(WrongMul.apply, [x, y], raise_exception=False) is False
    # only the wrong input is checked when the other does not require grad
    assert gradcheck(WrongMul.apply, [x, Tensor(y.data)])


def test_gradcheck_catches_a_gradient_that_is_wrong_for_one_element():
    class OffByOne(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            d = g * 2
            d[1, 2] *= 1.01
            return d

    with pytest.raises(GradcheckError, match=r"index \(1, 2\)"):
        gradcheck(OffByOne.apply, [leaf(np.ones((2, 3)))])


def test_gradcheck_checks_every_output():
    class TwoOut(Function):
        def forward(self, x):
            return x * 2, x * 3

        def backward(self, g1, g2):
            return g1 * 2 + g2 * 2     # the second output's part is wrong

    with pytest.raises(GradcheckError):
        gradcheck(TwoOut.apply, [leaf([1.0, 2.0])])


def test_gradcheck_rejects_float32_and_inputs_without_grad():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2.0, [leaf([1.0], np.float32)])
    with pytest.raises(ValueError, match="requires grad"):
        gradcheck(lambda t: t * 2.0, [Tensor(np.ones(2))])


def test_gradcheck_rejects_non_contiguous_inputs():
    x = Tensor(np.arange(6.0).reshape(2, 3).T, requires_grad=True)   # a transposed view
    with pytest.raises(ValueError, match="C-contiguous"):
        gradcheck(lambda a: a * 2.0, (x,))
    y = x.contiguous().detach().requires_grad_()
    assert gradcheck(lambda a: a * 2.0, (y,))
