/*
 * pt_dispatch_slots.h -- the signature of every slot of the dispatch table,
 * included by pt_dispatch.h twice: PT_DREAL = float with PT_DSFX(name) =
 * name_f32, then PT_DREAL = double with name_f64. No include guard on
 * purpose. Read pt_dispatch.h first.
 *
 * Per family, the structs are declared below for every level: a path's
 * file defines the ones it has (an AVX-512 file defines e.g.
 * PT_SFX(pt_gemm_avx512), inside `#if PT_X86`, its functions compiled with
 * target("avx512f,avx512bw,avx512dq,avx512vl,fma")), and dispatch.c's row
 * for the family names the one each level takes.
 *
 * Every struct starts with `path`, the name pytransformer.config() reports
 * for the family ("portable", "avx2", "avx512"). Every slot must compute
 * each output element in an order that does not depend on the thread count
 * or on where the element lies in its tile (the results policy, pt.h), and
 * keep the results of the portable path within the tolerance stated in the
 * family's tests (tests/test_simd_paths.py, tests/test_isa.py).
 */

/* ================================================================ gemm.c
 * The micro-kernel of the blocked fallback GEMM and the packing and
 * blocking it wants: Ap holds kc columns of MR values (Ap[p*MR + i]), Bp kc
 * rows of NR values (Bp[p*ldbp + j]), both zero-padded; the driver packs
 * A blocks of at most MC rows (a multiple of MR) and K blocks of KC.
 *   acc[i][j] = sum_{p < kc} Ap[p*MR + i] * Bp[p*ldbp + j]   (p in order)
 *   C[i*ldc + j] = alpha*acc[i][j] + beta*C[i*ldc + j]  for i < mr, j < nr
 * beta == 0: C is not read (NaN there does not survive); beta == 1:
 * C + alpha*acc. ldbp is NR for a packed strip, or ldb when a full strip
 * is read in place from an untransposed B (gemm.c). */
struct PT_DSFX(pt_gemm_kernels) {
    const char *path;
    void (*ukernel)(int64_t kc, const PT_DREAL *restrict Ap, const PT_DREAL *restrict Bp,
                    int64_t ldbp, PT_DREAL *C, int64_t ldc, int64_t mr, int64_t nr,
                    PT_DREAL alpha, PT_DREAL beta);
    int mr, nr;      /* register tile MR x NR: the packed strips' widths */
    int mc, kc;      /* A block rows MC (a multiple of MR; L2), K block KC */
};
extern const struct PT_DSFX(pt_gemm_kernels) PT_DSFX(pt_gemm_portable), PT_DSFX(pt_gemm_avx2),
    PT_DSFX(pt_gemm_avx512);

/* ====================================================== attention_tile.c
 * The tile functions of attention.c (attention_tile.h describes each):
 *   mm:        C(m,n) = alpha A(m,K) B(K,n) + (beta ? C : 0) with
 *              A(r, l) = A[r*ars + l*acs] (ars, acs: the row and column
 *              strides; a transposed A has ars = 1), B and C row-major
 *              (ldb, ldc); beta is 0 (C not read) or 1. Each element is
 *              summed over l = 0..K-1 in order, in a register accumulator.
 *   transpose: T[c*ldt + r] = X[r*ldx + c], r < m, c < n.
 *   dot:       sum_d x[d] y[d] in double, a fixed order.
 *   exp_rows:  S[i][j] = exp(S[i][j] - shift[i]), sum[i] = sum_j S[i][j]
 *              for i < nq, j < n; trailing exact zeros must not change the
 *              sum (attention.c skips padded keys).
 *   rowmax:    max(m, max_j s[j]) over j < n, NaN ignored (pt_att_rowmax
 *              then handles an all -inf row with NaN).
 *   softmax_step: one key tile of the tiled forward's online softmax over
 *              rows i < nq of the score tile S (n columns): the row max
 *              (pt_att_rowmax's rule), the rescale of l[i] and of acc's
 *              row i (Dv columns, ld ldacc) when the max grows, S = exp(S
 *              - max), l[i] += the row sum (exp_rows' order).
 *   bwd_ds:    the backward's elementwise step over rows i < nq, j < n:
 *              P = exp(P - lse[i]), dS = scale P (dS - Drow[i]) (both
 *              rounded as written); rows with lse[i] = -inf become 0.
 *   mm_exp:    the backward's P: C = exp(alpha A B - shift[r]) for row r,
 *              each element bitwise mm's (beta = 0) followed by exp_rows'
 *              exp; A row-major (lda).
 *   mm_ds:     the backward's dS: C = (scale P) (alpha A B - Drow[r]),
 *              each element bitwise mm's (beta = 0) followed by bwd_ds'
 *              step, P (ld ldp) the exp of mm_exp.
 *   maxabs:    max |x[i]| over i < n, or -1 if some x[i] is inf or NaN
 *              (exact: every path returns the same value).
 *   decode:    one (b, h) of pt_attention_decode (attention_decode.c), a
 *              single query q (D) over n keys and values at k + j*D and
 *              v + j*D: s[j] = scale q.k_j (+ mask[j], mask may be NULL)
 *              for j < n, p_j = exp(s_j - max s) written over s, l = sum
 *              p_j in double, o (D) = sum_{p_j != 0} p_j v_j times
 *              (real)(1/l); o = 0 when no s_j is above -inf (n == 0
 *              included). Each value in a fixed order (the slot's file
 *              states it), NaN scores ignored by the max. */
