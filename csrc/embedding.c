/*
 * embedding.c -- token embedding lookup (forward, backward) and the fixed
 * sinusoidal position table.
 *
 *   forward:  y[n, :] = table[ids[n], :]          y (N,C), table (V,C)
 *   backward: dtable[ids[n], :] += dy[n, :]       for n = 0 .. N-1, in order
 *             (accumulate == 0: dtable starts from zeros, each thread
 *             zeroing the rows it owns; pt_kernels.h)
 *   positions: out[t, 2i]   = sin(t / base^(2i/C))
 *              out[t, 2i+1] = cos(t / base^(2i/C))    (odd C: last column sin)
 *
 * Backward determinism: each thread owns a range of vocabulary rows of
 * dtable and walks all ids in order n = 0, 1, ..., skipping ids outside its
 * range, so every row receives its additions in the serial order whatever
 * the thread count: repeated ids accumulate exactly as a serial loop would,
 * bit for bit. Ranges are balanced by id counts; whole rows stay contiguous
 * (splitting columns instead measured slower than serial on 2 cores). One
 * very frequent id (e.g. padding) still lands on one thread: never slower
 * than serial, but no faster either.
 */
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"

/* 1 when every id lies in [0, V). */
static int PT_SFX(ids_in_range)(const int64_t *ids, int64_t N, int64_t V)
{
    int64_t bad = 0;
    for (int64_t n = 0; n < N; n++)
        bad |= (ids[n] < 0) | (ids[n] >= V);
    return !bad;
}

int PT_FN(pt_embedding_forward)(real *y, const int64_t *ids, const real *table,
                                int64_t N, int64_t V, int64_t C)
{
    if (N < 0 || V < 0 || C < 0) return PT_EINVAL;
    if (!PT_SFX(ids_in_range)(ids, N, V)) return PT_EINVAL;
    if (C == 0) return PT_OK;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (N * C > 32768) schedule(static)
    for (int64_t n = 0; n < N; n++)
        memcpy(y + n * C, table + ids[n] * C, (size_t)C * sizeof(real));
    return PT_OK;
}

/* Task k of nth owns vocabulary rows [bounds[k], bounds[k+1]). The bounds
 * split the ids into nth groups of about N/nth occurrences (from a histogram,
 * when V is not much larger than N), else the vocabulary into equal ranges.
 * Only speed depends on this choice, never the result. */
static void PT_SFX(vocab_bounds)(int64_t *bounds, int nth, const int64_t *ids,
                                 int64_t N, int64_t V)
{
    int64_t *count = V <= 4 * N + 4096 ? calloc((size_t)V, sizeof(int64_t)) : NULL;
    bounds[0] = 0;
    for (int k = 1; k < nth; k++) bounds[k] = V * k / nth;
    bounds[nth] = V;
    if (!count) return;                   /* equal ranges (also on ENOMEM) */
    for (int64_t n = 0; n < N; n++) count[ids[n]]++;
    int64_t cum = 0, v = 0;
    for (int k = 1; k < nth; k++) {
        int64_t target = N * k / nth;     /* first row with cum >= target */
        while (v < V && cum < target) cum += count[v++];
        bounds[k] = v;
    }
    free(count);
}

int PT_FN(pt_embedding_backward)(real *dtable, const real *dy, const int64_t *ids,
                                 int64_t N, int64_t V, int64_t C, int accumulate)
{
    if (N < 0 || V < 0 || C < 0) return PT_EINVAL;
    if (!PT_SFX(ids_in_range)(ids, N, V)) return PT_EINVAL;
    if (C == 0) return PT_OK;
    if (N == 0) {
        if (!accumulate) memset(dtable, 0, (size_t)V * (size_t)C * sizeof(real));
        return PT_OK;
    }
    int nth = pt_get_num_threads();
    if (N * C <= 32768 || V < 2) nth = 1;
    if (nth > 256) nth = 256;
    int64_t bounds[257];
    PT_SFX(vocab_bounds)(bounds, nth, ids, N, V);
    #pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static, 1)
    for (int k = 0; k < nth; k++) {
        int64_t v0 = bounds[k], v1 = bounds[k + 1];
        if (v0 >= v1) continue;
        if (!accumulate) memset(dtable + v0 * C, 0, (size_t)(v1 - v0) * (size_t)C * sizeof(real));
        for (int64_t n = 0; n < N; n++) {
            int64_t id = ids[n];
            if (id < v0 || id >= v1) continue;
            real *dst = dtable + id * C;
            const real *src = dy + n * C;
            for (int64_t c = 0; c < C; c++) dst[c] += src[c];
        }
    }
    return PT_OK;
}

int PT_FN(pt_sinusoidal_positions)(real *out, int64_t T, int64_t C, real base)
{
    if (T < 0 || C < 0 || !(base > 0)) return PT_EINVAL;
    if (T == 0 || C == 0) return PT_OK;
    /* inv[i] = 1 / base^(2i/C) for column pair i, in double. */
    int64_t npair = (C + 1) / 2;
    double *div = malloc((size_t)npair * sizeof(double));
    if (!div) return PT_ENOMEM;
    for (int64_t i = 0; i < npair; i++)
        div[i] = pow((double)base, (double)(2 * i) / (double)C);
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (T * C > 16384) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        real *row = out + t * C;
        for (int64_t i = 0; i < npair; i++) {
            double a = (double)t / div[i];
            row[2 * i] = (real)sin(a);
            if (2 * i + 1 < C) row[2 * i + 1] = (real)cos(a);
        }
    }
    free(div);
    return PT_OK;
}
