/*
 * linear_packed.c -- y = x w^T + b over a weight packed once into column
 * panels (pt_kernels.h: pt_linear_pack), for inputs of few rows: the
 * packing, the entry points, and the portable path's packed_panels. The
 * avx2 and avx512 kernels are in linear_packed_x86.c.
 *
 * Why: the dot kernels (linear.c, linear_avx512.c) read w in place, so
 * each output is a dot product summed in 8 or 16 lanes and reduced by
 * shuffles, which compete with the FMAs for a port. Packed into panels of
 * PT_LINEAR_PANEL (64) output columns, each k of a panel is one
 * contiguous run of 64 weights: an outer-product tile (a row of x
 * broadcast against the panel's row) keeps every output in its own lane,
 * needs no reduction, and streams the panel in order. The layer stack
 * packs its projection weights once (pt_layer's *_wp fields); the copy is
 * kept equal to the weight by the caller (the Python LayerStack repacks
 * a weight whose version counter moved).
 *
 * Threads: each takes a contiguous run of the panels (pt_linear_threads
 * of them; pt_linear_packed_panels leaves the sharing to the caller), and
 * the path's packed_panels slot computes a run on one thread.
 *
 * Order: every output is acc = 0, then acc += x[i,k] w[j,k] for k in
 * order, then + b[j] -- one thread's, whatever the thread count, N, or
 * the row's place in its tile. The portable loop rounds the product and
 * the sum separately (unless the compiler contracts them), the x86 paths
 * fuse them: they agree with each other bit for bit and with the portable
 * path to rounding.
 */
#include <string.h>
#include "pt_real.h"
#include "pt_dispatch.h"
#include "pt_omp.h"
#include "pt_team.h"

#define PW PT_LINEAR_PANEL

int64_t PT_FN(pt_linear_pack_size)(int64_t OUT, int64_t IN)
{
    return (OUT + PW - 1) / PW * PW * IN;
}

int PT_FN(pt_linear_pack)(real *wp, const real *w, int64_t OUT, int64_t IN)
{
    if (OUT <= 0 || IN <= 0 || !wp || !w) return PT_EINVAL;
    int64_t G = (OUT + PW - 1) / PW;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (OUT * IN > (1 << 18))
    for (int64_t g = 0; g < G; g++) {
        real *panel = wp + g * IN * PW;
        int64_t cols = OUT - g * PW < PW ? OUT - g * PW : PW;
        if (cols < PW) memset(panel, 0, (size_t)(IN * PW) * sizeof(real));
        for (int64_t j = 0; j < cols; j++) {
            const real *row = w + (g * PW + j) * IN;
            for (int64_t k = 0; k < IN; k++) panel[k * PW + j] = row[k];
        }
    }
    return PT_OK;
}

int PT_FN(pt_linear_pack_matches)(const real *wp, const real *w, int64_t OUT, int64_t IN)
{
    enum { SAMPLES = 32 };
    int64_t n = OUT * IN;
    for (int s = 0; s < SAMPLES; s++) {
        /* elements 0 and n - 1, and 30 spread by an odd stride between */
        int64_t e = s == SAMPLES - 1 ? n - 1 : (int64_t)((uint64_t)s * 2654435761u % (uint64_t)n);
        int64_t j = e / IN, k = e % IN;
        const real *p = wp + ((j / PW) * IN + k) * PW + j % PW;
        if (memcmp(p, w + e, sizeof(real)) != 0) return 0;
    }
    return 1;
}

/* Panels [g0, g1) of G, share t of n: the t-th of n contiguous runs. */
static inline void PT_SFX(lp_share)(int64_t G, int t, int n, int64_t *g0, int64_t *g1)
{
    *g0 = G * t / n;
    *g1 = G * (t + 1) / n;
}

/* The packed product on pt_linear_threads threads, each its share of the
 * panels. */
