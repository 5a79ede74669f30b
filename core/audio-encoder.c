/* audio-encoder.c — Gemma3nAudioEncoder: sub-sample conv projection, conformer blocks, time reduction, then
 * embed_audio's soft path.
 *
 * Everything runs as one incremental pipeline so that whole clips and streams share the code:
 *   frames → conv stage 0 → conv stage 1 → input projection → conformer blocks → [::reduction] → embeddings.
 * The conv stages read kernel_h - 1 rows ahead (the reference pads time by (0, kernel_h - 1)); their cumulative
 * group norm is causal. With conf_attention_context_right = 0 every conformer part is causal too: attention is
 * a sliding window of `context_left` keys ending at the query, the light conv is a causal depthwise conv. So a
 * sub-sampled row is final once its conv inputs exist, and rows can be processed in batches of any size.
 */
#include "audio-encoder.h"

#include "embedder.h"
#include "kernels/threadpool.h"
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------- weights */

typedef struct {
  int cin, cout, kh, kw, sh, sw, fin, fout;
  G3nMatrix w;          /* [cout, cin * kh * kw] as fp32 (an owned copy: small, used once per row) */
  const float *norm;    /* [cout] cumulative group norm scale */
} SscpConv;

typedef struct {
  const float *pre_norm, *post_norm;
  G3nMatrix up, down;   /* ffw_layer_1 [4D, D], ffw_layer_2 [D, 4D] */
} Ffw;

typedef struct {
  Ffw ffw_start, ffw_end;
  const float *pre_attn_norm, *attn_post_norm;
  G3nMatrix q, k, v, post;
  float *q_scale;       /* [head_dim]: head_dim^-0.5 / softplus(0) * softplus(per_dim_scale) */
  float *pos;           /* [n_pos, D]: pos_proj of the sinusoid of each relative distance (P, P-1, ..., 0) */
  const float *lconv_pre_norm, *lconv_conv_norm;
  G3nMatrix lconv_start, lconv_end;
  float *lconv_w;       /* [D, K] depthwise kernel */
  const float *norm;
} ConformerLayer;

struct _G3nAudioEncoder {
  G3nModel *shared_by;  /* the model whose shared tower this is (free drops a reference), or NULL: owned */
  const G3nConfig *cfg;
  const G3nAudioConfig *c;
  char *path;           /* the checkpoint, for messages */
  G3nTensorLookup lookup;
  gpointer lookup_data;
  const G3nEmbedderWeights *embed; /* embed_audio */
  int D, H, n_heads, head_dim, n_layers, text_hidden;
  int chunk, past, n_pos, kernel, reduction;
  float logit_cap, clip, residual_weight;
  SscpConv conv[2];
  G3nMatrix input_proj; /* [D, fout1 * cout1] */
  ConformerLayer *layers;
  GPtrArray *owned;     /* fp32 copies */
  int max_batch;        /* rows per conformer batch: a multiple of the attention chunk */
  int hist;             /* key/value rows kept between batches: past + chunk - 1, a whole chunk context */
};

typedef struct {
  G3nAudioEncoder *enc;
  const char *file;
  GError **error;
} Binder;

/* Finds model.audio_tower.NAME with exactly `shape`; reports the file and tensor otherwise. */
static const G3nTensor *G_GNUC_PRINTF (4, 5)
find (Binder *b, int ndim, const int64_t *shape, const char *fmt, ...)
{
  if (*b->error)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *rel = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_autofree char *name = g_strconcat ("model.audio_tower.", rel, NULL);
  const G3nTensor *t = b->enc->lookup (b->enc->lookup_data, name);
  return g3n_tensor_expect (t, name, b->file, ndim, shape, b->error) ? t : NULL;
}

static float *
f32_copy (G3nAudioEncoder *enc, const G3nTensor *t)
{
  gsize n = (gsize) g3n_tensor_numel (t);
  float *v = g_new (float, n);
  g3n_to_f32 (t->dtype, t->data, v, n);
  g_ptr_array_add (enc->owned, v);
  return v;
}

#define FIND(b, ndim, ...) find ((b), (ndim), (const int64_t[]) { __VA_ARGS__ },
#define VEC(b, n, ...) (vec ((b), FIND (b, 1, (n)) __VA_ARGS__)))
#define MAT(b, r, c, ...) (mat (FIND (b, 2, (r), (c)) __VA_ARGS__)))

static float *
vec (Binder *b, const G3nTensor *t)
{
  return t ? f32_copy (b->enc, t) : NULL;
}

static G3nMatrix
mat (const G3nTensor *t)
{
  return t ? g3n_matrix_from_tensor (t) : (G3nMatrix) { 0 };
}

static void
bind_conv (Binder *b, int i, int cin, int fin)
{
  const G3nAudioConfig *c = b->enc->c;
  SscpConv *s = &b->enc->conv[i];
  s->cin = cin, s->cout = c->sscp_conv_channel_size[i];
  s->kh = c->sscp_conv_kernel_size[i][0], s->kw = c->sscp_conv_kernel_size[i][1];
  s->sh = c->sscp_conv_stride_size[i][0], s->sw = c->sscp_conv_stride_size[i][1];
  s->fin = fin;
  s->fout = (fin + 2 - s->kw) / s->sw + 1;  /* frequency padded by (1, 1) as the reference does */
  if (fin + 2 < s->kw && !*b->error) {
    g_set_error (b->error, G3N_ERROR, G3N_ERROR_CONFIG,
                 "%s: audio tower: sscp conv %d sees %d frequency bins, fewer than its kernel width %d", b->file, i,
                 fin, s->kw);
    return;
  }
  const G3nTensor *t = FIND (b, 4, s->cout, cin, s->kh, s->kw) "subsample_conv_projection.conv_%d.conv.weight", i);
  if (t)
    s->w = (G3nMatrix) { .data = f32_copy (b->enc, t), .dtype = G3N_DTYPE_F32, .rows = s->cout,
                         .cols = cin * s->kh * s->kw };
  s->norm = VEC (b, s->cout, "subsample_conv_projection.conv_%d.norm.weight", i);
}

