"""gradcheck: compare backward() with central finite differences (float64)."""
import numpy as np

from pytransformer.autograd.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic and numeric gradients disagree (the message says where)."""


def _outputs(result):
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function f() with respect to
    the array x, which f reads and which is perturbed in place (each element
    restored after use); x must be C-contiguous and writable."""
    g = np.zeros(x.shape)
    flat, gflat = x.reshape(-1), g.reshape(-1)   # views
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return g


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True):
    """Check the gradients of ``fn(*inputs)`` for every input Tensor that
    requires grad, by central finite differences.

    The inputs must be float64 (float32 differences are too coarse to say
    anything); `fn` returns a Tensor or a tuple of Tensors. The check projects
    the outputs on fixed random directions u (one per output) and compares
    backward's gradient of s = sum(u * out) with (s(x + eps) - s(x - eps)) /
    (2 eps) for every element of every input: a wrong Jacobian entry that
    matters to any output shows up. Returns True, or raises GradcheckError
    naming the input and the worst element (returns False when
    raise_exception is False).
    """
    inputs = tuple(inputs)
    checked = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input Tensor requires grad")
    for t in checked:
        if t.dtype != np.float64:
            raise TypeError(f"gradcheck: inputs must be float64, got {t.dtype}")
        if not t.data.flags.c_contiguous or not t.data.flags.writeable:
            # the finite differences perturb t.data in place through a flat view
            raise ValueError("gradcheck: input data must be C-contiguous and writable "
                             "(pass x.contiguous().detach().requires_grad_())")
    rng = np.random.default_rng(seed)
    outs = _outputs(fn(*inputs))
    if not outs:
        raise ValueError("gradcheck: fn returned no float Tensor")
    dirs = [rng.standard_normal(o.shape) for o in outs]

    def projected():
        with no_grad():
            return sum(float(np.sum(u * o.data)) for u, o in zip(dirs, _outputs(fn(*inputs))))

    for t in checked:
        t.grad = None
    total = None
    for u, o in zip(dirs, outs):
        if o.requires_grad:
            s = (o * Tensor(u.astype(o.dtype))).sum()
            total = s if total is None else total + s
    if total is not None:
        total.backward()
    for pos, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, np.float64)
        numeric = numeric_grad(projected, t.data, eps)
        bad = ~np.isclose(analytic, numeric, rtol=rtol, atol=atol)
        if bad.any():
            i = np.unravel_index(np.argmax(np.abs(analytic - numeric) * bad), t.shape)
            msg = (f"gradcheck: input {pos} (shape {t.shape}): analytic {analytic[i]:.6g} vs "
                   f"numeric {numeric[i]:.6g} at index {tuple(int(j) for j in i)}; "
                   f"{int(bad.sum())} of {bad.size} elements differ")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
