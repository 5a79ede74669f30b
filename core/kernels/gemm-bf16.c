/* gemm-bf16.c — several tokens times a weight matrix in its storage dtype (prefill): y[n, rows] = x · Wᵀ.
 *
 * Weights (BF16 mostly; F16 and F32 too) are the big operand and are read straight from the mapping: each
 * weight is widened to fp32 in a register (BF16: a 16-bit shift) and broadcast across a vector of tokens,
 * so there is no pass that widens or packs the weights. The activations are the small operand: they are
 * repacked once per call into token panels, element (k, t) at k·wb + t, so one vector load gives one
 * input feature for 16 (AVX-512) or 8 (AVX2, portable) tokens. A micro-kernel keeps a tile of MR weight
 * rows × up to 64 tokens in registers and runs down a block of K; the blocks' sums are then added up, so
 * every output is fp32 FMA chains in k order, as in the reference (only the summation order differs).
 *
 * Blocking: threads split the weight rows (so each reads its own share of the weights once per chunk of
 * NC tokens); within a thread, K is cut into blocks of KC so that the panels of a token chunk stay in L2
 * (NC·KC·4 bytes) while the weight rows of one tile (MR·KC elements) stay in L1 and are reused by every
 * token block of the chunk. Partial sums between K blocks wait in a per-thread buffer, for a group of row
 * tiles at a time. With few weight rows (small projections), threads split the token blocks instead.
 *
 * On a Zen 4 core (AVX-512 at 2×256 bits, 117 GFLOP/s fp32 FMA peak) the AVX-512 kernel reaches ~108
 * GFLOP/s on E2B's MLP shapes × 256-512 tokens, against 75-86 for widening + OpenBLAS sgemm, whose packing
 * of the widened copy and the widening itself cost over a quarter of its time; vdpbf16ps on BF16
 * activations reaches ~210 (peak 234). Two threads scale ~1.9x (tools/bench-kernels gemm).
 *
 * Opt-in (g3n_kernels_set_bf16_activations, G3N_BF16_ACTIVATIONS=1): activations rounded to BF16 at
 * packing, as llama.cpp does for BF16 weights. On AVX512_BF16 machines the panels then hold (k, k+1)
 * pairs and vdpbf16ps does two multiply-adds per lane, twice the FMA rate; elsewhere the same rounded
 * activations go through the exact kernels, so the numbers agree across ISAs up to summation order.
 */
#include "gemm.h"
#include "threadpool.h"

#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "half.h"
#ifdef G3N_X86
#include <immintrin.h>
#include "transpose.h"
#endif

/* Weight rows per tile, on every ISA. AVX-512: 5 rows × 4 vectors of 16 tokens = 20 accumulators, with
 * registers to spare for both halves of a BF16 pair step (6 rows fit 24 accumulators in the 32 zmm but
 * spilled in the pair steps; measured 5 ~4% faster than 6, 4 or 7). AVX2: 5 × 2 vectors of 8 in 16 ymm. */
#define MR 5
/* Most tokens per tile (AVX-512: 4 vectors of 16). */
#define TB_MAX 64
/* Tokens per chunk: each tile's weight rows (MR·KC elements, L1) serve the chunk's NC / tb token blocks,
 * whose panels for one K block (NC·KC·4 bytes = 256 KiB; pairs NC·KC_PAIRS·2 = 512 KiB) stay in L2. */
#define NC 128
/* K block. Each block's sums start from zero and are added to the running total, which also bounds the
 * fp32 rounding: one FMA chain over all of K=2048 errs about 4x more than OpenBLAS's blocked sums, chains
 * of 512 match it. The BF16-activation path has coarser inputs than that rounding and does twice the work
 * per k, so it takes longer blocks (measured ~5% faster). */
#define KC 512
#define KC_PAIRS 2048
/* Row tiles whose partial sums wait between K blocks: 96 tiles × a chunk's 128 tokens × 5 rows × 4 bytes =
 * 240 KiB, in L2, however many rows the matrix has (a 262144-row lm_head would need 64 MiB otherwise).
 * Each group reads the chunk's panels once more, from L3: about as many bytes as its weights. */
#define ROW_GROUP 96

