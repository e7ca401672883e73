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
 *
 * A part under way on a thread that loses its core (a loaded machine)
 * keeps the leader waiting until the thread runs again, a scheduler's
 * time slice. After such a wait (TEAM_SLOW_NS) the leader goes on alone:
 * the workers are released and every later job runs its parts on the
 * leader, in the same order, with the same results.
 */
#define _POSIX_C_SOURCE 199309L   /* clock_gettime under -std=c99 */
#include <string.h>
#include <time.h>
#include "pt_team.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* A wait for the other parts of a job longer than this, in nanoseconds,
 * sends the leader on alone: a part takes microseconds when its thread
 * runs (a few hundred at a batch of 32 rows), a time slice milliseconds. */
#define TEAM_SLOW_NS 1000000
#define TEAM_CHECK_SPINS 256   /* spins between two looks at the clock */

static int64_t team_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
    if (team->alone) {
        for (int p = 0; p < team->parts; p++) fn(arg, p, team->parts);
        return;
    }
    int64_t s = team->seq + 1;
    team->fn = fn;
    team->arg = arg;
    __atomic_store_n(&team->done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&team->seq, s, __ATOMIC_RELEASE);
    for (int p = 0; p < team->parts; p++) team_take(team, p, s);
    unsigned spins = 0;
    int64_t t0 = -1;
    while (LOAD(&team->done) < team->parts) {
        pt_team_pause(&spins);
        if (spins % TEAM_CHECK_SPINS == 0 && !team->alone) {
            int64_t now = team_ns();
            if (t0 < 0)
                t0 = now;
            else if (now - t0 > TEAM_SLOW_NS)
                team->alone = 1;
        }
    }
    if (team->alone) pt_team_end(team);
}

void pt_team_work(pt_team *team, int t)
{
    int64_t seen = 0;
    unsigned spins = 0;
    for (;;) {
        int64_t s = LOAD(&team->seq);
        if (s < 0) return;
        if (s == seen) {
            pt_team_pause(&spins);
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
