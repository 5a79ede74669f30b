/* text-decoder.c — the Gemma 3n text decoder (Gemma3nTextModel + tied LM head), incrementally.
 *
 * One call processes a batch of T new tokens at positions n_past … n_past+T-1 against the KV cache.
 * Per token the hidden state is altup_num_inputs parallel "AltUp streams"; each layer predicts all
 * streams from a learned mix, runs attention + MLP on the active one only, then corrects the others
 * with the innovation. Per-layer embeddings (PLE) are added to the non-active streams after each layer.
 * Names and order follow transformers' modeling_gemma3n.py so each step can be checked against it.
 */
#include "compute.h"
#include "kernels/threadpool.h"
#include "kv-cache.h"
#include "model.h"

#include <math.h>
#include <string.h>

/* Tokens processed per internal step: bounds scratch memory for long prompts; results do not depend on it. */
#define MAX_UBATCH 256

struct _G3nContext {
  G3nModel *model;
  int n_ctx;
  int n_past;
  G3nKvType kv_type;
  int n_threads;        /* the context's budget for its products (g3n_kernels_push_threads) */
  int keep_from;        /* sliding layers keep this position's window (g3n_context_keep_from); -1: none */
  G3nKvLayer *kv;       /* per layer; used only by layers that compute their own keys/values */
  float *inv_freq[2];   /* RoPE inverse frequencies [head_dim / 2] of the global [0] and local [1] layers */
};

/* Scratch for one micro-batch of T tokens. */
typedef struct {
  int T;
  const int32_t *ids;
  const int *pos;
  float *streams;   /* [A, T, H] */
  float *pred;      /* [A, T, H] predictions */
  float *pli;       /* [T, L, P] per-layer inputs */
  float *x, *y, *z; /* [T, H] work rows */
  float *big;       /* [T, max(I, q width, L*P)] */
  float *big2;      /* same size */
  float *q;         /* [T, heads * head_dim] */
  float *k, *v;     /* [T, kv_heads * head_dim] */
  float *mod;       /* [T, A] router modalities */
  float *coefs;     /* [T, A*A] */
  int *nz;          /* [max intermediate size] indices of non-zero activations */
  float *rope_cos[2], *rope_sin[2]; /* [T, head_dim / 2] per token: global [0] and local [1] layers */
} Work;

/* ---------------------------------------------------------------------------- small helpers */

static inline float *
row (float *base, int i, int width)
{
  return base + (gsize) i * width;
}

/* Φ⁻¹(p) by Newton's method on erf — the reference's Normal(0, 1).icdf(target_sparsity). */
static double
normal_icdf (double p)
{
  double x = 0, target = 2 * p - 1;
  for (int it = 0; it < 100; it++) {
    double err = erf (x / M_SQRT2) - target;
    double deriv = sqrt (2 / M_PI) * exp (-x * x / 2);
    double step = err / deriv;
    x -= step;
    if (fabs (step) < 1e-15)
      break;
  }
  return x;
}

/* Keeps only activations above mean + k·std of the row (k from the target sparsity), shifted down by
 * that cutoff: the "Gaussian top-k" of Gemma 3n's sparse MLP layers. */
static void
gaussian_topk (float *x, int n, float sparsity)
{
  float mult = (float) normal_icdf ((double) (float) sparsity);
  double sum = 0, sq = 0;
  for (int i = 0; i < n; i++)
    sum += x[i];
  double mean = sum / n;
  for (int i = 0; i < n; i++)
    sq += (x[i] - mean) * (x[i] - mean);
  float cutoff = (float) mean + (float) sqrt (sq / n) * mult;
  for (int i = 0; i < n; i++)
    x[i] = x[i] > cutoff ? x[i] - cutoff : 0.0f;
}

/* RoPE in the reference's fp32 steps, bit for bit: inv_freq[i] = 1 / theta^(2i/d) once per context, cos
 * and sin of angle = inv_freq[i] · pos once per token (shared by every layer of that theta), then the
 * rotation itself, vectorised. Making the powf/cosf/sinf calls per layer and element pair instead cost
 * 0.2 ms per E2B token against 0.015 ms now: ~1% of prompt processing, ~0.1% of decode. */
static float *
rope_inv_freq (double theta, int head_dim)
{
  float *inv = g_new (float, head_dim / 2);
  for (int i = 0; i < head_dim / 2; i++)
    inv[i] = 1.0f / powf ((float) theta, (float) (2 * i) / (float) head_dim);
  return inv;
}

static void
rope_angles (const float *inv, int half, int pos, float *c, float *s)
{
  for (int i = 0; i < half; i++) {
    float ang = inv[i] * (float) pos;
    c[i] = cosf (ang);
    s[i] = sinf (ang);
  }
}

#define ROPE_LANES 8

/* Rotates pairs (i, i + d/2) of one head by the angles whose cos/sin are given (rotate_half convention).
 * Blocks of ROPE_LANES with a constant trip count on restrict pointers, which GCC's -O2 vectoriser takes;
 * the same arithmetic per element as scalar code. */
static void
rope_head (float *restrict lo, float *restrict hi, const float *restrict c, const float *restrict s, int half)
{
  int i = 0;
  for (; i + ROPE_LANES <= half; i += ROPE_LANES)
    for (int k = 0; k < ROPE_LANES; k++) {
      float a = lo[i + k], b = hi[i + k];
      lo[i + k] = a * c[i + k] - b * s[i + k];
      hi[i + k] = b * c[i + k] + a * s[i + k];
    }
  for (; i < half; i++) {
    float a = lo[i], b = hi[i];
    lo[i] = a * c[i] - b * s[i];
    hi[i] = b * c[i] + a * s[i];
  }
}

