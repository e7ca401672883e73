/*
 * dispatch.c -- the kernel table (pt_dispatch.h) and the ISA level (pt.h).
 * Not typed: compiled once.
 *
 * pt_isa_init() decides the level once: the CPU's (cpu.c), or the lower one
 * PT_ISA asks for (PT_PORTABLE=1: portable). Then every family takes the
 * struct its row below lists for that level. A family without code for a
 * level lists the best lower one: its `path` tells config() which runs.
 * No kernel reads the environment or the CPU: they read pt_dispatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"
#include "pt_dispatch.h"


/* ------------------------------------------------------------- the rows
 * One row per family and dtype: the struct for portable, avx2, avx512.
 * To plug in a new path, change its entry (e.g. the avx512 one). */
#if PT_X86
#define X86(avx, portable) avx
#else
#define X86(avx, portable) portable   /* never selected: the level stays portable */
#endif
#define ROW(fam, sfx, avx2, avx512) \
    { &fam##_portable##sfx, X86(avx2, &fam##_portable##sfx), X86(avx512, &fam##_portable##sfx) }

static const struct pt_gemm_kernels_f32 *const gemm_f32[PT_ISA_COUNT] =
    ROW(pt_gemm, _f32, &pt_gemm_avx2_f32, &pt_gemm_avx512_f32);
static const struct pt_gemm_kernels_f64 *const gemm_f64[PT_ISA_COUNT] =
    ROW(pt_gemm, _f64, &pt_gemm_avx2_f64, &pt_gemm_avx512_f64);
static const struct pt_att_kernels_f32 *const att_f32[PT_ISA_COUNT] =
    ROW(pt_att, _f32, &pt_att_avx2_f32, &pt_att_avx512_f32);
static const struct pt_att_kernels_f64 *const att_f64[PT_ISA_COUNT] =
    ROW(pt_att, _f64, &pt_att_avx2_f64, &pt_att_avx512_f64);
static const struct pt_act_kernels_f32 *const act_f32[PT_ISA_COUNT] =
    ROW(pt_act, _f32, &pt_act_avx2_f32, &pt_act_avx512_f32);
static const struct pt_act_kernels_f64 *const act_f64[PT_ISA_COUNT] =
    ROW(pt_act, _f64, &pt_act_avx2_f64, &pt_act_avx512_f64);
static const struct pt_ln_kernels_f32 *const ln_f32[PT_ISA_COUNT] =
    ROW(pt_ln, _f32, &pt_ln_avx2_f32, &pt_ln_avx512_f32);
static const struct pt_ln_kernels_f64 *const ln_f64[PT_ISA_COUNT] =
    ROW(pt_ln, _f64, &pt_ln_avx2_f64, &pt_ln_avx512_f64);
static const struct pt_sm_kernels_f32 *const sm_f32[PT_ISA_COUNT] =
    ROW(pt_sm, _f32, &pt_sm_avx2_f32, &pt_sm_avx512_f32);
static const struct pt_sm_kernels_f64 *const sm_f64[PT_ISA_COUNT] =
    ROW(pt_sm, _f64, &pt_sm_avx2fma_f64, &pt_sm_avx512_f64);
static const struct pt_adamw_kernels_f32 *const adamw_f32[PT_ISA_COUNT] =
    ROW(pt_adamw, _f32, &pt_adamw_avx2_f32, &pt_adamw_avx512_f32);
static const struct pt_adamw_kernels_f64 *const adamw_f64[PT_ISA_COUNT] =
    ROW(pt_adamw, _f64, &pt_adamw_avx2_f64, &pt_adamw_avx512_f64);
static const struct pt_lin_kernels_f32 *const lin_f32[PT_ISA_COUNT] =
    ROW(pt_lin, _f32, &pt_lin_avx2_f32, &pt_lin_avx512_f32);
static const struct pt_lin_kernels_f64 *const lin_f64[PT_ISA_COUNT] =
    ROW(pt_lin, _f64, &pt_lin_portable_f64, &pt_lin_portable_f64);

/* ------------------------------------------------------------ the table */

#define LEVEL_ROWS(L)                                                          \
    gemm_f32[L], gemm_f64[L], att_f32[L], att_f64[L], act_f32[L], act_f64[L],  \
    ln_f32[L], ln_f64[L], sm_f32[L], sm_f64[L], adamw_f32[L], adamw_f64[L],    \
    lin_f32[L], lin_f64[L]

/* Portable until pt_isa_init runs. */
struct pt_dispatch pt_dispatch = {
    &pt_gemm_portable_f32, &pt_gemm_portable_f64, &pt_att_portable_f32, &pt_att_portable_f64,
    &pt_act_portable_f32, &pt_act_portable_f64, &pt_ln_portable_f32, &pt_ln_portable_f64,
    &pt_sm_portable_f32, &pt_sm_portable_f64, &pt_adamw_portable_f32, &pt_adamw_portable_f64,
    &pt_lin_portable_f32, &pt_lin_portable_f64,
    PT_LINEAR_SWAP_ROWS_DEFAULT, 0, 0, 0
};

static int isa_level = PT_ISA_PORTABLE, isa_cpu_level = PT_ISA_PORTABLE;
static char isa_reason[256] = "pt_isa_init not called: portable";

static const char *const level_names[PT_ISA_COUNT] = {"portable", "avx2", "avx512"};

const char *pt_isa_name(int level)
{
    return level >= 0 && level < PT_ISA_COUNT ? level_names[level] : NULL;
}

static int64_t env_rows(const char *name, int64_t dflt)
{
    const char *e = getenv(name);
    return e && *e ? strtol(e, NULL, 10) : dflt;
}

int pt_isa_init(void)
{
    const char *cpu_why;
    int cpu = pt_cpu_detect_level(&cpu_why);
    int level = cpu;
    const char *isa = getenv("PT_ISA"), *portable = getenv("PT_PORTABLE");
    if (isa && *isa) {
        int want = -1;
        for (int l = 0; l < PT_ISA_COUNT; l++)
            if (strcmp(isa, level_names[l]) == 0) want = l;
        if (want < 0)
            snprintf(isa_reason, sizeof isa_reason,
                     "PT_ISA=%.40s is not portable, avx2 or avx512: the CPU's level (%s)",
                     isa, cpu_why);
        else if (want > cpu)
            snprintf(isa_reason, sizeof isa_reason,
                     "PT_ISA=%s asked, but %s: the CPU's level", isa, cpu_why);
        else {
            level = want;
            snprintf(isa_reason, sizeof isa_reason, "PT_ISA=%s", isa);
        }
    } else if (portable && *portable && *portable != '0') {
        level = PT_ISA_PORTABLE;
        snprintf(isa_reason, sizeof isa_reason, "PT_PORTABLE=%.20s (alias of PT_ISA=portable)",
                 portable);
    } else {
        snprintf(isa_reason, sizeof isa_reason, "cpu: %s", cpu_why);
    }
    struct pt_dispatch t = {
        LEVEL_ROWS(level),
        env_rows("PT_LINEAR_SWAP_ROWS", PT_LINEAR_SWAP_ROWS_DEFAULT),
        env_rows("PT_LINEAR_DOT_ROWS", lin_f32[level]->max_rows),
        env_rows("PT_LINEAR_PAR_MIN", lin_f32[level]->par_min),
        env_rows("PT_LINEAR_PACKED_ROWS", PT_LINEAR_PACKED_ROWS_DEFAULT),
    };
    pt_dispatch = t;
    isa_level = level;
    isa_cpu_level = cpu;
    return level;
}

int pt_isa_level(void) { return isa_level; }
int pt_isa_cpu_level(void) { return isa_cpu_level; }
const char *pt_isa_reason(void) { return isa_reason; }

static const char *const family_names[PT_FAM_COUNT] = {
    "gemm", "attention", "activation", "layernorm", "softmax", "adamw", "linear"};

int pt_isa_family_count(void) { return PT_FAM_COUNT; }

const char *pt_isa_family_name(int family)
{
    return family >= 0 && family < PT_FAM_COUNT ? family_names[family] : NULL;
}

const char *pt_isa_family_path(int family, int dtype)
{
    const struct pt_dispatch *t = &pt_dispatch;
    int d64 = dtype == 64;
    switch (family) {
    case PT_FAM_GEMM: return d64 ? t->gemm_f64->path : t->gemm_f32->path;
    case PT_FAM_ATTENTION: return d64 ? t->att_f64->path : t->att_f32->path;
    case PT_FAM_ACTIVATION: return d64 ? t->act_f64->path : t->act_f32->path;
    case PT_FAM_LAYERNORM: return d64 ? t->ln_f64->path : t->ln_f32->path;
    case PT_FAM_SOFTMAX: return d64 ? t->sm_f64->path : t->sm_f32->path;
    case PT_FAM_ADAMW: return d64 ? t->adamw_f64->path : t->adamw_f32->path;
    case PT_FAM_LINEAR: return d64 ? t->lin_f64->path : t->lin_f32->path;
    }
    return NULL;
}
