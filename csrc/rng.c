/*
 * rng.c -- counter-based random numbers for dropout masks. Not typed:
 * compiled once.
 *
 * Element i of the stream for `seed` is splitmix64's i-th output:
 *   z  = seed + (i + 1) * 0x9E3779B97F4A7C15        (mod 2^64)
 *   z  = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *   z  = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *   u_i = z ^ (z >> 31)
 * (Steele, Lea, Flood 2014; the generator behind Java's SplittableRandom).
 * Being a pure function of (seed, i), the mask does not depend on the
 * number of threads or on how the range is chunked, and any slice can be
 * regenerated independently. pytransformer.reference.dropout reproduces it
 * in NumPy, bit for bit.
 *
 * keep[i] = (top 53 bits of u_i) * 2^-53 >= p, i.e. a uniform in [0, 1) on
 * a 2^-53 grid compared with p: probability 1 - p up to 2^-53; p = 0 keeps
 * everything and p = 1 nothing.
 */
#include "pt.h"
#include "pt_omp.h"

static inline uint64_t splitmix64_at(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

int pt_dropout_mask(uint8_t *keep, int64_t n, double p, uint64_t seed)
{
    if (n < 0 || !(p >= 0.0 && p <= 1.0)) return PT_EINVAL;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64_at(seed, (uint64_t)i) >> 11) * 0x1p-53;
        keep[i] = (uint8_t)(u >= p);
    }
    return PT_OK;
}
