/* test-sampler — sampler properties on a synthetic distribution.
 *
 * The kept sets are computed here by hand from the definitions (HF's warpers), and the empirical frequencies
 * of seeded draws must lie within 5 standard errors of the renormalised probabilities.
 */
#include "test-util.h"
#include "gemma3n.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* logits = log p for p ∝ {0.30, 0.25, 0.15, 0.10, 0.08, 0.05, 0.04, 0.02, 0.01, 0.00(−inf-ish)} but shuffled */
#define V 10
static const int perm[V] = { 3, 7, 0, 9, 5, 1, 8, 2, 6, 4 };
static const double mass[V] = { 0.30, 0.25, 0.15, 0.10, 0.08, 0.05, 0.04, 0.02, 0.01, 1e-9 };

static void
make_logits (float *logits)
{
  for (int r = 0; r < V; r++)
    logits[perm[r]] = (float) log (mass[r]);
}

/* The ids of ranks [0, n) */
static gboolean
kept_is (const int32_t *ids, int n_got, int n_want)
{
  if (n_got != n_want)
    return FALSE;
  for (int i = 0; i < n_want; i++)
    if (ids[i] != perm[i])
      return FALSE;
  return TRUE;
}

static int
kept (G3nSamplerParams p, int32_t *ids, float *probs)
{
  float logits[V];
  make_logits (logits);
  G3nSampler *s = g3n_sampler_new (&p);
  int n = g3n_sampler_candidates (s, logits, V, ids, probs);
  g3n_sampler_free (s);
  return n;
}

int
main (void)
{
  int32_t ids[V];
  float probs[V];
  G3nSamplerParams p = g3n_sampler_default_params ();
  check (p.temperature == 1.0f && p.top_k == 64 && fabsf (p.top_p - 0.95f) < 1e-7f,
         "defaults are Gemma's (temperature 1, top-k 64, top-p 0.95)");

  G3nSamplerParams plain = { .temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f, .seed = 7 };
  G3nSamplerParams q = plain;
  q.top_k = 3;
  check (kept_is (ids, kept (q, ids, probs), 3), "top-k 3 keeps exactly the 3 most likely");
  /* top-p drops the ascending tail while its cumulative mass is <= 1 - top_p. Tail sums: 1e-9, .01, .03,
   * .07, .12, .20, .30, .45, .70. top-p 0.75 → remove while <= .25: the six smallest go, 4 stay. */
  q = plain;
  q.top_p = 0.75f;
  check (kept_is (ids, kept (q, ids, probs), 4), "top-p 0.75 keeps the 4 most likely");
  q.top_p = 0.5f; /* remove while <= .5: up to the .15 token (.45); adding .25 gives .70 → 2 stay */
  check (kept_is (ids, kept (q, ids, probs), 2), "top-p 0.5 keeps the 2 most likely");
  q = plain;
  q.min_p = 0.3f; /* keep p >= 0.3 * 0.30 = 0.09: .30 .25 .15 .10 */
  check (kept_is (ids, kept (q, ids, probs), 4), "min-p 0.3 keeps the tokens with p >= 0.09 (4)");
  q = plain;
  q.top_k = 4;
  q.top_p = 0.7f; /* after top-k: .30 .25 .15 .10 renormalised /0.8 → .375 .3125 .1875 .125; tail <= .3 drops .125 */
  int n = kept (q, ids, probs);
  check (kept_is (ids, n, 3), "top-k then top-p act in HF's order (3 kept)");
  check (fabsf (probs[0] - 0.30f / 0.70f) < 1e-6f, "kept probabilities are renormalised (%.6f)", probs[0]);

  q = plain;
  q.temperature = 0;
  float logits[V];
  make_logits (logits);
  G3nSampler *s = g3n_sampler_new (&q);
  check (g3n_sampler_sample (s, logits, V) == perm[0], "temperature 0 is greedy");
  g3n_sampler_free (s);

  /* Repetition penalty: a seen token's positive logit is divided, a negative one multiplied. */
  q = plain;
  q.repetition_penalty = 2.0f;
  q.temperature = 0;
  float two[2] = { 1.0f, 0.6f };
  s = g3n_sampler_new (&q);
  g3n_sampler_accept (s, 0);
  check (g3n_sampler_sample (s, two, 2) == 1, "repetition penalty 2 turns 1.0 into 0.5 < 0.6");
  g3n_sampler_free (s);

  /* Empirical frequencies with a fixed seed: within 5 standard errors of the computed probabilities. */
  q = plain;
  q.top_k = 5;
  q.temperature = 0.7f;
  n = kept (q, ids, probs);
  const int draws = 200000;
  int counts[V] = { 0 };
  s = g3n_sampler_new (&q);
  for (int i = 0; i < draws; i++)
    counts[g3n_sampler_sample (s, logits, V)]++;
  g3n_sampler_free (s);
  gboolean within = TRUE;
  double worst = 0;
  for (int i = 0; i < n; i++) {
    double f = (double) counts[ids[i]] / draws, se = sqrt (probs[i] * (1 - probs[i]) / draws);
    worst = fmax (worst, fabs (f - probs[i]) / se);
    within = within && fabs (f - probs[i]) <= 5 * se;
  }
  int outside = draws;
  for (int i = 0; i < n; i++)
    outside -= counts[ids[i]];
  check (within && outside == 0, "frequencies of %d draws within 5 s.e. (worst %.2f s.e.), none outside the set",
         draws, worst);

  /* Same seed, same sequence. */
  int32_t a[20], b[20];
  for (int run = 0; run < 2; run++) {
    s = g3n_sampler_new (&q);
    for (int i = 0; i < 20; i++)
      (run ? b : a)[i] = g3n_sampler_sample (s, logits, V);
    g3n_sampler_free (s);
  }
  check (memcmp (a, b, sizeof a) == 0, "a fixed seed reproduces the draws");
  return test_summary ();
}
