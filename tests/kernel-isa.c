/* kernel-isa — which kernel sets this process runs, for test-kernel-paths.tap.
 *
 *   kernel-isa features   prints the CPU features the kernels detect (after G3N_CPU_DISABLE) and the ones
 *                         they look for but this CPU lacks
 *   kernel-isa            prints the sets in use ("avx512: dot/half avx512, quant vnni, gemm avx512+bf16dp")
 *                         and exits 0; when G3N_KERNEL forces a set this CPU lacks, prints what it lacks and
 *                         exits 77 (skip); when G3N_KERNEL is not a set's name, exits 1.
 */
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

#include <stdio.h>

int
main (int argc, char **argv)
{
  if (argc > 1 && g_str_equal (argv[1], "features")) {
    GString *has = g_string_new (NULL), *lacks = g_string_new (NULL);
    for (int i = 0; i < G3N_CPU_N_FEATURES; i++) {
      GString *s = g3n_cpu_has (1u << i) ? has : lacks;
      g_string_append_printf (s, " %s", g3n_cpu_feature_name (1u << i));
    }
    printf ("has:%s; lacks:%s\n", has->len ? has->str : " -", lacks->len ? lacks->str : " -");
    g_string_free (has, TRUE), g_string_free (lacks, TRUE);
    return 0;
  }
  if (argc > 1) {
    fprintf (stderr, "usage: kernel-isa [features]\n");
    return 2;
  }
  /* g3n_cpu_isa() warns on stderr when G3N_KERNEL cannot be honoured; the caller reads stdout */
  const char *isa = g3n_cpu_isa_name (g3n_cpu_isa ());
  const char *force = g_getenv ("G3N_KERNEL");
  g_autofree char *missing = g3n_cpu_forced_missing ();
  if (missing) {
    printf ("CPU lacks %s (G3N_KERNEL=%s would run %s)\n", missing, force, isa);
    return 77;
  }
  if (force && *force && !g_str_equal (force, isa)) {
    printf ("G3N_KERNEL=%s is not a kernel set\n", force);
    return 1;
  }
  printf ("%s: dot/half %s, quant %s, gemm %s\n", isa, g3n_kernels_isa (), g3n_qdot_isa (), g3n_gemm_isa ());
  return 0;
}
