/* matmul.c — matrix products against weights in their storage dtype.
 *
 * One token (decode): a dot product per weight row, converting as it reads. Several tokens (prefill): the
 * blocked kernels of gemm-bf16.c, which widen the weights in registers. The former prefill path — blocks of
 * weight rows widened to fp32 in memory, then OpenBLAS sgemm — stays behind g3n_kernels_set_gemm_blas for
 * comparison: OpenBLAS packs the widened copy once more, so every weight is copied twice before it is used.
 */
#include "gemm.h"
#include "kernels.h"
#include "quant.h"
#include "threadpool.h"

#include <cblas.h>
#include <string.h>

/* Weight rows widened per sgemm call: large enough for sgemm efficiency, small enough to stay in cache. */
#define ROW_BLOCK 128

G3nMatrix
g3n_matrix_from_tensor (const G3nTensor *t)
{
  G3nMatrix m = { .data = t->data, .dtype = t->dtype, .rows = (int) t->shape[0],
                  .cols = t->ndim > 1 ? (int) t->shape[1] : 1 };
  return m;
}

static const void *
row_ptr (const G3nMatrix *m, int r)
{
  return (const guint8 *) m->data + (gsize) r * m->cols * g3n_dtype_size (m->dtype);
}

void
g3n_matrix_row (const G3nMatrix *m, int r, float *dst)
{
  if (m->quant != G3N_QUANT_NONE) {
    g3n_quant_dequantize_row (m, r, dst);
    return;
  }
  if (m->by_input) { /* element i of logical row r is element r of stored row i */
    gsize esize = g3n_dtype_size (m->dtype);
    for (int i = 0; i < m->cols; i++)
      g3n_to_f32 (m->dtype, (const guint8 *) m->data + ((gsize) i * m->rows + r) * esize, dst + i, 1);
    return;
  }
  g3n_to_f32 (m->dtype, row_ptr (m, r), dst, m->cols);
}

/* ---------------------------------------------------------------------- stored by input */

/* Square tiles so both sides are read and written a few cache lines at a time. */
#define TRANSPOSE_TILE 32

typedef struct {
  const G3nMatrix *src;
  guint8 *dst;
} TransposeJob;

static void
transpose_tiles (int begin, int end, gpointer data)
{
  TransposeJob *j = data;
  const G3nMatrix *m = j->src;
  gsize esize = g3n_dtype_size (m->dtype);
  const guint8 *src = m->data;
  for (int r0 = begin * TRANSPOSE_TILE; r0 < MIN (end * TRANSPOSE_TILE, m->rows); r0 += TRANSPOSE_TILE)
    for (int c0 = 0; c0 < m->cols; c0 += TRANSPOSE_TILE)
      for (int c = c0; c < MIN (c0 + TRANSPOSE_TILE, m->cols); c++)
        for (int r = r0; r < MIN (r0 + TRANSPOSE_TILE, m->rows); r++) {
          gsize to = (gsize) c * m->rows + r, from = (gsize) r * m->cols + c;
          if (esize == 2) /* BF16/F16: a typed copy, not a call per element */
            ((guint16 *) j->dst)[to] = ((const guint16 *) src)[from];
          else
            memcpy (j->dst + to * esize, src + from * esize, esize);
        }
}