static void PT_SFX(lp_run)(real *y, const real *x, const real *wp, const real *b, int64_t N,
                           int64_t IN, int64_t OUT)
{
    void (*panels)(real *, const real *, const real *, const real *, int64_t, int64_t, int64_t,
                   int64_t, int64_t) = PT_KERNELS(lin)->packed_panels;
    int nth = pt_linear_threads(N, IN, OUT, pt_get_num_threads());
    int64_t G = (OUT + PW - 1) / PW;
    (void)nth;   /* read only by the OpenMP pragma */
    #pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int64_t g0, g1;
        PT_SFX(lp_share)(G, omp_get_thread_num(), omp_get_num_threads(), &g0, &g1);
        if (g0 < g1) panels(y, x, wp, b, N, IN, OUT, g0, g1);
    }
}

int PT_FN(pt_linear_packed_forward)(real *y, const real *x, const real *wp, const real *w,
                                    const real *b, int64_t N, int64_t IN, int64_t OUT)
{
    if (wp && N > 0 && IN > 0 && OUT > 0 && N <= pt_dispatch.linear_packed_rows) {
        PT_SFX(lp_run)(y, x, wp, b, N, IN, OUT);
        return PT_OK;
    }
    return PT_FN(pt_linear_forward)(y, x, w, b, N, IN, OUT);
}

int PT_FN(pt_linear_packed_forward_any)(real *y, const real *x, const real *wp, const real *b,
                                        int64_t N, int64_t IN, int64_t OUT)
{
    if (N < 0 || IN <= 0 || OUT <= 0 || (N && (!y || !x || !wp))) return PT_EINVAL;
    if (N) PT_SFX(lp_run)(y, x, wp, b, N, IN, OUT);
    return PT_OK;
}

int PT_FN(pt_linear_packed_panels)(real *y, const real *x, const real *wp, const real *b,
                                   int64_t N, int64_t IN, int64_t OUT, int64_t g0, int64_t g1)
{
    if (N < 0 || IN <= 0 || OUT <= 0 || g0 < 0 || g1 > (OUT + PW - 1) / PW) return PT_EINVAL;
    if (N > 0 && g0 < g1) PT_KERNELS(lin)->packed_panels(y, x, wp, b, N, IN, OUT, g0, g1);
    return PT_OK;
}

typedef struct PT_SFX(lp_job) {
    real *y;
    const real *x, *wp, *b;
    int64_t N, IN, OUT;
} PT_SFX(lp_job);

static void PT_SFX(lp_part)(void *arg, int part, int parts)
{
    const PT_SFX(lp_job) *a = arg;
    int64_t g0, g1;
    PT_SFX(lp_share)((a->OUT + PW - 1) / PW, part, parts, &g0, &g1);
    if (g0 < g1)
        PT_KERNELS(lin)->packed_panels(a->y, a->x, a->wp, a->b, a->N, a->IN, a->OUT, g0, g1);
}

int PT_FN(pt_linear_packed_team)(struct pt_team *team, real *y, const real *x, const real *wp,
                                 const real *b, int64_t N, int64_t IN, int64_t OUT)
{
    if (!team || N < 0 || IN <= 0 || OUT <= 0 || (N && (!y || !x || !wp))) return PT_EINVAL;
    PT_SFX(lp_job) job = {y, x, wp, b, N, IN, OUT};
    if (N) pt_team_run(team, PT_SFX(lp_part), &job);
    return PT_OK;
}

/* The portable packed_panels: per panel and row, 64 accumulators. */
void PT_SFX(pt_linear_packed_portable)(real *y, const real *x, const real *wp, const real *b,
                                       int64_t N, int64_t IN, int64_t OUT, int64_t g0, int64_t g1)
{
    for (int64_t g = g0; g < g1; g++) {
        const real *panel = wp + g * IN * PW;
        int64_t cols = OUT - g * PW < PW ? OUT - g * PW : PW;
        for (int64_t i = 0; i < N; i++) {
            real acc[PW];
            for (int j = 0; j < PW; j++) acc[j] = 0;
            const real *xi = x + i * IN;
            for (int64_t k = 0; k < IN; k++) {
                real xv = xi[k];
                const real *wk = panel + k * PW;
                for (int j = 0; j < PW; j++) acc[j] += xv * wk[j];
            }
            real *yi = y + i * OUT + g * PW;
            for (int64_t j = 0; j < cols; j++) yi[j] = b ? acc[j] + b[g * PW + j] : acc[j];
        }
    }
}