static void
rope (float *x, int n_heads, int head_dim, const float *c, const float *s)
{
  for (int h = 0; h < n_heads; h++)
    rope_head (x + (gsize) h * head_dim, x + (gsize) h * head_dim + head_dim / 2, c, s, head_dim / 2);
}

static void
rms_norm_rows (const float *x, const float *w, float eps, int rows, int n, float *out)
{
  for (int r = 0; r < rows; r++)
    g3n_rms_norm (x + (gsize) r * n, w, eps, n, out + (gsize) r * n);
}

/* ------------------------------------------------------------------------------ embeddings */

/* Per-layer inputs: (RMSNorm(per_layer_model_projection(emb) / √H) + embed_tokens_per_layer(id) · √P) / √2. */
static void
per_layer_inputs (const G3nModel *m, Work *w, const float *emb)
{
  const G3nTextConfig *c = &m->config->text;
  int H = c->hidden_size, L = c->num_hidden_layers, P = c->hidden_size_per_layer_input, T = w->T;
  const float proj_scale = 1.0f / sqrtf ((float) H);
  const float emb_scale = (float) sqrt ((double) P);
  const float combine = 1.0f / sqrtf (2.0f);
  g3n_matmul (&m->text.per_layer_model_projection, emb, T, w->pli);
  for (int t = 0; t < T; t++) {
    float *dst = row (w->pli, t, L * P);
    for (int i = 0; i < L * P; i++)
      dst[i] *= proj_scale;
    rms_norm_rows (dst, m->text.per_layer_projection_norm, (float) c->rms_norm_eps, L, P, dst);
    /* Ids outside the per-layer vocabulary (multimodal tokens) use row 0, as Gemma3nModel does. */
    int id = w->ids[t] >= 0 && w->ids[t] < c->vocab_size_per_layer_input ? w->ids[t] : 0;
    float *tok = w->big;
    g3n_matrix_row (&m->text.embed_tokens_per_layer, id, tok);
    for (int i = 0; i < L * P; i++)
      dst[i] = (dst[i] + tok[i] * emb_scale) * combine;
  }
}

/* Rescales `x` rows to the RMS magnitude of the matching `ref` rows (AltUp stream (un)embedding). */
static void
match_magnitude (float *x, const float *ref, int T, int H)
{
  for (int t = 0; t < T; t++) {
    double a = 0, b = 0;
    const float *r = ref + (gsize) t * H;
    float *p = x + (gsize) t * H;
    for (int i = 0; i < H; i++) {
      a += (double) r[i] * r[i];
      b += (double) p[i] * p[i];
    }
    float target = sqrtf ((float) (a / H));
    float mag = sqrtf (fmaxf ((float) (b / H), 1e-5f));
    for (int i = 0; i < H; i++)
      p[i] = p[i] * target / mag;
  }
}

/* Stream 0 is the embedding; stream i is altup_projections[i-1](embedding) at the embedding's magnitude. */
static void
altup_expand (const G3nModel *m, Work *w, const float *emb)
{
  int H = m->config->text.hidden_size, A = m->config->text.altup_num_inputs, T = w->T;
  memcpy (w->streams, emb, sizeof (float) * T * H);
  for (int i = 1; i < A; i++) {
    float *s = w->streams + (gsize) i * T * H;
    g3n_matmul (&m->text.altup_projections[i - 1], emb, T, s);
    match_magnitude (s, emb, T, H);
  }
}

/* ------------------------------------------------------------------------------------ AltUp */

/* tanh(router(RMSNorm(x) / H)) per token → w->mod [T, A]. */
static void
router_modalities (const G3nModel *m, const G3nTextLayer *l, Work *w, const float *x)
{
  const G3nTextConfig *c = &m->config->text;
  int H = c->hidden_size, A = c->altup_num_inputs;
  const float scale = 1.0f / (float) H;
  rms_norm_rows (x, l->altup_router_norm, (float) c->rms_norm_eps, w->T, H, w->z);
  for (gsize i = 0; i < (gsize) w->T * H; i++)
    w->z[i] *= scale;
  g3n_matmul (&l->altup_modality_router, w->z, w->T, w->mod);
  for (int i = 0; i < w->T * A; i++)
    w->mod[i] = tanhf (w->mod[i]);
}

/* pred_j = stream_j + Σ_i C[j, i] · stream_i, with C = prediction_coefs(modalities) as an A×A matrix. */
static void
altup_predict (const G3nModel *m, const G3nTextLayer *l, Work *w)
{
  const G3nTextConfig *c = &m->config->text;
  int H = c->hidden_size, A = c->altup_num_inputs, T = w->T;
  router_modalities (m, l, w, w->streams + (gsize) c->altup_active_idx * T * H);
  for (int t = 0; t < T; t++)
    for (int k = 0; k < A * A; k++)
      w->coefs[t * A * A + k] = g3n_dot (l->altup_prediction_coefs + k * A, w->mod + t * A, A);
  for (int j = 0; j < A; j++)
    for (int t = 0; t < T; t++) {
      float *dst = w->pred + ((gsize) j * T + t) * H;
      memcpy (dst, w->streams + ((gsize) j * T + t) * H, sizeof (float) * H);
      for (int i = 0; i < A; i++)
        g3n_axpy (w->coefs[t * A * A + j * A + i], w->streams + ((gsize) i * T + t) * H, dst, H);
    }
}

