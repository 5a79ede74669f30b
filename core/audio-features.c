/* audio-features.c — Gemma3nAudioFeatureExtractor: HTK pre-emphasis, periodic Hann window, |rfft|, HTK mel
 * filterbank, log, optional per-bin normalisation.
 *
 * Every frame is computed by one function from one window of samples, so whole clips and streams share the
 * code and give identical frames. Rounding follows the reference where it is cheap to do so: the reference
 * computes pre-emphasis, window and FFT in float32 and the mel product and log in float64.
 */
#include "audio-features.h"

#include <json-glib/json-glib.h>
#include <libavutil/mem.h>
#include <libavutil/tx.h>
#include <math.h>
#include <string.h>

struct _G3nAudioFeatures {
  G3nAudioFeatureParams p;
  double *mean, *stddev;  /* owned copies of p.per_bin_* */
  int frame_length;       /* samples windowed per frame (512) */
  int hop;                /* 160 */
  int fft_length;         /* 1024 */
  int n_bins;             /* fft_length / 2 + 1 */
  float *window;          /* [frame_length] */
  /* Mel filter m is non-zero on FFT bins [fb_lo[m], fb_hi[m]); its weights start at fb + fb_off[m]. */
  int *fb_lo, *fb_hi, *fb_off;
  double *fb;
};

/* Per-stream scratch: av_tx contexts keep internal state, so each stream owns its own. */
typedef struct {
  AVTXContext *tx;
  av_tx_fn fn;
  float *in;           /* [fft_length] */
  AVComplexFloat *out; /* [n_bins] */
  GRand *rand;         /* dither */
} Worker;

G3nAudioFeatureParams
g3n_audio_feature_default_params (void)
{
  return (G3nAudioFeatureParams) {
    .sampling_rate = 16000, .feature_size = 128, .frame_length_ms = 32.0, .hop_length_ms = 10.0,
    .min_frequency = 125.0, .max_frequency = 7600.0, .preemphasis = 0.97, .preemphasis_htk_flavor = TRUE,
    .fft_overdrive = TRUE, .dither = 0.0, .input_scale_factor = 1.0, .mel_floor = 1e-5,
    .pad_to_multiple_of = 128, .max_samples = 480000,
  };
}

/* ---------------------------------------------------------------- construction */

/* create_fb_matrix(norm=None): triangles between mel points spaced evenly (np.linspace) on the HTK mel scale;
 * bin frequencies are float32 as in the reference. */
static void
build_filterbank (G3nAudioFeatures *fx)
{
  const G3nAudioFeatureParams *p = &fx->p;
  int M = p->feature_size, K = fx->n_bins;
  double m_min = 2595.0 * log10 (1.0 + p->min_frequency / 700.0);
  double m_max = 2595.0 * log10 (1.0 + p->max_frequency / 700.0);
  double step = (m_max - m_min) / (M + 1);
  double *f_pts = g_new (double, M + 2);
  for (int i = 0; i < M + 2; i++) {
    double m = i == M + 1 ? m_max : i * step + m_min;
    f_pts[i] = 700.0 * (pow (10.0, m / 2595.0) - 1.0);
  }
  float bin_hz = (float) ((double) p->sampling_rate / fx->fft_length);
  double *dense = g_new0 (double, (gsize) M * K);
  for (int k = 0; k < K; k++) {
    double f = (double) ((float) k * bin_hz);
    for (int m = 0; m < M; m++) {
      double down = -(f_pts[m] - f) / (f_pts[m + 1] - f_pts[m]);
      double up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
      dense[(gsize) m * K + k] = MAX (0.0, MIN (down, up));
    }
  }
  fx->fb_lo = g_new (int, M);
  fx->fb_hi = g_new (int, M);
  fx->fb_off = g_new (int, M);
  GArray *w = g_array_new (FALSE, FALSE, sizeof (double));
  for (int m = 0; m < M; m++) {
    const double *row = dense + (gsize) m * K;
    int lo = 0, hi = K;
    while (lo < K && row[lo] == 0.0)
      lo++;
    while (hi > lo && row[hi - 1] == 0.0)
      hi--;
    fx->fb_lo[m] = lo, fx->fb_hi[m] = hi, fx->fb_off[m] = (int) w->len;
    g_array_append_vals (w, row + lo, hi - lo);
  }
  fx->fb = (double *) g_array_free (w, FALSE);
  g_free (dense);
  g_free (f_pts);
}

