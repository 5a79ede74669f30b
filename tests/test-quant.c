/* test-quant — Q8_0 / Q4_0 weights: the formats, the integer kernels, and the decoder running on them.
 *
 * Bounds are derived, not tuned:
 *  - round trip: Q8_0 codes are round(w / d) with the stored scale d, so |w − ŵ| ≤ d/2. Q4_0 maps the
 *    block's largest-magnitude weight to code 0 (−8·d) and the opposite side reaches at most +8·d, clamped
 *    to code 15 (+7·d): |w − ŵ| ≤ max(d/2, |w| − 7·d) ≤ d.
 *  - products: y = Σ w·x is computed as Σ ŵ·x̂ with x̂ the activation quantised to int8 blocks
 *    (|x − x̂| ≤ d_x/2), so |y − ref| ≤ Σ |w − ŵ|·|x̂| + |w|·d_x/2, plus fp32 rounding. Against Σ ŵ·x̂ itself
 *    (dequantised operands, double) every ISA agrees to fp32 rounding: integer block sums are exact.
 *  - activation quantisation: every ISA's quantiser gives the portable rule's codes and scales bit for bit.
 *  - GEMM vs dot products (prefill vs decode paths): both form the same integer block sums S_b, so they
 *    differ only in fp32 rounding of Σ_b d_w·d_x·S_b (the dot path's Q4_0 form subtracts 8·d_w·s_b
 *    besides): |Δ| ≤ (nb + 4)·2^-24·T with T the sum of those terms' magnitudes, nb blocks per row.
 *    With operands whose scales are powers of two and whose sums stay below 2^24 units, no fp32 operation
 *    rounds at all: then both paths must give the exact result bit for bit, so a single integer block sum
 *    off by one would show.
 *  - the decoder on the tiny fixtures (random weights, so no redundancy protects them as in a trained model):
 *    logits are compared with the unquantised model's, reporting max / mean |Δ| and top-1 agreement.
 * Run under each G3N_KERNEL by test-kernel-paths.tap.
 */
