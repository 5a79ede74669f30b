/* quant-gemm.c — several tokens times a Q8_0 / Q4_0 weight matrix (prefill): y[n, rows] = x · Wᵀ.
 *
 * The activations are quantised as for the dot products (G3nQ8Rows codes and scales, g3n_q8_row_kernel),
 * and every output is Σ over blocks of d_w·d_x·(exact integer block sum), as on the dot path; only the fp32
 * order of that sum differs. Where the dot path pairs one weight row with one token, a tile here pairs
 * RT weight rows with MT tokens: each loaded weight vector serves MT tokens, each token's codes RT rows.
 *
 * Lanes run along weight rows: a vector holds 16 (AVX-512) or 8 (AVX2) rows × 4 (or 2) consecutive k, and
 * the token's 4 codes for those k are broadcast, so one vpdpbusd adds 4 products to each row's int32 sum
 * and after a block's 8 steps every lane holds one (row, token) block sum: no horizontal reduction, and
 * the lanes are rows of y, stored straight into it. Per block the sums are converted, scaled by the rows'
 * d_w (a vector) and FMA'd with the token's d_x (a broadcast) into fp32 accumulators.
 *
 * Signs: vpdpbusd and vpmaddubsw multiply unsigned by signed bytes. The weights are repacked anyway (rows
 * interleaved for the lanes, Q4_0 nibbles unpacked), so they take the unsigned side with +128: Q8_0 w+128,
 * Q4_0 (code−8)+128. Σ(w+128)·x = Σw·x + 128·Σx, so each (token, block) sum starts at −128·Σx, computed
 * once at quantisation: exact integer arithmetic, no per-product sign fix-up as in the dot kernels. Q4_0's
 * +8 offset is removed in the integers too (code−8), so both types share the kernels; the block sum is the
 * true Σ ŵ·x̂ in integers, where the dot path subtracts 8·d_w·s in fp32 — equal up to fp32 rounding.
 *  - AVX-512 VNNI: vpdpbusd as above; tile 32 rows × 6 tokens: 12 int32 + 12 fp32 accumulators.
 *  - AVX2: vpmaddubsw's int16 pair sums would saturate on (w+128)·x for Q8_0 (up to 2·255·127), so Q8_0
 *    widens both sides to int16 and uses vpmaddwd; Q4_0 (|code−8| ≤ 8) keeps bytes: the activations take
 *    the +128 (u8), the weights stay signed, a whole block's pair sums fit int16 (8·2·255·8 < 32768) and one
 *    vpmaddwd per block widens them; the offset is then −128·Σw per (row, block), prepared with the weights.
 *  - portable: plain C on the same tiles.
 *
 * Data flow: the tokens are quantised once per call into token tiles (MT tokens interleaved by k group, in
 * the order the kernel broadcasts them), threaded over the pool. Threads then split the weight rows (or
 * the token tiles, when the rows are few). Each thread walks K in passes of KCP blocks; within a pass, per
 * row tile and K block of KCB blocks it repacks the weights (RT·KCB·32 codes, 16 KiB: L1) and runs every
 * token tile of the chunk past them. The chunk's slices of the pass (up to CHUNK_BYTES: L2) thus serve
 * every row tile, y holds the partial sums between passes (read and written once per pass, prefetched as
 * each tile starts), and the weights are read and repacked once per chunk: once per call for up to 768
 * tokens (AVX-512), whatever K. The codes and scales of the tile repacked next are prefetched a few rows
 * per token tile: row tiles are no stream the hardware prefetchers follow. (Repacking the whole matrix
 * once per call instead would write and read back a copy as large as the weights.)
 *
 * Measured on Zen 4 (2 cores, E2B's [2048 x 2048], [8192 x 2048], [2048 x 8192] × 256-512 tokens, best
 * calls; tools/bench-kernels qgemm): VNNI 305-325 GOP/s on one core, 585-655 on two, Q8_0 and Q4_0 alike,
 * against 47-53 (one core) for the dot products and ~110 GFLOP/s (~215 on two) for the BF16 GEMM, ~210
 * per core with vdpbf16ps. By the profile the kernel runs at ~80% of vpdpbusd's peak, the rest going to
 * the per-block scaling. E2B prompts (pp512, 2 threads): Q8_0 24.6 → 97.6 tok/s, Q4_0 25.0 → 106.5.
 * AVX2 on the same machine: Q8_0 ~105, Q4_0 ~175-185 GOP/s on one core (dot products ~24).
 */
#include "quant.h"
#include "threadpool.h"

#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#ifdef G3N_X86
#include <immintrin.h>
#include "transpose.h"
#endif

/* Blocks per K block: the repacked weight tile is RT·KCB·32 codes (AVX-512: 32 rows, 16 KiB), in L1
 * while the token tiles stream past it. */
#define KCB 16
/* Blocks per pass: y holds the sums between passes, so a pass reads and writes y once; the token tiles'
 * slices for a pass stay in L2. */
#define KCP 32
/* Token-tile bytes (codes) per chunk: they stay in L2 (1 MiB on Zen 4) while every row tile uses them. */
#define CHUNK_BYTES (768 * 1024)
/* Most rows of any ISA's tiles, for the per-thread buffers. */
#define RT_MAX 32

