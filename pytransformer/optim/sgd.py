"""SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD)."""
import numpy as np

from pytransformer.optim.optimizer import Optimizer, _nonneg, _real
from pytransformer.validation import flag_arg

class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD). For each
    parameter with a gradient g, in PyTorch's order::

        g = -g                          if maximize
        g = g + weight_decay * p        if weight_decay != 0
        if momentum != 0:
            buf = g (a copy)            on the first step
            buf = momentum * buf + (1 - dampening) * g      afterwards
            g = g + momentum * buf      if nesterov, else g = buf
        p -= lr * g

    State: ``"momentum_buffer"`` (only when momentum != 0, as in PyTorch >=
    2.2). Nesterov needs momentum > 0 and dampening == 0. Arithmetic is in the
    parameter's dtype. `maximize` negates the gradient *before* weight decay
    is added, as torch's code does (the pseudo-code in torch's documentation
    adds the decay first and flips the sign of the final update instead,
    which differs when weight_decay != 0).
    """

    _state_spec = {"momentum_buffer": "array?"}

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=_nonneg("lr", lr), momentum=_nonneg("momentum", momentum),
                        dampening=_real("dampening", dampening),
                        weight_decay=_nonneg("weight_decay", weight_decay),
                        nesterov=flag_arg("nesterov", nesterov),
                        maximize=flag_arg("maximize", maximize))
        if nesterov and (defaults["momentum"] <= 0 or defaults["dampening"] != 0):
            raise ValueError("nesterov: Nesterov momentum requires a momentum > 0 and zero "
                             f"dampening, got momentum={momentum}, dampening={dampening}")
        super().__init__(params, defaults)

    def _check_group(self, group, where):
        super()._check_group(group, where)
        if group.get("nesterov") and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{where}: Nesterov momentum requires a momentum > 0 and zero "
                             f"dampening, got momentum={group['momentum']}, "
                             f"dampening={group['dampening']}")

    def _update(self, group, items):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        for p, g in items:
            data = p.data                 # updated in place, never rebound
            if group["maximize"]:
                g = -g
            if weight_decay != 0:
                g = g + weight_decay * data
            if momentum != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(g, order="C", copy=True)
                else:
                    buf *= momentum
                    buf += (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            data -= lr * g
