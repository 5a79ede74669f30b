/* gemma3n-bench — llama-bench for libgemma3n: how fast a checkpoint runs on this machine.
 *
 *   gemma3n-bench --model DIR [--threads N] [--quant bf16|q8_0|q4_0 [--quant-cache FILE]]
 *                 [--kv-type f32|f16|bf16] [-p 512] [-n 128] [-d DEPTH] [-r REPS] [--audio-seconds S] [--image]
 *                 [--json]
 *
 * Measures, on random token ids (no tokenizer needed, so a random checkpoint from `gemma3n-cli
 * make-random-checkpoint` works as well as the real one):
 *   pp  prompt processing: one batch of p ids from an empty context, tokens per second;
 *   tg  generation: n single-token decodes (greedy) after a short prompt, tokens per second;
 *   with -d DEPTH both start from a context already holding DEPTH ids (untimed), as llama-bench's -d: decode
 *       at a long context, where attention over the KV cache (--kv-type) weighs more;
 *   audio (--audio-seconds S): log-mel features + audio tower + embed_audio on S s of synthetic speech-like
 *       audio, seconds of compute per second of audio;
 *   vision (--image): the vision tower + embed_vision on one random 768x768 image, ms per image;
 * plus the load time (quantisation, or loading the --quant-cache file, included), the peak RSS and the KV
 * cache's bytes. Each test runs REPS times after an untimed warm-up; the median and the best are reported.
 * With --json, stdout holds exactly one JSON object (medians under pp_tok_s, tg_tok_s, audio_s_per_s,
 * vision_ms; kv_type, depth, kv_bytes); progress goes to stderr.
 */
#include "config.h"

#include "gemma3n.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* Short prompt fed (untimed) before the generation test, as a chat turn would have one. */
#define TG_PROMPT 16

typedef struct {
  char *model_dir;
  int threads, n_prompt, n_gen, depth, reps;
  char *quant, *quant_cache, *kv_name;
  G3nKvType kv_type;
  gsize kv_bytes; /* the largest KV cache a text test held */
  gsize decode_bytes; /* weight bytes one generated token reads (g3n_model_decode_bytes_per_token) */
  double audio_seconds;
  gboolean image, json;
} Options;

/* A test's repetitions: the values in their unit. */
typedef struct {
  const char *name; /* "pp512", ... */
  const char *unit; /* "tok/s", "s/s", "ms" */
  gboolean higher_is_better;
  GArray *values;   /* double */
} Result;

static double
now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

static int
cmp_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
result_median (const Result *r)
{
  g_autoptr (GArray) v = g_array_copy (r->values);
  g_array_sort (v, cmp_double);
  guint n = v->len;
  double *d = (double *) v->data;
  return n == 0 ? NAN : n % 2 ? d[n / 2] : (d[n / 2 - 1] + d[n / 2]) / 2;
}

static double
result_best (const Result *r)
{
  double best = NAN;
  for (guint i = 0; i < r->values->len; i++) {
    double x = g_array_index (r->values, double, i);
    if (isnan (best) || (r->higher_is_better ? x > best : x < best))
      best = x;
  }
  return best;
}

static Result *
result_new (GPtrArray *results, const char *name, const char *unit, gboolean higher_is_better)
{
  Result *r = g_new0 (Result, 1);
  r->name = g_intern_string (name);
  r->unit = unit;
  r->higher_is_better = higher_is_better;
  r->values = g_array_new (FALSE, FALSE, sizeof (double));
  g_ptr_array_add (results, r);
  return r;
}

static void
result_free (gpointer p)
{
  Result *r = p;
  g_array_unref (r->values);
  g_free (r);
}

static guint64
peak_rss_bytes (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return (guint64) ru.ru_maxrss * 1024; /* Linux reports KiB */
}

/* ---------------------------------------------------------------- text */

/* Random ordinary text ids: below the per-layer vocabulary (ids above it are multimodal) and past the first
 * few specials. */
static void
random_ids (GRand *rng, const G3nModel *model, int32_t *ids, int n)
{
  int hi = MIN (g3n_model_n_vocab (model), g3n_model_n_vocab_per_layer (model));
  for (int i = 0; i < n; i++)
    ids[i] = (int32_t) g_rand_int_range (rng, MIN (4, hi - 1), hi);
}

