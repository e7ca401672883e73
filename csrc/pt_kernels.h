/*
 * pt_kernels.h -- the typed kernel signatures, included by pt.h twice
 * (real = float with suffix _f32, real = double with suffix _f64).
 * No include guard on purpose. Read pt.h first for the conventions.
 *
 * Backward kernels: every one takes `accumulate` as its last argument, with
 * one meaning for all of its gradient outputs (dx, dw, db, dbias, dlogits,
 * dtable, dq, dk, dv):
 *   accumulate != 0  the gradient is added to what the buffer holds (+=);
 *   accumulate == 0  the gradient is stored (=) and the buffer's previous
 *                    contents are never read: it needs no zeroing pass and
 *                    may hold anything, NaN included. Elements that get no
 *                    contribution (an ignored target's row, an unused
 *                    embedding row, a key nobody attends to) are set to 0.
 * accumulate == 0 stores exactly what accumulate != 0 leaves in a buffer of
 * +0.0, but for the sign of an exact zero (the += form gives +0 + -0 = +0).
 * A NULL gradient pointer means "not needed".
 */

/* ================================================================ gemm.c */
/* Row-major C[M,N] := alpha * op(A) op(B) + beta * C.
 * op(A) is (M,K): A is stored (M,K) with leading dim lda, or (K,M) when
 * trans_a. op(B) is (K,N): B is stored (K,N), or (N,K) when trans_b.
 * Uses the BLAS pointer when set, else the blocked C fallback. */
int PT_FN(pt_gemm)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                   real alpha, const real *A, int64_t lda,
                   const real *B, int64_t ldb,
                   real beta, real *C, int64_t ldc);
/* The same, always through the C fallback (for tests and benchmarks). */
int PT_FN(pt_gemm_fallback)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            real alpha, const real *A, int64_t lda,
                            const real *B, int64_t ldb,
                            real beta, real *C, int64_t ldc);

/* ============================================================== linear.c */
/* y(N,OUT) = x(N,IN) W(OUT,IN)^T + b(OUT); b may be NULL. */
int PT_FN(pt_linear_forward)(real *y, const real *x, const real *w, const real *b,
                             int64_t N, int64_t IN, int64_t OUT);
/* dx(N,IN) += dy W;  dw(OUT,IN) += dy^T x;  db(OUT) += sum_n dy (= with
 * accumulate == 0: the GEMMs run with beta = 0). Any of dx, dw, db may be
 * NULL. */
int PT_FN(pt_linear_backward)(real *dx, real *dw, real *db,
                              const real *dy, const real *x, const real *w,
                              int64_t N, int64_t IN, int64_t OUT, int accumulate);

/* ======================================================= linear_packed.c */
/* A weight w (OUT, IN) copied once into panels of PT_LINEAR_PANEL columns
 * (output features), for the linear family's packed_panels: element
 * (j, k) at wp[(g*IN + k)*PT_LINEAR_PANEL + j - g*PT_LINEAR_PANEL] for
 * panel g = j / PT_LINEAR_PANEL, the last panel zero-padded. One layout
 * for every ISA path. pt_linear_pack_size: wp's elements. */
#define PT_LINEAR_PANEL 64
int64_t PT_FN(pt_linear_pack_size)(int64_t OUT, int64_t IN);
int PT_FN(pt_linear_pack)(real *wp, const real *w, int64_t OUT, int64_t IN);
/* 1 when wp holds w's values at a fixed sample of elements (the first,
 * the last and 30 spread between, compared bit for bit), else 0: a cheap
 * net for a weight overwritten where no version counter saw it (it
 * cannot see a change of one element it does not sample). */
int PT_FN(pt_linear_pack_matches)(const real *wp, const real *w, int64_t OUT, int64_t IN);
/* y(N,OUT) = x(N,IN) w^T + b over wp (pt_linear_pack of w) with the packed
 * kernel of the linear path in use, for N up to the table's
 * linear_packed_rows; otherwise, or with wp NULL, pt_linear_forward over w. */
int PT_FN(pt_linear_packed_forward)(real *y, const real *x, const real *wp, const real *w,
                                    const real *b, int64_t N, int64_t IN, int64_t OUT);