/* stream_i = pred_i + (activated - pred_active) · (1 + correction_coefs(modalities(activated)))_i */
static void
altup_correct (const G3nModel *m, const G3nTextLayer *l, Work *w, const float *activated)
{
  const G3nTextConfig *c = &m->config->text;
  int H = c->hidden_size, A = c->altup_num_inputs, T = w->T;
  router_modalities (m, l, w, activated);
  const float *active = w->pred + (gsize) c->altup_active_idx * T * H;
  for (int t = 0; t < T; t++)
    for (int i = 0; i < A; i++) {
      float coef = g3n_dot (l->altup_correction_coefs + i * A, w->mod + t * A, A) + 1.0f;
      g3n_add_scaled_difference (w->streams + ((gsize) i * T + t) * H, w->pred + ((gsize) i * T + t) * H,
                                 activated + (gsize) t * H, active + (gsize) t * H, coef, H);
    }
}

/* -------------------------------------------------------------------------------- attention */

/* Queries per attention block: bounds the score matrix (QUERY_BLOCK × visible keys) for long prompts. */
#define QUERY_BLOCK 64
/* Batches of fewer tokens over an F16/BF16 cache attend one query at a time, reading the cache in place
 * (decode); larger ones widen each block's keys and values to fp32 and use sgemm. */
#define HALF_GEMM_MIN 4

typedef struct {
  const G3nTextConfig *c;
  const G3nKvLayer *kv;
  const Work *w;
  gboolean sliding;
  float *out; /* [T, heads * head_dim] */
} AttnJob;

/* A thread's scratch: scores [queries of a block, visible keys]; for 16-bit caches also the block's keys
 * and values widened to fp32 [visible keys, head_dim]. */
typedef struct {
  float *scores, *k, *v;
} AttnScratch;

/* The keys query position p may see: causal, and for sliding layers only the last window. */
static void
visible (const AttnJob *j, int p, int *lo, int *hi)
{
  *lo = j->sliding ? MAX (j->kv->pos0, p - j->c->sliding_window + 1) : j->kv->pos0;
  *hi = MIN (p, j->kv->pos0 + j->kv->len - 1);
}

/* One head over queries [t0, t0+n): S = Q·Kᵀ on the keys any of them sees, masked per query, softmax,
 * O = S·V — two sgemm calls instead of a dot product per (query, key). Attention scaling is 1.0: the q/k
 * RMS norms stand in for 1/√d. A 16-bit cache is read through fp32 copies of the block. */
static void
attend_block (const AttnJob *j, int h, int t0, int n, AttnScratch *s)
{
  const G3nTextConfig *c = j->c;
  const G3nKvLayer *kv = j->kv;
  int nh = c->num_attention_heads, hd = c->head_dim, kvh = h / (nh / c->num_key_value_heads);
  int lo, hi, lo_last, hi_last;
  visible (j, j->w->pos[t0], &lo, &hi);
  visible (j, j->w->pos[t0 + n - 1], &lo_last, &hi_last);
  int nk = hi_last - lo + 1, ld = kv->width;
  const float *k, *v;
  if (kv->dtype == G3N_DTYPE_F32) {
    k = (const float *) g3n_kv_layer_row (kv, FALSE, lo - kv->pos0) + kvh * hd;
    v = (const float *) g3n_kv_layer_row (kv, TRUE, lo - kv->pos0) + kvh * hd;
  } else {
    g3n_kv_layer_read (kv, FALSE, lo - kv->pos0, nk, kvh * hd, hd, s->k);
    g3n_kv_layer_read (kv, TRUE, lo - kv->pos0, nk, kvh * hd, hd, s->v);
    k = s->k, v = s->v, ld = hd;
  }
  const float *q = j->w->q + (gsize) t0 * nh * hd + h * hd;
  float *scores = s->scores;
  g3n_sgemm_nt (n, nk, hd, q, nh * hd, k, ld, scores, nk);
  for (int t = 0; t < n; t++) {
    int a, b;
    visible (j, j->w->pos[t0 + t], &a, &b);
    float *row = scores + (gsize) t * nk;
    g3n_softmax (row + (a - lo), b - a + 1);
    for (int i = 0; i < a - lo; i++)
      row[i] = 0;
    for (int i = b - lo + 1; i < nk; i++)
      row[i] = 0;
  }
  g3n_sgemm_nn (n, hd, nk, scores, nk, v, ld, j->out + (gsize) t0 * nh * hd + h * hd, nh * hd);
}

static void
attend_heads (int begin, int end, gpointer data)
{
  const AttnJob *j = data;
  int T = j->w->T, hd = j->c->head_dim, lo, hi;
  visible (j, j->w->pos[T - 1], &lo, &hi);
  int max_keys = hi - MIN (lo, j->kv->pos0) + 1;
  AttnScratch s = { g_new (float, (gsize) MIN (T, QUERY_BLOCK) * max_keys), NULL, NULL };
  if (j->kv->dtype != G3N_DTYPE_F32) {
    s.k = g_new (float, (gsize) max_keys * hd);
    s.v = g_new (float, (gsize) max_keys * hd);
  }
  for (int h = begin; h < end; h++)
    for (int t0 = 0; t0 < T; t0 += QUERY_BLOCK)
      attend_block (j, h, t0, MIN (QUERY_BLOCK, T - t0), &s);
  g_free (s.scores);
  g_free (s.k);
  g_free (s.v);
}