static void
bind_ffw (Binder *b, Ffw *f, int l, const char *which)
{
  int D = b->enc->D;
  f->pre_norm = VEC (b, D, "conformer.%d.%s.pre_layer_norm.weight", l, which);
  f->post_norm = VEC (b, D, "conformer.%d.%s.post_layer_norm.weight", l, which);
  f->up = MAT (b, 4 * D, D, "conformer.%d.%s.ffw_layer_1.weight", l, which);
  f->down = MAT (b, D, 4 * D, "conformer.%d.%s.ffw_layer_2.weight", l, which);
}

static float
softplus (float x)
{
  return x > 20.0f ? x : log1pf (expf (x));  /* torch's threshold = 20 */
}

/* Gemma3nAudioRelativePositionEmbedding: sin/cos timing signal of each distance, through pos_proj. fp32 as in
 * the reference (inv_timescales, positions and the sin/cos arguments are float32 tensors). */
static float *
position_table (G3nAudioEncoder *enc, const G3nMatrix *pos_proj)
{
  int D = enc->D, n_ts = D / 2;
  double inc = log (1.0e4) / MAX (n_ts - 1, 1);
  float *timing = g_new (float, (gsize) enc->n_pos * D);
  for (int f = 0; f < enc->n_pos; f++) {
    float pos = (float) (enc->past - f);
    for (int i = 0; i < n_ts; i++) {
      float st = pos * expf ((float) i * (float) -inc);
      timing[(gsize) f * D + i] = sinf (st);
      timing[(gsize) f * D + n_ts + i] = cosf (st);
    }
  }
  float *table = g_new (float, (gsize) enc->n_pos * D);
  g3n_matmul (pos_proj, timing, enc->n_pos, table);
  g_ptr_array_add (enc->owned, table);
  g_free (timing);
  return table;
}

static void
bind_layer (Binder *b, int l)
{
  G3nAudioEncoder *enc = b->enc;
  ConformerLayer *L = &enc->layers[l];
  int D = enc->D, hd = enc->head_dim;
  bind_ffw (b, &L->ffw_start, l, "ffw_layer_start");
  bind_ffw (b, &L->ffw_end, l, "ffw_layer_end");
  L->pre_attn_norm = VEC (b, D, "conformer.%d.attention.pre_attn_norm.weight", l);
  L->attn_post_norm = VEC (b, D, "conformer.%d.attention.post_norm.weight", l);
  L->q = MAT (b, D, D, "conformer.%d.attention.attn.q_proj.weight", l);
  L->k = MAT (b, D, D, "conformer.%d.attention.attn.k_proj.weight", l);
  L->v = MAT (b, D, D, "conformer.%d.attention.attn.v_proj.weight", l);
  L->post = MAT (b, D, D, "conformer.%d.attention.post.weight", l);
  L->q_scale = VEC (b, hd, "conformer.%d.attention.attn.per_dim_scale", l);
  G3nMatrix pos_proj = MAT (b, D, D, "conformer.%d.attention.attn.relative_position_embedding.pos_proj.weight", l);
  L->lconv_pre_norm = VEC (b, D, "conformer.%d.lconv1d.pre_layer_norm.weight", l);
  L->lconv_conv_norm = VEC (b, D, "conformer.%d.lconv1d.conv_norm.weight", l);
  L->lconv_start = MAT (b, 2 * D, D, "conformer.%d.lconv1d.linear_start.weight", l);
  L->lconv_end = MAT (b, D, D, "conformer.%d.lconv1d.linear_end.weight", l);
  const G3nTensor *cw = FIND (b, 3, D, 1, enc->kernel) "conformer.%d.lconv1d.depthwise_conv1d.weight", l);
  L->lconv_w = cw ? f32_copy (enc, cw) : NULL;
  L->norm = VEC (b, D, "conformer.%d.norm.weight", l);
  if (*b->error)
    return;
  /* q_scale buffer: float32(head_dim^-0.5 * (1 / softplus(0))), then times softplus(per_dim_scale). */
  float base = (float) (pow (hd, -0.5) * (double) (1.0f / softplus (0.0f)));
  for (int i = 0; i < hd; i++)
    L->q_scale[i] = base * softplus (L->q_scale[i]);
  L->pos = position_table (enc, &pos_proj);
}

static gboolean
check_config (const G3nAudioEncoder *enc, const char *origin, GError **error)
{
  const G3nAudioConfig *c = enc->c;
  const char *bad = NULL;
  if (!c->present)
    bad = "the checkpoint has no audio_config";
  else if (c->conf_attention_context_right != 0)
    bad = "conf_attention_context_right > 0 (look-ahead attention) is not supported";
  else if (c->hidden_size % 2 || c->hidden_size % c->conf_num_attention_heads)
    bad = "hidden_size must be even and a multiple of conf_num_attention_heads";
  for (int i = 0; !bad && i < 2; i++)
    if (c->sscp_conv_kernel_size[i][0] < 1 || c->sscp_conv_kernel_size[i][1] < 1 || c->sscp_conv_stride_size[i][0] < 1
        || c->sscp_conv_stride_size[i][1] < 1 || c->sscp_conv_channel_size[i] < 1)
      bad = "sscp conv kernel, stride and channel sizes must be positive";
  if (!bad && c->input_feat_size + 2 < c->sscp_conv_kernel_size[0][1])
    bad = "input_feat_size is smaller than the sscp conv kernel";
  if (bad)
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: audio tower: %s", origin, bad);
  return bad == NULL;
}

