/* test-audio — audio features and audio tower against the reference's goldens, streaming against whole clips,
 * and bad input.
 *
 *   test-audio MEL_GOLDEN MODEL_DIR MODEL_GOLDEN
 *
 * MEL_GOLDEN: tests/data/mel/golden.safetensors (its folder's preprocessor_config.json configures the
 * extractor). MODEL_DIR: a Gemma 3n checkpoint with an audio tower (tests/data/mm-tiny); MODEL_GOLDEN its
 * golden.safetensors. Tolerances are the fixtures' MANIFEST ones. Prints "N passed, M failed".
 */
#include "audio-encoder.h"
#include "model.h"
#include "safetensors.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
  int passed, failed;
} Results;

static void G_GNUC_PRINTF (3, 4)
check (Results *r, gboolean ok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("%s %s\n", ok ? "PASS" : "FAIL", msg);
  if (ok)
    r->passed++;
  else
    r->failed++;
}

static const G3nTensor *
golden (G3nSafetensors *st, const char *name)
{
  const G3nTensor *t = g3n_safetensors_find (st, name);
  if (!t)
    g_printerr ("golden tensor '%s' missing\n", name);
  return t;
}

static double
max_abs (const float *x, gsize n)
{
  double m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, fabs (x[i]));
  return m;
}

/* max|a - b| / max|b| */
static double
rel_diff (const float *a, const float *b, gsize n)
{
  double d = 0;
  for (gsize i = 0; i < n; i++)
    d = MAX (d, fabs ((double) a[i] - b[i]));
  double m = max_abs (b, n);
  return m > 0 ? d / m : d;
}

static void
check_close (Results *r, const char *what, const float *ours, const G3nTensor *g, gsize n, double tol)
{
  if (!g || (gsize) g3n_tensor_numel (g) != n) {
    check (r, FALSE, "%s: golden missing or %" G_GSIZE_FORMAT " values expected", what, n);
    return;
  }
  double d = rel_diff (ours, g->data, n);
  check (r, d <= tol, "%s: max|diff|/max|golden| = %.3g (tol %.0e)", what, d, tol);
}

static void
check_mask (Results *r, const char *what, const guint8 *ours, const G3nTensor *g, gsize n)
{
  gboolean ok = g && (gsize) g3n_tensor_numel (g) == n && memcmp (ours, g->data, n) == 0;
  check (r, ok, "%s: exact", what);
}

/* The mel MANIFEST's check: linear domain within 1e-5 of the peak, log domain within 5e-3 where mel > 1e-3. */
static void
check_mel (Results *r, const char *what, const float *ours, const float *gold, gsize n)
{
  double peak = 0, lin = 0, lg = 0;
  for (gsize i = 0; i < n; i++) {
    peak = MAX (peak, exp (gold[i]));
    lin = MAX (lin, fabs (exp (ours[i]) - exp (gold[i])));
    if (gold[i] > -6.9)
      lg = MAX (lg, fabs (ours[i] - gold[i]));
  }
  check (r, lin <= 1e-5 * peak && lg <= 5e-3, "%s: linear %.3g of peak, log %.3g", what, lin / peak, lg);
}

/* ---------------------------------------------------------------- features */

static const char *const mel_cases[] = {
  "speech_natural", "speech_0p37s", "speech_1s", "speech_7p3s", "speech_640_samples",
  "sine_440hz_1s", "chirp_100_7900hz_1p5s", "silence_1s", "white_noise_1s",
};

