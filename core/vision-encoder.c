/* vision-encoder.c — timm's MobileNetV5 encoder (mobilenetv5_300m_enc) in plain C.
 *
 * Activations are kept pixel-major (HWC: the channels of one pixel are contiguous), so every 1x1 convolution
 * and attention projection is one matrix product over all pixels (g3n_matmul / sgemm against the mapped
 * weights), RmsNorm2d normalises contiguous rows, and depthwise convolutions run their inner loop over
 * channels. Full convolutions (stem, edge-residual expansion) are im2col + sgemm in bounded chunks. Only the
 * stem output and the NCHW tower output change layout.
 *
 * Padding is TensorFlow 'same' (timm pad_type='same'): total = max((ceil(in/s)-1)*s + k - in, 0), the smaller
 * half before. Every norm is RmsNorm2d with eps 1e-6, every activation GELU (tanh).
 */
#include "vision-encoder.h"

#include "compute.h"
#include "embedder.h"
#include "kernels/threadpool.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define NORM_EPS 1e-6f
#define MSFA_CHANNELS 2048 /* MobileNetV5Encoder.num_features */
#define MSFA_RESOLUTION 16
#define IMAGE_SIZE 768
#define STEM_CHANNELS 64
#define TIMM_PREFIX "model.vision_tower.timm_model."
/* Floats per im2col chunk: bounds the full-convolution scratch to 16 MiB whatever the image. */
#define IM2COL_FLOATS (4 << 20)
/* Query rows (pixel x head) per attention chunk: bounds the score matrix (per thread). */
#define ATTN_ROWS 2048

/* ---------------------------------------------------------------- architecture */

typedef enum { BLOCK_ER, BLOCK_UIR, BLOCK_MQA } BlockType;

/* One row of the architecture: `repeat` identical blocks. kind 'P' is a (MQA, UIR a0 k0 e2) pair. */
typedef struct {
  int stage;
  char kind;     /* 'E' edge residual, 'U' universal inverted residual, 'P' attention + UIR pair */
  int k_start;   /* UIR depthwise start kernel (0 = none) */
  int k;         /* ER expansion kernel / UIR middle depthwise kernel / MQA kv down-sampling kernel */
  int stride;
  double exp;
  int chs;       /* before the channel multiplier */
  int heads, kv_dim, kv_stride;
  int repeat;
} ArchRow;

/* timm _gen_mobilenet_v5, 'mobilenetv5_300m' arch_def. */
static const ArchRow mnv5_300m[] = {
  { 0, 'E', 0, 3, 2, 4, 128, 0, 0, 0, 1 },
  { 0, 'E', 0, 3, 1, 4, 128, 0, 0, 0, 2 },
  { 1, 'U', 3, 5, 2, 6, 256, 0, 0, 0, 1 },
  { 1, 'U', 5, 0, 1, 4, 256, 0, 0, 0, 1 },
  { 1, 'U', 3, 0, 1, 4, 256, 0, 0, 0, 1 },
  { 1, 'U', 5, 0, 1, 4, 256, 0, 0, 0, 1 },
  { 1, 'U', 3, 0, 1, 4, 256, 0, 0, 0, 1 },
  { 2, 'U', 5, 5, 2, 6, 640, 0, 0, 0, 1 },
  { 2, 'U', 5, 0, 1, 4, 640, 0, 0, 0, 7 },
  { 2, 'U', 0, 0, 1, 1, 640, 0, 0, 0, 1 },
  { 2, 'P', 0, 3, 1, 2, 640, 12, 64, 2, 14 },
  { 3, 'U', 5, 5, 2, 6, 1280, 0, 0, 0, 1 },
  { 3, 'P', 0, 3, 1, 2, 1280, 16, 96, 1, 19 },
};
#define N_STAGES 4

/* timm make_divisible(v, 8): nearest multiple of 8, at least 8, never more than 10% below v. */
static int
make_divisible (double v)
{
  int r = MAX (8, (int) (v + 4) / 8 * 8);
  return r < 0.9 * v ? r + 8 : r;
}

/* ---------------------------------------------------------------- weights */

typedef struct {
  const float *w; /* depthwise: [k*k][C]; full: [Cout][k][k][Cin] */
  int k, stride;
} Conv;

typedef struct {
  BlockType type;
  int stage, in_c, out_c, mid_c, stride;
  gboolean skip;
  /* ER */
  Conv conv_exp;
  const float *bn1, *bn2;
  G3nMatrix conv_pwl;
  /* UIR */
  Conv dw_start, dw_mid;
  const float *dw_start_bn, *dw_mid_bn, *pw_exp_bn, *pw_proj_bn, *gamma;
  G3nMatrix pw_exp, pw_proj;
  /* MQA */
  const float *norm;
  int heads, kd, vd, kv_stride;
  G3nMatrix q, k, v, o;
  Conv k_down, v_down;
  const float *k_norm, *v_norm;
} Block;

