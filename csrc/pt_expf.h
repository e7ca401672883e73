/*
 * pt_expf.h -- a float32 exp that vectorises (internal; header-only).
 *
 * Cephes' expf: Cody-Waite reduction by ln 2, degree-5 polynomial; measured
 * relative error <= 1.2e-7 (about 2 ulp), with exact special values
 * exp(-inf) = 0, exp(+inf) = inf, exp(NaN) = NaN. Results below ~1.7e-38
 * (x < -86.98) are flushed to 0 instead of going subnormal; probabilities
 * that small do not matter. libm's expf is a scalar call, ~7x slower here,
 * and exp is most of the cost of softmax, cross-entropy, attention and GELU.
 *
 * Why bit masks rather than `x < lo ? lo : x`: GCC threads such branches
 * through the arithmetic and then, since float ops may trap (no
 * -ffast-math), refuses to vectorise the loop. Masks keep it one path.
 */
#ifndef PT_EXPF_H
#define PT_EXPF_H
#include <stdint.h>

typedef union { float f; uint32_t u; } pt_fbits;

static inline float pt_expf(float x)
{
    const pt_fbits lo = {-86.98f}, hi = {88.72283f};
    uint32_t below = 0u - (uint32_t)(x < lo.f);     /* all ones if x < lo */
    uint32_t above = 0u - (uint32_t)(x > hi.f);     /* all ones if x > hi */
    pt_fbits xc = {x}, kb, two, y;
    xc.u = (xc.u & ~below) | (lo.u & below);        /* clamp (NaN passes) */
    xc.u = (xc.u & ~above) | (hi.u & above);
    /* k = round(x / ln 2) by adding 1.5 * 2^23: the integer lands in the
     * low mantissa bits of kb (|k| <= 128 here) */
    kb.f = xc.f * 1.44269504088896341f + 12582912.0f;
    float k = kb.f - 12582912.0f;
    /* r = x - k ln 2 in [-ln2/2, ln2/2]; ln 2 split so k * 0.693359375
     * is exact */
    float r = xc.f - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    /* exp(r) ~ 1 + r + r^2 * P(r) */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* times 2^k: k is in [-125, 128], so build the normal float 2^(k-1)
     * in the exponent field and double it */
    two.u = (kb.u - 0x4B400000u + 126u) << 23;
    y.f = p * two.f * 2.0f;
    y.u &= ~below;                                  /* exp(x < lo) = 0 */
    y.u = (y.u & ~above) | (0x7F800000u & above);   /* exp(x > hi) = inf */
    return y.f;
}

#endif /* PT_EXPF_H */
