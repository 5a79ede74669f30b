/* bench-kernels — g3n_matmul speed per weight format: a decode GEMV and a prefill GEMM.
 *
 *   bench-kernels [ROWS COLS [TOKENS [SECONDS]]]     (default 2048 8192 64 1)
 *   bench-kernels gemm [TOKENS [SECONDS]]            (default 512 1)
 *
 * For BF16, Q8_0 and Q4_0 copies of one random matrix, on 1 and 2 threads: ns per GEMV call and the weight
 * bytes streamed per second (the figure that bounds decode speed), then the same for a TOKENS-row product
 * (GFLOP/s, prefill). Then the by-input (sparse down_proj) storage against a 95%-zero activation, as
 * Gemma 3n's sparse MLP layers feed it, next to the row-major GEMV on the same activation. G3N_KERNEL picks
 * the instruction set as everywhere.
 *
 * `gemm` compares the prefill paths on BF16 weights of Gemma 3n E2B's MLP shapes ([8192 x 2048] gate/up,
 * [2048 x 8192] down) times TOKENS activation rows, on 1 and 2 threads: the former path (weights widened to
 * fp32 in blocks, OpenBLAS sgemm; G3N_GEMM=blas), our blocked kernels (exact fp32), and the opt-in BF16
 * activations (vdpbf16ps where the CPU has AVX512_BF16), with the fast path's largest deviation from the
 * exact one relative to the largest |y|.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double
seconds (void)
{
  return (double) g_get_monotonic_time () / 1e6;
}

/* Calls per second of y = x · mᵀ over at least `budget` seconds (after one warm-up call). */
static double
time_matmul (const G3nMatrix *m, const float *x, int n, float *y, double budget)
{
  g3n_matmul (m, x, n, y);
  int calls = 0;
  double t0 = seconds (), t;
  do {
    g3n_matmul (m, x, n, y);
    calls++;
    t = seconds () - t0;
  } while (t < budget);
  return t / calls;
}

static guint16 *
random_bf16 (GRand *rand, gsize count)
{
  guint16 *w = g_new (guint16, count);
  for (gsize i = 0; i < count; i++) {
    float v = (float) g_rand_double_range (rand, -0.05, 0.05);
    guint32 u;
    memcpy (&u, &v, 4);
    w[i] = (guint16) (u >> 16);
  }
  return w;
}