#include "test-util.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/threadpool.h"
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static guint16
to_bf16 (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return (guint16) ((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static void
test_f16 (void)
{
  const float exact[] = { 0, 1, -2, 0.5f, 65504, 6.103515625e-05f /* 2^-14 */, 5.960464477539063e-08f /* 2^-24 */,
                          -3.0517578125e-05f /* subnormal 2^-15 */ };
  gboolean ok = TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (exact); i++)
    ok &= g3n_f16_to_f32 (g3n_f32_to_f16 (exact[i])) == exact[i];
  /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1) */
  ok &= g3n_f32_to_f16 (1.0f + 0x1p-11f) == 0x3c00 && g3n_f32_to_f16 (1.0f + 0x1p-10f + 0x1p-11f) == 0x3c02;
  ok &= g3n_f32_to_f16 (70000.0f) == 0x7c00;
  /* every finite half survives the round trip */
  for (guint h = 0; h < 0x7c00; h++)
    ok &= g3n_f32_to_f16 (g3n_f16_to_f32 ((guint16) h)) == h
          && g3n_f32_to_f16 (-g3n_f16_to_f32 ((guint16) h)) == (h | 0x8000);
  check (ok, "fp16 scale conversion: exact values, ties to even, overflow, every finite half round-trips");
}

/* A random BF16 matrix (as the checkpoints store) and its fp32 values. Rows get different magnitudes, and
 * some blocks are all zero, so scales span a range. */
static guint16 *
random_bf16 (GRand *rand, int rows, int cols, float *wf)
{
  guint16 *w = g_new (guint16, (gsize) rows * cols);
  for (int r = 0; r < rows; r++) {
    float mag = (float) ldexp (1, g_rand_int_range (rand, -8, 3));
    for (int c = 0; c < cols; c++) {
      gsize i = (gsize) r * cols + c;
      float v = (float) g_rand_double_range (rand, -1, 1) * mag;
      if (r % 7 == 3 && c < 32)
        v = 0;
      w[i] = to_bf16 (v);
      g3n_to_f32 (G3N_DTYPE_BF16, &w[i], &wf[i], 1);
    }
  }
  return w;
}

/* Scale of weight i of row r. */
static float
scale_of (const G3nMatrix *q, int r, int i)
{
  return fabsf (g3n_f16_to_f32 (q->scales[(gsize) r * g3n_quant_blocks (q->cols) + i / G3N_QBLOCK]));
}

static float
weight_error_bound (const G3nMatrix *q, int r, int i, float w)
{
  float d = scale_of (q, r, i);
  float bound = q->quant == G3N_QUANT_Q8_0 ? d / 2 : fmaxf (d / 2, fabsf (w) - 7 * d);
  return bound * (1 + 1e-6f) + 1e-30f;
}

static void
test_round_trip (G3nQuantType type, int rows, int cols)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 13 + cols + type));
  float *wf = g_new (float, (gsize) rows * cols), *back = g_new (float, cols);
  guint16 *w = random_bf16 (rand, rows, cols, wf);
  G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, q;
  gpointer buf = g3n_matrix_quantize (&m, type, &q);
  double worst = 0, sum = 0; /* in units of the block scale */
  gboolean ok = TRUE;
  for (int r = 0; r < rows; r++) {
    g3n_matrix_row (&q, r, back);
    for (int c = 0; c < cols; c++) {
      float e = fabsf (back[c] - wf[(gsize) r * cols + c]);
      ok &= e <= weight_error_bound (&q, r, c, wf[(gsize) r * cols + c]);
      float d = scale_of (&q, r, c);
      if (d > 0) {
        worst = fmax (worst, e / d);
        sum += e / d;
      }
    }
  }
  gsize expect = (gsize) rows * g3n_quant_blocks (cols) * (type == G3N_QUANT_Q8_0 ? 34 : 18);
  check (ok && g3n_matrix_bytes (&q) == expect,
         "%s round trip %dx%d: every |w - w^| within its bound; max %.3f, mean %.3f block scales; %" G_GSIZE_FORMAT
         " bytes", g3n_quant_type_name (type), rows, cols, worst, sum / ((double) rows * cols), g3n_matrix_bytes (&q));
  g_free (buf), g_free (w), g_free (wf), g_free (back);
  g_rand_free (rand);
}

/* x̂: the activation as the kernels quantise it (per block of 32: scale max|x|/127, codes rounded). */
static void
quantise_activation (const float *x, int cols, float *xq, float *dx)
{
  for (int b = 0; b * G3N_QBLOCK < cols; b++) {
    int n = MIN (G3N_QBLOCK, cols - b * G3N_QBLOCK);
    float amax = 0;
    for (int i = 0; i < n; i++)
      amax = fmaxf (amax, fabsf (x[b * G3N_QBLOCK + i]));
    float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0;
    for (int i = 0; i < n; i++) {
      float v = x[b * G3N_QBLOCK + i];
      xq[b * G3N_QBLOCK + i] = d * (float) (int) (v * id + (v >= 0 ? 0.5f : -0.5f));
      dx[b * G3N_QBLOCK + i] = d;
    }
  }
}

