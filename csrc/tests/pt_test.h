/*
 * pt_test.h -- what every C test shares: the failure count, a seeded
 * xorshift generator of uniform values in [-1, 1) (each test file sets its
 * own seed with PT_TEST_SEED before including this, so its random cases
 * stay the same whatever the other files do) and a calloc that exits on
 * failure.
 */
#ifndef PT_TEST_H
#define PT_TEST_H
#include <stdio.h>
#include <stdlib.h>

#ifndef PT_TEST_SEED
#define PT_TEST_SEED 88172645463325252ULL
#endif

static int failures = 0;
static unsigned long long rng_state = PT_TEST_SEED;

static inline double urand(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static inline void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}
#endif