struct PT_DSFX(pt_att_kernels) {
    const char *path;
    void (*mm)(PT_DREAL *C, int64_t ldc, const PT_DREAL *A, int64_t ars, int64_t acs,
               const PT_DREAL *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
               PT_DREAL alpha, int beta);
    void (*transpose)(PT_DREAL *T, int64_t ldt, const PT_DREAL *X, int64_t ldx,
                      int64_t m, int64_t n);
    double (*dot)(const PT_DREAL *x, const PT_DREAL *y, int64_t n);
    void (*exp_rows)(PT_DREAL *S, int64_t lds, int nq, int64_t n, const PT_DREAL *shift,
                     double *sum);
    PT_DREAL (*rowmax)(const PT_DREAL *s, int64_t n, PT_DREAL m);
    void (*softmax_step)(PT_DREAL *S, int64_t lds, int nq, int64_t n, PT_DREAL *m, double *l,
                         PT_DREAL *acc, int64_t ldacc, int64_t Dv);
    void (*bwd_ds)(PT_DREAL *P, PT_DREAL *dS, int64_t ld, int nq, int64_t n,
                   const PT_DREAL *lse, const PT_DREAL *Drow, PT_DREAL scale);
    void (*mm_exp)(PT_DREAL *C, int64_t ldc, const PT_DREAL *A, int64_t lda,
                   const PT_DREAL *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                   PT_DREAL alpha, const PT_DREAL *shift);
    void (*mm_ds)(PT_DREAL *C, int64_t ldc, const PT_DREAL *A, int64_t lda,
                  const PT_DREAL *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                  PT_DREAL alpha, const PT_DREAL *Drow, const PT_DREAL *P, int64_t ldp,
                  PT_DREAL scale);
    double (*maxabs)(const PT_DREAL *x, int64_t n);
    void (*decode)(PT_DREAL *o, PT_DREAL *s, const PT_DREAL *q, const PT_DREAL *k,
                   const PT_DREAL *v, const PT_DREAL *mask, int64_t n, int64_t D,
                   PT_DREAL scale);
};
extern const struct PT_DSFX(pt_att_kernels) PT_DSFX(pt_att_portable), PT_DSFX(pt_att_avx2),
    PT_DSFX(pt_att_avx512);

/* ========================================================== activation.c
 *   row:       y[c] = act(x[c] + bias[c]) for c in [c0, c1) (y may be x;
 *              bias may be NULL: y[c] = act(x[c])).
 *   grad_tile: rows [n0, n1), columns [c0, c1) of the backward, row
 *              stride C: g = dy * act'(x + bias); dx[n, c] += g, or = g
 *              with accumulate == 0, dx not read (dx may be NULL); p[c] =
 *              sum over the tile's rows of g, in double, in row order (p
 *              may be NULL; the slot zeroes p[c0..c1) first). g is a
 *              scratch row of 512 (CB) reals the slot may use. */
struct PT_DSFX(pt_act_kernels) {
    const char *path;
    void (*row)(PT_DREAL *y, const PT_DREAL *x, const PT_DREAL *bias, int64_t c0, int64_t c1,
                int kind);
    void (*grad_tile)(PT_DREAL *g, double *p, PT_DREAL *dx, const PT_DREAL *dy,
                      const PT_DREAL *x, const PT_DREAL *bias, int64_t C, int64_t n0,
                      int64_t n1, int64_t c0, int64_t c1, int kind, int accumulate);
};
extern const struct PT_DSFX(pt_act_kernels) PT_DSFX(pt_act_portable), PT_DSFX(pt_act_avx2),
    PT_DSFX(pt_act_avx512);

