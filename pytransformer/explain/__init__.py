"""Explain why a Transformer works, with numbers.

Capture (:mod:`.trace`: forward hooks, nothing in the model changes), the
per-sentence views (:mod:`.views`: the Q.K factor view, the token/position
split, value mixing), activation patching (:mod:`.patch`), and the
corpus-level measures: cross-attention alignment against gold with AER
(:mod:`.alignment`), syntactic heads (:mod:`.syntax`), FFN key-value
memories (:mod:`.ffn`), the logit lens (:mod:`.lens`), layer similarity
(:mod:`.layers`), head ablation and pruning (:mod:`.ablation`), attention
rollout against ablation (:mod:`.rollout`). The HTML reports:
:mod:`.report` (one sentence), :mod:`.analysis` (a split), rendered by
:mod:`.html` (and :mod:`.figures` for PNGs).

    from pytransformer.explain import trace
    t = trace(translator, "the ball is blue")
    t.attention("cross", -1).weights[0]          # (heads, target, source)
"""
from .ablation import (HeadImportance, PruningResult, ablate, all_heads, attention_modules,
                       head_importance, prune_heads, teacher_forced_loss)
from .alignment import (OFFSETS, AlignmentAccumulator, AlignmentScores, CheckpointAER, aer,
                        aer_over_checkpoints, alignment_from_weights, alignment_scores,
                        cross_attention_argmax, diagonal_alignment, precision_recall,
                        read_pharaoh, trace_pairs, write_pharaoh)
from .failure import Failure, find_failure
from .ffn import (CorpusFFN, NeuronDescription, corpus_ffn, sentence_ffn)
from .learning import LearningView, learning_view
from .ffn import (FFNMemories, LayerMemories, NeuronMemory, Trigger, ffn_memories,
                  teacher_forced_traces, value_promotions)
from .layers import LayerSimilarity, cka_matrix, layer_similarity, linear_cka
from .lens import LensAccuracy, LensTable, lens_logits, logit_lens, logit_lens_accuracy
from .patch import SITES, Patch, counterfactual, patched_translate, patching
from .rollout import (RolloutComparison, cross_rollout, rollout, rollout_vs_ablation,
                      source_ablation_influence, spearman)
from .syntax import (DIRECTIONS, SyntaxAccumulator, SyntaxScores, encoder_argmax,
                     positional_baselines, syntax_scores)
from .trace import (ATTENTION_KINDS, AttentionRecord, FFNRecord, LayerRecord, Trace, Tracer,
                    attention_parts, trace, trace_encoder)
from .views import (FactorView, PositionSplit, ValueMixing, factor_view, position_split,
                    value_mixing)

__all__ = [
    # capture
    "ATTENTION_KINDS", "AttentionRecord", "FFNRecord", "LayerRecord", "Trace", "Tracer",
    "attention_parts", "trace", "trace_encoder",
    # per-sentence views and patching
    "FactorView", "PositionSplit", "ValueMixing", "factor_view", "position_split",
    "value_mixing", "SITES", "Patch", "counterfactual", "patched_translate", "patching",
    # alignment
    "OFFSETS", "AlignmentAccumulator", "AlignmentScores", "CheckpointAER", "aer",
    "aer_over_checkpoints", "alignment_from_weights", "alignment_scores",
    "cross_attention_argmax", "diagonal_alignment", "precision_recall", "read_pharaoh",
    "trace_pairs", "write_pharaoh",
    # syntactic heads
    "DIRECTIONS", "SyntaxAccumulator", "SyntaxScores", "encoder_argmax",
    "positional_baselines", "syntax_scores",
    # FFN memories and the logit lens
    "FFNMemories", "LayerMemories", "NeuronMemory", "Trigger", "ffn_memories",
    "teacher_forced_traces", "value_promotions", "LensAccuracy", "LensTable", "lens_logits",
    "logit_lens", "logit_lens_accuracy",
    # layers, heads, rollout
    "LayerSimilarity", "cka_matrix", "layer_similarity", "linear_cka", "HeadImportance",
    "PruningResult", "ablate", "all_heads", "attention_modules", "head_importance",
    "prune_heads", "teacher_forced_loss", "RolloutComparison", "cross_rollout", "rollout",
    "rollout_vs_ablation", "source_ablation_influence", "spearman",
    # what each FFN fires on, in words; where a translation fails; learning
    "CorpusFFN", "NeuronDescription", "corpus_ffn", "sentence_ffn", "Failure", "find_failure",
    "LearningView", "learning_view",
]
