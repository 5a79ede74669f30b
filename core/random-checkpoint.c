/* random-checkpoint.c — a full-size Gemma 3n checkpoint with random weights (g3n_random_checkpoint_write).
 *
 * Benchmarks and memory checks need the real shapes (E2B is ~11 GB of BF16) but not the real values, which
 * cannot be redistributed or fetched offline. This writes config.json exactly as Google's release has it and
 * every tensor the three towers bind, under the release's names, as sharded safetensors. Values are seeded
 * normals scaled so activations stay finite: norm weights near 1, matrices ~ N(0, 1/fan_in).
 *
 * Memory stays flat whatever the size: each tensor is generated and written in fixed chunks, and each
 * tensor's values depend only on the seed and its name, so the result does not depend on shard layout.
 */
#include "model-config.h"
#include "vision-encoder.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

/* How a tensor's values are drawn. */
typedef enum {
  INIT_MATRIX, /* N(0, 1/fan_in): keeps each product's output at the input's scale */
  INIT_NORM,   /* 1 + N(0, 0.02): Gemma 3n's norms multiply by the weight itself */
  INIT_SMALL,  /* N(0, 0.02): biases, AltUp coefficients, per-dim scales (softplus around 0) */
  INIT_GAMMA,  /* 0.1 + N(0, 0.01): layer scales, so residual branches start damped */
} InitKind;

typedef struct {
  char *name;
  int ndim;
  int64_t shape[4];
  InitKind init;
  int shard; /* assigned when planning the files */
  guint64 offset;
} Spec;

static guint64
spec_numel (const Spec *s)
{
  guint64 n = 1;
  for (int i = 0; i < s->ndim; i++)
    n *= (guint64) s->shape[i];
  return n;
}

static void
spec_clear (gpointer p)
{
  g_free (((Spec *) p)->name);
}

static void G_GNUC_PRINTF (5, 6)
add (GArray *specs, InitKind init, int ndim, const int64_t *shape, const char *fmt, ...)
{
  Spec s = { .ndim = ndim, .init = init };
  va_list ap;
  va_start (ap, fmt);
  s.name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  memcpy (s.shape, shape, sizeof (int64_t) * ndim);
  g_array_append_val (specs, s);
}

#define SHAPE(...) (sizeof ((int64_t[]) { __VA_ARGS__ }) / sizeof (int64_t)), ((int64_t[]) { __VA_ARGS__ })
#define MAT(specs, r, c, ...) add ((specs), INIT_MATRIX, SHAPE ((r), (c)), __VA_ARGS__)
#define NORM(specs, n, ...) add ((specs), INIT_NORM, SHAPE (n), __VA_ARGS__)

/* ---------------------------------------------------------------- the tensors (mirrors core/model.c) */

static void
text_layer_specs (GArray *s, const G3nTextConfig *c, int i)
{
  const char *p = "model.language_model.layers";
  int H = c->hidden_size, hd = c->head_dim, A = c->altup_num_inputs, I = c->intermediate_size[i];
  int P = c->hidden_size_per_layer_input, R = c->laurel_rank;
  MAT (s, c->num_attention_heads * hd, H, "%s.%d.self_attn.q_proj.weight", p, i);
  /* KV-shared layers do not use these, but Google's checkpoints carry them for every layer. */
  MAT (s, c->num_key_value_heads * hd, H, "%s.%d.self_attn.k_proj.weight", p, i);
  MAT (s, c->num_key_value_heads * hd, H, "%s.%d.self_attn.v_proj.weight", p, i);
  MAT (s, H, c->num_attention_heads * hd, "%s.%d.self_attn.o_proj.weight", p, i);
  NORM (s, hd, "%s.%d.self_attn.q_norm.weight", p, i);
  NORM (s, hd, "%s.%d.self_attn.k_norm.weight", p, i);
  MAT (s, I, H, "%s.%d.mlp.gate_proj.weight", p, i);
  MAT (s, I, H, "%s.%d.mlp.up_proj.weight", p, i);
  MAT (s, H, I, "%s.%d.mlp.down_proj.weight", p, i);
  NORM (s, H, "%s.%d.input_layernorm.weight", p, i);
  NORM (s, H, "%s.%d.post_attention_layernorm.weight", p, i);
  NORM (s, H, "%s.%d.pre_feedforward_layernorm.weight", p, i);
  NORM (s, H, "%s.%d.post_feedforward_layernorm.weight", p, i);
  NORM (s, H, "%s.%d.altup.correct_output_scale", p, i);
  add (s, INIT_SMALL, SHAPE (A, A), "%s.%d.altup.correction_coefs.weight", p, i);
  add (s, INIT_SMALL, SHAPE (A * A, A), "%s.%d.altup.prediction_coefs.weight", p, i);
  NORM (s, H, "%s.%d.altup.router_norm.weight", p, i);
  MAT (s, A, H, "%s.%d.altup.modality_router.weight", p, i);
  MAT (s, R, H, "%s.%d.laurel.linear_left.weight", p, i);
  MAT (s, H, R, "%s.%d.laurel.linear_right.weight", p, i);
  NORM (s, H, "%s.%d.laurel.post_laurel_norm.weight", p, i);
  MAT (s, P, H, "%s.%d.per_layer_input_gate.weight", p, i);
  MAT (s, H, P, "%s.%d.per_layer_projection.weight", p, i);
  NORM (s, H, "%s.%d.post_per_layer_input_norm.weight", p, i);
}

