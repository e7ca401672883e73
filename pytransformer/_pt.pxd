# Declarations of csrc/pt.h for Cython. Keep in step with csrc/pt_kernels.h.
from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from "pt.h" nogil:
    enum:
        PT_OK
        PT_EINVAL
        PT_ENOMEM
    enum:
        PT_MAX_THREADS
    enum:
        PT_DECODER_PACKED_ROWS
    enum:
        PT_ACT_NONE
        PT_ACT_RELU
        PT_ACT_GELU_ERF
        PT_ACT_GELU_TANH
    const char *pt_strerror(int status)
    int pt_has_openmp()
    enum:
        PT_ISA_PORTABLE
        PT_ISA_AVX2
        PT_ISA_AVX512
        PT_ISA_COUNT
    int pt_isa_init()
    int pt_isa_level()
    int pt_isa_cpu_level()
    const char *pt_isa_name(int level)
    const char *pt_isa_reason()
    int pt_isa_family_count()
    const char *pt_isa_family_name(int family)
    const char *pt_isa_family_path(int family, int dtype)
    double pt_fma_peak_flops_isa(int level, int nthreads, int64_t iters)
    double pt_fma_peak_flops(int nthreads, int64_t iters)
    void pt_set_num_threads(int n)
    int pt_get_num_threads()
    int pt_num_procs()
    ctypedef void (*pt_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *, float *, int *, float *, float *, int *)
    ctypedef void (*pt_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *, double *, int *, double *, double *, int *)
    void pt_set_blas(pt_sgemm_fn sgemm, pt_dgemm_fn dgemm)
    int pt_blas_available()
    int pt_dropout_mask(uint8_t *keep, int64_t n, double p, uint64_t seed)
    int pt_cache_gather(void *dst, const void *src, const int64_t *index, int64_t n, int64_t B, int64_t H, int64_t capacity, int64_t t, int64_t d, int64_t elem)
    int pt_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
    int pt_gemm_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc)
    int pt_gemm_fallback_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
    int pt_gemm_fallback_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc)
    int pt_linear_forward_f32(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t IN, int64_t OUT)
    int pt_linear_forward_f64(double *y, const double *x, const double *w, const double *b, int64_t N, int64_t IN, int64_t OUT)
    int pt_linear_backward_f32(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int64_t N, int64_t IN, int64_t OUT, int accumulate)
    int pt_linear_backward_f64(double *dx, double *dw, double *db, const double *dy, const double *x, const double *w, int64_t N, int64_t IN, int64_t OUT, int accumulate)
    int64_t pt_linear_pack_size_f32(int64_t OUT, int64_t IN)
    int pt_linear_pack_f32(float *wp, const float *w, int64_t OUT, int64_t IN)
    int pt_linear_pack_matches_f32(const float *wp, const float *w, int64_t OUT, int64_t IN)
    int pt_linear_packed_forward_f32(float *y, const float *x, const float *wp, const float *w, const float *b, int64_t N, int64_t IN, int64_t OUT)
    int pt_bias_act_forward_f32(float *y, const float *x, const float *bias, int64_t N, int64_t C, int kind)
    int pt_bias_act_forward_f64(double *y, const double *x, const double *bias, int64_t N, int64_t C, int kind)
    int pt_bias_act_backward_f32(float *dx, float *dbias, const float *dy, const float *x, const float *bias, int64_t N, int64_t C, int kind, int accumulate)
    int pt_bias_act_backward_f64(double *dx, double *dbias, const double *dy, const double *x, const double *bias, int64_t N, int64_t C, int kind, int accumulate)
    int pt_softmax_forward_f32(float *y, const float *x, int64_t N, int64_t C, int log)
    int pt_softmax_forward_f64(double *y, const double *x, int64_t N, int64_t C, int log)
    int pt_softmax_backward_f32(float *dx, const float *dy, const float *y, int64_t N, int64_t C, int log, int accumulate)
    int pt_softmax_backward_f64(double *dx, const double *dy, const double *y, int64_t N, int64_t C, int log, int accumulate)
    int pt_cross_entropy_forward_f32(float *loss, float *lse, const float *logits, const int64_t *targets, int64_t N, int64_t C, int64_t ignore_index, float label_smoothing)
    int pt_cross_entropy_forward_f64(double *loss, double *lse, const double *logits, const int64_t *targets, int64_t N, int64_t C, int64_t ignore_index, double label_smoothing)
    int pt_cross_entropy_backward_f32(float *dlogits, const float *logits, const float *lse, const int64_t *targets, const float *dloss, int64_t dloss_stride, int64_t N, int64_t C, int64_t ignore_index, float label_smoothing, int accumulate)
    int pt_cross_entropy_backward_f64(double *dlogits, const double *logits, const double *lse, const int64_t *targets, const double *dloss, int64_t dloss_stride, int64_t N, int64_t C, int64_t ignore_index, double label_smoothing, int accumulate)
    int pt_layernorm_forward_f32(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int64_t N, int64_t C, float eps)
    int pt_layernorm_forward_f64(double *y, double *mean, double *rstd, const double *x, const double *w, const double *b, int64_t N, int64_t C, double eps)
    int pt_layernorm_backward_f32(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, const float *mean, const float *rstd, int64_t N, int64_t C, int accumulate)
    int pt_layernorm_backward_f64(double *dx, double *dw, double *db, const double *dy, const double *x, const double *w, const double *mean, const double *rstd, int64_t N, int64_t C, int accumulate)
    int pt_embedding_forward_f32(float *y, const int64_t *ids, const float *table, int64_t N, int64_t V, int64_t C)
    int pt_embedding_forward_f64(double *y, const int64_t *ids, const double *table, int64_t N, int64_t V, int64_t C)
    int pt_embedding_backward_f32(float *dtable, const float *dy, const int64_t *ids, int64_t N, int64_t V, int64_t C, int accumulate)
    int pt_embedding_backward_f64(double *dtable, const double *dy, const int64_t *ids, int64_t N, int64_t V, int64_t C, int accumulate)
    int pt_sinusoidal_positions_f32(float *out, int64_t T, int64_t C, float base)
    int pt_sinusoidal_positions_f64(double *out, int64_t T, int64_t C, double base)
    int pt_dropout_apply_f32(float *y, const float *x, const uint8_t *keep, int64_t n, float p)
    int pt_dropout_apply_f64(double *y, const double *x, const uint8_t *keep, int64_t n, double p)
    int pt_adamw_step_f32(float *param, float *m, float *v, const float *grad, int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step)
    int pt_adamw_step_f64(double *param, double *m, double *v, const double *grad, int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step)
    int pt_attention_forward_f32(float *out, float *lse, float *weights, const float *q, const float *k, const float *v, const float *mask, const int64_t *mask_strides, int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv, int is_causal, float scale)
    int pt_attention_forward_f64(double *out, double *lse, double *weights, const double *q, const double *k, const double *v, const double *mask, const int64_t *mask_strides, int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv, int is_causal, double scale)
    int pt_attention_backward_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v, const float *out, const float *lse, const float *mask, const int64_t *mask_strides, int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv, int is_causal, float scale, int accumulate)
    int pt_attention_backward_f64(double *dq, double *dk, double *dv, const double *dout, const double *q, const double *k, const double *v, const double *out, const double *lse, const double *mask, const int64_t *mask_strides, int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv, int is_causal, double scale, int accumulate)

    # whole layers (csrc/layer_encoder.c, layer_decoder.c, attention_decode.c)
    ctypedef struct pt_layer_f32:
        int64_t E, H, F
        int norm_first, act
        const float *sa_w
        const float *sa_b
        const float *sa_ow
        const float *sa_ob
        const float *ca_w
        const float *ca_b
        const float *ca_ow
        const float *ca_ob
        const float *ff1_w
        const float *ff1_b
        const float *ff2_w
        const float *ff2_b
        const float *norm_w[3]
        const float *norm_b[3]
        float norm_eps[3]
        const float *sa_wp
        const float *sa_owp
        const float *ff1_wp
        const float *ff2_wp
        const float *ca_qwp
        const float *ca_owp
        int packed_step
    ctypedef struct pt_layer_f64:
        int64_t E, H, F
        int norm_first, act
        const double *sa_w
        const double *sa_b
        const double *sa_ow
        const double *sa_ob
        const double *ca_w
        const double *ca_b
        const double *ca_ow
        const double *ca_ob
        const double *ff1_w
        const double *ff1_b
        const double *ff2_w
        const double *ff2_b
        const double *norm_w[3]
        const double *norm_b[3]
        double norm_eps[3]
        const double *sa_wp
        const double *sa_owp
        const double *ff1_wp
        const double *ff2_wp
        const double *ca_qwp
        const double *ca_owp
        int packed_step
    int64_t pt_encoder_workspace_f32(const pt_layer_f32 *layer, int64_t N, int64_t B, int64_t T, int both_masks)
    int64_t pt_encoder_workspace_f64(const pt_layer_f64 *layer, int64_t N, int64_t B, int64_t T, int both_masks)
    int pt_encoder_forward_f32(float *x, float *work, const pt_layer_f32 *layers, int64_t nlayers, const int64_t *offsets, const float *key_mask, const float *attn_mask, int64_t B, int64_t T, int is_causal, int final_norm, const float *final_w, const float *final_b, float final_eps)
    int pt_encoder_forward_f64(double *x, double *work, const pt_layer_f64 *layers, int64_t nlayers, const int64_t *offsets, const double *key_mask, const double *attn_mask, int64_t B, int64_t T, int is_causal, int final_norm, const double *final_w, const double *final_b, double final_eps)
    int pt_attention_decode_f32(float *out, int64_t out_ld, float *scores, const float *q, int64_t q_ld, const float *k, const float *v, int64_t kv_bstride, int64_t kv_hstride, const float *mask, const int64_t *lengths, const int64_t *kv_row, int64_t B, int64_t H, int64_t Tk, int64_t D, float scale)
    int pt_attention_decode_f64(double *out, int64_t out_ld, double *scores, const double *q, int64_t q_ld, const double *k, const double *v, int64_t kv_bstride, int64_t kv_hstride, const double *mask, const int64_t *lengths, const int64_t *kv_row, int64_t B, int64_t H, int64_t Tk, int64_t D, double scale)
    int64_t pt_decoder_cross_kv_workspace_f32(const pt_layer_f32 *layer, int64_t B, int64_t S)
    int64_t pt_decoder_cross_kv_workspace_f64(const pt_layer_f64 *layer, int64_t B, int64_t S)
    int pt_decoder_cross_kv_f32(float *const *k, float *const *v, float *work, const pt_layer_f32 *layers, int64_t nlayers, const float *memory, int64_t B, int64_t S)
    int pt_decoder_cross_kv_f64(double *const *k, double *const *v, double *work, const pt_layer_f64 *layers, int64_t nlayers, const double *memory, int64_t B, int64_t S)
    int64_t pt_decoder_step_workspace_f32(const pt_layer_f32 *layer, int64_t B, int64_t capacity, int64_t S)
    int64_t pt_decoder_step_workspace_f64(const pt_layer_f64 *layer, int64_t B, int64_t capacity, int64_t S)
    int pt_decoder_step_f32(float *x, float *const *self_k, float *const *self_v, float *work, const pt_layer_f32 *layers, int64_t nlayers, const float *const *cross_k, const float *const *cross_v, const float *src_mask, const int64_t *src_len, const int64_t *mem_row, int64_t B, int64_t t, int64_t capacity, int64_t S, int final_norm, const float *final_w, const float *final_b, float final_eps)
    int pt_decoder_step_f64(double *x, double *const *self_k, double *const *self_v, double *work, const pt_layer_f64 *layers, int64_t nlayers, const double *const *cross_k, const double *const *cross_v, const double *src_mask, const int64_t *src_len, const int64_t *mem_row, int64_t B, int64_t t, int64_t capacity, int64_t S, int final_norm, const double *final_w, const double *final_b, double final_eps)

