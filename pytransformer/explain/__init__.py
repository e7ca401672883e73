"""Explain why a Transformer works, with numbers: capture (hooks), the
per-sentence views (heads, Q.K factors, value mixing) and the corpus-level
measures, and a self-contained HTML report.

    from pytransformer.explain import trace
    t = trace(translator, "the ball is blue")
"""
from .trace import (ATTENTION_KINDS, AttentionRecord, FFNRecord, LayerRecord, Trace, Tracer,
                    attention_parts, trace)

__all__ = ["ATTENTION_KINDS", "AttentionRecord", "FFNRecord", "LayerRecord", "Trace", "Tracer",
           "attention_parts", "trace"]
