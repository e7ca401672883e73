/*
 * optim.c -- the fused AdamW step (torch.optim.AdamW semantics), in place on
 * flat buffers param, m (exp_avg), v (exp_avg_sq) and grad, all of n elements.
 *
 * With t = step (counted from 1), per element:
 *   p  = p * (1 - lr * wd)                       decoupled weight decay, first
 *   m  = b1 * m + (1 - b1) * g
 *   v  = b2 * v + (1 - b2) * g^2
 *   p  = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * which is PyTorch's single-tensor/foreach order of operations. The element
 * arithmetic is done in double for both dtypes (the step is memory bound,
 * so this costs nothing measurable) and rounded once to `real` on store.
 * Elementwise, hence independent of the thread count.
 */
#include <math.h>
#include "pt_real.h"
#include "pt_omp.h"

int PT_FN(pt_adamw_step)(real *param, real *m, real *v, const real *grad,
                         int64_t n, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int64_t step)
{
    if (n < 0 || step < 1) return PT_EINVAL;
    if (!(lr >= 0) || !(eps >= 0) || !(weight_decay >= 0) ||
        !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
        return PT_EINVAL;
    double b1 = beta1, b2 = beta2;
    double decay = 1.0 - (double)lr * (double)weight_decay;
    double step_size = (double)lr / (1.0 - pow(b1, (double)step));
    double bc2_sqrt = sqrt(1.0 - pow(b2, (double)step));
    double e = eps;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double g = grad[i];
        double mi = b1 * m[i] + (1.0 - b1) * g;
        double vi = b2 * v[i] + (1.0 - b2) * g * g;
        double denom = sqrt(vi) / bc2_sqrt + e;
        double pi = param[i] * decay - step_size * mi / denom;
        m[i] = (real)mi;
        v[i] = (real)vi;
        param[i] = (real)pi;
    }
    return PT_OK;
}