cdef extern from "pt_decode.h" nogil:
    # the greedy loop (csrc/decode_greedy.c), and the model it runs
    ctypedef struct pt_greedy_f32:
        const pt_layer_f32 *layers
        int64_t nlayers
        int final_norm
        const float *final_w
        const float *final_b
        float final_eps
        const float *embed
        int64_t embed_rows
        float embed_scale
        const float *positions
        const float *gen_w
        const float *gen_b
        const float *gen_wp
        int64_t V
        int64_t pad, bos, eos
    ctypedef struct pt_greedy_f64:
        const pt_layer_f64 *layers
        int64_t nlayers
        int final_norm
        const double *final_w
        const double *final_b
        double final_eps
        const double *embed
        int64_t embed_rows
        double embed_scale
        const double *positions
        const double *gen_w
        const double *gen_b
        const double *gen_wp
        int64_t V
        int64_t pad, bos, eos
    int64_t pt_greedy_workspace_f32(const pt_greedy_f32 *g, int64_t B, int64_t max_len, int64_t S)
    int64_t pt_greedy_workspace_f64(const pt_greedy_f64 *g, int64_t B, int64_t max_len, int64_t S)
    int64_t pt_greedy_iworkspace_f32(int64_t B)
    int64_t pt_greedy_iworkspace_f64(int64_t B)
    int pt_greedy_decode_f32(const pt_greedy_f32 *g, float *const *self_k, float *const *self_v, float *const *cross_k, float *const *cross_v, const float *src_mask, int64_t B, int64_t S, int64_t max_len, int64_t *ids, int64_t *lengths, double *logp, float *work, int64_t *iwork)
    int pt_greedy_decode_f64(const pt_greedy_f64 *g, double *const *self_k, double *const *self_v, double *const *cross_k, double *const *cross_v, const double *src_mask, int64_t B, int64_t S, int64_t max_len, int64_t *ids, int64_t *lengths, double *logp, double *work, int64_t *iwork)
    # beam search (csrc/decode_beam.c)
    enum:
        PT_PENALTY_GNMT
        PT_PENALTY_POWER
    int64_t pt_beam_workspace_f32(const pt_greedy_f32 *g, int64_t B, int64_t k, int64_t max_len, int64_t S)
    int64_t pt_beam_workspace_f64(const pt_greedy_f64 *g, int64_t B, int64_t k, int64_t max_len, int64_t S)
    int64_t pt_beam_iworkspace_f32(int64_t B, int64_t k, int64_t max_len)
    int64_t pt_beam_dworkspace_f32(int64_t B, int64_t k, int64_t max_len, int want_logp)
    int pt_beam_decode_f32(const pt_greedy_f32 *g, float *const *self_k, float *const *self_v, float *const *cross_k, float *const *cross_v, const float *src_mask, int64_t B, int64_t S, int64_t max_len, int64_t k, int penalty_kind, double alpha, int64_t *count, int64_t *ids, int64_t *lengths, int64_t *ended, double *scores, double *logp, float *work, int64_t *iwork, double *dwork)
    int pt_beam_decode_f64(const pt_greedy_f64 *g, double *const *self_k, double *const *self_v, double *const *cross_k, double *const *cross_v, const double *src_mask, int64_t B, int64_t S, int64_t max_len, int64_t k, int penalty_kind, double alpha, int64_t *count, int64_t *ids, int64_t *lengths, int64_t *ended, double *scores, double *logp, double *work, int64_t *iwork, double *dwork)