struct _G3nVisionEncoder {
  G3nModel *model; /* the model whose shared tower this is (free drops a reference), or NULL: owned */
  char *origin;
  GPtrArray *owned; /* fp32 copies */
  Conv stem;
  const float *stem_bias, *stem_bn;
  Block *blocks;
  int n_blocks;
  int stage_end[N_STAGES]; /* index of each stage's last block */
  int msfa_in, msfa_mid;
  G3nMatrix msfa_exp, msfa_proj;
  const float *msfa_exp_bn, *msfa_proj_bn, *msfa_norm;
};

typedef struct {
  G3nVisionEncoder *enc;
  G3nVisionTensorLookup lookup;
  gpointer user_data;
  GError **error;
} Binder;

static const G3nTensor *G_GNUC_PRINTF (4, 5)
find (Binder *b, int ndim, const int64_t *shape, const char *fmt, ...)
{
  if (*b->error)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const G3nTensor *t = b->lookup (b->user_data, name, ndim, shape);
  g_autofree char *full = g_strconcat (b->enc->model ? TIMM_PREFIX : "", name, NULL);
  return g3n_tensor_expect (t, t ? t->name : full, b->enc->origin, ndim, shape, b->error) ? t : NULL;
}

static float *
to_f32 (Binder *b, const G3nTensor *t)
{
  gsize n = (gsize) g3n_tensor_numel (t);
  float *v = g_new (float, n);
  g3n_to_f32 (t->dtype, t->data, v, n);
  g_ptr_array_add (b->enc->owned, v);
  return v;
}

/* A per-channel vector (norm weight, layer-scale gamma, bias) as fp32. */
static const float *
bind_vec (Binder *b, int n, const char *name)
{
  const G3nTensor *t = find (b, 1, (int64_t[]) { n }, "%s", name);
  return t ? to_f32 (b, t) : NULL;
}

/* A 1x1 convolution [out, in, 1, 1]: a matrix view into the mapping. */
static void
bind_pw (Binder *b, G3nMatrix *m, int out, int in, const char *name)
{
  const G3nTensor *t = find (b, 4, (int64_t[]) { out, in, 1, 1 }, "%s", name);
  if (t)
    *m = (G3nMatrix) { .data = t->data, .dtype = t->dtype, .rows = out, .cols = in };
}

/* A depthwise k x k convolution [C, 1, k, k], transposed to [k*k][C] so taps read channel rows. */
static void
bind_dw (Binder *b, Conv *c, int C, int k, int stride, const char *name)
{
  const G3nTensor *t = find (b, 4, (int64_t[]) { C, 1, k, k }, "%s", name);
  if (!t)
    return;
  float *src = to_f32 (b, t), *w = g_new (float, (gsize) C * k * k);
  for (int ch = 0; ch < C; ch++)
    for (int tap = 0; tap < k * k; tap++)
      w[(gsize) tap * C + ch] = src[(gsize) ch * k * k + tap];
  g_ptr_array_add (b->enc->owned, w);
  *c = (Conv) { w, k, stride };
}

/* A full k x k convolution [out, in, k, k], reordered to [out][k][k][in] to match HWC im2col columns. */
static void
bind_full (Binder *b, Conv *c, int out, int in, int k, int stride, const char *name)
{
  const G3nTensor *t = find (b, 4, (int64_t[]) { out, in, k, k }, "%s", name);
  if (!t)
    return;
  float *src = to_f32 (b, t), *w = g_new (float, (gsize) out * in * k * k);
  for (int o = 0; o < out; o++)
    for (int i = 0; i < in; i++)
      for (int tap = 0; tap < k * k; tap++)
        w[((gsize) o * k * k + tap) * in + i] = src[((gsize) o * in + i) * k * k + tap];
  g_ptr_array_add (b->enc->owned, w);
  *c = (Conv) { w, k, stride };
}

static void
bind_er (Binder *b, Block *blk, const char *p, int k)
{
  g_autofree char *n1 = g_strconcat (p, "conv_exp.weight", NULL), *n2 = g_strconcat (p, "bn1.weight", NULL),
                  *n3 = g_strconcat (p, "conv_pwl.weight", NULL), *n4 = g_strconcat (p, "bn2.weight", NULL);
  bind_full (b, &blk->conv_exp, blk->mid_c, blk->in_c, k, blk->stride, n1);
  blk->bn1 = bind_vec (b, blk->mid_c, n2);
  bind_pw (b, &blk->conv_pwl, blk->out_c, blk->mid_c, n3);
  blk->bn2 = bind_vec (b, blk->out_c, n4);
}