/* np.float32 periodic Hann: 0.5 * (1 - cos(2π n / N)), each step rounded to float32 as numpy does. */
static void
build_window (G3nAudioFeatures *fx)
{
  int N = fx->frame_length;
  fx->window = g_new (float, N);
  const float two_pi = (float) (2.0 * G_PI);
  for (int n = 0; n < N; n++) {
    float arg = two_pi * (float) n / (float) N;
    fx->window[n] = 0.5f * (1.0f - cosf (arg));
  }
}

static gboolean
check_params (const G3nAudioFeatureParams *p, GError **error)
{
  const char *bad = NULL;
  if (p->sampling_rate <= 0 || p->sampling_rate > 1000000)
    bad = "sampling_rate";
  else if (p->feature_size <= 0 || p->feature_size > 4096)
    bad = "feature_size";
  else if (!(p->frame_length_ms > 0) || p->frame_length_ms * p->sampling_rate / 1000.0 > (1 << 20))
    bad = "frame_length_ms";
  else if (!(p->hop_length_ms > 0) || p->hop_length_ms * p->sampling_rate / 1000.0 < 0.5)
    bad = "hop_length_ms";
  else if (!(p->min_frequency >= 0) || !(p->max_frequency > p->min_frequency))
    bad = "min_frequency/max_frequency";
  else if (!(p->mel_floor > 0))
    bad = "mel_floor";
  else if (!(p->preemphasis >= 0 && p->preemphasis < 1))
    bad = "preemphasis";
  else if (!(p->dither >= 0) || !isfinite (p->input_scale_factor))
    bad = "dither/input_scale_factor";
  else if (p->pad_to_multiple_of < 0 || p->max_samples < 0)
    bad = "pad_to_multiple_of/max_samples";
  for (int i = 0; !bad && p->per_bin_stddev && i < p->feature_size; i++)
    if (!(p->per_bin_stddev[i] != 0) || !isfinite (p->per_bin_stddev[i]))
      bad = "per_bin_stddev";
  if (bad)
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "audio feature extractor: %s is out of range", bad);
  return bad == NULL;
}

G3nAudioFeatures *
g3n_audio_features_new (const G3nAudioFeatureParams *params, GError **error)
{
  G3nAudioFeatureParams def = g3n_audio_feature_default_params ();
  const G3nAudioFeatureParams *p = params ? params : &def;
  if (!check_params (p, error))
    return NULL;
  G3nAudioFeatures *fx = g_new0 (G3nAudioFeatures, 1);
  fx->p = *p;
  fx->frame_length = (int) lround (p->sampling_rate * p->frame_length_ms / 1000.0);
  fx->hop = (int) lround (p->sampling_rate * p->hop_length_ms / 1000.0);
  int fft = 1;
  while (fft < fx->frame_length)
    fft *= 2;
  fx->fft_length = p->fft_overdrive ? 2 * fft : fft;
  fx->n_bins = fx->fft_length / 2 + 1;
  if (p->per_bin_mean)
    fx->mean = g_memdup2 (p->per_bin_mean, sizeof (double) * p->feature_size);
  if (p->per_bin_stddev)
    fx->stddev = g_memdup2 (p->per_bin_stddev, sizeof (double) * p->feature_size);
  fx->p.per_bin_mean = fx->mean;
  fx->p.per_bin_stddev = fx->stddev;
  build_window (fx);
  build_filterbank (fx);
  return fx;
}

void
g3n_audio_features_free (G3nAudioFeatures *fx)
{
  if (!fx)
    return;
  g_free (fx->mean);
  g_free (fx->stddev);
  g_free (fx->window);
  g_free (fx->fb_lo);
  g_free (fx->fb_hi);
  g_free (fx->fb_off);
  g_free (fx->fb);
  g_free (fx);
}

/* ---------------------------------------------------------------- preprocessor_config.json */

static double
json_num (JsonObject *o, const char *key, double def, gboolean *ok)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) == G_TYPE_STRING) {
    *ok = FALSE;
    return def;
  }
  double v = json_node_get_double (n);
  if (!(fabs (v) <= 1e9)) {  /* also keeps the int conversions below defined */
    *ok = FALSE;
    return def;
  }
  return v;
}