/* One tile's operands, positioned at the K block. */
typedef struct {
  const guint8 *w;  /* repacked weight codes */
  const float *dw;  /* [block][RT] weight scales */
  const gint32 *wc; /* [block][RT] offset corrections (AVX2 Q4_0), else unused */
  const guint8 *x;  /* the token tile's codes */
  const float *dx;  /* [block][MT] token scales (0 for padding tokens) */
  const gint32 *xc; /* [block][MT] −128·Σx (AVX-512), else unused */
  int nbk;          /* blocks */
  int mr, mt;       /* rows and tokens to store */
  float *y;         /* y[first token][first row] */
  gsize ldy;
  gboolean first;   /* the first K block stores, the others add */
} QTile;

typedef struct {
  int rt, mt;       /* tile rows and tokens */
  int xsize;        /* bytes per activation code in the token tiles */
  guint8 xbias;     /* added to the activation codes (XOR 0x80 is +128 on u8) */
  int gk;          /* codes per broadcast group in the token tiles (4 bytes), or 0: whole blocks per token */
  /* repacks rows [r0, r0 + mr) × blocks [b0, b0 + nbk) of m into w, dw and wc */
  void (*prep) (const G3nMatrix *m, int r0, int mr, int b0, int nbk, guint8 *w, float *dw, gint32 *wc);
  void (*tile) (const QTile *t);
} QKernel;

/* y's lines of a tile (nt tokens, rows far apart, × rt floats): they arrive while its blocks are summed. */
static inline void
prefetch_y (const QTile *t, int nt, int rt)
{
  for (int j = 0; j < nt; j++)
    for (int i = 0; i < rt + 15; i += 16) /* a line every 16 floats, and the last: they need not align */
      __builtin_prefetch (t->y + (gsize) j * t->ldy + MIN (i, rt - 1), 1, 3);
}

/* ------------------------------------------------------------------------------- portable */

/* 4 rows × 4 tokens; codes block by block: weights [block][row][32], tokens [block][token][32]. */
#define PRT 4
#define PMT 4

static void
prep_portable (const G3nMatrix *m, int r0, int mr, int b0, int nbk, guint8 *w, float *dw, gint32 *wc)
{
  const int nb = g3n_quant_blocks (m->cols), half = G3N_QBLOCK / 2;
  const gsize row_bytes = g3n_quant_row_bytes (m->quant, m->cols);
  gint8 *out = (gint8 *) w;
  for (int b = 0; b < nbk; b++)
    for (int i = 0; i < PRT; i++) {
      gint8 *o = out + ((gsize) b * PRT + i) * G3N_QBLOCK;
      dw[b * PRT + i] = i < mr ? g3n_f16_to_f32 (m->scales[(gsize) (r0 + i) * nb + b0 + b]) : 0;
      if (i >= mr) {
        memset (o, 0, G3N_QBLOCK);
      } else if (m->quant == G3N_QUANT_Q8_0) {
        memcpy (o, (const guint8 *) m->data + (gsize) (r0 + i) * row_bytes + (gsize) (b0 + b) * G3N_QBLOCK, G3N_QBLOCK);
      } else {
        const guint8 *p = (const guint8 *) m->data + (gsize) (r0 + i) * row_bytes + (gsize) (b0 + b) * half;
        for (int k = 0; k < half; k++) {
          o[k] = (gint8) ((p[k] & 15) - 8);
          o[k + half] = (gint8) ((p[k] >> 4) - 8);
        }
      }
    }
}

static void
tile_portable (const QTile *t)
{
  float acc[PRT][PMT] = { { 0 } };
  const gint8 *w = (const gint8 *) t->w, *x = (const gint8 *) t->x;
  for (int b = 0; b < t->nbk; b++) {
    const gint8 *wb = w + (gsize) b * PRT * G3N_QBLOCK, *xb = x + (gsize) b * PMT * G3N_QBLOCK;
    for (int i = 0; i < PRT; i++)
      for (int j = 0; j < PMT; j++) {
        int sum = 0;
        for (int k = 0; k < G3N_QBLOCK; k++)
          sum += wb[i * G3N_QBLOCK + k] * xb[j * G3N_QBLOCK + k];
        acc[i][j] += (float) sum * t->dw[b * PRT + i] * t->dx[b * PMT + j];
      }
  }
  for (int j = 0; j < t->mt; j++)
    for (int i = 0; i < t->mr; i++) {
      float *y = t->y + (gsize) j * t->ldy + i;
      *y = t->first ? acc[i][j] : *y + acc[i][j];
    }
}

static const QKernel portable_kernel = { PRT, PMT, 1, 0, 0, prep_portable, tile_portable };

#ifdef G3N_X86
/* ------------------------------------------------------------------------------- AVX-512 VNNI */

#define VNNI_TARGET G3N_TARGET_VNNI
/* 2 vectors of 16 rows × 6 tokens: 12 int32 block sums + 12 fp32 sums + 2 weight vectors + a broadcast
 * in the 32 zmm registers. Two weight loads and six 4-byte broadcasts feed 12 vpdpbusd. */
#define VRV 2
#define VRT (16 * VRV)
#define VMT 6