/* Empties the context and fills it with `depth` ids (untimed). */
static gboolean
fill_depth (G3nContext *ctx, const int32_t *ids, int depth, float *logits, GError **error)
{
  g3n_context_reset (ctx);
  G3nBatch b = { .n_tokens = depth, .ids = ids, .logits = logits };
  return depth == 0 || g3n_context_decode (ctx, &b, error);
}

/* One prefill of n ids after `depth` ids; logits of the last token only, as a prompt needs. */
static gboolean
run_pp (G3nContext *ctx, const int32_t *ids, int depth, int n, float *logits, double *seconds, GError **error)
{
  if (!fill_depth (ctx, ids, depth, logits, error))
    return FALSE;
  G3nBatch b = { .n_tokens = n, .ids = ids + depth, .logits = logits };
  double t0 = now_s ();
  gboolean ok = g3n_context_decode (ctx, &b, error);
  *seconds = now_s () - t0;
  return ok;
}

/* Greedy choice of the next token: part of each timed step, so the best value stays in a register (reading
 * x[best] back made each element wait on the previous compare). */
static int
argmax (const float *x, int n)
{
  int best = 0;
  float top = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > top)
      top = x[i], best = i;
  return best;
}

/* n greedy single-token decodes after an untimed prompt; only the decodes are timed. */
static gboolean
run_tg (G3nContext *ctx, const int32_t *prompt, int n_prompt, int n, float *logits, double *seconds,
        GError **error)
{
  int n_vocab = g3n_model_n_vocab (g3n_context_get_model (ctx));
  if (!fill_depth (ctx, prompt, n_prompt, logits, error))
    return FALSE;
  double t0 = now_s ();
  for (int i = 0; i < n; i++) {
    int32_t next = argmax (logits, n_vocab);
    G3nBatch b = { .n_tokens = 1, .ids = &next, .logits = logits };
    if (!g3n_context_decode (ctx, &b, error))
      return FALSE;
  }
  *seconds = now_s () - t0;
  return TRUE;
}

static gboolean
logits_finite (const float *x, int n)
{
  for (int i = 0; i < n; i++)
    if (!isfinite (x[i]))
      return FALSE;
  return TRUE;
}

static gboolean
bench_text (G3nModel *model, Options *o, GRand *rng, GPtrArray *results, GError **error)
{
  /* the generation test's prompt: the depth, or a chat turn's worth */
  int tg_prompt = o->depth > 0 ? o->depth : TG_PROMPT, n_ids = MAX (o->depth + o->n_prompt, tg_prompt);
  G3nContextParams cp = g3n_context_default_params ();
  cp.n_ctx = MAX (o->depth + o->n_prompt, tg_prompt + o->n_gen) + 1;
  cp.kv_type = o->kv_type;
  G3nContext *ctx = g3n_context_new (model, &cp, error);
  if (!ctx)
    return FALSE;
  int n_vocab = g3n_model_n_vocab (model);
  g_autofree float *logits = g_new (float, n_vocab);
  g_autofree int32_t *ids = g_new (int32_t, n_ids);
  random_ids (rng, model, ids, n_ids);
  g_autofree char *at = o->depth > 0 ? g_strdup_printf ("@d%d", o->depth) : g_strdup ("");
  g_autofree char *pp_name = g_strdup_printf ("pp%d%s", o->n_prompt, at);
  g_autofree char *tg_name = g_strdup_printf ("tg%d%s", o->n_gen, at);
  Result *pp = o->n_prompt > 0 ? result_new (results, pp_name, "tok/s", TRUE) : NULL;
  Result *tg = o->n_gen > 0 ? result_new (results, tg_name, "tok/s", TRUE) : NULL;
  double s;
  /* Warm-up: brings every weight page in and sizes the scratch buffers. */
  gboolean ok = run_tg (ctx, ids, 4, 2, logits, &s, error);
  for (int r = 0; ok && pp && r < o->reps; r++) {
    ok = run_pp (ctx, ids, o->depth, o->n_prompt, logits, &s, error);
    o->kv_bytes = MAX (o->kv_bytes, g3n_context_kv_bytes (ctx));
    if (ok) {
      double v = o->n_prompt / s;
      g_array_append_val (pp->values, v);
      fprintf (stderr, "  %s rep %d: %.2f tok/s\n", pp->name, r + 1, v);
    }
  }
  for (int r = 0; ok && tg && r < o->reps; r++) {
    ok = run_tg (ctx, ids, tg_prompt, o->n_gen, logits, &s, error);
    o->kv_bytes = MAX (o->kv_bytes, g3n_context_kv_bytes (ctx));
    if (ok) {
      double v = o->n_gen / s;
      g_array_append_val (tg->values, v);
      fprintf (stderr, "  %s rep %d: %.2f tok/s\n", tg->name, r + 1, v);
    }
  }
  if (ok && !logits_finite (logits, n_vocab)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED, "the model produced non-finite logits");
    ok = FALSE;
  }
  g3n_context_free (ctx);
  return ok;
}