/* Universal inverted residual; `p` is the name prefix. With both depthwise convs, the middle one strides. */
static void
bind_uir (Binder *b, Block *blk, const char *p, int k_start, int k_mid, gboolean layer_scale)
{
  g_autofree char *n_sc = g_strconcat (p, "dw_start.conv.weight", NULL), *n_sn = g_strconcat (p, "dw_start.bn.weight", NULL),
                  *n_ec = g_strconcat (p, "pw_exp.conv.weight", NULL), *n_en = g_strconcat (p, "pw_exp.bn.weight", NULL),
                  *n_mc = g_strconcat (p, "dw_mid.conv.weight", NULL), *n_mn = g_strconcat (p, "dw_mid.bn.weight", NULL),
                  *n_pc = g_strconcat (p, "pw_proj.conv.weight", NULL), *n_pn = g_strconcat (p, "pw_proj.bn.weight", NULL),
                  *n_g = g_strconcat (p, "layer_scale.gamma", NULL);
  if (k_start) {
    bind_dw (b, &blk->dw_start, blk->in_c, k_start, k_mid ? 1 : blk->stride, n_sc);
    blk->dw_start_bn = bind_vec (b, blk->in_c, n_sn);
  }
  bind_pw (b, &blk->pw_exp, blk->mid_c, blk->in_c, n_ec);
  blk->pw_exp_bn = bind_vec (b, blk->mid_c, n_en);
  if (k_mid) {
    bind_dw (b, &blk->dw_mid, blk->mid_c, k_mid, blk->stride, n_mc);
    blk->dw_mid_bn = bind_vec (b, blk->mid_c, n_mn);
  }
  bind_pw (b, &blk->pw_proj, blk->out_c, blk->mid_c, n_pc);
  blk->pw_proj_bn = bind_vec (b, blk->out_c, n_pn);
  if (layer_scale)
    blk->gamma = bind_vec (b, blk->out_c, n_g);
}

static void
bind_mqa (Binder *b, Block *blk, const char *p, const ArchRow *r)
{
  int C = blk->in_c;
  blk->heads = r->heads, blk->kd = blk->vd = r->kv_dim, blk->kv_stride = r->kv_stride;
  g_autofree char *n_norm = g_strconcat (p, "norm.weight", NULL), *n_q = g_strconcat (p, "attn.query.proj.weight", NULL),
                  *n_k = g_strconcat (p, "attn.key.proj.weight", NULL), *n_v = g_strconcat (p, "attn.value.proj.weight", NULL),
                  *n_o = g_strconcat (p, "attn.output.proj.weight", NULL),
                  *n_kd = g_strconcat (p, "attn.key.down_conv.weight", NULL), *n_kn = g_strconcat (p, "attn.key.norm.weight", NULL),
                  *n_vd = g_strconcat (p, "attn.value.down_conv.weight", NULL), *n_vn = g_strconcat (p, "attn.value.norm.weight", NULL),
                  *n_g = g_strconcat (p, "layer_scale.gamma", NULL);
  blk->norm = bind_vec (b, C, n_norm);
  bind_pw (b, &blk->q, blk->heads * blk->kd, C, n_q);
  bind_pw (b, &blk->k, blk->kd, C, n_k);
  bind_pw (b, &blk->v, blk->vd, C, n_v);
  bind_pw (b, &blk->o, blk->out_c, blk->heads * blk->vd, n_o);
  if (blk->kv_stride > 1) {
    bind_dw (b, &blk->k_down, C, r->k, blk->kv_stride, n_kd);
    blk->k_norm = bind_vec (b, C, n_kn);
    bind_dw (b, &blk->v_down, C, r->k, blk->kv_stride, n_vd);
    blk->v_norm = bind_vec (b, C, n_vn);
  }
  blk->gamma = bind_vec (b, blk->out_c, n_g);
}

static int
count_blocks (void)
{
  int n = 0;
  for (guint i = 0; i < G_N_ELEMENTS (mnv5_300m); i++)
    n += mnv5_300m[i].repeat * (mnv5_300m[i].kind == 'P' ? 2 : 1);
  return n;
}

/* Fills one block's dimensions from its arch row (before binding). */
static void
block_init (Block *blk, BlockType type, int stage, int in_c, int out_c, int stride, double exp)
{
  blk->type = type, blk->stage = stage, blk->in_c = in_c, blk->out_c = out_c, blk->stride = stride;
  blk->mid_c = type == BLOCK_MQA ? 0 : make_divisible (in_c * exp);
  blk->skip = in_c == out_c && stride == 1;
}