/* The same over wp at any row count: for a caller that measured the
 * packed kernel against the GEMM at its row counts (the beam-search loop's
 * step, whose 128-row products the packed kernel wins: decode_beam.c). */
int PT_FN(pt_linear_packed_forward_any)(real *y, const real *x, const real *wp, const real *b,
                                        int64_t N, int64_t IN, int64_t OUT);
/* The columns of panels [g0, g1) of the same product, on the calling
 * thread: for a caller that shares the panels out itself (the encoder's
 * team, layer_encoder.c). */
int PT_FN(pt_linear_packed_panels)(real *y, const real *x, const real *wp, const real *b,
                                   int64_t N, int64_t IN, int64_t OUT, int64_t g0, int64_t g1);
/* The same product over wp shared out by a team (pt_team.h, internal):
 * part p of the team's parts takes the p-th contiguous run of the panels,
 * as pt_linear_packed_forward_any's threads do. Called by the team's
 * leader. */
struct pt_team;
int PT_FN(pt_linear_packed_team)(struct pt_team *team, real *y, const real *x, const real *wp,
                                 const real *b, int64_t N, int64_t IN, int64_t OUT);

/* ========================================================== activation.c */
/* y(N,C) = act(x + bias); bias (C) may be NULL; y may equal x (in place). */
int PT_FN(pt_bias_act_forward)(real *y, const real *x, const real *bias,
                               int64_t N, int64_t C, int kind);
/* dx(N,C) += dy * act'(x + bias); dbias(C) += sum_n of that. dx or dbias may
 * be NULL. x is the forward input (before the bias). */
int PT_FN(pt_bias_act_backward)(real *dx, real *dbias, const real *dy,
                                const real *x, const real *bias,
                                int64_t N, int64_t C, int kind, int accumulate);

/* ============================================================= softmax.c */
/* y(N,C) = softmax(x) or log_softmax(x) over the last axis (log != 0).
 * Stable for |x| ~ 1e4 and -inf entries; an all -inf row gives zeros
 * (softmax) or -inf (log_softmax). */
int PT_FN(pt_softmax_forward)(real *y, const real *x, int64_t N, int64_t C, int log);
/* dx += J^T dy, with y the forward output. */
int PT_FN(pt_softmax_backward)(real *dx, const real *dy, const real *y,
                               int64_t N, int64_t C, int log, int accumulate);
/* Per-row cross-entropy of logits(N,C) against targets(N) in [0,C) or
 * ignore_index: loss[n] = -(1-ls) * logp[t] - ls/C * sum_c logp[c]; 0 for
 * ignored rows. Saves lse[n] = logsumexp(logits[n]) for backward. */
int PT_FN(pt_cross_entropy_forward)(real *loss, real *lse, const real *logits,
                                    const int64_t *targets, int64_t N, int64_t C,
                                    int64_t ignore_index, real label_smoothing);
/* dlogits(N,C) += dloss[n] * (softmax(logits[n]) - smoothed one-hot),
 * with dloss read at dloss[n * dloss_stride] (stride 0: one scalar); an
 * ignored row gets no contribution. */
int PT_FN(pt_cross_entropy_backward)(real *dlogits, const real *logits,
                                     const real *lse, const int64_t *targets,
                                     const real *dloss, int64_t dloss_stride,
                                     int64_t N, int64_t C,
                                     int64_t ignore_index, real label_smoothing,
                                     int accumulate);

/* =========================================================== layernorm.c */
/* y(N,C) = (x - mean) * rstd * w + b, per row; w, b (C) may be NULL.
 * Saves mean(N) and rstd(N) = 1/sqrt(var + eps); variance by two passes. */
int PT_FN(pt_layernorm_forward)(real *y, real *mean, real *rstd,
                                const real *x, const real *w, const real *b,
                                int64_t N, int64_t C, real eps);
/* dx(N,C) += the input gradient (with accumulate == 0 dx may be dy
 * itself: each row of dy is read before that row of dx is written);
 * dw(C) += sum_n dy * xhat; db(C) += sum_n dy. */
