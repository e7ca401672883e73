"""cross_entropy_backward's spare array: a large result (no `out`) is
written into the memory of the one returned last only when nothing refers
to that any more; results are the same as into a fresh array."""
import numpy as np
import pytest

from pytransformer.ops import _softmax
from pytransformer.ops._softmax import cross_entropy_backward, cross_entropy_forward

pytestmark = pytest.mark.skipif(not _softmax._COUNTS_REFS,
                                reason="reuse needs exact reference counts (GIL build)")


@pytest.fixture
def case(monkeypatch):
    monkeypatch.setattr(_softmax, "_SPARE_MIN_BYTES", 4096)
    _softmax.release_spare()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((33, 100)).astype(np.float32)
    t = rng.integers(0, 100, 33)
    t[3] = -100
    lse = cross_entropy_forward(x, t, label_smoothing=0.1)[1]
    expected = cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1,
                                      out=np.empty_like(x))
    yield x, t, lse, expected
    _softmax.release_spare()


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_dropped_result_is_reused(case):
    x, t, lse, expected = case
    d = cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1)
    first = _addr(d)
    d.fill(np.nan)                      # what is left there must not matter
    del d
    d = cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1)
    assert _addr(d) == first
    np.testing.assert_array_equal(d, expected)


@pytest.mark.parametrize("keep", ["array", "view", "memoryview"])
def test_a_result_still_referred_to_is_left_alone(case, keep):
    x, t, lse, expected = case
    d = cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1)
    held = {"array": lambda: d, "view": lambda: d[1:], "memoryview": lambda: memoryview(d)}[keep]()
    snapshot = np.array(d, copy=True)
    first = _addr(d)
    del d
    d2 = cross_entropy_backward(-1.0, x, t, lse, label_smoothing=0.1)
    assert _addr(d2) != first
    np.testing.assert_array_equal(np.asarray(held), snapshot[1:] if keep == "view" else snapshot)
    np.testing.assert_array_equal(d2, expected * np.float32(-0.5))


def test_other_shapes_small_results_and_out(case, monkeypatch):
    x, t, lse, expected = case
    cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1)      # dropped: the spare
    x2, t2, lse2 = x[:32].copy(), t[:32], lse[:32]
    d = cross_entropy_backward(2.0, x2, t2, lse2, label_smoothing=0.1)
    np.testing.assert_array_equal(d, cross_entropy_backward(2.0, x2, t2, lse2, label_smoothing=0.1,
                                                            out=np.empty_like(x2)))
    out = np.empty_like(x)
    assert cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1, out=out) is out
    monkeypatch.setattr(_softmax, "_SPARE_MIN_BYTES", x.nbytes + 1)
    _softmax.release_spare()
    d = cross_entropy_backward(2.0, x, t, lse, label_smoothing=0.1)
    assert not _softmax._spare
    np.testing.assert_array_equal(d, expected)


def test_autograd_reuses_the_spare_and_leaves_grads_alone(case):
    """Through autograd: the engine drops dlogits once it has been carried
    back (a leaf's .grad is its own array), so each backward reuses the
    same spare, and a .grad held from one backward is not changed by the
    next."""
    from pytransformer.autograd import tensor
    from pytransformer.nn import functional as F
    x, t, lse, expected = case
    a = tensor(x, requires_grad=True)
    F.cross_entropy(a, t, label_smoothing=0.1).backward()
    held, snapshot = a.grad, a.grad.copy()
    np.testing.assert_array_equal(snapshot, expected * np.float32(0.5))
    first = _addr(_softmax._spare["dlogits"])
    b = tensor(-x, requires_grad=True)
    F.cross_entropy(b, t, label_smoothing=0.1).backward()
    assert _addr(_softmax._spare["dlogits"]) == first
    np.testing.assert_array_equal(held, snapshot)
    np.testing.assert_array_equal(
        b.grad, cross_entropy_backward(1.0, -x, t, cross_entropy_forward(-x, t)[1],
                                       label_smoothing=0.1, out=np.empty_like(x)))