static gboolean
bind_all (Binder *b, double multiplier)
{
  G3nVisionEncoder *e = b->enc;
  int in_c = multiplier < 1.0 ? STEM_CHANNELS : make_divisible (STEM_CHANNELS * multiplier);
  bind_full (b, &e->stem, in_c, 3, 3, 2, "conv_stem.conv.weight");
  e->stem_bias = bind_vec (b, in_c, "conv_stem.conv.bias");
  e->stem_bn = bind_vec (b, in_c, "conv_stem.bn.weight");
  e->n_blocks = count_blocks ();
  e->blocks = g_new0 (Block, e->n_blocks);
  int n = 0, in_stage = 0, prev_stage = -1;
  for (guint i = 0; i < G_N_ELEMENTS (mnv5_300m); i++) {
    const ArchRow *r = &mnv5_300m[i];
    int out_c = make_divisible (r->chs * multiplier);
    for (int rep = 0; rep < r->repeat; rep++) {
      if (r->stage != prev_stage)
        in_stage = 0, prev_stage = r->stage;
      int stride = rep == 0 ? r->stride : 1;
      for (int half = 0; half < (r->kind == 'P' ? 2 : 1); half++) {
        g_autofree char *p = g_strdup_printf ("blocks.%d.%d.", r->stage, in_stage++);
        Block *blk = &e->blocks[n++];
        if (r->kind == 'E') {
          block_init (blk, BLOCK_ER, r->stage, in_c, out_c, stride, r->exp);
          bind_er (b, blk, p, r->k);
        } else if (r->kind == 'U') {
          block_init (blk, BLOCK_UIR, r->stage, in_c, out_c, stride, r->exp);
          bind_uir (b, blk, p, r->k_start, r->k, TRUE);
        } else if (half == 0) {
          block_init (blk, BLOCK_MQA, r->stage, in_c, out_c, 1, 0);
          bind_mqa (b, blk, p, r);
        } else {
          block_init (blk, BLOCK_UIR, r->stage, in_c, out_c, 1, r->exp);
          bind_uir (b, blk, p, 0, 0, TRUE);
        }
        in_c = out_c;
        e->stage_end[r->stage] = n - 1;
      }
    }
  }
  /* MSFA: the last two stage outputs, concatenated; an FFN (UIR without depthwise convs, skip or scale). */
  e->msfa_in = e->blocks[e->stage_end[2]].out_c + e->blocks[e->stage_end[3]].out_c;
  e->msfa_mid = make_divisible (e->msfa_in * 2.0);
  Block ffn = { .in_c = e->msfa_in, .mid_c = e->msfa_mid, .out_c = MSFA_CHANNELS };
  bind_uir (b, &ffn, "msfa.ffn.", 0, 0, FALSE);
  e->msfa_exp = ffn.pw_exp, e->msfa_exp_bn = ffn.pw_exp_bn;
  e->msfa_proj = ffn.pw_proj, e->msfa_proj_bn = ffn.pw_proj_bn;
  e->msfa_norm = bind_vec (b, MSFA_CHANNELS, "msfa.norm.weight");
  return *b->error == NULL;
}

static void
encoder_destroy (gpointer p)
{
  G3nVisionEncoder *e = p;
  g_free (e->blocks);
  g_ptr_array_free (e->owned, TRUE);
  g_free (e->origin);
  g_free (e);
}

static G3nVisionEncoder *
encoder_new (G3nModel *model, G3nVisionTensorLookup lookup, gpointer user_data, const char *origin,
             double multiplier, GError **error)
{
  if (!(multiplier > 0 && multiplier <= 8)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: channel_multiplier %g is out of range (0, 8]", origin,
                 multiplier);
    return NULL;
  }
  /* The kernel pool owns the threads: OpenBLAS must run single-threaded inside each worker (g3n_matmul does
   * the same on first use, but the stem's sgemm may come first). */
  openblas_set_num_threads (1);
  G3nVisionEncoder *e = g_new0 (G3nVisionEncoder, 1);
  e->model = model;
  e->origin = g_strdup (origin);
  e->owned = g_ptr_array_new_with_free_func (g_free);
  Binder b = { e, lookup, user_data, error };
  if (!bind_all (&b, multiplier)) {
    encoder_destroy (e);
    return NULL;
  }
  return e;
}

static const G3nTensor *
store_lookup (gpointer user_data, const char *name, int ndim, const int64_t *shape)
{
  (void) ndim, (void) shape;
  g_autofree char *full = g_strconcat (TIMM_PREFIX, name, NULL);
  return g3n_tensor_store_find (((G3nModel *) user_data)->store, full);
}

static gpointer
make_shared (G3nModel *model, GError **error)
{
  const G3nVisionConfig *vc = &model->config->vision;
  if (!vc->present) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: config.json has no vision_config", model->path);
    return NULL;
  }
  if (vc->architecture && strcmp (vc->architecture, "mobilenetv5_300m_enc") != 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED,
                 "%s: vision architecture '%s' is not supported (only mobilenetv5_300m_enc)", model->path,
                 vc->architecture);
    return NULL;
  }
  if (vc->hidden_size != MSFA_CHANNELS) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: vision_config.hidden_size is %d, but the tower gives %d",
                 model->path, vc->hidden_size, MSFA_CHANNELS);
    return NULL;
  }
  if (model->config->vision_soft_tokens_per_image != MSFA_RESOLUTION * MSFA_RESOLUTION) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: vision_soft_tokens_per_image is %d, the tower gives %d",
                 model->path, model->config->vision_soft_tokens_per_image, MSFA_RESOLUTION * MSFA_RESOLUTION);
    return NULL;
  }
  return encoder_new (model, store_lookup, model, model->path, vc->channel_multiplier, error);
}

/* The model's one vision tower: its fp32 copies are made once, whoever asks first. */
G3nVisionEncoder *
g3n_vision_encoder_new (G3nModel *model, GError **error)
{
  G3nVisionEncoder *e = g3n_model_shared_tower (model, G3N_TOWER_VISION, make_shared, encoder_destroy, error);
  if (e)
    g3n_model_ref (model);
  return e;
}

G3nVisionEncoder *
g3n_vision_encoder_new_custom (G3nVisionTensorLookup lookup, gpointer user_data, const char *origin,
                               double channel_multiplier, GError **error)
{
  return encoder_new (NULL, lookup, user_data, origin, channel_multiplier, error);
}