static void
text_specs (GArray *s, const G3nTextConfig *c)
{
  const char *p = "model.language_model";
  int H = c->hidden_size, L = c->num_hidden_layers, P = c->hidden_size_per_layer_input;
  MAT (s, c->vocab_size, H, "%s.embed_tokens.weight", p);
  MAT (s, c->vocab_size_per_layer_input, L * P, "%s.embed_tokens_per_layer.weight", p);
  MAT (s, L * P, H, "%s.per_layer_model_projection.weight", p);
  NORM (s, P, "%s.per_layer_projection_norm.weight", p);
  NORM (s, H, "%s.norm.weight", p);
  for (int i = 0; i + 1 < c->altup_num_inputs; i++) {
    MAT (s, H, H, "%s.altup_projections.%d.weight", p, i);
    MAT (s, H, H, "%s.altup_unembed_projections.%d.weight", p, i);
  }
  for (int i = 0; i < L; i++)
    text_layer_specs (s, c, i);
}

/* embed_vision / embed_audio (core/model.c bind_embedder). */
static void
embedder_specs (GArray *s, const char *name, int vocab, int mm_hidden, int text_hidden)
{
  MAT (s, vocab, mm_hidden, "model.%s.embedding.weight", name);
  NORM (s, mm_hidden, "model.%s.hard_embedding_norm.weight", name);
  NORM (s, mm_hidden, "model.%s.soft_embedding_norm.weight", name);
  MAT (s, text_hidden, mm_hidden, "model.%s.embedding_projection.weight", name);
}

static void
conformer_ffw_specs (GArray *s, int l, const char *which, int D)
{
  const char *p = "model.audio_tower.conformer";
  NORM (s, D, "%s.%d.%s.pre_layer_norm.weight", p, l, which);
  NORM (s, D, "%s.%d.%s.post_layer_norm.weight", p, l, which);
  MAT (s, 4 * D, D, "%s.%d.%s.ffw_layer_1.weight", p, l, which);
  MAT (s, D, 4 * D, "%s.%d.%s.ffw_layer_2.weight", p, l, which);
}

