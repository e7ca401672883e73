"""The fused AdamW step (torch.optim.AdamW, decoupled weight decay)."""
import numpy as np

from pytransformer import _core
from pytransformer.validation import (c_order, float_checked, inplace_checked, int_arg,
                                      no_overlap, real_arg)


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999),
               eps=1e-8, weight_decay=1e-2):
    """One AdamW step, in place on param, exp_avg and exp_avg_sq (PyTorch
    semantics; step counts from 1, so pass 1 on the first call):

        param *= 1 - lr * weight_decay
        exp_avg    = beta1 * exp_avg    + (1 - beta1) * grad
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad**2
        param -= lr / (1 - beta1**step) * exp_avg
                 / (sqrt(exp_avg_sq) / sqrt(1 - beta2**step) + eps)

    param, exp_avg and exp_avg_sq must be writable C-contiguous float32 or
    float64 arrays of one dtype and shape (any shape; treated as flat): they
    are rejected, never copied, otherwise. grad must have the same dtype and
    shape; a non-contiguous grad is copied. The four must not overlap.
    Start exp_avg and exp_avg_sq at zeros. Returns None."""
    param = inplace_checked("param", param)
    dt, shape = param.dtype, param.shape
    exp_avg = inplace_checked("exp_avg", exp_avg, dt, shape, "param")
    exp_avg_sq = inplace_checked("exp_avg_sq", exp_avg_sq, dt, shape, "param")
    grad = c_order(float_checked("grad", grad, dt, shape=shape))
    no_overlap((("param", param), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)),
               (("grad", grad),))
    # step reaches C as an int64 (an OverflowError beyond it otherwise)
    step = int_arg("step", step)
    if step < 1:
        raise ValueError(f"step: must be >= 1 (counted from 1), got {step}")
    if step >= 2**63:
        raise ValueError(f"step: must be < 2**63, got {step}")
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = real_arg("betas[0]", betas[0]), real_arg("betas[1]", betas[1])
    lr, eps = real_arg("lr", lr), real_arg("eps", eps)
    weight_decay = real_arg("weight_decay", weight_decay)
    if not lr >= 0:
        raise ValueError(f"lr: must be >= 0, got {lr}")
    if not 0 <= beta1 < 1:
        raise ValueError(f"betas[0]: must be in [0, 1), got {beta1}")
    if not 0 <= beta2 < 1:
        raise ValueError(f"betas[1]: must be in [0, 1), got {beta2}")
    if not eps >= 0:
        raise ValueError(f"eps: must be >= 0, got {eps}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: must be >= 0, got {weight_decay}")
    if dt == np.float32 and (np.float32(beta1) >= 1 or np.float32(beta2) >= 1):
        raise ValueError(f"betas: {(beta1, beta2)} round to 1 in float32")
    _core.adamw_step(param.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
                     grad.reshape(-1), step, lr, beta1, beta2, eps, weight_decay)