static void
test_mel (Results *r, G3nSafetensors *st, const G3nAudioFeatures *fx)
{
  int F = g3n_audio_features_size (fx);
  for (guint c = 0; c < G_N_ELEMENTS (mel_cases); c++) {
    g_autofree char *wn = g_strdup_printf ("%s_waveform", mel_cases[c]);
    g_autofree char *fn = g_strdup_printf ("%s_features", mel_cases[c]);
    g_autofree char *mn = g_strdup_printf ("%s_mask", mel_cases[c]);
    const G3nTensor *w = golden (st, wn), *gf = golden (st, fn), *gm = golden (st, mn);
    if (!w || !gf || !gm) {
      check (r, FALSE, "mel %s: golden tensors", mel_cases[c]);
      continue;
    }
    int T = g3n_audio_features_n_frames (fx, w->shape[0]);
    check (r, T == gf->shape[1], "mel %s: %d frames (golden %d)", mel_cases[c], T, (int) gf->shape[1]);
    if (T != gf->shape[1])
      continue;
    g_autofree float *f = g_new (float, (gsize) T * F + 1);
    g_autofree guint8 *m = g_new (guint8, T + 1);
    g_autoptr (GError) e = NULL;
    if (!g3n_audio_features_compute (fx, w->data, w->shape[0], f, m, &e)) {
      check (r, FALSE, "mel %s: %s", mel_cases[c], e->message);
      continue;
    }
    g_autofree char *what = g_strdup_printf ("mel %s features", mel_cases[c]);
    check_mel (r, what, f, gf->data, (gsize) T * F);
    g_autofree char *mwhat = g_strdup_printf ("mel %s mask", mel_cases[c]);
    check_mask (r, mwhat, m, gm, T);
  }
  /* Per-bin normalisation: (log-mel - mean) / stddev of the plain features. */
  const G3nTensor *w = golden (st, "speech_1s_waveform");
  if (w) {
    G3nAudioFeatureParams p = g3n_audio_feature_default_params ();
    double mean[4096], sd[4096];
    for (int i = 0; i < F; i++)
      mean[i] = -5.0 + 0.01 * i, sd[i] = 2.0 + 0.001 * i;
    p.feature_size = F, p.per_bin_mean = mean, p.per_bin_stddev = sd;
    G3nAudioFeatures *norm = g3n_audio_features_new (&p, NULL);
    int T = g3n_audio_features_n_frames (fx, w->shape[0]);
    g_autofree float *a = g_new (float, (gsize) T * F), *b = g_new (float, (gsize) T * F);
    gboolean ok = norm && g3n_audio_features_compute (fx, w->data, w->shape[0], a, NULL, NULL)
                  && g3n_audio_features_compute (norm, w->data, w->shape[0], b, NULL, NULL);
    double d = 0;
    for (int i = 0; ok && i < T * F; i++)
      d = MAX (d, fabs (b[i] - (a[i] - mean[i % F]) / sd[i % F]));
    check (r, ok && d < 1e-5, "per-bin mean/stddev applied (max diff %.3g)", d);
    g3n_audio_features_free (norm);
  }

  /* The padded batch. */
  const float *pcm[3];
  gsize n[3];
  for (int b = 0; b < 3; b++) {
    g_autofree char *name = g_strdup_printf ("batch3_waveform_%d", b);
    const G3nTensor *t = golden (st, name);
    if (!t)
      return;
    pcm[b] = t->data, n[b] = t->shape[0];
  }
  const G3nTensor *gf = golden (st, "batch3_features"), *gm = golden (st, "batch3_mask");
  int T = 0;
  g3n_audio_features_compute_batch (fx, pcm, n, 3, NULL, NULL, &T, NULL);
  if (!gf || !gm || T != gf->shape[1]) {
    check (r, FALSE, "mel batch3: %d frames", T);
    return;
  }
  g_autofree float *f = g_new (float, (gsize) 3 * T * F);
  g_autofree guint8 *m = g_new (guint8, 3 * T);
  g_autoptr (GError) e = NULL;
  gboolean ok = g3n_audio_features_compute_batch (fx, pcm, n, 3, f, m, &T, &e);
  check (r, ok, "mel batch3 computed%s%s", e ? ": " : "", e ? e->message : "");
  if (!ok)
    return;
  check_mel (r, "mel batch3 features", f, gf->data, (gsize) 3 * T * F);
  check_mask (r, "mel batch3 mask", m, gm, (gsize) 3 * T);
}

/* ---------------------------------------------------------------- tower */

typedef struct {
  int n_sub, n_tok;
  float *sscp, *blocks, *tower, *embeds;
  guint8 *tmask;
} Encoded;

static void
encoded_clear (Encoded *o)
{
  g_free (o->sscp);
  g_free (o->blocks);
  g_free (o->tower);
  g_free (o->embeds);
  g_free (o->tmask);
}

static gboolean
encode (const G3nAudioEncoder *enc, const float *f, const guint8 *mask, int T, Encoded *o, GError **error)
{
  int D = g3n_audio_encoder_n_hidden (enc), H = g3n_audio_encoder_n_embd (enc), L = g3n_audio_encoder_n_layers (enc);
  memset (o, 0, sizeof *o);
  g3n_audio_encoder_sizes (enc, T, &o->n_sub, &o->n_tok);
  o->sscp = g_new (float, (gsize) o->n_sub * D + 1);
  o->blocks = g_new (float, (gsize) L * o->n_sub * D + 1);
  o->tower = g_new (float, (gsize) o->n_tok * D + 1);
  o->embeds = g_new (float, (gsize) o->n_tok * H + 1);
  o->tmask = g_new (guint8, o->n_tok + 1);
  G3nAudioEncodeOutputs out = { o->sscp, o->blocks, o->tower, o->tmask, o->embeds };
  return g3n_audio_encode (enc, NULL, f, T, g3n_audio_encoder_n_features (enc), mask, &out, error);
}

