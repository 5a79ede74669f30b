/* quant.c — block-quantised weight matrices (Q8_0, Q4_0): making them, reading them back, multiplying.
 *
 * A row is cut into blocks of G3N_QBLOCK weights sharing one fp16 scale. Q8_0 stores q = round(w / d) with
 * d = max|w| / 127; Q4_0 stores 4-bit q = round(w / d) + 8 with d = −(the weight of largest magnitude) / 8,
 * so that weight lands exactly on code 0 and the other side keeps 7.5 steps. Codes are kept apart from the
 * scales so a SIMD load covers whole blocks. Q4_0 packs block element i in the low nibble of byte i and
 * element i + 16 in its high nibble: one mask and one shift unpack a block in natural order.
 *
 * Products quantise the activation rows to int8 blocks too and sum integer products per block, so the
 * kernels compute exactly the same block sums on every ISA and path: dot products per token (quant-dot.c)
 * for decode and few tokens, a blocked GEMM (quant-gemm.c) for prefill; only the fp32 sum of the scaled
 * block results differs in order. The formats follow the widely used GGML block layouts in size, not in code.
 */
#include "quant.h"
#include "threadpool.h"

#include <math.h>
#include <string.h>

/* -------------------------------------------------------------------------------- layout */

int
g3n_quant_blocks (int cols)
{
  return (cols + G3N_QBLOCK - 1) / G3N_QBLOCK;
}

gsize
g3n_quant_row_bytes (G3nQuantType type, int cols)
{
  gsize nb = (gsize) g3n_quant_blocks (cols);
  switch (type) {
  case G3N_QUANT_Q8_0:
    return nb * G3N_QBLOCK;
  case G3N_QUANT_Q4_0:
    return nb * G3N_QBLOCK / 2;
  default:
    return 0;
  }
}

gsize
g3n_matrix_bytes (const G3nMatrix *m)
{
  if (m->quant == G3N_QUANT_NONE)
    return (gsize) m->rows * m->cols * g3n_dtype_size (m->dtype);
  int stored = m->by_input ? m->cols : m->rows, width = m->by_input ? m->rows : m->cols;
  return (gsize) stored * (g3n_quant_row_bytes (m->quant, width) + g3n_quant_blocks (width) * sizeof (guint16));
}

/* ---------------------------------------------------------------------------- quantising */

/* Round to nearest even for |v| < 2^22 (codes are tiny): adding 1.5·2^23 leaves no fraction bits. Unlike
 * lrintf this vectorises, which matters when a checkpoint's billions of weights are converted at load. */
static inline float
round_even (float v)
{
  return (v + 12582912.0f) - 12582912.0f;
}

static void
quantize_block_q8 (const float *x, int n, gint8 *q, guint16 *scale)
{
  float amax = 0;
  for (int i = 0; i < n; i++)
    amax = fmaxf (amax, fabsf (x[i]));
  guint16 h = g3n_f32_to_f16 (amax / 127.0f);
  float d = g3n_f16_to_f32 (h);
  /* Codes from the stored (rounded) scale keep every error within d/2; clamping costs at most 0.06·d on
   * the largest weight when rounding made d smaller. */
  float id = d > 0 ? 1.0f / d : 0;
  for (int i = 0; i < G3N_QBLOCK; i++)
    q[i] = (gint8) (i < n ? CLAMP ((int) round_even (x[i] * id), -127, 127) : 0);
  *scale = h;
}

static void
quantize_block_q4 (const float *x, int n, guint8 *q, guint16 *scale)
{
  float amax = 0, extreme = 0;
  for (int i = 0; i < n; i++)
    if (fabsf (x[i]) > amax) {
      amax = fabsf (x[i]);
      extreme = x[i];
    }
  guint16 h = g3n_f32_to_f16 (extreme / -8.0f);
  float d = g3n_f16_to_f32 (h);
  float id = d != 0 ? 1.0f / d : 0;
  guint8 code[G3N_QBLOCK];
  for (int i = 0; i < G3N_QBLOCK; i++)
    code[i] = (guint8) (i < n ? CLAMP ((int) round_even (x[i] * id) + 8, 0, 15) : 8); /* padding: 0 */
  for (int i = 0; i < G3N_QBLOCK / 2; i++)
    q[i] = (guint8) (code[i] | code[i + G3N_QBLOCK / 2] << 4);
  *scale = h;
}