static void
test_matmul (G3nQuantType type, int rows, int cols, int n)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 31 + cols * 7 + n + type));
  float *wf = g_new (float, (gsize) rows * cols), *wq = g_new (float, (gsize) rows * cols);
  float *x = g_new (float, (gsize) n * cols), *xq = g_new (float, cols), *dx = g_new (float, cols);
  float *y = g_new (float, (gsize) n * rows);
  guint16 *w = random_bf16 (rand, rows, cols, wf);
  for (gsize i = 0; i < (gsize) n * cols; i++)
    x[i] = (float) g_rand_double_range (rand, -2, 2);
  G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, q;
  gpointer buf = g3n_matrix_quantize (&m, type, &q);
  for (int r = 0; r < rows; r++)
    g3n_matrix_row (&q, r, wq + (gsize) r * cols);
  g3n_matmul (&q, x, n, y);
  double worst_exact = 0, worst_ref = 0; /* as fractions of the allowed bounds */
  for (int t = 0; t < n; t++) {
    quantise_activation (x + (gsize) t * cols, cols, xq, dx);
    for (int r = 0; r < rows; r++) {
      const float *wr = wf + (gsize) r * cols, *qr = wq + (gsize) r * cols, *xt = x + (gsize) t * cols;
      double ref = 0, exact = 0, mag = 0, bound = 0;
      for (int c = 0; c < cols; c++) {
        ref += (double) wr[c] * xt[c];
        exact += (double) qr[c] * xq[c];
        mag += fabs ((double) qr[c] * xq[c]);
        bound += weight_error_bound (&q, r, c, wr[c]) * fabs (xq[c]) + fabs (wr[c]) * dx[c] / 2;
      }
      double got = y[(gsize) t * rows + r], fp = 1e-5 * mag + 1e-30;
      worst_exact = fmax (worst_exact, fabs (got - exact) / fp);
      worst_ref = fmax (worst_ref, fabs (got - ref) / (bound + fp));
    }
  }
  check (worst_exact <= 1 && worst_ref <= 1,
         "%s matmul %dx%d n=%d (%s): |y - w^.x^| at %.2g of fp32 slack, |y - w.x| at %.2g of the scale bound",
         g3n_quant_type_name (type), rows, cols, n, g3n_kernels_isa (), worst_exact, worst_ref);
  g_free (buf), g_free (w), g_free (wf), g_free (wq), g_free (x), g_free (xq), g_free (dx), g_free (y);
  g_rand_free (rand);
}

/* One token: g3n_matmul may take rows two at a time (G3nQDot2Fn), which must give each row exactly what
 * the one-row kernel gives (g3n_matmul_rows computes the selected rows one by one): bit for bit, on odd
 * row counts (a row left over) and widths off the four-block groups, on 1 and 2 threads (other splits). */
static void
test_row_pairs (G3nQuantType type, int rows, int cols)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 13 + cols + type));
  float *wf = g_new (float, (gsize) rows * cols), *x = g_new (float, cols);
  float *y = g_new (float, rows), *y1 = g_new (float, rows), *single = g_new (float, rows);
  int *all = g_new (int, rows);
  guint16 *w = random_bf16 (rand, rows, cols, wf);
  for (int c = 0; c < cols; c++)
    x[c] = (float) g_rand_double_range (rand, -2, 2);
  for (int r = 0; r < rows; r++)
    all[r] = r;
  G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, q;
  gpointer buf = g3n_matrix_quantize (&m, type, &q);
  g3n_matmul_rows (&q, x, all, rows, single);
  g3n_matmul (&q, x, 1, y);
  g3n_kernels_push_threads (1);
  g3n_matmul (&q, x, 1, y1);
  g3n_kernels_push_threads (0);
  check (memcmp (y, single, sizeof (float) * rows) == 0 && memcmp (y1, single, sizeof (float) * rows) == 0,
         "%s decode product %dx%d (%s%s): every row bit for bit as the one-row kernel's, on 1 and %d threads",
         g3n_quant_type_name (type), rows, cols, g3n_kernels_isa (),
         g3n_qdot2_kernel (type) ? ", rows in pairs" : "", g3n_kernels_threads ());
  g_free (buf), g_free (w), g_free (wf), g_free (x), g_free (y), g_free (y1), g_free (single), g_free (all);
  g_rand_free (rand);
}

/* Stored by input (sparse down_proj): activations stay fp32, so |y − ref| ≤ Σ |w − ŵ|·|x| + fp32 rounding;
 * most inputs are zero, as after Gemma 3n's Gaussian top-k. */