typedef void (*TileFn) (const void *w, gsize ldw, int mr, const void *p, int wb, int kc, const float *cin,
                        float *cout);

/* ------------------------------------------------------------------------------- settings */

static gint gemm_path = -1, bf16_activations = -1; /* -1: not yet read from the environment */
enum { GEMM_OWN, GEMM_BLAS, GEMM_AUTO };

static gint
setting (gint *value, gint from_env)
{
  gint v = g_atomic_int_get (value);
  if (v < 0) {
    /* a setter that ran meanwhile wins */
    g_atomic_int_compare_and_exchange (value, -1, from_env);
    v = g_atomic_int_get (value);
  }
  return v;
}

void
g3n_kernels_set_gemm_blas (gboolean on)
{
  g_atomic_int_set (&gemm_path, on ? GEMM_BLAS : GEMM_OWN);
}

gboolean
g3n_gemm_use_blas (void)
{
  gint v = g_atomic_int_get (&gemm_path);
  if (v < 0) {
    const char *e = g_getenv ("G3N_GEMM");
    gint from_env = GEMM_AUTO;
    if (e && g_str_equal (e, "blas"))
      from_env = GEMM_BLAS;
    else if (e && g_str_equal (e, "own"))
      from_env = GEMM_OWN;
    v = setting (&gemm_path, from_env);
  }
  /* Without AVX2 only the portable C kernels are left, several times slower than OpenBLAS's tuned ones. */
  return v == GEMM_BLAS || (v == GEMM_AUTO && g3n_cpu_isa () == G3N_ISA_PORTABLE);
}

void
g3n_kernels_set_bf16_activations (gboolean on)
{
  g_atomic_int_set (&bf16_activations, on ? 1 : 0);
}

gboolean
g3n_kernels_bf16_activations (void)
{
  gint v = g_atomic_int_get (&bf16_activations);
  if (v < 0) {
    const char *e = g_getenv ("G3N_BF16_ACTIVATIONS");
    v = setting (&bf16_activations, e && g_str_equal (e, "1"));
  }
  return v > 0;
}

/* ------------------------------------------------------------------------------- portable */

/* Plain C over 8-token rows that the compiler may vectorise; weights widened one at a time. */
#define PVL 8

static inline __attribute__ ((always_inline)) void
tile_portable_dt (G3nDType dt, const void *w, gsize ldw, int mr, const float *p, int kc, const float *cin,
                  float *cout)
{
  float acc[MR][PVL];
  const guint8 *row[MR];
  gsize es = dt == G3N_DTYPE_F32 ? 4 : 2;
  for (int i = 0; i < MR; i++) {
    /* rows past the matrix repeat its last row: same work, results dropped by the caller */
    row[i] = (const guint8 *) w + (gsize) MIN (i, mr - 1) * ldw * es;
    for (int t = 0; t < PVL; t++)
      acc[i][t] = 0.0f;
  }
  for (int k = 0; k < kc; k++) {
    const float *xk = p + (gsize) k * PVL;
    for (int i = 0; i < MR; i++) {
      float wi;
      if (dt == G3N_DTYPE_BF16) {
        guint16 h;
        memcpy (&h, row[i] + 2 * k, 2);
        wi = g3n_bf16_to_f32 (h);
      } else if (dt == G3N_DTYPE_F16) {
        guint16 h;
        memcpy (&h, row[i] + 2 * k, 2);
        wi = g3n_f16_to_f32 (h);
      } else {
        memcpy (&wi, row[i] + 4 * k, 4);
      }
      for (int t = 0; t < PVL; t++)
        acc[i][t] += wi * xk[t];
    }
  }
  for (int i = 0; i < MR; i++)
    for (int t = 0; t < PVL; t++)
      cout[i * PVL + t] = cin ? cin[i * PVL + t] + acc[i][t] : acc[i][t];
}

static void
tile_portable_bf16 (const void *w, gsize ldw, int mr, const void *p, int wb, int kc, const float *cin, float *cout)
{
  tile_portable_dt (G3N_DTYPE_BF16, w, ldw, mr, p, kc, cin, cout);
}