/* Mirrors core/audio-encoder.c: the sub-sampling convs' frequency sizes decide input_proj_linear's width. */
static void
audio_specs (GArray *s, const G3nAudioConfig *c)
{
  const char *sscp = "model.audio_tower.subsample_conv_projection";
  int cin = 1, fin = c->input_feat_size;
  for (int i = 0; i < 2; i++) {
    int cout = c->sscp_conv_channel_size[i], kh = c->sscp_conv_kernel_size[i][0], kw = c->sscp_conv_kernel_size[i][1];
    add (s, INIT_MATRIX, SHAPE (cout, cin, kh, kw), "%s.conv_%d.conv.weight", sscp, i);
    NORM (s, cout, "%s.conv_%d.norm.weight", sscp, i);
    fin = (fin + 2 - kw) / c->sscp_conv_stride_size[i][1] + 1;
    cin = cout;
  }
  int D = c->hidden_size, hd = D / c->conf_num_attention_heads;
  MAT (s, D, fin * cin, "%s.input_proj_linear.weight", sscp);
  const char *p = "model.audio_tower.conformer";
  for (int l = 0; l < c->conf_num_hidden_layers; l++) {
    conformer_ffw_specs (s, l, "ffw_layer_start", D);
    conformer_ffw_specs (s, l, "ffw_layer_end", D);
    NORM (s, D, "%s.%d.attention.pre_attn_norm.weight", p, l);
    NORM (s, D, "%s.%d.attention.post_norm.weight", p, l);
    MAT (s, D, D, "%s.%d.attention.attn.q_proj.weight", p, l);
    MAT (s, D, D, "%s.%d.attention.attn.k_proj.weight", p, l);
    MAT (s, D, D, "%s.%d.attention.attn.v_proj.weight", p, l);
    MAT (s, D, D, "%s.%d.attention.post.weight", p, l);
    add (s, INIT_SMALL, SHAPE (hd), "%s.%d.attention.attn.per_dim_scale", p, l);
    MAT (s, D, D, "%s.%d.attention.attn.relative_position_embedding.pos_proj.weight", p, l);
    NORM (s, D, "%s.%d.lconv1d.pre_layer_norm.weight", p, l);
    NORM (s, D, "%s.%d.lconv1d.conv_norm.weight", p, l);
    MAT (s, 2 * D, D, "%s.%d.lconv1d.linear_start.weight", p, l);
    MAT (s, D, D, "%s.%d.lconv1d.linear_end.weight", p, l);
    add (s, INIT_MATRIX, SHAPE (D, 1, c->conf_conv_kernel_size), "%s.%d.lconv1d.depthwise_conv1d.weight", p, l);
    NORM (s, D, "%s.%d.norm.weight", p, l);
  }
}

/* The vision tower's tensors are taken from the encoder itself: a lookup that records each name and shape
 * the binder asks for, answering with a view of zero pages, so the MobileNetV5 table lives in one place. */
typedef struct {
  GArray *specs;
  G3nTensor *fakes; /* one per request, kept until the encoder is freed */
  guint n_fakes, cap;
  const void *zeros;
  gsize zeros_bytes;
} Recorder;

static const G3nTensor *
record_lookup (gpointer user_data, const char *name, int ndim, const int64_t *shape)
{
  Recorder *r = user_data;
  if (ndim < 1 || ndim > 4 || r->n_fakes == r->cap)
    return NULL; /* the binder reports it as missing */
  Spec probe = { .ndim = ndim };
  memcpy (probe.shape, shape, sizeof (int64_t) * ndim);
  guint64 n = spec_numel (&probe);
  if (n * 2 > r->zeros_bytes)
    return NULL;
  InitKind init = INIT_MATRIX;
  if (ndim == 1)
    init = g_str_has_suffix (name, ".gamma") ? INIT_GAMMA : g_str_has_suffix (name, ".bias") ? INIT_SMALL : INIT_NORM;
  add (r->specs, init, ndim, shape, "model.vision_tower.timm_model.%s", name);
  G3nTensor *t = &r->fakes[r->n_fakes++];
  *t = (G3nTensor) { .name = g_array_index (r->specs, Spec, r->specs->len - 1).name, .dtype = G3N_DTYPE_BF16,
                     .ndim = ndim, .data = r->zeros, .nbytes = n * 2, .path = "(recording)" };
  memcpy (t->shape, shape, sizeof (int64_t) * ndim);
  return t;
}

static gboolean
vision_specs (GArray *s, const G3nVisionConfig *c, GError **error)
{
  /* Anonymous zero pages: reading them costs address space, not memory. 1 GiB holds the largest tensor
   * (msfa.ffn.pw_exp: 14 MiB of BF16 at channel_multiplier 1, 0.9 GiB at the largest allowed, 8). */
  gsize bytes = (gsize) 1 << 30;
  void *zeros = mmap (NULL, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (zeros == MAP_FAILED) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "cannot map scratch memory: %s", g_strerror (errno));
    return FALSE;
  }
  Recorder r = { s, g_new0 (G3nTensor, 4096), 0, 4096, zeros, bytes };
  G3nVisionEncoder *enc = g3n_vision_encoder_new_custom (record_lookup, &r, "make-random-checkpoint",
                                                         c->channel_multiplier, error);
  g3n_vision_encoder_free (enc);
  g_free (r.fakes);
  munmap (zeros, bytes);
  return enc != NULL;
}

