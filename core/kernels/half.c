/* half.c — rows of 16-bit floats (F16 or BF16): widening of stored weights (g3n_to_f32), the KV cache's
 * conversion from fp32 and back, and the two products of one decode step's attention read straight from
 * such rows (widened in registers). The scalar conversions themselves are half.h's.
 *
 * Conversions round to nearest even, and every ISA gives the same bits (F16C / AVX-512 vcvtps2ph use that
 * rounding, the portable code computes it; only NaN payloads may differ), so a cache holds the same values
 * whatever G3N_KERNEL chose. The products differ between ISAs in summation order only. The ISA follows
 * g3n_cpu_isa() (cpu.h).
 */
#include "cpu.h"
#include "half.h"
#include "kernels.h"

#include <string.h>
#ifdef G3N_X86
#include <immintrin.h>
#endif

typedef void (*NarrowFn) (const float *src, guint16 *dst, gsize n);
typedef void (*WidenFn) (const guint16 *src, float *dst, gsize n);
typedef void (*DotsFn) (const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
                        float *scores, gsize lds);
typedef void (*SumFn) (const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
                       float *out, gsize ldo);

/* ------------------------------------------------------------------------------- scalar */

static inline float
half_to_f32 (gboolean bf16, guint16 h)
{
  return bf16 ? g3n_bf16_to_f32 (h) : g3n_f16_to_f32 (h);
}

/* ------------------------------------------------------------------------------- portable */

static void
f16_narrow_portable (const float *src, guint16 *dst, gsize n)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = g3n_f32_to_f16 (src[i]);
}

static void
f16_widen_portable (const guint16 *src, float *dst, gsize n)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = g3n_f16_to_f32 (src[i]);
}

static void
bf16_narrow_portable (const float *src, guint16 *dst, gsize n)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = g3n_f32_to_bf16 (src[i]);
}

/* The products take nq queries (rows of q, ldq apart) in groups of G that share a KV head: query g reads
 * columns [(g / G)·d, (g / G)·d + d) of each cached row (a row holds every KV head), and gives
 * scores[g·lds + i] = q_g · row_i, or out[g·ldo + c] = Σ_i p[g·ldp + i] · row_i[c].
 *
 * Both walk the rows in order, every KV head of a row before the next row: a KV head's segment of a row is
 * only part of it, and reading the segments of one head down the rows, a stride apart, streams from memory
 * at half the speed (measured: 73 against 24 ns per row of 256 F16). The vector kernels take a group's
 * queries four at a time, so each segment is widened once for the four (grouped-query attention), then one
 * at a time. The weighted sums keep blocks of columns in registers over tiles of SUM_TILE rows (which stay
 * in L1 while their column blocks are visited) and carry the sums from tile to tile through out. */
#define SUM_TILE 16

/* Scalar tails shared by every ISA: columns [c0, d) of one query's products. Inlined into every caller
 * (as GCC chose while the F16 widening was a call), so the vector kernels make no call per row. */
static inline __attribute__ ((always_inline)) float
dot_tail (gboolean bf16, const float *q, const guint16 *row, int c0, int d)
{
  float s = 0;
  for (int c = c0; c < d; c++)
    s += q[c] * half_to_f32 (bf16, row[c]);
  return s;
}

/* add: accumulate onto out (a later tile of rows) instead of overwriting it */
static void
sum_tail (gboolean bf16, const float *p, const guint16 *rows, gsize ld, int n, int c0, int d, float *out,
          gboolean add)
{
  for (int c = c0; c < d; c++) {
    float s = add ? out[c] : 0;
    for (int i = 0; i < n; i++)
      s += p[i] * half_to_f32 (bf16, rows[(gsize) i * ld + c]);
    out[c] = s;
  }
}

/* Portable products: one query at a time, four running sums. */
static inline void
dots_portable (gboolean bf16, const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
               float *scores, gsize lds)
{
  for (int i = 0; i < n; i++)
    for (int g = 0; g < nq; g++) {
      const guint16 *seg = rows + (gsize) i * ld + (gsize) (g / G) * d;
      const float *x = q + g * ldq;
      float acc[4] = { 0 };
      int c = 0;
      for (; c + 4 <= d; c += 4)
        for (int k = 0; k < 4; k++)
          acc[k] += x[c + k] * half_to_f32 (bf16, seg[c + k]);
      scores[g * lds + i] = (acc[0] + acc[1]) + (acc[2] + acc[3]) + dot_tail (bf16, x, seg, c, d);
    }
}

