/* tensor-compare — compares tensors of an output safetensors file with a golden one.
 *
 *   tensor-compare GOLDEN OUT NAME[=TOL] ...
 *   tensor-compare --ids FILE NAME        prints an integer tensor as comma-separated values
 *   tensor-compare --extract IN OUT NAME[:NEW]…  writes the named tensors of IN (renamed) to a new file OUT
 *
 * Float tensors pass when max|out - golden| / max|golden| <= TOL (the fixtures' MANIFEST tolerance);
 * integer tensors (and TOL "exact") must be identical. Shapes must match. Prints one line per tensor and
 * "N passed, M failed"; exits 1 if any failed.
 */
#include "gemma3n.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double
value (const G3nTensor *t, gsize i)
{
  const guint8 *p = (const guint8 *) t->data;
  switch (t->dtype) {
  case G3N_DTYPE_F32: {
    float f;
    memcpy (&f, p + 4 * i, 4);
    return f;
  }
  case G3N_DTYPE_F64: {
    double d;
    memcpy (&d, p + 8 * i, 8);
    return d;
  }
  case G3N_DTYPE_I64: {
    gint64 v;
    memcpy (&v, p + 8 * i, 8);
    return (double) v;
  }
  case G3N_DTYPE_I32: {
    gint32 v;
    memcpy (&v, p + 4 * i, 4);
    return v;
  }
  case G3N_DTYPE_U8:
  case G3N_DTYPE_BOOL:
    return p[i];
  default:
    return NAN;
  }
}

static gboolean
is_float (G3nDType d)
{
  return d == G3N_DTYPE_F32 || d == G3N_DTYPE_F64;
}

static gboolean
compare (const G3nTensor *g, const G3nTensor *o, double tol, gboolean exact)
{
  gboolean same_shape = g->ndim == o->ndim;
  for (int i = 0; same_shape && i < g->ndim; i++)
    same_shape = g->shape[i] == o->shape[i];
  if (!same_shape) {
    g_autofree char *a = g3n_shape_to_string (g->ndim, g->shape), *b = g3n_shape_to_string (o->ndim, o->shape);
    printf ("FAIL %s: shape %s, expected %s\n", g->name, b, a);
    return FALSE;
  }
  gsize n = (gsize) g3n_tensor_numel (g);
  double max_diff = 0, max_ref = 0;
  gsize worst = 0, n_diff = 0;
  for (gsize i = 0; i < n; i++) {
    double a = value (g, i), b = value (o, i);
    double d = fabs (a - b);
    if (isnan (b) && !isnan (a))
      d = INFINITY;
    if (d > max_diff)
      max_diff = d, worst = i;
    n_diff += d != 0;
    max_ref = fmax (max_ref, fabs (a));
  }
  exact = exact || !is_float (g->dtype);
  double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
  gboolean ok = exact ? n_diff == 0 : rel <= tol;
  if (exact)
    printf ("%s %s: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " values differ (exact)", ok ? "ok  " : "FAIL", g->name,
            n_diff, n);
  else
    printf ("%s %s: max|diff|/max|ref| = %.3g (tolerance %.3g)", ok ? "ok  " : "FAIL", g->name, rel, tol);
  if (!ok)
    printf (" — first worst at flat index %" G_GSIZE_FORMAT ": got %.7g, expected %.7g", worst, value (o, worst),
            value (g, worst));
  printf ("\n");
  return ok;
}

static int
print_ids (const char *path, const char *name)
{
  g_autoptr (GError) error = NULL;
  G3nSafetensors *st = g3n_safetensors_open (path, &error);
  const G3nTensor *t = st ? g3n_safetensors_find (st, name) : NULL;
  if (!t || is_float (t->dtype)) {
    fprintf (stderr, "tensor-compare: %s\n", error ? error->message : "no such integer tensor");
    g3n_safetensors_free (st);
    return 2;
  }
  for (gsize i = 0; i < (gsize) g3n_tensor_numel (t); i++)
    printf ("%s%.0f", i ? "," : "", value (t, i));
  printf ("\n");
  g3n_safetensors_free (st);
  return 0;
}

static int
extract (const char *in_path, const char *out_path, char **names, int n)
{
  g_autoptr (GError) error = NULL;
  G3nSafetensors *in = g3n_safetensors_open (in_path, &error);
  g_autofree G3nTensor *picked = g_new0 (G3nTensor, MAX (n, 1));
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  for (int i = 0; in && i < n; i++) {
    char **p = g_strsplit (names[i], ":", 2);
    g_ptr_array_add (parts, p);
    const G3nTensor *t = g3n_safetensors_find (in, p[0]);
    if (!t) {
      fprintf (stderr, "tensor-compare: %s has no %s\n", in_path, p[0]);
      g3n_safetensors_free (in);
      return 2;
    }
    picked[i] = *t;
    picked[i].name = p[1] ? p[1] : p[0];
  }
  gboolean ok = in && g3n_safetensors_write (out_path, picked, n, &error);
  if (!ok)
    fprintf (stderr, "tensor-compare: %s\n", error->message);
  g3n_safetensors_free (in);
  return ok ? 0 : 2;
}

int
main (int argc, char **argv)
{
  if (argc == 4 && strcmp (argv[1], "--ids") == 0)
    return print_ids (argv[2], argv[3]);
  if (argc >= 4 && strcmp (argv[1], "--extract") == 0)
    return extract (argv[2], argv[3], argv + 4, argc - 4);
  if (argc < 4) {
    fprintf (stderr, "usage: %s GOLDEN OUT NAME[=TOL|=exact] ...\n", argv[0]);
    return 2;
  }
  g_autoptr (GError) error = NULL;
  G3nSafetensors *golden = g3n_safetensors_open (argv[1], &error);
  G3nSafetensors *out = golden ? g3n_safetensors_open (argv[2], &error) : NULL;
  if (!out) {
    fprintf (stderr, "tensor-compare: %s\n", error->message);
    return 2;
  }
  int passed = 0, failed = 0;
  for (int i = 3; i < argc; i++) {
    g_auto (GStrv) parts = g_strsplit (argv[i], "=", 2);
    gboolean exact = parts[1] && strcmp (parts[1], "exact") == 0;
    double tol = parts[1] && !exact ? g_ascii_strtod (parts[1], NULL) : 1e-4;
    const G3nTensor *g = g3n_safetensors_find (golden, parts[0]), *o = g3n_safetensors_find (out, parts[0]);
    if (!g || !o) {
      printf ("FAIL %s: missing from %s\n", parts[0], g ? argv[2] : argv[1]);
      failed++;
      continue;
    }
    if (compare (g, o, tol, exact))
      passed++;
    else
      failed++;
  }
  printf ("%d passed, %d failed\n", passed, failed);
  g3n_safetensors_free (out);
  g3n_safetensors_free (golden);
  return failed ? 1 : 0;
}