G3nAudioEncoder *
g3n_audio_encoder_new_custom (const G3nConfig *cfg, const char *path, G3nTensorLookup lookup, gpointer lookup_data,
                              const G3nEmbedderWeights *embed_audio, GError **error)
{
  g_autofree char *origin = g_build_filename (path, "config.json", NULL);
  G3nAudioEncoder *enc = g_new0 (G3nAudioEncoder, 1);
  enc->cfg = cfg;
  enc->c = &cfg->audio;
  enc->path = g_strdup (path);
  enc->lookup = lookup;
  enc->lookup_data = lookup_data;
  enc->embed = embed_audio;
  enc->owned = g_ptr_array_new_with_free_func (g_free);
  const G3nAudioConfig *c = enc->c;
  if (!check_config (enc, origin, error)) {
    g3n_audio_encoder_free (enc);
    return NULL;
  }
  enc->D = c->hidden_size;
  enc->n_heads = c->conf_num_attention_heads;
  enc->head_dim = enc->D / enc->n_heads;
  enc->n_layers = c->conf_num_hidden_layers;
  enc->text_hidden = cfg->text.hidden_size;
  enc->chunk = c->conf_attention_chunk_size;
  enc->past = MAX (0, c->conf_attention_context_left - 1);
  enc->n_pos = enc->past + 1;
  enc->kernel = c->conf_conv_kernel_size;
  enc->reduction = c->conf_reduction_factor;
  enc->logit_cap = (float) c->conf_attention_logit_cap;
  enc->clip = (float) c->gradient_clipping;
  enc->residual_weight = (float) c->conf_residual_weight;
  enc->max_batch = enc->chunk * MAX (1, (128 + enc->chunk - 1) / enc->chunk);
  enc->hist = enc->past + enc->chunk - 1;
  enc->layers = g_new0 (ConformerLayer, MAX (enc->n_layers, 1));

  Binder b = { enc, path, error };
  bind_conv (&b, 0, 1, c->input_feat_size);
  bind_conv (&b, 1, enc->conv[0].cout, enc->conv[0].fout);
  int proj_in = enc->conv[1].fout * enc->conv[1].cout;
  enc->input_proj = MAT (&b, enc->D, proj_in, "subsample_conv_projection.input_proj_linear.weight");
  for (int l = 0; l < enc->n_layers && !*error; l++)
    bind_layer (&b, l);
  if (*error) {
    g3n_audio_encoder_free (enc);
    return NULL;
  }
  return enc;
}

static const G3nTensor *
store_lookup (gpointer store, const char *name)
{
  return g3n_tensor_store_find (store, name);
}

static void
encoder_destroy (gpointer p)
{
  G3nAudioEncoder *enc = p;
  g_ptr_array_unref (enc->owned);
  g_free (enc->layers);
  g_free (enc->path);
  g_free (enc);
}

static gpointer
make_shared (G3nModel *model, GError **error)
{
  G3nAudioEncoder *enc = g3n_audio_encoder_new_custom (model->config, model->path, store_lookup, model->store,
                                                       &model->embed_audio, error);
  if (enc)
    enc->shared_by = model;
  return enc;
}

/* The model's one audio tower: its fp32 copies are made once, whoever asks first. */
G3nAudioEncoder *
g3n_audio_encoder_new (G3nModel *model, GError **error)
{
  G3nAudioEncoder *enc = g3n_model_shared_tower (model, G3N_TOWER_AUDIO, make_shared, encoder_destroy, error);
  if (enc)
    g3n_model_ref (model);
  return enc;
}

void
g3n_audio_encoder_free (G3nAudioEncoder *enc)
{
  if (!enc)
    return;
  if (enc->shared_by)
    g3n_model_unref (enc->shared_by); /* the model destroys its tower */
  else
    encoder_destroy (enc);
}

int g3n_audio_encoder_n_hidden (const G3nAudioEncoder *enc) { return enc->D; }
int g3n_audio_encoder_n_embd (const G3nAudioEncoder *enc) { return enc->text_hidden; }
int g3n_audio_encoder_n_layers (const G3nAudioEncoder *enc) { return enc->n_layers; }
int g3n_audio_encoder_n_features (const G3nAudioEncoder *enc) { return enc->c->input_feat_size; }

int
g3n_audio_encoder_n_soft_tokens (const G3nAudioEncoder *enc)
{
  return enc->cfg->audio_soft_tokens_per_image;
}

void
g3n_audio_encoder_sizes (const G3nAudioEncoder *enc, int n_frames, int *n_sub, int *n_tokens)
{
  int t = n_frames;
  for (int i = 0; i < 2; i++)
    t = t > 0 ? (t - 1) / enc->conv[i].sh + 1 : 0;  /* time padded by (0, kernel_h - 1) */
  if (n_sub)
    *n_sub = t;
  if (n_tokens)
    *n_tokens = (t + enc->reduction - 1) / enc->reduction;
}

/* ---------------------------------------------------------------- pipeline state */

/* Receives the pipeline's products; `first` counts rows (sscp/blocks) or tokens (tokens) from the clip start. */
typedef struct {
  void (*sscp) (gpointer self, const float *x, int first, int n);
  void (*block) (gpointer self, int layer, const float *x, int first, int n);
  void (*tokens) (gpointer self, const float *tower, const guint8 *mask, const float *embeds, int first, int n);
  gpointer self;
} Sink;

typedef struct {
  const SscpConv *w;
  float *rows;        /* input rows [cap, fin * cin]; row i of the buffer is input row start + i */
  guint8 *mask;
  int cap, len, start;
  int n_in, n_out;
  double cum_sum, cum_sq, cum_count;
  float *col;         /* im2col [fout, cin * kh * kw] */
  float *y;           /* [fout, cout] */
} ConvStage;

typedef struct {
  float *k, *v;       /* [hist + max_batch, D]: the past keys/values, then the batch's */
  guint8 *valid;      /* [hist + max_batch] */
  float *glu;         /* [kernel - 1 + max_batch, D]: light-conv inputs, the past ones first */
  int n_hist;         /* rows of history held (<= hist) */
} LayerState;