void
g3n_vision_encoder_free (G3nVisionEncoder *e)
{
  if (!e)
    return;
  if (e->model)
    g3n_model_unref (e->model); /* the model destroys its tower */
  else
    encoder_destroy (e);
}

int
g3n_vision_encoder_image_size (const G3nVisionEncoder *e)
{
  (void) e;
  return IMAGE_SIZE;
}

int
g3n_vision_encoder_n_channels (const G3nVisionEncoder *e)
{
  (void) e;
  return MSFA_CHANNELS;
}

int
g3n_vision_encoder_n_tokens (const G3nVisionEncoder *e)
{
  (void) e;
  return MSFA_RESOLUTION * MSFA_RESOLUTION;
}

int
g3n_vision_encoder_n_stats (const G3nVisionEncoder *e)
{
  return 1 + e->n_blocks;
}

/* ---------------------------------------------------------------- kernels (HWC activations) */

/* A feature map: H x W pixels of C channels, pixel-major. */
typedef struct {
  float *d;
  int H, W, C;
} Map;

static Map
map_new (int H, int W, int C)
{
  return (Map) { g_new (float, (gsize) H * W * C), H, W, C };
}

static void
map_free (Map *m)
{
  g_clear_pointer (&m->d, g_free);
}

static gsize
map_pixels (const Map *m)
{
  return (gsize) m->H * m->W;
}

/* TF 'same': output size and the padding before the first input pixel. */
static int
same_out (int in, int stride)
{
  return (in + stride - 1) / stride;
}

static int
same_pad_before (int in, int k, int stride)
{
  int total = MAX ((same_out (in, stride) - 1) * stride + k - in, 0);
  return total / 2;
}


typedef struct {
  Map *m;
  const float *weight;
  gboolean act;
} NormJob;

static void
norm_act_range (int begin, int end, gpointer data)
{
  NormJob *j = data;
  int C = j->m->C;
  for (int p = begin; p < end; p++) {
    float *row = j->m->d + (gsize) p * C;
    g3n_rms_norm (row, j->weight, NORM_EPS, C, row);
    if (j->act)
      g3n_gelu_tanh (row, C);
  }
}

/* Per pixel RmsNorm over channels, then GELU if `act`. In place. */
static void
norm_act (Map *m, const float *weight, gboolean act)
{
  NormJob j = { m, weight, act };
  g3n_parallel_for ((int) map_pixels (m), 256, norm_act_range, &j);
}

typedef struct {
  const Map *x;
  const G3nMatrix *w;
  float *y;
} PointwiseJob;

static void
pointwise_range (int begin, int end, gpointer data)
{
  PointwiseJob *j = data;
  g3n_matmul (j->w, j->x->d + (gsize) begin * j->x->C, end - begin, j->y + (gsize) begin * j->w->rows);
}

/* 1x1 convolution: a matrix product over the pixels, split by pixels across threads (the weight matrices
 * are often narrower than one of g3n_matmul's row blocks, so splitting weight rows would leave threads idle). */
static Map
pointwise (const Map *x, const G3nMatrix *w)
{
  Map y = map_new (x->H, x->W, w->rows);
  PointwiseJob j = { x, w, y.d };
  g3n_parallel_for ((int) map_pixels (x), 64, pointwise_range, &j);
  return y;
}

/* Inner loops run in blocks of LANES with a constant trip count, which GCC's -O2 vectoriser takes. */
#define LANES 8

/* o[i] += a[i] * b[i]; n is a channel count, a multiple of 8 (make_divisible). */
static inline void
multiply_add (float *restrict o, const float *restrict a, const float *restrict b, int n)
{
  for (int i = 0; i < n; i += LANES)
    for (int j = 0; j < LANES; j++)
      o[i + j] += a[i + j] * b[i + j];
}

typedef struct {
  const Map *x;
  const Conv *c;
  Map *y;
} DepthwiseJob;

static void
depthwise_rows (int begin, int end, gpointer data)
{
  const DepthwiseJob *j = data;
  const Map *x = j->x;
  int k = j->c->k, s = j->c->stride, C = x->C, Wo = j->y->W;
  int pt = same_pad_before (x->H, k, s), pl = same_pad_before (x->W, k, s);
  for (int oy = begin; oy < end; oy++)
    for (int ox = 0; ox < Wo; ox++) {
      float *o = j->y->d + ((gsize) oy * Wo + ox) * C;
      memset (o, 0, sizeof (float) * C);
      for (int ky = 0; ky < k; ky++) {
        int iy = oy * s - pt + ky;
        if (iy < 0 || iy >= x->H)
          continue;
        for (int kx = 0; kx < k; kx++) {
          int ix = ox * s - pl + kx;
          if (ix < 0 || ix >= x->W)
            continue;
          multiply_add (o, x->d + ((gsize) iy * x->W + ix) * C, j->c->w + (gsize) (ky * k + kx) * C, C);
        }
      }
    }
}