int PT_FN(pt_layernorm_backward)(real *dx, real *dw, real *db,
                                 const real *dy, const real *x, const real *w,
                                 const real *mean, const real *rstd,
                                 int64_t N, int64_t C, int accumulate);

/* =========================================================== embedding.c */
/* y(N,C) = table[ids[n]]; every id in [0,V), else PT_EINVAL (nothing written). */
int PT_FN(pt_embedding_forward)(real *y, const int64_t *ids, const real *table,
                                int64_t N, int64_t V, int64_t C);
/* dtable(V,C) += scatter of dy(N,C) at ids; deterministic. */
int PT_FN(pt_embedding_backward)(real *dtable, const real *dy, const int64_t *ids,
                                 int64_t N, int64_t V, int64_t C, int accumulate);
/* out(T,C): out[t,2i] = sin(t / base^(2i/C)), out[t,2i+1] = cos(same). */
int PT_FN(pt_sinusoidal_positions)(real *out, int64_t T, int64_t C, real base);

/* ============================================================= dropout.c */
/* y(n) = x * keep / (1 - p); y may equal x. */
int PT_FN(pt_dropout_apply)(real *y, const real *x, const uint8_t *keep,
                            int64_t n, real p);

/* =============================================================== optim.c */
/* One AdamW step (PyTorch semantics, decoupled weight decay) on flat
 * buffers of n elements; step counts from 1. The hyperparameters are
 * double in both precisions, so 1 - beta2 is computed as PyTorch does (a
 * float32 beta2 = 0.999f would give 1 - beta2 off by 1.3e-5 relative). */
int PT_FN(pt_adamw_step)(real *param, real *m, real *v, const real *grad,
                         int64_t n, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int64_t step);

/* =========================================================== attention.c */
/* Scaled dot-product attention, per (b, h):
 *   S = scale * q k^T + mask (+ causal), P = softmax(S), out = P v.
 * q (B,H,Tq,D), k (B,H,Tk,D), v (B,H,Tk,Dv), out (B,H,Tq,Dv).
 * mask: additive (use -inf to mask), read at
 *   mask[b*ms[0] + h*ms[1] + i*ms[2] + j*ms[3]] (element strides; 0 broadcasts),
 *   or NULL. is_causal masks j > i (top-left aligned, as PyTorch).
 * lse (B,H,Tq) receives the row logsumexp of S (-inf for a fully masked row,
 *   whose output is zeros); may be NULL when no backward will follow.
 * weights (B,H,Tq,Tk) receives P when not NULL; when NULL, a tiled online-
 *   softmax path runs that never holds more than a tile of S. */
int PT_FN(pt_attention_forward)(real *out, real *lse, real *weights,
                                const real *q, const real *k, const real *v,
                                const real *mask, const int64_t *mask_strides,
                                int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                                int64_t D, int64_t Dv, int is_causal, real scale);
/* dq, dk, dv += gradients, recomputing P from q, k and the saved lse. */
int PT_FN(pt_attention_backward)(real *dq, real *dk, real *dv,
                                 const real *dout, const real *q, const real *k,
                                 const real *v, const real *out, const real *lse,
                                 const real *mask, const int64_t *mask_strides,
                                 int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                                 int64_t D, int64_t Dv, int is_causal, real scale,
                                 int accumulate);

/* ==================================== layer_encoder.c, layer_decoder.c */
/* Whole Transformer layers for inference (no autograd, nothing saved for
 * backward), composed of the kernels above. pt_layer holds one layer's
 * sizes and parameter pointers, as PyTorch's TransformerEncoderLayer /
 * TransformerDecoderLayer name them: E model width, H heads (E % H == 0),
 * F feed-forward width; weights (out, in) row-major as pt_linear_forward
 * reads them. Every bias and norm weight may be NULL. The ca_* fields are
 * read by the decoder only. All scratch is the caller's workspace `work`
 * (the matching *_workspace function gives its size in elements); the
 * layer code allocates nothing itself. */