/* ---------------------------------------------------------------- audio */

/* Speech-like test signal: a gliding harmonic tone with syllable-rate amplitude modulation and some noise. */
static float *
synthetic_speech (GRand *rng, gsize n)
{
  float *pcm = g_new (float, n);
  double phase = 0;
  for (gsize i = 0; i < n; i++) {
    double t = i / 16000.0, f0 = 140 + 40 * sin (2 * G_PI * 0.7 * t);
    phase += 2 * G_PI * f0 / 16000.0;
    double s = 0;
    for (int h = 1; h <= 8; h++)
      s += sin (h * phase) / h;
    pcm[i] = (float) (0.1 * (0.6 + 0.4 * sin (2 * G_PI * 4 * t)) * s + 0.01 * g_rand_double_range (rng, -1, 1));
  }
  return pcm;
}

static gboolean
bench_audio (G3nModel *model, const Options *o, GRand *rng, GPtrArray *results, GError **error)
{
  G3nAudioEncoder *enc = g3n_audio_encoder_new (model, error);
  G3nAudioFeatures *fx = enc ? g3n_audio_features_new_from_file (o->model_dir, error) : NULL;
  gboolean ok = fx != NULL;
  gsize n = (gsize) (o->audio_seconds * 16000);
  g_autofree float *pcm = synthetic_speech (rng, n);
  int T = ok ? g3n_audio_features_n_frames (fx, n) : 0, F = ok ? g3n_audio_features_size (fx) : 0, n_sub = 0,
      n_tok = 0;
  if (ok)
    g3n_audio_encoder_sizes (enc, T, &n_sub, &n_tok);
  g_autofree float *feat = g_new (float, (gsize) MAX (T, 1) * MAX (F, 1));
  g_autofree guint8 *mask = g_new (guint8, MAX (T, 1));
  g_autofree float *embeds = g_new (float, (gsize) MAX (n_tok, 1) * g3n_model_n_embd (model));
  G3nAudioEncodeOutputs out = { .embeds = g3n_model_has_audio_embedder (model) ? embeds : NULL };
  g_autofree char *name = g_strdup_printf ("audio %gs", o->audio_seconds);
  Result *res = result_new (results, name, "s/s", FALSE);
  for (int r = 0; ok && r <= o->reps; r++) { /* r = 0 warms up */
    double t0 = now_s ();
    ok = g3n_audio_features_compute (fx, pcm, n, feat, mask, error)
         && g3n_audio_encode (enc, NULL, feat, T, F, mask, &out, error);
    double v = (now_s () - t0) / o->audio_seconds;
    if (ok && r > 0) {
      g_array_append_val (res->values, v);
      fprintf (stderr, "  %s rep %d: %.3f s/s\n", res->name, r, v);
    }
  }
  g3n_audio_features_free (fx);
  g3n_audio_encoder_free (enc);
  return ok;
}

/* ---------------------------------------------------------------- vision */

