/* dot.c — dot products of a weight row (BF16, F16 or F32, as stored) with an fp32 activation vector.
 *
 * These carry decode: each weight is read once per token, so they run at memory speed when vectorised.
 * Weights are widened to fp32 in registers (BF16: a 16-bit shift; F16: F16C), never rounded the other
 * way, so every ISA computes the reference's fp32 math up to summation order. The ISA is chosen once at
 * run time (g3n_cpu_isa, cpu.h); G3N_KERNEL=portable|avx2|avx512 forces one (tests use it to cover every path).
 */
#include "cpu.h"
#include "half.h"
#include "kernels.h"

#include <string.h>
#ifdef G3N_X86
#include <immintrin.h>
#endif

typedef float (*DotFn) (const void *w, const float *x, int n);
/* Four consecutive rows (ldw bytes apart) with one x: each x load serves four rows, which matters once x
 * outgrows L1 (8192-wide rows: 32 KiB; measured 20 -> 26 GB/s on E2B's [2048 x 8192] down_proj, while
 * 2048-wide rows, whose x stays in L1, stream faster one row at a time). */
typedef void (*Dot4Fn) (const void *w, gsize ldw, const float *x, int n, float *out);
/* y += a · w: the by-input products (a weight row per non-zero input). */
typedef void (*AxpyFn) (float a, const void *w, float *y, int n);

/* ------------------------------------------------------------------------------- portable */

static float
bf16_portable (const void *w, const float *x, int n)
{
  const guint16 *h = w;
  float acc[4] = { 0 };
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++)
      acc[k] += g3n_bf16_to_f32 (h[i + k]) * x[i + k];
  float s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < n; i++)
    s += g3n_bf16_to_f32 (h[i]) * x[i];
  return s;
}

static float
f16_portable (const void *w, const float *x, int n)
{
  float buf[256], s = 0;
  for (int i = 0; i < n; i += 256) {
    int m = MIN (256, n - i);
    g3n_to_f32 (G3N_DTYPE_F16, (const guint16 *) w + i, buf, m);
    for (int k = 0; k < m; k++)
      s += buf[k] * x[i + k];
  }
  return s;
}

static float
f32_portable (const void *w, const float *x, int n)
{
  const float *f = w;
  float acc[4] = { 0 };
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++)
      acc[k] += f[i + k] * x[i + k];
  float s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < n; i++)
    s += f[i] * x[i];
  return s;
}

/* Any float dtype: widened a piece at a time, then a loop the compiler vectorises. */
static void
axpy_portable (G3nDType dtype, float a, const void *w, float *y, int n)
{
  float buf[256];
  gsize esize = g3n_dtype_size (dtype);
  for (int i = 0; i < n; i += 256) {
    int m = MIN (256, n - i);
    g3n_to_f32 (dtype, (const guint8 *) w + (gsize) i * esize, buf, m);
    for (int k = 0; k < m; k++)
      y[i + k] += a * buf[k];
  }
}

static void
axpy_bf16_portable (float a, const void *w, float *y, int n)
{
  axpy_portable (G3N_DTYPE_BF16, a, w, y, n);
}

static void
axpy_f16_portable (float a, const void *w, float *y, int n)
{
  axpy_portable (G3N_DTYPE_F16, a, w, y, n);
}

static void
axpy_f32_portable (float a, const void *w, float *y, int n)
{
  axpy_portable (G3N_DTYPE_F32, a, w, y, n);
}

#ifdef G3N_X86
/* ----------------------------------------------------------------------------------- AVX2 */

__attribute__ ((target ("avx2,fma"))) static inline float
hsum256 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

__attribute__ ((target ("avx2,fma"))) static inline __m256
bf16x8_avx2 (const guint16 *p)
{
  __m256i w = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) p));
  return _mm256_castsi256_ps (_mm256_slli_epi32 (w, 16));
}

__attribute__ ((target ("avx2,fma"))) static float
bf16_avx2 (const void *w, const float *x, int n)
{
  const guint16 *h = w;
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps (), a2 = _mm256_setzero_ps (), a3 = _mm256_setzero_ps ();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps (bf16x8_avx2 (h + i), _mm256_loadu_ps (x + i), a0);
    a1 = _mm256_fmadd_ps (bf16x8_avx2 (h + i + 8), _mm256_loadu_ps (x + i + 8), a1);
    a2 = _mm256_fmadd_ps (bf16x8_avx2 (h + i + 16), _mm256_loadu_ps (x + i + 16), a2);
    a3 = _mm256_fmadd_ps (bf16x8_avx2 (h + i + 24), _mm256_loadu_ps (x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps (bf16x8_avx2 (h + i), _mm256_loadu_ps (x + i), a0);
  float s = hsum256 (_mm256_add_ps (_mm256_add_ps (a0, a1), _mm256_add_ps (a2, a3)));
  return s + bf16_portable (h + i, x + i, n - i);
}

__attribute__ ((target ("avx2,fma"))) static void
axpy_bf16_avx2 (float a, const void *w, float *y, int n)
{
  const guint16 *h = w;
  __m256 av = _mm256_set1_ps (a);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps (y + i, _mm256_fmadd_ps (av, bf16x8_avx2 (h + i), _mm256_loadu_ps (y + i)));
    _mm256_storeu_ps (y + i + 8, _mm256_fmadd_ps (av, bf16x8_avx2 (h + i + 8), _mm256_loadu_ps (y + i + 8)));
  }
  axpy_bf16_portable (a, h + i, y + i, n - i);
}

__attribute__ ((target ("avx2,fma,f16c"))) static float
f16_avx2 (const void *w, const float *x, int n)
{
  const guint16 *h = w;
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps (_mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (h + i))), _mm256_loadu_ps (x + i), a0);
    a1 = _mm256_fmadd_ps (_mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (h + i + 8))),
                          _mm256_loadu_ps (x + i + 8), a1);
  }
  float s = hsum256 (_mm256_add_ps (a0, a1));
  return s + f16_portable (h + i, x + i, n - i);
}