static void
tile_portable_f16 (const void *w, gsize ldw, int mr, const void *p, int wb, int kc, const float *cin, float *cout)
{
  tile_portable_dt (G3N_DTYPE_F16, w, ldw, mr, p, kc, cin, cout);
}

static void
tile_portable_f32 (const void *w, gsize ldw, int mr, const void *p, int wb, int kc, const float *cin, float *cout)
{
  tile_portable_dt (G3N_DTYPE_F32, w, ldw, mr, p, kc, cin, cout);
}

#ifdef G3N_X86
/* ----------------------------------------------------------------------------------- AVX2 */

/* 5 rows × 2 vectors of 8 tokens: 10 accumulators + 2 activation vectors + the weight and the BF16 mask. */
#define AVX2_TARGET G3N_TARGET_AVX2

static inline __attribute__ ((always_inline, target (AVX2_TARGET))) void
tile_avx2_dt (G3nDType dt, const int NV, const void *w, gsize ldw, int mr, const float *p, int wb, int kc,
              const float *cin, float *cout)
{
  const gsize es = dt == G3N_DTYPE_F32 ? 4 : 2;
  const guint8 *row[MR];
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    row[i] = (const guint8 *) w + (gsize) MIN (i, mr - 1) * ldw * es;
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++)
      acc[i][v] = _mm256_setzero_ps ();
  }
  int k = 0;
  if (dt == G3N_DTYPE_BF16) {
    /* A 32-bit broadcast holds weights k and k+1: shifted left, k's bits; masked, k+1's. */
    const __m256i high = _mm256_set1_epi32 ((int) 0xffff0000u);
    for (; k + 2 <= kc; k += 2) {
      __m256 x[2];
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++)
        x[v] = _mm256_loadu_ps (p + (gsize) k * wb + 8 * v);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++) {
        guint32 u;
        memcpy (&u, row[i] + 2 * k, 4);
        __m256 wi = _mm256_castsi256_ps (_mm256_slli_epi32 (_mm256_set1_epi32 ((int) u), 16));
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
          acc[i][v] = _mm256_fmadd_ps (wi, x[v], acc[i][v]);
      }
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++)
        x[v] = _mm256_loadu_ps (p + (gsize) (k + 1) * wb + 8 * v);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++) {
        /* the same 32 bits as above, loaded afresh: an opaque pointer stops the compiler from keeping the
         * MR broadcasts of the first half live, which would spill accumulators */
        const guint8 *pair = row[i] + 2 * k;
        __asm__ ("" : "+r" (pair));
        guint32 u;
        memcpy (&u, pair, 4);
        __m256 wi = _mm256_castsi256_ps (_mm256_and_si256 (_mm256_set1_epi32 ((int) u), high));
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
          acc[i][v] = _mm256_fmadd_ps (wi, x[v], acc[i][v]);
      }
    }
  }
  for (; k < kc; k++) { /* F16, F32, and BF16's odd last k */
    __m256 x[2];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++)
      x[v] = _mm256_loadu_ps (p + (gsize) k * wb + 8 * v);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m256 wi;
      if (dt == G3N_DTYPE_F32) {
        float f;
        memcpy (&f, row[i] + 4 * k, 4);
        wi = _mm256_set1_ps (f);
      } else {
        guint16 h;
        memcpy (&h, row[i] + 2 * k, 2);
        wi = dt == G3N_DTYPE_BF16 ? _mm256_set1_ps (g3n_bf16_to_f32 (h))
                                  : _mm256_cvtph_ps (_mm_set1_epi16 ((short) h));
      }
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++)
        acc[i][v] = _mm256_fmadd_ps (wi, x[v], acc[i][v]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++)
      _mm256_storeu_ps (cout + i * wb + 8 * v,
                        cin ? _mm256_add_ps (_mm256_loadu_ps (cin + i * wb + 8 * v), acc[i][v]) : acc[i][v]);
}

#define AVX2_TILE(name, dt)                                                                                       \
  __attribute__ ((target (AVX2_TARGET))) static void name (const void *w, gsize ldw, int mr, const void *p,      \
                                                            int wb, int kc, const float *cin, float *cout)        \
  {                                                                                                               \
    if (wb == 16)                                                                                                 \
      tile_avx2_dt (dt, 2, w, ldw, mr, p, wb, kc, cin, cout);                                                     \
    else                                                                                                          \
      tile_avx2_dt (dt, 1, w, ldw, mr, p, wb, kc, cin, cout);                                                     \
  }
