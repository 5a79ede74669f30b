/* quant-accuracy — how far quantised weights move the logits from the unquantised model's.
 *
 *   quant-accuracy MODEL_DIR [TOKENS [SEED]]        (default 64 tokens, seed 1)
 *
 * Feeds the same TOKENS seeded random token ids through the model as stored (BF16: fp32 arithmetic on the
 * file's weights) and through Q8_0 and Q4_0 copies, and prints per type the largest and mean |Δlogit| over
 * every position and vocabulary entry, the largest |logit| for scale, and top-1 agreement: how often the
 * quantised model's most likely next token is the unquantised one's. The whole sequence goes in as one
 * prompt with logits for every position (teacher forcing), so one divergent token does not derail the
 * rest. Two baselines come first: the same fp32 model fed token by token (only the summation order
 * differs) and with its prompt products on BF16-rounded activations. Random-weight checkpoints
 * (gemma3n-cli make-random-checkpoint) are a harsh case: nothing in them is redundant, so any change, even
 * a rounding, is amplified layer after layer far more than it would be with trained weights.
 */
#include "gemma3n.h"
#include "kernels/kernels.h"     /* g3n_kernels_set_bf16_activations */
#include "model.h"               /* g3n_model_quantize */
#include "../test-util.h"       /* logit_diff */

#include <stdio.h>
#include <stdlib.h>

/* Logits of every position, the ids fed `chunk` at a time. */
static float *
all_logits (G3nModel *m, const int32_t *ids, int n, int chunk, GError **error)
{
  G3nContextParams params = g3n_context_default_params ();
  params.n_ctx = n;
  G3nContext *ctx = g3n_context_new (m, &params, error);
  if (!ctx)
    return NULL;
  int V = g3n_model_n_vocab (m);
  float *logits = g_new (float, (gsize) n * V);
  gboolean ok = TRUE;
  for (int t = 0; ok && t < n; t += chunk) {
    G3nBatch b = { .n_tokens = MIN (chunk, n - t), .ids = ids + t, .all_logits = TRUE,
                   .logits = logits + (gsize) t * V };
    ok = g3n_context_decode (ctx, &b, error);
  }
  g3n_context_free (ctx);
  if (!ok)
    g_clear_pointer (&logits, g_free);
  return logits;
}

/* One table row: the logits of m, fed `chunk` tokens at a time, against `want`; the time counts from t0. */
static gboolean
compare (G3nModel *m, const char *what, int chunk, const int32_t *ids, int n, const float *want, gint64 t0,
         GError **error)
{
  float *got = all_logits (m, ids, n, chunk, error);
  if (!got)
    return FALSE;
  LogitDiff q = logit_diff (got, want, n, g3n_model_n_vocab (m));
  printf ("| %s | %.4f | %.5f | %.4f | %d/%d (%.1f%%) | %.1f |\n", what, q.max_diff, q.mean_diff, q.max_ref, q.agree,
          n, 100.0 * q.agree / n, (g_get_monotonic_time () - t0) / 1e6);
  fflush (stdout);
  g_free (got);
  return TRUE;
}

/* A fresh load of the model quantised to `type` (its time included), against `want`. */
static gboolean
compare_quantised (const char *dir, G3nQuantType type, const int32_t *ids, int n, const float *want, GError **error)
{
  G3nModel *m = g3n_model_load (dir, error);
  if (!m)
    return FALSE;
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = g3n_model_quantize (m, type, error) && compare (m, g3n_quant_type_name (type), n, ids, n, want, t0,
                                                                  error);
  g3n_model_unref (m);
  return ok;
}

int
main (int argc, char **argv)
{
  if (argc < 2 || argc > 4) {
    fprintf (stderr, "usage: %s MODEL_DIR [TOKENS [SEED]]\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  int n = argc > 2 ? atoi (argv[2]) : 64;
  guint32 seed = argc > 3 ? (guint32) atoi (argv[3]) : 1;
  g_autoptr (GError) error = NULL;
  G3nModel *ref = n > 0 ? g3n_model_load (dir, &error) : NULL;
  if (!ref) {
    fprintf (stderr, "quant-accuracy: %s\n", error ? error->message : "TOKENS must be positive");
    return 1;
  }
  int V = g3n_model_n_vocab (ref);
  int32_t *ids = g_new (int32_t, n);
  GRand *rand = g_rand_new_with_seed (seed);
  ids[0] = g3n_model_bos_token (ref);
  for (int i = 1; i < n; i++) /* away from the special tokens at the start; ids the model can embed */
    do
      ids[i] = (int32_t) g_rand_int_range (rand, MIN (V - 1, 256), V);
    while (!g3n_model_check_ids (ref, &ids[i], 1, NULL));
  g_rand_free (rand);
  float *want = all_logits (ref, ids, n, n, &error);
  if (!want) {
    fprintf (stderr, "quant-accuracy: %s\n", error->message);
    return 1;
  }
  printf ("%s, %d random tokens (seed %u), logits for every position\n\n", dir, n, seed);
  printf ("| weights | max abs dlogit | mean abs dlogit | max abs logit | top-1 agreement | seconds |\n");
  printf ("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  /* Two baselines first, to show how strongly the model amplifies small changes: the same fp32 math in
   * another summation order (token by token), and activations rounded to BF16 (~0.4%, like Q8_0's weight
   * error) in the prompt products. */
  gboolean ok = compare (ref, "fp32, token by token", 1, ids, n, want, g_get_monotonic_time (), &error);
  g3n_kernels_set_bf16_activations (TRUE);
  ok = ok && compare (ref, "bf16 activations", n, ids, n, want, g_get_monotonic_time (), &error);
  g3n_kernels_set_bf16_activations (FALSE);
  g3n_model_unref (ref); /* the quantised copies replace the weights of their own loads */
  ok = ok && compare_quantised (dir, G3N_QUANT_Q8_0, ids, n, want, &error);
  ok = ok && compare_quantised (dir, G3N_QUANT_Q4_0, ids, n, want, &error);
  if (!ok) {
    fprintf (stderr, "quant-accuracy: %s\n", error->message);
    return 1;
  }
  g_free (want);
  g_free (ids);
  return 0;
}