/* One query over a 16-bit cache, read in place: scores = q·k per visible key, softmax, Σ p·v. Every query
 * head goes through the cached rows together (the heads sharing a KV head widen each value once), and the
 * rows are cut into chunks for the threads (a model has few KV heads to split by: E2B 2): the scores of a
 * chunk, the softmax per head, then each chunk's weighted sum of values, added up in chunk order. Chunk
 * sizes depend on the number of keys only, so results do not depend on the thread count. */
static int
key_chunk (int nk)
{
  return nk <= 512 ? 64 : 256; /* short contexts still split; long ones add fewer partial sums */
}

typedef struct {
  const AttnJob *j;
  int t, lo, nk;   /* the query, its first visible key and their number */
  float *scores;   /* [heads, nk] */
  float *partial;  /* [chunks, heads, head_dim] */
} HalfQuery;

static void
half_scores (int begin, int end, gpointer data)
{
  const HalfQuery *hq = data;
  const G3nTextConfig *c = hq->j->c;
  const G3nKvLayer *kv = hq->j->kv;
  int nh = c->num_attention_heads, hd = c->head_dim, G = nh / c->num_key_value_heads, size = key_chunk (hq->nk);
  for (int chunk = begin; chunk < end; chunk++) {
    int i0 = chunk * size, n = MIN (size, hq->nk - i0);
    const guint16 *k = g3n_kv_layer_row (kv, FALSE, hq->lo - kv->pos0 + i0);
    g3n_half_dots (kv->dtype, hq->j->w->q + (gsize) hq->t * nh * hd, hd, nh, G, k, kv->width, n, hd,
                   hq->scores + i0, hq->nk);
  }
}

static void
half_softmax (int begin, int end, gpointer data)
{
  const HalfQuery *hq = data;
  for (int h = begin; h < end; h++)
    g3n_softmax (hq->scores + (gsize) h * hq->nk, hq->nk);
}

static void
half_values (int begin, int end, gpointer data)
{
  const HalfQuery *hq = data;
  const G3nTextConfig *c = hq->j->c;
  const G3nKvLayer *kv = hq->j->kv;
  int nh = c->num_attention_heads, hd = c->head_dim, G = nh / c->num_key_value_heads, size = key_chunk (hq->nk);
  for (int chunk = begin; chunk < end; chunk++) {
    int i0 = chunk * size, n = MIN (size, hq->nk - i0);
    const guint16 *v = g3n_kv_layer_row (kv, TRUE, hq->lo - kv->pos0 + i0);
    g3n_half_weighted_sum (kv->dtype, hq->scores + i0, hq->nk, nh, G, v, kv->width, n, hd,
                           hq->partial + (gsize) chunk * nh * hd, hd);
  }
}

/* out += x, vectorised (restrict, constant-trip blocks, like rope_head) */
static void
add_to (float *restrict out, const float *restrict x, int n)
{
  int i = 0;
  for (; i + ROPE_LANES <= n; i += ROPE_LANES)
    for (int k = 0; k < ROPE_LANES; k++)
      out[i + k] += x[i + k];
  for (; i < n; i++)
    out[i] += x[i];
}

static void
attend_query_half (const AttnJob *j, int t)
{
  const G3nTextConfig *c = j->c;
  int nh = c->num_attention_heads, hd = c->head_dim, hi;
  HalfQuery hq = { .j = j, .t = t };
  visible (j, j->w->pos[t], &hq.lo, &hi);
  hq.nk = hi - hq.lo + 1;
  int chunks = (hq.nk + key_chunk (hq.nk) - 1) / key_chunk (hq.nk);
  float *out = j->out + (gsize) t * nh * hd;
  hq.scores = g_new (float, (gsize) nh * hq.nk);
  /* one chunk sums straight into the output */
  hq.partial = chunks > 1 ? g_new (float, (gsize) chunks * nh * hd) : out;
  g3n_parallel_for (chunks, 1, half_scores, &hq);
  g3n_parallel_for (nh, MAX (1, 2048 / hq.nk), half_softmax, &hq); /* short rows: not worth a thread */
  g3n_parallel_for (chunks, 1, half_values, &hq);
  if (chunks > 1) {
    memcpy (out, hq.partial, sizeof (float) * nh * hd);
    for (int k = 1; k < chunks; k++)
      add_to (out, hq.partial + (gsize) k * nh * hd, nh * hd);
    g_free (hq.partial);
  }
  g_free (hq.scores);
}

static void
attend (const G3nTextConfig *c, const G3nKvLayer *kv, Work *w, gboolean sliding, float *out)
{
  AttnJob j = { c, kv, w, sliding, out };
  if (kv->dtype != G3N_DTYPE_F32 && w->T < HALF_GEMM_MIN)
    for (int t = 0; t < w->T; t++)
      attend_query_half (&j, t);
  else
    g3n_parallel_for (c->num_attention_heads, 1, attend_heads, &j);
}

