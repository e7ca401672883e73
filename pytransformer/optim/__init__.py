"""Optimizers, gradient clipping and learning-rate schedules, shaped like torch.optim.

What is here and how it maps to PyTorch 2.x:

* :class:`Optimizer` -- the base class: ``param_groups`` (a list of dicts,
  each with ``"params"`` and its hyperparameters), ``state`` (one dict per
  parameter, created on the parameter's first update), ``zero_grad``,
  ``step(closure=None)``, ``add_param_group``, ``state_dict`` and
  ``load_state_dict`` in PyTorch's layout::

      {"state": {0: {"step": 3, "exp_avg": ndarray, ...}, ...},
       "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), ..., "params": [0, 1]}, ...]}

  Parameters are numbered 0, 1, ... in the order of the groups and of each
  group's list, as in PyTorch, so a state dict made by
  ``torch.optim.AdamW(...).state_dict()`` (with its tensors turned into
  NumPy arrays) loads here and the reverse.
* :class:`SGD` (momentum, dampening, Nesterov, weight decay, maximize) and
  :class:`AdamW` (decoupled weight decay) with PyTorch's update formulas;
  AdamW calls the fused C kernel :func:`pytransformer.ops.adamw_step`, which
  updates the parameter and both moments in one pass.
* :func:`clip_grad_norm_` (torch.nn.utils.clip_grad_norm_).
* :class:`LRScheduler`, :class:`LambdaLR` (torch.optim.lr_scheduler) and two
  schedules PyTorch has no class for: :class:`NoamLR` (the warm-up schedule of
  "Attention Is All You Need") and :class:`WarmupCosineLR`, plus the plain
  multiplier functions :func:`noam_lr` and :func:`warmup_cosine_lr`.

A *parameter* is any object with three attributes: ``.data``, a float32 or
float64 ``numpy.ndarray`` that the optimizer updates **in place** (it never
rebinds ``.data``: other code, such as a module's tied weights or a
checkpoint writer, may hold views of it); ``.grad``, an array of the same
shape and dtype or None; and ``.requires_grad``. As in PyTorch, a parameter
whose ``.grad`` is None is skipped by ``step()`` (its state is not created or
advanced), and ``requires_grad`` is not consulted by the update itself.
Parameters are told apart by identity (``is``), never by ``==`` or hashing,
so any parameter class works as a key of ``Optimizer.state``.

Differences from PyTorch, all deliberate:

* ``step()`` checks every group's hyperparameters and every gradient (dtype
  and shape equal to the parameter's) before it updates anything, so a bad
  gradient raises without leaving half the parameters updated. PyTorch checks
  hyperparameters only in the constructor; here ``add_param_group`` and
  ``load_state_dict`` check each group too.
* A parameter listed twice in one group is an error (PyTorch warns).
* ``state_dict()`` returns copies of the state arrays (PyTorch returns the
  live tensors), so a saved state dict does not change as training goes on;
  ``load_state_dict`` copies too, and checks the number of groups, the number
  of parameters in each group, each state's keys, and each state array's
  shape and dtype against its parameter's (PyTorch casts silently).
* AdamW's ``state["step"]`` is a Python int (PyTorch keeps a 0-d float
  tensor; a float or 0-d array holding a whole number loads fine).
* ``clip_grad_norm_`` accumulates the norm in float64 and returns a Python
  float (PyTorch returns a 0-d tensor of the gradients' dtype).
"""

from pytransformer.optim.adamw import AdamW
from pytransformer.optim.clip import clip_grad_norm_
from pytransformer.optim.lr_scheduler import (LambdaLR, LRScheduler, NoamLR, WarmupCosineLR,
                                              noam_lr, warmup_cosine_lr)
from pytransformer.optim.optimizer import Optimizer
from pytransformer.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm_", "LRScheduler", "LambdaLR",
           "NoamLR", "WarmupCosineLR", "noam_lr", "warmup_cosine_lr"]