/* Signed codes of blocks b (and b + 1 when `two`) of one stored row, in element order. */
__attribute__ ((always_inline, target (VNNI_TARGET))) static inline __m512i
row_codes_vnni (G3nQuantType type, const guint8 *row, int b, gboolean two)
{
  if (type == G3N_QUANT_Q8_0)
    return _mm512_maskz_loadu_epi8 (two ? ~(__mmask64) 0 : 0xffffffffull, row + (gsize) b * G3N_QBLOCK);
  /* [A lo, B lo, A hi, B hi] nibbles (128-bit lanes) → [A lo, A hi, B lo, B hi]: blocks A, B in order */
  const __m512i order = _mm512_set_epi64 (7, 6, 3, 2, 5, 4, 1, 0);
  __m256i v = _mm256_maskz_loadu_epi8 (two ? 0xffffffffu : 0xffffu, row + (gsize) b * G3N_QBLOCK / 2);
  __m512i codes = _mm512_inserti64x4 (_mm512_castsi256_si512 (v), _mm256_srli_epi16 (v, 4), 1);
  codes = _mm512_permutexvar_epi64 (order, _mm512_and_si512 (codes, _mm512_set1_epi8 (15)));
  return _mm512_sub_epi8 (codes, _mm512_set1_epi8 (8));
}

/* Weights as u8 (w + 128), [block][group of 4 k][row vector][16 rows][4]; scales [block][32 rows]. Rows
 * past the matrix get weight 0 and scale 0. */
__attribute__ ((target (VNNI_TARGET))) static void
prep_vnni (const G3nMatrix *m, int r0, int mr, int b0, int nbk, guint8 *w, float *dw, gint32 *wc)
{
  const int nb = g3n_quant_blocks (m->cols);
  const gsize row_bytes = g3n_quant_row_bytes (m->quant, m->cols);
  const __m512i bias = _mm512_set1_epi8 ((char) 0x80);
  for (int v = 0; v < VRV; v++) {
    int rows = CLAMP (mr - 16 * v, 0, 16);
    for (int b = 0; b < nbk; b += 2) {
      gboolean two = b + 1 < nbk;
      __m512i r[16];
      for (int i = 0; i < 16; i++) {
        const guint8 *row = (const guint8 *) m->data + (gsize) (r0 + 16 * v + i) * row_bytes;
        r[i] = i < rows ? row_codes_vnni (m->quant, row, b0 + b, two) : _mm512_setzero_si512 ();
      }
      g3n_transpose16x16 (r); /* r[c]: dword c (block b + c / 8, group c % 8) of the 16 rows */
      for (int c = 0; c < (two ? 16 : 8); c++)
        _mm512_store_si512 (w + ((gsize) (b * 8 + c) * VRV + v) * 64, _mm512_xor_si512 (r[c], bias));
    }
    for (int b = 0; b < nbk; b += 16) {
      int cnt = MIN (16, nbk - b);
      __m512i s[16];
      for (int i = 0; i < 16; i++) {
        const guint16 *scales = m->scales + (gsize) (r0 + 16 * v + i) * nb + b0 + b;
        s[i] = i < rows ? _mm512_castps_si512 (_mm512_cvtph_ps (_mm256_maskz_loadu_epi16 (
                              (__mmask16) ((1u << cnt) - 1), scales)))
                        : _mm512_setzero_si512 ();
      }
      g3n_transpose16x16 (s);
      for (int c = 0; c < cnt; c++)
        _mm512_store_si512 (dw + ((gsize) (b + c) * VRV + v) * 16, s[c]);
    }
  }
}

static inline gint32
load32 (const guint8 *p)
{
  gint32 u;
  memcpy (&u, p, 4);
  return u;
}

/* NT tokens (of a VMT-wide token tile) × 32 rows. */
static inline __attribute__ ((always_inline, target (VNNI_TARGET))) void
tile_vnni_nt (const int NT, const QTile *t)
{
  __m512 acc[VRV][VMT];
  prefetch_y (t, NT, VRT);
#pragma GCC unroll 2
  for (int v = 0; v < VRV; v++)
#pragma GCC unroll 6
    for (int j = 0; j < NT; j++)
      acc[v][j] = _mm512_setzero_ps ();
  const guint8 *w = t->w, *x = t->x;
  const float *dw = t->dw, *dx = t->dx;
  const gint32 *xc = t->xc;
  for (int b = 0; b < t->nbk; b++) {
    __m512i sum[VRV][VMT];
#pragma GCC unroll 6
    for (int j = 0; j < NT; j++) {
      __m512i c = _mm512_set1_epi32 (xc[j]); /* −128·Σx: the weights' +128, removed up front */
#pragma GCC unroll 2
      for (int v = 0; v < VRV; v++)
        sum[v][j] = c;
    }
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
      __m512i wv[VRV];
#pragma GCC unroll 2
      for (int v = 0; v < VRV; v++)
        wv[v] = _mm512_load_si512 (w + (g * VRV + v) * 64);
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++) {
        __m512i xb = _mm512_set1_epi32 (load32 (x + (g * VMT + j) * 4));
#pragma GCC unroll 2
        for (int v = 0; v < VRV; v++)
          sum[v][j] = _mm512_dpbusd_epi32 (sum[v][j], wv[v], xb);
      }
    }
