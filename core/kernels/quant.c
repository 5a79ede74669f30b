/* quant.c — block-quantised weight matrices (Q8_0, Q4_0): making them, reading them back, multiplying.
 *
 * A row is cut into blocks of G3N_QBLOCK weights sharing one fp16 scale. Q8_0 stores q = round(w / d) with
 * d = max|w| / 127; Q4_0 stores 4-bit q = round(w / d) + 8 with d = −(the weight of largest magnitude) / 8,
 * so that weight lands exactly on code 0 and the other side keeps 7.5 steps. Codes are kept apart from the
 * scales so a SIMD load covers whole blocks. Q4_0 packs block element i in the low nibble of byte i and
 * element i + 16 in its high nibble: one mask and one shift unpack a block in natural order.
 *
 * Products quantise the activation rows to int8 blocks too and sum integer products per block, so the
 * kernels (quant-dot.c) compute exactly the same block sums on every ISA; only the fp32 sum of the scaled
 * block results differs in order. The formats follow the widely used GGML block layouts in size, not in code.
 */
#include "quant.h"
#include "threadpool.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ fp16 */

guint16
g3n_f32_to_f16 (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  guint16 sign = (guint16) ((u >> 16) & 0x8000);
  u &= 0x7fffffff;
  if (u >= 0x7f800000) /* inf, nan */
    return sign | 0x7c00 | (u > 0x7f800000 ? 0x200 : 0);
  if (u >= 0x477ff000) /* rounds past the largest half (65504) */
    return sign | 0x7c00;
  if (u < 0x38800000) { /* below 2^-14: a half subnormal, in units of 2^-24 (the scaling is exact) */
    float a;
    memcpy (&a, &u, 4);
    return sign | (guint16) lrintf (a * 16777216.0f);
  }
  guint32 r = u + 0xfff + ((u >> 13) & 1); /* round to nearest even at the 13 dropped bits */
  return sign | (guint16) ((r - (112u << 23)) >> 13);
}

float
g3n_f16_to_f32 (guint16 h)
{
  /* Exponent and mantissa shifted into place and rebiased by a multiply: handles subnormals too. */
  guint32 o = (guint32) (h & 0x7fff) << 13;
  float f;
  if ((h & 0x7c00) == 0x7c00) {
    o |= 0x7f800000;
    memcpy (&f, &o, 4);
  } else {
    memcpy (&f, &o, 4);
    f *= 0x1p112f;
  }
  return (h & 0x8000) ? -f : f;
}

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
  return (gsize) m->rows * (g3n_quant_row_bytes (m->quant, m->cols) + g3n_quant_blocks (m->cols) * sizeof (guint16));
}

/* ---------------------------------------------------------------------------- quantising */

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
    q[i] = (gint8) (i < n ? CLAMP (lrintf (x[i] * id), -127, 127) : 0);
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
    code[i] = (guint8) (i < n ? CLAMP (lrintf (x[i] * id) + 8, 0, 15) : 8); /* padding decodes to 0 */
  for (int i = 0; i < G3N_QBLOCK / 2; i++)
    q[i] = (guint8) (code[i] | code[i + G3N_QBLOCK / 2] << 4);
  *scale = h;
}

typedef struct {
  const G3nMatrix *src;
  G3nMatrix *dst;
} QuantizeJob;

static void
quantize_rows (int begin, int end, gpointer data)
{
  QuantizeJob *j = data;
  const G3nMatrix *s = j->src;
  G3nMatrix *d = j->dst;
  int nb = g3n_quant_blocks (s->cols);
  gsize row_bytes = g3n_quant_row_bytes (d->quant, s->cols);
  float *row = g_new (float, s->cols);
  for (int r = begin; r < end; r++) {
    g3n_matrix_row (s, r, row);
    guint8 *q = (guint8 *) d->data + (gsize) r * row_bytes;
    guint16 *scales = (guint16 *) d->scales + (gsize) r * nb;
    for (int b = 0; b < nb; b++) {
      int n = MIN (G3N_QBLOCK, s->cols - b * G3N_QBLOCK);
      if (d->quant == G3N_QUANT_Q8_0)
        quantize_block_q8 (row + b * G3N_QBLOCK, n, (gint8 *) q + b * G3N_QBLOCK, &scales[b]);
      else
        quantize_block_q4 (row + b * G3N_QBLOCK, n, q + b * G3N_QBLOCK / 2, &scales[b]);
    }
  }
  g_free (row);
}

