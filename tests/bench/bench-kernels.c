/* bench-kernels — g3n_matmul speed per weight format: a decode GEMV and a prefill GEMM.
 *
 *   bench-kernels [ROWS COLS [TOKENS [SECONDS]]]     (default 2048 8192 64 1)
 *   bench-kernels gemm [TOKENS [SECONDS]]            (default 512 1)
 *   bench-kernels qgemm [TOKENS [SECONDS]]           (default 256 and 512, 1)
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
 *
 * `qgemm` compares the prefill paths on Q8_0 and Q4_0 weights of E2B's shapes ([2048 x 2048] attention,
 * [8192 x 2048] gate/up, [2048 x 8192] down) times TOKENS activation rows, on 1 and 2 threads: the dot
 * products per token (the former path, G3N_QGEMM=dots) against the blocked integer GEMM, with BF16 weights
 * on the float GEMM for reference. GOP/s counts 2·rows·cols·tokens per call; each figure is the fastest
 * call seen in SECONDS (other work on the machine only slows calls down), and dev is the largest
 * |y_gemm − y_dots| relative to the largest |y|.
 */
#include "kernels/kernels.h"
#include "kernels/threadpool.h"
#include "kernels/quant.h"

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
      g3n_kernels_push_threads (threads);
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


/* The fastest of the calls made in `budget` seconds (after a warm-up call): on a shared machine the best
 * call is the one least disturbed. */
static double
best_call (void (*fn) (const G3nMatrix *, const float *, int, float *), const G3nMatrix *m, const float *x, int n,
           float *y, double budget)
{
  fn (m, x, n, y);
  double best = G_MAXDOUBLE, start = seconds ();
  do {
    double t0 = seconds ();
    fn (m, x, n, y);
    best = MIN (best, seconds () - t0);
  } while (seconds () - start < budget);
  return best;
}

static int
bench_qgemm (const int *token_counts, int n_counts, double budget)
{
  const int shapes[][2] = { { 2048, 2048 }, { 8192, 2048 }, { 2048, 8192 } };
  const G3nQuantType types[] = { G3N_QUANT_Q8_0, G3N_QUANT_Q4_0 };
  GRand *rand = g_rand_new_with_seed (13);
  printf ("# quantised prefill: dot products per token vs blocked GEMM, isa %s; GOP/s (best call), ms\n",
          g3n_qdot_isa ());
  printf ("%-11s %4s %-5s %3s %9s %9s %9s %9s %7s %9s %9s\n", "shape", "tok", "type", "thr", "dots", "gemm", "dots ms",
          "gemm ms", "speedup", "bf16 gemm", "dev");
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    int rows = shapes[s][0], cols = shapes[s][1];
    gsize count = (gsize) rows * cols;
    guint16 *w = random_bf16 (rand, count);
    G3nMatrix bf16 = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, q[2];
    gpointer bufs[2];
    for (int k = 0; k < 2; k++)
      bufs[k] = g3n_matrix_quantize (&bf16, types[k], &q[k]);
    for (int c = 0; c < n_counts; c++) {
      int tokens = token_counts[c];
      float *x = g_new (float, (gsize) tokens * cols);
      float *y = g_new (float, (gsize) tokens * rows), *y_dots = g_new (float, (gsize) tokens * rows);
      for (gsize i = 0; i < (gsize) tokens * cols; i++)
        x[i] = (float) g_rand_double_range (rand, -1, 1);
      double ops = 2.0 * count * tokens;
      for (int k = 0; k < 2; k++)
        for (int threads = 1; threads <= 2; threads++) {
          g3n_kernels_push_threads (threads);
          double dots = best_call (g3n_matmul_quant_dots, &q[k], x, tokens, y_dots, budget);
          double gemm = best_call (g3n_quant_gemm, &q[k], x, tokens, y, budget);
          double ref = k == 0 ? best_call (g3n_matmul, &bf16, x, tokens, y, budget) : 0;
          if (k == 0) /* y now holds the BF16 result: the GEMM's once more */
            g3n_quant_gemm (&q[k], x, tokens, y);
          double dev = 0, top = 0;
          for (gsize i = 0; i < (gsize) tokens * rows; i++) {
            dev = MAX (dev, fabs ((double) y[i] - y_dots[i]));
            top = MAX (top, fabs ((double) y_dots[i]));
          }
          char shape[32], ref_s[16] = "";
          g_snprintf (shape, sizeof shape, "%dx%d", rows, cols);
          if (k == 0)
            g_snprintf (ref_s, sizeof ref_s, "%.1f", ops / ref / 1e9);
          printf ("%-11s %4d %-5s %3d %9.1f %9.1f %9.2f %9.2f %6.2fx %9s %9.1e\n", shape, tokens,
                  g3n_quant_type_name (types[k]), threads, ops / dots / 1e9, ops / gemm / 1e9, dots * 1e3, gemm * 1e3,
                  dots / gemm, ref_s, dev / top);
          fflush (stdout);
        }
      g_free (x), g_free (y), g_free (y_dots);
    }
    for (int k = 0; k < 2; k++)
      g_free (bufs[k]);
    g_free (w);
  }
  g_rand_free (rand);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc > 1 && g_str_equal (argv[1], "gemm")) {
    g3n_kernels_push_threads (2);
    int tokens = argc > 2 ? atoi (argv[2]) : 512;
    double budget = argc > 3 ? atof (argv[3]) : 1.0;
    if (tokens < 8 || budget <= 0) { /* fewer tokens go through dot products, not the GEMM paths */
      fprintf (stderr, "usage: bench-kernels gemm [TOKENS [SECONDS]]\n");
      return 2;
    }
    return bench_gemm (tokens, budget);
  }
  if (argc > 1 && g_str_equal (argv[1], "qgemm")) {
    g3n_kernels_push_threads (2); /* the pool is sized at first use */
    int counts[2] = { 256, 512 }, n_counts = 2;
    if (argc > 2)
      counts[0] = atoi (argv[2]), n_counts = 1;
    double budget = argc > 3 ? atof (argv[3]) : 1.0;
    if (counts[0] < 1 || budget <= 0) {
      fprintf (stderr, "usage: bench-kernels qgemm [TOKENS [SECONDS]]\n");
      return 2;
    }
    return bench_qgemm (counts, n_counts, budget);
  }
  int rows = argc > 2 ? atoi (argv[1]) : 2048, cols = argc > 2 ? atoi (argv[2]) : 8192;
  int tokens = argc > 3 ? atoi (argv[3]) : 64;
  double budget = argc > 4 ? atof (argv[4]) : 1.0;
  if (rows <= 0 || cols <= 0 || tokens <= 0) {
    fprintf (stderr, "usage: bench-kernels [ROWS COLS [TOKENS [SECONDS]]]\n");
    return 2;
  }
  g3n_kernels_push_threads (2); /* the pool is sized at first use; 1 thread is then a subset */
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
      g3n_kernels_push_threads (threads);
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
      g3n_kernels_push_threads (threads);
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