static gboolean
bench_vision (G3nModel *model, const Options *o, GRand *rng, GPtrArray *results, GError **error)
{
  G3nVisionEncoder *enc = g3n_vision_encoder_new (model, error);
  if (!enc)
    return FALSE;
  int S = g3n_vision_encoder_image_size (enc);
  gsize n_pix = (gsize) 3 * S * S;
  g_autofree float *pv = g_new (float, n_pix);
  for (gsize i = 0; i < n_pix; i++)
    pv[i] = (float) g_rand_int_range (rng, 0, 256) / 255.0f; /* what the processor makes of 8-bit pixels */
  g_autofree float *tower = g_new (float, (gsize) g3n_vision_encoder_n_channels (enc) * g3n_vision_encoder_n_tokens (enc));
  g_autofree float *embeds = g_new (float, (gsize) g3n_vision_encoder_n_tokens (enc) * g3n_model_n_embd (model));
  Result *res = result_new (results, "vision 768x768", "ms", FALSE);
  gboolean ok = TRUE;
  for (int r = 0; ok && r <= o->reps; r++) { /* r = 0 warms up */
    double t0 = now_s ();
    ok = g3n_vision_encoder_encode (enc, NULL, pv, tower, g3n_model_has_vision_embedder (model) ? embeds : NULL, NULL, error);
    double v = (now_s () - t0) * 1000;
    if (ok && r > 0) {
      g_array_append_val (res->values, v);
      fprintf (stderr, "  %s rep %d: %.1f ms\n", res->name, r, v);
    }
  }
  g3n_vision_encoder_free (enc);
  return ok;
}

/* ---------------------------------------------------------------- reporting */

/* JSON has no NaN: a missing figure becomes null. */
static void
json_number (GString *j, const char *key, double v)
{
  if (isfinite (v))
    g_string_append_printf (j, ",\n  \"%s\": %.6g", key, v);
  else
    g_string_append_printf (j, ",\n  \"%s\": null", key);
}

static const Result *
find_result (GPtrArray *results, const char *prefix)
{
  for (guint i = 0; i < results->len; i++) {
    const Result *r = results->pdata[i];
    if (g_str_has_prefix (r->name, prefix))
      return r;
  }
  return NULL;
}

static void
json_result (GString *j, GPtrArray *results, const char *prefix, const char *key, const char *best_key)
{
  const Result *r = find_result (results, prefix);
  if (!r)
    return;
  json_number (j, key, result_median (r));
  json_number (j, best_key, result_best (r));
}

static void
print_json (const Options *o, const char *quant, double load_s, double quant_s, const char *step, GPtrArray *results)
{
  g_autoptr (GString) j = g_string_new ("{\n  \"model\": ");
  g_autofree char *model = g_strescape (o->model_dir, NULL);
  g_string_append_printf (j, "\"%s\",\n  \"threads\": %d,\n  \"quant\": \"%s\",\n  \"kv_type\": \"%s\",\n"
                          "  \"isa\": \"%s\",\n  \"n_prompt\": %d,\n  \"n_gen\": %d,\n  \"depth\": %d,\n  \"reps\": %d",
                          model, o->threads, quant, g3n_kv_type_name (o->kv_type), g3n_kernels_isa (), o->n_prompt,
                          o->n_gen, o->depth, o->reps);
  json_number (j, "load_s", load_s);
  if (quant_s > 0)
    json_number (j, "quantize_s", quant_s);
  if (o->quant_cache)
    g_string_append_printf (j, ",\n  \"quant_cache\": \"%s\"", strcmp (step, "loaded") == 0 ? "loaded" : "saved");
  json_result (j, results, "pp", "pp_tok_s", "pp_tok_s_best");
  json_result (j, results, "tg", "tg_tok_s", "tg_tok_s_best");
  json_result (j, results, "audio", "audio_s_per_s", "audio_s_per_s_best");
  if (o->audio_seconds > 0)
    json_number (j, "audio_seconds", o->audio_seconds);
  json_result (j, results, "vision", "vision_ms", "vision_ms_best");
  if (o->n_prompt + o->n_gen > 0)
    g_string_append_printf (j, ",\n  \"kv_bytes\": %" G_GSIZE_FORMAT, o->kv_bytes);
  const Result *tg = find_result (results, "tg");
  if (tg) { /* the weight bytes a token reads, and the read rate the median generation speed implies */
    g_string_append_printf (j, ",\n  \"decode_bytes_per_token\": %" G_GSIZE_FORMAT, o->decode_bytes);
    json_number (j, "tg_weight_gb_s", result_median (tg) * o->decode_bytes / 1e9);
  }
  g_string_append_printf (j, ",\n  \"peak_rss_bytes\": %" G_GUINT64_FORMAT "\n}\n", peak_rss_bytes ());
  fputs (j->str, stdout);
}

