/*
 * step_team.c -- pt_team (pt_team.h): the jobs of a decoding loop shared
 * by the threads of one parallel region, without a fork or a barrier per
 * job.
 *
 * A job is published by its number (seq, release); part p is taken by
 * whoever first moves taken[p] from the previous job's number to this
 * one's (compare-and-swap), so a thread that reads a stale number takes
 * nothing. The leader reuses the job's fields only after done reaches
 * parts, i.e. after every part has been taken and finished.
 */
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#endif
#include <string.h>
#include "pt_team.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

/* A spin-wait's pause; every 4096 of them the core is offered to another
 * thread (the one waited for, on a loaded machine). */
static inline void team_pause(unsigned *spins)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#endif
#if defined(__unix__) || defined(__APPLE__)
    if (++*spins % 4096 == 0) sched_yield();
#else
    (void)spins;
#endif
}

/* Part p of job s, if nobody has taken it yet. */
static inline void team_take(pt_team *team, int p, int64_t s)
{
    int64_t prev = s - 1;
    if (!__atomic_compare_exchange_n(&team->taken[p], &prev, s, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return;
    team->fn(team->arg, p, team->parts);
    __atomic_add_fetch(&team->done, 1, __ATOMIC_RELEASE);
}

void pt_team_init(pt_team *team, int parts)
{
    memset(team, 0, sizeof *team);
    team->parts = parts < 1 ? 1 : parts > PT_TEAM_MAX ? PT_TEAM_MAX : parts;
}

void pt_team_run(pt_team *team, pt_team_fn fn, void *arg)
{
    int64_t s = team->seq + 1;
    team->fn = fn;
    team->arg = arg;
    __atomic_store_n(&team->done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&team->seq, s, __ATOMIC_RELEASE);
    for (int p = 0; p < team->parts; p++) team_take(team, p, s);
    unsigned spins = 0;
    while (LOAD(&team->done) < team->parts) team_pause(&spins);
}

void pt_team_work(pt_team *team, int t)
{
    int64_t seen = 0;
    unsigned spins = 0;
    for (;;) {
        int64_t s = LOAD(&team->seq);
        if (s < 0) return;
        if (s == seen) {
            team_pause(&spins);
            continue;
        }
        seen = s;
        if (t < team->parts) team_take(team, t, s);
    }
}

void pt_team_end(pt_team *team)
{
    __atomic_store_n(&team->seq, -1, __ATOMIC_RELEASE);
}