static gboolean
json_bool (JsonObject *o, const char *key, gboolean def, gboolean *ok)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN) {
    *ok = FALSE;
    return def;
  }
  return json_node_get_boolean (n);
}

static double *
json_doubles (JsonObject *o, const char *key, int n, gboolean *ok)
{
  JsonNode *node = json_object_get_member (o, key);
  if (!node || JSON_NODE_HOLDS_NULL (node))
    return NULL;
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  if (!a || (int) json_array_get_length (a) != n) {
    *ok = FALSE;
    return NULL;
  }
  double *v = g_new (double, n);
  for (int i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) == G_TYPE_STRING) {
      *ok = FALSE;
      g_free (v);
      return NULL;
    }
    v[i] = json_node_get_double (e);
  }
  return v;
}

/* The reference derives frame and hop lengths from frame_length_ms / hop_length_ms and recomputes fft_length;
 * the saved frame_length / hop_length / fft_length keys are overwritten on load, so they are ignored here too. */
static G3nAudioFeatures *
features_from_json (const char *file, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_mapped_file (parser, file, error)) {
    g_prefix_error (error, "%s: ", file);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: not a JSON object", file);
    return NULL;
  }
  JsonObject *o = json_node_get_object (root);
  G3nAudioFeatureParams p = g3n_audio_feature_default_params ();
  gboolean ok = TRUE;
  p.sampling_rate = (int) json_num (o, "sampling_rate", p.sampling_rate, &ok);
  p.feature_size = (int) json_num (o, "feature_size", p.feature_size, &ok);
  p.frame_length_ms = json_num (o, "frame_length_ms", p.frame_length_ms, &ok);
  p.hop_length_ms = json_num (o, "hop_length_ms", p.hop_length_ms, &ok);
  p.min_frequency = json_num (o, "min_frequency", p.min_frequency, &ok);
  p.max_frequency = json_num (o, "max_frequency", p.max_frequency, &ok);
  p.preemphasis = json_num (o, "preemphasis", p.preemphasis, &ok);
  p.dither = json_num (o, "dither", p.dither, &ok);
  p.input_scale_factor = json_num (o, "input_scale_factor", p.input_scale_factor, &ok);
  p.mel_floor = json_num (o, "mel_floor", p.mel_floor, &ok);
  p.preemphasis_htk_flavor = json_bool (o, "preemphasis_htk_flavor", p.preemphasis_htk_flavor, &ok);
  p.fft_overdrive = json_bool (o, "fft_overdrive", p.fft_overdrive, &ok);
  g_autofree double *mean = NULL, *stddev = NULL;
  if (ok && p.feature_size > 0 && p.feature_size <= 4096) {
    mean = json_doubles (o, "per_bin_mean", p.feature_size, &ok);
    stddev = json_doubles (o, "per_bin_stddev", p.feature_size, &ok);
  }
  if (!ok) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG,
                 "%s: a feature extractor value has the wrong type (or per_bin_* the wrong length)", file);
    return NULL;
  }
  p.per_bin_mean = mean;
  p.per_bin_stddev = stddev;
  G3nAudioFeatures *fx = g3n_audio_features_new (&p, error);
  if (!fx)
    g_prefix_error (error, "%s: ", file);
  return fx;
}

G3nAudioFeatures *
g3n_audio_features_new_from_file (const char *path, GError **error)
{
  g_autofree char *file = g_file_test (path, G_FILE_TEST_IS_DIR)
                              ? g_build_filename (path, "preprocessor_config.json", NULL)
                              : g_strdup (path);
  if (!g_file_test (file, G_FILE_TEST_EXISTS)) {
    if (g_file_test (path, G_FILE_TEST_IS_DIR))
      return g3n_audio_features_new (NULL, error);
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: no such file", file);
    return NULL;
  }
  return features_from_json (file, error);
}

/* ---------------------------------------------------------------- sizes */

int
g3n_audio_features_size (const G3nAudioFeatures *fx)
{
  return fx->p.feature_size;
}

int
g3n_audio_features_hop (const G3nAudioFeatures *fx)
{
  return fx->hop;
}

int
g3n_audio_features_rate (const G3nAudioFeatures *fx)
{
  return fx->p.sampling_rate;
}

int
g3n_audio_features_window (const G3nAudioFeatures *fx)
{
  return fx->frame_length + 1;
}

gsize
g3n_audio_features_max_samples (const G3nAudioFeatures *fx)
{
  return (gsize) fx->p.max_samples;
}