static inline void
sum_portable (gboolean bf16, const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
              float *out, gsize ldo)
{
  for (int g = 0; g < nq; g++)
    memset (out + g * ldo, 0, sizeof (float) * d);
  for (int i = 0; i < n; i++)
    for (int g = 0; g < nq; g++) {
      const guint16 *seg = rows + (gsize) i * ld + (gsize) (g / G) * d;
      float w = p[g * ldp + i], *o = out + g * ldo;
      for (int c = 0; c < d; c++)
        o[c] += w * half_to_f32 (bf16, seg[c]);
    }
}

#ifdef G3N_X86
/* ----------------------------------------------------------------------------------- AVX2 */

#define AVX2_TARGET G3N_TARGET_AVX2

__attribute__ ((always_inline, target (AVX2_TARGET))) static inline __m256
load8_avx2 (gboolean bf16, const guint16 *p)
{
  __m128i h = _mm_loadu_si128 ((const __m128i *) p);
  if (bf16)
    return _mm256_castsi256_ps (_mm256_slli_epi32 (_mm256_cvtepu16_epi32 (h), 16));
  return _mm256_cvtph_ps (h);
}

__attribute__ ((always_inline, target (AVX2_TARGET))) static inline float
hsum_avx2 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

/* Round to nearest even on the integer bits, as g3n_f32_to_bf16 does; NaNs stay quiet NaNs. */
__attribute__ ((target (AVX2_TARGET))) static void
bf16_narrow_avx2 (const float *src, guint16 *dst, gsize n)
{
  const __m256i bias = _mm256_set1_epi32 (0x7fff), one = _mm256_set1_epi32 (1), quiet = _mm256_set1_epi32 (0x40);
  gsize i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps (src + i);
    __m256i u = _mm256_castps_si256 (x);
    __m256i hi = _mm256_srli_epi32 (u, 16);
    __m256i r = _mm256_srli_epi32 (_mm256_add_epi32 (u, _mm256_add_epi32 (bias, _mm256_and_si256 (hi, one))), 16);
    __m256i nan = _mm256_castps_si256 (_mm256_cmp_ps (x, x, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8 (r, _mm256_or_si256 (hi, quiet), nan);
    /* 32-bit lanes to 16: packus works within 128-bit halves, so gather the two low quadwords after it */
    __m256i packed = _mm256_permute4x64_epi64 (_mm256_packus_epi32 (r, r), 0x08);
    _mm_storeu_si128 ((__m128i *) (dst + i), _mm256_castsi256_si128 (packed));
  }
  bf16_narrow_portable (src + i, dst + i, n - i);
}

__attribute__ ((target (AVX2_TARGET))) static void
f16_narrow_avx2 (const float *src, guint16 *dst, gsize n)
{
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128 ((__m128i *) (dst + i), _mm256_cvtps_ph (_mm256_loadu_ps (src + i), _MM_FROUND_TO_NEAREST_INT));
  f16_narrow_portable (src + i, dst + i, n - i);
}

__attribute__ ((target (AVX2_TARGET))) static void
f16_widen_avx2 (const guint16 *src, float *dst, gsize n)
{
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps (dst + i, load8_avx2 (FALSE, src + i));
  f16_widen_portable (src + i, dst + i, n - i);
}

/* One query · one row segment: two running sums. */
__attribute__ ((always_inline, target (AVX2_TARGET))) static inline float
dot1_avx2 (gboolean bf16, const float *q, const guint16 *seg, int d)
{
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  int c = 0;
  for (; c + 16 <= d; c += 16) {
    a0 = _mm256_fmadd_ps (load8_avx2 (bf16, seg + c), _mm256_loadu_ps (q + c), a0);
    a1 = _mm256_fmadd_ps (load8_avx2 (bf16, seg + c + 8), _mm256_loadu_ps (q + c + 8), a1);
  }
  for (; c + 8 <= d; c += 8)
    a0 = _mm256_fmadd_ps (load8_avx2 (bf16, seg + c), _mm256_loadu_ps (q + c), a0);
  return hsum_avx2 (_mm256_add_ps (a0, a1)) + dot_tail (bf16, q, seg, c, d);
}

/* Four queries · one row segment, widened once: s[0], s[lds], s[2·lds], s[3·lds]. */
__attribute__ ((always_inline, target (AVX2_TARGET))) static inline void
dot4_avx2 (gboolean bf16, const float *q, gsize ldq, const guint16 *seg, int d, float *s, gsize lds)
{
  const float *q0 = q, *q1 = q + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps (), a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();
  int c = 0;
  for (; c + 8 <= d; c += 8) {
    __m256 k = load8_avx2 (bf16, seg + c);
    a0 = _mm256_fmadd_ps (k, _mm256_loadu_ps (q0 + c), a0);
    a1 = _mm256_fmadd_ps (k, _mm256_loadu_ps (q1 + c), a1);
    a2 = _mm256_fmadd_ps (k, _mm256_loadu_ps (q2 + c), a2);
    a3 = _mm256_fmadd_ps (k, _mm256_loadu_ps (q3 + c), a3);
  }
  s[0] = hsum_avx2 (a0) + dot_tail (bf16, q0, seg, c, d);
  s[lds] = hsum_avx2 (a1) + dot_tail (bf16, q1, seg, c, d);
  s[2 * lds] = hsum_avx2 (a2) + dot_tail (bf16, q2, seg, c, d);
  s[3 * lds] = hsum_avx2 (a3) + dot_tail (bf16, q3, seg, c, d);
}

__attribute__ ((always_inline, target (AVX2_TARGET))) static inline void
dots_avx2 (gboolean bf16, const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
           float *scores, gsize lds)
{
  for (int i = 0; i < n; i++)
    for (int g0 = 0; g0 < nq; g0 += G) {
      const guint16 *seg = rows + (gsize) i * ld + (gsize) (g0 / G) * d;
      int g = g0, end = MIN (g0 + G, nq);
      for (; g + 4 <= end; g += 4)
        dot4_avx2 (bf16, q + g * ldq, ldq, seg, d, scores + g * lds + i, lds);
      for (; g < end; g++)
        scores[g * lds + i] = dot1_avx2 (bf16, q + g * ldq, seg, d);
    }
}

/* A sum's starting value: zero for the first tile of rows, what earlier tiles left in out for the others. */
__attribute__ ((always_inline, target (AVX2_TARGET))) static inline __m256
start8_avx2 (gboolean add, const float *out)
{
  return add ? _mm256_loadu_ps (out) : _mm256_setzero_ps ();
}

/* Four queries over column blocks of 16: eight sums in registers, each row block widened once. Returns the
 * first column left for sum1 (one query at a time: blocks of 32, then 8, then scalar). */
__attribute__ ((always_inline, target (AVX2_TARGET))) static inline int
sum4_avx2 (gboolean bf16, const float *p, gsize ldp, const guint16 *rows, gsize ld, int n, int d, float *out,
           gsize ldo, gboolean add)
{
  const float *p0 = p, *p1 = p + ldp, *p2 = p1 + ldp, *p3 = p2 + ldp;
  float *o0 = out, *o1 = out + ldo, *o2 = o1 + ldo, *o3 = o2 + ldo;
  int c = 0;
  for (; c + 16 <= d; c += 16) {
    __m256 a0 = start8_avx2 (add, o0 + c), a1 = start8_avx2 (add, o1 + c), a2 = start8_avx2 (add, o2 + c);
    __m256 a3 = start8_avx2 (add, o3 + c), b0 = start8_avx2 (add, o0 + c + 8), b1 = start8_avx2 (add, o1 + c + 8);
    __m256 b2 = start8_avx2 (add, o2 + c + 8), b3 = start8_avx2 (add, o3 + c + 8);
    for (int i = 0; i < n; i++) {
      const guint16 *r = rows + (gsize) i * ld + c;
      __m256 k0 = load8_avx2 (bf16, r), k1 = load8_avx2 (bf16, r + 8);
      __m256 w0 = _mm256_broadcast_ss (p0 + i), w1 = _mm256_broadcast_ss (p1 + i);
      __m256 w2 = _mm256_broadcast_ss (p2 + i), w3 = _mm256_broadcast_ss (p3 + i);
      a0 = _mm256_fmadd_ps (w0, k0, a0), b0 = _mm256_fmadd_ps (w0, k1, b0);
      a1 = _mm256_fmadd_ps (w1, k0, a1), b1 = _mm256_fmadd_ps (w1, k1, b1);
      a2 = _mm256_fmadd_ps (w2, k0, a2), b2 = _mm256_fmadd_ps (w2, k1, b2);
      a3 = _mm256_fmadd_ps (w3, k0, a3), b3 = _mm256_fmadd_ps (w3, k1, b3);
    }
    _mm256_storeu_ps (o0 + c, a0), _mm256_storeu_ps (o0 + c + 8, b0);
    _mm256_storeu_ps (o1 + c, a1), _mm256_storeu_ps (o1 + c + 8, b1);
    _mm256_storeu_ps (o2 + c, a2), _mm256_storeu_ps (o2 + c + 8, b2);
    _mm256_storeu_ps (o3 + c, a3), _mm256_storeu_ps (o3 + c + 8, b3);
  }
  return c;
}

__attribute__ ((always_inline, target (AVX2_TARGET))) static inline void
sum1_avx2 (gboolean bf16, const float *p, const guint16 *rows, gsize ld, int n, int c, int d, float *out,
           gboolean add)
{
  for (; c + 32 <= d; c += 32) {
    __m256 a0 = start8_avx2 (add, out + c), a1 = start8_avx2 (add, out + c + 8);
    __m256 a2 = start8_avx2 (add, out + c + 16), a3 = start8_avx2 (add, out + c + 24);
    for (int i = 0; i < n; i++) {
      const guint16 *r = rows + (gsize) i * ld + c;
      __m256 w = _mm256_broadcast_ss (p + i);
      a0 = _mm256_fmadd_ps (w, load8_avx2 (bf16, r), a0);
      a1 = _mm256_fmadd_ps (w, load8_avx2 (bf16, r + 8), a1);
      a2 = _mm256_fmadd_ps (w, load8_avx2 (bf16, r + 16), a2);
      a3 = _mm256_fmadd_ps (w, load8_avx2 (bf16, r + 24), a3);
    }
    _mm256_storeu_ps (out + c, a0);
    _mm256_storeu_ps (out + c + 8, a1);
    _mm256_storeu_ps (out + c + 16, a2);
    _mm256_storeu_ps (out + c + 24, a3);
  }
  for (; c + 8 <= d; c += 8) {
    __m256 a = start8_avx2 (add, out + c);
    for (int i = 0; i < n; i++)
      a = _mm256_fmadd_ps (_mm256_broadcast_ss (p + i), load8_avx2 (bf16, rows + (gsize) i * ld + c), a);
    _mm256_storeu_ps (out + c, a);
  }
  sum_tail (bf16, p, rows, ld, n, c, d, out, add);
}

__attribute__ ((always_inline, target (AVX2_TARGET))) static inline void
sum_avx2 (gboolean bf16, const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
          float *out, gsize ldo)
{
  for (int i0 = 0; i0 < n; i0 += SUM_TILE) {
    int m = MIN (SUM_TILE, n - i0);
    for (int g0 = 0; g0 < nq; g0 += G) {
      const guint16 *tile = rows + (gsize) i0 * ld + (gsize) (g0 / G) * d;
      int g = g0, end = MIN (g0 + G, nq);
      for (; g + 4 <= end; g += 4) {
        int c = sum4_avx2 (bf16, p + g * ldp + i0, ldp, tile, ld, m, d, out + g * ldo, ldo, i0 > 0);
        for (int k = g; k < g + 4; k++)
          sum1_avx2 (bf16, p + k * ldp + i0, tile, ld, m, c, d, out + k * ldo, i0 > 0);
      }
      for (; g < end; g++)
        sum1_avx2 (bf16, p + g * ldp + i0, tile, ld, m, 0, d, out + g * ldo, i0 > 0);
    }
  }
}

/* -------------------------------------------------------------------------------- AVX-512 */

#define AVX512_TARGET G3N_TARGET_AVX512

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline __m512
load16_avx512 (gboolean bf16, const guint16 *p)
{
  __m256i h = _mm256_loadu_si256 ((const __m256i *) p);
  if (bf16)
    return _mm512_castsi512_ps (_mm512_slli_epi32 (_mm512_cvtepu16_epi32 (h), 16));
  return _mm512_cvtph_ps (h);
}

__attribute__ ((target (AVX512_TARGET))) static void
bf16_narrow_avx512 (const float *src, guint16 *dst, gsize n)
{
  const __m512i bias = _mm512_set1_epi32 (0x7fff), one = _mm512_set1_epi32 (1), quiet = _mm512_set1_epi32 (0x40);
  gsize i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = _mm512_loadu_ps (src + i);
    __m512i u = _mm512_castps_si512 (x);
    __m512i hi = _mm512_srli_epi32 (u, 16);
    __m512i r = _mm512_srli_epi32 (_mm512_add_epi32 (u, _mm512_add_epi32 (bias, _mm512_and_si512 (hi, one))), 16);
    __mmask16 nan = _mm512_cmp_ps_mask (x, x, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32 (r, nan, _mm512_or_si512 (hi, quiet));
    _mm256_storeu_si256 ((__m256i *) (dst + i), _mm512_cvtepi32_epi16 (r));
  }
  bf16_narrow_portable (src + i, dst + i, n - i);
}

__attribute__ ((target (AVX512_TARGET))) static void
f16_narrow_avx512 (const float *src, guint16 *dst, gsize n)
{
  gsize i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256 ((__m256i *) (dst + i),
                         _mm512_cvtps_ph (_mm512_loadu_ps (src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  f16_narrow_portable (src + i, dst + i, n - i);
}

__attribute__ ((target (AVX512_TARGET))) static void
f16_widen_avx512 (const guint16 *src, float *dst, gsize n)
{
  gsize i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps (dst + i, load16_avx512 (FALSE, src + i));
  f16_widen_portable (src + i, dst + i, n - i);
}

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline float
dot1_avx512 (gboolean bf16, const float *q, const guint16 *seg, int d)
{
  __m512 a0 = _mm512_setzero_ps (), a1 = _mm512_setzero_ps ();
  int c = 0;
  for (; c + 32 <= d; c += 32) {
    a0 = _mm512_fmadd_ps (load16_avx512 (bf16, seg + c), _mm512_loadu_ps (q + c), a0);
    a1 = _mm512_fmadd_ps (load16_avx512 (bf16, seg + c + 16), _mm512_loadu_ps (q + c + 16), a1);
  }
  for (; c + 16 <= d; c += 16)
    a0 = _mm512_fmadd_ps (load16_avx512 (bf16, seg + c), _mm512_loadu_ps (q + c), a0);
  return _mm512_reduce_add_ps (_mm512_add_ps (a0, a1)) + dot_tail (bf16, q, seg, c, d);
}

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline void
dot4_avx512 (gboolean bf16, const float *q, gsize ldq, const guint16 *seg, int d, float *s, gsize lds)
{
  const float *q0 = q, *q1 = q + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
  __m512 a0 = _mm512_setzero_ps (), a1 = _mm512_setzero_ps (), a2 = _mm512_setzero_ps (), a3 = _mm512_setzero_ps ();
  int c = 0;
  for (; c + 16 <= d; c += 16) {
    __m512 k = load16_avx512 (bf16, seg + c);
    a0 = _mm512_fmadd_ps (k, _mm512_loadu_ps (q0 + c), a0);
    a1 = _mm512_fmadd_ps (k, _mm512_loadu_ps (q1 + c), a1);
    a2 = _mm512_fmadd_ps (k, _mm512_loadu_ps (q2 + c), a2);
    a3 = _mm512_fmadd_ps (k, _mm512_loadu_ps (q3 + c), a3);
  }
  s[0] = _mm512_reduce_add_ps (a0) + dot_tail (bf16, q0, seg, c, d);
  s[lds] = _mm512_reduce_add_ps (a1) + dot_tail (bf16, q1, seg, c, d);
  s[2 * lds] = _mm512_reduce_add_ps (a2) + dot_tail (bf16, q2, seg, c, d);
  s[3 * lds] = _mm512_reduce_add_ps (a3) + dot_tail (bf16, q3, seg, c, d);
}

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline void
dots_avx512 (gboolean bf16, const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
             float *scores, gsize lds)
{
  for (int i = 0; i < n; i++)
    for (int g0 = 0; g0 < nq; g0 += G) {
      const guint16 *seg = rows + (gsize) i * ld + (gsize) (g0 / G) * d;
      int g = g0, end = MIN (g0 + G, nq);
      for (; g + 4 <= end; g += 4)
        dot4_avx512 (bf16, q + g * ldq, ldq, seg, d, scores + g * lds + i, lds);
      for (; g < end; g++)
        scores[g * lds + i] = dot1_avx512 (bf16, q + g * ldq, seg, d);
    }
}

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline __m512
start16_avx512 (gboolean add, const float *out)
{
  return add ? _mm512_loadu_ps (out) : _mm512_setzero_ps ();
}

/* Four queries over column blocks of 32: eight sums in registers, each row block widened once. */
__attribute__ ((always_inline, target (AVX512_TARGET))) static inline int
sum4_avx512 (gboolean bf16, const float *p, gsize ldp, const guint16 *rows, gsize ld, int n, int d, float *out,
             gsize ldo, gboolean add)
{
  const float *p0 = p, *p1 = p + ldp, *p2 = p1 + ldp, *p3 = p2 + ldp;
  float *o0 = out, *o1 = out + ldo, *o2 = o1 + ldo, *o3 = o2 + ldo;
  int c = 0;
  for (; c + 32 <= d; c += 32) {
    __m512 a0 = start16_avx512 (add, o0 + c), a1 = start16_avx512 (add, o1 + c), a2 = start16_avx512 (add, o2 + c);
    __m512 a3 = start16_avx512 (add, o3 + c), b0 = start16_avx512 (add, o0 + c + 16);
    __m512 b1 = start16_avx512 (add, o1 + c + 16), b2 = start16_avx512 (add, o2 + c + 16);
    __m512 b3 = start16_avx512 (add, o3 + c + 16);
    for (int i = 0; i < n; i++) {
      const guint16 *r = rows + (gsize) i * ld + c;
      __m512 k0 = load16_avx512 (bf16, r), k1 = load16_avx512 (bf16, r + 16);
      __m512 w0 = _mm512_set1_ps (p0[i]), w1 = _mm512_set1_ps (p1[i]);
      __m512 w2 = _mm512_set1_ps (p2[i]), w3 = _mm512_set1_ps (p3[i]);
      a0 = _mm512_fmadd_ps (w0, k0, a0), b0 = _mm512_fmadd_ps (w0, k1, b0);
      a1 = _mm512_fmadd_ps (w1, k0, a1), b1 = _mm512_fmadd_ps (w1, k1, b1);
      a2 = _mm512_fmadd_ps (w2, k0, a2), b2 = _mm512_fmadd_ps (w2, k1, b2);
      a3 = _mm512_fmadd_ps (w3, k0, a3), b3 = _mm512_fmadd_ps (w3, k1, b3);
    }
    _mm512_storeu_ps (o0 + c, a0), _mm512_storeu_ps (o0 + c + 16, b0);
    _mm512_storeu_ps (o1 + c, a1), _mm512_storeu_ps (o1 + c + 16, b1);
    _mm512_storeu_ps (o2 + c, a2), _mm512_storeu_ps (o2 + c + 16, b2);
    _mm512_storeu_ps (o3 + c, a3), _mm512_storeu_ps (o3 + c + 16, b3);
  }
  return c;
}

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline void
sum1_avx512 (gboolean bf16, const float *p, const guint16 *rows, gsize ld, int n, int c, int d, float *out,
             gboolean add)
{
  for (; c + 64 <= d; c += 64) {
    __m512 a0 = start16_avx512 (add, out + c), a1 = start16_avx512 (add, out + c + 16);
    __m512 a2 = start16_avx512 (add, out + c + 32), a3 = start16_avx512 (add, out + c + 48);
    for (int i = 0; i < n; i++) {
      const guint16 *r = rows + (gsize) i * ld + c;
      __m512 w = _mm512_set1_ps (p[i]);
      a0 = _mm512_fmadd_ps (w, load16_avx512 (bf16, r), a0);
      a1 = _mm512_fmadd_ps (w, load16_avx512 (bf16, r + 16), a1);
      a2 = _mm512_fmadd_ps (w, load16_avx512 (bf16, r + 32), a2);
      a3 = _mm512_fmadd_ps (w, load16_avx512 (bf16, r + 48), a3);
    }
    _mm512_storeu_ps (out + c, a0);
    _mm512_storeu_ps (out + c + 16, a1);
    _mm512_storeu_ps (out + c + 32, a2);
    _mm512_storeu_ps (out + c + 48, a3);
  }
  for (; c + 16 <= d; c += 16) {
    __m512 a = start16_avx512 (add, out + c);
    for (int i = 0; i < n; i++)
      a = _mm512_fmadd_ps (_mm512_set1_ps (p[i]), load16_avx512 (bf16, rows + (gsize) i * ld + c), a);
    _mm512_storeu_ps (out + c, a);
  }
  sum_tail (bf16, p, rows, ld, n, c, d, out, add);
}

__attribute__ ((always_inline, target (AVX512_TARGET))) static inline void
sum_avx512 (gboolean bf16, const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
            float *out, gsize ldo)
{
  for (int i0 = 0; i0 < n; i0 += SUM_TILE) {
    int m = MIN (SUM_TILE, n - i0);
    for (int g0 = 0; g0 < nq; g0 += G) {
      const guint16 *tile = rows + (gsize) i0 * ld + (gsize) (g0 / G) * d;
      int g = g0, end = MIN (g0 + G, nq);
      for (; g + 4 <= end; g += 4) {
        int c = sum4_avx512 (bf16, p + g * ldp + i0, ldp, tile, ld, m, d, out + g * ldo, ldo, i0 > 0);
        for (int k = g; k < g + 4; k++)
          sum1_avx512 (bf16, p + k * ldp + i0, tile, ld, m, c, d, out + k * ldo, i0 > 0);
      }
      for (; g < end; g++)
        sum1_avx512 (bf16, p + g * ldp + i0, tile, ld, m, 0, d, out + g * ldo, i0 > 0);
    }
  }
}
#endif

/* Entry points per dtype: the bf16 flag is a constant in each, so the inlined loads take one form. */
#define HALF_PRODUCTS(isa, attr)                                                                                  \
  attr static void f16_dots_##isa (const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld,      \
                                   int n, int d, float *scores, gsize lds)                                        \
  {                                                                                                               \
    dots_##isa (FALSE, q, ldq, nq, G, rows, ld, n, d, scores, lds);                                               \
  }                                                                                                               \
  attr static void bf16_dots_##isa (const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld,     \
                                    int n, int d, float *scores, gsize lds)                                       \
  {                                                                                                               \
    dots_##isa (TRUE, q, ldq, nq, G, rows, ld, n, d, scores, lds);                                                \
  }                                                                                                               \
  attr static void f16_sum_##isa (const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld, int n, \
                                  int d, float *out, gsize ldo)                                                   \
  {                                                                                                               \
    sum_##isa (FALSE, p, ldp, nq, G, rows, ld, n, d, out, ldo);                                                   \
  }                                                                                                               \
  attr static void bf16_sum_##isa (const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld,      \
                                   int n, int d, float *out, gsize ldo)                                           \
  {                                                                                                               \
    sum_##isa (TRUE, p, ldp, nq, G, rows, ld, n, d, out, ldo);                                                    \
  }

