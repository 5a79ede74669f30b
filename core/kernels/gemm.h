/* gemm.h — the multi-token product on float weights (gemm-bf16.c), as g3n_matmul hands it over. */
#ifndef G3N_GEMM_H
#define G3N_GEMM_H

#include "kernels.h"

G_BEGIN_DECLS

/* y[n, m->rows] = x[n, m->cols] · mᵀ for an unquantised m (BF16, F16 or F32), threaded over the pool. */
void g3n_gemm (const G3nMatrix *m, const float *x, int n, float *y);
/* Whether g3n_matmul should take the former widen-and-sgemm path instead (g3n_kernels_set_gemm_blas,
 * G3N_GEMM=blas). */
gboolean g3n_gemm_use_blas (void);
/* The kernel set of these products: "avx512+bf16dp" (AVX-512 with vdpbf16ps for the BF16 activations),
 * "avx512", "avx2" or "portable" (g3n_cpu_isa, and the CPU's AVX512_BF16). */
const char *g3n_gemm_isa (void);

G_END_DECLS

#endif