typedef struct {
  const G3nMatrix *src;
  G3nMatrix *dst;
} QuantizeJob;

/* One stored row of width n (fp32) into codes and scales of `type`. */
static void
quantize_row (G3nQuantType type, const float *row, int n, guint8 *q, guint16 *scales)
{
  for (int b = 0; b < g3n_quant_blocks (n); b++) {
    int m = MIN (G3N_QBLOCK, n - b * G3N_QBLOCK);
    if (type == G3N_QUANT_Q8_0)
      quantize_block_q8 (row + b * G3N_QBLOCK, m, (gint8 *) q + b * G3N_QBLOCK, &scales[b]);
    else
      quantize_block_q4 (row + b * G3N_QBLOCK, m, q + b * G3N_QBLOCK / 2, &scales[b]);
  }
}

static void
quantize_rows (int begin, int end, gpointer data)
{
  QuantizeJob *j = data;
  const G3nMatrix *s = j->src;
  G3nMatrix *d = j->dst;
  gsize row_bytes = g3n_quant_row_bytes (d->quant, s->cols);
  float *row = g_new (float, s->cols);
  for (int r = begin; r < end; r++) {
    g3n_matrix_row (s, r, row);
    quantize_row (d->quant, row, s->cols, (guint8 *) d->data + (gsize) r * row_bytes,
                  (guint16 *) d->scales + (gsize) r * g3n_quant_blocks (s->cols));
  }
  g_free (row);
}

/* Input features transposed a tile at a time, so the source is read along its rows. */
#define TILE 64

static void
quantize_columns (int begin, int end, gpointer data)
{
  QuantizeJob *j = data;
  const G3nMatrix *s = j->src;
  G3nMatrix *d = j->dst;
  gsize row_bytes = g3n_quant_row_bytes (d->quant, s->rows), esize = g3n_dtype_size (s->dtype);
  float *tile = g_new (float, (gsize) TILE * s->rows), *piece = g_new (float, TILE);
  for (int c0 = begin * TILE; c0 < MIN (end * TILE, s->cols); c0 += TILE) {
    int w = MIN (TILE, s->cols - c0);
    for (int r = 0; r < s->rows; r++) {
      g3n_to_f32 (s->dtype, (const guint8 *) s->data + ((gsize) r * s->cols + c0) * esize, piece, w);
      for (int c = 0; c < w; c++)
        tile[(gsize) c * s->rows + r] = piece[c];
    }
    for (int c = 0; c < w; c++)
      quantize_row (d->quant, tile + (gsize) c * s->rows, s->rows, (guint8 *) d->data + (gsize) (c0 + c) * row_bytes,
                    (guint16 *) d->scales + (gsize) (c0 + c) * g3n_quant_blocks (s->rows));
  }
  g_free (tile), g_free (piece);
}

static gpointer
quantize (const G3nMatrix *m, G3nQuantType type, gboolean by_input, G3nMatrix *out)
{
  g_return_val_if_fail (m->quant == G3N_QUANT_NONE && type != G3N_QUANT_NONE, NULL);
  g_return_val_if_fail (!m->by_input || by_input, NULL);
  if (m->by_input) { /* already laid out by input: quantise its stored rows as they are */
    G3nMatrix stored = *m;
    stored.rows = m->cols, stored.cols = m->rows, stored.by_input = FALSE;
    gpointer buf = quantize (&stored, type, FALSE, out);
    out->rows = m->rows, out->cols = m->cols, out->by_input = TRUE;
    return buf;
  }
  int stored = by_input ? m->cols : m->rows, width = by_input ? m->rows : m->cols;
  gsize codes = (gsize) stored * g3n_quant_row_bytes (type, width);
  guint8 *buf = g3n_weights_alloc (codes + (gsize) stored * g3n_quant_blocks (width) * sizeof (guint16) + 64);
  *out = (G3nMatrix) { .data = buf, .dtype = m->dtype, .rows = m->rows, .cols = m->cols, .quant = type,
                       .scales = (const guint16 *) (buf + codes), .by_input = by_input };
  QuantizeJob j = { m, out };
  if (by_input)
    g3n_parallel_for ((m->cols + TILE - 1) / TILE, 1, quantize_columns, &j);
  else
    g3n_parallel_for (m->rows, 64, quantize_rows, &j);
  return buf;
}