typedef struct PT_FN(pt_layer) {
    int64_t E, H, F;
    int norm_first;              /* 1: x + f(norm(x)) (pre-norm); 0: norm(x + f(x)) */
    int act;                     /* PT_ACT_* of the feed-forward block */
    const real *sa_w, *sa_b;     /* self-attention in_proj (3E, E), (3E): q, k, v rows */
    const real *sa_ow, *sa_ob;   /* self-attention out_proj (E, E), (E) */
    const real *ca_w, *ca_b;     /* cross-attention in_proj (3E, E), (3E) */
    const real *ca_ow, *ca_ob;   /* cross-attention out_proj (E, E), (E) */
    const real *ff1_w, *ff1_b;   /* linear1 (F, E), (F) */
    const real *ff2_w, *ff2_b;   /* linear2 (E, F), (E) */
    const real *norm_w[3], *norm_b[3];   /* norm1..norm3, (E) each */
    real norm_eps[3];
    /* pt_linear_pack copies of sa_w, sa_ow, ff1_w, ff2_w, or NULL (the
     * weight is read in place): the encoder's projections of few rows
     * then run over them (pt_linear_packed_forward). The caller keeps
     * them equal to the weights. */
    const real *sa_wp, *sa_owp, *ff1_wp, *ff2_wp;
    /* The decoder step's: with packed_step >= 1 every product of the
     * step of at least packed_step rows runs over the packed copies of
     * sa_w, sa_ow, ff1_w, ff2_w and these: ca_w's query rows (E, E) and
     * ca_ow (pt_linear_packed_forward_any); fewer rows read the weights
     * in place (pt_linear_forward). pt_decoder_pack sets 1 (any row
     * count); 0: the products as pt_linear_packed_forward's. */
    const real *ca_qwp, *ca_owp;
    int packed_step;
} PT_FN(pt_layer);

/* Workspace elements pt_encoder_forward needs for N rows of sequences of
 * at most T positions, B of them; both_masks != 0 when it gets a key mask
 * and an attention mask together (they are summed into (B, T, T)). */
int64_t PT_FN(pt_encoder_workspace)(const PT_FN(pt_layer) *layer, int64_t N, int64_t B,
                                    int64_t T, int both_masks);
/* x (N, E) := the encoder stack layers[0..nlayers) applied to x, then the
 * final norm when final_norm != 0 (final_w, final_b may be NULL). Every
 * layer has layers[0]'s E, H, F.
 * Padded mode (offsets NULL): x holds B sequences of T rows, N = B*T;
 *   key_mask (B, T) and attn_mask (T, T) are additive (-inf masks), each
 *   may be NULL; is_causal masks j > i.
 * Packed mode (offsets (B+1), non-decreasing from 0): sequence b is rows
 *   [offsets[b], offsets[b+1]) of x, at most T of them, and N = offsets[B];
 *   token-wise work runs on real rows only and attention per sequence.
 *   key_mask must be NULL (the lengths are the mask); attn_mask and
 *   is_causal index positions within a sequence. */
int PT_FN(pt_encoder_forward)(real *x, real *work, const PT_FN(pt_layer) *layers,
                              int64_t nlayers, const int64_t *offsets, const real *key_mask,
                              const real *attn_mask, int64_t B, int64_t T, int is_causal,
                              int final_norm, const real *final_w, const real *final_b,
                              real final_eps);

/* ==================================================== attention_decode.c */
/* Attention of one query per (b, h) over stored keys/values:
 *   out[b,h] = softmax(scale k[b,h,0:n] q[b,h] + mask[b,0:n]) v[b,h,0:n]
 * q of (b, h) at q + b*q_ld + h*D, out at out + b*out_ld + h*D; the keys
 * of (b, h) start at k + b*kv_bstride + h*kv_hstride, key j D further each
 * (v likewise), so a cache (B, H, capacity, D) is read in place.
 * n = Tk, or min(lengths[b], Tk) when lengths is not NULL; mask (rows, Tk)
 * additive or NULL. kv_row (B) or NULL: query row b reads key/value row
 * r = kv_row[b] (>= 0; r = b when NULL) -- the keys and values at
 * r*kv_bstride, mask row r, lengths[r] -- so rows that share a memory read
 * one copy of it. A row with no visible key gives zeros. scores is
 * scratch of B*H*Tk elements. Each (b, h) is summed by one thread in key
 * order: the result does not depend on the thread count, nor on which
 * row holds the keys. */
