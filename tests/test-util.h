/* test-util.h — what every C test of the project shares: one line per check ("ok   …" / "FAIL …"), the
 * closing "N passed, M failed" line the CI reads, and the relative error the fixtures' tolerances use. */
#ifndef G3N_TEST_UTIL_H
#define G3N_TEST_UTIL_H

#include "gemma3n.h"

#include <glib.h>
#include <math.h>
#include <stdio.h>

static int test_passed, test_failed;

static G_GNUC_UNUSED void G_GNUC_PRINTF (2, 3)
check (gboolean ok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("%s %s\n", ok ? "ok  " : "FAIL", msg);
  if (ok)
    test_passed++;
  else
    test_failed++;
}

/* Prints the closing line and gives the exit status. */
static G_GNUC_UNUSED int
test_summary (void)
{
  printf ("%d passed, %d failed\n", test_passed, test_failed);
  return test_failed ? 1 : 0;
}

/* max|a - b| / max|b|: the MANIFEST tolerances' measure (b is the reference). */
static G_GNUC_UNUSED double
rel_err (const float *a, const float *b, gsize n)
{
  double d = 0, m = 0;
  for (gsize i = 0; i < n; i++) {
    double x = fabs ((double) a[i] - b[i]);
    d = isnan (x) ? INFINITY : fmax (d, x);
    m = fmax (m, fabs (b[i]));
  }
  return m > 0 ? d / m : d;
}

/* Logits of every position of ids[T], fed to a fresh context (params may be NULL) in pieces of `chunk`
 * tokens. */
static G_GNUC_UNUSED float *
logits_chunked_params (G3nModel *m, const G3nContextParams *params, const int32_t *ids, int T, int chunk)
{
  int V = g3n_model_n_vocab (m);
  float *logits = g_new (float, (gsize) T * V);
  G3nContext *ctx = g3n_context_new (m, params, NULL);
  for (int t0 = 0; t0 < T; t0 += chunk) {
    G3nBatch b = { .n_tokens = MIN (chunk, T - t0), .ids = ids + t0, .all_logits = TRUE,
                   .logits = logits + (gsize) t0 * V };
    g_assert (g3n_context_decode (ctx, &b, NULL));
  }
  g3n_context_free (ctx);
  return logits;
}

static G_GNUC_UNUSED float *
logits_chunked (G3nModel *m, const int32_t *ids, int T, int chunk)
{
  return logits_chunked_params (m, NULL, ids, T, chunk);
}

/* Index of the largest value, the first one on ties (torch.argmax). */
static G_GNUC_UNUSED int
argmax (const float *v, int n)
{
  int best = 0;
  for (int i = 1; i < n; i++)
    best = v[i] > v[best] ? i : best;
  return best;
}

#endif
