/*
 * pt_layer.h -- the sublayers the whole-layer kernels share (internal:
 * included by layer_encoder.c and layer_decoder.c after pt_real.h, so each
 * helper exists once per dtype). One implementation of each:
 *
 *   lay_split_heads  rows (N, n*E) -> n blocks of (H, n_b, d) per sequence
 *   lay_merge_heads  (H, n_b, d) per sequence -> rows (N, E)
 *                    (lay_split_row, lay_merge_row: one row of them)
 *   lay_residual     x := norm(x + y) (post-norm) or x + y (pre-norm)
 *                    (lay_residual_rows: on a range of rows)
 *   lay_norm_in      the sublayer's input: x, or norm(x) (pre-norm)
 *   lay_ff_block     linear2(act(linear1(x)))
 *
 * Sequence b of a batch is rows [lay_off(b), lay_off(b+1)) of x: offsets
 * given (packed, variable length) or b*T (padded). The per-head blocks of
 * all sequences are laid out back to back, sequence b's at lay_off(b)*E,
 * which for the padded layout is exactly (B, H, T, d).
 *
 * The arithmetic is the modules' own: the same kernels in the same order
 * (x + y summed as the modules sum it, LayerNorm on the sum), so results
 * match the autograd path to rounding (bitwise for the same row count).
 */
#ifndef PT_LAYER_H
#define PT_LAYER_H

#include <string.h>
#include "pt_omp.h"

#define LAY_PAR_MIN 32768     /* elements below which a copy loop runs serially */
#define LAY_TRY(call) do { int st_ = (call); if (st_ != PT_OK) return st_; } while (0)

typedef struct PT_SFX(lay_seqs) {
    const int64_t *offsets;   /* (B+1) or NULL: sequence b at b*T */
    int64_t B, T;
} PT_SFX(lay_seqs);

static inline int64_t PT_SFX(lay_off)(const PT_SFX(lay_seqs) *s, int64_t b)
{
    return s->offsets ? s->offsets[b] : b * s->T;
}

