/* quant-dot.c — dot products of a Q8_0 / Q4_0 weight row with an int8-quantised activation row.
 *
 * Every ISA forms the same exact integer sum per block of 32 and scales it by d_w·d_x in fp32:
 *  - portable: plain integer loops;
 *  - AVX2: vpmaddubsw needs one unsigned operand, so Q8_0 multiplies |w| by x carrying w's sign (products
 *    fit the int16 pair sums because codes stay within ±127); Q4_0 codes are already unsigned;
 *  - AVX-512 VNNI: vpdpbusd sums four u8·s8 products straight into int32, two blocks per 512-bit register;
 *    decode also has two-row forms (q8_vnni2, q4_vnni2), same results, sharing each activation load.
 * Q4_0 codes carry a +8 offset, removed per block as 8·d_w·(d_x·Σx) (the activation's `s`).
 * The activation rows are quantised here too, per ISA, bit for bit alike (q8row_*).
 * The ISA follows g3n_cpu_isa() (cpu.h, G3N_KERNEL), with AVX-512 machines lacking VNNI using AVX2 here.
 */
#include "quant.h"

#include <math.h>

#include "cpu.h"
#ifdef G3N_X86
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------------- portable */

static float
q8_portable (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs, int nb)
{
  const gint8 *q = w;
  float s = 0;
  for (int k = 0; k < nb; k++) {
    int sum = 0;
    for (int i = 0; i < G3N_QBLOCK; i++)
      sum += q[k * G3N_QBLOCK + i] * xq[k * G3N_QBLOCK + i];
    s += g3n_f16_to_f32 (wd[k]) * xd[k] * (float) sum;
  }
  return s;
}

static float
q4_portable (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs, int nb)
{
  const guint8 *q = w;
  const int half = G3N_QBLOCK / 2;
  float s = 0;
  for (int k = 0; k < nb; k++) {
    const gint8 *x = xq + k * G3N_QBLOCK;
    int sum = 0;
    for (int i = 0; i < half; i++)
      sum += (q[k * half + i] & 15) * x[i] + (q[k * half + i] >> 4) * x[i + half];
    float dw = g3n_f16_to_f32 (wd[k]);
    s += dw * xd[k] * (float) sum - 8.0f * dw * xs[k];
  }
  return s;
}

/* Activation rows (G3nQ8Rows): per block d = max|x| / 127 and codes rounded half away from zero. */
static void
q8row_portable (const float *x, int cols, gint8 *q, float *d, float *s, gint32 *qsum)
{
  for (int b = 0, nb = g3n_quant_blocks (cols); b < nb; b++) {
    const float *v = x + b * G3N_QBLOCK;
    int m = MIN (G3N_QBLOCK, cols - b * G3N_QBLOCK);
    gint8 *qb = q + b * G3N_QBLOCK;
    float amax = 0;
    for (int i = 0; i < m; i++)
      amax = fmaxf (amax, fabsf (v[i]));
    float db = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0;
    int sum = 0;
    for (int i = 0; i < G3N_QBLOCK; i++) {
      int c = i < m ? (int) (v[i] * id + (v[i] >= 0 ? 0.5f : -0.5f)) : 0;
      qb[i] = (gint8) CLAMP (c, -127, 127);
      sum += qb[i];
    }
    d[b] = db;
    if (s)
      s[b] = db * (float) sum;
    if (qsum)
      qsum[b] = sum;
  }
}

float
g3n_quant_weight (G3nQuantType type, const void *w, const guint16 *wd, int k)
{
  int b = k / G3N_QBLOCK, i = k % G3N_QBLOCK, half = G3N_QBLOCK / 2;
  float d = g3n_f16_to_f32 (wd[b]);
  if (type == G3N_QUANT_Q8_0)
    return d * ((const gint8 *) w)[k];
  guint8 byte = ((const guint8 *) w)[b * half + i % half];
  return d * ((i < half ? byte & 15 : byte >> 4) - 8);
}

static void
axpy_q8_portable (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1, float *y)
{
  for (int r = 0; r < n; r++) {
    const gint8 *q = (const gint8 *) w[r];
    for (int b = b0; b < b1; b++) {
      float s = a[r] * g3n_f16_to_f32 (wd[r][b]);
      for (int i = b * G3N_QBLOCK; i < (b + 1) * G3N_QBLOCK; i++)
        y[i] += s * q[i];
    }
  }
}