static Map
depthwise (const Map *x, const Conv *c)
{
  Map y = map_new (same_out (x->H, c->stride), same_out (x->W, c->stride), x->C);
  DepthwiseJob j = { x, c, &y };
  g3n_parallel_for (y.H, 4, depthwise_rows, &j);
  return y;
}

/* Writes the im2col rows of output rows [oy0, oy0 + rows): one row of k*k*C values per output pixel. */
static void
im2col (const Map *x, int k, int s, int pt, int pl, int Wo, int oy0, int rows, float *col)
{
  int C = x->C;
  gsize row_len = (gsize) k * k * C;
  for (int oy = oy0; oy < oy0 + rows; oy++)
    for (int ox = 0; ox < Wo; ox++) {
      float *r = col + ((gsize) (oy - oy0) * Wo + ox) * row_len;
      for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++, r += C) {
          int iy = oy * s - pt + ky, ix = ox * s - pl + kx;
          if (iy < 0 || iy >= x->H || ix < 0 || ix >= x->W)
            memset (r, 0, sizeof (float) * C);
          else
            memcpy (r, x->d + ((gsize) iy * x->W + ix) * C, sizeof (float) * C);
        }
    }
}

typedef struct {
  const Map *x;
  const Conv *c;
  Map *y;
  int rows; /* output rows per chunk */
} ConvJob;

static void
conv_chunks (int begin, int end, gpointer data)
{
  const ConvJob *j = data;
  int k = j->c->k, s = j->c->stride, Ho = j->y->H, Wo = j->y->W, out_c = j->y->C;
  int pt = same_pad_before (j->x->H, k, s), pl = same_pad_before (j->x->W, k, s);
  int K = k * k * j->x->C;
  float *col = g_new (float, (gsize) j->rows * Wo * K);
  for (int chunk = begin; chunk < end; chunk++) {
    int oy = chunk * j->rows, n = MIN (j->rows, Ho - oy);
    im2col (j->x, k, s, pt, pl, Wo, oy, n, col);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n * Wo, out_c, K, 1.0f, col, K, j->c->w, K, 0.0f,
                 j->y->d + (gsize) oy * Wo * out_c, out_c);
  }
  g_free (col);
}

static Map
conv_full (const Map *x, const Conv *c, int out_c, const float *bias)
{
  Map y = map_new (same_out (x->H, c->stride), same_out (x->W, c->stride), out_c);
  gsize K = (gsize) c->k * c->k * x->C;
  int rows = (int) MIN ((gsize) y.H, MAX ((gsize) 1, IM2COL_FLOATS / ((gsize) y.W * K)));
  /* Small enough chunks that every thread gets some. */
  rows = MAX (1, MIN (rows, (y.H + g3n_kernels_threads () - 1) / g3n_kernels_threads ()));
  ConvJob j = { x, c, &y, rows };
  g3n_parallel_for ((y.H + rows - 1) / rows, 1, conv_chunks, &j);
  if (bias)
    for (gsize p = 0; p < map_pixels (&y); p++)
      for (int ch = 0; ch < out_c; ch++)
        y.d[p * out_c + ch] += bias[ch];
  return y;
}

/* y = y * gamma (per channel), then + shortcut when `skip`. Consumes nothing. */
static void
scale_add (Map *y, const float *gamma, const Map *shortcut)
{
  gsize P = map_pixels (y);
  for (gsize p = 0; p < P; p++) {
    float *r = y->d + p * y->C;
    const float *s = shortcut ? shortcut->d + p * y->C : NULL;
    for (int ch = 0; ch < y->C; ch++) {
      float v = gamma ? r[ch] * gamma[ch] : r[ch];
      r[ch] = s ? v + s[ch] : v;
    }
  }
}

/* ---------------------------------------------------------------- blocks */

static Map
edge_residual (const Block *b, const Map *x)
{
  Map h = conv_full (x, &b->conv_exp, b->mid_c, NULL);
  norm_act (&h, b->bn1, TRUE);
  Map y = pointwise (&h, &b->conv_pwl);
  map_free (&h);
  norm_act (&y, b->bn2, FALSE);
  scale_add (&y, NULL, b->skip ? x : NULL);
  return y;
}

static Map
inverted_residual (const Block *b, const Map *x)
{
  Map t = { 0 };
  const Map *in = x;
  if (b->dw_start.w) {
    t = depthwise (x, &b->dw_start);
    norm_act (&t, b->dw_start_bn, FALSE);
    in = &t;
  }
  Map h = pointwise (in, &b->pw_exp);
  map_free (&t);
  norm_act (&h, b->pw_exp_bn, TRUE);
  if (b->dw_mid.w) {
    Map m = depthwise (&h, &b->dw_mid);
    map_free (&h);
    norm_act (&m, b->dw_mid_bn, TRUE);
    h = m;
  }
  Map y = pointwise (&h, &b->pw_proj);
  map_free (&h);
  norm_act (&y, b->pw_proj_bn, FALSE);
  scale_add (&y, b->gamma, b->skip ? x : NULL);
  return y;
}

