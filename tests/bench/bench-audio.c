/* bench-audio — speed and memory of the audio path at the real Gemma 3n (E2B/E4B) audio tower shapes.
 *
 *   bench-audio [SECONDS [MIN_ROWS [THREADS...]]]   (defaults: 10 s of audio, stream batching 12 rows,
 *                                                    threads 1 2)
 *
 * The tower is built in memory from config.json's defaults (hidden 1536, 12 conformer layers, 8 heads, sscp
 * channels [128, 32], text hidden 2048) with random BF16 weights scaled to keep activations alive. Reports
 * seconds of compute per second of audio for the features, the whole-clip encoder and a 100 ms-piece stream,
 * and the peak RSS.
 */
#include "audio-encoder.h"
#include "model-config.h"
#include "kernels/threadpool.h"
#include "kernels/half.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
  GHashTable *tensors; /* name → G3nTensor* */
  GPtrArray *buffers;
  guint64 rng;
} Weights;

static float
uniform (Weights *w)
{
  w->rng ^= w->rng << 13, w->rng ^= w->rng >> 7, w->rng ^= w->rng << 17;
  return (float) ((w->rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* A BF16 tensor of the given shape: values in ±scale around `center`. */
static G3nTensor *
add (Weights *w, const char *name, float center, float scale, int ndim, const int64_t *shape)
{
  G3nTensor *t = g_new0 (G3nTensor, 1);
  t->name = g_strdup (name);
  t->dtype = G3N_DTYPE_BF16;
  t->ndim = ndim;
  gsize n = 1;
  for (int i = 0; i < ndim; i++)
    n *= (gsize) (t->shape[i] = shape[i]);
  guint16 *data = g_new (guint16, n);
  for (gsize i = 0; i < n; i++)
    data[i] = g3n_f32_to_bf16 (center + scale * uniform (w));
  t->data = data;
  t->nbytes = n * 2;
  t->path = "(in memory)";
  g_ptr_array_add (w->buffers, data);
  g_hash_table_insert (w->tensors, (char *) t->name, t);
  return t;
}

/* add() for model.audio_tower.NAME, NAME printf-formatted. */
static void G_GNUC_PRINTF (6, 7)
add_tower (Weights *w, float center, float scale, int ndim, const int64_t *shape, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *rel = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_autofree char *name = g_strconcat ("model.audio_tower.", rel, NULL);
  add (w, name, center, scale, ndim, shape);
}

#define SHAPE(...) G_N_ELEMENTS (((int64_t[]) { __VA_ARGS__ })), ((int64_t[]) { __VA_ARGS__ })

static void
make_ffw (Weights *w, int l, const char *which, int D)
{
  add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.%s.pre_layer_norm.weight", l, which);
  add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.%s.post_layer_norm.weight", l, which);
  add_tower (w, 0.0f, 1.0f / sqrtf (D), SHAPE (4 * D, D), "conformer.%d.%s.ffw_layer_1.weight", l, which);
  add_tower (w, 0.0f, 1.0f / sqrtf (4 * D), SHAPE (D, 4 * D), "conformer.%d.%s.ffw_layer_2.weight", l, which);
}

static void
make_tower (Weights *w, const G3nAudioConfig *c)
{
  int D = c->hidden_size, C0 = c->sscp_conv_channel_size[0], C1 = c->sscp_conv_channel_size[1];
  int F0 = (c->input_feat_size + 2 - 3) / 2 + 1, F1 = (F0 + 2 - 3) / 2 + 1, hd = D / c->conf_num_attention_heads;
  const char *sscp = "subsample_conv_projection";
  add_tower (w, 0.0f, 1.0f / 3, SHAPE (C0, 1, 3, 3), "%s.conv_0.conv.weight", sscp);
  add_tower (w, 1.0f, 0.1f, SHAPE (C0), "%s.conv_0.norm.weight", sscp);
  add_tower (w, 0.0f, 1.0f / sqrtf (9 * C0), SHAPE (C1, C0, 3, 3), "%s.conv_1.conv.weight", sscp);
  add_tower (w, 1.0f, 0.1f, SHAPE (C1), "%s.conv_1.norm.weight", sscp);
  add_tower (w, 0.0f, 1.0f / sqrtf (F1 * C1), SHAPE (D, F1 * C1), "%s.input_proj_linear.weight", sscp);
  float s = 1.0f / sqrtf (D);
  for (int l = 0; l < c->conf_num_hidden_layers; l++) {
    make_ffw (w, l, "ffw_layer_start", D);
    make_ffw (w, l, "ffw_layer_end", D);
    add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.attention.pre_attn_norm.weight", l);
    add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.attention.post_norm.weight", l);
    add_tower (w, 0.0f, s, SHAPE (D, D), "conformer.%d.attention.attn.q_proj.weight", l);
    add_tower (w, 0.0f, s, SHAPE (D, D), "conformer.%d.attention.attn.k_proj.weight", l);
    add_tower (w, 0.0f, s, SHAPE (D, D), "conformer.%d.attention.attn.v_proj.weight", l);
    add_tower (w, 0.0f, s, SHAPE (D, D), "conformer.%d.attention.post.weight", l);
    add_tower (w, 0.0f, 0.5f, SHAPE (hd), "conformer.%d.attention.attn.per_dim_scale", l);
    add_tower (w, 0.0f, s, SHAPE (D, D), "conformer.%d.attention.attn.relative_position_embedding.pos_proj.weight", l);
    add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.lconv1d.pre_layer_norm.weight", l);
    add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.lconv1d.conv_norm.weight", l);
    add_tower (w, 0.0f, s, SHAPE (2 * D, D), "conformer.%d.lconv1d.linear_start.weight", l);
    add_tower (w, 0.0f, s, SHAPE (D, D), "conformer.%d.lconv1d.linear_end.weight", l);
    add_tower (w, 0.0f, 0.5f, SHAPE (D, 1, c->conf_conv_kernel_size), "conformer.%d.lconv1d.depthwise_conv1d.weight", l);
    add_tower (w, 1.0f, 0.1f, SHAPE (D), "conformer.%d.norm.weight", l);
  }
}

static const G3nTensor *
lookup (gpointer user_data, const char *name)
{
  return g_hash_table_lookup (((Weights *) user_data)->tensors, name);
}

static void
free_tensor (gpointer p)
{
  G3nTensor *t = p;
  g_free ((char *) t->name);
  g_free (t);
}

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

static long
peak_rss_mib (void)
{
  struct rusage u;
  getrusage (RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

static void
count_tokens (const float *tower, const guint8 *mask, const float *embeds, int first, int n, gpointer user_data)
{
  *(int *) user_data = first + n;
}

int
main (int argc, char **argv)
{
  double seconds = argc > 1 ? atof (argv[1]) : 10.0;
  if (!(seconds > 0 && seconds <= 30)) {
    g_printerr ("usage: %s [SECONDS (0..30] [MIN_ROWS [THREADS...]]]\n", argv[0]);
    return 2;
  }
  g_autoptr (GError) e = NULL;
  const char *json = "{\"text_config\": {\"hidden_size\": 2048}, \"audio_config\": {}}";
  G3nConfig *cfg = g3n_config_parse (json, -1, "(bench config)", &e);
  if (!cfg) {
    g_printerr ("config: %s\n", e->message);
    return 1;
  }
  const G3nAudioConfig *c = &cfg->audio;
  int H = cfg->text.hidden_size;
  Weights w = { g_hash_table_new_full (g_str_hash, g_str_equal, NULL, free_tensor),
                g_ptr_array_new_with_free_func (g_free), 0x9e3779b97f4a7c15ull };
  double t0 = now ();
  make_tower (&w, c);
  /* embed_audio in memory: fp32 norms, BF16 matrices. */
  float *ones = g_new (float, c->hidden_size);
  for (int i = 0; i < c->hidden_size; i++)
    ones[i] = 1.0f;
  const G3nTensor *emb = add (&w, "embed_audio.embedding", 0, 1, 2, (int64_t[]) { c->vocab_size, c->hidden_size });
  const G3nTensor *proj = add (&w, "embed_audio.embedding_projection", 0, 1.0f / sqrtf (c->hidden_size), 2,
                               (int64_t[]) { H, c->hidden_size });
  G3nEmbedderWeights embed = { TRUE, g3n_matrix_from_tensor (emb), ones, ones, g3n_matrix_from_tensor (proj) };
  gsize n_params = 0;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init (&it, w.tensors);
  while (g_hash_table_iter_next (&it, NULL, &v))
    n_params += (gsize) g3n_tensor_numel (v);
  G3nAudioEncoder *enc = g3n_audio_encoder_new_custom (cfg, "(in memory)", lookup, &w, &embed, &e);
  G3nAudioFeatures *fx = enc ? g3n_audio_features_new (NULL, &e) : NULL;
  if (!fx) {
    g_printerr ("%s\n", e->message);
    return 1;
  }
  printf ("audio tower: hidden %d, %d conformer layers, %d heads, sscp channels [%d, %d], text hidden %d; "
          "%.1fM parameters (BF16), built in %.1f s\n",
          c->hidden_size, c->conf_num_hidden_layers, c->conf_num_attention_heads, c->sscp_conv_channel_size[0],
          c->sscp_conv_channel_size[1], H, n_params / 1e6, now () - t0);

  /* Speech-like test signal: a gliding harmonic tone with noise and syllable-rate amplitude modulation. */
  gsize n = (gsize) (seconds * 16000);
  float *pcm = g_new (float, n);
  double phase = 0;
  for (gsize i = 0; i < n; i++) {
    double t = i / 16000.0, f0 = 140 + 40 * sin (2 * G_PI * 0.7 * t);
    phase += 2 * G_PI * f0 / 16000.0;
    double s = 0;
    for (int h = 1; h <= 8; h++)
      s += sin (h * phase) / h;
    pcm[i] = (float) (0.1 * (0.6 + 0.4 * sin (2 * G_PI * 4 * t)) * s + 0.01 * uniform (&w));
  }
  int T = g3n_audio_features_n_frames (fx, n), F = g3n_audio_features_size (fx), n_sub, n_tok;
  g3n_audio_encoder_sizes (enc, T, &n_sub, &n_tok);
  float *feat = g_new (float, (gsize) T * F), *tower = g_new (float, (gsize) n_tok * c->hidden_size);
  float *embeds = g_new (float, (gsize) n_tok * H);
  guint8 *mask = g_new (guint8, T), *tmask = g_new (guint8, n_tok);
  G3nAudioEncodeOutputs out = { NULL, NULL, tower, tmask, embeds };
  printf ("audio: %.1f s -> %d frames -> %d tokens\n", seconds, T, n_tok);
  printf ("threads  features(s/s)  encoder(s/s)  stream-100ms(s/s)  peak RSS\n");

  int min_rows = argc > 2 ? atoi (argv[2]) : 0;
  int default_threads[] = { 1, 2 };
  int n_runs = argc > 3 ? argc - 3 : 2;
  for (int r = 0; r < n_runs; r++) {
    int threads = argc > 3 ? atoi (argv[3 + r]) : default_threads[r];
    g3n_kernels_push_threads (threads);
    double a = now ();
    gboolean ok = g3n_audio_features_compute (fx, pcm, n, feat, mask, &e);
    double b = now ();
    ok = ok && g3n_audio_encode (enc, NULL, feat, T, F, mask, &out, &e);
    double d = now ();
    int tokens = 0;
    G3nAudioStream *s = ok ? g3n_audio_stream_new (fx, enc, NULL, count_tokens, &tokens, &e) : NULL;
    ok = s != NULL;
    if (ok && min_rows > 0)
      g3n_audio_stream_set_min_rows (s, min_rows);
    for (gsize i = 0; ok && i < n; i += 1600)
      ok = g3n_audio_stream_push (s, pcm + i, MIN (1600, n - i), &e);
    ok = ok && g3n_audio_stream_finish (s, &e);
    double f = now ();
    g3n_audio_stream_free (s);
    if (!ok) {
      g_printerr ("%s\n", e->message);
      return 1;
    }
    double rms = 0;
    for (int i = 0; i < n_tok * c->hidden_size; i++)
      rms += (double) tower[i] * tower[i];
    printf ("%7d  %13.4f  %12.4f  %17.4f  %5ld MiB   (tower rms %.3f, %d streamed tokens)\n", threads,
            (b - a) / seconds, (d - b) / seconds, (f - d) / seconds, peak_rss_mib (),
            sqrt (rms / (n_tok * c->hidden_size)), tokens);
  }
  g3n_audio_encoder_free (enc);
  g3n_audio_features_free (fx);
  g_hash_table_unref (w.tensors);
  g_ptr_array_unref (w.buffers);
  g_free (ones);
  g_free (pcm), g_free (feat), g_free (tower), g_free (embeds), g_free (mask), g_free (tmask);
  g3n_config_free (cfg);
  return 0;
}