/* ---------------------------------------------------------------- values */

typedef struct {
  guint64 s;
} Rng;

/* splitmix64: tiny, seedable from any 64-bit value, good enough for weights. */
static guint64
rng_next (Rng *r)
{
  guint64 z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static guint16
to_bf16 (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return (guint16) ((u + 0x7FFF + ((u >> 16) & 1)) >> 16); /* round to nearest even */
}

/* n standard normals (Box-Muller, two per draw of 64 bits). */
static void
fill_normal (Rng *r, float *out, gsize n)
{
  for (gsize i = 0; i < n; i += 2) {
    guint64 b = rng_next (r);
    float u1 = ((float) (b >> 40) + 1.0f) * (1.0f / 16777216.0f); /* (0, 1] */
    float u2 = (float) (b & 0xFFFFFF) * (1.0f / 16777216.0f);
    float rad = sqrtf (-2.0f * logf (u1)), th = 6.2831853f * u2;
    out[i] = rad * cosf (th);
    if (i + 1 < n)
      out[i + 1] = rad * sinf (th);
  }
}

static void
init_params (const Spec *s, float *mean, float *std)
{
  switch (s->init) {
  case INIT_MATRIX: {
    double fan_in = (double) spec_numel (s) / (double) s->shape[0];
    *mean = 0, *std = (float) (1.0 / sqrt (MAX (fan_in, 1.0)));
    break;
  }
  case INIT_NORM: *mean = 1, *std = 0.02f; break;
  case INIT_SMALL: *mean = 0, *std = 0.02f; break;
  case INIT_GAMMA: *mean = 0.1f, *std = 0.01f; break;
  }
}

#define CHUNK (1 << 20)

/* Streams one tensor's BF16 values to f, CHUNK at a time. */
static gboolean
write_values (FILE *f, const Spec *s, guint64 seed, float *scratch, guint16 *bf, GError **error)
{
  Rng r = { seed ^ g_str_hash (s->name) * 0x2545f4914f6cdd1dull };
  float mean = 0, std = 0;
  init_params (s, &mean, &std);
  for (guint64 left = spec_numel (s); left > 0;) {
    gsize n = (gsize) MIN (left, (guint64) CHUNK);
    fill_normal (&r, scratch, n);
    for (gsize i = 0; i < n; i++)
      bf[i] = to_bf16 (mean + std * scratch[i]);
    if (fwrite (bf, 2, n, f) != n) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "writing '%s': %s", s->name, g_strerror (errno));
      return FALSE;
    }
    left -= n;
  }
  return TRUE;
}

/* ---------------------------------------------------------------- files */

/* Splits the tensors (in order) into shards of at most max_bytes (a bigger tensor gets one to itself). */
static int
plan_shards (GArray *specs, guint64 max_bytes, guint64 *total)
{
  int shard = 0;
  guint64 used = 0;
  *total = 0;
  for (guint i = 0; i < specs->len; i++) {
    Spec *s = &g_array_index (specs, Spec, i);
    guint64 bytes = spec_numel (s) * 2;
    if (used > 0 && used + bytes > max_bytes)
      shard++, used = 0;
    s->shard = shard, s->offset = used;
    used += bytes;
    *total += bytes;
  }
  return shard + 1;
}

static char *
shard_name (int i, int n)
{
  return g_strdup_printf ("model-%05d-of-%05d.safetensors", i + 1, n);
}

static void
append_shape (GString *j, const Spec *s)
{
  g_string_append_c (j, '[');
  for (int d = 0; d < s->ndim; d++)
    g_string_append_printf (j, "%s%" G_GINT64_FORMAT, d ? "," : "", s->shape[d]);
  g_string_append_c (j, ']');
}

/* The safetensors header of one shard, padded with spaces to a multiple of 8 as the reference writer does. */
static GString *
shard_header (GArray *specs, int shard)
{
  GString *j = g_string_new ("{\"__metadata__\":{\"format\":\"pt\"}");
  for (guint i = 0; i < specs->len; i++) {
    const Spec *s = &g_array_index (specs, Spec, i);
    if (s->shard != shard)
      continue;
    g_string_append_printf (j, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":", s->name);
    append_shape (j, s);
    g_string_append_printf (j, ",\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}", s->offset,
                            s->offset + spec_numel (s) * 2);
  }
  g_string_append_c (j, '}');
  while (j->len % 8)
    g_string_append_c (j, ' ');
  return j;
}

