/* test-kernels — g3n_matmul on every dtype against a double-precision reference, at sizes that exercise
 * vector tails, threading (rows or tokens split across the pool) and the multi-token kernels' blocking:
 * partial row tiles and token blocks, several token chunks, several K blocks, odd K. Each multi-token
 * shape runs on our kernels (forced, so that G3N_KERNEL=portable covers the portable ones too), on the
 * former sgemm path (g3n_kernels_set_gemm_blas) and with BF16 activations
 * (g3n_kernels_set_bf16_activations), which for BF16 weights is checked against the reference on the
 * rounded activations with the same fp32 bound: rounding x is the only approximation it makes. Every shape
 * also runs stored by input (the sparse layers' down_proj: a weight row per input, zero inputs skipped)
 * and through g3n_matmul_rows (a sparse layer's up_proj in decode). Run under
 * each G3N_KERNEL by test-kernel-paths.sh. */
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

enum { PATH_OWN, PATH_BLAS, PATH_BF16_ACT, PATH_BY_INPUT, PATH_ROWS };
static const char *path_names[] = { "", ", sgemm path", ", bf16 activations", ", stored by input, 90% zero inputs",
                                    ", selected rows in reverse order" };

/* y = x · mᵀ one token at a time through g3n_matmul_rows, asking for every row, last first. */
static void
matmul_by_selected_rows (const G3nMatrix *m, const float *x, int n, float *y)
{
  int *rows = g_new (int, m->rows);
  float *sel = g_new (float, m->rows);
  for (int i = 0; i < m->rows; i++)
    rows[i] = m->rows - 1 - i;
  for (int t = 0; t < n; t++) {
    g3n_matmul_rows (m, x + (gsize) t * m->cols, rows, m->rows, sel);
    for (int i = 0; i < m->rows; i++)
      y[(gsize) t * m->rows + rows[i]] = sel[i];
  }
  g_free (rows), g_free (sel);
}

static void
run (G3nDType dtype, int rows, int cols, int n, int path)
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
    x[i] = path == PATH_BY_INPUT && g_rand_double (rand) < 0.9 ? 0 : (float) g_rand_double_range (rand, -1, 1);
  G3nMatrix m = { .data = w, .dtype = dtype, .rows = rows, .cols = cols }, by_input;
  float *y = g_new (float, (gsize) n * rows);
  g3n_kernels_set_gemm_blas (path == PATH_BLAS);
  g3n_kernels_set_bf16_activations (path == PATH_BF16_ACT);
  if (path == PATH_BY_INPUT) {
    gpointer buf = g3n_matrix_transpose_by_input (&m, &by_input);
    g3n_matmul (&by_input, x, n, y);
    g_free (buf);
  } else if (path == PATH_ROWS) {
    matmul_by_selected_rows (&m, x, n, y);
  } else {
    g3n_matmul (&m, x, n, y);
  }
  g3n_kernels_set_bf16_activations (FALSE);
  /* the reference on what was multiplied: fewer than 8 tokens go through the fp32 dot products */
  if (path == PATH_BF16_ACT && dtype == G3N_DTYPE_BF16 && n >= 8)
    for (gsize i = 0; i < (gsize) n * cols; i++)
      g3n_to_f32 (G3N_DTYPE_BF16, &(guint16) { to_bf16 (x[i]) }, &x[i], 1);
  double worst = 0;
  for (int t = 0; t < n; t++)
    for (int r = 0; r < rows; r++) {
      double ref = 0;
      for (int c = 0; c < cols; c++)
        ref += (double) wf[(gsize) r * cols + c] * x[(gsize) t * cols + c];
      worst = fmax (worst, fabs (ref - y[(gsize) t * rows + r]) / sqrt ((double) cols));
    }
  gboolean ok = worst < 1e-5;
  printf ("%s %s %dx%d, n=%d (%s%s): max |err|/sqrt(cols) = %.2g\n", ok ? "ok  " : "FAIL", g3n_dtype_name (dtype),
          rows, cols, n, g3n_kernels_isa (), path_names[path], worst);
  ok ? passed++ : failed++;
  g_free (wf), g_free (x), g_free (w), g_free (y);
  g_rand_free (rand);
}

/* Quantised weights: g3n_matmul_rows runs the same integer kernel per row as g3n_matmul, so the selected
 * rows' results are bit-identical. */
static void
run_quant_rows (G3nQuantType type, int rows, int cols)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 5 + cols + type));
  float *wf = g_new (float, (gsize) rows * cols), *x = g_new (float, cols);
  float *all = g_new (float, rows), *sel = g_new (float, rows);
  int *pick = g_new (int, rows), n = 0;
  for (gsize i = 0; i < (gsize) rows * cols; i++)
    wf[i] = (float) g_rand_double_range (rand, -1, 1);
  for (int c = 0; c < cols; c++)
    x[c] = (float) g_rand_double_range (rand, -1, 1);
  for (int r = rows - 1; r >= 0; r--) /* every third row, last first */
    if (r % 3 == 0)
      pick[n++] = r;
  G3nMatrix m = { .data = wf, .dtype = G3N_DTYPE_F32, .rows = rows, .cols = cols }, q;
  gpointer buf = g3n_matrix_quantize (&m, type, &q);
  g3n_matmul (&q, x, 1, all);
  g3n_matmul_rows (&q, x, pick, n, sel);
  gboolean ok = TRUE;
  for (int i = 0; i < n; i++)
    ok &= memcmp (&sel[i], &all[pick[i]], sizeof (float)) == 0;
  printf ("%s %s %dx%d: %d selected rows equal the full product's\n", ok ? "ok  " : "FAIL",
          type == G3N_QUANT_Q8_0 ? "q8_0" : "q4_0", rows, cols, n);
  ok ? passed++ : failed++;
  g_free (buf), g_free (wf), g_free (x), g_free (all), g_free (sel), g_free (pick);
  g_rand_free (rand);
}

int
main (void)
{
  const G3nDType dtypes[] = { G3N_DTYPE_BF16, G3N_DTYPE_F16, G3N_DTYPE_F32 };
  /* n < 8: dot products per token (n = 2, 3) or, on the sgemm path, sgemm; then the blocked kernels' shapes
   * (n >= 8): rows not a multiple of the row tile; tokens in partial vectors, several blocks and
   * (131) several chunks; K with an odd tail and (601, 2051, 4099) several K blocks; 1001 rows: several
   * groups of row tiles per thread; few rows (4, 9) with enough tokens that threads split the tokens; rows
   * over 4096 wide (4103) go four at a time in dot products, with a remainder of rows and of columns */
  const int shapes[][3] = { { 1, 1, 1 }, { 7, 13, 1 }, { 1000, 777, 1 }, { 4096, 300, 1 }, { 300, 1029, 3 },
                            { 513, 256, 17 },  { 3, 5, 2 },     { 67, 2051, 131 }, { 4, 300, 200 },
                            { 9, 4099, 40 },   { 131, 64, 70 },   { 1001, 601, 20 }, { 3, 5, 9 },
                            { 6, 4103, 2 } };
  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++)
    for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
      for (int path = PATH_OWN; path <= PATH_ROWS; path++)
        if (shapes[s][2] > 1 || path == PATH_OWN || path >= PATH_BY_INPUT)
          run (dtypes[d], shapes[s][0], shapes[s][1], shapes[s][2], path);
  run_quant_rows (G3N_QUANT_Q8_0, 300, 544);
  run_quant_rows (G3N_QUANT_Q4_0, 1000, 80);
  printf ("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
