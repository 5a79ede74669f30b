/* test-util.h — what every C test of the project shares: one line per check ("ok   …" / "FAIL …"), the
 * closing "N passed, M failed" line the CI reads, and the relative error the fixtures' tolerances use. */
#ifndef G3N_TEST_UTIL_H
#define G3N_TEST_UTIL_H

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

#endif