AVX2_TILE (tile_avx2_bf16, G3N_DTYPE_BF16)
AVX2_TILE (tile_avx2_f16, G3N_DTYPE_F16)
AVX2_TILE (tile_avx2_f32, G3N_DTYPE_F32)

/* -------------------------------------------------------------------------------- AVX-512 */

#define AVX512_TARGET G3N_TARGET_AVX512

/* MR rows × NV vectors of 16 tokens. BF16 runs k in pairs: the even k's weights (shifted) meet its row of
 * activations, then the odd k's (masked) meet the next, so only NV activation vectors are live at once. */
static inline __attribute__ ((always_inline, target (AVX512_TARGET))) void
tile_avx512_dt (G3nDType dt, const int NV, const void *w, gsize ldw, int mr, const float *p, int wb, int kc,
                const float *cin, float *cout)
{
  const gsize es = dt == G3N_DTYPE_F32 ? 4 : 2;
  const guint8 *row[MR];
  __m512 acc[MR][4];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    row[i] = (const guint8 *) w + (gsize) MIN (i, mr - 1) * ldw * es;
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      acc[i][v] = _mm512_setzero_ps ();
  }
  int k = 0;
  if (dt == G3N_DTYPE_BF16) {
    const __m512i high = _mm512_set1_epi32 ((int) 0xffff0000u);
    for (; k + 2 <= kc; k += 2) {
      __m512 x[4];
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        x[v] = _mm512_loadu_ps (p + (gsize) k * wb + 16 * v);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++) {
        guint32 u;
        memcpy (&u, row[i] + 2 * k, 4);
        __m512 wi = _mm512_castsi512_ps (_mm512_slli_epi32 (_mm512_set1_epi32 ((int) u), 16));
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
          acc[i][v] = _mm512_fmadd_ps (wi, x[v], acc[i][v]);
      }
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        x[v] = _mm512_loadu_ps (p + (gsize) (k + 1) * wb + 16 * v);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++) {
        /* the same 32 bits as above, loaded afresh: an opaque pointer stops the compiler from keeping the
         * MR broadcasts of the first half live, which would spill accumulators */
        const guint8 *pair = row[i] + 2 * k;
        __asm__ ("" : "+r" (pair));
        guint32 u;
        memcpy (&u, pair, 4);
        __m512 wi = _mm512_castsi512_ps (_mm512_and_si512 (_mm512_set1_epi32 ((int) u), high));
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
          acc[i][v] = _mm512_fmadd_ps (wi, x[v], acc[i][v]);
      }
    }
  }
  for (; k < kc; k++) {
    __m512 x[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      x[v] = _mm512_loadu_ps (p + (gsize) k * wb + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m512 wi;
      if (dt == G3N_DTYPE_F32) {
        float f;
        memcpy (&f, row[i] + 4 * k, 4);
        wi = _mm512_set1_ps (f);
      } else {
        guint16 h;
        memcpy (&h, row[i] + 2 * k, 2);
        wi = dt == G3N_DTYPE_BF16 ? _mm512_set1_ps (g3n_bf16_to_f32 (h))
                                  : _mm512_cvtph_ps (_mm256_set1_epi16 ((short) h));
      }
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        acc[i][v] = _mm512_fmadd_ps (wi, x[v], acc[i][v]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      _mm512_storeu_ps (cout + i * wb + 16 * v,
                        cin ? _mm512_add_ps (_mm512_loadu_ps (cin + i * wb + 16 * v), acc[i][v]) : acc[i][v]);
}

#define AVX512_TILE(name, dt)                                                                                     \
  __attribute__ ((target (AVX512_TARGET))) static void name (const void *w, gsize ldw, int mr, const void *p,    \
                                                              int wb, int kc, const float *cin, float *cout)      \
  {                                                                                                               \
    switch (wb / 16) {                                                                                            \
    case 4: tile_avx512_dt (dt, 4, w, ldw, mr, p, wb, kc, cin, cout); break;                                      \
    case 3: tile_avx512_dt (dt, 3, w, ldw, mr, p, wb, kc, cin, cout); break;                                      \
    case 2: tile_avx512_dt (dt, 2, w, ldw, mr, p, wb, kc, cin, cout); break;                                      \
    default: tile_avx512_dt (dt, 1, w, ldw, mr, p, wb, kc, cin, cout); break;                                     \
    }                                                                                                             \
  }
AVX512_TILE (tile_avx512_bf16, G3N_DTYPE_BF16)
AVX512_TILE (tile_avx512_f16, G3N_DTYPE_F16)
AVX512_TILE (tile_avx512_f32, G3N_DTYPE_F32)

/* ---------------------------------------------------------------------- AVX512_BF16 (opt-in) */

#define BF16DP_TARGET G3N_TARGET_BF16DP

/* Panels of (k, k+1) activation pairs; the weights' own pairs are broadcast as they lie in memory, so no
 * widening at all: vdpbf16ps adds w[k]·x[k] + w[k+1]·x[k+1] to each token's fp32 sum. kc is even except
 * in the last K block, whose odd tail pairs the last weight with zero (the panel's pad is zero too). */
static inline __attribute__ ((always_inline, target (BF16DP_TARGET))) void
tile_bf16dp_nv (const int NV, const void *w, gsize ldw, int mr, const guint32 *p, int wb, int kc, const float *cin,
                float *cout)
{
  const guint16 *row[MR];
  __m512 acc[MR][4];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    row[i] = (const guint16 *) w + (gsize) MIN (i, mr - 1) * ldw;
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      acc[i][v] = _mm512_setzero_ps ();
  }
  const int pairs = kc / 2;
  for (int q = 0; q < pairs; q++) {
    __m512i x[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      x[v] = _mm512_loadu_si512 (p + (gsize) q * wb + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      guint32 u;
      memcpy (&u, row[i] + 2 * q, 4);
      __m512i wi = _mm512_set1_epi32 ((int) u);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        acc[i][v] = _mm512_dpbf16_ps (acc[i][v], (__m512bh) x[v], (__m512bh) wi);
    }
  }
  if (kc & 1) {
    __m512i x[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      x[v] = _mm512_loadu_si512 (p + (gsize) pairs * wb + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m512i wi = _mm512_set1_epi32 (row[i][2 * pairs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++)
        acc[i][v] = _mm512_dpbf16_ps (acc[i][v], (__m512bh) x[v], (__m512bh) wi);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      _mm512_storeu_ps (cout + i * wb + 16 * v,
                        cin ? _mm512_add_ps (_mm512_loadu_ps (cin + i * wb + 16 * v), acc[i][v]) : acc[i][v]);
}

__attribute__ ((target (BF16DP_TARGET))) static void
tile_bf16dp (const void *w, gsize ldw, int mr, const void *p, int wb, int kc, const float *cin, float *cout)
{
  switch (wb / 16) {
  case 4: tile_bf16dp_nv (4, w, ldw, mr, p, wb, kc, cin, cout); break;
  case 3: tile_bf16dp_nv (3, w, ldw, mr, p, wb, kc, cin, cout); break;
  case 2: tile_bf16dp_nv (2, w, ldw, mr, p, wb, kc, cin, cout); break;
  default: tile_bf16dp_nv (1, w, ldw, mr, p, wb, kc, cin, cout); break;
  }
}

/* --------------------------------------------------------------------- AVX-512 packing */

/* g3n_transpose16x16 on floats: only bits move. */
__attribute__ ((always_inline, target (AVX512_TARGET))) static inline void
transpose16 (__m512 r[16])
{
  __m512i v[16];
  for (int i = 0; i < 16; i++)
    v[i] = _mm512_castps_si512 (r[i]);
  g3n_transpose16x16 (v);
  for (int i = 0; i < 16; i++)
    r[i] = _mm512_castsi512_ps (v[i]);
}

/* A token block's fp32 panel (see pack_blocks), 16 tokens × 16 k per transpose. */
__attribute__ ((target (AVX512_TARGET))) static void
pack_avx512 (const float *x, int K, int valid, int wb, void *out)
{
  float *panel = out;
  for (int t0 = 0; t0 < wb; t0 += 16)
    for (int k0 = 0; k0 < K; k0 += 16) {
      int kn = MIN (16, K - k0);
      __mmask16 km = (__mmask16) ((1u << kn) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = t0 + i < valid ? _mm512_maskz_loadu_ps (km, x + (gsize) (t0 + i) * K + k0) : _mm512_setzero_ps ();
      transpose16 (r);
      for (int i = 0; i < kn; i++)
        _mm512_storeu_ps (panel + (gsize) (k0 + i) * wb + t0, r[i]);
    }
}

/* A token block's pair panel: 32 k of a token rounded to BF16 make its 16 pairs (vcvtne2ps2bf16 keeps
 * them in order), then the same transpose. Past K the loads give zeros, as the pad must be. */
__attribute__ ((target (BF16DP_TARGET))) static void
pack_pairs_avx512 (const float *x, int K, int valid, int wb, void *out)
{
  guint32 *panel = out;
  for (int t0 = 0; t0 < wb; t0 += 16)
    for (int k0 = 0; k0 < K; k0 += 32) {
      int kn = MIN (32, K - k0);
      __mmask16 lo = (__mmask16) ((1u << MIN (kn, 16)) - 1), hi = (__mmask16) ((1u << MAX (kn - 16, 0)) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; i++) {
        const float *src = x + (gsize) (t0 + i) * K + k0;
        r[i] = t0 + i < valid ? (__m512) _mm512_cvtne2ps_pbh (_mm512_maskz_loadu_ps (hi, src + 16),
                                                               _mm512_maskz_loadu_ps (lo, src))
                              : _mm512_setzero_ps ();
      }
      transpose16 (r);
      for (int i = 0; i < (kn + 1) / 2; i++)
        _mm512_storeu_ps ((float *) (panel + (gsize) (k0 / 2 + i) * wb + t0), r[i]);
    }
}
#endif

/* ------------------------------------------------------------------------------ dispatch */

typedef struct {
  int vl;        /* tokens per vector: a panel's width is a multiple of it */
  int nv;        /* vectors per tile: tb = vl · nv tokens */
  TileFn bf16, f16, f32;
  TileFn bf16dp; /* vdpbf16ps on pair panels, or NULL */
  /* vectorised packing of fp32 and pair panels, or NULL for the scalar loops */
  void (*pack) (const float *x, int K, int valid, int wb, void *panel);
  void (*pack_pairs) (const float *x, int K, int valid, int wb, void *panel);
} GemmTable;

static const GemmTable portable_table = { PVL, 1, tile_portable_bf16, tile_portable_f16, tile_portable_f32, NULL,
                                          NULL, NULL };
#ifdef G3N_X86
static const GemmTable avx2_table = { 8, 2, tile_avx2_bf16, tile_avx2_f16, tile_avx2_f32, NULL, NULL, NULL };
static const GemmTable avx512_table = { 16, 4, tile_avx512_bf16, tile_avx512_f16, tile_avx512_f32, NULL,
                                        pack_avx512, NULL };
static const GemmTable avx512_bf16_table = { 16, 4, tile_avx512_bf16, tile_avx512_f16, tile_avx512_f32,
                                             tile_bf16dp, pack_avx512, pack_pairs_avx512 };
#endif

static gpointer
choose_table (gpointer unused)
{
  G3nIsa isa = g3n_cpu_isa (); /* honours G3N_KERNEL */
  const GemmTable *t = &portable_table;
#ifdef G3N_X86
  if (isa == G3N_ISA_AVX512)
    t = g3n_cpu_has (G3N_CPU_NEEDS_BF16DP) ? &avx512_bf16_table : &avx512_table;
  else if (isa == G3N_ISA_AVX2)
    t = &avx2_table;
#endif
  return (gpointer) t;
}

static const GemmTable *
table (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose_table, NULL);
}

const char *
g3n_gemm_isa (void)
{
  const GemmTable *t = table ();
#ifdef G3N_X86
  if (t == &avx512_bf16_table)
    return "avx512+bf16dp";
  if (t == &avx512_table)
    return "avx512";
  if (t == &avx2_table)
    return "avx2";
#endif
  return t == &portable_table ? "portable" : "unknown";
}

/* ------------------------------------------------------------------------------- scratch */

/* Per-thread buffers kept between calls (g3n_thread_scratch): the packed activation panels and the partial
 * sums between K blocks. */
static GPrivate pack_key = G_PRIVATE_INIT (free), sums_key = G_PRIVATE_INIT (free);
static GPrivate pack_size_key, sums_size_key;

/* -------------------------------------------------------------------------------- driver */

typedef struct {
  const G3nMatrix *m;
  const GemmTable *t;
  TileFn tile;
  const float *x;
  float *y;
  int n, tb, vl;
  int kc;          /* K block */
  int n_blocks;    /* token blocks of tb */
  int n_tiles;     /* row tiles of MR */
  gboolean pairs;  /* panels of BF16 pairs (vdpbf16ps) instead of fp32 */
  gboolean round;  /* fp32 panels of BF16-rounded activations */
  gsize panel;     /* 32-bit elements from one token block's panel to the next */
  void *xp;
  gboolean split_tokens;
} Gemm;

/* Width of token block b's panel: its tokens rounded up to whole vectors. */
static int
block_width (const Gemm *g, int b)
{
  int left = g->n - b * g->tb;
  return left >= g->tb ? g->tb : (left + g->vl - 1) / g->vl * g->vl;
}

/* Transposes token blocks [begin, end) of x into their panels; tokens past n are zero. Walks K in short
 * runs so the wb destination lines being filled stay in L1. */
static void
pack_blocks (int begin, int end, gpointer data)
{
  Gemm *g = data;
  const int K = g->m->cols;
  for (int b = begin; b < end; b++) {
    int wb = block_width (g, b), t0 = b * g->tb;
    int valid = MIN (wb, g->n - t0);
    const float *xb = g->x + (gsize) t0 * K;
    if (g->pairs && g->t->pack_pairs) {
      g->t->pack_pairs (xb, K, valid, wb, (guint32 *) g->xp + (gsize) b * g->panel);
    } else if (!g->pairs && !g->round && g->t->pack) {
      g->t->pack (xb, K, valid, wb, (float *) g->xp + (gsize) b * g->panel);
    } else if (g->pairs) {
      guint32 *panel = (guint32 *) g->xp + (gsize) b * g->panel;
      int pairs = (K + 1) / 2;
      for (int q0 = 0; q0 < pairs; q0 += 32) {
        int q1 = MIN (q0 + 32, pairs);
        for (int t = 0; t < wb; t++) {
          const float *src = g->x + (gsize) (t0 + t) * K;
          for (int q = q0; q < q1; q++) {
            guint32 lo = 0, hi = 0;
            if (t < valid) {
              lo = g3n_f32_to_bf16 (src[2 * q]);
              hi = 2 * q + 1 < K ? g3n_f32_to_bf16 (src[2 * q + 1]) : 0;
            }
            panel[(gsize) q * wb + t] = lo | hi << 16;
          }
        }
      }
    } else {
      float *panel = (float *) g->xp + (gsize) b * g->panel;
      for (int k0 = 0; k0 < K; k0 += 64) {
        int k1 = MIN (k0 + 64, K);
        for (int t = 0; t < wb; t++) {
          const float *src = g->x + (gsize) (t0 + t) * K;
          if (t >= valid)
            for (int k = k0; k < k1; k++)
              panel[(gsize) k * wb + t] = 0;
          else if (g->round)
            for (int k = k0; k < k1; k++)
              panel[(gsize) k * wb + t] = g3n_bf16_to_f32 (g3n_f32_to_bf16 (src[k]));
          else
            for (int k = k0; k < k1; k++)
              panel[(gsize) k * wb + t] = src[k];
        }
      }
    }
  }
}

/* Row tiles × token blocks [t-range] of y, for one thread's share (rows or tokens). */
static void
gemm_part (int begin, int end, gpointer data)
{
  Gemm *g = data;
  const G3nMatrix *m = g->m;
  const int K = m->cols, rows = m->rows;
  const gsize es = g3n_dtype_size (m->dtype);
  int rt0 = 0, rt1 = g->n_tiles, b0 = 0, b1 = g->n_blocks;
  if (g->split_tokens)
    b0 = begin, b1 = end;
  else
    rt0 = begin, rt1 = end;
  int chunk = MAX (1, NC / g->tb); /* token blocks per chunk */
  float *sums = NULL;
  const int KB = g->kc;
  if (K > KB) /* partial sums of a row group's tiles for one chunk, between K blocks */
    sums = g3n_thread_scratch (&sums_key, &sums_size_key,
                    (gsize) MIN (ROW_GROUP, rt1 - rt0) * MIN (chunk, b1 - b0) * MR * g->tb * sizeof (float));
  float out[MR * TB_MAX] __attribute__ ((aligned (64)));

  for (int c0 = b0; c0 < b1; c0 += chunk) {
    int c1 = MIN (c0 + chunk, b1);
    for (int g0 = rt0; g0 < rt1; g0 += ROW_GROUP) {
      int g1 = MIN (g0 + ROW_GROUP, rt1);
      for (int k0 = 0; k0 < K; k0 += KB) {
        int kc = MIN (KB, K - k0);
        gboolean first = k0 == 0, last = k0 + kc == K;
        for (int rt = g0; rt < g1; rt++) {
          int r0 = rt * MR, mr = MIN (MR, rows - r0);
          const guint8 *w = (const guint8 *) m->data + ((gsize) r0 * K + k0) * es;
          for (int b = c0; b < c1; b++) {
            int wb = block_width (g, b), t0 = b * g->tb;
            const void *p = g->pairs ? (const void *) ((const guint32 *) g->xp + b * g->panel + (gsize) k0 / 2 * wb)
                                     : (const void *) ((const float *) g->xp + b * g->panel + (gsize) k0 * wb);
            float *acc = sums ? sums + ((gsize) (rt - g0) * (c1 - c0) + (b - c0)) * MR * g->tb : NULL;
            g->tile (w, K, mr, p, wb, kc, first ? NULL : acc, last ? out : acc);
            if (!last)
              continue;
            int valid = MIN (wb, g->n - t0);
            for (int t = 0; t < valid; t++) {
              float *yt = g->y + (gsize) (t0 + t) * rows + r0;
              for (int i = 0; i < mr; i++)
                yt[i] = out[i * wb + t];
            }
          }
        }
      }
    }
  }
}

void
g3n_gemm (const G3nMatrix *m, const float *x, int n, float *y)
{
  const GemmTable *t = table ();
  gboolean bf16_act = m->dtype == G3N_DTYPE_BF16 && g3n_kernels_bf16_activations ();
  Gemm g = { .m = m, .t = t, .x = x, .y = y, .n = n, .vl = t->vl, .tb = t->vl * t->nv };
  g.pairs = bf16_act && t->bf16dp;
  g.round = bf16_act && !t->bf16dp;
  g.kc = g.pairs ? KC_PAIRS : KC;
  g.tile = g.pairs ? t->bf16dp : m->dtype == G3N_DTYPE_BF16 ? t->bf16 : m->dtype == G3N_DTYPE_F16 ? t->f16 : t->f32;
  g.n_blocks = (n + g.tb - 1) / g.tb;
  g.n_tiles = (m->rows + MR - 1) / MR;
  /* a pair panel row holds two k: K rounded up to even, halved */
  g.panel = (gsize) g.tb * (g.pairs ? (gsize) (m->cols + 1) / 2 : (gsize) m->cols);
  g.xp = g3n_thread_scratch (&pack_key, &pack_size_key, g.panel * g.n_blocks * 4);
  g3n_parallel_for (g.n_blocks, 1, pack_blocks, &g);

  /* Threads split the weight rows (each streams its share of the weights once per token chunk); with too
   * few rows to go round, they split the token blocks instead. */
  int threads = g3n_kernels_threads ();
  g.split_tokens = g.n_tiles < 4 * threads && g.n_blocks >= 2 * threads;
  if (g.split_tokens)
    g3n_parallel_for (g.n_blocks, 1, gemm_part, &g);
  else
    g3n_parallel_for (g.n_tiles, 1, gemm_part, &g);
}