gpointer
g3n_matrix_quantize (const G3nMatrix *m, G3nQuantType type, G3nMatrix *out)
{
  g_return_val_if_fail (m->quant == G3N_QUANT_NONE && type != G3N_QUANT_NONE, NULL);
  gsize codes = (gsize) m->rows * g3n_quant_row_bytes (type, m->cols);
  guint8 *buf = g_malloc (codes + (gsize) m->rows * g3n_quant_blocks (m->cols) * sizeof (guint16) + 64);
  *out = (G3nMatrix) { buf, m->dtype, m->rows, m->cols, type, (const guint16 *) (buf + codes) };
  QuantizeJob j = { m, out };
  g3n_parallel_for (m->rows, 64, quantize_rows, &j);
  return buf;
}

/* Row r of a quantised matrix, dequantised to fp32 (embedding lookups, tests). */
void
g3n_quant_dequantize_row (const G3nMatrix *m, int r, float *dst)
{
  int nb = g3n_quant_blocks (m->cols);
  const guint8 *q = (const guint8 *) m->data + (gsize) r * g3n_quant_row_bytes (m->quant, m->cols);
  const guint16 *scales = m->scales + (gsize) r * nb;
  for (int i = 0; i < m->cols; i++) {
    int b = i / G3N_QBLOCK, k = i % G3N_QBLOCK;
    float d = g3n_f16_to_f32 (scales[b]);
    if (m->quant == G3N_QUANT_Q8_0) {
      dst[i] = d * ((const gint8 *) q)[i];
    } else {
      guint8 byte = q[b * G3N_QBLOCK / 2 + k % (G3N_QBLOCK / 2)];
      int code = k < G3N_QBLOCK / 2 ? byte & 15 : byte >> 4;
      dst[i] = d * (code - 8);
    }
  }
}

/* ------------------------------------------------------------------------------ activations */

void
g3n_q8_rows_init (G3nQ8Rows *a, const float *x, int n, int cols)
{
  int nb = g3n_quant_blocks (cols);
  a->nb = nb;
  a->q = g_malloc ((gsize) n * nb * G3N_QBLOCK + 64);
  a->d = g_new (float, (gsize) n * nb);
  a->s = g_new (float, (gsize) n * nb);
  for (int t = 0; t < n; t++)
    for (int b = 0; b < nb; b++) {
      const float *v = x + (gsize) t * cols + b * G3N_QBLOCK;
      int m = MIN (G3N_QBLOCK, cols - b * G3N_QBLOCK);
      gint8 *q = a->q + ((gsize) t * nb + b) * G3N_QBLOCK;
      float amax = 0;
      for (int i = 0; i < m; i++)
        amax = fmaxf (amax, fabsf (v[i]));
      float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0;
      int sum = 0;
      for (int i = 0; i < G3N_QBLOCK; i++) {
        /* round half away from zero: vectorises, unlike lrintf */
        int c = i < m ? (int) (v[i] * id + (v[i] >= 0 ? 0.5f : -0.5f)) : 0;
        q[i] = (gint8) CLAMP (c, -127, 127);
        sum += q[i];
      }
      a->d[(gsize) t * nb + b] = d;
      a->s[(gsize) t * nb + b] = d * (float) sum;
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
} QJob;

static inline void
qdot_one (const QJob *j, int r, int t)
{
  const G3nMatrix *m = j->m;
  int nb = j->a->nb;
  gsize at = (gsize) t * nb;
  j->y[(gsize) t * m->rows + r] = j->dot ((const guint8 *) m->data + r * j->row_bytes, m->scales + (gsize) r * nb,
                                          j->a->q + at * G3N_QBLOCK, j->a->d + at, j->a->s + at, nb);
}

static void
q_row_blocks (int begin, int end, gpointer data)
{
  QJob *j = data;
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

void
g3n_matmul_quant (const G3nMatrix *m, const float *x, int n, float *y)
{
  G3nQ8Rows a;
  g3n_q8_rows_init (&a, x, n, m->cols);
  QJob j = { m, &a, g3n_qdot_kernel (m->quant), g3n_quant_row_bytes (m->quant, m->cols), n, y };
  int blocks = (m->rows + QROWS - 1) / QROWS;
  if (n == 1) /* as the float GEMV: ~64K weights a thread at least */
    g3n_parallel_for (blocks, MAX (1, 65536 / QROWS / MAX (m->cols, 1)), q_row_blocks, &j);
  else if (blocks >= 4 * g3n_kernels_threads ())
    g3n_parallel_for (blocks, 1, q_row_blocks, &j);
  else
    g3n_parallel_for (n, 1, q_tokens, &j);
  g3n_q8_rows_clear (&a);
}
