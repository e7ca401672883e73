"""The compiled kernels: NumPy arrays in, NumPy arrays out.

Each op family lives in its own private module (_softmax.py, ... mirroring
csrc/, underscored so no module is shadowed by a function of the same
name); everything public
is re-exported here. Conventions:
  * `op(...)` returns the forward result;
  * `op_forward(...)` returns (result, *saved) where `saved` is what
    `op_backward(grad_out, ...)` needs;
  * `op_backward` returns one gradient per differentiable input (None where
    not requested);
  * argument checking and copying policy: see pytransformer.validation,
    whose array checks the ops own (the kernel bindings below do not
    check again).
"""
from pytransformer.ops._gemm import (
    matmul,
)
from pytransformer.ops._linear import (
    linear,
    linear_backward,
)
from pytransformer.ops._activation import (
    relu,
    relu_backward,
    gelu,
    gelu_backward,
    bias_act,
    bias_act_backward,
    ffn_forward,
    ffn,
    ffn_backward,
)
from pytransformer.ops._softmax import (
    softmax,
    log_softmax,
    softmax_backward,
    log_softmax_backward,
    cross_entropy_forward,
    cross_entropy,
    cross_entropy_backward,
)
from pytransformer.ops._layernorm import (
    layer_norm_forward,
    layer_norm,
    layer_norm_backward,
)
from pytransformer.ops._attention import (
    attention_forward,
    scaled_dot_product_attention,
    attention_backward,
)
from pytransformer.ops._embedding import (
    embedding_forward,
    embedding,
    embedding_backward,
    sinusoidal_positions,
)
from pytransformer.ops._dropout import (
    dropout_forward,
    dropout,
    dropout_backward,
)
from pytransformer.ops._optim import (
    adamw_step,
)

__all__ = [
    "matmul",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "gelu",
    "gelu_backward",
    "bias_act",
    "bias_act_backward",
    "ffn_forward",
    "ffn",
    "ffn_backward",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy_forward",
    "cross_entropy",
    "cross_entropy_backward",
    "layer_norm_forward",
    "layer_norm",
    "layer_norm_backward",
    "attention_forward",
    "scaled_dot_product_attention",
    "attention_backward",
    "embedding_forward",
    "embedding",
    "embedding_backward",
    "sinusoidal_positions",
    "dropout_forward",
    "dropout",
    "dropout_backward",
    "adamw_step",
]