static void
test_tower (Results *r, G3nSafetensors *st, const G3nAudioFeatures *fx, const G3nAudioEncoder *enc)
{
  int F = g3n_audio_features_size (fx), D = g3n_audio_encoder_n_hidden (enc), H = g3n_audio_encoder_n_embd (enc);
  int L = g3n_audio_encoder_n_layers (enc);
  const G3nTensor *w = golden (st, "audio_waveform"), *gf = golden (st, "input_features");
  const G3nTensor *gm = golden (st, "input_features_mask");
  if (!w || !gf || !gm) {
    check (r, FALSE, "mm golden audio tensors");
    return;
  }
  int T = g3n_audio_features_n_frames (fx, w->shape[0]);
  g_autofree float *f = g_new (float, (gsize) T * F);
  g_autofree guint8 *m = g_new (guint8, T);
  g_autoptr (GError) e = NULL;
  check (r, T == gf->shape[1] && g3n_audio_features_compute (fx, w->data, w->shape[0], f, m, &e),
         "mm input_features: %d frames", T);
  if (T != gf->shape[1])
    return;
  check_mel (r, "mm input_features", f, gf->data, (gsize) T * F);
  check_mask (r, "mm input_features_mask", m, gm, T);

  /* The tower on the golden features (isolates the tower), then on ours (the whole chain). */
  for (int pass = 0; pass < 2; pass++) {
    const char *src = pass ? "our features" : "golden features";
    Encoded o;
    if (!encode (enc, pass ? f : gf->data, gm->data, T, &o, &e)) {
      check (r, FALSE, "encode (%s): %s", src, e->message);
      return;
    }
    g_autofree char *a = g_strdup_printf ("audio_sscp_output (%s)", src);
    check_close (r, a, o.sscp, golden (st, "audio_sscp_output"), (gsize) o.n_sub * D, 1e-4);
    g_autofree char *b = g_strdup_printf ("audio_conformer_block_outputs (%s)", src);
    check_close (r, b, o.blocks, golden (st, "audio_conformer_block_outputs"), (gsize) L * o.n_sub * D, 1e-4);
    g_autofree char *c = g_strdup_printf ("audio_tower_output (%s)", src);
    check_close (r, c, o.tower, golden (st, "audio_tower_output"), (gsize) o.n_tok * D, 1e-4);
    g_autofree char *d = g_strdup_printf ("audio_tower_mask (%s)", src);
    check_mask (r, d, o.tmask, golden (st, "audio_tower_mask"), o.n_tok);
    g_autofree char *ee = g_strdup_printf ("audio_embeds (%s)", src);
    check_close (r, ee, o.embeds, golden (st, "audio_embeds"), (gsize) o.n_tok * H, 1e-4);
    int S = g3n_audio_encoder_n_soft_tokens (enc);
    g_autofree float *padded = g_new (float, (gsize) S * H);
    gboolean ok = g3n_audio_embed_padded (enc, o.embeds, o.tmask, o.n_tok, padded, &e);
    g_autofree char *p = g_strdup_printf ("audio_embeds_padded (%s)", src);
    if (ok)
      check_close (r, p, padded, golden (st, "audio_embeds_padded"), (gsize) S * H, 1e-4);
    else
      check (r, FALSE, "%s: %s", p, e->message);
    g_clear_error (&e);
    encoded_clear (&o);
  }

  /* The padded two-clip batch: features from the processor's padding, then each clip through the tower. */
  const G3nTensor *w1 = golden (st, "audio_batch_waveform_1");
  const G3nTensor *bf = golden (st, "audio_batch_input_features"), *bm = golden (st, "audio_batch_input_features_mask");
  const G3nTensor *bt = golden (st, "audio_batch_tower_output"), *btm = golden (st, "audio_batch_tower_mask");
  const G3nTensor *be = golden (st, "audio_batch_embeds");
  if (!w1 || !bf || !bm || !bt || !btm || !be) {
    check (r, FALSE, "mm golden audio batch tensors");
    return;
  }
  const float *pcm[2] = { w->data, w1->data };
  gsize n[2] = { w->shape[0], w1->shape[0] };
  int TB = 0;
  g3n_audio_features_compute_batch (fx, pcm, n, 2, NULL, NULL, &TB, NULL);
  g_autofree float *fb = g_new (float, (gsize) 2 * TB * F);
  g_autofree guint8 *mb = g_new (guint8, 2 * TB);
  if (TB != bf->shape[1] || !g3n_audio_features_compute_batch (fx, pcm, n, 2, fb, mb, &TB, &e)) {
    check (r, FALSE, "mm audio batch features: %d frames", TB);
    return;
  }
  check_mel (r, "audio_batch_input_features", fb, bf->data, (gsize) 2 * TB * F);
  check_mask (r, "audio_batch_input_features_mask", mb, bm, (gsize) 2 * TB);
  int N = bt->shape[1];
  g_autofree float *tower = g_new0 (float, (gsize) 2 * N * D);
  g_autofree float *emb = g_new0 (float, (gsize) 2 * N * H);
  g_autofree guint8 *tm = g_new0 (guint8, 2 * N);
  for (int b = 0; b < 2; b++) {
    Encoded o;
    if (!encode (enc, (const float *) bf->data + (gsize) b * TB * F, (const guint8 *) bm->data + b * TB, TB, &o,
                 &e) || o.n_tok != N) {
      check (r, FALSE, "encode batch clip %d: %s", b, e ? e->message : "token count");
      return;
    }
    memcpy (tower + (gsize) b * N * D, o.tower, sizeof (float) * N * D);
    memcpy (emb + (gsize) b * N * H, o.embeds, sizeof (float) * N * H);
    memcpy (tm + b * N, o.tmask, N);
    encoded_clear (&o);
  }
  check_close (r, "audio_batch_tower_output", tower, bt, (gsize) 2 * N * D, 1e-4);
  check_mask (r, "audio_batch_tower_mask", tm, btm, (gsize) 2 * N);
  check_close (r, "audio_batch_embeds", emb, be, (gsize) 2 * N * H, 1e-4);
}

