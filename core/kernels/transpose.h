/* transpose.h — the 16 × 16 transpose of 32-bit values in AVX-512 registers that the float GEMM (packing
 * fp32 activation panels, gemm-bf16.c) and the quantised GEMM (packing codes and sums, quant-gemm.c) both
 * use. Only bits move, so one integer form serves floats too (cast in and out). Include on x86 only. */
#ifndef G3N_TRANSPOSE_H
#define G3N_TRANSPOSE_H

#include <immintrin.h>

/* r[i] (row i of a 16 × 16 block of 32-bit values) becomes column i: 32-bit interleaves within 128-bit
 * lanes give 4-value column pieces, 64-bit ones 4 × 4 blocks, then two rounds of 128-bit lane shuffles
 * gather each column's four pieces. 64 shuffles for 256 values, against one strided store each. */
__attribute__ ((always_inline, target ("avx512f"))) static inline void
g3n_transpose16x16 (__m512i r[16])
{
  __m512i a[16], b[16];
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_epi32 (r[i], r[i + 1]);
    a[i + 1] = _mm512_unpackhi_epi32 (r[i], r[i + 1]);
  }
  /* b[4g + j]: lane L holds value 4L + j of rows 4g … 4g + 3 */
  for (int g = 0; g < 4; g++) {
    b[4 * g] = _mm512_unpacklo_epi64 (a[4 * g], a[4 * g + 2]);
    b[4 * g + 1] = _mm512_unpackhi_epi64 (a[4 * g], a[4 * g + 2]);
    b[4 * g + 2] = _mm512_unpacklo_epi64 (a[4 * g + 1], a[4 * g + 3]);
    b[4 * g + 3] = _mm512_unpackhi_epi64 (a[4 * g + 1], a[4 * g + 3]);
  }
  /* column 4L + j = lane L of b[j], b[4 + j], b[8 + j], b[12 + j] */
  for (int j = 0; j < 4; j++) {
    __m512i p0 = _mm512_shuffle_i32x4 (b[j], b[4 + j], 0x44), p1 = _mm512_shuffle_i32x4 (b[j], b[4 + j], 0xee);
    __m512i p2 = _mm512_shuffle_i32x4 (b[8 + j], b[12 + j], 0x44);
    __m512i p3 = _mm512_shuffle_i32x4 (b[8 + j], b[12 + j], 0xee);
    r[j] = _mm512_shuffle_i32x4 (p0, p2, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4 (p0, p2, 0xdd);
    r[8 + j] = _mm512_shuffle_i32x4 (p1, p3, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4 (p1, p3, 0xdd);
  }
}

#endif
