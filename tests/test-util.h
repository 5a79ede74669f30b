/* test-util.h — what every C test of the project shares: one line per check ("ok   …" / "FAIL …"), the
 * closing "N passed, M failed" line the CI reads, the relative error the fixtures' tolerances use, and the
 * logit comparisons (tools/quant-accuracy uses those too). */
#ifndef G3N_TEST_UTIL_H
#define G3N_TEST_UTIL_H

#include "gemma3n.h"

#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static G_GNUC_UNUSED int test_passed, test_failed;

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


/* How far logits `got` [T, V] are from `want`: largest and mean |got - want| (NaN counts as infinite),
 * largest |want| for scale, and at how many positions both pick the same top token. */
typedef struct {
  double max_diff, mean_diff, max_ref;
  int agree;
} LogitDiff;

static G_GNUC_UNUSED LogitDiff
logit_diff (const float *got, const float *want, int T, int V)
{
  LogitDiff r = { 0 };
  double sum = 0;
  for (int t = 0; t < T; t++) {
    const float *a = got + (gsize) t * V, *b = want + (gsize) t * V;
    for (int v = 0; v < V; v++) {
      double d = fabs ((double) a[v] - b[v]);
      r.max_diff = isnan (d) ? INFINITY : fmax (r.max_diff, d);
      sum += d;
      r.max_ref = fmax (r.max_ref, fabs (b[v]));
    }
    r.agree += argmax (a, V) == argmax (b, V);
  }
  r.mean_diff = sum / ((double) T * V);
  return r;
}

/* Overwrites `size` bytes at byte `at` of tensor `name`'s data in the safetensors file `path`, to build a
 * hostile file from a valid one. The tensor's place comes from the header text our writer makes
 * ("NAME":{..."data_offsets":[BEGIN,END]}), so the test does not trust the reader under test. */
static G_GNUC_UNUSED gboolean
patch_tensor (const char *path, const char *name, gsize at, const void *bytes, gsize size)
{
  g_autofree char *buf = NULL, *key = g_strdup_printf ("\"%s\"", name);
  gsize len = 0;
  guint64 header = 0, begin = 0, end = 0;
  if (!g_file_get_contents (path, &buf, &len, NULL) || len < 8)
    return FALSE;
  memcpy (&header, buf, 8); /* little-endian, as the format and this machine */
  g_autofree char *json = header <= len - 8 ? g_strndup (buf + 8, header) : NULL;
  const char *entry = json ? strstr (json, key) : NULL;
  const char *offsets = entry ? strstr (entry, "\"data_offsets\"") : NULL;
  if (!offsets || sscanf (offsets, "\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]", &begin, &end) != 2
      || at + size > end - begin || 8 + header + end > len)
    return FALSE;
  memcpy (buf + 8 + header + begin + at, bytes, size);
  return g_file_set_contents (path, buf, len, NULL);
}

#endif