static void
test_matmul_by_input (G3nQuantType type, int rows, int cols, int n)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 17 + cols * 3 + n + type));
  float *wf = g_new (float, (gsize) rows * cols), *wq = g_new (float, (gsize) rows * cols);
  float *x = g_new (float, (gsize) n * cols), *y = g_new (float, (gsize) n * rows);
  guint16 *w = random_bf16 (rand, rows, cols, wf);
  for (gsize i = 0; i < (gsize) n * cols; i++)
    x[i] = g_rand_double (rand) < 0.95 ? 0 : (float) g_rand_double_range (rand, 0, 3);
  G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, q;
  gpointer buf = g3n_matrix_quantize_by_input (&m, type, &q);
  for (int r = 0; r < rows; r++)
    g3n_matrix_row (&q, r, wq + (gsize) r * cols);
  g3n_matmul (&q, x, n, y);
  double worst_exact = 0, worst_ref = 0;
  for (int t = 0; t < n; t++)
    for (int r = 0; r < rows; r++) {
      const float *wr = wf + (gsize) r * cols, *qr = wq + (gsize) r * cols, *xt = x + (gsize) t * cols;
      double ref = 0, exact = 0, mag = 0, bound = 0;
      for (int c = 0; c < cols; c++) {
        ref += (double) wr[c] * xt[c];
        exact += (double) qr[c] * xt[c];
        mag += fabs ((double) qr[c] * xt[c]);
        /* blocks run along the output dimension here: the scale of weight (r, c) is block r/32 of row c */
        float d = fabsf (g3n_f16_to_f32 (q.scales[(gsize) c * g3n_quant_blocks (rows) + r / G3N_QBLOCK]));
        float e = type == G3N_QUANT_Q8_0 ? d / 2 : fmaxf (d / 2, fabsf (wr[c]) - 7 * d);
        bound += e * (1 + 1e-6) * fabs (xt[c]);
      }
      double got = y[(gsize) t * rows + r], fp = 1e-5 * mag + 1e-30;
      worst_exact = fmax (worst_exact, fabs (got - exact) / fp);
      worst_ref = fmax (worst_ref, fabs (got - ref) / (bound + fp));
    }
  check (worst_exact <= 1 && worst_ref <= 1,
         "%s by-input matmul %dx%d n=%d, 95%% zero inputs: |y - w^.x| at %.2g of fp32 slack, |y - w.x| at %.2g "
         "of the scale bound", g3n_quant_type_name (type), rows, cols, n, worst_exact, worst_ref);
  g_free (buf), g_free (w), g_free (wf), g_free (wq), g_free (x), g_free (y);
  g_rand_free (rand);
}


/* The quantisation rule of G3nQ8Rows, written out once more: per block d = max|x| / 127 and codes rounded
 * half away from zero. Values include exact ties, −0, zero blocks and a partial last block. */
static void
test_q8_rows (int n, int cols)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (n * 7 + cols));
  float *x = g_new (float, (gsize) n * cols);
  for (gsize i = 0; i < (gsize) n * cols; i++) {
    int kind = g_rand_int_range (rand, 0, 8);
    /* ties: with max |x| = 127 in the block, x = k + 0.5 scales by exactly 1 */
    x[i] = kind == 0 ? g_rand_int_range (rand, -126, 126) + 0.5f : kind == 1 ? -0.0f
                                                               : (float) g_rand_double_range (rand, -3, 3);
  }
  for (int t = 0; t < n; t++) {
    if (t % 3 == 0 && cols >= 32)
      x[(gsize) t * cols + 5] = 127; /* makes the first block's ties exact */
    if (t % 5 == 4)
      memset (x + (gsize) t * cols, 0, sizeof (float) * MIN (cols, 32)); /* an all-zero block */
  }
  G3nQ8Rows a;
  g3n_q8_rows_init (&a, x, n, cols);
  gboolean ok = a.nb == g3n_quant_blocks (cols);
  for (int t = 0; t < n && ok; t++)
    for (int b = 0; b < a.nb; b++) {
      const float *v = x + (gsize) t * cols + b * G3N_QBLOCK;
      int m = MIN (G3N_QBLOCK, cols - b * G3N_QBLOCK), sum = 0;
      float amax = 0;
      for (int i = 0; i < m; i++)
        amax = fmaxf (amax, fabsf (v[i]));
      float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0;
      for (int i = 0; i < G3N_QBLOCK; i++) {
        float p = i < m ? v[i] * id : 0; /* stored first: no FMA contraction */
        volatile float pv = p;
        int c = i < m ? CLAMP ((int) (pv + (v[i] >= 0 ? 0.5f : -0.5f)), -127, 127) : 0;
        ok &= a.q[((gsize) t * a.nb + b) * G3N_QBLOCK + i] == c;
        sum += c;
      }
      ok &= a.d[(gsize) t * a.nb + b] == d && a.s[(gsize) t * a.nb + b] == d * (float) sum;
    }
  check (ok, "activation quantiser (%s) %d x %d: codes and scales bit for bit as the rule", g3n_qdot_isa (), n, cols);
  g3n_q8_rows_clear (&a);
  g_free (x);
  g_rand_free (rand);
}