__attribute__ ((target ("avx2,fma"))) static float
f32_avx2 (const void *w, const float *x, int n)
{
  const float *f = w;
  __m256 a0 = _mm256_setzero_ps (), a1 = _mm256_setzero_ps ();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps (_mm256_loadu_ps (f + i), _mm256_loadu_ps (x + i), a0);
    a1 = _mm256_fmadd_ps (_mm256_loadu_ps (f + i + 8), _mm256_loadu_ps (x + i + 8), a1);
  }
  float s = hsum256 (_mm256_add_ps (a0, a1));
  return s + f32_portable (f + i, x + i, n - i);
}

/* -------------------------------------------------------------------------------- AVX-512 */

__attribute__ ((target ("avx512f"))) static inline __m512
bf16x16_avx512 (const guint16 *p)
{
  __m512i w = _mm512_cvtepu16_epi32 (_mm256_loadu_si256 ((const __m256i *) p));
  return _mm512_castsi512_ps (_mm512_slli_epi32 (w, 16));
}

__attribute__ ((target ("avx512f"))) static float
bf16_avx512 (const void *w, const float *x, int n)
{
  const guint16 *h = w;
  __m512 a0 = _mm512_setzero_ps (), a1 = _mm512_setzero_ps (), a2 = _mm512_setzero_ps (), a3 = _mm512_setzero_ps ();
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_fmadd_ps (bf16x16_avx512 (h + i), _mm512_loadu_ps (x + i), a0);
    a1 = _mm512_fmadd_ps (bf16x16_avx512 (h + i + 16), _mm512_loadu_ps (x + i + 16), a1);
    a2 = _mm512_fmadd_ps (bf16x16_avx512 (h + i + 32), _mm512_loadu_ps (x + i + 32), a2);
    a3 = _mm512_fmadd_ps (bf16x16_avx512 (h + i + 48), _mm512_loadu_ps (x + i + 48), a3);
  }
  for (; i + 16 <= n; i += 16)
    a0 = _mm512_fmadd_ps (bf16x16_avx512 (h + i), _mm512_loadu_ps (x + i), a0);
  float s = _mm512_reduce_add_ps (_mm512_add_ps (_mm512_add_ps (a0, a1), _mm512_add_ps (a2, a3)));
  return s + bf16_portable (h + i, x + i, n - i);
}

/* bf16_avx512 on four rows (ldw bytes apart) at once, in its order of operations per row, so the same
 * results: each activation load serves the four rows, and four rows far apart are four long streams, which
 * reach more of the memory bandwidth from one core than one stream does. */
__attribute__ ((target ("avx512f"))) static void
bf16x4_avx512 (const void *w, gsize ldw, const float *x, int n, float *out)
{
  const guint16 *h[4];
  __m512 a[4][4];
  for (int r = 0; r < 4; r++) {
    h[r] = (const guint16 *) ((const guint8 *) w + r * ldw);
    a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps ();
  }
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512 x0 = _mm512_loadu_ps (x + i), x1 = _mm512_loadu_ps (x + i + 16);
    __m512 x2 = _mm512_loadu_ps (x + i + 32), x3 = _mm512_loadu_ps (x + i + 48);
    for (int r = 0; r < 4; r++) {
      a[r][0] = _mm512_fmadd_ps (bf16x16_avx512 (h[r] + i), x0, a[r][0]);
      a[r][1] = _mm512_fmadd_ps (bf16x16_avx512 (h[r] + i + 16), x1, a[r][1]);
      a[r][2] = _mm512_fmadd_ps (bf16x16_avx512 (h[r] + i + 32), x2, a[r][2]);
      a[r][3] = _mm512_fmadd_ps (bf16x16_avx512 (h[r] + i + 48), x3, a[r][3]);
    }
  }
  for (; i + 16 <= n; i += 16) {
    __m512 x0 = _mm512_loadu_ps (x + i);
    for (int r = 0; r < 4; r++)
      a[r][0] = _mm512_fmadd_ps (bf16x16_avx512 (h[r] + i), x0, a[r][0]);
  }
  for (int r = 0; r < 4; r++)
    out[r] = _mm512_reduce_add_ps (_mm512_add_ps (_mm512_add_ps (a[r][0], a[r][1]), _mm512_add_ps (a[r][2], a[r][3])))
             + bf16_portable (h[r] + i, x + i, n - i);
}