static gsize
padded_length (const G3nAudioFeatures *fx, gsize n)
{
  if (fx->p.max_samples > 0 && n > (gsize) fx->p.max_samples)
    n = fx->p.max_samples;
  gsize m = fx->p.pad_to_multiple_of;
  return m > 1 ? (n + m - 1) / m * m : n;
}

/* The reference unfolds frames of frame_length + 1 samples (the last one only counts for the frame count). */
static int
frames_in (const G3nAudioFeatures *fx, gsize padded)
{
  gsize w = fx->frame_length + 1;
  return padded < w ? 0 : (int) ((padded - w) / fx->hop + 1);
}

int
g3n_audio_features_n_frames (const G3nAudioFeatures *fx, gsize n_samples)
{
  return frames_in (fx, padded_length (fx, n_samples));
}

/* ---------------------------------------------------------------- one frame */

static gboolean
worker_init (Worker *w, const G3nAudioFeatures *fx, GError **error)
{
  memset (w, 0, sizeof *w);
  float scale = 1.0f;
  if (av_tx_init (&w->tx, &w->fn, AV_TX_FLOAT_RDFT, 0, fx->fft_length, &scale, 0) < 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED, "libavutil cannot make a real FFT of length %d",
                 fx->fft_length);
    return FALSE;
  }
  w->in = av_malloc (sizeof (float) * (fx->fft_length + 2));
  w->out = av_malloc (sizeof (AVComplexFloat) * (fx->n_bins + 1));
  if (fx->p.dither > 0)
    w->rand = g_rand_new_with_seed (0x6e3a);
  return TRUE;
}

static void
worker_clear (Worker *w)
{
  av_tx_uninit (&w->tx);
  av_freep (&w->in);
  av_freep (&w->out);
  if (w->rand)
    g_rand_free (w->rand);
  w->rand = NULL;
}

/* x: frame_length + 1 samples (already dithered and scaled). out: feature_size log-mel values. */
static void
compute_frame (const G3nAudioFeatures *fx, Worker *w, const float *x, float *out)
{
  const int L = fx->frame_length;
  const float pe = (float) fx->p.preemphasis;
  float *in = w->in;
  if (pe > 0 && fx->p.preemphasis_htk_flavor) {
    in[0] = x[0] * (float) (1.0 - fx->p.preemphasis);
    for (int i = 1; i < L; i++)
      in[i] = x[i] - pe * x[i - 1];
  } else if (pe > 0) {
    for (int i = 0; i < L; i++)
      in[i] = x[i + 1] - pe * x[i];
  } else {
    memcpy (in, x, sizeof (float) * L);
  }
  for (int i = 0; i < L; i++)
    in[i] *= fx->window[i];
  /* The buffer's two spare floats too: libavutil's RDFT reads them (valgrind saw it), whatever it does with
   * them, and a read of uninitialised memory is a defect either way. */
  memset (in + L, 0, sizeof (float) * (fx->fft_length + 2 - L));
  w->fn (w->tx, w->out, in, sizeof (float));
  /* |X| in float32 (numpy's complex64 abs), reusing the input buffer. */
  float *mag = in;
  for (int k = 0; k < fx->n_bins; k++)
    mag[k] = hypotf (w->out[k].re, w->out[k].im);
  for (int m = 0; m < fx->p.feature_size; m++) {
    const double *fb = fx->fb + fx->fb_off[m];
    double mel = 0;
    for (int k = fx->fb_lo[m]; k < fx->fb_hi[m]; k++)
      mel += (double) mag[k] * fb[k - fx->fb_lo[m]];
    double v = log (MAX (mel, fx->p.mel_floor));
    if (fx->mean)
      v -= fx->mean[m];
    if (fx->stddev)
      v /= fx->stddev[m];
    out[m] = (float) v;
  }
}

static gboolean
check_finite (const float *pcm, gsize n, guint64 base, GError **error)
{
  for (gsize i = 0; i < n; i++)
    if (!isfinite (pcm[i])) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio sample %" G_GUINT64_FORMAT " is %s",
                   base + i, isnan (pcm[i]) ? "NaN" : "infinite");
      return FALSE;
    }
  return TRUE;
}

/* ---------------------------------------------------------------- stream */

#define FRAMES_PER_CALLBACK 64

