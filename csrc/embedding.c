/*
 * embedding.c -- token embedding lookup (forward, backward) and the fixed
 * sinusoidal position table.
 *
 *   forward:  y[n, :] = table[ids[n], :]          y (N,C), table (V,C)
 *   backward: dtable[ids[n], :] += dy[n, :]       for n = 0 .. N-1, in order
 *   positions: out[t, 2i]   = sin(t / base^(2i/C))
 *              out[t, 2i+1] = cos(t / base^(2i/C))    (odd C: last column sin)
 *
 * Backward determinism: the work is split into tasks that own disjoint
 * parts of dtable -- a block of columns and a range of vocabulary rows --
 * and every task walks ids in order n = 0, 1, ..., so each element of dtable
 * receives its additions in the same order (the serial order) whatever the
 * thread count. Repeated ids therefore accumulate exactly as a serial loop
 * would, bit for bit. Columns are split first (each task then streams its
 * slice of every dy row); when C is too narrow to give every thread a block,
 * the vocabulary is split too, and a task skips ids outside its range.
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

/* Columns per task are a multiple of this (64 bytes of float), so two tasks
 * never write the same cache line of a dtable row. */
#define EMB_COL_ALIGN 16

int PT_FN(pt_embedding_backward)(real *dtable, const real *dy, const int64_t *ids,
                                 int64_t N, int64_t V, int64_t C)
{
    if (N < 0 || V < 0 || C < 0) return PT_EINVAL;
    if (!PT_SFX(ids_in_range)(ids, N, V)) return PT_EINVAL;
    if (N == 0 || C == 0) return PT_OK;
    int nth = pt_get_num_threads();
    if (N * C <= 32768) nth = 1;
    /* Column blocks: about C / nth columns each, rounded up to the alignment. */
    int64_t cb = (C + nth - 1) / nth;
    cb = (cb + EMB_COL_ALIGN - 1) / EMB_COL_ALIGN * EMB_COL_ALIGN;
    if (cb > C) cb = C;
    int64_t ncb = (C + cb - 1) / cb;
    /* Vocabulary ranges: enough to give every thread a task. */
    int64_t nvb = ncb >= nth ? 1 : (nth + ncb - 1) / ncb;
    if (nvb > V) nvb = V;
    int64_t ntask = ncb * nvb;
    #pragma omp parallel for num_threads(nth) if (ntask > 1) schedule(static)
    for (int64_t task = 0; task < ntask; task++) {
        int64_t c0 = (task % ncb) * cb;
        int64_t c1 = c0 + cb < C ? c0 + cb : C;
        int64_t vb = task / ncb;
        int64_t v0 = V * vb / nvb, v1 = V * (vb + 1) / nvb;
        int64_t w = c1 - c0;
        for (int64_t n = 0; n < N; n++) {
            int64_t id = ids[n];
            if (id < v0 || id >= v1) continue;
            real *dst = dtable + id * C + c0;
            const real *src = dy + n * C + c0;
            for (int64_t c = 0; c < w; c++) dst[c] += src[c];
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