/* The GEMM (quant-gemm.c) against the per-token dot products on the same quantised operands. */
static void
test_gemm_vs_dots (G3nQuantType type, int rows, int cols, int n)
{
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 5 + cols * 11 + n + type));
  float *wf = g_new (float, (gsize) rows * cols), *x = g_new (float, (gsize) n * cols);
  float *y = g_new (float, (gsize) n * rows), *y_dots = g_new (float, (gsize) n * rows);
  guint16 *w = random_bf16 (rand, rows, cols, wf);
  for (gsize i = 0; i < (gsize) n * cols; i++) /* tokens of different magnitudes, as hidden states */
    x[i] = (float) g_rand_double_range (rand, -2, 2) * (float) ldexp (1, (int) (i / cols % 5) - 2);
  G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, q;
  gpointer buf = g3n_matrix_quantize (&m, type, &q);
  g3n_quant_gemm (&q, x, n, y);
  g3n_matmul_quant_dots (&q, x, n, y_dots);

  G3nQ8Rows a;
  g3n_q8_rows_init (&a, x, n, cols);
  const int nb = a.nb;
  gint8 *codes = g_new (gint8, (gsize) nb * G3N_QBLOCK); /* one weight row's codes, offset removed */
  double worst = 0, allowed = (nb + 4) * 0x1p-24;
  for (int r = 0; r < rows; r++) {
    for (int k = 0; k < nb * G3N_QBLOCK; k++) {
      float d = g3n_f16_to_f32 (q.scales[(gsize) r * nb + k / G3N_QBLOCK]);
      float wk = k < cols ? g3n_quant_weight (type, (const guint8 *) q.data + r * g3n_quant_row_bytes (type, cols),
                                              q.scales + (gsize) r * nb, k) : 0;
      codes[k] = (gint8) (d != 0 ? lrintf (wk / d) : 0); /* ŵ / d_w is the exact integer code */
    }
    for (int t = 0; t < n; t++) {
      double terms = 0;
      for (int b = 0; b < nb; b++) {
        const gint8 *xq = a.q + ((gsize) t * nb + b) * G3N_QBLOCK, *wq = codes + b * G3N_QBLOCK;
        double sabs = 0, extra = 0;
        for (int i = 0; i < G3N_QBLOCK; i++) {
          sabs += abs (wq[i] * xq[i]);
          extra += (wq[i] + 8) * abs (xq[i]) + 8 * abs (xq[i]); /* Q4_0 dots: Σ code·x and 8·Σx apart */
        }
        double scale = fabs ((double) g3n_f16_to_f32 (q.scales[(gsize) r * nb + b]) * a.d[(gsize) t * nb + b]);
        terms += scale * (sabs + (type == G3N_QUANT_Q4_0 ? extra : 0));
      }
      double diff = fabs ((double) y[(gsize) t * rows + r] - y_dots[(gsize) t * rows + r]);
      worst = fmax (worst, isnan (diff) ? INFINITY : diff / (terms + 1e-30));
    }
  }
  check (worst <= allowed, "%s GEMM vs dot products %dx%d n=%d (%s, %d threads): max |dy| / sum|terms| %.2g (<= %.2g)",
         g3n_quant_type_name (type), rows, cols, n, g3n_qdot_isa (), g3n_kernels_threads (), worst, allowed);
  g3n_q8_rows_clear (&a);
  g_free (codes), g_free (buf), g_free (w), g_free (wf), g_free (x), g_free (y), g_free (y_dots);
  g_rand_free (rand);
}