static void
self_attention (G3nContext *ctx, int layer, Work *w, const float *normed, float *out)
{
  const G3nModel *m = ctx->model;
  const G3nTextConfig *c = &m->config->text;
  const G3nTextLayer *l = &m->text.layers[layer];
  int nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim, T = w->T;
  float eps = (float) c->rms_norm_eps;
  gboolean sliding = c->is_sliding[layer];
  const float *cos_t = w->rope_cos[sliding], *sin_t = w->rope_sin[sliding];
  int half = hd / 2;
  int source = g3n_text_config_kv_source_layer (c, layer);

  g3n_matmul (&l->q_proj, normed, T, w->q);
  for (int t = 0; t < T; t++) {
    rms_norm_rows (row (w->q, t, nh * hd), l->q_norm, eps, nh, hd, row (w->q, t, nh * hd));
    rope (row (w->q, t, nh * hd), nh, hd, cos_t + (gsize) t * half, sin_t + (gsize) t * half);
  }
  if (source == layer) {
    g3n_matmul (&l->k_proj, normed, T, w->k);
    g3n_matmul (&l->v_proj, normed, T, w->v);
    for (int t = 0; t < T; t++) {
      rms_norm_rows (row (w->k, t, nkv * hd), l->k_norm, eps, nkv, hd, row (w->k, t, nkv * hd));
      rope (row (w->k, t, nkv * hd), nkv, hd, cos_t + (gsize) t * half, sin_t + (gsize) t * half);
      rms_norm_rows (row (w->v, t, nkv * hd), NULL, eps, nkv, hd, row (w->v, t, nkv * hd));
    }
    g3n_kv_layer_append (&ctx->kv[layer], w->k, w->v, T);
  }
  /* KV-shared layers read the keys/values of the last unshared layer of their type, including this batch's. */
  attend (c, &ctx->kv[source], w, sliding, w->big2);
  g3n_matmul (&l->o_proj, w->big2, T, out);
}

/* ------------------------------------------------------------------------------------ layer */

/* Up to this many tokens, a sparse layer computes only the up_proj rows its activations need (each token
 * its own ~5%); beyond, the tokens' rows cover most of the matrix and one dense product is cheaper. */
#define SPARSE_UP_MAX_TOKENS 4

/* act[t] *= up_proj · x[t], computing only the rows where act[t] is non-zero (gelu(0) = 0, so the top-k's
 * zeros stay zeros). */
static void
up_proj_sparse (const G3nTextLayer *l, Work *w, int I, const float *x, float *act)
{
  for (int t = 0; t < w->T; t++) {
    float *a = row (act, t, I), *up = w->big2;
    int n = 0;
    for (int i = 0; i < I; i++)
      if (a[i] != 0)
        w->nz[n++] = i;
    g3n_matmul_rows (&l->up_proj, row ((float *) x, t, l->up_proj.cols), w->nz, n, up);
    for (int k = 0; k < n; k++)
      a[w->nz[k]] *= up[k];
  }
}

static void
mlp (const G3nModel *m, int layer, Work *w, const float *x, float *out)
{
  const G3nTextConfig *c = &m->config->text;
  const G3nTextLayer *l = &m->text.layers[layer];
  int I = c->intermediate_size[layer], T = w->T;
  gboolean sparse = c->activation_sparsity[layer] > 0;
  g3n_matmul (&l->gate_proj, x, T, w->big);
  if (sparse)
    for (int t = 0; t < T; t++)
      gaussian_topk (row (w->big, t, I), I, c->activation_sparsity[layer]);
  g3n_gelu_tanh (w->big, (gsize) T * I);
  if (sparse && T <= SPARSE_UP_MAX_TOKENS) {
    up_proj_sparse (l, w, I, x, w->big);
  } else {
    g3n_matmul (&l->up_proj, x, T, w->big2);
    for (gsize i = 0; i < (gsize) T * I; i++)
      w->big[i] *= w->big2[i];
  }
  /* in sparse layers down_proj is stored by input and reads only the non-zero activations' rows */
  g3n_matmul (&l->down_proj, w->big, T, out);
}

static void
decoder_layer (G3nContext *ctx, int layer, Work *w)
{
  const G3nModel *m = ctx->model;
  const G3nTextConfig *c = &m->config->text;
  const G3nTextLayer *l = &m->text.layers[layer];
  int H = c->hidden_size, A = c->altup_num_inputs, P = c->hidden_size_per_layer_input, T = w->T;
  int L = c->num_hidden_layers;
  float eps = (float) c->rms_norm_eps;
  gsize TH = (gsize) T * H;
  const float inv_sqrt2 = 1.0f / sqrtf (2.0f);

  altup_predict (m, l, w);
  float *active = w->pred + (gsize) c->altup_active_idx * TH;
  float *normed = w->x, *laurel = w->y, *attn = w->z;

  rms_norm_rows (active, l->input_layernorm, eps, T, H, normed);

  /* LAuReL: a low-rank residual branch beside attention. */
  float *low = w->big;
  g3n_matmul (&l->laurel_left, normed, T, low);
  g3n_matmul (&l->laurel_right, low, T, laurel);
  rms_norm_rows (laurel, l->laurel_norm, eps, T, H, laurel);
  g3n_axpy (1.0f, normed, laurel, (int) TH); /* 1·x is exact: a plain sum, vectorised */

  /* attn (in w->z) = post_attention_layernorm(self_attn(normed)); normed is dead after this */
  self_attention (ctx, layer, w, normed, attn);
  rms_norm_rows (attn, l->post_attention_layernorm, eps, T, H, attn);
  float *attn_laurel = w->x;
  for (gsize i = 0; i < TH; i++)
    attn_laurel[i] = (active[i] + attn[i] + laurel[i]) * inv_sqrt2;

  float *ffw = w->y, *ffw_in = w->z;
  rms_norm_rows (attn_laurel, l->pre_feedforward_layernorm, eps, T, H, ffw_in);
  mlp (m, layer, w, ffw_in, ffw);
  rms_norm_rows (ffw, l->post_feedforward_layernorm, eps, T, H, ffw);
  g3n_axpy (1.0f, attn_laurel, ffw, (int) TH);
  float *activated = w->y;
  altup_correct (m, l, w, activated);

  /* Per-layer embedding: gate the corrected active stream, mix in this layer's input, add to the others. */
  float *first = w->x;
  memcpy (first, w->streams + (gsize) c->altup_active_idx * TH, sizeof (float) * TH);
  if (c->altup_correct_scale)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++)
        first[(gsize) t * H + h] *= l->altup_correct_output_scale[h];
  float *gate = w->big;
  g3n_matmul (&l->per_layer_input_gate, first, T, gate);
  g3n_gelu_tanh (gate, (gsize) T * P);
  for (int t = 0; t < T; t++)
    for (int p = 0; p < P; p++)
      gate[t * P + p] *= w->pli[((gsize) t * L + layer) * P + p];
  float *proj = w->y;
  g3n_matmul (&l->per_layer_projection, gate, T, proj);
  rms_norm_rows (proj, l->post_per_layer_input_norm, eps, T, H, proj);
  for (int i = 1; i < A; i++)
    g3n_axpy (1.0f, proj, w->streams + i * TH, (int) TH);
}

