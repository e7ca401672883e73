/*
 * pt_test_decoder.h -- the random decoder model of the decoding-loop tests
 * (test_decode.c, test_decode_beam.c): a TD_L-layer decoder stack of width
 * TD_E (TD_H heads, feed-forward TD_F), its embedding, a random position
 * table of T rows, a final norm (used or not) and a TD_V-word generator
 * whose EOS logit is shifted by eos_shift (so that hypotheses end at
 * various steps). Included once per dtype, inside a test's DT/DS section
 * (no include guard below the constants, on purpose).
 */
#ifndef PT_TEST_DECODER_H
#define PT_TEST_DECODER_H
enum { TD_E = 16, TD_H = 4, TD_F = 24, TD_L = 2, TD_S = 5, TD_V = 11, TD_KEEP = 64 };
#endif

static DT *DS(rnd)(long n, double scale)
{
    DT *v = xcalloc(n, sizeof *v);
    for (long i = 0; i < n; i++) v[i] = (DT)(urand() * scale);
    return v;
}

/* Fills layers[0..TD_L) and *g; every array it allocates goes to keep[*nk++]
 * (at most TD_KEEP in all) for the caller to free. */
static void DS(random_decoder)(DS(pt_greedy) *g, DS(pt_layer) *layers, DT **keep, int *nk,
                               int norm_first, int act, int final, double eos_shift, long T)
{
    long E = TD_E, F = TD_F, V = TD_V;
    for (long l = 0; l < TD_L; l++) {
        DS(pt_layer) *Ly = layers + l;
        memset(Ly, 0, sizeof *Ly);
        Ly->E = E; Ly->H = TD_H; Ly->F = F; Ly->norm_first = norm_first; Ly->act = act;
        double s = 1.0 / sqrt((double)E);
        DT **w[] = {(DT **)&Ly->sa_w, (DT **)&Ly->sa_ow, (DT **)&Ly->ca_w, (DT **)&Ly->ca_ow,
                    (DT **)&Ly->ff1_w, (DT **)&Ly->ff2_w, (DT **)&Ly->sa_b, (DT **)&Ly->ca_b,
                    (DT **)&Ly->ff1_b};
        long sz[] = {3 * E * E, E * E, 3 * E * E, E * E, F * E, E * F, 3 * E, 3 * E, F};
        for (int i = 0; i < 9; i++) *w[i] = keep[(*nk)++] = DS(rnd)(sz[i], i < 6 ? s : 0.2);
        for (int i = 0; i < 3; i++) {
            DT *nw = keep[(*nk)++] = DS(rnd)(E, 0.3);
            for (long c = 0; c < E; c++) nw[c] += 1;
            Ly->norm_w[i] = nw;
            Ly->norm_b[i] = keep[(*nk)++] = DS(rnd)(E, 0.1);
            Ly->norm_eps[i] = (DT)1e-5;
        }
    }
    memset(g, 0, sizeof *g);
    g->layers = layers; g->nlayers = TD_L;
    g->final_norm = final;
    g->final_w = keep[(*nk)++] = DS(rnd)(E, 0.2);
    g->final_b = keep[(*nk)++] = DS(rnd)(E, 0.2);
    g->final_eps = (DT)1e-5;
    g->embed = keep[(*nk)++] = DS(rnd)(V * E, 0.5);
    g->embed_rows = V;
    g->embed_scale = (DT)sqrt((double)E);
    g->positions = keep[(*nk)++] = DS(rnd)(T * E, 1.0);
    g->gen_w = keep[(*nk)++] = DS(rnd)(V * E, 1.0);
    DT *gb = keep[(*nk)++] = DS(rnd)(V, 0.5);
    g->gen_b = gb;
    g->V = V; g->pad = 0; g->bos = 1; g->eos = 2;
    gb[2] += (DT)eos_shift;
}