static void
print_table (const Options *o, const char *quant, double load_s, double quant_s, const char *step, GPtrArray *results)
{
  g_autofree char *base = g_path_get_basename (o->model_dir);
  printf ("| model | quant | kv | isa | threads | test | median | best | unit |\n");
  printf ("| --- | --- | --- | --- | ---: | --- | ---: | ---: | --- |\n");
  for (guint i = 0; i < results->len; i++) {
    const Result *r = results->pdata[i];
    int digits = strcmp (r->unit, "s/s") == 0 ? 4 : 2; /* audio is well below 1 s/s */
    printf ("| %s | %s | %s | %s | %d | %s | %.*f | %.*f | %s |\n", base, quant, g3n_kv_type_name (o->kv_type),
            g3n_kernels_isa (), o->threads, r->name, digits, result_median (r), digits, result_best (r), r->unit);
  }
  printf ("\nload %.2f s", load_s);
  if (quant_s > 0)
    printf (" (of which the weights %s in %.2f s)", step, quant_s);
  printf (", peak RSS %.1f MiB", peak_rss_bytes () / 1048576.0);
  if (o->n_prompt + o->n_gen > 0)
    printf (", KV cache %.1f MiB (%s)", o->kv_bytes / 1048576.0, g3n_kv_type_name (o->kv_type));
  printf (", %d repetitions\n", o->reps);
  const Result *tg = find_result (results, "tg");
  if (tg)
    printf ("a generated token reads %.3f GB of weights: %.1f GB/s at the median tg speed\n", o->decode_bytes / 1e9,
            result_median (tg) * o->decode_bytes / 1e9);
}

/* ---------------------------------------------------------------- main */

/* How the quantised weights were had: "quantised", "quantised and saved" (--quant-cache FILE made) or
 * "loaded" (--quant-cache FILE read back). */
static const char *
quant_step (const Options *o, gboolean cache_existed)
{
  return !o->quant_cache ? "quantised" : cache_existed ? "loaded" : "quantised and saved";
}

/* Loads the model and converts its matrices to the wanted storage, through the cache file when given;
 * *quant_s is that step's share, *cache_existed whether the file was there to load. */
static G3nModel *
load_model (const Options *o, double *quant_s, gboolean *cache_existed, GError **error)
{
  *quant_s = 0;
  *cache_existed = o->quant_cache && g_file_test (o->quant_cache, G_FILE_TEST_EXISTS);
  G3nQuantType type;
  if (!g3n_quant_type_from_string (o->quant, &type, error))
    return NULL;
  /* The conversion happens inside the load: its share is the load's time beyond a plain one (mapping and
   * validation, cheap on a second open of the same files). */
  double t0 = now_s ();
  G3nModel *plain = type != G3N_QUANT_NONE ? g3n_model_load (o->model_dir, error) : NULL;
  if (type != G3N_QUANT_NONE && !plain)
    return NULL;
  g3n_model_unref (plain);
  double plain_s = now_s () - t0;
  G3nModelParams params = g3n_model_default_params ();
  params.quant = type;
  params.quant_cache = o->quant_cache;
  params.n_threads = o->threads;
  t0 = now_s ();
  G3nModel *model = g3n_model_load_with_params (o->model_dir, &params, error);
  *quant_s = model && type != G3N_QUANT_NONE ? MAX (0, now_s () - t0 - plain_s) : 0;
  return model;
}

static gboolean
quantised (const char *quant)
{
  G3nQuantType type;
  return g3n_quant_type_from_string (quant, &type, NULL) && type != G3N_QUANT_NONE;
}

static gboolean
check_options (Options *o, GError **error)
{
  if (o->kv_name && !g3n_kv_type_from_string (o->kv_name, &o->kv_type, error))
    return FALSE;
  const char *bad = !o->model_dir ? "--model is required"
                    : o->threads < 1 ? "--threads must be at least 1"
                    : o->reps < 1 ? "--repetitions must be at least 1"
                    : o->n_prompt < 0 || o->n_gen < 0 || o->depth < 0 ? "-p, -n and -d must not be negative"
                    : o->n_gen + TG_PROMPT + o->depth > 1 << 20 || o->n_prompt + o->depth > 1 << 20
                        ? "-p, -n or -d is too large"
                    : o->audio_seconds < 0 || o->audio_seconds > 30 ? "--audio-seconds must be in (0, 30]"
                    : o->quant_cache && !quantised (o->quant) ? "--quant-cache needs --quant q8_0 or q4_0"
                    : NULL;
  if (bad)
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s", bad);
  return bad == NULL;
}

