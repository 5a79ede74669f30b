/* cpu.c — CPU feature detection and the choice of kernel set (see cpu.h). */
#include "cpu.h"
#include "kernels.h"

#include <string.h>

static const char *const feature_names[G3N_CPU_N_FEATURES] = {
  "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vnni", "avx512bf16",
};

static const char *const isa_names[] = { "portable", "avx2", "avx512" };

const char *
g3n_cpu_feature_name (G3nCpuFeature feature)
{
  for (int i = 0; i < G3N_CPU_N_FEATURES; i++)
    if (feature == (1u << i))
      return feature_names[i];
  return NULL;
}

static guint
detect (void)
{
  guint f = 0;
#ifdef G3N_X86
  /* GCC's resolver: CPUID, and for the AVX states the OS support (XGETBV) as well */
  __builtin_cpu_init ();
  f |= __builtin_cpu_supports ("avx2") ? G3N_CPU_AVX2 : 0;
  f |= __builtin_cpu_supports ("fma") ? G3N_CPU_FMA : 0;
  f |= __builtin_cpu_supports ("f16c") ? G3N_CPU_F16C : 0;
  f |= __builtin_cpu_supports ("avx512f") ? G3N_CPU_AVX512F : 0;
  f |= __builtin_cpu_supports ("avx512bw") ? G3N_CPU_AVX512BW : 0;
  f |= __builtin_cpu_supports ("avx512vl") ? G3N_CPU_AVX512VL : 0;
  f |= __builtin_cpu_supports ("avx512dq") ? G3N_CPU_AVX512DQ : 0;
  f |= __builtin_cpu_supports ("avx512vnni") ? G3N_CPU_AVX512VNNI : 0;
  f |= __builtin_cpu_supports ("avx512bf16") ? G3N_CPU_AVX512BF16 : 0;
#endif
  return f;
}

/* G3N_CPU_DISABLE: a comma- or space-separated list of feature names, or "all". */
static guint
disabled (void)
{
  const char *e = g_getenv ("G3N_CPU_DISABLE");
  if (!e || !*e)
    return 0;
  guint mask = 0;
  char **names = g_strsplit_set (e, ", ", -1);
  for (char **n = names; *n; n++) {
    if (!**n)
      continue;
    if (g_ascii_strcasecmp (*n, "all") == 0) {
      mask = ~0u;
      continue;
    }
    gboolean known = FALSE;
    for (int i = 0; i < G3N_CPU_N_FEATURES; i++)
      if (g_ascii_strcasecmp (*n, feature_names[i]) == 0)
        mask |= 1u << i, known = TRUE;
    if (!known)
      g_warning ("G3N_CPU_DISABLE: unknown feature '%s' ignored", *n);
  }
  g_strfreev (names);
  return mask;
}

static gpointer
read_features (gpointer unused)
{
  return GUINT_TO_POINTER (detect () & ~disabled ());
}

guint
g3n_cpu_features (void)
{
  static GOnce once = G_ONCE_INIT;
  return GPOINTER_TO_UINT (g_once (&once, read_features, NULL));
}

gboolean
g3n_cpu_has (guint features)
{
  return (g3n_cpu_features () & features) == features;
}

char *
g3n_cpu_missing (guint needs)
{
  guint lacks = needs & ~g3n_cpu_features ();
  if (!lacks)
    return NULL;
  GString *s = g_string_new (NULL);
  for (int i = 0; i < G3N_CPU_N_FEATURES; i++)
    if (lacks & (1u << i))
      g_string_append_printf (s, "%s%s", s->len ? " " : "", feature_names[i]);
  return g_string_free (s, FALSE);
}

const char *
g3n_cpu_isa_name (G3nIsa isa)
{
  return isa >= 0 && isa < (int) G_N_ELEMENTS (isa_names) ? isa_names[isa] : "unknown";
}

guint
g3n_cpu_isa_needs (G3nIsa isa)
{
  switch (isa) {
  case G3N_ISA_AVX512:
    return G3N_CPU_NEEDS_AVX512;
  case G3N_ISA_AVX2:
    return G3N_CPU_NEEDS_AVX2;
  default:
    return 0;
  }
}

typedef struct {
  G3nIsa isa;
  char *forced_missing; /* G3N_KERNEL's set, when the CPU lacks it: what it lacks */
} Choice;

static gpointer
choose (gpointer unused)
{
  static Choice c;
  G3nIsa best = G3N_ISA_PORTABLE;
#ifdef G3N_X86
  if (g3n_cpu_has (G3N_CPU_NEEDS_AVX512))
    best = G3N_ISA_AVX512;
  else if (g3n_cpu_has (G3N_CPU_NEEDS_AVX2))
    best = G3N_ISA_AVX2;
#endif
  c.isa = best;
  const char *force = g_getenv ("G3N_KERNEL");
  if (force && *force) {
    int want = -1;
    for (int i = 0; i < (int) G_N_ELEMENTS (isa_names); i++)
      if (g_str_equal (force, isa_names[i]))
        want = i;
    if (want < 0) {
      g_warning ("G3N_KERNEL=%s: not a kernel set (portable, avx2, avx512); using %s", force,
                 isa_names[best]);
    } else if ((c.forced_missing = g3n_cpu_missing (g3n_cpu_isa_needs (want)))) {
      g_warning ("G3N_KERNEL=%s: this CPU lacks %s; using %s", force, c.forced_missing, isa_names[best]);
    } else {
      c.isa = want;
    }
  }
  return &c;
}

static const Choice *
choice (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose, NULL);
}

G3nIsa
g3n_cpu_isa (void)
{
  return choice ()->isa;
}

char *
g3n_cpu_forced_missing (void)
{
  return g_strdup (choice ()->forced_missing);
}

const char *
g3n_kernels_isa (void)
{
  return g3n_cpu_isa_name (g3n_cpu_isa ());
}
