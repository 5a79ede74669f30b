/* test-kernels — g3n_matmul on every dtype against a double-precision reference, at sizes that exercise
 * vector tails, threading (rows split across the pool) and the blocked sgemm path. Run under each
 * G3N_KERNEL by test-kernel-paths.sh. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;

static guint16
to_bf16 (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return (guint16) ((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static void
run (G3nDType dtype, int rows, int cols, int n)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 31 + cols * 7 + n));
  gsize count = (gsize) rows * cols;
  float *wf = g_new (float, count), *x = g_new (float, (gsize) n * cols);
  void *w = g_malloc (count * 4);
  for (gsize i = 0; i < count; i++) {
    float v = (float) g_rand_double_range (rand, -1, 1);
    if (dtype == G3N_DTYPE_BF16) {
      ((guint16 *) w)[i] = to_bf16 (v);
      g3n_to_f32 (G3N_DTYPE_BF16, (guint16 *) w + i, &wf[i], 1);
    } else if (dtype == G3N_DTYPE_F16) {
      /* values k/1024 in [-1, 1) are exact in F16: build the bits directly */
      int k = (int) floorf (v * 1024);
      float q = k / 1024.0f;
      guint16 h = 0;
      if (k != 0) {
        int e = (int) floorf (log2f (fabsf (q)));
        int man = (int) lroundf ((fabsf (q) / ldexpf (1, e) - 1) * 1024);
        h = (guint16) ((q < 0 ? 0x8000 : 0) | ((e + 15) << 10) | man);
      }
      ((guint16 *) w)[i] = h;
      g3n_to_f32 (G3N_DTYPE_F16, &h, &wf[i], 1);
      if (fabsf (wf[i] - q) > 1e-7f)
        g_error ("f16 construction failed for %g", q);
    } else {
      ((float *) w)[i] = wf[i] = v;
    }
  }
  for (gsize i = 0; i < (gsize) n * cols; i++)
    x[i] = (float) g_rand_double_range (rand, -1, 1);
  G3nMatrix m = { w, dtype, rows, cols };
  float *y = g_new (float, (gsize) n * rows);
  g3n_matmul (&m, x, n, y);
  double worst = 0;
  for (int t = 0; t < n; t++)
    for (int r = 0; r < rows; r++) {
      double ref = 0;
      for (int c = 0; c < cols; c++)
        ref += (double) wf[(gsize) r * cols + c] * x[(gsize) t * cols + c];
      worst = fmax (worst, fabs (ref - y[(gsize) t * rows + r]) / sqrt ((double) cols));
    }
  gboolean ok = worst < 1e-5;
  printf ("%s %s %dx%d, n=%d (%s): max |err|/sqrt(cols) = %.2g\n", ok ? "ok  " : "FAIL", g3n_dtype_name (dtype), rows,
          cols, n, g3n_kernels_isa (), worst);
  ok ? passed++ : failed++;
  g_free (wf), g_free (x), g_free (w), g_free (y);
  g_rand_free (rand);
}

int
main (void)
{
  const G3nDType dtypes[] = { G3N_DTYPE_BF16, G3N_DTYPE_F16, G3N_DTYPE_F32 };
  const int shapes[][3] = { { 1, 1, 1 }, { 7, 13, 1 }, { 1000, 777, 1 }, { 4096, 300, 1 }, { 300, 1029, 3 },
                            { 513, 256, 17 } };
  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++)
    for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
      run (dtypes[d], shapes[s][0], shapes[s][1], shapes[s][2]);
  printf ("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