/* Keys or values: optional strided depthwise down-sampling + norm, then the 1x1 projection. */
static Map
kv_project (const Map *xn, const Conv *down, const float *norm, const G3nMatrix *proj)
{
  if (!down->w)
    return pointwise (xn, proj);
  Map d = depthwise (xn, down);
  norm_act (&d, norm, FALSE);
  Map y = pointwise (&d, proj);
  map_free (&d);
  return y;
}

/* Multi-query attention: every head's queries against one shared key/value set. With q laid out
 * [pixels, heads, kd], the query rows of all heads form one [pixels*heads, kd] matrix, so scores and
 * outputs are two sgemms per chunk and the output lands directly in [pixels, heads*vd]. */
typedef struct {
  const Block *b;
  const float *q;
  const Map *k, *v;
  gsize n_rows;
  float *o;
} AttnJob;

static void
attn_chunks (int begin, int end, gpointer data)
{
  const AttnJob *j = data;
  const Block *b = j->b;
  int M = (int) map_pixels (j->k);
  float scale = 1.0f / sqrtf ((float) b->kd);
  float *s = g_new (float, (gsize) ATTN_ROWS * M);
  for (int chunk = begin; chunk < end; chunk++) {
    gsize r0 = (gsize) chunk * ATTN_ROWS;
    int n = (int) MIN ((gsize) ATTN_ROWS, j->n_rows - r0);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, M, b->kd, scale, j->q + r0 * b->kd, b->kd, j->k->d,
                 b->kd, 0.0f, s, M);
    for (int i = 0; i < n; i++)
      g3n_softmax (s + (gsize) i * M, M);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, b->vd, M, 1.0f, s, M, j->v->d, b->vd, 0.0f,
                 j->o + r0 * b->vd, b->vd);
  }
  g_free (s);
}

/* Multi-query attention: every head's queries against one shared key/value set. With q laid out
 * [pixels, heads, kd], the query rows of all heads form one [pixels*heads, kd] matrix, so scores and
 * outputs are two sgemms per chunk of rows and the output lands directly in [pixels, heads*vd]. */
static void
mqa_core (const Block *b, const float *q, const Map *k, const Map *v, gsize n_rows, float *o)
{
  AttnJob j = { b, q, k, v, n_rows, o };
  g3n_parallel_for ((int) ((n_rows + ATTN_ROWS - 1) / ATTN_ROWS), 1, attn_chunks, &j);
}

static Map
mobile_attention (const Block *b, const Map *x)
{
  Map xn = map_new (x->H, x->W, x->C);
  memcpy (xn.d, x->d, sizeof (float) * map_pixels (x) * x->C);
  norm_act (&xn, b->norm, FALSE);
  Map q = pointwise (&xn, &b->q);
  Map k = kv_project (&xn, &b->k_down, b->k_norm, &b->k);
  Map v = kv_project (&xn, &b->v_down, b->v_norm, &b->v);
  map_free (&xn);
  Map o = map_new (x->H, x->W, b->heads * b->vd);
  mqa_core (b, q.d, &k, &v, map_pixels (x) * b->heads, o.d);
  map_free (&q), map_free (&k), map_free (&v);
  Map y = pointwise (&o, &b->o);
  map_free (&o);
  scale_add (&y, b->gamma, b->skip ? x : NULL);
  return y;
}

static Map
run_block (const Block *b, const Map *x)
{
  switch (b->type) {
  case BLOCK_ER:
    return edge_residual (b, x);
  case BLOCK_UIR:
    return inverted_residual (b, x);
  default:
    return mobile_attention (b, x);
  }
}

/* ---------------------------------------------------------------- fusion adapter */

/* Concatenates hi [H, W, C1] with lo [h, w, C2] upsampled by nearest neighbour (PyTorch 'nearest':
 * src = floor(dst * in / out)). */
static Map
concat_upsampled (const Map *hi, const Map *lo)
{
  Map y = map_new (hi->H, hi->W, hi->C + lo->C);
  float sy = (float) lo->H / hi->H, sx = (float) lo->W / hi->W;
  for (int oy = 0; oy < hi->H; oy++)
    for (int ox = 0; ox < hi->W; ox++) {
      int iy = MIN ((int) floorf (oy * sy), lo->H - 1), ix = MIN ((int) floorf (ox * sx), lo->W - 1);
      float *r = y.d + ((gsize) oy * hi->W + ox) * y.C;
      memcpy (r, hi->d + ((gsize) oy * hi->W + ox) * hi->C, sizeof (float) * hi->C);
      memcpy (r + hi->C, lo->d + ((gsize) iy * lo->W + ix) * lo->C, sizeof (float) * lo->C);
    }
  return y;
}

/* Average pooling with kernel = stride = f. */
static Map
avg_pool (const Map *x, int f)
{
  Map y = map_new (x->H / f, x->W / f, x->C);
  memset (y.d, 0, sizeof (float) * map_pixels (&y) * y.C);
  float inv = 1.0f / (float) (f * f);
  for (int oy = 0; oy < y.H; oy++)
    for (int ox = 0; ox < y.W; ox++) {
      float *o = y.d + ((gsize) oy * y.W + ox) * y.C;
      for (int dy = 0; dy < f; dy++)
        for (int dx = 0; dx < f; dx++) {
          const float *in = x->d + ((gsize) (oy * f + dy) * x->W + ox * f + dx) * x->C;
          for (int ch = 0; ch < x->C; ch++)
            o[ch] += in[ch];
        }
      for (int ch = 0; ch < y.C; ch++)
        o[ch] *= inv;
    }
  return y;
}