#pragma GCC unroll 2
    for (int v = 0; v < VRV; v++) {
      __m512 d = _mm512_load_ps (dw + v * 16);
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++)
        acc[v][j] = _mm512_fmadd_ps (_mm512_mul_ps (_mm512_cvtepi32_ps (sum[v][j]), d), _mm512_set1_ps (dx[j]),
                                     acc[v][j]);
    }
    w += 8 * VRV * 64;
    x += 8 * VMT * 4;
    dw += VRT;
    dx += VMT;
    xc += VMT;
  }
#pragma GCC unroll 6
  for (int j = 0; j < NT; j++)
#pragma GCC unroll 2
    for (int v = 0; v < VRV; v++) {
      int left = t->mr - 16 * v;
      if (left <= 0)
        break;
      __mmask16 k = left >= 16 ? 0xffff : (__mmask16) ((1u << left) - 1);
      float *y = t->y + (gsize) j * t->ldy + 16 * v;
      __m512 r = t->first ? acc[v][j] : _mm512_add_ps (_mm512_maskz_loadu_ps (k, y), acc[v][j]);
      _mm512_mask_storeu_ps (y, k, r);
    }
}

__attribute__ ((target (VNNI_TARGET))) static void
tile_vnni (const QTile *t)
{
  switch (t->mt) {
  case 6: tile_vnni_nt (6, t); break;
  case 5: tile_vnni_nt (5, t); break;
  case 4: tile_vnni_nt (4, t); break;
  case 3: tile_vnni_nt (3, t); break;
  case 2: tile_vnni_nt (2, t); break;
  default: tile_vnni_nt (1, t); break;
  }
}

static const QKernel vnni_kernel = { VRT, VMT, 1, 0, 4, prep_vnni, tile_vnni };

/* ----------------------------------------------------------------------------------- AVX2 */

#define AVX2_TARGET G3N_TARGET_AVX2
/* 2 vectors of 8 rows × 3 tokens: 6 int32 (or int16) sums + 6 fp32 sums + 2 weight vectors + a broadcast
 * and a product in the 16 ymm registers. */
#define ARV 2
/* Integer adds are associative, so GCC turns the unrolled chains of sums into trees that keep all of a
 * block's products live at once and spill; an opaque register keeps each sum a chain. */
#define KEEP_CHAIN(v) __asm__ ("" : "+x" (v))
#define ART (8 * ARV)
#define AMT 3

/* r[i] (row i: 8 dwords) becomes column i. */
__attribute__ ((always_inline, target (AVX2_TARGET))) static inline void
transpose8x8 (__m256i r[8])
{
  __m256i a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_epi32 (r[i], r[i + 1]);
    a[i + 1] = _mm256_unpackhi_epi32 (r[i], r[i + 1]);
  }
  for (int g = 0; g < 2; g++) {
    b[4 * g] = _mm256_unpacklo_epi64 (a[4 * g], a[4 * g + 2]);
    b[4 * g + 1] = _mm256_unpackhi_epi64 (a[4 * g], a[4 * g + 2]);
    b[4 * g + 2] = _mm256_unpacklo_epi64 (a[4 * g + 1], a[4 * g + 3]);
    b[4 * g + 3] = _mm256_unpackhi_epi64 (a[4 * g + 1], a[4 * g + 3]);
  }
  /* b[j] holds dwords j and 4 + j of rows 0-3, b[4 + j] those of rows 4-7 */
  for (int j = 0; j < 4; j++) {
    r[j] = _mm256_permute2x128_si256 (b[j], b[4 + j], 0x20);
    r[4 + j] = _mm256_permute2x128_si256 (b[j], b[4 + j], 0x31);
  }
}

/* One block of one stored row as 32 signed codes in element order. */
__attribute__ ((always_inline, target (AVX2_TARGET))) static inline __m256i
row_codes_avx2 (G3nQuantType type, const guint8 *row, int b)
{
  if (type == G3N_QUANT_Q8_0)
    return _mm256_loadu_si256 ((const __m256i *) (row + (gsize) b * G3N_QBLOCK));
  __m128i v = _mm_loadu_si128 ((const __m128i *) (row + (gsize) b * G3N_QBLOCK / 2));
  __m256i codes = _mm256_and_si256 (_mm256_set_m128i (_mm_srli_epi16 (v, 4), v), _mm256_set1_epi8 (15));
  return _mm256_sub_epi8 (codes, _mm256_set1_epi8 (8));
}

/* Scales [block][16 rows]: 8 rows × 8 blocks per transpose. */
__attribute__ ((target (AVX2_TARGET))) static void
prep_scales_avx2 (const G3nMatrix *m, int r0, int mr, int b0, int nbk, float *dw)
{
  const int nb = g3n_quant_blocks (m->cols);
  for (int v = 0; v < ARV; v++) {
    int rows = CLAMP (mr - 8 * v, 0, 8);
    for (int b = 0; b < nbk; b += 8) {
      int cnt = MIN (8, nbk - b);
      __m256i s[8];
      for (int i = 0; i < 8; i++) {
        guint16 h[8] = { 0 };
        if (i < rows)
          memcpy (h, m->scales + (gsize) (r0 + 8 * v + i) * nb + b0 + b, cnt * sizeof (guint16));
        s[i] = _mm256_castps_si256 (_mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) h)));
      }
      transpose8x8 (s);
      for (int c = 0; c < cnt; c++)
        _mm256_store_si256 ((__m256i *) (dw + ((gsize) (b + c) * ARV + v) * 8), s[c]);
    }
  }
}