static void
axpy_q4_portable (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1, float *y)
{
  const int half = G3N_QBLOCK / 2;
  for (int r = 0; r < n; r++) {
    const guint8 *q = w[r];
    for (int b = b0; b < b1; b++) {
      float s = a[r] * g3n_f16_to_f32 (wd[r][b]);
      float *yb = y + b * G3N_QBLOCK;
      for (int i = 0; i < half; i++) {
        yb[i] += s * ((q[b * half + i] & 15) - 8);
        yb[i + half] += s * ((q[b * half + i] >> 4) - 8);
      }
    }
  }
}

#ifdef G3N_X86
/* ----------------------------------------------------------------------------------- AVX2 */

/* A block of one stored row as four vectors of 8 signed codes (the low 8 bytes of each): Q4_0's with their
 * offset removed, so each product below is exactly code · scale as in the portable loop. */
__attribute__ ((target (G3N_TARGET_AVX2))) static inline void
block_codes_avx2 (G3nQuantType type, const guint8 *w, int b, __m128i part[4])
{
  if (type == G3N_QUANT_Q8_0) {
    for (int i = 0; i < 4; i++)
      part[i] = _mm_loadl_epi64 ((const __m128i *) (w + b * G3N_QBLOCK + 8 * i));
    return;
  }
  const __m128i low4 = _mm_set1_epi8 (15), eight = _mm_set1_epi8 (8);
  __m128i v = _mm_loadu_si128 ((const __m128i *) (w + b * G3N_QBLOCK / 2));
  __m128i lo = _mm_sub_epi8 (_mm_and_si128 (v, low4), eight);
  __m128i hi = _mm_sub_epi8 (_mm_and_si128 (_mm_srli_epi16 (v, 4), low4), eight);
  part[0] = lo, part[1] = _mm_srli_si128 (lo, 8), part[2] = hi, part[3] = _mm_srli_si128 (hi, 8);
}

/* The by-input products keep a block's 32 outputs in registers while the n ≤ 4 rows add into them: y is
 * loaded and stored once per block, not once per row. */
__attribute__ ((target (G3N_TARGET_AVX2))) static inline void
axpy_avx2 (G3nQuantType type, int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1,
           float *y)
{
  for (int b = b0; b < b1; b++) {
    float *yb = y + b * G3N_QBLOCK;
    __m256 acc[4];
    for (int i = 0; i < 4; i++)
      acc[i] = _mm256_loadu_ps (yb + 8 * i);
    for (int r = 0; r < n; r++) {
      __m256 s = _mm256_set1_ps (a[r] * _cvtsh_ss (wd[r][b]));
      __m128i part[4];
      block_codes_avx2 (type, w[r], b, part);
      for (int i = 0; i < 4; i++)
        acc[i] = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (part[i])), s, acc[i]);
    }
    for (int i = 0; i < 4; i++)
      _mm256_storeu_ps (yb + 8 * i, acc[i]);
  }
}

__attribute__ ((target (G3N_TARGET_AVX2))) static void
axpy_q8_avx2 (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1, float *y)
{
  axpy_avx2 (G3N_QUANT_Q8_0, n, a, w, wd, b0, b1, y);
}

__attribute__ ((target (G3N_TARGET_AVX2))) static void
axpy_q4_avx2 (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1, float *y)
{
  axpy_avx2 (G3N_QUANT_Q4_0, n, a, w, wd, b0, b1, y);
}

__attribute__ ((target ("avx2,fma"))) static inline float
hsum256 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

/* u8 codes · s8 activations of one block → 8 int32 partial sums as fp32 */
__attribute__ ((target ("avx2,fma"))) static inline __m256
block_dot_avx2 (__m256i u, __m256i x)
{
  __m256i pairs = _mm256_maddubs_epi16 (u, x);
  return _mm256_cvtepi32_ps (_mm256_madd_epi16 (pairs, _mm256_set1_epi16 (1)));
}

/* Written once for R rows (1, or 2 at once sharing each activation load), as the VNNI kernels below:
 * every row in the same order of operations whatever R. */