struct _G3nAudioFeatureStream {
  const G3nAudioFeatures *fx;
  G3nAudioFramesFunc func;
  gpointer user_data;
  Worker w;
  gboolean worker_ok;
  float *buf;        /* samples [buf_start, buf_start + buf_len) of the clip */
  int buf_cap;
  int buf_len;
  guint64 buf_start;
  guint64 n_total;   /* samples in the buffer's history, padding included */
  guint64 n_valid;   /* samples the caller pushed (frames starting before this are valid) */
  int n_frames;      /* frames emitted */
  float *feat;       /* [FRAMES_PER_CALLBACK, size] pending frames */
  guint8 *mask;
  int n_pending;
};

G3nAudioFeatureStream *
g3n_audio_feature_stream_new (const G3nAudioFeatures *fx, G3nAudioFramesFunc func, gpointer user_data)
{
  G3nAudioFeatureStream *s = g_new0 (G3nAudioFeatureStream, 1);
  s->fx = fx;
  s->func = func;
  s->user_data = user_data;
  s->buf_cap = g3n_audio_features_window (fx) + fx->hop * FRAMES_PER_CALLBACK;
  s->buf = g_new (float, s->buf_cap);
  s->feat = g_new (float, (gsize) FRAMES_PER_CALLBACK * fx->p.feature_size);
  s->mask = g_new (guint8, FRAMES_PER_CALLBACK);
  return s;
}

void
g3n_audio_feature_stream_free (G3nAudioFeatureStream *s)
{
  if (!s)
    return;
  if (s->worker_ok)
    worker_clear (&s->w);
  g_free (s->buf);
  g_free (s->feat);
  g_free (s->mask);
  g_free (s);
}

static void
flush_frames (G3nAudioFeatureStream *s)
{
  if (s->n_pending && s->func)
    s->func (s->feat, s->mask, s->n_frames - s->n_pending, s->n_pending, s->user_data);
  s->n_pending = 0;
}

/* Computes every frame the buffer holds completely, then drops the samples no later frame needs. */
static void
drain (G3nAudioFeatureStream *s)
{
  const G3nAudioFeatures *fx = s->fx;
  int win = g3n_audio_features_window (fx), F = fx->p.feature_size;
  for (;;) {
    guint64 start = (guint64) s->n_frames * fx->hop;
    if (start + win > s->buf_start + s->buf_len)
      break;
    compute_frame (fx, &s->w, s->buf + (start - s->buf_start), s->feat + (gsize) s->n_pending * F);
    s->mask[s->n_pending++] = start < s->n_valid;
    s->n_frames++;
    if (s->n_pending == FRAMES_PER_CALLBACK)
      flush_frames (s);
  }
  guint64 keep_from = MIN ((guint64) s->n_frames * fx->hop, s->buf_start + s->buf_len);
  int drop = (int) (keep_from - s->buf_start);
  if (drop > 0) {
    memmove (s->buf, s->buf + drop, sizeof (float) * (s->buf_len - drop));
    s->buf_len -= drop;
    s->buf_start = keep_from;
  }
}

/* Appends n samples (pcm NULL = zeros, the clip padding), applying dither and input scaling as the reference
 * does to the whole padded waveform. */
static void
append (G3nAudioFeatureStream *s, const float *pcm, gsize n)
{
  const G3nAudioFeatureParams *p = &s->fx->p;
  while (n > 0) {
    int room = s->buf_cap - s->buf_len;
    int take = (int) MIN ((gsize) room, n);
    float *dst = s->buf + s->buf_len;
    for (int i = 0; i < take; i++) {
      float v = pcm ? pcm[i] : 0.0f;
      if (s->w.rand) {
        /* Box–Muller: one Gaussian per sample. */
        double u1 = 1.0 - g_rand_double (s->w.rand), u2 = g_rand_double (s->w.rand);
        v += (float) (p->dither * sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2));
      }
      if (p->input_scale_factor != 1.0)
        v *= (float) p->input_scale_factor;
      dst[i] = v;
    }
    s->buf_len += take;
    s->n_total += take;
    if (pcm)
      pcm += take;
    n -= take;
    drain (s);
  }
}

static gboolean
ensure_worker (G3nAudioFeatureStream *s, GError **error)
{
  if (!s->worker_ok)
    s->worker_ok = worker_init (&s->w, s->fx, error);
  return s->worker_ok;
}