/* --------------------------------------------------------------------------------- output */

/* Un-embeds streams 1.. back to stream 0's magnitude, averages all streams, applies the final norm. */
static void
final_hidden (const G3nModel *m, Work *w, float *out)
{
  const G3nTextConfig *c = &m->config->text;
  int H = c->hidden_size, A = c->altup_num_inputs, T = w->T;
  gsize TH = (gsize) T * H;
  memcpy (out, w->streams, sizeof (float) * TH);
  for (int i = 1; i < A; i++) {
    g3n_matmul (&m->text.altup_unembed_projections[i - 1], w->streams + i * TH, T, w->y);
    match_magnitude (w->y, w->streams, T, H);
    for (gsize k = 0; k < TH; k++)
      out[k] += w->y[k];
  }
  for (gsize k = 0; k < TH; k++)
    out[k] /= (float) A;
  rms_norm_rows (out, m->text.norm, (float) c->rms_norm_eps, T, H, out);
}

typedef struct {
  float *logits;
  float cap;
} SoftcapJob;

static void
softcap_range (int begin, int end, gpointer data)
{
  SoftcapJob *j = data;
  g3n_softcap (j->logits + begin, end - begin, j->cap);
}

static void
lm_head (const G3nModel *m, const float *hidden, int n, float *logits)
{
  const G3nTextConfig *c = &m->config->text;
  g3n_matmul (&m->text.lm_head, hidden, n, logits);
  float cap = (float) c->final_logit_softcapping;
  if (cap <= 0)
    return;
  /* a quarter of a million logits per token: on the pool, or decode waits on one thread for it */
  SoftcapJob j = { logits, cap };
  for (int t = 0; t < n; t++, j.logits += c->vocab_size)
    g3n_parallel_for (c->vocab_size, 16384, softcap_range, &j);
}

/* ---------------------------------------------------------------------------------- driver */

static Work *
work_new (const G3nTextConfig *c, int T)
{
  int H = c->hidden_size, A = c->altup_num_inputs, L = c->num_hidden_layers, P = c->hidden_size_per_layer_input;
  int max_i = 0;
  for (int i = 0; i < L; i++)
    max_i = MAX (max_i, c->intermediate_size[i]);
  int wide = MAX (MAX (max_i, c->num_attention_heads * c->head_dim), MAX (L * P, c->laurel_rank));
  Work *w = g_new0 (Work, 1);
  w->streams = g_new (float, (gsize) A * T * H);
  w->pred = g_new (float, (gsize) A * T * H);
  w->pli = g_new (float, (gsize) T * L * P);
  w->x = g_new (float, (gsize) T * H);
  w->y = g_new (float, (gsize) T * H);
  w->z = g_new (float, (gsize) T * H);
  w->big = g_new (float, (gsize) T * wide);
  w->big2 = g_new (float, (gsize) T * wide);
  w->q = g_new (float, (gsize) T * c->num_attention_heads * c->head_dim);
  w->k = g_new (float, (gsize) T * c->num_key_value_heads * c->head_dim);
  w->v = g_new (float, (gsize) T * c->num_key_value_heads * c->head_dim);
  w->mod = g_new (float, (gsize) T * A);
  w->coefs = g_new (float, (gsize) T * A * A);
  w->nz = g_new (int, max_i);
  for (int i = 0; i < 2; i++) {
    w->rope_cos[i] = g_new (float, (gsize) T * (c->head_dim / 2));
    w->rope_sin[i] = g_new (float, (gsize) T * (c->head_dim / 2));
  }
  return w;
}

static void
work_free (Work *w)
{
  float *bufs[] = { w->streams, w->pred, w->pli, w->x, w->y, w->z, w->big, w->big2, w->q, w->k, w->v, w->mod,
                    w->coefs, w->rope_cos[0], w->rope_sin[0], w->rope_cos[1], w->rope_sin[1] };
  for (guint i = 0; i < G_N_ELEMENTS (bufs); i++)
    g_free (bufs[i]);
  g_free (w->nz);
  g_free (w);
}

/* Copies a [rows, T, H] block into a [rows, T_total, H] tensor at token offset t0. */
static void
scatter_rows (float *dst, const float *src, int rows, int T, int T_total, int t0, int H)
{
  for (int r = 0; r < rows; r++)
    memcpy (dst + ((gsize) r * T_total + t0) * H, src + (gsize) r * T * H, sizeof (float) * T * H);
}