__attribute__ ((target (G3N_TARGET_AVX2), always_inline)) static inline void
q8_avx2_rows (int R, const gint8 *const *q, const guint16 *const *wd, const gint8 *xq, const float *xd, int nb,
              float *const *out)
{
  __m256 acc[2][2];
  for (int r = 0; r < R; r++)
    acc[r][0] = acc[r][1] = _mm256_setzero_ps ();
  for (int k = 0; k < nb; k++) {
    __m256i xv = _mm256_loadu_si256 ((const __m256i *) (xq + k * G3N_QBLOCK));
    for (int r = 0; r < R; r++) {
      __m256i wv = _mm256_loadu_si256 ((const __m256i *) (q[r] + k * G3N_QBLOCK));
      __m256 p = block_dot_avx2 (_mm256_sign_epi8 (wv, wv), _mm256_sign_epi8 (xv, wv));
      acc[r][k & 1] = _mm256_fmadd_ps (p, _mm256_set1_ps (_cvtsh_ss (wd[r][k]) * xd[k]), acc[r][k & 1]);
    }
  }
  for (int r = 0; r < R; r++)
    *out[r] = hsum256 (_mm256_add_ps (acc[r][0], acc[r][1]));
}

__attribute__ ((target (G3N_TARGET_AVX2))) static float
q8_avx2 (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs, int nb)
{
  float y;
  q8_avx2_rows (1, (const gint8 *const[]) { w }, (const guint16 *const[]) { wd }, xq, xd, nb, (float *const[]) { &y });
  return y;
}

__attribute__ ((target (G3N_TARGET_AVX2))) static void
q8_avx2_2 (const void *w0, const void *w1, const guint16 *wd0, const guint16 *wd1, const gint8 *xq, const float *xd,
           const float *xs, int nb, float *out0, float *out1)
{
  q8_avx2_rows (2, (const gint8 *const[]) { w0, w1 }, (const guint16 *const[]) { wd0, wd1 }, xq, xd, nb,
                (float *const[]) { out0, out1 });
}

__attribute__ ((target (G3N_TARGET_AVX2), always_inline)) static inline void
q4_avx2_rows (int R, const guint8 *const *q, const guint16 *const *wd, const gint8 *xq, const float *xd,
              const float *xs, int nb, float *const *out)
{
  __m256 acc[2][2];
  float corr[2] = { 0, 0 };
  for (int r = 0; r < R; r++)
    acc[r][0] = acc[r][1] = _mm256_setzero_ps ();
  for (int k = 0; k < nb; k++) {
    __m256i xv = _mm256_loadu_si256 ((const __m256i *) (xq + k * G3N_QBLOCK));
    for (int r = 0; r < R; r++) {
      __m128i v = _mm_loadu_si128 ((const __m128i *) (q[r] + k * G3N_QBLOCK / 2));
      /* low nibbles are elements 0-15, high nibbles 16-31 */
      __m256i codes = _mm256_and_si256 (_mm256_set_m128i (_mm_srli_epi16 (v, 4), v), _mm256_set1_epi8 (15));
      float dw = _cvtsh_ss (wd[r][k]);
      acc[r][k & 1] = _mm256_fmadd_ps (block_dot_avx2 (codes, xv), _mm256_set1_ps (dw * xd[k]), acc[r][k & 1]);
      corr[r] += dw * xs[k];
    }
  }
  for (int r = 0; r < R; r++)
    *out[r] = hsum256 (_mm256_add_ps (acc[r][0], acc[r][1])) - 8.0f * corr[r];
}

__attribute__ ((target (G3N_TARGET_AVX2))) static float
q4_avx2 (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs, int nb)
{
  float y;
  q4_avx2_rows (1, (const guint8 *const[]) { w }, (const guint16 *const[]) { wd }, xq, xd, xs, nb,
                (float *const[]) { &y });
  return y;
}

__attribute__ ((target (G3N_TARGET_AVX2))) static void
q4_avx2_2 (const void *w0, const void *w1, const guint16 *wd0, const guint16 *wd1, const gint8 *xq, const float *xd,
           const float *xs, int nb, float *out0, float *out1)
{
  q4_avx2_rows (2, (const guint8 *const[]) { w0, w1 }, (const guint16 *const[]) { wd0, wd1 }, xq, xd, xs, nb,
                (float *const[]) { out0, out1 });
}


