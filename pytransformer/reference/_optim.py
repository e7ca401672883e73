"""AdamW in NumPy (reference): torch.optim.AdamW's update, step by step."""
import numpy as np


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999),
               eps=1e-8, weight_decay=1e-2):
    """Return new (param, exp_avg, exp_avg_sq) after one step (step counted
    from 1); the inputs are not modified. Computed in float64, returned in
    param's dtype."""
    dtype = param.dtype
    beta1, beta2 = betas
    p = param.astype(np.float64)
    g = grad.astype(np.float64)
    m = exp_avg.astype(np.float64)
    v = exp_avg_sq.astype(np.float64)
    p = p * (1 - lr * weight_decay)                      # decoupled weight decay
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** step)                      # bias corrections
    v_hat = v / (1 - beta2 ** step)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p.astype(dtype), m.astype(dtype), v.astype(dtype)