HALF_PRODUCTS (portable, )
#ifdef G3N_X86
HALF_PRODUCTS (avx2, __attribute__ ((target (AVX2_TARGET))))
HALF_PRODUCTS (avx512, __attribute__ ((target (AVX512_TARGET))))
#endif

/* ------------------------------------------------------------------------------ dispatch */

typedef struct {
  NarrowFn narrow[2]; /* [0] F16, [1] BF16 */
  WidenFn widen_f16;  /* BF16 widening is a shift GCC vectorises by itself (g3n_to_f32) */
  DotsFn dots[2];
  SumFn sum[2];
} HalfTable;

static const HalfTable portable_table = { { f16_narrow_portable, bf16_narrow_portable }, f16_widen_portable,
                                          { f16_dots_portable, bf16_dots_portable },
                                          { f16_sum_portable, bf16_sum_portable } };
#ifdef G3N_X86
static const HalfTable avx2_table = { { f16_narrow_avx2, bf16_narrow_avx2 }, f16_widen_avx2,
                                      { f16_dots_avx2, bf16_dots_avx2 }, { f16_sum_avx2, bf16_sum_avx2 } };
static const HalfTable avx512_table = { { f16_narrow_avx512, bf16_narrow_avx512 }, f16_widen_avx512,
                                        { f16_dots_avx512, bf16_dots_avx512 }, { f16_sum_avx512, bf16_sum_avx512 } };