/* Q8_0: weights as int16 pairs, [block][group of 2 k][row vector][8 rows][2]. */
__attribute__ ((target (AVX2_TARGET))) static void
prep_avx2_q8 (const G3nMatrix *m, int r0, int mr, int b0, int nbk, guint8 *w, float *dw, gint32 *wc)
{
  const gsize row_bytes = g3n_quant_row_bytes (m->quant, m->cols);
  for (int v = 0; v < ARV; v++) {
    int rows = CLAMP (mr - 8 * v, 0, 8);
    for (int b = 0; b < nbk; b++) {
      __m256i lo[8], hi[8];
      for (int i = 0; i < 8; i++) {
        const guint8 *row = (const guint8 *) m->data + (gsize) (r0 + 8 * v + i) * row_bytes;
        __m256i c = i < rows ? row_codes_avx2 (m->quant, row, b0 + b) : _mm256_setzero_si256 ();
        lo[i] = _mm256_cvtepi8_epi16 (_mm256_castsi256_si128 (c));
        hi[i] = _mm256_cvtepi8_epi16 (_mm256_extracti128_si256 (c, 1));
      }
      transpose8x8 (lo); /* lo[c]: k 2c, 2c + 1 of the 8 rows */
      transpose8x8 (hi);
      for (int c = 0; c < 8; c++) {
        _mm256_store_si256 ((__m256i *) (w + ((gsize) (b * 16 + c) * ARV + v) * 32), lo[c]);
        _mm256_store_si256 ((__m256i *) (w + ((gsize) (b * 16 + 8 + c) * ARV + v) * 32), hi[c]);
      }
    }
  }
  prep_scales_avx2 (m, r0, mr, b0, nbk, dw);
}

/* Q4_0: signed codes (code − 8), [block][group of 4 k][row vector][8 rows][4], and per (block, row) the
 * correction −128·Σw for the activations' +128. */
__attribute__ ((target (AVX2_TARGET))) static void
prep_avx2_q4 (const G3nMatrix *m, int r0, int mr, int b0, int nbk, guint8 *w, float *dw, gint32 *wc)
{
  const gsize row_bytes = g3n_quant_row_bytes (m->quant, m->cols);
  const __m256i ones8 = _mm256_set1_epi8 (1), ones16 = _mm256_set1_epi16 (1);
  for (int v = 0; v < ARV; v++) {
    int rows = CLAMP (mr - 8 * v, 0, 8);
    for (int b = 0; b < nbk; b++) {
      __m256i r[8], sum = _mm256_setzero_si256 ();
      for (int i = 0; i < 8; i++) {
        const guint8 *row = (const guint8 *) m->data + (gsize) (r0 + 8 * v + i) * row_bytes;
        r[i] = i < rows ? row_codes_avx2 (m->quant, row, b0 + b) : _mm256_setzero_si256 ();
      }
      transpose8x8 (r);
      for (int c = 0; c < 8; c++) {
        _mm256_store_si256 ((__m256i *) (w + ((gsize) (b * 8 + c) * ARV + v) * 32), r[c]);
        sum = _mm256_add_epi32 (sum, _mm256_madd_epi16 (_mm256_maddubs_epi16 (ones8, r[c]), ones16));
      }
      _mm256_store_si256 ((__m256i *) (wc + (gsize) b * ART + v * 8),
                          _mm256_sub_epi32 (_mm256_setzero_si256 (), _mm256_slli_epi32 (sum, 7)));
    }
  }
  prep_scales_avx2 (m, r0, mr, b0, nbk, dw);
}

/* Stores (first K block) or adds the fp32 sums of NT tokens × 16 rows; rows past mr are left alone. */
static inline __attribute__ ((always_inline, target (AVX2_TARGET))) void
store_avx2 (const int NT, const QTile *t, __m256 acc[ARV][AMT])
{
#pragma GCC unroll 6
  for (int j = 0; j < NT; j++)
#pragma GCC unroll 2
    for (int v = 0; v < ARV; v++) {
      int left = t->mr - 8 * v;
      if (left <= 0)
        break;
      float *y = t->y + (gsize) j * t->ldy + 8 * v;
      if (left >= 8) {
        _mm256_storeu_ps (y, t->first ? acc[v][j] : _mm256_add_ps (_mm256_loadu_ps (y), acc[v][j]));
      } else {
        float tmp[8];
        _mm256_storeu_ps (tmp, acc[v][j]);
        for (int i = 0; i < left; i++)
          y[i] = t->first ? tmp[i] : y[i] + tmp[i];
      }
    }
}

/* acc += (int32 sums → fp32) · d_w · d_x for one block */
static inline __attribute__ ((always_inline, target (AVX2_TARGET))) void
scale_avx2 (const int NT, __m256i sum[ARV][AMT], const float *dw, const float *dx, __m256 acc[ARV][AMT])
{
#pragma GCC unroll 2
  for (int v = 0; v < ARV; v++) {
    __m256 d = _mm256_load_ps (dw + v * 8);
#pragma GCC unroll 6
    for (int j = 0; j < NT; j++)
      acc[v][j] = _mm256_fmadd_ps (_mm256_mul_ps (_mm256_cvtepi32_ps (sum[v][j]), d), _mm256_set1_ps (dx[j]),
                                   acc[v][j]);
  }
}