int PT_FN(pt_attention_decode)(real *out, int64_t out_ld, real *scores,
                               const real *q, int64_t q_ld, const real *k, const real *v,
                               int64_t kv_bstride, int64_t kv_hstride, const real *mask,
                               const int64_t *lengths, const int64_t *kv_row, int64_t B,
                               int64_t H, int64_t Tk, int64_t D, real scale);

/* Workspace elements of pt_decoder_cross_kv for memory (B, S, E). */
int64_t PT_FN(pt_decoder_cross_kv_workspace)(const PT_FN(pt_layer) *layer, int64_t B,
                                             int64_t S);
/* For every layer l: k[l], v[l] (B, H, S, E/H) := the cross-attention keys
 * and values of memory (B, S, E) (rows E..3E of ca_w, ca_b). */
int PT_FN(pt_decoder_cross_kv)(real *const *k, real *const *v, real *work,
                               const PT_FN(pt_layer) *layers, int64_t nlayers,
                               const real *memory, int64_t B, int64_t S);

/* The least row count from which a decoder step's products read the
 * packed copies of decoder stacks that keep them (the Python
 * LayerStack's packed_step): every row count, so that a row's sums are in
 * one order at any batch and thread count (the greedy loop's team,
 * pt_team.h, shares out products over the copies only). */
#define PT_DECODER_PACKED_ROWS 1

/* Elements of the packed copies of one decoder layer's step weights
 * (pt_decoder_pack), 0 for none (NULL weights). */
int64_t PT_FN(pt_decoder_pack_size)(const PT_FN(pt_layer) *layer);
/* out[l] := layers[l] with its step weights packed into wp (nlayers *
 * pt_decoder_pack_size elements) and packed_step set: pt_decoder_step over
 * out then multiplies by the copies. */
int PT_FN(pt_decoder_pack)(PT_FN(pt_layer) *out, real *wp, const PT_FN(pt_layer) *layers,
                           int64_t nlayers);
/* Workspace elements of pt_decoder_step for batch B with self caches of
 * `capacity` positions and S memory positions. */
int64_t PT_FN(pt_decoder_step_workspace)(const PT_FN(pt_layer) *layer, int64_t B,
                                         int64_t capacity, int64_t S);
/* One decoding step of the whole decoder stack: x (B, E), the inputs at
 * position t, := the stack's outputs there (then the final norm when
 * final_norm != 0). Per layer l, self_k[l], self_v[l] (B, H, capacity, E/H)
 * hold positions 0..t-1 and receive position t's keys/values; cross_k[l],
 * cross_v[l] (M, H, S, E/H) are from pt_decoder_cross_kv, for M memory
 * rows: row b reads memory row mem_row[b] (mem_row (B) or NULL: row b,
 * M = B). The memory keys are masked by src_mask (M, S) additive, or by
 * src_len (M) (keys >= the length are masked), or neither (NULL).
 * 0 <= t < capacity. */
int PT_FN(pt_decoder_step)(real *x, real *const *self_k, real *const *self_v, real *work,
                           const PT_FN(pt_layer) *layers, int64_t nlayers,
                           const real *const *cross_k, const real *const *cross_v,
                           const real *src_mask, const int64_t *src_len,
                           const int64_t *mem_row, int64_t B, int64_t t, int64_t capacity,
                           int64_t S,
                           int final_norm, const real *final_w, const real *final_b,
                           real final_eps);
/* The same step with its products over the packed copies shared out by a
 * team (pt_team.h; the greedy loop's leader calls it), or as
 * pt_decoder_step's with team NULL. */
int PT_FN(pt_decoder_step_team)(real *x, real *const *self_k, real *const *self_v, real *work,
                                const PT_FN(pt_layer) *layers, int64_t nlayers,
                                const real *const *cross_k, const real *const *cross_v,
                                const real *src_mask, const int64_t *src_len,
                                const int64_t *mem_row, int64_t B, int64_t t, int64_t capacity,
                                int64_t S, int final_norm, const real *final_w,
                                const real *final_b, real final_eps, struct pt_team *team);