gboolean
g3n_audio_feature_stream_push (G3nAudioFeatureStream *s, const float *pcm, gsize n, GError **error)
{
  g_return_val_if_fail (s != NULL && (pcm != NULL || n == 0), FALSE);
  if (!ensure_worker (s, error) || !check_finite (pcm, n, s->n_valid, error))
    return FALSE;
  s->n_valid += n;
  append (s, pcm, n);
  flush_frames (s);
  return TRUE;
}

static void
stream_reset (G3nAudioFeatureStream *s)
{
  s->buf_len = 0;
  s->buf_start = s->n_total = s->n_valid = 0;
  s->n_frames = s->n_pending = 0;
}

/* Pads with zeros up to padded_total samples, emits what is left, and resets for the next clip. */
static void
finish_to (G3nAudioFeatureStream *s, guint64 padded_total)
{
  if (padded_total > s->n_total)
    append (s, NULL, padded_total - s->n_total);
  flush_frames (s);
  stream_reset (s);
}

gboolean
g3n_audio_feature_stream_finish (G3nAudioFeatureStream *s, GError **error)
{
  if (!ensure_worker (s, error))
    return FALSE;
  guint64 m = MAX (s->fx->p.pad_to_multiple_of, 1);
  finish_to (s, (s->n_total + m - 1) / m * m);
  return TRUE;
}

guint64
g3n_audio_feature_stream_n_samples (const G3nAudioFeatureStream *s)
{
  return s->n_valid;
}

int
g3n_audio_feature_stream_n_frames (const G3nAudioFeatureStream *s)
{
  return s->n_frames;
}

/* ---------------------------------------------------------------- whole clips */

typedef struct {
  float *features;
  guint8 *mask;
  int F, T;
} Collect;

static void
collect_frames (const float *features, const guint8 *mask, int first, int n, gpointer user_data)
{
  Collect *c = user_data;
  n = MIN (n, c->T - first);  /* never more than sized for; defensive */
  if (n <= 0)
    return;
  if (c->features)
    memcpy (c->features + (gsize) first * c->F, features, sizeof (float) * n * c->F);
  if (c->mask)
    memcpy (c->mask + first, mask, n);
}

/* One member of a (possibly one-clip) batch, padded to `padded` samples. */
static gboolean
compute_member (const G3nAudioFeatures *fx, const float *pcm, gsize n, gsize padded, int T, float *features,
                guint8 *mask, GError **error)
{
  if (fx->p.max_samples > 0 && n > (gsize) fx->p.max_samples)
    n = fx->p.max_samples;  /* the processor truncates to max_length (30 s) */
  if (!check_finite (pcm, n, 0, error))
    return FALSE;
  Collect c = { features, mask, fx->p.feature_size, T };
  G3nAudioFeatureStream *s = g3n_audio_feature_stream_new (fx, collect_frames, &c);
  gboolean ok = ensure_worker (s, error);
  if (ok) {
    s->n_valid = n;
    append (s, pcm, n);
    finish_to (s, padded);
  }
  g3n_audio_feature_stream_free (s);
  return ok;
}

gboolean
g3n_audio_features_compute (const G3nAudioFeatures *fx, const float *pcm, gsize n_samples, float *features,
                            guint8 *mask, GError **error)
{
  int T;
  return g3n_audio_features_compute_batch (fx, &pcm, &n_samples, 1, features, mask, &T, error);
}

gboolean
g3n_audio_features_compute_batch (const G3nAudioFeatures *fx, const float *const *pcm, const gsize *n_samples,
                                  int batch, float *features, guint8 *mask, int *n_frames, GError **error)
{
  if (batch <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio batch of %d clips", batch);
    return FALSE;
  }
  gsize longest = 0;
  for (int b = 0; b < batch; b++)
    longest = MAX (longest, n_samples[b]);
  gsize padded = padded_length (fx, longest);
  int T = frames_in (fx, padded);
  if (n_frames)
    *n_frames = T;
  if (!features && !mask)
    return TRUE;
  gsize F = fx->p.feature_size;
  for (int b = 0; b < batch; b++)
    if (!compute_member (fx, pcm[b], n_samples[b], padded, T, features ? features + b * T * F : NULL,
                         mask ? mask + (gsize) b * T : NULL, error)) {
      g_prefix_error (error, "audio clip %d: ", b);
      return FALSE;
    }
  return TRUE;
}