static gboolean
write_shard (const char *dir, GArray *specs, int shard, int n_shards, guint64 seed, GError **error)
{
  g_autofree char *name = shard_name (shard, n_shards);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  FILE *f = fopen (path, "wb");
  if (!f) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: %s", path, g_strerror (errno));
    return FALSE;
  }
  g_autoptr (GString) header = shard_header (specs, shard);
  guint64 len = GUINT64_TO_LE ((guint64) header->len);
  gboolean ok = fwrite (&len, 8, 1, f) == 1 && fwrite (header->str, 1, header->len, f) == header->len;
  if (!ok)
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: %s", path, g_strerror (errno));
  g_autofree float *scratch = g_new (float, CHUNK);
  g_autofree guint16 *bf = g_new (guint16, CHUNK);
  for (guint i = 0; ok && i < specs->len; i++) {
    const Spec *s = &g_array_index (specs, Spec, i);
    if (s->shard == shard)
      ok = write_values (f, s, seed, scratch, bf, error);
  }
  if (fclose (f) != 0 && ok) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: %s", path, g_strerror (errno));
    ok = FALSE;
  }
  return ok;
}

static gboolean
write_index (const char *dir, GArray *specs, int n_shards, guint64 total, GError **error)
{
  g_autoptr (GString) j = g_string_new (NULL);
  g_string_append_printf (j, "{\n  \"metadata\": {\n    \"total_size\": %" G_GUINT64_FORMAT "\n  },\n"
                          "  \"weight_map\": {\n", total);
  for (guint i = 0; i < specs->len; i++) {
    const Spec *s = &g_array_index (specs, Spec, i);
    g_autofree char *file = shard_name (s->shard, n_shards);
    g_string_append_printf (j, "    \"%s\": \"%s\"%s\n", s->name, file, i + 1 < specs->len ? "," : "");
  }
  g_string_append (j, "  }\n}\n");
  g_autofree char *path = g_build_filename (dir, "model.safetensors.index.json", NULL);
  return g_file_set_contents (path, j->str, (gssize) j->len, error);
}

static gint
spec_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (((const Spec *) a)->name, ((const Spec *) b)->name);
}

/* ---------------------------------------------------------------- config.json */

typedef struct {
  int layers, intermediate, kv_shared;
} Variant;

static void
append_list (GString *j, const char *key, int n, const char *(*item) (int i, gpointer), gpointer data)
{
  g_string_append_printf (j, "    \"%s\": [\n", key);
  for (int i = 0; i < n; i++)
    g_string_append_printf (j, "      %s%s\n", item (i, data), i + 1 < n ? "," : "");
  g_string_append (j, "    ],\n");
}

static const char *
sparsity_item (int i, gpointer unused)
{
  return i < 10 ? "0.95" : "0.0";
}

static const char *
layer_type_item (int i, gpointer unused)
{
  return (i + 1) % 5 == 0 ? "\"full_attention\"" : "\"sliding_attention\"";
}

/* config.json as google/gemma-3n-E2B-it and -E4B-it publish it (transformers 4.53 key forms). The two differ
 * only in depth, MLP width and the number of KV-shared layers (transformers' convert_gemma3n_weights.py). */