typedef struct {
  const G3nAudioEncoder *enc;
  Sink sink;
  ConvStage st[2];
  float *flat;        /* [max_batch, fout1 * cout1] pending sub-sampled rows */
  guint8 *pad;        /* [max_batch] 1 = padding */
  int n_flat;
  int batch_rows;     /* run the conformer when this many rows are pending: fixed, so results never depend
                       * on how the input was split into calls */
  GCancellable *cancel;
  gboolean cancelled; /* the clip was abandoned: everything until the reset is ignored */
  int pos;            /* sub-sampled rows processed */
  int n_tokens;
  LayerState *ls;
  /* scratch, [max_batch] rows each */
  float *x, *h, *big, *q, *att;
  float *tower, *embeds, *logits;
  guint8 *tmask;
} EncState;

static void
stage_init (ConvStage *s, const SscpConv *w)
{
  memset (s, 0, sizeof *s);
  s->w = w;
  s->cap = w->kh + w->sh;
  s->rows = g_new0 (float, (gsize) s->cap * w->fin * w->cin);
  s->mask = g_new0 (guint8, s->cap);
  s->col = g_new (float, (gsize) w->fout * w->cin * w->kh * w->kw);
  s->y = g_new (float, (gsize) w->fout * w->cout);
}

static void
stage_clear (ConvStage *s)
{
  g_free (s->rows);
  g_free (s->mask);
  g_free (s->col);
  g_free (s->y);
}

static void
stage_reset (ConvStage *s)
{
  s->len = s->start = s->n_in = s->n_out = 0;
  s->cum_sum = s->cum_sq = s->cum_count = 0;
}

static EncState *
enc_state_new (const G3nAudioEncoder *enc, const Sink *sink)
{
  EncState *e = g_new0 (EncState, 1);
  int B = enc->max_batch, D = enc->D;
  e->enc = enc;
  e->sink = *sink;
  e->batch_rows = B;
  stage_init (&e->st[0], &enc->conv[0]);
  stage_init (&e->st[1], &enc->conv[1]);
  e->flat = g_new (float, (gsize) B * enc->input_proj.cols);
  e->pad = g_new (guint8, B);
  e->ls = g_new0 (LayerState, MAX (enc->n_layers, 1));
  for (int l = 0; l < enc->n_layers; l++) {
    e->ls[l].k = g_new0 (float, (gsize) (enc->hist + B) * D);
    e->ls[l].v = g_new0 (float, (gsize) (enc->hist + B) * D);
    e->ls[l].valid = g_new0 (guint8, enc->hist + B);
    e->ls[l].glu = g_new0 (float, (gsize) (enc->kernel - 1 + B) * D);
  }
  e->x = g_new (float, (gsize) B * D);
  e->h = g_new (float, (gsize) B * D);
  e->q = g_new (float, (gsize) B * D);
  e->att = g_new (float, (gsize) B * D);
  e->big = g_new (float, (gsize) B * 4 * D);
  int R = enc->reduction, n_tok = (B + R - 1) / R + 1;
  e->tower = g_new (float, (gsize) n_tok * D);
  e->embeds = g_new (float, (gsize) n_tok * enc->text_hidden);
  e->tmask = g_new (guint8, n_tok);
  e->logits = g_new (float, enc->n_pos);
  return e;
}

static void
enc_state_free (EncState *e)
{
  if (!e)
    return;
  stage_clear (&e->st[0]);
  stage_clear (&e->st[1]);
  for (int l = 0; l < e->enc->n_layers; l++) {
    g_free (e->ls[l].k);
    g_free (e->ls[l].v);
    g_free (e->ls[l].valid);
    g_free (e->ls[l].glu);
  }
  g_free (e->ls);
  g_free (e->flat);
  g_free (e->pad);
  g_free (e->x);
  g_free (e->h);
  g_free (e->q);
  g_free (e->att);
  g_free (e->big);
  g_free (e->tower);
  g_free (e->embeds);
  g_free (e->tmask);
  g_free (e->logits);
  g_free (e);
}

static void
enc_state_reset (EncState *e)
{
  stage_reset (&e->st[0]);
  stage_reset (&e->st[1]);
  for (int l = 0; l < e->enc->n_layers; l++) {
    e->ls[l].n_hist = 0;
    memset (e->ls[l].glu, 0, sizeof (float) * (e->enc->kernel - 1) * e->enc->D);
  }
  e->n_flat = e->pos = e->n_tokens = 0;
  e->cancelled = FALSE;
}

/* ---------------------------------------------------------------- small ops */

static inline float
clampf (float x, float lim)
{
  return x > lim ? lim : x < -lim ? -lim : x;
}

static void
clamp_rows (float *x, gsize n, float lim)
{
  for (gsize i = 0; i < n; i++)
    x[i] = clampf (x[i], lim);
}

static void
norm_rows (const float *x, const float *w, float eps, int n, int d, float *out)
{
  for (int i = 0; i < n; i++)
    g3n_rms_norm (x + (gsize) i * d, w, eps, d, out + (gsize) i * d);
}

static inline float
silu (float x)
{
  return x / (1.0f + expf (-x));
}

/* ---------------------------------------------------------------- conformer */

/* Gemma3nRMSNorm's default eps; the reference passes config.rms_norm_eps only to the light conv's norms. */
#define DEFAULT_EPS 1e-6f

/* Gemma3nAudioConformerFeedForward, in place on x [n, D]. */
static void
ffw (EncState *e, const Ffw *f, float *x, int n)
{
  const G3nAudioEncoder *enc = e->enc;
  int D = enc->D;
  gsize nd = (gsize) n * D;
  for (gsize i = 0; i < nd; i++)
    e->h[i] = clampf (x[i], enc->clip);
  norm_rows (e->h, f->pre_norm, DEFAULT_EPS, n, D, e->h);
  g3n_matmul (&f->up, e->h, n, e->big);
  for (gsize i = 0; i < nd * 4; i++)
    e->big[i] = silu (e->big[i]);
  g3n_matmul (&f->down, e->big, n, e->h);
  clamp_rows (e->h, nd, enc->clip);
  norm_rows (e->h, f->post_norm, DEFAULT_EPS, n, D, e->h);
  for (gsize i = 0; i < nd; i++)
    x[i] += e->h[i] * enc->residual_weight;
}