/* ---------------------------------------------------------------- streaming */

typedef struct {
  GArray *feat, *fmask, *tower, *tmask, *embeds;
  int next_frame, next_token;
  gboolean order_ok;
} Collected;

static void
collect_frames (const float *features, const guint8 *mask, int first, int n, gpointer user_data)
{
  Collected *c = user_data;
  c->order_ok &= first == c->next_frame;
  c->next_frame = first + n;
  g_array_append_vals (c->feat, features, (guint) n * 128);
  g_array_append_vals (c->fmask, mask, n);
}

static void
collect_tokens (const float *tower, const guint8 *mask, const float *embeds, int first, int n, gpointer user_data)
{
  Collected *c = user_data;
  c->order_ok &= first == c->next_token;
  c->next_token = first + n;
  g_array_append_vals (c->tower, tower, (guint) n * 64);  /* mm-tiny sizes; checked by the caller */
  g_array_append_vals (c->tmask, mask, n);
  if (embeds)
    g_array_append_vals (c->embeds, embeds, (guint) n * 64);
}

static void
collected_init (Collected *c)
{
  c->feat = g_array_new (FALSE, FALSE, sizeof (float));
  c->fmask = g_array_new (FALSE, FALSE, 1);
  c->tower = g_array_new (FALSE, FALSE, sizeof (float));
  c->tmask = g_array_new (FALSE, FALSE, 1);
  c->embeds = g_array_new (FALSE, FALSE, sizeof (float));
  c->next_frame = c->next_token = 0;
  c->order_ok = TRUE;
}

static void
collected_clear (Collected *c)
{
  g_array_unref (c->feat);
  g_array_unref (c->fmask);
  g_array_unref (c->tower);
  g_array_unref (c->tmask);
  g_array_unref (c->embeds);
}

