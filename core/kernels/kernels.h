/* kernels.h — the small numeric interface every model part computes through.
 *
 * Weights are used in their file dtype (BF16/F16/F32) straight from the mapping; activations are fp32.
 * Every matrix product in the model goes through g3n_matmul(), so faster kernels (SIMD, quantised, threaded)
 * replace one function, not call sites.
 */
#ifndef G3N_KERNELS_H
#define G3N_KERNELS_H

#include "../safetensors.h"
#include "half.h"

G_BEGIN_DECLS

/* A row-major weight matrix [rows, cols] in its storage dtype: a view, never owning.
 * Quantised (quant != G3N_QUANT_NONE; dtype is then meaningless): `data` holds each row's codes, rows
 * g3n_quant_row_bytes() apart, and `scales` the fp16 block scales, [rows, blocks]. A row's last block is
 * zero-padded when cols is not a multiple of G3N_QBLOCK. */
typedef struct {
  const void *data;
  G3nDType dtype;
  int rows;
  int cols;
  G3nQuantType quant;
  const guint16 *scales;
  /* Stored transposed, as `cols` rows of `rows` weights (a row per input feature), so a product reads only
   * the rows of non-zero inputs (Gemma 3n's sparse MLP layers: ~95% zero activations into down_proj).
   * rows/cols keep the logical shape. Float or quantised. */
  gboolean by_input;
} G3nMatrix;

#define G3N_QBLOCK 32

/* Asks for [p, p + n) in cache ahead of use. The sparse products read rows picked by the activations, which
 * no hardware prefetcher can guess: without this each row costs a memory latency (~5x slower). */
static inline void
g3n_prefetch (const void *p, gsize n)
{
  const char *c = p;
  for (gsize o = 0; o < n; o += 64)
    __builtin_prefetch (c + o, 0, 3);
  if (n)
    __builtin_prefetch (c + n - 1, 0, 3); /* the last line when p is not line-aligned */
}

/* Rows of a sparse product fetched ahead of the one being computed. */
#define G3N_PREFETCH_ROWS 8

G3nMatrix g3n_matrix_from_tensor (const G3nTensor *t);

/* A copy of float m stored by input (see by_input), in m's dtype. Returns the storage, which the caller
 * frees with g_free once *out is no longer used. */
gpointer g3n_matrix_transpose_by_input (const G3nMatrix *m, G3nMatrix *out);

/* Converts n elements of dtype (F32, F16 or BF16) to fp32. */
void g3n_to_f32 (G3nDType dtype, const void *src, float *dst, gsize n);
/* Row r of m as fp32 (an embedding lookup). */
void g3n_matrix_row (const G3nMatrix *m, int r, float *dst);

/* y[n, m->rows] = x[n, m->cols] · mᵀ  (a PyTorch nn.Linear without bias). */
void g3n_matmul (const G3nMatrix *m, const float *x, int n, float *y);
/* One token, a few output rows: y[i] = (row rows[i] of m) · x for i < n_rows. Decode in the sparse MLP
 * layers needs only the up_proj rows whose gate survived the top-k. m must not be stored by input. */
void g3n_matmul_rows (const G3nMatrix *m, const float *x, const int *rows, int n_rows, float *y);

/* Blocks per row and bytes of codes per row of a quantised matrix. */
int g3n_quant_blocks (int cols);
gsize g3n_quant_row_bytes (G3nQuantType type, int cols);
/* Bytes the matrix occupies (codes + scales when quantised). */
gsize g3n_matrix_bytes (const G3nMatrix *m);
/* Quantises m (F32, F16 or BF16) to `type` (threaded). Returns the new storage, which the caller frees with
 * g_free once *out (a view into it) is no longer used. */
gpointer g3n_matrix_quantize (const G3nMatrix *m, G3nQuantType type, G3nMatrix *out);
/* The same, stored by input feature (see by_input): for matrices whose inputs are mostly zero. */
gpointer g3n_matrix_quantize_by_input (const G3nMatrix *m, G3nQuantType type, G3nMatrix *out);
/* Scalar fp16/bf16 <-> fp32 conversions (g3n_f16_to_f32, g3n_f32_to_bf16, ...) are inline in half.h. */