/* Q8_0: int16 pairs, vpmaddwd. */
static inline __attribute__ ((always_inline, target (AVX2_TARGET))) void
tile_avx2_q8_nt (const int NT, const QTile *t)
{
  __m256 acc[ARV][AMT];
  prefetch_y (t, NT, ART);
#pragma GCC unroll 2
  for (int v = 0; v < ARV; v++)
#pragma GCC unroll 6
    for (int j = 0; j < NT; j++)
      acc[v][j] = _mm256_setzero_ps ();
  const guint8 *w = t->w, *x = t->x;
  for (int b = 0; b < t->nbk; b++) {
    __m256i sum[ARV][AMT];
#pragma GCC unroll 2
    for (int v = 0; v < ARV; v++)
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++)
        sum[v][j] = _mm256_setzero_si256 ();
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
      __m256i wv[ARV];
#pragma GCC unroll 2
      for (int v = 0; v < ARV; v++)
        wv[v] = _mm256_load_si256 ((const __m256i *) (w + (g * ARV + v) * 32));
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++) {
        __m256i xb = _mm256_set1_epi32 (load32 (x + (g * AMT + j) * 4));
#pragma GCC unroll 2
        for (int v = 0; v < ARV; v++) {
          sum[v][j] = _mm256_add_epi32 (sum[v][j], _mm256_madd_epi16 (wv[v], xb));
          KEEP_CHAIN (sum[v][j]);
        }
      }
    }
    scale_avx2 (NT, sum, t->dw + b * ART, t->dx + b * AMT, acc);
    w += 16 * ARV * 32;
    x += 16 * AMT * 4;
  }
  store_avx2 (NT, t, acc);
}

/* Q4_0: u8 activations (x + 128) · s8 weights with vpmaddubsw; a block's int16 pair sums stay below
 * 8·2·255·8 = 32640, so they add up in int16 and one vpmaddwd per block widens them. */
static inline __attribute__ ((always_inline, target (AVX2_TARGET))) void
tile_avx2_q4_nt (const int NT, const QTile *t)
{
  const __m256i ones16 = _mm256_set1_epi16 (1);
  __m256 acc[ARV][AMT];
  prefetch_y (t, NT, ART);
#pragma GCC unroll 2
  for (int v = 0; v < ARV; v++)
#pragma GCC unroll 6
    for (int j = 0; j < NT; j++)
      acc[v][j] = _mm256_setzero_ps ();
  const guint8 *w = t->w, *x = t->x;
  for (int b = 0; b < t->nbk; b++) {
    __m256i sum[ARV][AMT];
#pragma GCC unroll 2
    for (int v = 0; v < ARV; v++)
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++)
        sum[v][j] = _mm256_setzero_si256 ();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
      __m256i wv[ARV];
#pragma GCC unroll 2
      for (int v = 0; v < ARV; v++)
        wv[v] = _mm256_load_si256 ((const __m256i *) (w + (g * ARV + v) * 32));
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++) {
        __m256i xb = _mm256_set1_epi32 (load32 (x + (g * AMT + j) * 4));
#pragma GCC unroll 2
        for (int v = 0; v < ARV; v++) {
          sum[v][j] = _mm256_add_epi16 (sum[v][j], _mm256_maddubs_epi16 (xb, wv[v]));
          KEEP_CHAIN (sum[v][j]);
        }
      }
    }
#pragma GCC unroll 2
    for (int v = 0; v < ARV; v++) {
      __m256i c = _mm256_load_si256 ((const __m256i *) (t->wc + b * ART + v * 8));
#pragma GCC unroll 6
      for (int j = 0; j < NT; j++)
        sum[v][j] = _mm256_add_epi32 (_mm256_madd_epi16 (sum[v][j], ones16), c);
    }
    scale_avx2 (NT, sum, t->dw + b * ART, t->dx + b * AMT, acc);
    w += 8 * ARV * 32;
    x += 8 * AMT * 4;
  }
  store_avx2 (NT, t, acc);
}

__attribute__ ((target (AVX2_TARGET))) static void
tile_avx2_q8 (const QTile *t)
{
  switch (t->mt) {
  case 3: tile_avx2_q8_nt (3, t); break;
  case 2: tile_avx2_q8_nt (2, t); break;
  default: tile_avx2_q8_nt (1, t); break;
  }
}

__attribute__ ((target (AVX2_TARGET))) static void
tile_avx2_q4 (const QTile *t)
{
  switch (t->mt) {
  case 3: tile_avx2_q4_nt (3, t); break;
  case 2: tile_avx2_q4_nt (2, t); break;
  default: tile_avx2_q4_nt (1, t); break;
  }
}

static const QKernel avx2_q8_kernel = { ART, AMT, 2, 0, 2, prep_avx2_q8, tile_avx2_q8 };
static const QKernel avx2_q4_kernel = { ART, AMT, 1, 0x80, 4, prep_avx2_q4, tile_avx2_q4 };
#endif

/* ------------------------------------------------------------------------------ dispatch */

