/*
 * pt_gelu.h -- the constants of GELU's formulas, shared by activation.c
 * and its vector twins (activation_avx512.c, activation_avx2_f64.c);
 * internal. activation.c explains the formulas.
 */
#ifndef PT_GELU_H
#define PT_GELU_H

#define K_SQRT1_2      0.70710678118654752440    /* 1/sqrt(2) */
#define K_INV_SQRT_2PI 0.39894228040143267794    /* 1/sqrt(2 pi) */
#define K_SQRT_2_PI    0.79788456080286535588    /* sqrt(2/pi) */
#define K_GELU_C       0.044715                  /* the tanh form's cubic term */

/* float32 erfc(x) = e^(-x^2) t P(t), t = 1 / (1 + K_ERFC_T x): P's
 * coefficients, K_ERFC_P0 + K_ERFC_P1 t + ... + K_ERFC_P7 t^7. */
#define K_ERFC_T    0.425f
#define K_ERFC_TZ   0.30052038200428266f         /* K_ERFC_T / sqrt 2: t from |z| */
#define K_ERFC_P7   7.2415591683e-02f
#define K_ERFC_P6   (-3.1706534157e-01f)
#define K_ERFC_P5   4.1435917339e-01f
#define K_ERFC_P4   (-1.0946489031e-01f)
#define K_ERFC_P3   2.5838054814e-01f
#define K_ERFC_P2   1.9970517903e-01f
#define K_ERFC_P1   2.4200153982e-01f
#define K_ERFC_P0   2.3966808695e-01f

/* The float32 vector paths' exp arguments as powers of 2 (PT_LOG2E:
 * pt_exp2f_x86.h): exp(-z^2/2) = 2^(K_EXP2_HALF z^2), exp(-2 sqrt(2/pi)
 * |w|) = 2^(K_EXP2_TANH |w|). */
#define K_EXP2_HALF ((float)(-0.5 * PT_LOG2E))
#define K_EXP2_TANH ((float)(-2 * K_SQRT_2_PI * PT_LOG2E))

#endif /* PT_GELU_H */
