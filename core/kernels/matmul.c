/* matmul.c — matrix products against weights in their storage dtype.
 *
 * One token (decode): a dot product per weight row, converting as it reads. Several tokens (prefill):
 * blocks of weight rows are widened to fp32 and multiplied with OpenBLAS sgemm, so the conversion cost is
 * shared by the whole batch.
 */
#include "kernels.h"

#include <cblas.h>
#include <string.h>

/* Weight rows widened per sgemm call: large enough for sgemm efficiency, small enough to stay in cache. */
#define ROW_BLOCK 256

G3nMatrix
g3n_matrix_from_tensor (const G3nTensor *t)
{
  G3nMatrix m = { t->data, t->dtype, (int) t->shape[0], t->ndim > 1 ? (int) t->shape[1] : 1 };
  return m;
}

static inline float
bf16_to_f32 (guint16 h)
{
  guint32 u = (guint32) h << 16;
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static inline float
f16_to_f32 (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000) << 16;
  guint32 exp = (h >> 10) & 0x1f;
  guint32 man = h & 0x3ff;
  guint32 u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else { /* subnormal: normalise */
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400));
    u = sign | ((guint32) (112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  memcpy (&f, &u, 4);
  return f;
}

void
g3n_to_f32 (G3nDType dtype, const void *src, float *dst, gsize n)
{
  switch (dtype) {
  case G3N_DTYPE_F32:
    memcpy (dst, src, n * sizeof (float));
    break;
  case G3N_DTYPE_BF16:
    for (gsize i = 0; i < n; i++)
      dst[i] = bf16_to_f32 (((const guint16 *) src)[i]);
    break;
  case G3N_DTYPE_F16:
    for (gsize i = 0; i < n; i++)
      dst[i] = f16_to_f32 (((const guint16 *) src)[i]);
    break;
  default:
    g_assert_not_reached (); /* the loader admits only float weights */
  }
}

static const void *
row_ptr (const G3nMatrix *m, int r)
{
  return (const guint8 *) m->data + (gsize) r * m->cols * g3n_dtype_size (m->dtype);
}

void
g3n_matrix_row (const G3nMatrix *m, int r, float *dst)
{
  g3n_to_f32 (m->dtype, row_ptr (m, r), dst, m->cols);
}

static void
matvec (const G3nMatrix *m, const float *x, float *y)
{
  float *row = m->dtype == G3N_DTYPE_F32 ? NULL : g_new (float, m->cols);
  for (int r = 0; r < m->rows; r++) {
    const float *w = row ? (g3n_matrix_row (m, r, row), row) : row_ptr (m, r);
    y[r] = g3n_dot (w, x, m->cols);
  }
  g_free (row);
}

void
g3n_matmul (const G3nMatrix *m, const float *x, int n, float *y)
{
  if (n == 1) {
    matvec (m, x, y);
    return;
  }
  if (m->dtype == G3N_DTYPE_F32) {
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, m->rows, m->cols, 1.0f, x, m->cols, m->data, m->cols,
                 0.0f, y, m->rows);
    return;
  }
  int block = MIN (ROW_BLOCK, m->rows);
  float *wf = g_new (float, (gsize) block * m->cols);
  for (int r0 = 0; r0 < m->rows; r0 += block) {
    int nr = MIN (block, m->rows - r0);
    g3n_to_f32 (m->dtype, row_ptr (m, r0), wf, (gsize) nr * m->cols);
    /* y[:, r0:r0+nr] = x · wfᵀ, written in place with ldc = m->rows */
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, nr, m->cols, 1.0f, x, m->cols, wf, m->cols, 0.0f,
                 y + r0, m->rows);
  }
  g_free (wf);
}

void
g3n_kernels_set_threads (int n_threads)
{
  if (n_threads > 0)
    openblas_set_num_threads (n_threads);
}