/* Returns FALSE when cancelled between layers; the caller then rolls the caches back. */
static gboolean
run_ubatch (G3nContext *ctx, const G3nBatch *b, int t0, int T)
{
  const G3nModel *m = ctx->model;
  const G3nTextConfig *c = &m->config->text;
  int H = c->hidden_size, A = c->altup_num_inputs, L = c->num_hidden_layers, P = c->hidden_size_per_layer_input;
  int N = b->n_tokens;
  int *pos = g_new (int, T);
  for (int t = 0; t < T; t++)
    pos[t] = ctx->n_past + t;
  Work *w = work_new (c, T);
  w->T = T;
  w->ids = b->ids + t0;
  w->pos = pos;
  int half = c->head_dim / 2;
  for (int i = 0; i < 2; i++)
    for (int t = 0; t < T; t++)
      rope_angles (ctx->inv_freq[i], half, pos[t], w->rope_cos[i] + (gsize) t * half, w->rope_sin[i] + (gsize) t * half);

  float *emb = g_new (float, (gsize) T * H);
  if (b->embeds)
    memcpy (emb, b->embeds + (gsize) t0 * H, sizeof (float) * T * H);
  else
    g3n_model_embed_tokens (m, w->ids, T, emb, NULL); /* ids were validated by the caller */
  per_layer_inputs (m, w, emb);
  altup_expand (m, w, emb);
  if (b->per_layer_inputs)
    memcpy (b->per_layer_inputs + (gsize) t0 * L * P, w->pli, sizeof (float) * T * L * P);
  if (b->hidden_states)
    scatter_rows (b->hidden_states, w->streams, A, T, N, t0, H);

  gboolean cancelled = FALSE;
  for (int layer = 0; layer < L && !cancelled; layer++) {
    decoder_layer (ctx, layer, w);
    if (b->hidden_states)
      scatter_rows (b->hidden_states + (gsize) (layer + 1) * A * N * H, w->streams, A, T, N, t0, H);
    cancelled = b->cancellable && g_cancellable_is_cancelled (b->cancellable);
  }
  if (cancelled) {
    g_free (emb);
    g_free (pos);
    work_free (w);
    return FALSE;
  }

  final_hidden (m, w, emb);
  if (b->last_hidden)
    memcpy (b->last_hidden + (gsize) t0 * H, emb, sizeof (float) * T * H);
  if (b->logits && b->all_logits)
    lm_head (m, emb, T, b->logits + (gsize) t0 * c->vocab_size);
  else if (b->logits && t0 + T == N)
    lm_head (m, emb + (gsize) (T - 1) * H, 1, b->logits);
  ctx->n_past += T;
  g_free (emb);
  g_free (pos);
  work_free (w);
  return TRUE;
}

/* Forgets every cached row at or after position n_past (a cancelled batch's). The sliding layers are
 * trimmed only after a whole batch, so the rows before it are all still there. */
static void
roll_back (G3nContext *ctx, int n_past)
{
  for (int layer = 0; layer < ctx->model->config->text.num_hidden_layers; layer++) {
    G3nKvLayer *kv = &ctx->kv[layer];
    if (kv->pos0 + kv->len > n_past)
      kv->len = MAX (0, n_past - kv->pos0);
  }
  ctx->n_past = n_past;
}

gboolean
g3n_context_decode (G3nContext *ctx, const G3nBatch *b, GError **error)
{
  const G3nTextConfig *c = &ctx->model->config->text;
  if (b->n_tokens <= 0 || !b->ids) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "a batch needs at least one token id");
    return FALSE;
  }
  if (ctx->n_past + b->n_tokens > ctx->n_ctx) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONTEXT_FULL, "context full: %d positions used + %d new > n_ctx %d",
                 ctx->n_past, b->n_tokens, ctx->n_ctx);
    return FALSE;
  }
  /* Validate all ids first so a bad one leaves the context untouched. With caller embeddings the ids only
   * select per-layer inputs, so they need only be in the vocabulary. */
  for (int i = 0; b->embeds && i < b->n_tokens; i++)
    if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "token id %d is outside the vocabulary [0, %d)",
                   b->ids[i], c->vocab_size);
      return FALSE;
    }
  if (!b->embeds && !g3n_model_check_ids (ctx->model, b->ids, b->n_tokens, error))
    return FALSE;
  if (g3n_check_cancelled (b->cancellable, "decoding", error))
    return FALSE;
  int start = ctx->n_past, previous = g3n_kernels_push_threads (ctx->n_threads);
  gboolean ok = TRUE;
  for (int t0 = 0; ok && t0 < b->n_tokens; t0 += MAX_UBATCH)
    ok = run_ubatch (ctx, b, t0, MIN (MAX_UBATCH, b->n_tokens - t0));
  g3n_kernels_pop_threads (previous);
  if (!ok) {
    roll_back (ctx, start);
    return !g3n_check_cancelled (b->cancellable, "decoding", error);
  }
  for (int layer = 0; layer < c->num_hidden_layers; layer++)
    g3n_kv_layer_trim (&ctx->kv[layer], ctx->keep_from);
  return TRUE;
}

/* ---------------------------------------------------------------------------- life cycle */

G3nContextParams
g3n_context_default_params (void)
{
  return (G3nContextParams) { .n_ctx = 0 };
}