gpointer
g3n_matrix_transpose_by_input (const G3nMatrix *m, G3nMatrix *out)
{
  g_return_val_if_fail (m->quant == G3N_QUANT_NONE && !m->by_input, NULL);
  guint8 *buf = g3n_weights_alloc ((gsize) m->rows * m->cols * g3n_dtype_size (m->dtype) + 64);
  TransposeJob j = { m, buf };
  g3n_parallel_for ((m->rows + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE, 4, transpose_tiles, &j);
  *out = *m;
  out->data = buf;
  out->by_input = TRUE;
  return buf;
}

typedef struct {
  const G3nMatrix *m;
  const float *x;
  int n;
  float *y;
} SparseJob;

/* Outputs [begin, end) of every token: y = Σ over non-zero x_i of x_i · (stored row i). */
static void
by_input_outputs (int begin, int end, gpointer data)
{
  SparseJob *j = data;
  const G3nMatrix *m = j->m;
  gsize esize = g3n_dtype_size (m->dtype);
  for (int t = 0; t < j->n; t++) {
    const float *x = j->x + (gsize) t * m->cols;
    float *y = j->y + (gsize) t * m->rows;
    memset (y + begin, 0, sizeof (float) * (end - begin));
    for (int i = 0; i < m->cols; i++)
      if (x[i] != 0)
        g3n_axpy_weight (m->dtype, x[i], (const guint8 *) m->data + ((gsize) i * m->rows + begin) * esize,
                         y + begin, end - begin);
  }
}

/* Float weights stored by input. Prefill too: each token's activations are as sparse as decode's, so this
 * beats the dense product even at a few hundred tokens. */
static void
matmul_by_input (const G3nMatrix *m, const float *x, int n, float *y)
{
  SparseJob j = { m, x, n, y };
  /* a thread's share must outweigh the wake-up: 256 outputs at least, in whole cache lines */
  g3n_parallel_for (m->rows, 256, by_input_outputs, &j);
}

/* ------------------------------------------------- one or a few tokens: threaded dot products */

/* Below this many tokens, dot products beat the blocked kernels, whose tiles are 16 tokens wide (AVX-512):
 * each weight row comes from memory once and serves every token from L1, so a few tokens cost about what
 * one does (measured on [2048 x 2048]: 4 tokens 22 GFLOP/s blocked, ~50 per token as dots; even at 8). */
#define GEMM_MIN_TOKENS 8

typedef struct {
  const G3nMatrix *m;
  const float *x;
  int n;
  float *y;
} MatvecJob;

/* Rows go four at a time (g3n_dot_weight4: each row as alone, so the grouping does not change results),
 * row i with rows i + q, i + 2q, i + 3q, q a quarter of the range: four long streams, which draw more
 * bandwidth from one core than one (E2B BF16 decode +5-10%), where four adjacent rows read side by side
 * would be short runs the hardware prefetchers do not follow. */
static void
matvec_rows (int begin, int end, gpointer data)
{
  MatvecJob *j = data;
  const int rows = j->m->rows, cols = j->m->cols, q = (end - begin) / 4;
  gsize ldw = (gsize) cols * g3n_dtype_size (j->m->dtype);
  for (int i = begin; i < begin + q; i++)
    for (int t = 0; t < j->n; t++) {
      float out[4];
      g3n_dot_weight4 (j->m->dtype, row_ptr (j->m, i), ldw * q, j->x + (gsize) t * cols, cols, out);
      for (int k = 0; k < 4; k++)
        j->y[(gsize) t * rows + i + k * q] = out[k];
    }
  for (int r = begin + 4 * q; r < end; r++)
    for (int t = 0; t < j->n; t++)
      j->y[(gsize) t * rows + r] = g3n_dot_weight (j->m->dtype, row_ptr (j->m, r), j->x + (gsize) t * cols, cols);
}

/* ------------------------------------- several tokens, former path (G3N_GEMM=blas): widened blocks + sgemm */

typedef struct {
  const G3nMatrix *m;
  const float *x;
  int n;
  float *y;
} GemmJob;

/* Weights widened per sgemm call: big calls let OpenBLAS pack the activations once for many weight rows
 * (small ones repack them per call), bounded so the fp32 copy stays modest. */
#define WIDEN_BYTES (32u << 20)

/* y[:, begin:end] = x · w[begin:end]ᵀ, in calls of as many rows as WIDEN_BYTES allows. */
static void
gemm_rows (int begin, int end, gpointer data)
{
  GemmJob *j = data;
  const G3nMatrix *m = j->m;
  int chunk = MAX (ROW_BLOCK, (int) (WIDEN_BYTES / ((gsize) m->cols * sizeof (float))));
  chunk = MIN (chunk, end - begin);
  float *wf = m->dtype == G3N_DTYPE_F32 ? NULL : g_new (float, (gsize) chunk * m->cols);
  for (int r0 = begin; r0 < end; r0 += chunk) {
    int nr = MIN (chunk, end - r0);
    const float *w = row_ptr (m, r0);
    if (wf) {
      g3n_to_f32 (m->dtype, w, wf, (gsize) nr * m->cols);
      w = wf;
    }
    /* written in place into y with ldc = m->rows */
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, j->n, nr, m->cols, 1.0f, j->x, m->cols, w, m->cols, 0.0f,
                 j->y + r0, m->rows);
  }
  g_free (wf);
}