static gboolean
parse_options (int *argc, char ***argv, Options *o, GError **error)
{
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o->model_dir, "Checkpoint folder", "DIR" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &o->threads, "Kernel threads (default: all cores)", "N" },
    { "quant", 'q', 0, G_OPTION_ARG_STRING, &o->quant, "Text weights: bf16 (as stored), q8_0 or q4_0", "TYPE" },
    { "quant-cache", 0, 0, G_OPTION_ARG_FILENAME, &o->quant_cache,
      "With --quant: load the quantised weights from FILE, or quantise and save them there if it does not exist",
      "FILE" },
    { "n-prompt", 'p', 0, G_OPTION_ARG_INT, &o->n_prompt, "Prompt tokens of the pp test (default 512; 0 = skip)",
      "N" },
    { "n-gen", 'n', 0, G_OPTION_ARG_INT, &o->n_gen, "Generated tokens of the tg test (default 128; 0 = skip)", "N" },
    { "n-depth", 'd', 0, G_OPTION_ARG_INT, &o->depth, "Tokens already in the context before each test (default 0)",
      "N" },
    { "kv-type", 0, 0, G_OPTION_ARG_STRING, &o->kv_name, "KV cache storage: f32 (default), f16 or bf16", "TYPE" },
    { "repetitions", 'r', 0, G_OPTION_ARG_INT, &o->reps, "Timed runs of each test (default 3)", "N" },
    { "audio-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &o->audio_seconds,
      "Also time the audio path on S seconds of audio (up to 30)", "S" },
    { "image", 0, 0, G_OPTION_ARG_NONE, &o->image, "Also time the vision path on one 768x768 image", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &o->json, "Print one JSON object instead of a table", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- speed and memory of a Gemma 3n checkpoint");
  g_option_context_set_description (octx, "Works on random token ids, so a random checkpoint "
                                          "(gemma3n-cli make-random-checkpoint) measures the same as the real one.");
  g_option_context_add_main_entries (octx, entries, NULL);
  return g_option_context_parse (octx, argc, argv, error) && check_options (o, error);
}

int
main (int argc, char **argv)
{
  Options o = { .threads = (int) g_get_num_processors (), .n_prompt = 512, .n_gen = 128, .reps = 3 };
  o.quant = g_strdup ("bf16");
  g_autoptr (GError) error = NULL;
  if (!parse_options (&argc, &argv, &o, &error)) {
    fprintf (stderr, "gemma3n-bench: %s (see --help)\n", error->message);
    return 2;
  }
  /* The kernels' thread pool is sized on first use: set it before anything computes. */
  g3n_set_threads (o.threads);
  g_autoptr (GPtrArray) results = g_ptr_array_new_with_free_func (result_free);
  g_autoptr (GRand) rng = g_rand_new_with_seed (1234);
  double t0 = now_s (), quant_s;
  gboolean cache_existed;
  G3nModel *model = load_model (&o, &quant_s, &cache_existed, &error);
  double load_s = now_s () - t0;
  const char *step = quant_step (&o, cache_existed);
  gboolean ok = model != NULL;
  if (ok)
    o.decode_bytes = g3n_model_decode_bytes_per_token (model);
  if (ok)
    fprintf (stderr, "gemma3n-bench: %s loaded in %.2f s (%s, %d threads, %s kernels)\n", o.model_dir, load_s, o.quant,
             o.threads, g3n_kernels_isa ());
  if (ok && o.quant_cache)
    fprintf (stderr, "gemma3n-bench: quantised weights %s %s\n", cache_existed ? "loaded from" : "saved to",
             o.quant_cache);
  ok = ok && (o.n_prompt + o.n_gen == 0 || bench_text (model, &o, rng, results, &error));
  ok = ok && (o.audio_seconds <= 0 || bench_audio (model, &o, rng, results, &error));
  ok = ok && (!o.image || bench_vision (model, &o, rng, results, &error));
  if (ok) {
    if (o.json)
      print_json (&o, o.quant, load_s, quant_s, step, results);
    else
      print_table (&o, o.quant, load_s, quant_s, step, results);
  } else {
    fprintf (stderr, "gemma3n-bench: %s\n", error->message);
  }
  if (model)
    g3n_model_unref (model);
  g_free (o.model_dir);
  g_free (o.quant);
  g_free (o.quant_cache);
  g_free (o.kv_name);
  return ok ? 0 : 1;
}