static char *
release_config (const Variant *v)
{
  GString *j = g_string_new ("{\n  \"architectures\": [\n    \"Gemma3nForConditionalGeneration\"\n  ],\n");
  g_string_append (j,
                   "  \"audio_config\": {\n"
                   "    \"conf_attention_chunk_size\": 12,\n"
                   "    \"conf_attention_context_left\": 13,\n"
                   "    \"conf_attention_context_right\": 0,\n"
                   "    \"conf_attention_invalid_logits_value\": -1000000000.0,\n"
                   "    \"conf_attention_logit_cap\": 50.0,\n"
                   "    \"conf_conv_kernel_size\": 5,\n"
                   "    \"conf_num_attention_heads\": 8,\n"
                   "    \"conf_num_hidden_layers\": 12,\n"
                   "    \"conf_positional_bias_size\": 256,\n"
                   "    \"conf_reduction_factor\": 4,\n"
                   "    \"conf_residual_weight\": 0.5,\n"
                   "    \"gradient_clipping\": 10000000000.0,\n"
                   "    \"hidden_size\": 1536,\n"
                   "    \"input_feat_size\": 128,\n"
                   "    \"model_type\": \"gemma3n_audio\",\n"
                   "    \"rms_norm_eps\": 1e-06,\n"
                   "    \"sscp_conv_channel_size\": [\n      128,\n      32\n    ],\n"
                   "    \"sscp_conv_eps\": 0.001,\n"
                   "    \"sscp_conv_group_norm_eps\": 0.001,\n"
                   "    \"sscp_conv_kernel_size\": [\n      [\n        3,\n        3\n      ],\n      [\n        3,\n"
                   "        3\n      ]\n    ],\n"
                   "    \"sscp_conv_stride_size\": [\n      [\n        2,\n        2\n      ],\n      [\n        2,\n"
                   "        2\n      ]\n    ],\n"
                   "    \"torch_dtype\": \"bfloat16\",\n"
                   "    \"vocab_offset\": 262272,\n"
                   "    \"vocab_size\": 128\n"
                   "  },\n"
                   "  \"audio_soft_tokens_per_image\": 188,\n"
                   "  \"audio_token_id\": 262273,\n"
                   "  \"boa_token_id\": 256000,\n"
                   "  \"boi_token_id\": 255999,\n"
                   "  \"eoa_token_id\": 262272,\n"
                   "  \"eoi_token_id\": 262144,\n"
                   "  \"eos_token_id\": [\n    1,\n    106\n  ],\n"
                   "  \"image_token_id\": 262145,\n"
                   "  \"initializer_range\": 0.02,\n"
                   "  \"model_type\": \"gemma3n\",\n"
                   "  \"text_config\": {\n");
  append_list (j, "activation_sparsity_pattern", v->layers, sparsity_item, NULL);
  g_string_append (j,
                   "    \"altup_active_idx\": 0,\n"
                   "    \"altup_coef_clip\": 120.0,\n"
                   "    \"altup_correct_scale\": true,\n"
                   "    \"altup_lr_multiplier\": 1.0,\n"
                   "    \"altup_num_inputs\": 4,\n"
                   "    \"attention_bias\": false,\n"
                   "    \"attention_dropout\": 0.0,\n"
                   "    \"final_logit_softcapping\": 30.0,\n"
                   "    \"head_dim\": 256,\n"
                   "    \"hidden_activation\": \"gelu_pytorch_tanh\",\n"
                   "    \"hidden_size\": 2048,\n"
                   "    \"hidden_size_per_layer_input\": 256,\n"
                   "    \"initializer_range\": 0.02,\n");
  /* Google's files give one int for every layer (transformers 5 writes a list; both load the same) */
  g_string_append_printf (j, "    \"intermediate_size\": %d,\n", v->intermediate);
  g_string_append (j, "    \"laurel_rank\": 64,\n");
  append_list (j, "layer_types", v->layers, layer_type_item, NULL);
  g_string_append_printf (j,
                          "    \"max_position_embeddings\": 32768,\n"
                          "    \"model_type\": \"gemma3n_text\",\n"
                          "    \"num_attention_heads\": 8,\n"
                          "    \"num_hidden_layers\": %d,\n"
                          "    \"num_key_value_heads\": 2,\n"
                          "    \"num_kv_shared_layers\": %d,\n"
                          "    \"query_pre_attn_scalar\": 256,\n"
                          "    \"rms_norm_eps\": 1e-06,\n"
                          "    \"rope_local_base_freq\": 10000.0,\n"
                          "    \"rope_scaling\": null,\n"
                          "    \"rope_theta\": 1000000.0,\n"
                          "    \"sliding_window\": 512,\n"
                          "    \"torch_dtype\": \"bfloat16\",\n"
                          "    \"use_cache\": true,\n"
                          "    \"vocab_size\": 262400,\n"
                          "    \"vocab_size_per_layer_input\": 262144\n"
                          "  },\n",
                          v->layers, v->kv_shared);
  g_string_append (j,
                   "  \"torch_dtype\": \"bfloat16\",\n"
                   "  \"transformers_version\": \"4.53.0.dev0\",\n"
                   "  \"vision_config\": {\n"
                   "    \"architecture\": \"mobilenetv5_300m_enc\",\n"
                   "    \"do_pooling\": true,\n"
                   "    \"hidden_size\": 2048,\n"
                   "    \"initializer_range\": 0.02,\n"
                   "    \"label_names\": [\n      \"LABEL_0\",\n      \"LABEL_1\"\n    ],\n"
                   "    \"model_args\": null,\n"
                   "    \"model_type\": \"gemma3n_vision\",\n"
                   "    \"num_classes\": 2,\n"
                   "    \"rms_norm_eps\": 1e-06,\n"
                   "    \"torch_dtype\": \"bfloat16\",\n"
                   "    \"vocab_offset\": 262144,\n"
                   "    \"vocab_size\": 128\n"
                   "  },\n"
                   "  \"vision_soft_tokens_per_image\": 256\n"
                   "}\n");
  return g_string_free (j, FALSE);
}

