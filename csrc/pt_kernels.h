/*
 * pt_kernels.h -- the typed kernel signatures, included by pt.h twice
 * (real = float with suffix _f32, real = double with suffix _f64).
 * No include guard on purpose. Read pt.h first for the conventions.
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
/* dx(N,IN) += dy W;  dw(OUT,IN) += dy^T x;  db(OUT) += sum_n dy. Any of
 * dx, dw, db may be NULL. */
int PT_FN(pt_linear_backward)(real *dx, real *dw, real *db,
                              const real *dy, const real *x, const real *w,
                              int64_t N, int64_t IN, int64_t OUT, int accumulate);

/* ========================================================== activation.c */
/* y(N,C) = act(x + bias); bias (C) may be NULL; y may equal x (in place). */
int PT_FN(pt_bias_act_forward)(real *y, const real *x, const real *bias,
                               int64_t N, int64_t C, int kind);
/* dx(N,C) += dy * act'(x + bias); dbias(C) += sum_n of that. dx or dbias may
 * be NULL. x is the forward input (before the bias). */
int PT_FN(pt_bias_act_backward)(real *dx, real *dbias, const real *dy,
                                const real *x, const real *bias,
                                int64_t N, int64_t C, int kind);

/* ============================================================= softmax.c */
/* y(N,C) = softmax(x) or log_softmax(x) over the last axis (log != 0).
 * Stable for |x| ~ 1e4 and -inf entries; an all -inf row gives zeros
 * (softmax) or -inf (log_softmax). */
int PT_FN(pt_softmax_forward)(real *y, const real *x, int64_t N, int64_t C, int log);
/* dx += J^T dy, with y the forward output. */
int PT_FN(pt_softmax_backward)(real *dx, const real *dy, const real *y,
                               int64_t N, int64_t C, int log);
/* Per-row cross-entropy of logits(N,C) against targets(N) in [0,C) or
 * ignore_index: loss[n] = -(1-ls) * logp[t] - ls/C * sum_c logp[c]; 0 for
 * ignored rows. Saves lse[n] = logsumexp(logits[n]) for backward. */
int PT_FN(pt_cross_entropy_forward)(real *loss, real *lse, const real *logits,
                                    const int64_t *targets, int64_t N, int64_t C,
                                    int64_t ignore_index, real label_smoothing);
/* dlogits(N,C) += dloss[n] * (softmax(logits[n]) - smoothed one-hot),
 * with dloss read at dloss[n * dloss_stride] (stride 0: one scalar). */
int PT_FN(pt_cross_entropy_backward)(real *dlogits, const real *logits,
                                     const real *lse, const int64_t *targets,
                                     const real *dloss, int64_t dloss_stride,
                                     int64_t N, int64_t C,
                                     int64_t ignore_index, real label_smoothing);

/* =========================================================== layernorm.c */
/* y(N,C) = (x - mean) * rstd * w + b, per row; w, b (C) may be NULL.
 * Saves mean(N) and rstd(N) = 1/sqrt(var + eps); variance by two passes. */
int PT_FN(pt_layernorm_forward)(real *y, real *mean, real *rstd,
                                const real *x, const real *w, const real *b,
                                int64_t N, int64_t C, real eps);
/* dx(N,C) += ... (accumulate != 0) or = ... (accumulate == 0: no zeroing
 * pass needed; dx may then be dy itself); dw(C) += sum_n dy * xhat;
 * db(C) += sum_n dy. */
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
                                 int64_t N, int64_t V, int64_t C);
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
                                 int64_t D, int64_t Dv, int is_causal, real scale);
