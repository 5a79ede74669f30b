/* kernels.h — the small numeric interface every model part computes through.
 *
 * Weights are used in their file dtype (BF16/F16/F32) straight from the mapping; activations are fp32.
 * Every matrix product in the model goes through g3n_matmul(), so faster kernels (SIMD, quantised, threaded)
 * replace one function, not call sites.
 */
#ifndef G3N_KERNELS_H
#define G3N_KERNELS_H

#include "../safetensors.h"

G_BEGIN_DECLS

/* A row-major weight matrix [rows, cols] in its storage dtype: a view, never owning. */
typedef struct {
  const void *data;
  G3nDType dtype;
  int rows;
  int cols;
} G3nMatrix;

G3nMatrix g3n_matrix_from_tensor (const G3nTensor *t);

/* Converts n elements of dtype (F32, F16 or BF16) to fp32. */
void g3n_to_f32 (G3nDType dtype, const void *src, float *dst, gsize n);
/* Row r of m as fp32 (an embedding lookup). */
void g3n_matrix_row (const G3nMatrix *m, int r, float *dst);

/* y[n, m->rows] = x[n, m->cols] · mᵀ  (a PyTorch nn.Linear without bias). */
void g3n_matmul (const G3nMatrix *m, const float *x, int n, float *y);

/* Dot product of a stored weight row with fp32 x (vectorised for the CPU; see dot.c). */
float g3n_dot_weight (G3nDType dtype, const void *w, const float *x, int n);
/* The instruction set the kernels chose: "avx512", "avx2" or "portable" (G3N_KERNEL forces one). */
const char *g3n_kernels_isa (void);

/* Sets how many threads the kernels (and OpenBLAS) use; 0 = all cores. */
void g3n_kernels_set_threads (int n_threads);

/* out = x / sqrt(mean(x²) + eps) * (weight ? weight : 1), over rows of length n. out may alias x. */
void g3n_rms_norm (const float *x, const float *weight, float eps, int n, float *out);
/* GELU, tanh approximation (PyTorch approximate="tanh"), in place. */
void g3n_gelu_tanh (float *x, gsize n);
/* Softmax over n values in place. */
void g3n_softmax (float *x, int n);
float g3n_dot (const float *a, const float *b, int n);
/* y += a * x */
void g3n_axpy (float a, const float *x, float *y, int n);

G_END_DECLS

#endif