static void
test_stream (Results *r, G3nSafetensors *st, const G3nAudioFeatures *fx, const G3nAudioEncoder *enc)
{
  if (g3n_audio_features_size (fx) != 128 || g3n_audio_encoder_n_hidden (enc) != 64
      || g3n_audio_encoder_n_embd (enc) != 64) {
    check (r, FALSE, "stream test expects mm-tiny sizes");
    return;
  }
  const G3nTensor *w = golden (st, "audio_waveform");
  if (!w)
    return;
  gsize ns = w->shape[0];
  int T = g3n_audio_features_n_frames (fx, ns), F = 128, D = 64;
  g_autofree float *f = g_new (float, (gsize) T * F);
  g_autofree guint8 *m = g_new (guint8, T);
  g_autoptr (GError) e = NULL;
  Encoded whole;
  if (!g3n_audio_features_compute (fx, w->data, ns, f, m, &e) || !encode (enc, f, m, T, &whole, &e)) {
    check (r, FALSE, "stream reference: %s", e->message);
    return;
  }
  static const gsize pieces[] = { 1, 160, 1000, 16000, 7 };
  for (guint p = 0; p < G_N_ELEMENTS (pieces); p++) {
    Collected c;
    collected_init (&c);
    G3nAudioStream *s = g3n_audio_stream_new (fx, enc, collect_frames, collect_tokens, &c, &e);
    gboolean ok = s != NULL;
    if (ok && pieces[p] % 2)
      g3n_audio_stream_set_min_rows (s, 1);  /* odd piece sizes also check the lowest-latency batching */
    int tokens_before_finish = 0;
    for (gsize i = 0; ok && i < ns; i += pieces[p])
      ok = g3n_audio_stream_push (s, (const float *) w->data + i, MIN (pieces[p], ns - i), &e);
    tokens_before_finish = c.next_token;
    ok = ok && g3n_audio_stream_finish (s, &e);
    check (r, ok && c.order_ok, "stream pieces of %" G_GSIZE_FORMAT ": ran, in order%s%s", pieces[p],
           e ? ": " : "", e ? e->message : "");
    if (ok) {
      gboolean same_shape = (int) c.fmask->len == T && (int) c.tmask->len == whole.n_tok;
      check (r, same_shape, "stream pieces of %" G_GSIZE_FORMAT ": %u frames, %u tokens (whole: %d, %d)", pieces[p],
             c.fmask->len, c.tmask->len, T, whole.n_tok);
      if (same_shape) {
        double df = rel_diff ((float *) c.feat->data, f, (gsize) T * F);
        check (r, df == 0 && memcmp (c.fmask->data, m, T) == 0,
               "stream pieces of %" G_GSIZE_FORMAT ": features identical to whole clip (%.3g)", pieces[p], df);
        double dt = rel_diff ((float *) c.tower->data, whole.tower, (gsize) whole.n_tok * D);
        double de = rel_diff ((float *) c.embeds->data, whole.embeds, (gsize) whole.n_tok * D);
        check (r, dt <= 1e-5 && de <= 1e-5 && memcmp (c.tmask->data, whole.tmask, whole.n_tok) == 0,
               "stream pieces of %" G_GSIZE_FORMAT ": tokens equal whole clip (tower %.3g, embeds %.3g); %d of %d "
               "final before finish",
               pieces[p], dt, de, tokens_before_finish, whole.n_tok);
      }
    }
    g_clear_error (&e);
    collected_clear (&c);
    g3n_audio_stream_free (s);
  }
  encoded_clear (&whole);
}

/* Frames made by a separate feature stream (the plugin's mel element) and pushed into an audio stream give
 * the same bits as the audio stream fed the PCM itself. */
typedef struct {
  G3nAudioStream *to;
  gboolean ok;
  GError *error;
} FrameFeed;

static void
feed_frames (const float *features, const guint8 *mask, int first, int n, gpointer user_data)
{
  (void) first;
  FrameFeed *f = user_data;
  f->ok = f->ok && g3n_audio_stream_push_features (f->to, features, mask, n, &f->error);
}

static void
test_stream_frames (Results *r, G3nSafetensors *st, const G3nAudioFeatures *fx, const G3nAudioEncoder *enc)
{
  const G3nTensor *w = golden (st, "audio_waveform");
  if (!w)
    return;
  gsize ns = w->shape[0];
  g_autoptr (GError) e = NULL;
  Collected by_pcm, by_frames;
  collected_init (&by_pcm);
  collected_init (&by_frames);
  G3nAudioStream *a = g3n_audio_stream_new (fx, enc, NULL, collect_tokens, &by_pcm, &e);
  G3nAudioStream *b = g3n_audio_stream_new (fx, enc, NULL, collect_tokens, &by_frames, &e);
  FrameFeed feed = { b, TRUE, NULL };
  G3nAudioFeatureStream *fs = g3n_audio_feature_stream_new (fx, feed_frames, &feed);
  gboolean ok = a && b && fs;
  for (gsize i = 0; ok && i < ns; i += 1000) {
    gsize n = MIN (1000, ns - i);
    ok = g3n_audio_stream_push (a, (const float *) w->data + i, n, &e)
         && g3n_audio_feature_stream_push (fs, (const float *) w->data + i, n, &e);
  }
  ok = ok && g3n_audio_stream_finish (a, &e) && g3n_audio_feature_stream_finish (fs, &e) && feed.ok
       && g3n_audio_stream_finish (b, &e);
  check (r, ok && by_frames.order_ok && by_pcm.tmask->len > 0 && by_frames.tmask->len == by_pcm.tmask->len
             && memcmp (by_frames.tower->data, by_pcm.tower->data, by_pcm.tower->len * sizeof (float)) == 0
             && memcmp (by_frames.embeds->data, by_pcm.embeds->data, by_pcm.embeds->len * sizeof (float)) == 0
             && memcmp (by_frames.tmask->data, by_pcm.tmask->data, by_pcm.tmask->len) == 0,
         "stream fed feature frames from a separate feature stream: the same %u tokens, bitwise, as fed the "
         "PCM%s%s", by_pcm.tmask->len, e || feed.error ? ": " : "", e ? e->message : feed.error ? feed.error->message : "");
  g_clear_error (&feed.error);
  g_clear_error (&e);
  /* A clip fed PCM refuses frames; a non-finite frame is refused; after finish the stream takes a new clip. */
  float frame[128] = { 0 };
  ok = g3n_audio_stream_push (a, (const float *) w->data, 1000, NULL);
  gboolean mixed = g3n_audio_stream_push_features (a, frame, NULL, 1, &e);
  check (r, ok && !mixed && e && strstr (e->message, "PCM"), "frames into a clip fed PCM refused: %s",
         e ? e->message : "accepted");
  g_clear_error (&e);
  g3n_audio_stream_reset (a);
  frame[5] = NAN;
  ok = g3n_audio_stream_push_features (a, frame, NULL, 1, &e);
  check (r, !ok && e && strstr (e->message, "not finite"), "a non-finite feature frame refused: %s",
         e ? e->message : "accepted");
  g_clear_error (&e);
  g3n_audio_feature_stream_free (fs);
  g3n_audio_stream_free (a);
  g3n_audio_stream_free (b);
  collected_clear (&by_pcm);
  collected_clear (&by_frames);
}

