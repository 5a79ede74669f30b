/* ops.c — element-wise and row-wise fp32 operations. */
#include "kernels.h"

#include <math.h>

void
g3n_rms_norm (const float *x, const float *weight, float eps, int n, float *out)
{
  /* Accumulate in double: the reference's fp32 mean is itself a pairwise sum, so this is at least as close. */
  double ss = 0;
  for (int i = 0; i < n; i++)
    ss += (double) x[i] * x[i];
  float inv = 1.0f / sqrtf ((float) (ss / n) + eps);
  for (int i = 0; i < n; i++)
    out[i] = weight ? x[i] * inv * weight[i] : x[i] * inv;
}

void
g3n_gelu_tanh (float *x, gsize n)
{
  const float k = 0.7978845608028654f; /* sqrt(2/pi) */
  for (gsize i = 0; i < n; i++) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanhf (k * (v + 0.044715f * v * v * v)));
  }
}

void
g3n_softmax (float *x, int n)
{
  float mx = -INFINITY;
  for (int i = 0; i < n; i++)
    mx = x[i] > mx ? x[i] : mx;
  double sum = 0;
  for (int i = 0; i < n; i++) {
    x[i] = expf (x[i] - mx);
    sum += x[i];
  }
  float inv = (float) (1.0 / sum);
  for (int i = 0; i < n; i++)
    x[i] *= inv;
}

float
g3n_dot (const float *a, const float *b, int n)
{
  float s = 0;
  for (int i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

void
g3n_axpy (float a, const float *x, float *y, int n)
{
  for (int i = 0; i < n; i++)
    y[i] += a * x[i];
}
