"""AdamW over the fused C kernel (torch.optim.AdamW)."""
import numpy as np

from pytransformer.ops import adamw_step as _adamw_step
from pytransformer.optim.optimizer import Optimizer, _betas, _nonneg
from pytransformer.validation import flag_arg

class AdamW(Optimizer):
    """Adam with decoupled weight decay (torch.optim.AdamW). For each
    parameter with a gradient g (negated when `maximize`), with t the step
    count after it is incremented (1 on the first update)::

        p   *= 1 - lr * weight_decay
        m    = beta1 * m + (1 - beta1) * g
        v    = beta2 * v + (1 - beta2) * g**2
        p   -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    done in one pass by the fused C kernel pytransformer.ops.adamw_step (per
    step constants in double; per element in the parameter's dtype, as
    PyTorch does: float32 math for float32 parameters, vectorised).
    State, named as in PyTorch: ``"step"`` (int), ``"exp_avg"`` (m) and
    ``"exp_avg_sq"`` (v), arrays of the parameter's dtype and shape. The
    parameter's .data must be C-contiguous (the kernel writes it in place);
    a non-contiguous gradient is copied. AMSGrad is not implemented.
    """

    _state_spec = {"step": "step", "exp_avg": "array", "exp_avg_sq": "array"}
    # PyTorch >= 2.6 saves AdamW's groups with decoupled_weight_decay=True
    _torch_options = {"decoupled_weight_decay": (True,)}
    _in_place_kernel = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 *, maximize=False):
        defaults = dict(lr=_nonneg("lr", lr), betas=_betas("betas", betas),
                        eps=_nonneg("eps", eps),
                        weight_decay=_nonneg("weight_decay", weight_decay),
                        maximize=flag_arg("maximize", maximize))
        super().__init__(params, defaults)

    def _update(self, group, items):
        for p, g in items:
            data = p.data
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(data, order="C")
                state["exp_avg_sq"] = np.zeros_like(data, order="C")
            if group["maximize"]:
                g = -g
            step = state["step"] + 1
            _adamw_step(data, g, state["exp_avg"], state["exp_avg_sq"], step,
                        lr=group["lr"], betas=group["betas"], eps=group["eps"],
                        weight_decay=group["weight_decay"])
            state["step"] = step
