/* quant.h — internals shared by the quantised-matrix code: activation blocks and the per-ISA dot kernels. */
#ifndef G3N_QUANT_H
#define G3N_QUANT_H

#include "kernels.h"

G_BEGIN_DECLS

/* Activation rows quantised for integer dot products: per block of G3N_QBLOCK values one fp32 scale d and
 * int8 codes in [-127, 127] (never -128, so |w|·x fits the AVX2 int16 pair sums), plus s = d·Σq, which the
 * Q4_0 kernels need to undo the weights' +8 offset. */
typedef struct {
  int nb;      /* blocks per row */
  gint8 *q;    /* [n, nb * G3N_QBLOCK] */
  float *d;    /* [n, nb] */
  float *s;    /* [n, nb] */
} G3nQ8Rows;

void g3n_q8_rows_init (G3nQ8Rows *a, const float *x, int n, int cols);
void g3n_q8_rows_clear (G3nQ8Rows *a);

/* One activation row of `cols` values quantised as above: nb = g3n_quant_blocks (cols) blocks of codes q
 * (zero-padded to nb·G3N_QBLOCK), scales d and s; qsum, if not NULL, gets each block's Σq. The SIMD versions
 * give bit for bit the codes and scales of the portable one: the integer kernels of every path then see the
 * same numbers. */
typedef void (*G3nQ8RowFn) (const float *x, int cols, gint8 *q, float *d, float *s, gint32 *qsum);
G3nQ8RowFn g3n_q8_row_kernel (void);

/* One weight row (codes w, fp16 scales wd) · one quantised activation row, over nb blocks. */
typedef float (*G3nQDotFn) (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs,
                            int nb);

/* y[32·b0 … 32·b1) += Σ_{r<n} a[r] · (blocks b0 … b1 of stored row r: codes w[r], scales wd[r]), for
 * n ≤ G3N_QAXPY_ROWS: the by-input (sparse) products, a few non-zero inputs' rows per pass over y. */
#define G3N_QAXPY_ROWS 4
typedef void (*G3nQAxpyFn) (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1,
                            float *y);

/* Two weight rows (codes w0, w1, scales wd0, wd1) · one activation row → *out0, *out1, each exactly as
 * the one-row kernel computes it. */
typedef void (*G3nQDot2Fn) (const void *w0, const void *w1, const guint16 *wd0, const guint16 *wd1, const gint8 *xq,
                            const float *xd, const float *xs, int nb, float *out0, float *out1);

/* The kernel for `type` on the instruction set the kernels chose (g3n_cpu_isa, G3N_KERNEL); the
 * two-row one is NULL where that instruction set has none. */
G3nQDotFn g3n_qdot_kernel (G3nQuantType type);
G3nQDot2Fn g3n_qdot2_kernel (G3nQuantType type);
/* Whether that kernel wants the activation codes in nibble order: per whole group of four blocks, the
 * four first halves (16 codes each) then the four second halves — the order of a Q4_0 group's low and high
 * nibbles. Blocks after the last whole group stay in natural order. */
gboolean g3n_qdot_nibble_order (G3nQuantType type);
void g3n_q8_rows_nibble_order (G3nQ8Rows *a, int n);
G3nQAxpyFn g3n_qaxpy_kernel (G3nQuantType type);
/* Weight (codes and scale) of block element k, for scalar tails. */
float g3n_quant_weight (G3nQuantType type, const void *w, const guint16 *wd, int k);
/* "vnni", "avx2" or "portable": which integer kernels that is (AVX-512 without VNNI uses the AVX2 ones). */
const char *g3n_qdot_isa (void);

/* y[n, m->rows] = x · mᵀ for a quantised m (g3n_matmul hands these over): the blocked GEMM for
 * G3N_QGEMM_MIN_TOKENS tokens or more on row-major storage, dot products per token otherwise. */
void g3n_matmul_quant (const G3nMatrix *m, const float *x, int n, float *y);
#define G3N_QGEMM_MIN_TOKENS 8
/* The two paths themselves, for any n ≥ 1 and row-major (not by_input) m; tests and benchmarks compare them.
 * They form the same integer block sums; only the fp32 sum of the scaled blocks differs in order. The
 * environment variable G3N_QGEMM=dots makes g3n_matmul_quant use the dot products for every n. */
void g3n_quant_gemm (const G3nMatrix *m, const float *x, int n, float *y);
void g3n_matmul_quant_dots (const G3nMatrix *m, const float *x, int n, float *y);
/* One token times the listed rows of a quantised m (see g3n_matmul_rows). */
void g3n_matmul_quant_rows (const G3nMatrix *m, const float *x, const int *rows, int n_rows, float *y);
/* Row r of a quantised matrix as fp32. */
void g3n_quant_dequantize_row (const G3nMatrix *m, int r, float *dst);

G_END_DECLS

#endif