/* The processor files (feature extractor + image processor), so --audio/--image front ends find their settings.
 * The text is what transformers 5.12.1's Gemma3nProcessor.save_pretrained writes for the release's values (the
 * project's chat fixture): the same settings as the release's files, in that version's key set. */
static const char preprocessor_config[] =
  "{\n"
  "  \"dither\": 0.0,\n"
  "  \"do_convert_rgb\": true,\n"
  "  \"do_normalize\": false,\n"
  "  \"do_rescale\": true,\n"
  "  \"do_resize\": true,\n"
  "  \"feature_extractor_type\": \"Gemma3nAudioFeatureExtractor\",\n"
  "  \"feature_size\": 128,\n"
  "  \"fft_length\": 1024,\n"
  "  \"fft_overdrive\": true,\n"
  "  \"frame_length\": 512,\n"
  "  \"hop_length\": 160,\n"
  "  \"image_mean\": [\n"
  "    0.5,\n"
  "    0.5,\n"
  "    0.5\n"
  "  ],\n"
  "  \"image_processor_type\": \"SiglipImageProcessor\",\n"
  "  \"image_seq_length\": 256,\n"
  "  \"image_std\": [\n"
  "    0.5,\n"
  "    0.5,\n"
  "    0.5\n"
  "  ],\n"
  "  \"input_scale_factor\": 1.0,\n"
  "  \"max_frequency\": 7600.0,\n"
  "  \"mel_floor\": 1e-05,\n"
  "  \"min_frequency\": 125.0,\n"
  "  \"padding_side\": \"right\",\n"
  "  \"padding_value\": 0.0,\n"
  "  \"per_bin_mean\": null,\n"
  "  \"per_bin_stddev\": null,\n"
  "  \"preemphasis\": 0.97,\n"
  "  \"preemphasis_htk_flavor\": true,\n"
  "  \"resample\": 2,\n"
  "  \"rescale_factor\": 0.00392156862745098,\n"
  "  \"return_attention_mask\": true,\n"
  "  \"sampling_rate\": 16000,\n"
  "  \"size\": {\n"
  "    \"height\": 768,\n"
  "    \"width\": 768\n"
  "  }\n"
  "}\n";