G3nContext *
g3n_context_new (G3nModel *model, const G3nContextParams *params, GError **error)
{
  const G3nTextConfig *c = &model->config->text;
  G3nContextParams p = params ? *params : g3n_context_default_params ();
  if (p.n_ctx < 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "n_ctx %d is negative", p.n_ctx);
    return NULL;
  }
  if (p.kv_type != G3N_KV_F32 && p.kv_type != G3N_KV_F16 && p.kv_type != G3N_KV_BF16) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "unknown KV cache type %d", (int) p.kv_type);
    return NULL;
  }
  G3nContext *ctx = g_new0 (G3nContext, 1);
  ctx->model = g3n_model_ref (model);
  ctx->n_ctx = p.n_ctx ? p.n_ctx : c->max_position_embeddings;
  ctx->kv_type = p.kv_type;
  ctx->n_threads = p.n_threads;
  ctx->keep_from = -1;
  G3nDType dtype = p.kv_type == G3N_KV_F16 ? G3N_DTYPE_F16 : p.kv_type == G3N_KV_BF16 ? G3N_DTYPE_BF16 : G3N_DTYPE_F32;
  ctx->kv = g_new0 (G3nKvLayer, c->num_hidden_layers);
  for (int i = 0; i < c->num_hidden_layers; i++)
    g3n_kv_layer_init (&ctx->kv[i], c->num_key_value_heads * c->head_dim, c->is_sliding[i] ? c->sliding_window : 0,
                       dtype);
  ctx->inv_freq[0] = rope_inv_freq (c->rope_theta_global, c->head_dim);
  ctx->inv_freq[1] = rope_inv_freq (c->rope_theta_local, c->head_dim);
  return ctx;
}

void
g3n_context_free (G3nContext *ctx)
{
  if (!ctx)
    return;
  for (int i = 0; i < ctx->model->config->text.num_hidden_layers; i++)
    g3n_kv_layer_clear (&ctx->kv[i]);
  g_free (ctx->kv);
  g_free (ctx->inv_freq[0]);
  g_free (ctx->inv_freq[1]);
  g3n_model_unref (ctx->model);
  g_free (ctx);
}

int
g3n_context_n_past (const G3nContext *ctx)
{
  return ctx->n_past;
}

int
g3n_context_n_ctx (const G3nContext *ctx)
{
  return ctx->n_ctx;
}

G3nModel *
g3n_context_get_model (const G3nContext *ctx)
{
  return ctx->model;
}

void
g3n_context_reset (G3nContext *ctx)
{
  for (int i = 0; i < ctx->model->config->text.num_hidden_layers; i++)
    g3n_kv_layer_reset (&ctx->kv[i], 0);
  ctx->n_past = 0;
  ctx->keep_from = -1;
}

gboolean
g3n_context_remove (G3nContext *ctx, int begin, int end, GError **error)
{
  const G3nTextConfig *c = &ctx->model->config->text;
  if (begin < 0 || end > ctx->n_past || begin >= end) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "cannot remove positions [%d, %d) of %d", begin, end,
                 ctx->n_past);
    return FALSE;
  }
  int delta = end - begin, half = c->head_dim / 2, width = c->num_key_value_heads * c->head_dim;
  g_autofree float *cs = g_new (float, 4 * half), *key = g_new (float, width);
  /* Keys were stored rotated for their old positions; rotating by -delta re-positions them. */
  for (int i = 0; i < 2; i++)
    rope_angles (ctx->inv_freq[i], half, -delta, cs + 2 * i * half, cs + (2 * i + 1) * half);
  for (int layer = 0; layer < c->num_hidden_layers; layer++) {
    if (g3n_text_config_kv_source_layer (c, layer) != layer)
      continue;
    G3nKvLayer *kv = &ctx->kv[layer];
    int first, n, sliding = c->is_sliding[layer] ? 1 : 0;
    g3n_kv_layer_remove (kv, begin, end, &first, &n);
    /* A 16-bit cache's keys are rotated in fp32 and rounded back: one more rounding than a key computed at
     * its new position, within the storage type's precision. */
    for (int r = first; r < first + n; r++) {
      g3n_kv_layer_read (kv, FALSE, r, 1, 0, width, key);
      rope (key, c->num_key_value_heads, c->head_dim, cs + 2 * sliding * half, cs + (2 * sliding + 1) * half);
      g3n_kv_layer_write (kv, FALSE, r, key);
    }
  }
  ctx->n_past -= delta;
  if (ctx->keep_from >= begin) /* the kept position moves with the rows after the cut */
    ctx->keep_from = ctx->keep_from >= end ? ctx->keep_from - delta : begin;
  return TRUE;
}

void
g3n_context_keep_from (G3nContext *ctx, int pos)
{
  ctx->keep_from = pos;
}

void
g3n_context_set_n_past (G3nContext *ctx, int n_past)
{
  ctx->n_past = n_past;
}

G3nKvLayer *
g3n_context_kv_layer (G3nContext *ctx, int layer)
{
  const G3nTextConfig *c = &ctx->model->config->text;
  if (layer < 0 || layer >= c->num_hidden_layers || g3n_text_config_kv_source_layer (c, layer) != layer)
    return NULL;
  return &ctx->kv[layer];
}

G3nKvType
g3n_context_kv_type (const G3nContext *ctx)
{
  return ctx->kv_type;
}

gsize
g3n_context_kv_bytes (const G3nContext *ctx)
{
  gsize total = 0;
  for (int i = 0; i < ctx->model->config->text.num_hidden_layers; i++)
    total += g3n_kv_layer_bytes (&ctx->kv[i]);
  return total;
}