/* The portable quantiser's arithmetic lane by lane: the same max, the same divisions (scalar, once per
 * block), x·id then ± 0.5 rounded separately (an opaque register stops GCC from fusing them into an FMA,
 * which would round once and move some codes), truncation, and the same clamp. x86 converts NaN to
 * INT_MIN in both, which clamps to -127. */
#define NO_FUSE(v) __asm__ ("" : "+x" (v))

__attribute__ ((target ("avx2,fma"))) static void
q8row_avx2 (const float *x, int cols, gint8 *q, float *d, float *s, gint32 *qsum)
{
  const __m256 absmask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff)), zero = _mm256_setzero_ps ();
  const __m256i lo = _mm256_set1_epi32 (-127), hi = _mm256_set1_epi32 (127);
  const __m256i order = _mm256_setr_epi32 (0, 4, 1, 5, 2, 6, 3, 7);
  for (int b = 0, nb = g3n_quant_blocks (cols); b < nb; b++) {
    int m = MIN (G3N_QBLOCK, cols - b * G3N_QBLOCK);
    __m256 v[4], amax = zero;
    for (int i = 0; i < 4; i++) {
      __m256i in = _mm256_cmpgt_epi32 (_mm256_set1_epi32 (m - 8 * i), _mm256_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7));
      v[i] = _mm256_maskload_ps (x + b * G3N_QBLOCK + 8 * i, in);
      amax = _mm256_max_ps (_mm256_and_ps (v[i], absmask), amax); /* NaN lanes keep amax, as fmaxf */
    }
    __m128 a4 = _mm_max_ps (_mm256_castps256_ps128 (amax), _mm256_extractf128_ps (amax, 1));
    a4 = _mm_max_ps (a4, _mm_movehl_ps (a4, a4));
    float am = _mm_cvtss_f32 (_mm_max_ss (a4, _mm_movehdup_ps (a4)));
    float db = am / 127.0f, id = am > 0 ? 127.0f / am : 0;
    __m256i c[4], sum = _mm256_setzero_si256 ();
    for (int i = 0; i < 4; i++) {
      __m256 p = _mm256_mul_ps (v[i], _mm256_set1_ps (id));
      NO_FUSE (p);
      __m256 half = _mm256_blendv_ps (_mm256_set1_ps (-0.5f), _mm256_set1_ps (0.5f),
                                      _mm256_cmp_ps (v[i], zero, _CMP_GE_OQ));
      c[i] = _mm256_min_epi32 (_mm256_max_epi32 (_mm256_cvttps_epi32 (_mm256_add_ps (p, half)), lo), hi);
      sum = _mm256_add_epi32 (sum, c[i]);
    }
    /* int32 → int8 (no saturation: already within ±127), back in element order */
    __m256i bytes = _mm256_packs_epi16 (_mm256_packs_epi32 (c[0], c[1]), _mm256_packs_epi32 (c[2], c[3]));
    _mm256_storeu_si256 ((__m256i *) (q + b * G3N_QBLOCK), _mm256_permutevar8x32_epi32 (bytes, order));
    __m128i s4 = _mm_add_epi32 (_mm256_castsi256_si128 (sum), _mm256_extracti128_si256 (sum, 1));
    s4 = _mm_add_epi32 (s4, _mm_shuffle_epi32 (s4, 0x4e));
    int total = _mm_cvtsi128_si32 (_mm_add_epi32 (s4, _mm_shuffle_epi32 (s4, 0xb1)));
    d[b] = db;
    if (s)
      s[b] = db * (float) total;
    if (qsum)
      qsum[b] = total;
  }
}

/* ------------------------------------------------------------------------------- AVX-512 VNNI */

#define VNNI_TARGET G3N_TARGET_VNNI