/* ---------------------------------------------------------------- bad input */

static long
peak_rss_kb (void)
{
  struct rusage u;
  getrusage (RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

static void
count_tokens (const float *tower, const guint8 *mask, const float *embeds, int first, int n, gpointer user_data)
{
  *(int *) user_data = first + n;
}

static void
test_bad_input (Results *r, const G3nAudioFeatures *fx, const G3nAudioEncoder *enc, const char *model_dir)
{
  int F = g3n_audio_features_size (fx);
  g_autoptr (GError) e = NULL;
  float pcm[2000];
  for (int i = 0; i < 2000; i++)
    pcm[i] = 0.1f * sinf (i * 0.05f);
  float buf[1];

  /* Non-finite samples. */
  float nan_pcm[2000];
  memcpy (nan_pcm, pcm, sizeof pcm);
  nan_pcm[1234] = NAN;
  float *f = g_new (float, (gsize) 20 * F);
  guint8 m[20];
  gboolean ok = g3n_audio_features_compute (fx, nan_pcm, 2000, f, m, &e);
  check (r, !ok && e && strstr (e->message, "1234") && strstr (e->message, "NaN"), "NaN sample rejected: %s",
         e ? e->message : "accepted");
  g_clear_error (&e);
  nan_pcm[1234] = INFINITY;
  G3nAudioStream *s = g3n_audio_stream_new (fx, enc, NULL, NULL, NULL, &e);
  ok = g3n_audio_stream_push (s, nan_pcm, 1000, &e) && g3n_audio_stream_push (s, nan_pcm + 1000, 1000, &e);
  check (r, !ok && e && strstr (e->message, "1234"), "Inf sample rejected in a stream: %s", e ? e->message : "accepted");
  g_clear_error (&e);
  g3n_audio_stream_free (s);

  /* Empty and too-short clips. */
  int T0 = g3n_audio_features_n_frames (fx, 0), T300 = g3n_audio_features_n_frames (fx, 300);
  check (r, T0 == 0 && T300 == 0, "empty / 300-sample clips give 0 frames");
  ok = g3n_audio_features_compute (fx, buf, 0, f, m, &e);
  check (r, ok, "features of an empty clip: nothing to do%s%s", e ? ": " : "", e ? e->message : "");
  g_clear_error (&e);
  G3nAudioEncodeOutputs out = { 0 };
  ok = g3n_audio_encode (enc, NULL, f, 0, F, m, &out, &e);
  check (r, !ok && e, "encoding 0 frames rejected: %s", e ? e->message : "accepted");
  g_clear_error (&e);
  s = g3n_audio_stream_new (fx, enc, NULL, NULL, NULL, &e);
  ok = g3n_audio_stream_finish (s, &e);
  check (r, !ok && e, "finishing an empty stream rejected: %s", e ? e->message : "accepted");
  g_clear_error (&e);
  /* The stream is usable after that, and after a short clip. */
  int tokens = 0;
  g3n_audio_stream_free (s);
  s = g3n_audio_stream_new (fx, enc, NULL, count_tokens, &tokens, &e);
  ok = g3n_audio_stream_push (s, pcm, 300, &e) && g3n_audio_stream_finish (s, &e);
  check (r, ok && tokens == 0, "300-sample stream: no tokens, no error (%d)%s%s", tokens, e ? ": " : "",
         e ? e->message : "");
  g_clear_error (&e);
  ok = g3n_audio_stream_push (s, pcm, 2000, &e) && g3n_audio_stream_finish (s, &e);
  check (r, ok && tokens == 1, "stream reused for a second clip: %d token(s)", tokens);
  g_clear_error (&e);
  g3n_audio_stream_free (s);

  /* Non-finite features and a wrong feature size. */
  for (int i = 0; i < 10 * F; i++)
    f[i] = -5.0f;
  f[3 * F + 7] = NAN;
  ok = g3n_audio_encode (enc, NULL, f, 10, F, NULL, &out, &e);
  check (r, !ok && e, "NaN feature rejected: %s", e ? e->message : "accepted");
  g_clear_error (&e);
  ok = g3n_audio_encode (enc, NULL, f, 10, F - 48, NULL, &out, &e);
  check (r, !ok && e && strstr (e->message, "input_feat_size"), "wrong feature count rejected: %s",
         e ? e->message : "accepted");
  g_clear_error (&e);
  g_free (f);

  /* Ten minutes streamed (a 45 s clip, repeated): memory stays flat. */
  gsize long_n = 45 * 16000;
  float *lp = g_new (float, long_n);
  for (gsize i = 0; i < long_n; i++)
    lp[i] = 0.1f * sinf ((float) (i % 16000) * 0.07f);

  long rss0 = peak_rss_kb ();
  tokens = 0;
  s = g3n_audio_stream_new (fx, enc, NULL, count_tokens, &tokens, &e);
  ok = TRUE;
  for (int rep = 0; ok && rep < 600 / 45 + 1; rep++)
    for (gsize i = 0; ok && i < long_n; i += 4000)
      ok = g3n_audio_stream_push (s, lp + i, MIN (4000, long_n - i), &e);
  ok = ok && g3n_audio_stream_finish (s, &e);
  long grew = peak_rss_kb () - rss0;
#ifdef __SANITIZE_ADDRESS__
  grew = 0;  /* ASan's quarantine keeps freed blocks (up to 256 MiB), so RSS says nothing here */
#endif
  check (r, ok && tokens > 3700 && grew < 8192, "10+ min stream: %d tokens, peak RSS grew %ld KiB%s%s", tokens, grew,
         e ? ": " : "", e ? e->message : "");
  g_clear_error (&e);
  g3n_audio_stream_free (s);

  /* The same 45 s clip whole: the processor's 30 s truncation bounds the whole-clip path. */
  int TL = g3n_audio_features_n_frames (fx, long_n), n_tok = 0;
  g3n_audio_encoder_sizes (enc, TL, NULL, &n_tok);
  check (r, TL == 2997 && n_tok == 188, "45 s clip: truncated to 30 s = %d frames, %d tokens", TL, n_tok);
  float *lf = g_new (float, (gsize) TL * F);
  guint8 *lm = g_new (guint8, TL);
  int D = g3n_audio_encoder_n_hidden (enc), H = g3n_audio_encoder_n_embd (enc);
  float *lt = g_new (float, (gsize) n_tok * D), *le = g_new (float, (gsize) n_tok * H);
  guint8 *ltm = g_new (guint8, n_tok);
  G3nAudioEncodeOutputs lo = { NULL, NULL, lt, ltm, le };
  ok = g3n_audio_features_compute (fx, lp, long_n, lf, lm, &e) && g3n_audio_encode (enc, NULL, lf, TL, F, lm, &lo, &e);
  check (r, ok && max_abs (lt, (gsize) n_tok * D) < 1e3, "45 s clip encoded (whole clip)%s%s", e ? ": " : "",
         e ? e->message : "");
  g_clear_error (&e);
  g_free (lf), g_free (lm), g_free (lt), g_free (le), g_free (ltm);
  g_free (lp);

  /* Feature extractor and tower disagreeing on mel bins. */
  G3nAudioFeatureParams p = g3n_audio_feature_default_params ();
  p.feature_size = 80;
  G3nAudioFeatures *fx80 = g3n_audio_features_new (&p, &e);
  s = fx80 ? g3n_audio_stream_new (fx80, enc, NULL, NULL, NULL, &e) : NULL;
  check (r, fx80 && !s && e && strstr (e->message, "input_feat_size"), "80-bin extractor with a 128-bin tower: %s",
         e ? e->message : "accepted");
  g_clear_error (&e);
  g3n_audio_features_free (fx80);

  /* A bad preprocessor_config.json, and a config.json whose input_feat_size does not fit the weights. */
  g_autofree char *tmp = g_dir_make_tmp ("test-audio-XXXXXX", NULL);
  g_autofree char *pp = g_build_filename (tmp, "preprocessor_config.json", NULL);
  g_file_set_contents (pp, "{\"feature_size\": \"many\"}", -1, NULL);
  G3nAudioFeatures *bad = g3n_audio_features_new_from_file (tmp, &e);
  check (r, !bad && e && strstr (e->message, "preprocessor_config.json"), "bad preprocessor_config.json: %s",
         e ? e->message : "accepted");
  g_clear_error (&e);
  g_file_set_contents (pp, "{\"feature_size\": -3}", -1, NULL);
  bad = g3n_audio_features_new_from_file (tmp, &e);
  check (r, !bad && e, "negative feature_size: %s", e ? e->message : "accepted");
  g_clear_error (&e);
  g_unlink (pp);

  g_autofree char *src_cfg = g_build_filename (model_dir, "config.json", NULL);
  g_autofree char *json = NULL;
  g_autofree char *cfg = g_build_filename (tmp, "config.json", NULL);
  g_autofree char *st_link = g_build_filename (tmp, "model.safetensors", NULL);
  g_autofree char *abs_dir = g_canonicalize_filename (model_dir, NULL);
  g_autofree char *st_abs = g_build_filename (abs_dir, "model.safetensors", NULL);
  if (g_file_get_contents (src_cfg, &json, NULL, NULL)) {
    GRegex *re = g_regex_new ("\"input_feat_size\": *128", 0, 0, NULL);
    g_autofree char *changed = g_regex_replace_literal (re, json, -1, 0, "\"input_feat_size\": 80", 0, NULL);
    g_regex_unref (re);
    g_file_set_contents (cfg, changed, -1, NULL);
    if (symlink (st_abs, st_link) != 0)
      g_printerr ("symlink failed\n");
    G3nModel *model = g3n_model_load (tmp, &e);
    G3nAudioEncoder *bad_enc = model ? g3n_audio_encoder_new (model, &e) : NULL;
    check (r, !bad_enc && e && strstr (e->message, "input_proj_linear"),
           "input_feat_size 80 against 128-bin weights: %s", e ? e->message : "accepted");
    g_clear_error (&e);
    g3n_audio_encoder_free (bad_enc);
    if (model)
      g3n_model_unref (model);
  } else {
    check (r, FALSE, "read %s", src_cfg);
  }
  g_unlink (cfg);
  g_unlink (st_link);
  g_rmdir (tmp);
}

int
main (int argc, char **argv)
{
  if (argc != 4) {
    g_printerr ("usage: %s MEL_GOLDEN MODEL_DIR MODEL_GOLDEN\n", argv[0]);
    return 2;
  }
  Results r = { 0, 0 };
  g_autoptr (GError) e = NULL;
  G3nSafetensors *mel = g3n_safetensors_open (argv[1], &e);
  g_autofree char *mel_dir = g_path_get_dirname (argv[1]);
  G3nAudioFeatures *mel_fx = mel ? g3n_audio_features_new_from_file (mel_dir, &e) : NULL;
  if (mel_fx)
    test_mel (&r, mel, mel_fx);
  else
    check (&r, FALSE, "open mel fixture: %s", e->message);
  g_clear_error (&e);

  G3nSafetensors *gold = g3n_safetensors_open (argv[3], &e);
  G3nModel *model = gold ? g3n_model_load (argv[2], &e) : NULL;
  G3nAudioFeatures *fx = model ? g3n_audio_features_new_from_file (argv[2], &e) : NULL;
  G3nAudioEncoder *enc = fx ? g3n_audio_encoder_new (model, &e) : NULL;
  if (enc) {
    test_tower (&r, gold, fx, enc);
    test_stream (&r, gold, fx, enc);
    test_stream_frames (&r, gold, fx, enc);
    test_bad_input (&r, fx, enc, argv[2]);
  } else {
    check (&r, FALSE, "load model: %s", e->message);
  }
  g3n_audio_encoder_free (enc);
  g3n_audio_features_free (fx);
  g3n_audio_features_free (mel_fx);
  if (model)
    g3n_model_unref (model);
  if (gold)
    g3n_safetensors_free (gold);
  if (mel)
    g3n_safetensors_free (mel);
  printf ("%d passed, %d failed\n", r.passed, r.failed);
  return r.failed ? 1 : 0;
}