/* The same choice as the dot kernels' (g3n_qdot_isa): VNNI, AVX2 or portable. */
static const QKernel *
kernel_for (G3nQuantType type)
{
#ifdef G3N_X86
  const char *isa = g3n_qdot_isa ();
  if (g_str_equal (isa, "vnni"))
    return &vnni_kernel;
  if (g_str_equal (isa, "avx2"))
    return type == G3N_QUANT_Q4_0 ? &avx2_q4_kernel : &avx2_q8_kernel;
#endif
  return &portable_kernel;
}

/* ------------------------------------------------------------------------------- scratch */

/* Per-thread buffers kept between calls (g3n_thread_scratch): the calling thread's token tiles and each
 * thread's repacked weight tile (36 KiB, too much for the stack of an application's thread). */
static GPrivate tokens_key = G_PRIVATE_INIT (free), tokens_size_key;
static GPrivate tile_key = G_PRIVATE_INIT (free), tile_size_key;

/* -------------------------------------------------------------------------------- driver */

typedef struct {
  const G3nMatrix *m;
  const QKernel *k;
  const float *x;
  float *y;
  int n, nb;
  int n_rtiles, n_ttiles;
  int chunk;          /* token tiles per chunk */
  gsize tile_codes;   /* bytes of one token tile's codes */
  gsize row_bytes;    /* of the weight codes */
  guint8 *codes;      /* token tiles: codes, then scales and corrections */
  float *dx;
  gint32 *xc;
  gboolean split_tokens;
} QGemm;

/* Token j's codes q (nb blocks) into slot j of a token tile: groups of 4 bytes with the tile's tokens
 * interleaved ([block][group][token][4 bytes]: 4 u8/s8 codes or 2 int16 codes), or whole blocks
 * ([block][token][32]) when gk is 0. */
static void
pack_token (const QKernel *k, const gint8 *q, int nb, int j, guint8 *tile)
{
  if (k->gk == 0) {
    for (int b = 0; b < nb; b++)
      memcpy (tile + ((gsize) b * k->mt + j) * G3N_QBLOCK, q + (gsize) b * G3N_QBLOCK, G3N_QBLOCK);
    return;
  }
  const guint32 bias = k->xbias * 0x01010101u;
  guint32 *out = (guint32 *) tile + j;
  for (int i = 0; i < nb * G3N_QBLOCK; i += k->gk, out += k->mt) {
    guint32 word;
    if (k->xsize == 2) { /* two int16 codes */
      guint16 pair[2] = { (guint16) (gint16) q[i], (guint16) (gint16) q[i + 1] };
      memcpy (&word, pair, 4);
    } else {
      memcpy (&word, q + i, 4);
    }
    *out = word ^ bias;
  }
}

/* Quantises and packs token tiles [begin, end); tokens past n are zero with scale 0. */
static void
quantise_tiles (int begin, int end, gpointer data)
{
  QGemm *g = data;
  const QKernel *k = g->k;
  const int nb = g->nb, cols = g->m->cols;
  G3nQ8RowFn quantise = g3n_q8_row_kernel ();
  gint8 *q = g_malloc ((gsize) nb * G3N_QBLOCK);
  float *d = g_new (float, nb);
  gint32 *qsum = g_new (gint32, nb);
  for (int tt = begin; tt < end; tt++) {
    guint8 *tile = g->codes + tt * g->tile_codes;
    float *dx = g->dx + (gsize) tt * nb * k->mt;
    gint32 *xc = g->xc + (gsize) tt * nb * k->mt;
    for (int j = 0; j < k->mt; j++) {
      int t = tt * k->mt + j;
      if (t < g->n) {
        quantise (g->x + (gsize) t * cols, cols, q, d, NULL, qsum);
      } else {
        memset (q, 0, (gsize) nb * G3N_QBLOCK);
        memset (d, 0, sizeof (float) * nb);
        memset (qsum, 0, sizeof (gint32) * nb);
      }
      pack_token (k, q, nb, j, tile);
      for (int b = 0; b < nb; b++) {
        dx[b * k->mt + j] = d[b];
        xc[b * k->mt + j] = -128 * qsum[b];
      }
    }
  }
  g_free (q), g_free (d), g_free (qsum);
}

/* Asks for the codes and scales of rows [i0, i1) of the row tile at r0, blocks [b0, b0 + nbk), ahead of
 * their repacking: tiles of rows far apart are no stream the hardware prefetchers follow. Into L2, as the
 * token tiles streaming through L1 would evict them first. Spread over the token tiles of the current
 * tile, a few rows each: a burst of hundreds fills the miss buffers and stalls. */
static void
prefetch_rows (const QGemm *g, int r0, int i0, int i1, int b0, int nbk)
{
  const G3nMatrix *m = g->m;
  const gsize code_bytes = g3n_quant_row_bytes (m->quant, G3N_QBLOCK); /* per block */
  for (int r = r0 + i0; r < MIN (r0 + i1, m->rows); r++) {
    const char *codes = (const char *) m->data + r * g->row_bytes + b0 * code_bytes;
    const char *scales = (const char *) (m->scales + (gsize) r * g->nb + b0);
    for (gsize off = 0; off < nbk * code_bytes + 63; off += 64) /* the codes are only 16-byte aligned */
      __builtin_prefetch (MIN (codes + off, codes + nbk * code_bytes - 1), 0, 2);
    __builtin_prefetch (scales, 0, 2);
    __builtin_prefetch (scales + nbk * sizeof (guint16) - 1, 0, 2);
  }
}