/* Rows of 16-bit floats as the KV cache keeps them (half.c). Conversions round to nearest even and give the
 * same bits on every ISA. g3n_from_f32: fp32 to F16, BF16 (or F32, a copy); g3n_half_to_f32: back, like
 * g3n_to_f32 but with F16 vectorised too. */
void g3n_from_f32 (G3nDType dtype, const float *src, void *dst, gsize n);
void g3n_half_to_f32 (G3nDType dtype, const void *src, float *dst, gsize n);
/* The attention of a decode step over n cached rows of F16/BF16 values (rows `ld` elements apart, each
 * holding every KV head), widened in registers, for nq queries at once in groups of G sharing a KV head:
 * query g (q_g = q + g·ldq) reads the d columns from (g / G)·d of each row, and
 * scores[g·lds + i] = q_g · row_i, out[g·ldo + c] = Σ_i p[g·ldp + i] · row_i[c]. Rows are read once for all
 * queries, in order. */
void g3n_half_dots (G3nDType dtype, const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld, int n,
                    int d, float *scores, gsize lds);
void g3n_half_weighted_sum (G3nDType dtype, const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld,
                            int n, int d, float *out, gsize ldo);

/* Dot product of a stored weight row with fp32 x (vectorised for the CPU; see dot.c). */
float g3n_dot_weight (G3nDType dtype, const void *w, const float *x, int n);
/* out[0..4) = the dot products of four stored rows, ldw bytes apart, with x. */
void g3n_dot_weight4 (G3nDType dtype, const void *w, gsize ldw, const float *x, int n, float *out);
/* y[0..n) += a · w[0..n) for a stored weight row (the by-input products). */
void g3n_axpy_weight (G3nDType dtype, float a, const void *w, float *y, int n);
/* The instruction set the kernels chose: "avx512", "avx2" or "portable" (G3N_KERNEL forces one; cpu.c). */
const char *g3n_kernels_isa (void);

/* Row-major fp32 products on the calling thread (callers split work across the pool):
 * C[m, n] = A[m, k] · B[n, k]ᵀ  and  C[m, n] = A[m, k] · B[k, n]; ldX are row strides. */
void g3n_sgemm_nt (int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc);
void g3n_sgemm_nn (int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc);

/* Opt-in faster prefill on BF16 weights: multi-token products round the activations to BF16 (round to
 * nearest even) and, on CPUs with AVX512_BF16, multiply with vdpbf16ps at twice the FMA rate; sums stay
 * fp32. Off by default (the products then match the reference's fp32 math up to summation order); the
 * environment variable G3N_BF16_ACTIVATIONS=1 turns it on at start-up. Decode, and products of fewer than
 * 8 tokens (dot products per token there), are unaffected. */
void g3n_kernels_set_bf16_activations (gboolean on);
gboolean g3n_kernels_bf16_activations (void);
/* Products of 8 or more tokens on float weights use the blocked kernels of gemm-bf16.c on AVX2/AVX-512
 * CPUs, and OpenBLAS sgemm on blocks of weights widened to fp32 otherwise (the portable C kernels are much
 * slower). TRUE forces the sgemm path for every multi-token product (kept for comparison), FALSE our
 * kernels on every ISA (tests use it to cover the portable ones). The environment variable
 * G3N_GEMM=blas|own sets it at start-up. The BF16-activation setting applies to our kernels only. */
void g3n_kernels_set_gemm_blas (gboolean on);

/* out = x / sqrt(mean(x²) + eps) * (weight ? weight : 1), over rows of length n. out may alias x. */
void g3n_rms_norm (const float *x, const float *weight, float eps, int n, float *out);
/* GELU, tanh approximation (PyTorch approximate="tanh"), in place. */
void g3n_gelu_tanh (float *x, gsize n);
/* Softmax over n values in place. */
void g3n_softmax (float *x, int n);
float g3n_dot (const float *a, const float *b, int n);
/* y += a * x (x and y must not overlap) */
void g3n_axpy (float a, const float *x, float *y, int n);
/* y = p + s · (a − b): AltUp's correction of a stream (y must not overlap the others) */
void g3n_add_scaled_difference (float *y, const float *p, const float *a, const float *b, float s, int n);
/* x = cap · tanh(x / cap), in place: Gemma's logit soft-capping, vectorisable (no libm call). */
void g3n_softcap (float *x, gsize n, float cap);

G_END_DECLS

#endif