/* Lanes 0-7 get s[p], lanes 8-15 s[p + 1]: the scales of the two blocks in one register. */
__attribute__ ((target (VNNI_TARGET))) static inline __m512
pair_scales (__m512 s, int p)
{
  const __m512i pair = _mm512_set_epi32 (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps (_mm512_add_epi32 (pair, _mm512_set1_epi32 (p)), s);
}

/* Lanes 4j..4j+3 get s[p + j]: the scales of four blocks, one per 128-bit lane. */
__attribute__ ((target (VNNI_TARGET))) static inline __m512
quad_scales (__m512 s, int p)
{
  const __m512i quad = _mm512_set_epi32 (3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps (_mm512_add_epi32 (quad, _mm512_set1_epi32 (p)), s);
}

/* Two Q8_0 blocks (64 bytes of codes) · their activations: |w| · (x with w's sign), u8 · s8 as vpdpbusd
 * wants; `bytes` masks a lone last block. */
__attribute__ ((target (VNNI_TARGET))) static inline __m512i
pair_dot (const gint8 *codes, __m512i xv, __mmask64 bytes)
{
  const __m512i zero = _mm512_setzero_si512 ();
  __m512i wv = _mm512_maskz_loadu_epi8 (bytes, codes);
  __m512i x_signed = _mm512_mask_sub_epi8 (xv, _mm512_movepi8_mask (wv), zero, xv);
  return _mm512_dpbusd_epi32 (zero, _mm512_abs_epi8 (wv), x_signed);
}

/* The decode kernels are written once for R rows (1, or 2 at once: each activation load and scale then
 * serves both rows, which counts where decode is compute-bound — one Q4_0 row from cache takes ~12 cycles
 * per 128 weights, the two activation loads and the scale shuffle as dear as the two vpdpbusd). Every row
 * goes through the same operations in the same order whatever R, so a row's result does not depend on
 * whether it had a partner. Inlined with R constant, the row loops unroll: each row's loads are then
 * their own instructions, as the hardware prefetchers want. */
__attribute__ ((target (VNNI_TARGET), always_inline)) static inline void
q8_vnni_rows (int R, const gint8 *const *q, const guint16 *const *wd, const gint8 *xq, const float *xd, int nb,
              float *const *out)
{
  __m512 acc[2][2];
  for (int r = 0; r < R; r++)
    acc[r][0] = acc[r][1] = _mm512_setzero_ps ();
  for (int k0 = 0; k0 < nb; k0 += 16) {
    int m = MIN (16, nb - k0);
    __mmask16 km = (__mmask16) ((1u << m) - 1);
    __m512 dx = _mm512_maskz_loadu_ps (km, xd + k0), s[2];
    for (int r = 0; r < R; r++)
      s[r] = _mm512_mul_ps (_mm512_cvtph_ps (_mm256_maskz_loadu_epi16 (km, wd[r] + k0)), dx);
    for (int p = 0; p < m; p += 2) {
      gsize at = (gsize) (k0 + p) * G3N_QBLOCK;
      __mmask64 bytes = p + 2 <= m ? ~(__mmask64) 0 : 0xffffffffull; /* a lone last block */
      __m512i xv = _mm512_maskz_loadu_epi8 (bytes, xq + at);
      for (int r = 0; r < R; r++)
        acc[r][(p >> 1) & 1] = _mm512_fmadd_ps (_mm512_cvtepi32_ps (pair_dot (q[r] + at, xv, bytes)),
                                                pair_scales (s[r], p), acc[r][(p >> 1) & 1]);
    }
  }
  for (int r = 0; r < R; r++)
    *out[r] = _mm512_reduce_add_ps (_mm512_add_ps (acc[r][0], acc[r][1]));
}

__attribute__ ((target (VNNI_TARGET))) static float
q8_vnni (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs, int nb)
{
  float y;
  q8_vnni_rows (1, (const gint8 *const[]) { w }, (const guint16 *const[]) { wd }, xq, xd, nb, (float *const[]) { &y });
  return y;
}

__attribute__ ((target (VNNI_TARGET))) static void
q8_vnni2 (const void *w0, const void *w1, const guint16 *wd0, const guint16 *wd1, const gint8 *xq, const float *xd,
          const float *xs, int nb, float *out0, float *out1)
{
  q8_vnni_rows (2, (const gint8 *const[]) { w0, w1 }, (const guint16 *const[]) { wd0, wd1 }, xq, xd, nb,
                (float *const[]) { out0, out1 });
}

/* Four Q4_0 blocks (64 bytes of codes) · their activations in nibble order (low halves, high halves). */
__attribute__ ((target (VNNI_TARGET))) static inline __m512i
quad_dot (const guint8 *codes, __m512i xlo, __m512i xhi)
{
  const __m512i low4 = _mm512_set1_epi8 (15);
  __m512i v = _mm512_loadu_si512 (codes);
  __m512i lo = _mm512_and_si512 (v, low4), hi = _mm512_and_si512 (_mm512_srli_epi16 (v, 4), low4);
  return _mm512_dpbusd_epi32 (_mm512_dpbusd_epi32 (_mm512_setzero_si512 (), lo, xlo), hi, xhi);
}

/* Activations in nibble order (g3n_q8_rows_nibble_order): a 64-byte load holds four blocks' codes, whose
 * low nibbles are the blocks' first halves lane by lane and high nibbles their second halves, matching the
 * two 64-byte halves of the activations' group: two vpdpbusd per four blocks, no shuffles (twice the blocks
 * per instruction of the natural-order pairs, which need an insert and a permute). Leftover blocks after
 * the last whole group of four are in natural order and go in pairs. R rows as q8_vnni_rows. */
__attribute__ ((target (VNNI_TARGET), always_inline)) static inline void
q4_vnni_rows (int R, const guint8 *const *q, const guint16 *const *wd, const gint8 *xq, const float *xd,
              const float *xs, int nb, float *const *out)
{
  const __m512i zero = _mm512_setzero_si512 (), low4 = _mm512_set1_epi8 (15);
  /* [A lo, B lo, A hi, B hi] (128-bit lanes) → [A lo, A hi, B lo, B hi]: both blocks in natural order */
  const __m512i order = _mm512_set_epi64 (7, 6, 3, 2, 5, 4, 1, 0);
  __m512 acc[2][2], corr[2];
  for (int r = 0; r < R; r++)
    acc[r][0] = acc[r][1] = corr[r] = _mm512_setzero_ps ();
  for (int k0 = 0; k0 < nb; k0 += 16) {
    int m = MIN (16, nb - k0), p = 0;
    __mmask16 km = (__mmask16) ((1u << m) - 1);
    __m512 dx = _mm512_maskz_loadu_ps (km, xd + k0), sx = _mm512_maskz_loadu_ps (km, xs + k0), s[2];
    for (int r = 0; r < R; r++) {
      __m512 dw = _mm512_cvtph_ps (_mm256_maskz_loadu_epi16 (km, wd[r] + k0));
      s[r] = _mm512_mul_ps (dw, dx);
      corr[r] = _mm512_fmadd_ps (dw, sx, corr[r]);
    }
    for (; p + 4 <= m; p += 4) {
      const gint8 *xp = xq + (gsize) (k0 + p) * G3N_QBLOCK;
      __m512i xlo = _mm512_loadu_si512 (xp), xhi = _mm512_loadu_si512 (xp + 64);
      for (int r = 0; r < R; r++)
        acc[r][(p >> 2) & 1] = _mm512_fmadd_ps (_mm512_cvtepi32_ps (quad_dot (q[r] + (gsize) (k0 + p) * G3N_QBLOCK / 2,
                                                                              xlo, xhi)),
                                                quad_scales (s[r], p), acc[r][(p >> 2) & 1]);
    }
    for (; p < m; p += 2) {
      gboolean two = p + 2 <= m;
      __m512i xv = _mm512_maskz_loadu_epi8 (two ? ~(__mmask64) 0 : 0xffffffffull, xq + (gsize) (k0 + p) * G3N_QBLOCK);
      for (int r = 0; r < R; r++) {
        __m256i v = _mm256_maskz_loadu_epi8 (two ? 0xffffffffu : 0xffffu, q[r] + (gsize) (k0 + p) * G3N_QBLOCK / 2);
        __m512i codes = _mm512_inserti64x4 (_mm512_castsi256_si512 (v), _mm256_srli_epi16 (v, 4), 1);
        codes = _mm512_permutexvar_epi64 (order, _mm512_and_si512 (codes, low4));
        acc[r][0] = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_dpbusd_epi32 (zero, codes, xv)), pair_scales (s[r], p),
                                     acc[r][0]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    *out[r] = _mm512_reduce_add_ps (_mm512_add_ps (acc[r][0], acc[r][1])) - 8.0f * _mm512_reduce_add_ps (corr[r]);
}

__attribute__ ((target (VNNI_TARGET))) static float
q4_vnni (const void *w, const guint16 *wd, const gint8 *xq, const float *xd, const float *xs, int nb)
{
  float y;
  q4_vnni_rows (1, (const guint8 *const[]) { w }, (const guint16 *const[]) { wd }, xq, xd, xs, nb,
                (float *const[]) { &y });
  return y;
}

__attribute__ ((target (VNNI_TARGET))) static void
q4_vnni2 (const void *w0, const void *w1, const guint16 *wd0, const guint16 *wd1, const gint8 *xq, const float *xd,
          const float *xs, int nb, float *out0, float *out1)
{
  q4_vnni_rows (2, (const guint8 *const[]) { w0, w1 }, (const guint16 *const[]) { wd0, wd1 }, xq, xd, xs, nb,
                (float *const[]) { out0, out1 });
}

/* As the AVX2 by-input products, a block's 32 outputs in two registers, its codes as two vectors of 16. */
__attribute__ ((target (VNNI_TARGET ",f16c"))) static inline void
axpy_avx512 (G3nQuantType type, int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0,
             int b1, float *y)
{
  const __m128i low4 = _mm_set1_epi8 (15), eight = _mm_set1_epi8 (8);
  for (int b = b0; b < b1; b++) {
    float *yb = y + b * G3N_QBLOCK;
    __m512 acc0 = _mm512_loadu_ps (yb), acc1 = _mm512_loadu_ps (yb + 16);
    for (int r = 0; r < n; r++) {
      __m512 s = _mm512_set1_ps (a[r] * _cvtsh_ss (wd[r][b]));
      __m128i c0, c1;
      if (type == G3N_QUANT_Q8_0) {
        c0 = _mm_loadu_si128 ((const __m128i *) (w[r] + b * G3N_QBLOCK));
        c1 = _mm_loadu_si128 ((const __m128i *) (w[r] + b * G3N_QBLOCK + 16));
      } else {
        __m128i v = _mm_loadu_si128 ((const __m128i *) (w[r] + b * G3N_QBLOCK / 2));
        c0 = _mm_sub_epi8 (_mm_and_si128 (v, low4), eight);
        c1 = _mm_sub_epi8 (_mm_and_si128 (_mm_srli_epi16 (v, 4), low4), eight);
      }
      acc0 = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (c0)), s, acc0);
      acc1 = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (c1)), s, acc1);
    }
    _mm512_storeu_ps (yb, acc0);
    _mm512_storeu_ps (yb + 16, acc1);
  }
}

