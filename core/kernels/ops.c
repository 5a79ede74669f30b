/* ops.c — element-wise and row-wise fp32 operations.
 *
 * Written so GCC's -O2 vectoriser takes them without fast-math: blocks of LANES with a constant inner trip
 * count, per-lane running sums (a fixed summation order), and exp without libm calls or float compares.
 * Each function is built for AVX-512 and AVX2 besides the baseline, picked at load by the CPU (ifunc): the
 * same operations in the same order, only wider (neither target contracts a·b + c into an FMA), so every
 * version gives the same bits and G3N_KERNEL need not choose among them.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#define LANES 8

#if defined(__x86_64__) && defined(__gnu_linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define WIDE __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#endif
#endif
#ifndef WIDE
#define WIDE
#endif

/* exp(x) without libm: Cephes' expf polynomial (~1 ulp). Rounding to the nearest integer uses the
 * 1.5·2^23 trick. |x| is clamped to 100 first, so the exponent n always fits the int cast (a float outside
 * int's range, or NaN, converted to int is undefined behaviour, and a hostile session or weights file can
 * make activations anything); the exponent is then clamped as an integer, so for every float x below about
 * -87.68 gives 0 and x from about 88.38 (n = 128) gives inf, and NaN gives NaN. The clamp and the NaN test
 * work on the bits with integer selects: GCC does not if-convert float comparisons, or a select whose arm
 * is float arithmetic (either may trap), and the loops calling this would no longer vectorise. */
static inline float
vexp (float x)
{
  guint32 u, mag;
  memcpy (&u, &x, sizeof u);
  mag = u & 0x7fffffffu;
  guint32 cu = mag > 0x42c80000u ? (u & 0x80000000u) | 0x42c80000u : u; /* ±100 for |x| > 100, inf, NaN */
  float c;
  memcpy (&c, &cu, sizeof c);
  float n = (c * 1.44269504f + 12582912.0f) - 12582912.0f;
  float r = c - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  gint32 e = (gint32) n;
  e = e < -127 ? -127 : e > 128 ? 128 : e;
  gint32 bits = (e + 127) << 23;
  float scale, nan_in;
  memcpy (&scale, &bits, sizeof scale);
  /* NaN in, NaN out: added as x itself or +0 (p · scale is never -0), chosen before any float operation, so
   * the select stays an integer one */
  guint32 nb = mag > 0x7f800000u ? u : 0;
  memcpy (&nan_in, &nb, sizeof nan_in);
  return p * scale + nan_in;
}

/* Σ x[i]·y[i] with LANES running sums. */
static float
lane_dot (const float *x, const float *y, int n)
{
  float acc[LANES] = { 0 }, s = 0;
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      acc[j] += x[i + j] * y[i + j];
  for (; i < n; i++)
    s += x[i] * y[i];
  for (int j = 0; j < LANES; j++)
    s += acc[j];
  return s;
}

WIDE void
g3n_rms_norm (const float *x, const float *weight, float eps, int n, float *out)
{
  float inv = 1.0f / sqrtf (lane_dot (x, x, n) / (float) n + eps);
  if (weight)
    for (int i = 0; i < n; i++)
      out[i] = x[i] * inv * weight[i];
  else
    for (int i = 0; i < n; i++)
      out[i] = x[i] * inv;
}

/* GELU, tanh form: v · sigmoid(2u), u = sqrt(2/pi)(v + 0.044715 v³) — algebraically the reference's
 * 0.5 v (1 + tanh u), without its cancellation for negative v. */
static inline float
gelu1 (float v)
{
  return v / (1.0f + vexp (-1.5957691216f * (v + 0.044715f * v * v * v)));
}

WIDE void
g3n_gelu_tanh (float *x, gsize n)
{
  gsize i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      x[i + j] = gelu1 (x[i + j]);
  for (; i < n; i++)
    x[i] = gelu1 (x[i]);
}

WIDE void
g3n_softmax (float *x, int n)
{
  float mx = x[0];
  for (int i = 1; i < n; i++)
    mx = MAX (mx, x[i]);
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      x[i + j] = vexp (x[i + j] - mx);
  for (; i < n; i++)
    x[i] = vexp (x[i] - mx);
  float acc[LANES] = { 0 }, sum = 0;
  for (i = 0; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      acc[j] += x[i + j];
  for (; i < n; i++)
    sum += x[i];
  for (int j = 0; j < LANES; j++)
    sum += acc[j];
  float inv = 1.0f / sum;
  for (i = 0; i < n; i++)
    x[i] *= inv;
}

WIDE float
g3n_dot (const float *a, const float *b, int n)
{
  return lane_dot (a, b, n);
}

WIDE void
g3n_axpy (float a, const float *restrict x, float *restrict y, int n)
{
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      y[i + j] += a * x[i + j];
  for (; i < n; i++)
    y[i] += a * x[i];
}

WIDE void
g3n_add_scaled_difference (float *restrict y, const float *restrict p, const float *a, const float *b, float s, int n)
{
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      y[i + j] = p[i + j] + (a[i + j] - b[i + j]) * s;
  for (; i < n; i++)
    y[i] = p[i] + (a[i] - b[i]) * s;
}

/* cap · tanh(v / cap), tanh(u) = 1 − 2 / (exp(2u) + 1): saturates to ±1 through exp's 0 and inf. Near 0
 * the subtraction leaves an absolute error of ~1e-7 (times cap), far below the logits' own rounding. */
static inline float
softcap1 (float v, float cap)
{
  return cap * (1.0f - 2.0f / (vexp (2.0f * v / cap) + 1.0f));
}

WIDE void
g3n_softcap (float *x, gsize n, float cap)
{
  gsize i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      x[i + j] = softcap1 (x[i + j], cap);
  for (; i < n; i++)
    x[i] = softcap1 (x[i], cap);
}