gpointer
g3n_matrix_quantize (const G3nMatrix *m, G3nQuantType type, G3nMatrix *out)
{
  return quantize (m, type, FALSE, out);
}

gpointer
g3n_matrix_quantize_by_input (const G3nMatrix *m, G3nQuantType type, G3nMatrix *out)
{
  return quantize (m, type, TRUE, out);
}

/* Row r of a quantised matrix, dequantised to fp32 (embedding lookups, tests). */
void
g3n_quant_dequantize_row (const G3nMatrix *m, int r, float *dst)
{
  if (m->by_input) { /* element i of logical row r is weight r of stored row i */
    gsize row_bytes = g3n_quant_row_bytes (m->quant, m->rows);
    int nb = g3n_quant_blocks (m->rows);
    for (int i = 0; i < m->cols; i++)
      dst[i] = g3n_quant_weight (m->quant, (const guint8 *) m->data + i * row_bytes, m->scales + (gsize) i * nb, r);
    return;
  }
  const guint8 *q = (const guint8 *) m->data + (gsize) r * g3n_quant_row_bytes (m->quant, m->cols);
  const guint16 *scales = m->scales + (gsize) r * g3n_quant_blocks (m->cols);
  for (int i = 0; i < m->cols; i++)
    dst[i] = g3n_quant_weight (m->quant, q, scales, i);
}

/* ------------------------------------------------------------------------------ activations */

void
g3n_q8_rows_init (G3nQ8Rows *a, const float *x, int n, int cols)
{
  int nb = g3n_quant_blocks (cols);
  G3nQ8RowFn row = g3n_q8_row_kernel ();
  a->nb = nb;
  a->q = g_malloc ((gsize) n * nb * G3N_QBLOCK + 64);
  a->d = g_new (float, (gsize) n * nb);
  a->s = g_new (float, (gsize) n * nb);
  for (int t = 0; t < n; t++) {
    gsize at = (gsize) t * nb;
    row (x + (gsize) t * cols, cols, a->q + at * G3N_QBLOCK, a->d + at, a->s + at, NULL);
  }
}

void
g3n_q8_rows_clear (G3nQ8Rows *a)
{
  g_free (a->q);
  g_free (a->d);
  g_free (a->s);
}

/* --------------------------------------------------------------------------------- products */

/* Weight rows per work item when several tokens share a pass: the block (16 rows, ~32 KiB of Q8 codes for
 * a 2048-wide matrix) stays in L2 while every token's activation row streams past it. */
#define QROWS 16

typedef struct {
  const G3nMatrix *m;
  const G3nQ8Rows *a;
  G3nQDotFn dot;
  gsize row_bytes;
  int n;
  float *y;
  G3nQDot2Fn dot2; /* two rows at once where the kernels have it (same results), or NULL */
} QJob;

/* weight row r · activation row t */
static inline float
qdot (const QJob *j, int r, int t)
{
  const G3nMatrix *m = j->m;
  int nb = j->a->nb;
  gsize at = (gsize) t * nb;
  return j->dot ((const guint8 *) m->data + r * j->row_bytes, m->scales + (gsize) r * nb, j->a->q + at * G3N_QBLOCK,
                 j->a->d + at, j->a->s + at, nb);
}

/* y[t, r] = weight row r · activation row t */
static inline void
qdot_one (const QJob *j, int r, int t)
{
  j->y[(gsize) t * j->m->rows + r] = qdot (j, r, t);
}

/* One token over rows [r0, r1) with the two-row kernel: row r0 + i beside row r0 + h + i, h = half the
 * range, so that each row of a pair is read as one long stream (the rows of a matrix lie end to end; two
 * rows read side by side, or short runs of them, are streams the hardware prefetchers do not follow: from
 * memory that ran at ~60% of the one-row speed). */
static void
q_row_pairs (const QJob *j, int r0, int r1)
{
  const G3nMatrix *m = j->m;
  int nb = j->a->nb, h = (r1 - r0) / 2;
  const guint8 *w = m->data;
  for (int i = r0; i < r0 + h; i++)
    j->dot2 (w + i * j->row_bytes, w + (i + h) * j->row_bytes, m->scales + (gsize) i * nb,
             m->scales + (gsize) (i + h) * nb, j->a->q, j->a->d, j->a->s, nb, j->y + i, j->y + i + h);
  for (int r = r0 + 2 * h; r < r1; r++)
    qdot_one (j, r, 0);
}

