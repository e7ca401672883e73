"""The compiled kernels: NumPy arrays in, NumPy arrays out.

Each op family lives in its own module (mirroring csrc/); everything public
is re-exported here. Conventions:
  * `op(...)` returns the forward result;
  * `op_forward(...)` returns (result, *saved) where `saved` is what
    `op_backward(grad_out, ...)` needs;
  * `op_backward` returns one gradient per differentiable input (None where
    not requested);
  * argument checking and copying policy: see pytransformer.ops._checks.
"""
from pytransformer.ops.gemm import matmul
from pytransformer.ops.layernorm import layer_norm, layer_norm_backward, layer_norm_forward

__all__ = [
    "matmul",
    "layer_norm", "layer_norm_forward", "layer_norm_backward",
]