#endif

static gpointer
choose_table (gpointer unused)
{
  G3nIsa isa = g3n_cpu_isa (); /* honours G3N_KERNEL */
  const HalfTable *t = &portable_table;
#ifdef G3N_X86
  if (isa == G3N_ISA_AVX512)
    t = &avx512_table;
  else if (isa == G3N_ISA_AVX2)
    t = &avx2_table;
#endif
  return (gpointer) t;
}

static const HalfTable *
table (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose_table, NULL);
}

static int
half_index (G3nDType dtype)
{
  g_return_val_if_fail (dtype == G3N_DTYPE_F16 || dtype == G3N_DTYPE_BF16, 0);
  return dtype == G3N_DTYPE_BF16;
}

void
g3n_to_f32 (G3nDType dtype, const void *src, float *dst, gsize n)
{
  switch (dtype) {
  case G3N_DTYPE_F32:
    memcpy (dst, src, n * sizeof (float));
    break;
  case G3N_DTYPE_BF16: {
    /* integer shifts in blocks of constant length, which GCC's -O2 vectoriser takes; the bits are the
     * fp32 value */
    const guint16 *h = src;
    guint32 bits[16];
    gsize i = 0;
    for (; i + 16 <= n; i += 16) {
      for (int k = 0; k < 16; k++)
        bits[k] = (guint32) h[i + k] << 16;
      memcpy (dst + i, bits, sizeof bits);
    }
    for (; i < n; i++) {
      bits[0] = (guint32) h[i] << 16;
      memcpy (dst + i, bits, 4);
    }
    break;
  }
  case G3N_DTYPE_F16:
    for (gsize i = 0; i < n; i++)
      dst[i] = g3n_f16_to_f32 (((const guint16 *) src)[i]);
    break;
  default:
    g_assert_not_reached (); /* the loader admits only float weights */
  }
}


void
g3n_from_f32 (G3nDType dtype, const float *src, void *dst, gsize n)
{
  if (dtype == G3N_DTYPE_F32)
    memcpy (dst, src, n * sizeof (float));
  else
    table ()->narrow[half_index (dtype)] (src, dst, n);
}

void
g3n_half_to_f32 (G3nDType dtype, const void *src, float *dst, gsize n)
{
  if (dtype == G3N_DTYPE_F16)
    table ()->widen_f16 (src, dst, n);
  else
    g3n_to_f32 (dtype, src, dst, n);
}

void
g3n_half_dots (G3nDType dtype, const float *q, gsize ldq, int nq, int G, const guint16 *rows, gsize ld, int n, int d,
               float *scores, gsize lds)
{
  table ()->dots[half_index (dtype)] (q, ldq, nq, MAX (G, 1), rows, ld, n, d, scores, lds);
}

void
g3n_half_weighted_sum (G3nDType dtype, const float *p, gsize ldp, int nq, int G, const guint16 *rows, gsize ld, int n,
                       int d, float *out, gsize ldo)
{
  table ()->sum[half_index (dtype)] (p, ldp, nq, MAX (G, 1), rows, ld, n, d, out, ldo);
}