/* Weights code·2^e and activations q·2^f with one full-scale value per block (scales exactly 2^e, 2^f),
 * e, f ∈ {0, 1}: every product and partial sum is an integer below 2^24 (≤ 64 blocks of ≤ 27940·4), so
 * every path must return the exact Σ w·x. */
static void
test_gemm_exact (G3nQuantType type, int rows, int cols, int n)
{
  g_assert (g3n_quant_blocks (cols) <= 64);
  GRand *rand = g_rand_new_with_seed ((guint32) (rows * 3 + cols + n * 13 + type));
  float *wf = g_new (float, (gsize) rows * cols), *x = g_new (float, (gsize) n * cols);
  float *y = g_new (float, (gsize) n * rows), *y_dots = g_new (float, (gsize) n * rows);
  guint16 *w = g_new (guint16, (gsize) rows * cols);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      int e = (r + c / G3N_QBLOCK) % 2, code;
      if (c % G3N_QBLOCK == 0) /* the block's extreme: sets its scale to 2^e */
        code = type == G3N_QUANT_Q8_0 ? (r % 2 ? 127 : -127) : -8;
      else
        code = type == G3N_QUANT_Q8_0 ? g_rand_int_range (rand, -127, 128) : g_rand_int_range (rand, -7, 8);
      gsize i = (gsize) r * cols + c;
      w[i] = to_bf16 ((float) ldexp (code, e));
      g3n_to_f32 (G3N_DTYPE_BF16, &w[i], &wf[i], 1);
    }
  for (int t = 0; t < n; t++)
    for (int c = 0; c < cols; c++) {
      int f = (t + c / G3N_QBLOCK + 1) % 2, m = MIN (G3N_QBLOCK, cols - c / G3N_QBLOCK * G3N_QBLOCK);
      int q = c % G3N_QBLOCK == t % m ? (t % 3 ? 127 : -127) : g_rand_int_range (rand, -3, 4);
      x[(gsize) t * cols + c] = (float) ldexp (q, f);
    }
  G3nMatrix m = { .data = w, .dtype = G3N_DTYPE_BF16, .rows = rows, .cols = cols }, qm;
  gpointer buf = g3n_matrix_quantize (&m, type, &qm);
  g3n_quant_gemm (&qm, x, n, y);
  g3n_matmul_quant_dots (&qm, x, n, y_dots);
  int wrong = 0;
  for (int t = 0; t < n; t++)
    for (int r = 0; r < rows; r++) {
      double exact = 0;
      for (int c = 0; c < cols; c++)
        exact += (double) wf[(gsize) r * cols + c] * x[(gsize) t * cols + c];
      wrong += y[(gsize) t * rows + r] != exact || y_dots[(gsize) t * rows + r] != exact;
    }
  check (wrong == 0, "%s GEMM and dot products %dx%d n=%d on exact operands (%s, %d threads): %d of %d outputs "
         "differ from the exact sum", g3n_quant_type_name (type), rows, cols, n, g3n_qdot_isa (),
         g3n_kernels_threads (), wrong, rows * n);
  g_free (buf), g_free (w), g_free (wf), g_free (x), g_free (y), g_free (y_dots);
  g_rand_free (rand);
}

/* ------------------------------------------------------------------------------ the decoder */

/* The tiny fixtures have random weights and no redundancy: they amplify any weight change enormously.
 * Measured: multiplying every quantisable weight by an independent (1 ± 0.4%) factor, well under Q8_0's
 * error, already moves the logits by 12% (mm-tiny) / 23% (text-matformer) of their range and flips 4-6 of
 * ~45 argmaxes; Q8_0 weights alone (activations kept fp32) move them 23% / 28%. So these bounds only
 * guard against gross breakage (a wrong matrix, layout or scale gives logits unrelated to the reference:
 * top-1 agreement near 1/vocab). The exactness of the products is tested above; quality on real weights is
 * measured by tools/gemma3n-bench. Q4_0 (16 levels) leaves the random fixtures' logits only loosely
 * related, still far above chance. Batching changes only fp32 summation order, but an activation near a
 * rounding boundary of its int8 block then lands on the other code, and the fixtures amplify that too. */
