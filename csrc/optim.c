/*
 * optim.c -- the fused AdamW step (torch.optim.AdamW semantics), in place on
 * flat buffers param, m (exp_avg), v (exp_avg_sq) and grad, all of n elements.
 *
 * With t = step (counted from 1), per element:
 *   p  = p * (1 - lr * wd)                       decoupled weight decay, first
 *   m  = b1 * m + (1 - b1) * g
 *   v  = b2 * v + (1 - b2) * g^2
 *   p  = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * which is PyTorch's single-tensor/foreach order of operations.
 *
 * Precision: the per-step constants (1 - lr*wd, 1 - b1, lr / (1 - b1^t),
 * 1 / sqrt(1 - b2^t), ...) are computed in double and rounded once to
 * `real`; the element arithmetic is then done in `real`, as PyTorch does for
 * float32 tensors (the float64 build is all double). A float32 element is
 * rounded at every operation instead of once: a few ulps.
 *
 * Speed: the step streams 4 arrays in and 3 out (28 bytes per float32
 * element), so it is memory bound once the arithmetic is vectorised. GCC
 * will not vectorise a loop calling sqrt without -fno-math-errno (the errno
 * branch), so the AVX2 path is written with intrinsics (pt_avx2.h) and
 * chosen once by ISA level (dispatch.c; PT_ISA=portable forces the C
 * loop). Both paths do the same IEEE operations in the same order (no FMA),
 * so their results are identical, and so are those of any split of the
 * elements between threads: independent of the thread count.
 * Measured (98 tensors, 11.7 M float32, as in bench.train_step; median ms,
 * 1 / 2 threads): all-double scalar loop 80 / 45-50; float32 AVX2 12 / 10.5,
 * i.e. ~30 GB/s, the memory bandwidth of this 2-core machine.
 */
#include <math.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_dispatch.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define AD_X86 1
#include "pt_avx2.h"
#else
#define AD_X86 0
#endif

/* Per-step constants, rounded once to `real` (pt_dispatch_slots.h). */
typedef PT_SFX(pt_adamw_consts) PT_SFX(adamw_consts);

/* Elements [0, n) of the step, portable C. restrict: the Python layer
 * rejects overlapping buffers. */
static void PT_SFX(adamw_c)(real *restrict p, real *restrict m, real *restrict v,
                            const real *restrict g, int64_t n, const PT_SFX(adamw_consts) *k)
{
    const real decay = k->decay, b1 = k->b1, c1 = k->c1, b2 = k->b2, c2 = k->c2;
    const real step_size = k->step_size, inv_bc2 = k->inv_bc2, eps = k->eps;
    for (int64_t i = 0; i < n; i++) {
        real gi = g[i];
        real mi = b1 * m[i] + c1 * gi;
        real vi = b2 * v[i] + c2 * gi * gi;
        real denom = r_sqrt(vi) * inv_bc2 + eps;
        p[i] = p[i] * decay - step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

#if AD_X86
/* The same, VW elements at a time; the tail goes to adamw_c. */
__attribute__((target("avx2,fma")))
static void PT_SFX(adamw_avx2)(real *restrict p, real *restrict m, real *restrict v,
                               const real *restrict g, int64_t n, const PT_SFX(adamw_consts) *k)
{
    const vreal decay = V_SET1(k->decay), b1 = V_SET1(k->b1), c1 = V_SET1(k->c1);
    const vreal b2 = V_SET1(k->b2), c2 = V_SET1(k->c2), step_size = V_SET1(k->step_size);
    const vreal inv_bc2 = V_SET1(k->inv_bc2), eps = V_SET1(k->eps);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vreal gi = V_LOAD(g + i);
        vreal mi = V_ADD(V_MUL(b1, V_LOAD(m + i)), V_MUL(c1, gi));
        vreal vi = V_ADD(V_MUL(b2, V_LOAD(v + i)), V_MUL(V_MUL(c2, gi), gi));
        vreal denom = V_ADD(V_MUL(V_SQRT(vi), inv_bc2), eps);
        vreal pi = V_SUB(V_MUL(V_LOAD(p + i), decay), V_DIV(V_MUL(step_size, mi), denom));
        V_STORE(m + i, mi);
        V_STORE(v + i, vi);
        V_STORE(p + i, pi);
    }
    PT_SFX(adamw_c)(p + i, m + i, v + i, g + i, n - i, k);
}
#endif

/* The paths of the dispatch table (pt_dispatch.h). */
const struct PT_SFX(pt_adamw_kernels) PT_SFX(pt_adamw_portable) = {"portable", PT_SFX(adamw_c)};
#if AD_X86
const struct PT_SFX(pt_adamw_kernels) PT_SFX(pt_adamw_avx2) = {"avx2", PT_SFX(adamw_avx2)};
#endif

/* Each thread takes one contiguous slice, cut at a multiple of 64 elements
 * (whole cache lines, whole vectors). */
#define AD_ALIGN 64

int PT_FN(pt_adamw_step)(real *param, real *m, real *v, const real *grad,
                         int64_t n, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int64_t step)
{
    if (n < 0 || step < 1) return PT_EINVAL;
    if (!(lr >= 0) || !(eps >= 0) || !(weight_decay >= 0) ||
        !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
        return PT_EINVAL;
    PT_SFX(adamw_consts) k;
    k.decay = (real)(1.0 - lr * weight_decay);
    k.b1 = (real)beta1;
    k.c1 = (real)(1.0 - beta1);
    k.b2 = (real)beta2;
    k.c2 = (real)(1.0 - beta2);
    k.step_size = (real)(lr / (1.0 - pow(beta1, (double)step)));
    k.inv_bc2 = (real)(1.0 / sqrt(1.0 - pow(beta2, (double)step)));
    k.eps = (real)eps;
    void (*range)(real *restrict, real *restrict, real *restrict, const real *restrict,
                  int64_t, const PT_SFX(adamw_consts) *) = PT_KERNELS(adamw)->range;
    int nth = n > 65536 ? pt_get_num_threads() : 1;
    (void)nth;                     /* read only by the pragma (no OpenMP: unused) */
    #pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int T = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t chunks = (n + AD_ALIGN - 1) / AD_ALIGN;
        int64_t lo = chunks * id / T * AD_ALIGN, hi = chunks * (id + 1) / T * AD_ALIGN;
        if (hi > n) hi = n;
        if (lo < hi) range(param + lo, m + lo, v + lo, grad + lo, hi - lo, &k);
    }
    return PT_OK;
}