static int
bench_gemm (int tokens, double budget)
{
  const int shapes[][2] = { { 8192, 2048 }, { 2048, 8192 } };
  GRand *rand = g_rand_new_with_seed (11);
  printf ("# prefill GEMM paths, BF16 weights x %d tokens, isa %s\n", tokens, g3n_kernels_isa ());
  printf ("%-13s %3s %10s %10s %10s %10s %12s\n", "shape", "thr", "blas", "exact", "bf16-act", "exact/blas",
          "bf16-act dev");
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    int rows = shapes[s][0], cols = shapes[s][1];
    gsize count = (gsize) rows * cols;
    guint16 *w = random_bf16 (rand, count);
    float *x = g_new (float, (gsize) tokens * cols);
    float *y = g_new (float, (gsize) tokens * rows), *y_exact = g_new (float, (gsize) tokens * rows);
    for (gsize i = 0; i < (gsize) tokens * cols; i++)
      x[i] = (float) g_rand_double_range (rand, -1, 1);
    G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols };
    if (s == 0) /* the pool is sized at its first parallel region: make that one on 2 threads */
      g3n_matmul (&m, x, tokens, y);
    for (int threads = 1; threads <= 2; threads++) {
      g3n_kernels_set_threads (threads);
      double gflops[3], dev = 0, top = 0;
      for (int p = 0; p < 3; p++) {
        g3n_kernels_set_gemm_blas (p == 0);
        g3n_kernels_set_bf16_activations (p == 2);
        gflops[p] = 2.0 * count * tokens / time_matmul (&m, x, tokens, y, budget) / 1e9;
        if (p == 1)
          memcpy (y_exact, y, (gsize) tokens * rows * sizeof (float));
      }
      for (gsize i = 0; i < (gsize) tokens * rows; i++) {
        dev = MAX (dev, fabs ((double) y[i] - y_exact[i]));
        top = MAX (top, fabs ((double) y_exact[i]));
      }
      char shape[32];
      g_snprintf (shape, sizeof shape, "%dx%d", rows, cols);
      printf ("%-13s %3d %10.1f %10.1f %10.1f %10.2f %12.2e\n", shape, threads, gflops[0], gflops[1], gflops[2],
              gflops[1] / gflops[0], dev / top);
      fflush (stdout);
    }
    g3n_kernels_set_gemm_blas (FALSE);
    g3n_kernels_set_bf16_activations (FALSE);
    g_free (w), g_free (x), g_free (y), g_free (y_exact);
  }
  printf ("# GFLOP/s (2·rows·cols·tokens per call); dev = max |y_bf16act - y_exact| / max |y_exact|\n");
  g_rand_free (rand);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc > 1 && g_str_equal (argv[1], "gemm")) {
    g3n_kernels_set_threads (2);
    int tokens = argc > 2 ? atoi (argv[2]) : 512;
    double budget = argc > 3 ? atof (argv[3]) : 1.0;
    if (tokens < 8 || budget <= 0) { /* fewer tokens go through dot products, not the GEMM paths */
      fprintf (stderr, "usage: bench-kernels gemm [TOKENS [SECONDS]]\n");
      return 2;
    }
    return bench_gemm (tokens, budget);
  }
  int rows = argc > 2 ? atoi (argv[1]) : 2048, cols = argc > 2 ? atoi (argv[2]) : 8192;
  int tokens = argc > 3 ? atoi (argv[3]) : 64;
  double budget = argc > 4 ? atof (argv[4]) : 1.0;
  if (rows <= 0 || cols <= 0 || tokens <= 0) {
    fprintf (stderr, "usage: bench-kernels [ROWS COLS [TOKENS [SECONDS]]]\n");
    return 2;
  }
  g3n_kernels_set_threads (2); /* the pool is sized at first use; 1 thread is then a subset */
  GRand *rand = g_rand_new_with_seed (7);
  gsize count = (gsize) rows * cols;
  guint16 *w = g_new (guint16, count);
  for (gsize i = 0; i < count; i++) {
    float v = (float) g_rand_double_range (rand, -0.05, 0.05);
    guint32 u;
    memcpy (&u, &v, 4);
    w[i] = (guint16) (u >> 16);
  }
  float *x = g_new (float, (gsize) tokens * cols), *y = g_new (float, (gsize) tokens * rows);
  for (gsize i = 0; i < (gsize) tokens * cols; i++)
    x[i] = (float) g_rand_double_range (rand, -1, 1);

  G3nMatrix mats[3] = { { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols } };
  gpointer bufs[3] = { NULL };
  bufs[1] = g3n_matrix_quantize (&mats[0], G3N_QUANT_Q8_0, &mats[1]);
  bufs[2] = g3n_matrix_quantize (&mats[0], G3N_QUANT_Q4_0, &mats[2]);
  const char *names[3] = { "bf16", "q8_0", "q4_0" };

  printf ("# g3n_matmul [%d x %d], isa %s; GEMV = 1 token, GEMM = %d tokens\n", rows, cols, g3n_kernels_isa (), tokens);
  printf ("%-5s %7s %3s %12s %9s %12s %9s\n", "type", "MiB", "thr", "GEMV ns", "GB/s", "GEMM ms", "GFLOP/s");
  for (int k = 0; k < 3; k++)
    for (int threads = 1; threads <= 2; threads++) {
      g3n_kernels_set_threads (threads);
      double gemv = time_matmul (&mats[k], x, 1, y, budget);
      double gemm = time_matmul (&mats[k], x, tokens, y, budget);
      gsize bytes = g3n_matrix_bytes (&mats[k]);
      printf ("%-5s %7.1f %3d %12.0f %9.2f %12.2f %9.1f\n", names[k], bytes / 1048576.0, threads, gemv * 1e9,
              bytes / gemv / 1e9, gemm * 1e3, 2.0 * count * tokens / gemm / 1e9);
      fflush (stdout);
    }

  /* 95% zeros, like the Gaussian top-k output */
  float *sparse = g_new (float, cols);
  for (int i = 0; i < cols; i++)
    sparse[i] = g_rand_double (rand) < 0.95 ? 0 : (float) g_rand_double_range (rand, 0, 1);
  printf ("# 95%%-zero activation: row-major GEMV vs by-input storage\n");
  printf ("%-5s %3s %14s %14s\n", "type", "thr", "row-major ns", "by-input ns");
  for (int k = 1; k < 3; k++) {
    G3nMatrix by_input;
    gpointer b = g3n_matrix_quantize_by_input (&mats[0], mats[k].quant, &by_input);
    for (int threads = 1; threads <= 2; threads++) {
      g3n_kernels_set_threads (threads);
      double dense = time_matmul (&mats[k], sparse, 1, y, budget);
      double skip = time_matmul (&by_input, sparse, 1, y, budget);
      printf ("%-5s %3d %14.0f %14.0f\n", names[k], threads, dense * 1e9, skip * 1e9);
      fflush (stdout);
    }
    g_free (b);
  }
  g_free (sparse);
  for (int k = 0; k < 3; k++)
    g_free (bufs[k]);
  g_free (w), g_free (x), g_free (y);
  g_rand_free (rand);
  return 0;
}
