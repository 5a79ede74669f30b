/* bench-vision — time the vision tower at real shape on random weights.
 *
 *   bench-vision [--multiplier 1.0] [--threads 1,2] [--runs 2]
 *
 * Builds mobilenetv5_300m_enc (channel_multiplier 1.0 = the real Gemma 3n tower, ~300M parameters) with
 * random BF16 weights made in memory, runs one 768x768 image per run, and prints ms per image for each
 * thread count (best of --runs, after one warm-up) and the peak RSS. The weights and activations are
 * what the real tower costs; the random values only keep activations finite.
 */
#include "vision-encoder.h"
#include "kernels/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
  GHashTable *tensors; /* name → G3nTensor, data owned by the table's values */
  GRand *rng;
  gsize n_params;
} Weights;

static void
tensor_free (gpointer p)
{
  G3nTensor *t = p;
  g_free ((gpointer) t->data);
  g_free ((gpointer) t->name);
  g_free (t);
}

/* Random weights with sane activations: convolutions ~ U(±sqrt(3 / fan_in)), norms 1, layer scales 0.1. */
static const G3nTensor *
random_lookup (gpointer user_data, const char *name, int ndim, const int64_t *shape)
{
  Weights *w = user_data;
  G3nTensor *t = g_new0 (G3nTensor, 1);
  t->name = g_strdup (name);
  t->dtype = G3N_DTYPE_BF16;
  t->ndim = ndim;
  gsize n = 1;
  for (int i = 0; i < ndim; i++)
    n *= (gsize) (t->shape[i] = shape[i]);
  guint16 *d = g_new (guint16, n);
  gboolean vec = ndim == 1;
  double fan_in = vec ? 1 : (double) (n / (gsize) shape[0]);
  double a = sqrt (3.0 / fan_in);
  float fixed = g_str_has_suffix (name, "gamma") ? 0.1f : 1.0f;
  for (gsize i = 0; i < n; i++)
    d[i] = g3n_f32_to_bf16 (vec ? fixed : (float) g_rand_double_range (w->rng, -a, a));
  t->data = d;
  t->nbytes = n * 2;
  t->path = "random";
  w->n_params += n;
  g_hash_table_replace (w->tensors, (gpointer) t->name, t);
  return t;
}

static long
peak_rss_mb (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

int
main (int argc, char **argv)
{
  double multiplier = 1.0;
  int runs = 2;
  g_autofree char *threads = g_strdup ("1,2");
  GOptionEntry entries[] = {
    { "multiplier", 0, 0, G_OPTION_ARG_DOUBLE, &multiplier, "channel_multiplier (default 1.0, the real tower)", "M" },
    { "threads", 't', 0, G_OPTION_ARG_STRING, &threads, "Thread counts to time (default 1,2)", "LIST" },
    { "runs", 'r', 0, G_OPTION_ARG_INT, &runs, "Timed runs per thread count (default 2)", "N" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- vision tower benchmark");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (octx, &argc, &argv, &error)) {
    fprintf (stderr, "bench-vision: %s\n", error->message);
    return 1;
  }
  Weights w = { g_hash_table_new_full (g_str_hash, g_str_equal, NULL, tensor_free), g_rand_new_with_seed (7), 0 };
  gint64 t0 = g_get_monotonic_time ();
  G3nVisionEncoder *enc = g3n_vision_encoder_new_custom (random_lookup, &w, "random", multiplier, &error);
  if (!enc) {
    fprintf (stderr, "bench-vision: %s\n", error->message);
    return 1;
  }
  printf ("mobilenetv5_300m_enc, channel_multiplier %.2f: %.1fM parameters, %u tensors (built in %.1f s)\n",
          multiplier, w.n_params / 1e6, g_hash_table_size (w.tensors), (g_get_monotonic_time () - t0) / 1e6);
  int S = g3n_vision_encoder_image_size (enc);
  gsize n_pix = (gsize) 3 * S * S;
  g_autofree float *pv = g_new (float, n_pix);
  for (gsize i = 0; i < n_pix; i++)
    pv[i] = (float) g_rand_int_range (w.rng, 0, 256) / 255.0f;
  g_autofree float *out = g_new (float, (gsize) g3n_vision_encoder_n_channels (enc) * g3n_vision_encoder_n_tokens (enc));
  g_auto (GStrv) counts = g_strsplit (threads, ",", -1);
  int status = 0, max_threads = 1;
  for (int c = 0; counts[c]; c++)
    max_threads = MAX (max_threads, atoi (counts[c]));
  /* The kernel pool is sized at first use: make it with the most threads wanted, then time fewer. */
  g3n_set_threads (max_threads);
  for (int c = 0; counts[c] && !status; c++) {
    int n_threads = atoi (counts[c]);
    g3n_set_threads (n_threads);
    double best = INFINITY;
    for (int r = 0; r <= runs; r++) { /* run 0 warms up */
      gint64 t = g_get_monotonic_time ();
      if (!g3n_vision_encoder_encode (enc, NULL, pv, out, NULL, NULL, &error)) {
        fprintf (stderr, "bench-vision: %s\n", error->message);
        status = 1;
        break;
      }
      double ms = (g_get_monotonic_time () - t) / 1000.0;
      if (r > 0)
        best = MIN (best, ms);
    }
    if (!status)
      printf ("threads %d: %.0f ms per 768x768 image (best of %d)\n", n_threads, best, runs);
  }
  printf ("peak RSS: %ld MiB\n", peak_rss_mb ());
  g3n_vision_encoder_free (enc);
  g_hash_table_destroy (w.tensors);
  g_rand_free (w.rng);
  return status;
}
