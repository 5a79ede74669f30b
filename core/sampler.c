/* sampler.c — choosing the next token from logits, as transformers' generate() does.
 *
 * The order is HF's: repetition penalty on the logits, then temperature, top-k, top-p, min-p, then a draw
 * from the softmax of what is left. Greedy (temperature <= 0) is the argmax, first index on ties.
 */
#include "gemma3n.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct _G3nSampler {
  G3nSamplerParams params;
  guint64 rng;
  GHashTable *seen; /* tokens accepted so far (+1), for the repetition penalty */
  /* scratch, reused across calls */
  int n_scratch;
  float *scores;
  int32_t *order;
};

G3nSamplerParams
g3n_sampler_default_params (void)
{
  /* Gemma 3n's generation_config.json when sampling */
  return (G3nSamplerParams) {
    .temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .min_p = 0.0f, .repetition_penalty = 1.0f, .seed = 0,
  };
}

G3nSamplerParams
g3n_sampler_greedy_params (void)
{
  G3nSamplerParams p = g3n_sampler_default_params ();
  p.temperature = 0;
  return p;
}

G3nSampler *
g3n_sampler_new (const G3nSamplerParams *params)
{
  G3nSampler *s = g_new0 (G3nSampler, 1);
  s->params = params ? *params : g3n_sampler_default_params ();
  s->rng = s->params.seed ? s->params.seed : (guint64) g_get_real_time ();
  s->seen = g_hash_table_new (NULL, NULL);
  return s;
}

void
g3n_sampler_free (G3nSampler *s)
{
  if (!s)
    return;
  g_hash_table_destroy (s->seen);
  g_free (s->scores);
  g_free (s->order);
  g_free (s);
}

void
g3n_sampler_accept (G3nSampler *s, int32_t token)
{
  g_hash_table_add (s->seen, GINT_TO_POINTER (token + 1));
}

void
g3n_sampler_reset (G3nSampler *s)
{
  g_hash_table_remove_all (s->seen);
}

/* splitmix64: small, seedable, good enough for sampling */
static double
next_uniform (G3nSampler *s)
{
  guint64 z = (s->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double) (z >> 11) / 9007199254740992.0;
}

static int
argmax (const float *x, int n)
{
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best])
      best = i;
  return best;
}

static int
by_score_desc (gconstpointer a, gconstpointer b, gpointer keys)
{
  const float *sort_keys = keys;
  float x = sort_keys[*(const int32_t *) a], y = sort_keys[*(const int32_t *) b];
  if (x != y)
    return x > y ? -1 : 1;
  return *(const int32_t *) a - *(const int32_t *) b;
}

static void
ensure_scratch (G3nSampler *s, int n)
{
  if (s->n_scratch >= n)
    return;
  s->scores = g_renew (float, s->scores, n);
  s->order = g_renew (int32_t, s->order, n);
  s->n_scratch = n;
}

int
g3n_sampler_candidates (G3nSampler *s, const float *logits, int n_vocab, int32_t *ids, float *probs)
{
  const G3nSamplerParams *p = &s->params;
  ensure_scratch (s, n_vocab);
  float *x = s->scores;
  memcpy (x, logits, sizeof (float) * n_vocab);
  if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f) {
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init (&it, s->seen);
    while (g_hash_table_iter_next (&it, &key, NULL)) {
      int t = GPOINTER_TO_INT (key) - 1;
      if (t >= 0 && t < n_vocab)
        x[t] = x[t] < 0 ? x[t] * p->repetition_penalty : x[t] / p->repetition_penalty;
    }
  }
  if (p->temperature <= 0) {
    ids[0] = argmax (x, n_vocab);
    probs[0] = 1.0f;
    return 1;
  }
  for (int i = 0; i < n_vocab; i++) {
    x[i] /= p->temperature;
    s->order[i] = i;
  }
  /* Sorting everything is O(V log V) but simple; top-k first cuts it when set. */
  g_qsort_with_data (s->order, n_vocab, sizeof (int32_t), by_score_desc, x);
  int n = n_vocab;
  if (p->top_k > 0 && p->top_k < n) {
    float kth = x[s->order[p->top_k - 1]];
    n = p->top_k;
    while (n < n_vocab && x[s->order[n]] == kth) /* HF keeps every token tied with the k-th */
      n++;
  }
  /* softmax over the survivors */
  double max = x[s->order[0]], sum = 0;
  for (int i = 0; i < n; i++) {
    probs[i] = (float) exp (x[s->order[i]] - max);
    sum += probs[i];
  }
  for (int i = 0; i < n; i++)
    probs[i] = (float) (probs[i] / sum);
  if (p->top_p > 0 && p->top_p < 1) {
    /* HF drops the low tail whose cumulative mass is <= 1 - top_p (ascending order), keeping >= 1 token. */
    double tail = 0;
    int keep = n;
    for (int i = n - 1; i > 0; i--) {
      tail += probs[i];
      if (tail <= 1.0 - p->top_p)
        keep = i;
      else
        break;
    }
    n = keep;
  }
  if (p->min_p > 0) {
    float cut = p->min_p * probs[0];
    int keep = 1;
    while (keep < n && probs[keep] >= cut)
      keep++;
    n = keep;
  }
  sum = 0;
  for (int i = 0; i < n; i++)
    sum += probs[i];
  for (int i = 0; i < n; i++) {
    ids[i] = s->order[i];
    probs[i] = (float) (probs[i] / sum);
  }
  return n;
}

int32_t
g3n_sampler_sample (G3nSampler *s, const float *logits, int n_vocab)
{
  ensure_scratch (s, n_vocab);
  int32_t *ids = g_new (int32_t, n_vocab);
  float *probs = g_new (float, n_vocab);
  int n = g3n_sampler_candidates (s, logits, n_vocab, ids, probs);
  int32_t token = ids[n - 1];
  double u = next_uniform (s), acc = 0;
  for (int i = 0; i < n; i++) {
    acc += probs[i];
    if (u < acc) {
      token = ids[i];
      break;
    }
  }
  g_free (ids);
  g_free (probs);
  g3n_sampler_accept (s, token);
  return token;
}