/* =========================================================== layernorm.c
 *   fwd_rows:   nr rows of the forward (stride C): y, mean(nr), rstd(nr)
 *               from x (w, b may be NULL); each row computed as if alone.
 *   bwd_row:    one row of dx (+=, or = with accumulate == 0) from dy, x, w
 *               (w may be NULL) and the saved m, rs; dx may be dy or x.
 *   dwdb_group: pdw(C) += sum_r dy_r * xhat_r, pdb(C) += sum_r dy_r over
 *               nr <= 4 (GROUP) rows of stride C, in double partials. */
struct PT_DSFX(pt_ln_kernels) {
    const char *path;
    void (*fwd_rows)(PT_DREAL *y, PT_DREAL *mean, PT_DREAL *rstd, const PT_DREAL *x,
                     const PT_DREAL *w, const PT_DREAL *b, int64_t nr, int64_t C,
                     PT_DREAL eps);
    void (*bwd_row)(PT_DREAL *dx, const PT_DREAL *dy, const PT_DREAL *x, const PT_DREAL *w,
                    PT_DREAL m, PT_DREAL rs, int64_t C, int accumulate);
    void (*dwdb_group)(double *restrict pdw, double *restrict pdb, const PT_DREAL *dy,
                       const PT_DREAL *x, const PT_DREAL *mean, const PT_DREAL *rstd, int nr,
                       int64_t C);
};
extern const struct PT_DSFX(pt_ln_kernels) PT_DSFX(pt_ln_portable), PT_DSFX(pt_ln_avx2),
    PT_DSFX(pt_ln_avx512);

/* ============================================================= softmax.c
 *   softmax_row: one row of softmax (want_log 0) or log_softmax (1); yr may
 *                be xr; the conventions of softmax.c for -inf/NaN rows.
 *   softmax_bwd_row: dxr[c] += J^T dyr for one row, yr the forward output
 *                (= with accumulate == 0, dxr not read).
 *   ce_fwd_row:  *lse_out = logsumexp(xr) and, when loss_out != NULL, the
 *                row's loss (0 when t == ignore_index; ls the smoothing).
 *   ce_bwd_row:  dr[c] += g * (softmax(xr)[c] - off) - [c == t] g * on
 *                (= with accumulate == 0, dr not read), recomputing
 *                softmax from the saved lse l; p is a scratch row of C
 *                reals.
 *   argmax_row:  the index of the first maximum of xr (C >= 1 entries), a
 *                NaN counting as the maximum (the first NaN wins:
 *                numpy.argmax's rule); exact, so every path returns the
 *                same index. pt_sm_argmax_row is the portable one. */
struct PT_DSFX(pt_sm_kernels) {
    const char *path;
    void (*softmax_row)(PT_DREAL *yr, const PT_DREAL *xr, int64_t C, int want_log);
    void (*softmax_bwd_row)(PT_DREAL *dxr, const PT_DREAL *dyr, const PT_DREAL *yr, int64_t C,
                            int want_log, int accumulate);
    void (*ce_fwd_row)(PT_DREAL *loss_out, PT_DREAL *lse_out, const PT_DREAL *xr, int64_t t,
                       int64_t C, int64_t ignore_index, double ls);
    void (*ce_bwd_row)(PT_DREAL *dr, PT_DREAL *p, const PT_DREAL *xr, PT_DREAL l, PT_DREAL g,
                       PT_DREAL off, PT_DREAL on, int64_t t, int64_t C, int accumulate);
    int64_t (*argmax_row)(const PT_DREAL *xr, int64_t C);
};
int64_t PT_DSFX(pt_sm_argmax_row)(const PT_DREAL *xr, int64_t C);
extern const struct PT_DSFX(pt_sm_kernels) PT_DSFX(pt_sm_portable), PT_DSFX(pt_sm_avx2),
    PT_DSFX(pt_sm_avx512);
/* float64's avx2 entry: the AVX2 + FMA rows with a vectorised exp
 * (softmax_avx2_f64.c); pt_sm_avx2_f64 is softmax.c's rows compiled for
 * AVX2 (libm's exp), whose softmax backward row it calls. */