/* Attention of one query row (all heads) over the sliding window of keys ending at it. `qi` indexes the
 * layer state's key/value buffer, where the query's own key sits. */
static void
attend_row (EncState *e, const ConformerLayer *L, const LayerState *s, const float *q, int qi, int pos, float *out)
{
  const G3nAudioEncoder *enc = e->enc;
  int D = enc->D, hd = enc->head_dim, P = enc->past;
  float cap = enc->logit_cap;
  float *logits = e->logits;
  gboolean any = FALSE;
  for (int j = 0; j <= P; j++)  /* key qi - P + j, relative distance P - j */
    any |= qi - P + j >= 0 && pos - P + j >= 0 && s->valid[qi - P + j];
  for (int h = 0; h < enc->n_heads; h++) {
    const float *qh = q + h * hd;
    float *oh = out + h * hd;
    memset (oh, 0, sizeof (float) * hd);
    if (!any)
      continue;
    float mx = -INFINITY;
    for (int j = 0; j <= P; j++) {
      int ki = qi - P + j;
      if (ki < 0 || pos - P + j < 0 || !s->valid[ki]) {
        logits[j] = -INFINITY;
        continue;
      }
      /* pos[f] is the embedding of distance P - f, so distance P - j is row j. */
      float l = g3n_dot (qh, s->k + (gsize) ki * D + h * hd, hd) + g3n_dot (qh, L->pos + (gsize) j * D + h * hd, hd);
      l = tanhf (l / cap) * cap;
      logits[j] = l;
      mx = MAX (mx, l);
    }
    float sum = 0;
    for (int j = 0; j <= P; j++) {
      logits[j] = logits[j] == -INFINITY ? 0.0f : expf (logits[j] - mx);
      sum += logits[j];
    }
    for (int j = 0; j <= P; j++)
      if (logits[j] > 0)
        g3n_axpy (logits[j] / sum, s->v + (gsize) (qi - P + j) * D + h * hd, oh, hd);
  }
  if (any)
    return;
  /* Every key masked: the reference's softmax over all-equal (finfo.min) logits is uniform over the query's
   * whole chunk context, chunk*(u) - P .. chunk*(u+1) - 1, zero rows beyond the sequence included. Only padded
   * rows get here, and their outputs never reach valid ones. */
  int u0 = pos / enc->chunk * enc->chunk, ctx = enc->chunk + P;
  for (int p = u0 - P; p < u0 + enc->chunk; p++) {
    int ki = qi + (p - pos);
    if (p >= 0 && ki >= 0 && ki < s->n_hist + e->n_flat)
      g3n_axpy (1.0f / ctx, s->v + (gsize) ki * D, out, D);
  }
}

/* Gemma3nAudioConformerAttention on x [n, D] rows at positions e->pos.., in place. */
static void
attention (EncState *e, const ConformerLayer *L, LayerState *s, float *x, const guint8 *pad, int n)
{
  const G3nAudioEncoder *enc = e->enc;
  int D = enc->D, hd = enc->head_dim;
  gsize nd = (gsize) n * D;
  for (gsize i = 0; i < nd; i++)
    e->h[i] = clampf (x[i], enc->clip);
  norm_rows (e->h, L->pre_attn_norm, DEFAULT_EPS, n, D, e->h);
  float *kb = s->k + (gsize) s->n_hist * D, *vb = s->v + (gsize) s->n_hist * D;
  g3n_matmul (&L->q, e->h, n, e->q);
  g3n_matmul (&L->k, e->h, n, kb);
  g3n_matmul (&L->v, e->h, n, vb);
  for (int i = 0; i < n; i++) {
    s->valid[s->n_hist + i] = !pad[i];
    float *qr = e->q + (gsize) i * D;
    for (int d = 0; d < D; d++)
      qr[d] *= L->q_scale[d % hd];
  }
  for (int i = 0; i < n; i++)
    attend_row (e, L, s, e->q + (gsize) i * D, s->n_hist + i, e->pos + i, e->att + (gsize) i * D);
  g3n_matmul (&L->post, e->att, n, e->h);
  clamp_rows (e->h, nd, enc->clip);
  norm_rows (e->h, L->attn_post_norm, DEFAULT_EPS, n, D, e->h);
  for (gsize i = 0; i < nd; i++)
    x[i] += e->h[i];
  /* Keep the last `past` keys/values, and the rest of a chunk context for the all-masked case. */
  int total = s->n_hist + n, keep = MIN (total, enc->hist);
  memmove (s->k, s->k + (gsize) (total - keep) * D, sizeof (float) * keep * D);
  memmove (s->v, s->v + (gsize) (total - keep) * D, sizeof (float) * keep * D);
  memmove (s->valid, s->valid + (total - keep), keep);
  s->n_hist = keep;
}