static void
q_row_blocks (int begin, int end, gpointer data)
{
  QJob *j = data;
  if (j->dot2 && j->n == 1) {
    q_row_pairs (j, begin * QROWS, MIN (j->m->rows, end * QROWS));
    return;
  }
  for (int b = begin; b < end; b++) {
    int r0 = b * QROWS, r1 = MIN (j->m->rows, r0 + QROWS);
    for (int t = 0; t < j->n; t++)
      for (int r = r0; r < r1; r++)
        qdot_one (j, r, t);
  }
}

/* Few weight rows, several tokens: threads take tokens instead, or most would sit idle. */
static void
q_tokens (int begin, int end, gpointer data)
{
  QJob *j = data;
  for (int r0 = 0; r0 < j->m->rows; r0 += QROWS)
    for (int t = begin; t < end; t++)
      for (int r = r0; r < MIN (j->m->rows, r0 + QROWS); r++)
        qdot_one (j, r, t);
}

/* ---------------------------------------------------------- by input: skipping zero inputs */

typedef struct {
  const G3nMatrix *m;
  const float *x;
  int n;
  float *y;
  G3nQAxpyFn axpy;
} SparseJob;

/* Per-thread list of a token's non-zero inputs (g3n_thread_scratch). */
static GPrivate nz_key = G_PRIVATE_INIT (free), nz_size_key;

/* Output blocks [begin, end) of every token: y = Σ over non-zero x_i of x_i · (stored row i). */
static void
sparse_blocks (int begin, int end, gpointer data)
{
  SparseJob *j = data;
  const G3nMatrix *m = j->m;
  gsize row_bytes = g3n_quant_row_bytes (m->quant, m->rows);
  int nb = g3n_quant_blocks (m->rows), full = m->rows / G3N_QBLOCK; /* blocks wholly inside y */
  int lo = begin * G3N_QBLOCK, hi = MIN (end * G3N_QBLOCK, m->rows);
  gsize code_bytes = g3n_quant_row_bytes (m->quant, hi - lo), code_at = g3n_quant_row_bytes (m->quant, lo);
  int *nz = g3n_thread_scratch (&nz_key, &nz_size_key, sizeof (int) * m->cols);
  for (int t = 0; t < j->n; t++) {
    const float *x = j->x + (gsize) t * m->cols;
    float *y = j->y + (gsize) t * m->rows;
    memset (y + lo, 0, sizeof (float) * (hi - lo));
    int n_nz = 0;
    for (int i = 0; i < m->cols; i++)
      if (x[i] != 0)
        nz[n_nz++] = i;
    for (int k0 = 0; k0 < n_nz; k0 += G3N_QAXPY_ROWS) {
      int n_rows = MIN (G3N_QAXPY_ROWS, n_nz - k0);
      for (int k = k0 + G3N_PREFETCH_ROWS; k < MIN (k0 + G3N_PREFETCH_ROWS + n_rows, n_nz); k++) {
        g3n_prefetch ((const guint8 *) m->data + nz[k] * row_bytes + code_at, code_bytes);
        g3n_prefetch (m->scales + (gsize) nz[k] * nb + begin, sizeof (guint16) * (end - begin));
      }
      float a[G3N_QAXPY_ROWS];
      const guint8 *w[G3N_QAXPY_ROWS];
      const guint16 *wd[G3N_QAXPY_ROWS];
      for (int r = 0; r < n_rows; r++) {
        a[r] = x[nz[k0 + r]];
        w[r] = (const guint8 *) m->data + nz[k0 + r] * row_bytes;
        wd[r] = m->scales + (gsize) nz[k0 + r] * nb;
      }
      j->axpy (n_rows, a, w, wd, begin, MIN (end, full), y);
      for (int r = 0; r < n_rows; r++) /* a partial last block */
        for (int c = MAX (lo, full * G3N_QBLOCK); c < hi; c++)
          y[c] += a[r] * g3n_quant_weight (m->quant, w[r], wd[r], c);
    }
  }
}

static void
matmul_by_input (const G3nMatrix *m, const float *x, int n, float *y)
{
  SparseJob j = { m, x, n, y, g3n_qaxpy_kernel (m->quant) };
  int nb = g3n_quant_blocks (m->rows);
  /* a thread's share must outweigh the wake-up: ~8 blocks (256 outputs) at least */
  g3n_parallel_for (nb, 8, sparse_blocks, &j);
}