__attribute__ ((target ("avx512f"))) static void
axpy_bf16_avx512 (float a, const void *w, float *y, int n)
{
  const guint16 *h = w;
  __m512 av = _mm512_set1_ps (a);
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm512_storeu_ps (y + i, _mm512_fmadd_ps (av, bf16x16_avx512 (h + i), _mm512_loadu_ps (y + i)));
    _mm512_storeu_ps (y + i + 16, _mm512_fmadd_ps (av, bf16x16_avx512 (h + i + 16), _mm512_loadu_ps (y + i + 16)));
  }
  axpy_bf16_portable (a, h + i, y + i, n - i);
}

__attribute__ ((target ("avx512f"))) static float
f16_avx512 (const void *w, const float *x, int n)
{
  const guint16 *h = w;
  __m512 a0 = _mm512_setzero_ps (), a1 = _mm512_setzero_ps ();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps (_mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (h + i))), _mm512_loadu_ps (x + i),
                          a0);
    a1 = _mm512_fmadd_ps (_mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (h + i + 16))),
                          _mm512_loadu_ps (x + i + 16), a1);
  }
  float s = _mm512_reduce_add_ps (_mm512_add_ps (a0, a1));
  return s + f16_portable (h + i, x + i, n - i);
}

__attribute__ ((target ("avx512f"))) static float
f32_avx512 (const void *w, const float *x, int n)
{
  const float *f = w;
  __m512 a0 = _mm512_setzero_ps (), a1 = _mm512_setzero_ps ();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps (_mm512_loadu_ps (f + i), _mm512_loadu_ps (x + i), a0);
    a1 = _mm512_fmadd_ps (_mm512_loadu_ps (f + i + 16), _mm512_loadu_ps (x + i + 16), a1);
  }
  float s = _mm512_reduce_add_ps (_mm512_add_ps (a0, a1));
  return s + f32_portable (f + i, x + i, n - i);
}
#endif

/* ------------------------------------------------------------------------------ dispatch */

typedef struct {
  DotFn bf16, f16, f32;
  AxpyFn axpy_bf16, axpy_f16, axpy_f32; /* F16/F32 checkpoints are rare: the portable loops serve them */
  Dot4Fn bf16x4; /* NULL: four single-row calls */
} DotTable;

static const DotTable portable_table = { bf16_portable, f16_portable, f32_portable,
                                         axpy_bf16_portable, axpy_f16_portable, axpy_f32_portable, NULL };
#ifdef G3N_X86
static const DotTable avx2_table = { bf16_avx2, f16_avx2, f32_avx2,
                                     axpy_bf16_avx2, axpy_f16_portable, axpy_f32_portable, NULL };
static const DotTable avx512_table = { bf16_avx512, f16_avx512, f32_avx512,
                                       axpy_bf16_avx512, axpy_f16_portable, axpy_f32_portable, bf16x4_avx512 };
#endif

static gpointer
choose_table (gpointer unused)
{
  const DotTable *t = &portable_table;
#ifdef G3N_X86
  G3nIsa isa = g3n_cpu_isa (); /* honours G3N_KERNEL */
  if (isa == G3N_ISA_AVX512)
    t = &avx512_table;
  else if (isa == G3N_ISA_AVX2)
    t = &avx2_table;
#endif
  return (gpointer) t;
}

static const DotTable *
table (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose_table, NULL);
}

float
g3n_dot_weight (G3nDType dtype, const void *w, const float *x, int n)
{
  const DotTable *t = table ();
  switch (dtype) {
  case G3N_DTYPE_BF16:
    return t->bf16 (w, x, n);
  case G3N_DTYPE_F16:
    return t->f16 (w, x, n);
  default:
    return t->f32 (w, x, n);
  }
}

void
g3n_axpy_weight (G3nDType dtype, float a, const void *w, float *y, int n)
{
  const DotTable *t = table ();
  switch (dtype) {
  case G3N_DTYPE_BF16:
    t->axpy_bf16 (a, w, y, n);
    break;
  case G3N_DTYPE_F16:
    t->axpy_f16 (a, w, y, n);
    break;
  default:
    t->axpy_f32 (a, w, y, n);
  }
}

void
g3n_dot_weight4 (G3nDType dtype, const void *w, gsize ldw, const float *x, int n, float *out)
{
  const DotTable *t = table ();
  if (dtype == G3N_DTYPE_BF16 && t->bf16x4) {
    t->bf16x4 (w, ldw, x, n, out);
    return;
  }
  for (int r = 0; r < 4; r++)
    out[r] = g3n_dot_weight (dtype, (const guint8 *) w + r * ldw, x, n);
}