/* Row tiles × token tiles of one thread's share (rows or tokens). */
static void
gemm_part (int begin, int end, gpointer data)
{
  QGemm *g = data;
  const QKernel *k = g->k;
  const int rows = g->m->rows, nb = g->nb;
  int rt0 = 0, rt1 = g->n_rtiles, tt0 = 0, tt1 = g->n_ttiles;
  if (g->split_tokens)
    tt0 = begin, tt1 = end;
  else
    rt0 = begin, rt1 = end;
  /* one repacked weight tile: RT·KCB·32 codes of up to 2 bytes, scales and corrections (64-byte aligned) */
  const gsize codes = RT_MAX * KCB * G3N_QBLOCK * 2, scales = RT_MAX * KCB * sizeof (float);
  guint8 *w = g3n_thread_scratch (&tile_key, &tile_size_key, codes + 2 * scales);
  float *dw = (float *) (w + codes);
  gint32 *wc = (gint32 *) (w + codes + scales);
  for (int c0 = tt0; c0 < tt1; c0 += g->chunk) {
    int c1 = MIN (c0 + g->chunk, tt1);
    for (int p0 = 0; p0 < nb; p0 += KCP) {
      /* steps of the pass: row tile rt0 + s / subs, K block p0 + (s % subs)·KCB */
      int subs = (MIN (KCP, nb - p0) + KCB - 1) / KCB, steps = (rt1 - rt0) * subs;
      for (int s = 0; s < steps; s++) {
        int r0 = (rt0 + s / subs) * k->rt, mr = MIN (k->rt, rows - r0);
        int b0 = p0 + s % subs * KCB, nbk = MIN (KCB, nb - b0);
        k->prep (g->m, r0, mr, b0, nbk, w, dw, wc);
        /* the step after this one (or the next pass's first), asked for a few rows per token tile */
        int next_r0 = s + 1 < steps ? (rt0 + (s + 1) / subs) * k->rt : rt0 * k->rt;
        int next_b0 = s + 1 < steps ? p0 + (s + 1) % subs * KCB : p0 + KCP;
        int next_nbk = MIN (KCB, nb - next_b0);
        for (int tt = c0; tt < c1; tt++) {
          if (next_nbk > 0) {
            int i = tt - c0, count = c1 - c0;
            prefetch_rows (g, next_r0, i * k->rt / count, (i + 1) * k->rt / count, next_b0, next_nbk);
          }
          gsize at = (gsize) tt * nb + b0; /* the tile's scales at block b0, in units of mt */
          QTile t = { .w = w, .dw = dw, .wc = wc, .nbk = nbk, .mr = mr, .first = b0 == 0, .ldy = rows,
                      .x = g->codes + tt * g->tile_codes + g->tile_codes / nb * b0,
                      .dx = g->dx + at * k->mt, .xc = g->xc + at * k->mt,
                      .mt = MIN (k->mt, g->n - tt * k->mt),
                      .y = g->y + (gsize) tt * k->mt * rows + r0 };
          k->tile (&t);
        }
      }
    }
  }
}

void
g3n_quant_gemm (const G3nMatrix *m, const float *x, int n, float *y)
{
  g_return_if_fail (m->quant != G3N_QUANT_NONE && !m->by_input);
  const QKernel *k = kernel_for (m->quant);
  QGemm g = { .m = m, .k = k, .x = x, .y = y, .n = n, .nb = g3n_quant_blocks (m->cols),
              .row_bytes = g3n_quant_row_bytes (m->quant, m->cols) };
  g.n_rtiles = (m->rows + k->rt - 1) / k->rt;
  g.n_ttiles = (n + k->mt - 1) / k->mt;
  g.tile_codes = (gsize) g.nb * G3N_QBLOCK * k->mt * k->xsize;
  gsize scales = (gsize) g.n_ttiles * g.nb * k->mt;
  gsize bytes = g.tile_codes * g.n_ttiles + scales * (sizeof (float) + sizeof (gint32));
  g.codes = g3n_thread_scratch (&tokens_key, &tokens_size_key, bytes);
  g.dx = (float *) (g.codes + g.tile_codes * g.n_ttiles);
  g.xc = (gint32 *) (g.dx + scales);
  g3n_parallel_for (g.n_ttiles, 1, quantise_tiles, &g);

  /* as few chunks as fit (each reads and repacks the weights), of equal size */
  int most = (int) MAX (1, CHUNK_BYTES / (g.tile_codes / g.nb * MIN (KCP, g.nb))); /* a pass's slice of each */
  int chunks = (g.n_ttiles + most - 1) / most;
  g.chunk = (g.n_ttiles + chunks - 1) / chunks;
  /* Threads split the weight rows (each reads and repacks its share once per chunk); with too few rows to
   * go round, they split the token tiles instead. */
  int threads = g3n_kernels_threads ();
  g.split_tokens = g.n_rtiles < 4 * threads && g.n_ttiles >= 2 * threads;
  g3n_parallel_for (g.split_tokens ? g.n_ttiles : g.n_rtiles, 1, gemm_part, &g);
}
