/*
 * pt_omp.h -- lets the same source build with and without OpenMP
 * (after scikit-learn's _openmp_helpers). Without OpenMP the pragmas are
 * ignored and these stubs report one thread.
 */
#ifndef PT_OMP_H
#define PT_OMP_H

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
static inline int omp_in_parallel(void) { return 0; }
#endif

#endif /* PT_OMP_H */