__attribute__ ((target (VNNI_TARGET ",f16c"))) static void
axpy_q8_avx512 (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1, float *y)
{
  axpy_avx512 (G3N_QUANT_Q8_0, n, a, w, wd, b0, b1, y);
}

__attribute__ ((target (VNNI_TARGET ",f16c"))) static void
axpy_q4_avx512 (int n, const float *a, const guint8 *const *w, const guint16 *const *wd, int b0, int b1, float *y)
{
  axpy_avx512 (G3N_QUANT_Q4_0, n, a, w, wd, b0, b1, y);
}

/* The AVX2 quantiser's steps on 16 lanes, with masked loads for a partial last block. */
__attribute__ ((target (VNNI_TARGET))) static void
q8row_avx512 (const float *x, int cols, gint8 *q, float *d, float *s, gint32 *qsum)
{
  const __m512 zero = _mm512_setzero_ps ();
  const __m512i lo = _mm512_set1_epi32 (-127), hi = _mm512_set1_epi32 (127);
  for (int b = 0, nb = g3n_quant_blocks (cols); b < nb; b++) {
    int m = MIN (G3N_QBLOCK, cols - b * G3N_QBLOCK);
    __mmask16 k0 = (__mmask16) ((1u << MIN (m, 16)) - 1), k1 = (__mmask16) ((1u << MAX (m - 16, 0)) - 1);
    __m512 v0 = _mm512_maskz_loadu_ps (k0, x + b * G3N_QBLOCK);
    __m512 v1 = _mm512_maskz_loadu_ps (k1, x + b * G3N_QBLOCK + 16);
    /* NaN lanes keep the running max, as fmaxf */
    __m512 amax = _mm512_max_ps (_mm512_abs_ps (v1), _mm512_max_ps (_mm512_abs_ps (v0), zero));
    float am = _mm512_reduce_max_ps (amax);
    float db = am / 127.0f, id = am > 0 ? 127.0f / am : 0;
    __m512i c[2];
    for (int i = 0; i < 2; i++) {
      __m512 v = i ? v1 : v0;
      __m512 p = _mm512_mul_ps (v, _mm512_set1_ps (id));
      NO_FUSE (p);
      __m512 half = _mm512_mask_blend_ps (_mm512_cmp_ps_mask (v, zero, _CMP_GE_OQ), _mm512_set1_ps (-0.5f),
                                          _mm512_set1_ps (0.5f));
      c[i] = _mm512_min_epi32 (_mm512_max_epi32 (_mm512_cvttps_epi32 (_mm512_add_ps (p, half)), lo), hi);
    }
    _mm_storeu_si128 ((__m128i *) (q + b * G3N_QBLOCK), _mm512_cvtepi32_epi8 (c[0]));
    _mm_storeu_si128 ((__m128i *) (q + b * G3N_QBLOCK + 16), _mm512_cvtepi32_epi8 (c[1]));
    int total = _mm512_reduce_add_epi32 (_mm512_add_epi32 (c[0], c[1]));
    d[b] = db;
    if (s)
      s[b] = db * (float) total;
    if (qsum)
      qsum[b] = total;
  }
}
#endif