/* Gemma3nAudioConformerLightConv1d on x [n, D] (already zeroed at padding), in place. */
static void
light_conv (EncState *e, const ConformerLayer *L, LayerState *s, float *x, int n)
{
  const G3nAudioEncoder *enc = e->enc;
  int D = enc->D, K = enc->kernel;
  gsize nd = (gsize) n * D;
  norm_rows (x, L->lconv_pre_norm, (float) enc->c->rms_norm_eps, n, D, e->h);
  g3n_matmul (&L->lconv_start, e->h, n, e->big);
  float *g = s->glu + (gsize) (K - 1) * D;  /* this batch's GLU outputs follow the K-1 past ones */
  for (int i = 0; i < n; i++) {
    const float *a = e->big + (gsize) i * 2 * D;
    for (int d = 0; d < D; d++)
      g[(gsize) i * D + d] = a[d] / (1.0f + expf (-a[D + d]));
  }
  for (int i = 0; i < n; i++)
    for (int d = 0; d < D; d++) {
      const float *w = L->lconv_w + (gsize) d * K;
      float acc = 0;
      for (int j = 0; j < K; j++)
        acc += w[j] * s->glu[(gsize) (i + j) * D + d];
      e->h[(gsize) i * D + d] = clampf (acc, enc->clip);
    }
  memmove (s->glu, s->glu + nd, sizeof (float) * (K - 1) * D);
  norm_rows (e->h, L->lconv_conv_norm, (float) enc->c->rms_norm_eps, n, D, e->h);
  for (gsize i = 0; i < nd; i++)
    e->h[i] = silu (e->h[i]);
  g3n_matmul (&L->lconv_end, e->h, n, e->att);
  for (gsize i = 0; i < nd; i++)
    x[i] += e->att[i];
}

static void
conformer_block (EncState *e, int l, float *x, const guint8 *pad, int n)
{
  const G3nAudioEncoder *enc = e->enc;
  const ConformerLayer *L = &enc->layers[l];
  int D = enc->D;
  ffw (e, &L->ffw_start, x, n);
  attention (e, L, &e->ls[l], x, pad, n);
  for (int i = 0; i < n; i++)
    if (pad[i])
      memset (x + (gsize) i * D, 0, sizeof (float) * D);
  light_conv (e, L, &e->ls[l], x, n);
  ffw (e, &L->ffw_end, x, n);
  clamp_rows (x, (gsize) n * D, enc->clip);
  norm_rows (x, L->norm, DEFAULT_EPS, n, D, x);
}

/* Runs the pending sub-sampled rows through the projection, the blocks and the reduction. */
static void
run_batch (EncState *e)
{
  const G3nAudioEncoder *enc = e->enc;
  int n = e->n_flat, D = enc->D, R = enc->reduction;
  if (n == 0 || e->cancelled)
    return;
  /* Checked per block (a few ms each): a cancelled clip stops within one. */
  if ((e->cancelled = e->cancel && g_cancellable_is_cancelled (e->cancel)))
    return;
  g3n_matmul (&enc->input_proj, e->flat, n, e->x);
  if (e->sink.sscp)
    e->sink.sscp (e->sink.self, e->x, e->pos, n);
  for (int l = 0; l < enc->n_layers; l++) {
    if ((e->cancelled = e->cancel && g_cancellable_is_cancelled (e->cancel)))
      return;
    conformer_block (e, l, e->x, e->pad, n);
    if (e->sink.block)
      e->sink.block (e->sink.self, l, e->x, e->pos, n);
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    if ((e->pos + i) % R)
      continue;
    e->tmask[m] = e->pad[i];
    if (e->pad[i])
      memset (e->tower + (gsize) m * D, 0, sizeof (float) * D);
    else
      memcpy (e->tower + (gsize) m * D, e->x + (gsize) i * D, sizeof (float) * D);
    m++;
  }
  gboolean have_embed = enc->embed && enc->embed->present;
  if (m && have_embed)
    g3n_embedder_embed_soft (enc->embed, enc->c->rms_norm_eps, e->tower, m, D, enc->text_hidden,
                             e->embeds);
  if (m && e->sink.tokens)
    e->sink.tokens (e->sink.self, e->tower, e->tmask, have_embed ? e->embeds : NULL, e->n_tokens, m);
  e->n_tokens += m;
  e->pos += n;
  e->n_flat = 0;
}

/* ---------------------------------------------------------------- sub-sample convs */

static void stage_push (EncState *e, int i, const float *row, guint8 pad);

/* Output row t of a conv stage: conv over input rows sh*t .. sh*t+kh-1 (zeros past the end), cumulative group
 * norm over (freq, channel) of all rows so far, ReLU. */
static void
stage_emit (EncState *e, int i, int t)
{
  ConvStage *s = &e->st[i];
  const SscpConv *w = s->w;
  int rowlen = w->fin * w->cin, ncol = w->cin * w->kh * w->kw;
  for (int fo = 0; fo < w->fout; fo++) {
    float *col = s->col + (gsize) fo * ncol;
    for (int ci = 0; ci < w->cin; ci++)
      for (int a = 0; a < w->kh; a++) {
        int r = w->sh * t + a;
        const float *row = r < s->n_in ? s->rows + (gsize) (r - s->start) * rowlen : NULL;
        for (int b = 0; b < w->kw; b++) {
          int f = w->sw * fo + b - 1;
          col[(ci * w->kh + a) * w->kw + b] = row && f >= 0 && f < w->fin ? row[f * w->cin + ci] : 0.0f;
        }
      }
  }
  g3n_matmul (&w->w, s->col, w->fout, s->y);  /* y [fout, cout]: the norm's [freq, channel] layout */
  int n = w->fout * w->cout;
  double sum = 0;
  for (int k = 0; k < n; k++)
    sum += s->y[k];
  s->cum_sum += sum;
  s->cum_count += n;
  double mean = s->cum_sum / s->cum_count, sq = 0;
  for (int k = 0; k < n; k++)
    sq += (s->y[k] - mean) * (s->y[k] - mean);
  s->cum_sq += sq;
  float inv = (float) (1.0 / sqrt (s->cum_sq / s->cum_count + e->enc->c->sscp_conv_group_norm_eps));
  float fmean = (float) mean;
  for (int k = 0; k < n; k++) {
    float v = (s->y[k] - fmean) * inv * w->norm[k % w->cout];
    s->y[k] = v > 0 ? v : 0;
  }
  guint8 pad = s->mask[w->sh * t - s->start];
  s->n_out++;
  /* Rows before sh * (t + 1) are no longer needed. */
  int drop = MIN (w->sh * (t + 1) - s->start, s->len);
  memmove (s->rows, s->rows + (gsize) drop * rowlen, sizeof (float) * (s->len - drop) * rowlen);
  memmove (s->mask, s->mask + drop, s->len - drop);
  s->len -= drop;
  s->start += drop;
  stage_push (e, i + 1, s->y, pad);
}