static void
test_decoder (const char *dir, G3nQuantType type, double max_rel, double min_top1, double max_batch_rel)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *golden_path = g_build_filename (dir, "golden.safetensors", NULL);
  G3nModel *ref = g3n_model_load (dir, &error);
  G3nModel *m = ref ? g3n_model_load (dir, &error) : NULL;
  G3nSafetensors *g = m ? g3n_safetensors_open (golden_path, &error) : NULL;
  if (!g) {
    check (FALSE, "load %s: %s", dir, error ? error->message : "?");
    return;
  }
  const G3nTensor *idt = g3n_safetensors_find (g, "text_input_ids");
  int T = (int) g3n_tensor_numel (idt), V = g3n_model_n_vocab (m);
  g_autofree int32_t *ids = g_new (int32_t, T);
  for (int i = 0; i < T; i++)
    ids[i] = (int32_t) ((const gint64 *) idt->data)[i];

  gsize before = g3n_model_text_weight_bytes (m);
  check (g3n_model_quantize (m, type, &error) && g3n_model_quant_type (m) == type, "quantise %s to %s", dir,
         g3n_quant_type_name (type));
  gsize after = g3n_model_text_weight_bytes (m);
  g_autofree float *want = logits_chunked (ref, ids, T, T), *got = logits_chunked (m, ids, T, T);
  LogitDiff q = logit_diff (got, want, T, V);
  double max_ref = q.max_ref, rel = q.max_diff / max_ref, top1 = (double) q.agree / T;
  check (rel <= max_rel && top1 >= min_top1,
         "%s %s vs unquantised: max |dlogit| %.4f (rel %.3g <= %.3g), mean %.5f, top-1 agreement %d/%d (>= %.0f%%); "
         "text weights %" G_GSIZE_FORMAT " -> %" G_GSIZE_FORMAT " bytes",
         dir, g3n_quant_type_name (type), q.max_diff, rel, max_rel, q.mean_diff, q.agree, T,
         min_top1 * 100, before, after);
  check (after < before * (type == G3N_QUANT_Q8_0 ? 0.75 : 0.5), "%s: quantised weights take less memory",
         g3n_quant_type_name (type));

  /* Activations are quantised per token, so batching changes only fp32 summation order. */
  g_autofree float *one = logits_chunked (m, ids, T, 1);
  double d = 0;
  for (gsize i = 0; i < (gsize) T * V; i++)
    d = fmax (d, fabs (one[i] - got[i]));
  check (d / max_ref <= max_batch_rel, "%s token by token vs whole prompt: rel %.3g <= %.3g",
         g3n_quant_type_name (type), d / max_ref, max_batch_rel);

  check (g3n_model_quantize (m, type, NULL), "quantising again to the same type is a no-op");
  G3nQuantType other = type == G3N_QUANT_Q8_0 ? G3N_QUANT_Q4_0 : G3N_QUANT_Q8_0;
  g_clear_error (&error);
  check (!g3n_model_quantize (m, other, &error) && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT),
         "re-quantising to another type is refused: %s", error ? error->message : "(accepted)");
  g3n_safetensors_free (g);
  g3n_model_unref (m);
  g3n_model_unref (ref);
}

static void
test_names (void)
{
  G3nQuantType t = G3N_QUANT_NONE;
  g_autoptr (GError) error = NULL;
  gboolean ok = g3n_quant_type_from_string ("Q8_0", &t, NULL) && t == G3N_QUANT_Q8_0;
  ok &= g3n_quant_type_from_string ("q4", &t, NULL) && t == G3N_QUANT_Q4_0;
  ok &= g3n_quant_type_from_string ("bf16", &t, NULL) && t == G3N_QUANT_NONE;
  ok &= !g3n_quant_type_from_string ("q5_k", &t, &error)
        && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT);
  ok &= g_str_equal (g3n_quant_type_name (G3N_QUANT_Q4_0), "q4_0");
  check (ok, "quant type names parse and print");
}