/* ------------------------------------------------------------------------------ dispatch */

typedef struct {
  const char *name;
  G3nQDotFn q8, q4;
  G3nQDot2Fn q8x2, q4x2; /* two rows at once, or NULL */
  G3nQAxpyFn axpy8, axpy4;
  G3nQ8RowFn q8row;
  gboolean q4_nibble_order; /* q4 reads activations in nibble order (g3n_q8_rows_nibble_order) */
} QDotTable;

static const QDotTable portable_table = { "portable", q8_portable, q4_portable, NULL, NULL, axpy_q8_portable, axpy_q4_portable,
                                          q8row_portable, FALSE };
#ifdef G3N_X86
static const QDotTable avx2_table = { "avx2", q8_avx2, q4_avx2, q8_avx2_2, q4_avx2_2, axpy_q8_avx2, axpy_q4_avx2, q8row_avx2, FALSE };
static const QDotTable vnni_table = { "vnni", q8_vnni, q4_vnni, q8_vnni2, q4_vnni2, axpy_q8_avx512, axpy_q4_avx512, q8row_avx512, TRUE };
#endif

static gpointer
choose_table (gpointer unused)
{
  G3nIsa isa = g3n_cpu_isa (); /* honours G3N_KERNEL */
  const QDotTable *t = &portable_table;
#ifdef G3N_X86
  if (isa == G3N_ISA_AVX512)
    t = g3n_cpu_has (G3N_CPU_NEEDS_VNNI) ? &vnni_table : &avx2_table;
  else if (isa == G3N_ISA_AVX2)
    t = &avx2_table;
#endif
  return (gpointer) t;
}

static const QDotTable *
table (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose_table, NULL);
}

const char *
g3n_qdot_isa (void)
{
  return table ()->name;
}

G3nQDotFn
g3n_qdot_kernel (G3nQuantType type)
{
  return type == G3N_QUANT_Q4_0 ? table ()->q4 : table ()->q8;
}

G3nQDot2Fn
g3n_qdot2_kernel (G3nQuantType type)
{
  return type == G3N_QUANT_Q4_0 ? table ()->q4x2 : table ()->q8x2;
}

gboolean
g3n_qdot_nibble_order (G3nQuantType type)
{
  return type == G3N_QUANT_Q4_0 && table ()->q4_nibble_order;
}

G3nQAxpyFn
g3n_qaxpy_kernel (G3nQuantType type)
{
  return type == G3N_QUANT_Q4_0 ? table ()->axpy4 : table ()->axpy8;
}

G3nQ8RowFn
g3n_q8_row_kernel (void)
{
  return table ()->q8row;
}