/* The sequence holding row r (binary search over the offsets). */
static inline int64_t PT_SFX(lay_seq_of)(const PT_SFX(lay_seqs) *s, int64_t r)
{
    if (!s->offsets) return r / s->T;
    int64_t lo = 0, hi = s->B - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (s->offsets[mid] <= r) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* dst part p (p < nparts) at dst + p*N*E := heads of columns [p*E, (p+1)*E)
 * of src row r (of N rows, ld apart): row r of sequence b (length n, first
 * row o), head h, goes to o*E + (h*n + r - o)*d. */
static inline void PT_SFX(lay_split_row)(real *dst, const real *src, int64_t ld, int nparts,
                                         const PT_SFX(lay_seqs) *s, int64_t N, int64_t E,
                                         int64_t H, int64_t r)
{
    int64_t d = E / H;
    int64_t b = PT_SFX(lay_seq_of)(s, r), o = PT_SFX(lay_off)(s, b);
    int64_t n = PT_SFX(lay_off)(s, b + 1) - o, t = r - o;
    for (int p = 0; p < nparts; p++) {
        real *base = dst + (int64_t)p * N * E + o * E + t * d;
        const real *row = src + r * ld + (int64_t)p * E;
        for (int64_t h = 0; h < H; h++)
            memcpy(base + h * n * d, row + h * d, (size_t)d * sizeof(real));
    }
}

/* lay_split_row for every row of src (N, ld). */
static inline void PT_SFX(lay_split_heads)(real *dst, const real *src, int64_t ld, int nparts,
                                    const PT_SFX(lay_seqs) *s, int64_t N, int64_t E, int64_t H)
{
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (N * E * nparts > LAY_PAR_MIN)
    for (int64_t r = 0; r < N; r++) PT_SFX(lay_split_row)(dst, src, ld, nparts, s, N, E, H, r);
}

/* row r of dst (N, E) := its heads in the per-sequence head blocks of src
 * (lay_split_heads' layout, one part). */
static inline void PT_SFX(lay_merge_row)(real *dst, const real *src, const PT_SFX(lay_seqs) *s,
                                         int64_t E, int64_t H, int64_t r)
{
    int64_t d = E / H;
    int64_t b = PT_SFX(lay_seq_of)(s, r), o = PT_SFX(lay_off)(s, b);
    int64_t n = PT_SFX(lay_off)(s, b + 1) - o, t = r - o;
    const real *base = src + o * E + t * d;
    for (int64_t h = 0; h < H; h++)
        memcpy(dst + r * E + h * d, base + h * n * d, (size_t)d * sizeof(real));
}

/* lay_merge_row for every row of dst (N, E). */
static inline void PT_SFX(lay_merge_heads)(real *dst, const real *src, const PT_SFX(lay_seqs) *s,
                                    int64_t N, int64_t E, int64_t H)
{
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (N * E > LAY_PAR_MIN)
    for (int64_t r = 0; r < N; r++) PT_SFX(lay_merge_row)(dst, src, s, E, H, r);
}

/* Residual connection of sublayer output y (N, E) into x (N, E):
 * post-norm (norm_first == 0) x := norm_i(x + y), y used as scratch;
 * pre-norm x := x + y. mean, rstd: N scratch each. */
static inline int PT_SFX(lay_residual)(real *x, real *y, real *mean, real *rstd,
                                const PT_FN(pt_layer) *L, int i, int64_t N)
{
    int64_t n = N * L->E;
    real *acc = L->norm_first ? x : y;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (n > LAY_PAR_MIN)
    for (int64_t j = 0; j < n; j++) acc[j] = x[j] + y[j];
    if (L->norm_first) return PT_OK;
    return PT_FN(pt_layernorm_forward)(x, mean, rstd, y, L->norm_w[i], L->norm_b[i], N,
                                       L->E, L->norm_eps[i]);
}

/* lay_residual on rows [r0, r1) only (one thread's share in a team). */
static inline int PT_SFX(lay_residual_rows)(real *x, real *y, real *mean, real *rstd,
                                            const PT_FN(pt_layer) *L, int i, int64_t r0,
                                            int64_t r1)
{
    int64_t E = L->E;
    real *acc = L->norm_first ? x : y;
    for (int64_t j = r0 * E; j < r1 * E; j++) acc[j] = x[j] + y[j];
    if (L->norm_first || r0 == r1) return PT_OK;
    return PT_FN(pt_layernorm_forward)(x + r0 * E, mean + r0, rstd + r0, y + r0 * E,
                                       L->norm_w[i], L->norm_b[i], r1 - r0, E, L->norm_eps[i]);
}

/* The input of sublayer i: x itself (post-norm) or norm_i(x) written to
 * buf (pre-norm). */
static inline int PT_SFX(lay_norm_in)(const real **in, real *buf, real *mean, real *rstd,
                               const real *x, const PT_FN(pt_layer) *L, int i, int64_t N)
{
    if (!L->norm_first) {
        *in = x;
        return PT_OK;
    }
    *in = buf;
    return PT_FN(pt_layernorm_forward)(buf, mean, rstd, x, L->norm_w[i], L->norm_b[i], N,
                                       L->E, L->norm_eps[i]);
}

/* y (N, OUT) := x w^T + b, a product of layer L: for a packed decoder
 * step (L->packed_step >= 1) over the packed copy wp from packed_step rows
 * on and over w below, else as pt_linear_packed_forward (wp for few rows,
 * if any). */
static inline int PT_SFX(lay_linear)(real *y, const real *x, const PT_FN(pt_layer) *L,
                                     const real *wp, const real *w, const real *b, int64_t N,
                                     int64_t IN, int64_t OUT)
{
    if (L->packed_step)
        return N >= L->packed_step
            ? PT_FN(pt_linear_packed_forward_any)(y, x, wp, b, N, IN, OUT)
            : PT_FN(pt_linear_forward)(y, x, w, b, N, IN, OUT);
    return PT_FN(pt_linear_packed_forward)(y, x, wp, w, b, N, IN, OUT);
}

/* out (N, E) := linear2(act(linear1(in))); h (N, F) scratch; over the
 * packed weights where the layer has them. */
static inline int PT_SFX(lay_ff_block)(real *out, real *h, const real *in, const PT_FN(pt_layer) *L,
                                int64_t N)
{
    LAY_TRY(PT_SFX(lay_linear)(h, in, L, L->ff1_wp, L->ff1_w, L->ff1_b, N, L->E, L->F));
    if (L->act != PT_ACT_NONE)
        LAY_TRY(PT_FN(pt_bias_act_forward)(h, h, NULL, N, L->F, L->act));
    return PT_SFX(lay_linear)(out, h, L, L->ff2_wp, L->ff2_w, L->ff2_b, N, L->F, L->E);
}

/* The stack's final norm, in place on x (N, E). */
static inline int PT_SFX(lay_final_norm)(real *x, real *mean, real *rstd, int final_norm,
                                  const real *w, const real *b, real eps, int64_t N, int64_t E)
{
    if (!final_norm) return PT_OK;
    return PT_FN(pt_layernorm_forward)(x, mean, rstd, x, w, b, N, E, eps);
}

/* Shape checks every whole-layer kernel makes: at least one layer, all
 * of layers[0]'s sizes, the weights every layer needs. */
static inline int PT_SFX(lay_check)(const PT_FN(pt_layer) *layers, int64_t nlayers)
{
    if (!layers || nlayers < 1) return PT_EINVAL;
    const PT_FN(pt_layer) *L0 = layers;
    if (L0->E <= 0 || L0->H <= 0 || L0->F <= 0 || L0->E % L0->H) return PT_EINVAL;
    for (int64_t l = 0; l < nlayers; l++) {
        const PT_FN(pt_layer) *L = layers + l;
        if (L->E != L0->E || L->H != L0->H || L->F != L0->F) return PT_EINVAL;
        if (!L->sa_w || !L->sa_ow || !L->ff1_w || !L->ff2_w) return PT_EINVAL;
    }
    return PT_OK;
}

/* The regions of pt_encoder_forward's workspace for N rows of layer L
 * (their roles: layer_encoder.c's header), the one place that lays them
 * out for the serial layer and the team. */
typedef struct PT_SFX(lay_enc_ws) {
    real *A, *P, *O, *Y, *mean, *rstd;
} PT_SFX(lay_enc_ws);

static inline PT_SFX(lay_enc_ws) PT_SFX(lay_enc_regions)(real *work, const PT_FN(pt_layer) *L,
                                                         int64_t N)
{
    int64_t E = L->E, a = 3 * E > L->F ? 3 * E : L->F;
    PT_SFX(lay_enc_ws) w;
    w.A = work;
    w.P = w.A + N * a;
    w.O = w.P + 3 * N * E;
    w.Y = w.O + N * E;
    w.mean = w.Y + N * E;
    w.rstd = w.mean + N;
    return w;
}

/* layer_encoder_team.c: whether pt_encoder_forward runs the stack as one
 * team of threads (more than one thread, every layer's projections packed,
 * N within the packed kernel's rows), and that run: the layers on x (N, E)
 * over pt_encoder_forward's workspace, the mask in its final form. */
int PT_FN(pt_encoder_team_fits)(const PT_FN(pt_layer) *layers, int64_t nlayers, int64_t N);
int PT_FN(pt_encoder_team_forward)(real *x, real *work, const PT_FN(pt_layer) *layers,
                                   int64_t nlayers, const PT_SFX(lay_seqs) *s, int64_t N,
                                   const real *mask, const int64_t *ms, int is_causal);

#endif /* PT_LAYER_H */
