/*
 * pt_lanes.h -- the 16 double lanes of the row reductions (layernorm.c,
 * softmax.c): 16 terms per step = two AVX2 float vectors, four independent
 * AVX2 double add chains (eight with SSE2), enough to hide the add latency.
 * lane_sum combines the lanes in a fixed pairwise tree, so a row's sum does
 * not depend on the thread count or the ISA. Include after pt_real.h.
 */
#ifndef PT_LANES_H
#define LANES 16

/* Fixed combination order of the lanes: a pairwise tree. */
static inline double PT_SFX(lane_sum)(const double *a)
{
    double t[LANES / 2];
    for (int k = 0; k < LANES / 2; k++) t[k] = a[2 * k] + a[2 * k + 1];
    for (int k = 0; k < LANES / 4; k++) t[k] = t[2 * k] + t[2 * k + 1];
    for (int k = 0; k < LANES / 8; k++) t[k] = t[2 * k] + t[2 * k + 1];
    return t[0] + t[1];
}
#define PT_LANES_H
#endif
