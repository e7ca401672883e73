/*
 * blas.c -- the BLAS hook. The Python layer (pytransformer/_blas.pyx) hands
 * us scipy.linalg.cython_blas's sgemm/dgemm at import; without SciPy the
 * pointers stay NULL and gemm.c uses its own fallback. Not typed.
 *
 * Shared threads. OpenBLAS (0.3.27 on) lets the program run its parallel
 * work: openblas_set_threads_callback_function(cb) makes every threaded
 * BLAS call hand its jobs to cb instead of to OpenBLAS's own pthread pool.
 * pt_blas_share_threads installs pt_blas_run_jobs there, which runs the
 * jobs on the calling thread's OpenMP team, the threads our kernels use.
 * One pool then serves both, so its idle threads may spin between regions
 * (runtime.py sets GOMP_SPINCOUNT) without taking the cores from a second
 * pool, and a GEMM between two kernels wakes no other threads.
 *
 * The jobs of one call must run at the same time (OpenBLAS's threaded
 * level 3 has each job wait for the panels the others pack), and job i
 * uses OpenBLAS's per-thread buffer i, so two calls must not run at once:
 * pt_blas_run_jobs holds a mutex while a call runs and gives each job its
 * own thread. The OpenMP team gives that when it can (a call from outside
 * any parallel region, team size as asked); otherwise (a call from inside
 * an OpenMP region, a smaller team, or a child process after fork, where
 * libgomp's threads are gone) the jobs run on threads created for the
 * call.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "pt.h"
#include "pt_blas.h"
#include "pt_omp.h"

pt_sgemm_fn pt_blas_sgemm = NULL;
pt_dgemm_fn pt_blas_dgemm = NULL;

void pt_set_blas(pt_sgemm_fn sgemm, pt_dgemm_fn dgemm)
{
    pt_blas_sgemm = sgemm;
    pt_blas_dgemm = dgemm;
}

int pt_blas_available(void) { return pt_blas_sgemm != NULL && pt_blas_dgemm != NULL; }

/* OpenBLAS's callback types (cblas.h, openblas_dojob_callback and
 * openblas_threads_callback). */
typedef void (*pt_blas_dojob)(int thread_num, void *jobdata, int dojob_data);
typedef void (*pt_blas_threads_cb)(int sync, pt_blas_dojob dojob, int numjobs,
                                   size_t jobdata_elsize, void *jobdata, int dojob_data);
typedef void (*pt_blas_set_cb)(pt_blas_threads_cb cb);

static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int forked = 0;      /* set in a child after fork: libgomp unusable */
static int shared = 0;

struct pt_blas_job {
    pt_blas_dojob dojob;
    int i, arg;
    void *data;
};

static void *run_one(void *p)
{
    struct pt_blas_job *j = p;
    j->dojob(j->i, j->data, j->arg);
    return NULL;
}

/* Jobs 1.. on new threads, job 0 on the caller. A job whose thread cannot
 * be created (or when even the bookkeeping cannot be allocated) runs on
 * the caller after job 0, which may then wait for it: there is no other
 * thread to run it on. */
static void run_on_pthreads(pt_blas_dojob dojob, int n, char *base, size_t elsize, int arg)
{
    struct pt_blas_job *jobs = malloc((size_t)n * sizeof *jobs);
    pthread_t *tid = malloc((size_t)n * sizeof *tid);
    int *started = calloc((size_t)n, sizeof *started);
    if (!jobs || !tid || !started) {
        for (int i = 0; i < n; i++) dojob(i, base + (size_t)i * elsize, arg);
    } else {
        for (int i = 0; i < n; i++) {
            jobs[i].dojob = dojob;
            jobs[i].i = i;
            jobs[i].arg = arg;
            jobs[i].data = base + (size_t)i * elsize;
        }
        for (int i = 1; i < n; i++)
            started[i] = pthread_create(&tid[i], NULL, run_one, &jobs[i]) == 0;
        run_one(&jobs[0]);
        for (int i = 1; i < n; i++) {
            if (started[i]) pthread_join(tid[i], NULL);
            else run_one(&jobs[i]);
        }
    }
    free(jobs);
    free(tid);
    free(started);
}

static void pt_blas_run_jobs(int sync, pt_blas_dojob dojob, int numjobs, size_t elsize,
                             void *jobdata, int arg)
{
    (void)sync;                      /* OpenBLAS always waits for the jobs */
    char *base = jobdata;
    if (numjobs < 1) return;
    pthread_mutex_lock(&run_lock);
    if (numjobs == 1) {
        dojob(0, base, arg);
    } else {
        int done = 0;
#ifdef _OPENMP
        if (!forked && !omp_in_parallel()) {
            #pragma omp parallel num_threads(numjobs)
            {
                if (omp_get_num_threads() == numjobs) {
                    int i = omp_get_thread_num();
                    dojob(i, base + (size_t)i * elsize, arg);
                    if (i == 0) done = 1;
                }
            }
        }
#endif
        if (!done) run_on_pthreads(dojob, numjobs, base, elsize, arg);
    }
    pthread_mutex_unlock(&run_lock);
}

static void after_fork_in_child(void)
{
    forked = 1;
    pthread_mutex_init(&run_lock, NULL);
}

int pt_blas_share_threads(void *set_callback)
{
    static int atfork = 0;
    if (!set_callback) return PT_EINVAL;
    if (!atfork && pthread_atfork(NULL, NULL, after_fork_in_child) == 0) atfork = 1;
    ((pt_blas_set_cb)(uintptr_t)set_callback)(pt_blas_run_jobs);
    shared = 1;
    return PT_OK;
}

int pt_blas_threads_shared(void) { return shared; }
