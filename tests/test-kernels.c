/* test-kernels — g3n_matmul on every dtype against a double-precision reference, at sizes that exercise
 * vector tails, threading (rows or tokens split across the pool) and the multi-token kernels' blocking:
 * partial row tiles and token blocks, several token chunks, several K blocks, odd K. Each multi-token
 * shape runs on our kernels (forced, so that G3N_KERNEL=portable covers the portable ones too), on the
 * former sgemm path (g3n_kernels_set_gemm_blas) and with BF16 activations
 * (g3n_kernels_set_bf16_activations), which for BF16 weights is checked against the reference on the
 * rounded activations with the same fp32 bound: rounding x is the only approximation it makes. Every shape
 * also runs stored by input (the sparse layers' down_proj: a weight row per input, zero inputs skipped)
 * and through g3n_matmul_rows (a sparse layer's up_proj in decode). Also the KV cache's 16-bit rows
 * (half.c): conversions bit-identical to the scalar rounding, and the decode-step attention products
 * against double precision. Run under each G3N_KERNEL by test-kernel-paths.tap. */
#include "kernels/kernels.h"
#include "kernels/threadpool.h"

#include <math.h>
#include <stdarg.h>
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

/* The dot products of few tokens go four rows at a time, a quarter of a thread's range apart; each row
 * must come out bit for bit as alone (g3n_matmul_rows computes one row per call), whatever the split: on
 * 1 and on all threads, rows not a multiple of four, widths with vector tails. */
static void
run_grouped_rows (G3nDType dtype, int rows, int cols, int n)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows + cols * 3 + n));
  gsize esize = g3n_dtype_size (dtype);
  guint8 *w = g_malloc ((gsize) rows * cols * esize);
  float *x = g_new (float, (gsize) n * cols), *y = g_new (float, (gsize) n * rows), *y1 = g_new (float, (gsize) n * rows);
  float *sel = g_new (float, (gsize) n * rows);
  for (gsize i = 0; i < (gsize) rows * cols * esize; i++)
    w[i] = (guint8) g_rand_int_range (rand, 0, 256);
  for (gsize i = 0; i < (gsize) rows * cols; i++) /* finite values only: clear each element's top exponent bit */
    w[i * esize + esize - 1] &= 0xbf;
  for (gsize i = 0; i < (gsize) n * cols; i++)
    x[i] = (float) g_rand_double_range (rand, -1, 1);
  G3nMatrix m = { .data = w, .dtype = dtype, .rows = rows, .cols = cols };
  g3n_matmul (&m, x, n, y);
  g3n_kernels_push_threads (1);
  g3n_matmul (&m, x, n, y1);
  g3n_kernels_push_threads (0);
  matmul_by_selected_rows (&m, x, n, sel);
  gboolean ok = memcmp (y, sel, sizeof (float) * n * rows) == 0 && memcmp (y1, sel, sizeof (float) * n * rows) == 0;
  printf ("%s %s %dx%d, n=%d (%s): rows four at a time, each bit for bit as alone, on 1 and %d threads\n",
          ok ? "ok  " : "FAIL", g3n_dtype_name (dtype), rows, cols, n, g3n_kernels_isa (), g3n_kernels_threads ());
  ok ? passed++ : failed++;
  g_free (w), g_free (x), g_free (y), g_free (y1), g_free (sel);
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

/* ------------------------------------------------------ 16-bit rows (the KV cache's F16 / BF16) */

static void
report (gboolean ok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("%s %s (%s)\n", ok ? "ok  " : "FAIL", msg, g3n_kernels_isa ());
  ok ? passed++ : failed++;
}

