/*
 * pt_team.h -- a team of threads that shares a loop's jobs out by parts
 * (internal; step_team.c).
 *
 * A decoding loop at few rows runs on one thread, the leader, inside one
 * parallel region; the other threads of the region wait for jobs
 * (pt_team_work). For each job (a product of the decoder step, the
 * generator) the leader calls pt_team_run: part p of the job belongs to
 * thread p, so a thread's part of each product, the same columns of the
 * same packed weight at every step, stays in that core's own cache
 * (three decoder layers and a generator at d_model 128 stream 3.5 MB of
 * weights per step, which one core's 2 MB L2 cannot hold and two cores'
 * halves can). The leader does part 0, then every part not yet taken by
 * its owner (a thread still waking up, or that has lost its core on a
 * busy machine), then waits for the parts under way: nobody waits for a
 * thread that is not working; after a long wait for a part under way
 * (its thread lost its core) the leader does every later job alone.
 * pt_team_end releases the workers.
 *
 * A part is computed by exactly one thread, through the same kernel
 * whoever takes it, so results do not depend on which thread does what.
 */
#ifndef PT_TEAM_H
#define PT_TEAM_H

#include <stdint.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#endif

#define PT_TEAM_MAX 64            /* threads of a team at most */

/* Part `part` of `parts` of a job. */
typedef void (*pt_team_fn)(void *arg, int part, int parts);

typedef struct pt_team {
    int parts;                     /* the team's threads: parts of each job */
    int alone;                     /* the leader goes on alone (step_team.c) */
    pt_team_fn fn;                 /* the job (written by the leader) */
    void *arg;
    char pad0[64];
    int64_t seq;                   /* the job's number; -1: the team ends (atomic) */
    char pad1[64];
    int64_t done;                  /* parts of the job done (atomic) */
    char pad2[64];
    int64_t taken[PT_TEAM_MAX];    /* the job number each part was taken for (atomic) */
} pt_team;

/* A spin-wait's pause; every 4096 of them the core is offered to another
 * thread (the one waited for, on a loaded machine). Both teams (this one
 * and the encoder's, layer_encoder_team.c) wait with it. */
static inline void pt_team_pause(unsigned *spins)
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

void pt_team_init(pt_team *team, int parts);
/* The leader (thread 0): fn(arg, p, parts) for every part p, returning
 * when all are done. */
void pt_team_run(pt_team *team, pt_team_fn fn, void *arg);
/* Thread t >= 1 of the region: its parts of every job until pt_team_end. */
void pt_team_work(pt_team *team, int t);
/* The leader: no more jobs. */
void pt_team_end(pt_team *team);

#endif /* PT_TEAM_H */