static gboolean
stage_ready (const ConvStage *s, gboolean finishing)
{
  int first = s->w->sh * s->n_out;
  return finishing ? first < s->n_in : first + s->w->kh <= s->n_in;
}

/* Feeds one row into stage i (i == 2: the projection's pending batch). pad: 1 = padding. */
static void
stage_push (EncState *e, int i, const float *row, guint8 pad)
{
  if (e->cancelled)
    return;
  if (i == 2) {
    int len = e->enc->input_proj.cols;
    memcpy (e->flat + (gsize) e->n_flat * len, row, sizeof (float) * len);
    e->pad[e->n_flat++] = pad;
    if (e->n_flat == e->batch_rows)
      run_batch (e);
    return;
  }
  ConvStage *s = &e->st[i];
  int rowlen = s->w->fin * s->w->cin;
  memcpy (s->rows + (gsize) s->len * rowlen, row, sizeof (float) * rowlen);
  s->mask[s->len++] = pad;
  s->n_in++;
  while (stage_ready (s, FALSE))
    stage_emit (e, i, s->n_out);
}

/* The end of a clip: the remaining rows, then a reset for the next clip. FALSE (G_IO_ERROR_CANCELLED) when the
 * clip was cancelled. */
static gboolean
enc_state_finish (EncState *e, GError **error)
{
  for (int i = 0; i < 2; i++)
    while (!e->cancelled && stage_ready (&e->st[i], TRUE))
      stage_emit (e, i, e->st[i].n_out);
  run_batch (e);
  gboolean cancelled = e->cancelled;
  enc_state_reset (e);
  if (cancelled)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "audio encoding cancelled");
  return !cancelled;
}

/* ---------------------------------------------------------------- whole clip */

typedef struct {
  const G3nAudioEncoder *enc;
  const G3nAudioEncodeOutputs *out;
  int n_sub;
} WholeSink;

static void
whole_sscp (gpointer self, const float *x, int first, int n)
{
  WholeSink *w = self;
  if (w->out->sscp)
    memcpy (w->out->sscp + (gsize) first * w->enc->D, x, sizeof (float) * n * w->enc->D);
}

static void
whole_block (gpointer self, int layer, const float *x, int first, int n)
{
  WholeSink *w = self;
  int D = w->enc->D;
  if (w->out->blocks)
    memcpy (w->out->blocks + ((gsize) layer * w->n_sub + first) * D, x, sizeof (float) * n * D);
}

static void
whole_tokens (gpointer self, const float *tower, const guint8 *mask, const float *embeds, int first, int n)
{
  WholeSink *w = self;
  int D = w->enc->D, H = w->enc->text_hidden;
  if (w->out->tower)
    memcpy (w->out->tower + (gsize) first * D, tower, sizeof (float) * n * D);
  if (w->out->tower_mask)
    memcpy (w->out->tower_mask + first, mask, n);
  if (w->out->embeds && embeds)
    memcpy (w->out->embeds + (gsize) first * H, embeds, sizeof (float) * n * H);
}

gboolean
g3n_audio_encode (const G3nAudioEncoder *enc, const G3nComputeParams *compute, const float *features, int n_frames,
                  int n_features, const guint8 *mask, const G3nAudioEncodeOutputs *out, GError **error)
{
  if (n_features != enc->c->input_feat_size) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "audio features have %d mel bins, but %s's audio tower expects input_feat_size %d", n_features,
                 enc->path, enc->c->input_feat_size);
    return FALSE;
  }
  if (n_frames <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "audio clip has no feature frames (it is shorter than one 32 ms window)");
    return FALSE;
  }
  for (gsize i = 0; i < (gsize) n_frames * n_features; i++)
    if (!isfinite (features[i])) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio feature %d of frame %d is not finite",
                   (int) (i % n_features), (int) (i / n_features));
      return FALSE;
    }
  if (out->embeds && !(enc->embed && enc->embed->present)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_TENSOR, "%s: audio embeddings requested, but embed_audio is missing",
                 enc->path);
    return FALSE;
  }
  WholeSink ws = { enc, out, 0 };
  g3n_audio_encoder_sizes (enc, n_frames, &ws.n_sub, NULL);
  Sink sink = { whole_sscp, whole_block, whole_tokens, &ws };
  EncState *e = enc_state_new (enc, &sink);
  e->cancel = compute ? compute->cancellable : NULL;
  int prev = g3n_kernels_push_threads (compute ? compute->n_threads : 0);
  for (int t = 0; t < n_frames; t++)
    stage_push (e, 0, features + (gsize) t * n_features, mask ? !mask[t] : 0);
  gboolean ok = enc_state_finish (e, error);
  g3n_kernels_pop_threads (prev);
  enc_state_free (e);
  return ok;
}

gboolean
g3n_audio_embed_padded (const G3nAudioEncoder *enc, const float *embeds, const guint8 *tower_mask, int n_tokens,
                        float *out, GError **error)
{
  const G3nConfig *c = enc->cfg;
  int S = c->audio_soft_tokens_per_image, H = enc->text_hidden;
  if (n_tokens > S) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "audio clip gives %d tokens, more than audio_soft_tokens_per_image %d", n_tokens, S);
    return FALSE;
  }
  int row = c->text.vocab_size - 1 - c->audio.vocab_offset;
  if (!enc->embed || !enc->embed->present || row < 0 || row >= c->audio.vocab_size) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_TENSOR, "%s: no embed_audio row for the audio padding id %d", enc->path,
                 c->text.vocab_size - 1);
    return FALSE;
  }
  float *pad = g_new (float, H);
  g3n_embedder_embed_hard (enc->embed, c->audio.rms_norm_eps, row, enc->D, H, pad);
  for (int i = 0; i < S; i++)
    memcpy (out + (gsize) i * H, i < n_tokens && !tower_mask[i] ? embeds + (gsize) i * H : pad, sizeof (float) * H);
  g_free (pad);
  return TRUE;
}

