/*
 * cache_gather.c -- reorder the batch rows of a decoder's key/value cache:
 * beam search keeps, at every step, the hypotheses that survive, so each
 * new row i of the cache is old row index[i]. Rows are (H, capacity, d)
 * blocks of `elem`-byte numbers; only the first t positions of each
 * (row, head) are filled, and they are contiguous, so row i costs H
 * memcpys of t * d numbers. A copy, not arithmetic: any dtype, and the
 * same bytes whatever the thread count (it runs on one).
 */
#include <string.h>
#include "pt.h"

int pt_cache_gather(void *dst, const void *src, const int64_t *index, int64_t n, int64_t B,
                    int64_t H, int64_t capacity, int64_t t, int64_t d, int64_t elem)
{
    if (n < 0 || B < 0 || H < 0 || capacity < 0 || d < 0 || elem <= 0 || t < 0
        || t > capacity || (n && (!dst || !src || !index)))
        return PT_EINVAL;
    for (int64_t i = 0; i < n; i++)
        if (index[i] < 0 || index[i] >= B) return PT_EINVAL;
    size_t head = (size_t)(capacity * d * elem), row = (size_t)H * head;
    size_t filled = (size_t)(t * d * elem);
    char *out = dst;
    const char *in = src;
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++)
            memcpy(out + (size_t)i * row + (size_t)h * head,
                   in + (size_t)index[i] * row + (size_t)h * head, filled);
    return PT_OK;
}