static float
bits_to_f32 (guint32 u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

/* Values that stress rounding: ties at both formats' last bits, the F16 subnormal range and its overflow
 * edge, signed zeros and infinities, then random magnitudes over both formats' ranges. */
static float *
rounding_cases (GRand *rand, gsize n)
{
  const float special[] = { 0.0f, -0.0f, 1.0f, 1.0f + 0x1p-11f, 1.0f + 0x3p-11f, -(1.0f + 0x1p-11f), 0x1p-25f,
                            0x3p-25f, 0x1p-24f, 0x1.ff8p-15f, 0x1.ffcp-15f, 65504.0f, 65519.0f, 65520.0f, -65520.0f,
                            1e30f, bits_to_f32 (0x7f800000), bits_to_f32 (0xff800000), 1.0f + 0x1p-8f,
                            1.0f + 0x3p-8f, bits_to_f32 (0x3f808000), bits_to_f32 (0x7f7fffff) };
  float *x = g_new (float, n);
  for (gsize i = 0; i < n; i++) {
    double mag = ldexp (g_rand_double_range (rand, 1, 2), g_rand_int_range (rand, -30, 18));
    x[i] = i < G_N_ELEMENTS (special) ? special[i] : (float) (g_rand_boolean (rand) ? mag : -mag);
  }
  return x;
}

/* Conversions: the same bits as the scalar reference (RNE) on every ISA, over vector bodies and tails. */
static void
test_half_conversions (void)
{
  GRand *rand = g_rand_new_with_seed (7);
  const gsize n = 1000 + 13;
  float *x = rounding_cases (rand, n), *back = g_new (float, n);
  guint16 *h = g_new (guint16, n);
  g3n_from_f32 (G3N_DTYPE_F16, x, h, n);
  gsize bad = 0;
  for (gsize i = 0; i < n; i++)
    bad += h[i] != g3n_f32_to_f16 (x[i]);
  report (bad == 0, "fp32 -> f16 of %" G_GSIZE_FORMAT " values (ties, subnormals, overflow): %" G_GSIZE_FORMAT
          " differ from the scalar rounding", n, bad);
  g3n_from_f32 (G3N_DTYPE_BF16, x, h, n);
  bad = 0;
  for (gsize i = 0; i < n; i++)
    bad += h[i] != to_bf16 (x[i]);
  report (bad == 0, "fp32 -> bf16 of %" G_GSIZE_FORMAT " values: %" G_GSIZE_FORMAT " differ from the scalar rounding",
          n, bad);
  /* the shared scalar helpers (half.h) against this file's reference and an exact round trip */
  bad = 0;
  for (gsize i = 0; i < n; i++)
    bad += g3n_f32_to_bf16 (x[i]) != to_bf16 (x[i]) || g3n_f32_to_bf16 (g3n_bf16_to_f32 (h[i])) != h[i];
  report (bad == 0, "half.h fp32 <-> bf16 of %" G_GSIZE_FORMAT " values: %" G_GSIZE_FORMAT " differ", n, bad);
  float nan[17];
  for (int i = 0; i < 17; i++)
    nan[i] = bits_to_f32 (i % 2 ? 0x7fc00001u : 0xff800001u); /* quiet and signalling */
  gboolean nan_ok = TRUE;
  for (int t = 0; t < 2; t++) {
    G3nDType dt = t ? G3N_DTYPE_BF16 : G3N_DTYPE_F16;
    g3n_from_f32 (dt, nan, h, 17);
    g3n_half_to_f32 (dt, h, back, 17);
    for (int i = 0; i < 17; i++)
      nan_ok = nan_ok && isnan (back[i]);
  }
  report (nan_ok, "NaN stays NaN through f16 and bf16");

  /* every F16 bit pattern widens as the scalar conversion does */
  guint16 *all = g_new (guint16, 65536);
  float *wide = g_new (float, 65536);
  for (int i = 0; i < 65536; i++)
    all[i] = (guint16) i;
  g3n_half_to_f32 (G3N_DTYPE_F16, all, wide, 65536);
  bad = 0;
  for (int i = 0; i < 65536; i++) {
    float ref = g3n_f16_to_f32 (all[i]);
    bad += isnan (ref) ? !isnan (wide[i]) : memcmp (&ref, &wide[i], 4) != 0;
  }
  report (bad == 0, "f16 -> fp32 of all 65536 bit patterns: %" G_GSIZE_FORMAT " differ", bad);
  g_free (all), g_free (wide), g_free (x), g_free (back), g_free (h);
  g_rand_free (rand);
}

/* One decode step's attention products: nq queries in groups of G per KV head over n rows, each holding
 * nq / G segments of d values (ld apart, ld >= segments · d), against double precision on the widened rows
 * (the rows are what the cache holds; only the fp32 summation may differ). */
static void
test_half_products (G3nDType dtype, int nq, int G, int n, int d, int pad)
{
  int segs = (nq + G - 1) / G;
  gsize ld = (gsize) segs * d + pad;
  GRand *rand = g_rand_new_with_seed ((guint32) (nq * 1009 + G * 101 + n * 131 + d * 7 + pad));
  /* queries and outputs d + 3 apart, scores and weights n + 5 apart: strides unlike the widths */
  gsize ldq = (gsize) d + 3, lds = (gsize) n + 5;
  float *q = g_new (float, nq * ldq), *p = g_new (float, nq * lds), *scores = g_new (float, nq * lds);
  float *out = g_new (float, nq * ldq);
  float *src = g_new (float, (gsize) n * ld), *wide = g_new (float, (gsize) n * ld);
  guint16 *rows = g_new (guint16, (gsize) n * ld);
  for (gsize i = 0; i < (gsize) n * ld; i++)
    src[i] = (float) g_rand_double_range (rand, -2, 2);
  for (gsize i = 0; i < nq * ldq; i++)
    q[i] = (float) g_rand_double_range (rand, -1, 1);
  for (gsize i = 0; i < nq * lds; i++)
    p[i] = (float) g_rand_double_range (rand, 0, 1);
  g3n_from_f32 (dtype, src, rows, (gsize) n * ld);
  g3n_half_to_f32 (dtype, rows, wide, (gsize) n * ld);
  g3n_half_dots (dtype, q, ldq, nq, G, rows, ld, n, d, scores, lds);
  g3n_half_weighted_sum (dtype, p, lds, nq, G, rows, ld, n, d, out, ldq);
  double worst_s = 0, worst_o = 0;
  for (int g = 0; g < nq; g++) {
    const float *seg = wide + (gsize) (g / G) * d;
    for (int i = 0; i < n; i++) {
      double ref = 0;
      for (int c = 0; c < d; c++)
        ref += (double) q[g * ldq + c] * seg[(gsize) i * ld + c];
      worst_s = fmax (worst_s, fabs (ref - scores[g * lds + i]) / sqrt ((double) d));
    }
    for (int c = 0; c < d; c++) {
      double ref = 0;
      for (int i = 0; i < n; i++)
        ref += (double) p[g * lds + i] * seg[(gsize) i * ld + c];
      worst_o = fmax (worst_o, fabs (ref - out[g * ldq + c]) / sqrt ((double) n));
    }
  }
  report (worst_s < 1e-5 && worst_o < 1e-5, "%s attention, %d queries by %d, %d rows of %d (ld %" G_GSIZE_FORMAT
          "): scores max |err|/sqrt(d) %.2g, weighted sum max |err|/sqrt(n) %.2g", g3n_dtype_name (dtype), nq, G, n,
          d, ld, worst_s, worst_o);
  g_free (q), g_free (p), g_free (scores), g_free (out), g_free (src), g_free (wide), g_free (rows);
  g_rand_free (rand);
}

/* Closeness to a double-precision value, where NaN must match NaN and infinities must match exactly. */
static gboolean
close_to (float got, double want)
{
  if (isnan (want) || isinf (want))
    return isnan (want) ? isnan (got) : got == want;
  return fabs (got - want) <= 1e-5 * MAX (1.0, fabs (want));
}

/* The exp-based activations on values a hostile session or weights file can produce: beyond the range
 * where exp's exponent fits an int (|x| > ~1.5e9), infinities and NaN. Each saturates as the libm formula
 * does (NaN stays NaN), over a vector body and a tail (19 values). Fails before vexp clamped its input:
 * the out-of-range float-to-int cast (undefined; INT_MIN on x86) turned exp(huge) into 0 or NaN. */
static void
test_exp_extremes (void)
{
  const float nan = bits_to_f32 (0x7fc00000), inf = bits_to_f32 (0x7f800000);
  const float v[19] = { 1e20f, -1e20f, 3e9f, -3e9f, 1e10f, -1e10f, 88.5f, -88.5f, 150.0f, -150.0f,
                        inf, -inf, nan, 0.5f, -0.5f, 1e38f, -1e38f, 2.0f, 0.0f };
  const float cap = 30.0f;
  float x[19];
  int bad_cap = 0, bad_gelu = 0, bad_max = 0;
  memcpy (x, v, sizeof x);
  g3n_softcap (x, 19, cap);
  for (int i = 0; i < 19; i++)
    bad_cap += !close_to (x[i], isnan (v[i]) ? NAN : cap * tanh ((double) v[i] / cap));
  memcpy (x, v, sizeof x);
  g3n_gelu_tanh (x, 19);
  for (int i = 0; i < 19; i++) {
    double u = 0.7978845608 * ((double) v[i] + 0.044715 * (double) v[i] * v[i] * v[i]);
    if (!isinf (v[i])) /* gelu(±inf) is inf·0 in the tanh form: no defined value to hold it to */
      bad_gelu += !close_to (x[i], isnan (v[i]) ? NAN : 0.5 * v[i] * (1.0 + tanh (u)));
  }
  /* softmax over logits 1e30 apart: exp of -1e30 and -2e30 is 0, so the largest takes all the weight */
  float s[11] = { 1e30f, 0.0f, -1e30f, -1e30f, -1e30f, -1e30f, -1e30f, -1e30f, -1e30f, -1e30f, -1e30f };
  g3n_softmax (s, 11);
  for (int i = 0; i < 11; i++)
    bad_max += !close_to (s[i], i == 0 ? 1.0 : 0.0);
  report (bad_cap == 0 && bad_gelu == 0 && bad_max == 0,
          "exp at extremes (|x| up to 1e38, inf, NaN): %d softcap, %d gelu, %d softmax values off", bad_cap,
          bad_gelu, bad_max);
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
  for (guint d = 0; d < G_N_ELEMENTS (dtypes); d++) {
    run_grouped_rows (dtypes[d], 4099, 2048, 1);
    run_grouped_rows (dtypes[d], 257, 4103, 1);
    run_grouped_rows (dtypes[d], 37, 77, 3);
  }
  run_quant_rows (G3N_QUANT_Q8_0, 300, 544);
  run_quant_rows (G3N_QUANT_Q4_0, 1000, 80);
  test_half_conversions ();
  test_exp_extremes ();
  /* queries by group: one at a time (G = 1), groups of 4 (E2B: 8 by 4), 2 (the fixtures), 6 (a group of 4
   * and two single ones), 9 in one segment; rows: 1, odd counts and several SUM_TILE tiles (16); head sizes
   * with and without vector tails (8/16-wide loads, 16/32-column blocks of the grouped sums, 32/64 of the
   * single ones); rows padded beyond their segments */
  const int half_shapes[][5] = { { 1, 1, 1, 1, 0 },   { 1, 1, 3, 15, 2 },   { 4, 4, 5, 16, 0 },   { 6, 6, 4, 33, 7 },
                                 { 8, 4, 9, 64, 0 },   { 8, 4, 513, 256, 0 }, { 9, 9, 7, 300, 1 }, { 4, 2, 100, 72, 0 },
                                 { 4, 4, 1, 8, 0 },    { 2, 1, 513, 256, 0 }, { 8, 4, 40, 40, 3 } };
  for (int t = 0; t < 2; t++)
    for (guint i = 0; i < G_N_ELEMENTS (half_shapes); i++)
      test_half_products (t ? G3N_DTYPE_BF16 : G3N_DTYPE_F16, half_shapes[i][0], half_shapes[i][1],
                          half_shapes[i][2], half_shapes[i][3], half_shapes[i][4]);
  printf ("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