/* ---------------------------------------------------------------- streaming */

struct _G3nAudioStream {
  const G3nAudioEncoder *enc;
  G3nAudioFeatureStream *fs;
  EncState *es;
  G3nAudioFramesFunc on_frames;
  G3nAudioTokensFunc on_tokens;
  gpointer user_data;
  G3nComputeParams compute;
  int n_fed_frames;   /* frames of the clip pushed as features (g3n_audio_stream_push_features) */
};

static void
stream_frames (const float *features, const guint8 *mask, int first, int n, gpointer user_data)
{
  G3nAudioStream *s = user_data;
  if (s->on_frames)
    s->on_frames (features, mask, first, n, s->user_data);
  int F = s->enc->c->input_feat_size;
  for (int i = 0; i < n; i++)
    stage_push (s->es, 0, features + (gsize) i * F, !mask[i]);
}

static void
stream_tokens (gpointer self, const float *tower, const guint8 *mask, const float *embeds, int first, int n)
{
  G3nAudioStream *s = self;
  if (s->on_tokens)
    s->on_tokens (tower, mask, embeds, first, n, s->user_data);
}

G3nAudioStream *
g3n_audio_stream_new (const G3nAudioFeatures *fx, const G3nAudioEncoder *enc, G3nAudioFramesFunc on_frames,
                      G3nAudioTokensFunc on_tokens, gpointer user_data, GError **error)
{
  if (g3n_audio_features_size (fx) != enc->c->input_feat_size) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG,
                 "the feature extractor makes %d mel bins, but %s's audio tower expects input_feat_size %d",
                 g3n_audio_features_size (fx), enc->path, enc->c->input_feat_size);
    return NULL;
  }
  G3nAudioStream *s = g_new0 (G3nAudioStream, 1);
  s->enc = enc;
  s->on_frames = on_frames;
  s->on_tokens = on_tokens;
  s->user_data = user_data;
  s->compute = g3n_compute_default_params ();
  Sink sink = { NULL, NULL, stream_tokens, s };
  s->es = enc_state_new (enc, &sink);
  s->es->batch_rows = enc->chunk;
  s->fs = g3n_audio_feature_stream_new (fx, stream_frames, s);
  return s;
}

void
g3n_audio_stream_free (G3nAudioStream *s)
{
  if (!s)
    return;
  g3n_audio_feature_stream_free (s->fs);
  enc_state_free (s->es);
  g_free (s);
}

/* A cancelled clip is abandoned: the frames still buffered are flushed into the cancelled state (which
 * ignores them) and both stages start over. */
static void
stream_abandon (G3nAudioStream *s, GError **error)
{
  g3n_audio_feature_stream_finish (s->fs, NULL);
  enc_state_finish (s->es, error);
}

void
g3n_audio_stream_reset (G3nAudioStream *s)
{
  s->n_fed_frames = 0;
  s->es->cancelled = TRUE;
  stream_abandon (s, NULL);
}

gboolean
g3n_audio_stream_push (G3nAudioStream *s, const float *pcm, gsize n, GError **error)
{
  int prev = g3n_kernels_push_threads (s->compute.n_threads);
  gboolean ok = g3n_audio_feature_stream_push (s->fs, pcm, n, error);
  g3n_kernels_pop_threads (prev);
  if (ok && s->es->cancelled) {
    stream_abandon (s, error);
    return FALSE;
  }
  return ok;
}

gboolean
g3n_audio_stream_push_features (G3nAudioStream *s, const float *features, const guint8 *mask, int n, GError **error)
{
  int F = s->enc->c->input_feat_size;
  if (g3n_audio_feature_stream_n_samples (s->fs) > 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "this audio clip is fed with PCM: feature frames cannot be mixed into it");
    return FALSE;
  }
  for (gsize i = 0; i < (gsize) MAX (n, 0) * F; i++)
    if (!isfinite (features[i])) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio feature %d of frame %d is not finite",
                   (int) (i % F), s->n_fed_frames + (int) (i / F));
      return FALSE;
    }
  int prev = g3n_kernels_push_threads (s->compute.n_threads);
  for (int i = 0; i < n && !s->es->cancelled; i++)
    stage_push (s->es, 0, features + (gsize) i * F, mask ? !mask[i] : 0);
  g3n_kernels_pop_threads (prev);
  s->n_fed_frames += MAX (n, 0);
  if (s->es->cancelled) {
    s->n_fed_frames = 0;
    stream_abandon (s, error);
    return FALSE;
  }
  return TRUE;
}

/* Every conformer batch streams all weights through the caches once, so tiny batches cost far more per row
 * than large ones: a latency/throughput trade-off. */
void
g3n_audio_stream_set_min_rows (G3nAudioStream *s, int rows)
{
  s->es->batch_rows = CLAMP (rows, 1, s->enc->max_batch);
}

void
g3n_audio_stream_set_compute (G3nAudioStream *s, const G3nComputeParams *compute)
{
  s->compute = compute ? *compute : g3n_compute_default_params ();
  s->es->cancel = s->compute.cancellable;
}

gboolean
g3n_audio_stream_finish (G3nAudioStream *s, GError **error)
{
  gboolean had_frames = g3n_audio_feature_stream_n_samples (s->fs) > 0 || s->n_fed_frames > 0;
  s->n_fed_frames = 0;
  int prev = g3n_kernels_push_threads (s->compute.n_threads);
  gboolean ok = g3n_audio_feature_stream_finish (s->fs, error);
  ok = ok ? enc_state_finish (s->es, error) : (stream_abandon (s, NULL), FALSE);
  g3n_kernels_pop_threads (prev);
  if (!ok)
    return FALSE;
  if (!had_frames) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio stream finished without any samples");
    return FALSE;
  }
  return TRUE;
}