static Map
msfa (const G3nVisionEncoder *e, const Map *hi, const Map *lo, GError **error)
{
  if (hi->H % MSFA_RESOLUTION || hi->W % MSFA_RESOLUTION || hi->H != hi->W) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED, "%s: fusion input %dx%d is not a multiple of %d",
                 e->origin, hi->H, hi->W, MSFA_RESOLUTION);
    return (Map) { 0 };
  }
  Map cat = concat_upsampled (hi, lo);
  Map h = pointwise (&cat, &e->msfa_exp);
  map_free (&cat);
  norm_act (&h, e->msfa_exp_bn, TRUE);
  Map f = pointwise (&h, &e->msfa_proj);
  map_free (&h);
  norm_act (&f, e->msfa_proj_bn, FALSE);
  Map y = avg_pool (&f, hi->H / MSFA_RESOLUTION);
  map_free (&f);
  norm_act (&y, e->msfa_norm, FALSE);
  return y;
}

/* ---------------------------------------------------------------- forward */

static void
stats (const Map *m, float *out)
{
  gsize n = map_pixels (m) * m->C;
  double sum = 0, sq = 0, mx = 0;
  for (gsize i = 0; i < n; i++) {
    double v = m->d[i];
    sum += v, sq += v * v, mx = MAX (mx, fabs (v));
  }
  out[0] = (float) (sum / n), out[1] = (float) sqrt (sq / n), out[2] = (float) mx;
}

/* pixel_values CHW → stem output (HWC). */
static Map
stem (const G3nVisionEncoder *e, const float *pixels)
{
  Map x = map_new (IMAGE_SIZE, IMAGE_SIZE, 3);
  gsize P = map_pixels (&x);
  for (gsize p = 0; p < P; p++)
    for (int c = 0; c < 3; c++)
      x.d[p * 3 + c] = pixels[c * P + p];
  Map y = conv_full (&x, &e->stem, e->blocks[0].in_c, e->stem_bias);
  map_free (&x);
  norm_act (&y, e->stem_bn, TRUE);
  return y;
}

static void
write_outputs (const G3nVisionEncoder *e, const Map *y, float *tower_out, float *embeds)
{
  int N = (int) map_pixels (y), C = y->C;
  if (tower_out)
    for (int p = 0; p < N; p++)
      for (int c = 0; c < C; c++)
        tower_out[(gsize) c * N + p] = y->d[(gsize) p * C + c];
  if (!embeds)
    return;
  /* get_image_features: tokens [N, C] * sqrt(C) (a float32 scalar), then embed_vision's soft path. */
  const float scale = (float) sqrt ((double) C);
  float *tokens = g_new (float, (gsize) N * C);
  for (gsize i = 0; i < (gsize) N * C; i++)
    tokens[i] = y->d[i] * scale;
  const G3nConfig *cfg = e->model->config;
  g3n_embedder_embed_soft (&e->model->embed_vision, cfg->vision.rms_norm_eps, tokens, N, C, cfg->text.hidden_size,
                           embeds);
  g_free (tokens);
}

gboolean
g3n_vision_encoder_encode (G3nVisionEncoder *e, const G3nComputeParams *compute, const float *pixel_values,
                           float *tower_out, float *embeds, float *block_stats, GError **error)
{
  if (embeds && (!e->model || !e->model->embed_vision.present)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: image embeddings need embed_vision weights",
                 e->origin);
    return FALSE;
  }
  GCancellable *cancel = compute ? compute->cancellable : NULL;
  if (g3n_check_cancelled (cancel, "image encoding", error))
    return FALSE;
  int prev = g3n_kernels_push_threads (compute ? compute->n_threads : 0);
  Map x = stem (e, pixel_values);
  if (block_stats)
    stats (&x, block_stats);
  Map kept = { 0 }; /* the output of stage 2, which the fusion adapter reads with the last one */
  gboolean cancelled = FALSE;
  for (int i = 0; i < e->n_blocks && !cancelled; i++) {
    /* Checked per block (the largest takes tens of ms): a cancelled image stops within one. */
    if ((cancelled = g3n_check_cancelled (cancel, "image encoding", error)))
      break;
    Map y = run_block (&e->blocks[i], &x);
    if (block_stats)
      stats (&y, block_stats + 3 * (i + 1));
    if (x.d != kept.d)
      map_free (&x);
    x = y;
    if (i == e->stage_end[2])
      kept = x;
  }
  Map out = cancelled ? (Map) { 0 } : msfa (e, &kept, &x, error);
  g3n_kernels_pop_threads (prev);
  if (x.d != kept.d)
    map_free (&x);
  map_free (&kept);
  if (!out.d)
    return FALSE;
  write_outputs (e, &out, tower_out, embeds);
  map_free (&out);
  return TRUE;
}