static const char processor_config[] =
  "{\n"
  "  \"audio_seq_length\": 188,\n"
  "  \"feature_extractor\": {\n"
  "    \"dither\": 0.0,\n"
  "    \"feature_extractor_type\": \"Gemma3nAudioFeatureExtractor\",\n"
  "    \"feature_size\": 128,\n"
  "    \"fft_length\": 1024,\n"
  "    \"fft_overdrive\": true,\n"
  "    \"frame_length\": 512,\n"
  "    \"hop_length\": 160,\n"
  "    \"input_scale_factor\": 1.0,\n"
  "    \"max_frequency\": 7600.0,\n"
  "    \"mel_floor\": 1e-05,\n"
  "    \"min_frequency\": 125.0,\n"
  "    \"padding_side\": \"right\",\n"
  "    \"padding_value\": 0.0,\n"
  "    \"per_bin_mean\": null,\n"
  "    \"per_bin_stddev\": null,\n"
  "    \"preemphasis\": 0.97,\n"
  "    \"preemphasis_htk_flavor\": true,\n"
  "    \"return_attention_mask\": true,\n"
  "    \"sampling_rate\": 16000\n"
  "  },\n"
  "  \"image_processor\": {\n"
  "    \"do_convert_rgb\": true,\n"
  "    \"do_normalize\": false,\n"
  "    \"do_rescale\": true,\n"
  "    \"do_resize\": true,\n"
  "    \"image_mean\": [\n"
  "      0.5,\n"
  "      0.5,\n"
  "      0.5\n"
  "    ],\n"
  "    \"image_processor_type\": \"SiglipImageProcessor\",\n"
  "    \"image_seq_length\": 256,\n"
  "    \"image_std\": [\n"
  "      0.5,\n"
  "      0.5,\n"
  "      0.5\n"
  "    ],\n"
  "    \"resample\": 2,\n"
  "    \"rescale_factor\": 0.00392156862745098,\n"
  "    \"size\": {\n"
  "      \"height\": 768,\n"
  "      \"width\": 768\n"
  "    }\n"
  "  },\n"
  "  \"image_seq_length\": 256,\n"
  "  \"processor_class\": \"Gemma3nProcessor\"\n"
  "}\n";

static const char generation_config[] =
  "{\n  \"cache_implementation\": \"hybrid\",\n  \"do_sample\": true,\n  \"eos_token_id\": [\n    1,\n    106\n  ],\n"
  "  \"pad_token_id\": 0,\n  \"top_k\": 64,\n  \"top_p\": 0.95,\n  \"transformers_version\": \"4.53.0.dev0\"\n}\n";

char *
g3n_random_checkpoint_release_config (const char *name)
{
  static const Variant e2b = { 30, 8192, 10 }, e4b = { 35, 16384, 15 };
  if (name && g_ascii_strcasecmp (name, "e2b") == 0)
    return release_config (&e2b);
  if (name && g_ascii_strcasecmp (name, "e4b") == 0)
    return release_config (&e4b);
  return NULL;
}

static gboolean
write_text (const char *dir, const char *name, const char *text, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  return g_file_set_contents (path, text, -1, error);
}

/* ---------------------------------------------------------------- the checkpoint */

gboolean
g3n_random_checkpoint_write (const char *dir, const char *config_json, guint64 seed, guint64 max_shard_bytes,
                             G3nCheckpointProgressFunc progress, gpointer user_data, GError **error)
{
  g_return_val_if_fail (dir != NULL && config_json != NULL, FALSE);
  G3nConfig *c = g3n_config_parse (config_json, -1, "config.json", error);
  if (!c)
    return FALSE;
  GArray *specs = g_array_new (FALSE, TRUE, sizeof (Spec));
  g_array_set_clear_func (specs, spec_clear);
  text_specs (specs, &c->text);
  if (c->vision.present)
    embedder_specs (specs, "embed_vision", c->vision.vocab_size, c->vision.hidden_size, c->text.hidden_size);
  if (c->audio.present) {
    embedder_specs (specs, "embed_audio", c->audio.vocab_size, c->audio.hidden_size, c->text.hidden_size);
    audio_specs (specs, &c->audio);
  }
  gboolean ok = !c->vision.present || vision_specs (specs, &c->vision, error);
  g3n_config_free (c);
  g_array_sort (specs, spec_cmp);
  guint64 total = 0;
  int n_shards = ok ? plan_shards (specs, max_shard_bytes ? max_shard_bytes : 2000000000, &total) : 0;
  if (ok && progress)
    progress (0, n_shards, specs->len, total, user_data);
  ok = ok && g_mkdir_with_parents (dir, 0755) == 0;
  if (!ok && error && !*error)
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: cannot create folder: %s", dir, g_strerror (errno));
  ok = ok && write_text (dir, "config.json", config_json, error)
       && write_text (dir, "generation_config.json", generation_config, error)
       && write_text (dir, "preprocessor_config.json", preprocessor_config, error)
       && write_text (dir, "processor_config.json", processor_config, error);
  for (int i = 0; ok && i < n_shards; i++) {
    ok = write_shard (dir, specs, i, n_shards, seed, error);
    if (ok && progress)
      progress (i + 1, n_shards, specs->len, total, user_data);
  }
  ok = ok && write_index (dir, specs, n_shards, total, error);
  g_array_unref (specs);
  return ok;
}
