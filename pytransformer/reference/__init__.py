"""Every kernel of pytransformer.ops, forward and backward, in plain NumPy.

Written for clarity, not speed: the oracle of the tests and the baseline of
the benchmarks. Backward functions take the forward's inputs (not caches)
and recompute what they need. Names match pytransformer.ops.
"""
from pytransformer.reference.layernorm import layer_norm, layer_norm_backward

__all__ = ["layer_norm", "layer_norm_backward"]