extern const struct PT_DSFX(pt_sm_kernels) PT_DSFX(pt_sm_avx2fma);

/* =============================================================== optim.c
 * AdamW on elements [0, n) with the per-step constants k (rounded once to
 * the dtype), the same IEEE operations in the same order as the portable
 * loop (optim.c): m = b1 m + c1 g; v = b2 v + (c2 g) g;
 * p = p decay - (step_size m) / (sqrt(v) inv_bc2 + eps). */
typedef struct {
    PT_DREAL decay;        /* 1 - lr * wd */
    PT_DREAL b1, c1;       /* beta1, 1 - beta1 */
    PT_DREAL b2, c2;       /* beta2, 1 - beta2 */
    PT_DREAL step_size;    /* lr / (1 - beta1^t) */
    PT_DREAL inv_bc2;      /* 1 / sqrt(1 - beta2^t) */
    PT_DREAL eps;
} PT_DSFX(pt_adamw_consts);
struct PT_DSFX(pt_adamw_kernels) {
    const char *path;
    void (*range)(PT_DREAL *restrict p, PT_DREAL *restrict m, PT_DREAL *restrict v,
                  const PT_DREAL *restrict g, int64_t n, const PT_DSFX(pt_adamw_consts) *k);
};
extern const struct PT_DSFX(pt_adamw_kernels) PT_DSFX(pt_adamw_portable), PT_DSFX(pt_adamw_avx2),
    PT_DSFX(pt_adamw_avx512);

/* ============================================================== linear.c
 * dot_forward: y(N,OUT) = x(N,IN) w(OUT,IN)^T (+ b), for N up to the
 * table's linear_dot_rows, 0 < IN <= INT_MAX; each y element one fixed-
 * order sum, independent of the thread count and of N. NULL: the path has
 * none (the GEMM runs). max_rows: the rows up to which pt_linear_forward
 * calls it (measured against the BLAS, pt_dispatch.h), unless
 * PT_LINEAR_DOT_ROWS says otherwise. */
struct PT_DSFX(pt_lin_kernels) {
    const char *path;
    void (*dot_forward)(PT_DREAL *y, const PT_DREAL *x, const PT_DREAL *w, const PT_DREAL *b,
                        int64_t N, int64_t IN, int64_t OUT);
    int64_t max_rows;
    int64_t par_min;
    /* packed_panels: the columns of panels [g0, g1) of y(N,OUT) = x(N,IN)
     * w^T (+ b), over wp, w packed by pt_linear_pack (linear_packed.c:
     * panels of PT_LINEAR_PANEL columns), on the calling thread (the
     * threads share the panels out: linear_packed.c); N, IN, OUT > 0,
     * 0 <= g0 < g1 <= the panel count. Each y element is
     *   acc = 0; acc = acc + x[i,k] w[j,k] for k = 0..IN-1 in order; + b[j]
     * one rounding per product-add where the path fuses them (avx2 and
     * avx512 do, and so give the same bits): independent of the panel
     * range, of N and of the row's place in x. */
    void (*packed_panels)(PT_DREAL *y, const PT_DREAL *x, const PT_DREAL *wp,
                          const PT_DREAL *b, int64_t N, int64_t IN, int64_t OUT, int64_t g0,
                          int64_t g1);
};
extern const struct PT_DSFX(pt_lin_kernels) PT_DSFX(pt_lin_portable), PT_DSFX(pt_lin_avx2),
    PT_DSFX(pt_lin_avx512);
/* Their packed_panels slots (linear_packed.c; linear_packed_x86.c, float32). */
void PT_DSFX(pt_linear_packed_portable)(PT_DREAL *y, const PT_DREAL *x, const PT_DREAL *wp,
                                        const PT_DREAL *b, int64_t N, int64_t IN, int64_t OUT,
                                        int64_t g0, int64_t g1);
void PT_DSFX(pt_linear_packed_avx2)(PT_DREAL *y, const PT_DREAL *x, const PT_DREAL *wp,
                                    const PT_DREAL *b, int64_t N, int64_t IN, int64_t OUT,
                                    int64_t g0, int64_t g1);
void PT_DSFX(pt_linear_packed_avx512)(PT_DREAL *y, const PT_DREAL *x, const PT_DREAL *wp,
                                      const PT_DREAL *b, int64_t N, int64_t IN, int64_t OUT,
                                      int64_t g0, int64_t g1);
