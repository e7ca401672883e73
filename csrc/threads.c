/*
 * threads.c -- the thread count every kernel uses, and the status strings.
 * Not typed: compiled once.
 */
#include <stdlib.h>
#include "pt.h"
#include "pt_omp.h"

/* 0 means "not set yet": the first query takes OMP_NUM_THREADS / the core
 * count, which is what omp_get_max_threads() reports. */
static int pt_threads = 0;

int pt_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static int clamp_threads(int n)
{
    return n < 1 ? 1 : n > PT_MAX_THREADS ? PT_MAX_THREADS : n;
}

void pt_set_num_threads(int n)
{
    pt_threads = clamp_threads(n);
}

int pt_get_num_threads(void)
{
    if (pt_threads == 0)
        pt_threads = clamp_threads(omp_get_max_threads());
    return pt_threads;
}

int pt_num_procs(void) { return omp_get_num_procs(); }

const char *pt_strerror(int status)
{
    switch (status) {
    case PT_OK: return "success";
    case PT_EINVAL: return "invalid argument (size, index or option out of range)";
    case PT_ENOMEM: return "out of memory";
    default: return "unknown pytransformer status";
    }
}
