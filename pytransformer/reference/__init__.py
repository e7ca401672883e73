"""Every kernel of pytransformer.ops, forward and backward, in plain NumPy.

Written for clarity, not speed: the oracle of the tests and the baseline of
the benchmarks. Backward functions take the forward's inputs (not caches)
and recompute what they need. Names match pytransformer.ops.
"""
from pytransformer.reference._linear import (
    linear,
    linear_backward,
)
from pytransformer.reference._activation import (
    relu,
    relu_backward,
    gelu,
    gelu_backward,
    bias_act,
    bias_act_backward,
    ffn,
    ffn_backward,
)
from pytransformer.reference._softmax import (
    logsumexp,
    softmax,
    log_softmax,
    softmax_backward,
    log_softmax_backward,
    cross_entropy,
    cross_entropy_backward,
)
from pytransformer.reference._layernorm import (
    layer_norm,
    layer_norm_backward,
)
from pytransformer.reference._attention import (
    scaled_dot_product_attention,
    attention_backward,
)
from pytransformer.reference._embedding import (
    embedding,
    embedding_backward,
    sinusoidal_positions,
)
from pytransformer.reference._dropout import (
    dropout,
    dropout_backward,
    dropout_mask,
)
from pytransformer.reference._optim import (
    adamw_step,
)

__all__ = [
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "gelu",
    "gelu_backward",
    "bias_act",
    "bias_act_backward",
    "ffn",
    "ffn_backward",
    "logsumexp",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "layer_norm",
    "layer_norm_backward",
    "scaled_dot_product_attention",
    "attention_backward",
    "embedding",
    "embedding_backward",
    "sinusoidal_positions",
    "dropout",
    "dropout_backward",
    "dropout_mask",
    "adamw_step",
]