/* Few weight rows (≤ a block per thread), several tokens: each thread takes a range of tokens through all
 * the rows instead, or threads would sit idle. */
static void
gemm_tokens (int begin, int end, gpointer data)
{
  GemmJob *j = data;
  GemmJob part = { j->m, j->x + (gsize) begin * j->m->cols, end - begin, j->y + (gsize) begin * j->m->rows };
  gemm_rows (0, j->m->rows, &part);
}

static gpointer
single_threaded_blas (gpointer unused)
{
  /* Our pool owns the threads; OpenBLAS runs inside each worker on its share. */
  openblas_set_num_threads (1);
  return NULL;
}

static void
blas_init (void)
{
  static GOnce blas_once = G_ONCE_INIT;
  g_once (&blas_once, single_threaded_blas, NULL);
}

void
g3n_sgemm_nt (int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc)
{
  blas_init ();
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}

void
g3n_sgemm_nn (int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc)
{
  blas_init ();
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}

typedef struct {
  const G3nMatrix *m;
  const float *x;
  const int *rows;
  float *y;
} RowsJob;

static void
matvec_selected (int begin, int end, gpointer data)
{
  RowsJob *j = data;
  for (int i = begin; i < end; i++)
    j->y[i] = g3n_dot_weight (j->m->dtype, row_ptr (j->m, j->rows[i]), j->x, j->m->cols);
}

void
g3n_matmul_rows (const G3nMatrix *m, const float *x, const int *rows, int n_rows, float *y)
{
  g_return_if_fail (!m->by_input);
  if (m->quant != G3N_QUANT_NONE) {
    g3n_matmul_quant_rows (m, x, rows, n_rows, y);
    return;
  }
  RowsJob j = { m, x, rows, y };
  g3n_parallel_for (n_rows, MAX (1, 65536 / MAX (m->cols, 1)), matvec_selected, &j);
}

void
g3n_matmul (const G3nMatrix *m, const float *x, int n, float *y)
{
  blas_init ();
  if (m->quant != G3N_QUANT_NONE) {
    g3n_matmul_quant (m, x, n, y);
    return;
  }
  if (m->by_input) {
    matmul_by_input (m, x, n, y);
    return;
  }
  if (n == 1 || (n < GEMM_MIN_TOKENS && !g3n_gemm_use_blas ())) {
    MatvecJob j = { m, x, n, y };
    /* ~64K weights per thread at least, or the wake-up costs more than it saves */
    g3n_parallel_for (m->rows, MAX (1, 65536 / MAX (m->cols, 1)), matvec_rows, &j);
    return;
  }
  if (!g3n_gemm_use_blas ()) {
    g3n_gemm (m, x, n, y);
    return;
  }
  GemmJob j = { m, x, n, y };
  int blocks = (m->rows + ROW_BLOCK - 1) / ROW_BLOCK;
  int threads = g3n_kernels_threads ();
  if (blocks < 2 * threads && n >= 2 * threads)
    g3n_parallel_for (n, 1, gemm_tokens, &j);
  else
    g3n_parallel_for (m->rows, ROW_BLOCK, gemm_rows, &j);
}