int
main (void)
{
  test_f16 ();
  test_names ();
  const G3nQuantType types[] = { G3N_QUANT_Q8_0, G3N_QUANT_Q4_0 };
  /* widths: one block, a partial last block (80 = the matformer fixture's hidden size), odd and even block
   * counts around the 16-block groups of the AVX-512 kernels; n: decode, a few tokens (threads split
   * tokens), a prefill (threads split rows) */
  const int shapes[][3] = { { 1, 32, 1 }, { 7, 80, 1 }, { 33, 1000, 1 }, { 300, 544, 1 }, { 64, 96, 5 },
                            { 17, 80, 9 }, { 513, 256, 17 }, { 40, 2048, 3 } };
  const int q8_shapes[][2] = { { 1, 32 }, { 3, 80 }, { 9, 2048 }, { 5, 1 }, { 2, 47 } };
  for (guint s = 0; s < G_N_ELEMENTS (q8_shapes); s++)
    test_q8_rows (q8_shapes[s][0], q8_shapes[s][1]);
  /* GEMM tiles: rows off the 32/16/4-row tiles, partial last blocks, K blocks of 16 (544: 16 + 1 blocks),
   * tokens off the 6/3/4-token tiles, threads splitting tokens (few rows) and several token chunks (300) */
  const int gemm_shapes[][3] = { { 1, 32, 8 }, { 33, 80, 8 }, { 100, 1000, 9 }, { 47, 96, 17 }, { 257, 544, 64 },
                                 { 70, 2048, 100 }, { 129, 200, 300 }, { 40, 2048, 300 }, { 31, 33, 13 },
                                 { 300, 4096, 20 } };
  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    for (guint s = 0; s < G_N_ELEMENTS (gemm_shapes); s++) {
      test_gemm_vs_dots (types[t], gemm_shapes[s][0], gemm_shapes[s][1], gemm_shapes[s][2]);
      if (g3n_quant_blocks (gemm_shapes[s][1]) <= 64)
        test_gemm_exact (types[t], gemm_shapes[s][0], gemm_shapes[s][1], gemm_shapes[s][2]);
    }
  for (guint t = 0; t < G_N_ELEMENTS (types); t++) {
    test_round_trip (types[t], 50, 80);
    test_round_trip (types[t], 20, 2048);
    for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
      test_matmul (types[t], shapes[s][0], shapes[s][1], shapes[s][2]);
    /* pairs: none (1 row), a leftover row (odd), blocks left after the groups of four (80, 1000 wide) */
    test_row_pairs (types[t], 1, 256);
    test_row_pairs (types[t], 67, 80);
    test_row_pairs (types[t], 300, 1000);
    test_row_pairs (types[t], 257, 2048);
    /* outputs: partial last block (80), many blocks split across threads (2048) */
    test_matmul_by_input (types[t], 80, 256, 1);
    test_matmul_by_input (types[t], 2048, 512, 1);
    test_matmul_by_input (types[t], 64, 480, 7);
  }
  const char *data = g_getenv ("G3N_TEST_DATA");
  if (data) {
    g_autofree char *mm = g_build_filename (data, "mm-tiny", NULL);
    g_autofree char *mf = g_build_filename (data, "text-matformer", NULL);
    test_decoder (mm, G3N_QUANT_Q8_0, 0.5, 0.6, 0.15);
    test_decoder (mm, G3N_QUANT_Q4_0, 2.0, 0.05, 0.3);
    test_decoder (mf, G3N_QUANT_Q8_0, 0.5, 0.6, 0.15);
    test_decoder (mf, G3N_QUANT_Q4_0, 2.0, 0.05, 0.3);
  }
  return test_summary ();
}