typedef struct {
  const QJob *q;
  const int *rows;
} QRowsJob;

static void
q_selected (int begin, int end, gpointer data)
{
  QRowsJob *j = data;
  const QJob *q = j->q;
  int nb = q->a->nb;
  for (int i = begin; i < end; i++) {
    if (i + G3N_PREFETCH_ROWS < end) {
      int ahead = j->rows[i + G3N_PREFETCH_ROWS];
      g3n_prefetch ((const guint8 *) q->m->data + ahead * q->row_bytes, q->row_bytes);
      g3n_prefetch (q->m->scales + (gsize) ahead * nb, sizeof (guint16) * nb);
    }
    q->y[i] = qdot (q, j->rows[i], 0);
  }
}

void
g3n_q8_rows_nibble_order (G3nQ8Rows *a, int n)
{
  const int half = G3N_QBLOCK / 2;
  gint8 group[4 * G3N_QBLOCK];
  for (int t = 0; t < n; t++)
    for (int g = 0; g + 4 <= a->nb; g += 4) {
      gint8 *q = a->q + ((gsize) t * a->nb + g) * G3N_QBLOCK;
      for (int j = 0; j < 4; j++) {
        memcpy (group + j * half, q + j * G3N_QBLOCK, half);
        memcpy (group + 4 * half + j * half, q + j * G3N_QBLOCK + half, half);
      }
      memcpy (q, group, sizeof group);
    }
}

/* The activations quantised for the dot kernels of m's type, in the order they read them. */
static void
quantize_for_dots (G3nQ8Rows *a, const G3nMatrix *m, const float *x, int n)
{
  g3n_q8_rows_init (a, x, n, m->cols);
  if (g3n_qdot_nibble_order (m->quant))
    g3n_q8_rows_nibble_order (a, n);
}

void
g3n_matmul_quant_rows (const G3nMatrix *m, const float *x, const int *rows, int n_rows, float *y)
{
  G3nQ8Rows a;
  quantize_for_dots (&a, m, x, 1);
  QJob q = { m, &a, g3n_qdot_kernel (m->quant), g3n_quant_row_bytes (m->quant, m->cols), 1, y, NULL };
  QRowsJob j = { &q, rows }; /* y[i] = row rows[i] · x */
  g3n_parallel_for (n_rows, MAX (1, 65536 / MAX (m->cols, 1)), q_selected, &j);
  g3n_q8_rows_clear (&a);
}

void
g3n_matmul_quant_dots (const G3nMatrix *m, const float *x, int n, float *y)
{
  G3nQ8Rows a;
  quantize_for_dots (&a, m, x, n);
  QJob j = { m, &a, g3n_qdot_kernel (m->quant), g3n_quant_row_bytes (m->quant, m->cols), n, y,
             g3n_qdot2_kernel (m->quant) };
  int blocks = (m->rows + QROWS - 1) / QROWS;
  if (n == 1) /* as the float GEMV: ~64K weights a thread at least */
    g3n_parallel_for (blocks, MAX (1, 65536 / QROWS / MAX (m->cols, 1)), q_row_blocks, &j);
  else if (blocks >= 4 * g3n_kernels_threads ())
    g3n_parallel_for (blocks, 1, q_row_blocks, &j);
  else
    g3n_parallel_for (n, 1, q_tokens, &j);
  g3n_q8_rows_clear (&a);
}

/* G3N_QGEMM=dots: the dot products for every n (comparisons of whole runs). */
static gpointer
read_gemm_setting (gpointer unused)
{
  const char *e = g_getenv ("G3N_QGEMM");
  return GINT_TO_POINTER (!(e && g_str_equal (e, "dots")));
}

void
g3n_matmul_quant (const G3nMatrix *m, const float *x, int n, float *y)
{
  static GOnce once = G_ONCE_INIT;
  if (m->by_input)
    matmul_by_input (m, x, n, y);
  else if (n >= G3N_QGEMM_MIN_TOKENS && GPOINTER_TO_INT (g_once (&once, read_gemm_setting, NULL)))
    g3n_quant_gemm (m, x, n, y);
  else
    g3n_matmul_quant_dots (m, x, n, y);
}
