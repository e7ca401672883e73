/*
 * pt_decode.h -- decoding loops over a decoder stack (decode_greedy.c,
 * decode_beam.c), declared for float32 (_f32) and float64 (_f64).
 *
 * pt_greedy_*: a description of the model around the decoder stack (the
 * target embedding, its scale, the positional table, the generator) and
 * the ids that are never generated. The loop decodes every row of a batch
 * from `bos` until it gives `eos` or max_len steps have run:
 *
 *   x_t     = embed[token] * embed_scale + positions[t]
 *   h_t     = the decoder stack's step over the caches (pt_decoder_step)
 *   logits  = h_t gen_w^T + gen_b, with pad and bos set to -inf
 *   token   = argmax (the first maximum), its log-probability in double
 *
 * the same kernels, in the same order and on the same rows, as the
 * per-step path (Seq2SeqTransformer.decode_step). A row that gives `eos`
 * leaves the batch: the last row moves into its place in the
 * self-attention caches, so a step costs only the rows still decoding;
 * the cross-attention caches and the memory mask keep one row per
 * sentence, which every row of that sentence reads.
 *
 * pt_beam_*: beam search of width k over the same model description
 * (pt_greedy_*), the whole loop of pytransformer.decode's beam search in
 * one call: the first step on the B sentences, then k hypotheses per
 * sentence; per step the log-softmax of every row (the softmax kernel, as
 * ops.log_softmax), per sentence the 2k best extensions (summed
 * log-probabilities in double, largest first, ties by hypothesis then
 * token), EOS extensions finishing hypotheses (score over the length
 * penalty), the k best others going on (padded with -inf scores when
 * fewer), a sentence leaving the batch when none goes on or when no open
 * hypothesis can beat its best finished one any more; at max_len the open
 * ones finish. See decode_beam.c.
 */
#ifndef PT_DECODE_H
#define PT_DECODE_H

#include "pt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Length penalties of pt_beam_decode, lp(n) with n the tokens, EOS
 * included when produced: GNMT's ((5 + n) / 6)^alpha, or n^alpha. */
#define PT_PENALTY_GNMT 0
#define PT_PENALTY_POWER 1

#define PT_DECODE_DECLARE(T_, SFX)                                                       \
typedef struct pt_greedy_##SFX {                                                           \
    const pt_layer_##SFX *layers;      /* the decoder stack */                             \
    int64_t nlayers;                                                                       \
    int final_norm;                    /* the stack's final LayerNorm, when set */         \
    const T_ *final_w, *final_b;                                                         \
    T_ final_eps;                                                                        \
    const T_ *embed;                 /* (embed_rows, E) target embedding */              \
    int64_t embed_rows;                                                                    \
    T_ embed_scale;                                                                      \
    const T_ *positions;             /* (>= max_len, E) added at step t */               \
    const T_ *gen_w, *gen_b;         /* (V, E) and (V,) or NULL */                       \
    const T_ *gen_wp;                /* gen_w packed (pt_linear_pack) or NULL; read  */  \
                                     /* with the stack's packed copies (packed_step) */  \
    int64_t V;                                                                             \
    int64_t pad, bos, eos;             /* pad and bos never generated */                   \
} pt_greedy_##SFX;                                                                         \
/* Workspace of pt_greedy_decode: float/double elements, and int64 ones. */                 \
int64_t pt_greedy_workspace_##SFX(const pt_greedy_##SFX *g, int64_t B, int64_t max_len,    \
                                  int64_t S);                                              \
int64_t pt_greedy_iworkspace_##SFX(int64_t B);                                             \
/* Greedy decoding of B rows. self_k/self_v[l]: layer l's self-attention caches            \
 * (B, H, max_len, d), empty, compacted in place as rows finish (their contents are        \
 * then spent); cross_k/cross_v[l]: its cross-attention keys and values (B, H, S, d);      \
 * src_mask (B, S) additive or NULL; those are only read.                                  \
 * Out: ids (B, max_len), the token of each step (EOS included; entries after              \
 * it unset); lengths (B), the step that gave EOS, or max_len; logp (B,                    \
 * max_len) or NULL, each token's log-probability. */                                      \
int pt_greedy_decode_##SFX(const pt_greedy_##SFX *g, T_ *const *self_k,                  \
                           T_ *const *self_v, T_ *const *cross_k,                      \
                           T_ *const *cross_v, const T_ *src_mask, int64_t B, int64_t S, \
                           int64_t max_len, int64_t *ids, int64_t *lengths, double *logp,  \
                           T_ *work, int64_t *iwork);                                      \
/* Workspaces of pt_beam_decode: real, int64 and double elements. */                         \
int64_t pt_beam_workspace_##SFX(const pt_greedy_##SFX *g, int64_t B, int64_t k,           \
                                int64_t max_len, int64_t S);                               \
int64_t pt_beam_iworkspace_##SFX(int64_t B, int64_t k, int64_t max_len);                   \
int64_t pt_beam_dworkspace_##SFX(int64_t B, int64_t k, int64_t max_len, int want_logp);    \
/* Beam search of width k >= 1 over B sentences. self_k/self_v[l] (B*k, H, max_len,   \
 * d), empty, rewritten (their contents are then spent); cross_k/cross_v[l]            \
 * (B, H, S, d), the sentences' keys and values, and src_mask (B, S) additive or        \
 * NULL, only read (the k hypotheses of a sentence share its row).                     \
 * penalty_kind PT_PENALTY_GNMT or PT_PENALTY_POWER, alpha >= 0.                       \
 * Out, per sentence b: count[b] hypotheses (<= k), best first; hypothesis i:        \
 * ids[(b*k + i) * max_len + j], j < lengths[b*k + i] (the tokens, without EOS),      \
 * ended[b*k + i] (1: it produced EOS), scores[b*k + i] (summed log-probabilities      \
 * over the length penalty), logp (B*k, max_len) or NULL: the tokens'                 \
 * log-probabilities, EOS's last when ended (lengths + ended entries). */              \
int pt_beam_decode_##SFX(const pt_greedy_##SFX *g, T_ *const *self_k, T_ *const *self_v,  \
                         T_ *const *cross_k, T_ *const *cross_v, const T_ *src_mask,     \
                         int64_t B, int64_t S, int64_t max_len, int64_t k, int penalty_kind, \
                         double alpha, int64_t *count, int64_t *ids, int64_t *lengths,     \
                         int64_t *ended, double *scores, double *logp, T_ *work,           \
                         int64_t *iwork, double *dwork);

PT_DECODE_DECLARE(float, f32)
PT_DECODE_DECLARE(double, f64)

#undef PT_DECODE_DECLARE

#ifdef __cplusplus
}
#endif
#endif /* PT_DECODE_H */
