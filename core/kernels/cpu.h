/* cpu.h — what this CPU can run, in one place: feature detection, the kernel set the kernels use (the best
 * the CPU has, or the one G3N_KERNEL forces), and the target strings the SIMD kernels are compiled with.
 *
 * Every kernel file takes its ISA from here (dot.c, half.c, gemm-bf16.c, quant-dot.c, quant-gemm.c through
 * quant-dot.c), so a forced set is honoured everywhere or nowhere. The element-wise ops of ops.c are the
 * exception: GCC's target_clones pick their variant at load time.
 *
 * Environment overrides, for tests:
 *   G3N_KERNEL=portable|avx2|avx512  use that set. A set the CPU lacks is not used: the best one it has
 *                                    is, with a warning, and g3n_cpu_forced_missing() names what it lacks
 *                                    (tests report such a set as skipped, never as passed).
 *   G3N_CPU_DISABLE=avx512f,...      detect as if the CPU lacked these features (names as in
 *                                    g3n_cpu_feature_name; "all" masks every one), to exercise the paths
 *                                    of smaller CPUs and the handling of absent sets.
 */
#ifndef G3N_CPU_H
#define G3N_CPU_H

#include <glib.h>

G_BEGIN_DECLS

#if defined(__x86_64__) || defined(__i386__)
#define G3N_X86 1
#endif

/* Target strings of the SIMD kernels (function attributes). Each set's detection below requires at least
 * the features its kernels are compiled with. */
#define G3N_TARGET_AVX2 "avx2,fma,f16c"
#define G3N_TARGET_AVX512 "avx512f"
#define G3N_TARGET_VNNI "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq"
#define G3N_TARGET_BF16DP "avx512f,avx512bf16"

typedef enum {
  G3N_CPU_AVX2 = 1 << 0,
  G3N_CPU_FMA = 1 << 1,
  G3N_CPU_F16C = 1 << 2,
  G3N_CPU_AVX512F = 1 << 3,
  G3N_CPU_AVX512BW = 1 << 4,
  G3N_CPU_AVX512VL = 1 << 5,
  G3N_CPU_AVX512DQ = 1 << 6,
  G3N_CPU_AVX512VNNI = 1 << 7,
  G3N_CPU_AVX512BF16 = 1 << 8,
} G3nCpuFeature;

#define G3N_CPU_N_FEATURES 9

/* What each kernel set needs: AVX2 kernels use FMA and F16C; the AVX-512 set falls back on AVX2 kernels
 * where it has none of its own. The integer kernels' VNNI form and the BF16 dot-product GEMM are variants
 * inside the AVX-512 set, used when the CPU has them too. */
#define G3N_CPU_NEEDS_AVX2 (G3N_CPU_AVX2 | G3N_CPU_FMA | G3N_CPU_F16C)
#define G3N_CPU_NEEDS_AVX512 (G3N_CPU_NEEDS_AVX2 | G3N_CPU_AVX512F)
#define G3N_CPU_NEEDS_VNNI \
  (G3N_CPU_AVX512F | G3N_CPU_AVX512BW | G3N_CPU_AVX512VL | G3N_CPU_AVX512DQ | G3N_CPU_AVX512VNNI)
#define G3N_CPU_NEEDS_BF16DP (G3N_CPU_AVX512F | G3N_CPU_AVX512BF16)

typedef enum {
  G3N_ISA_PORTABLE,
  G3N_ISA_AVX2,
  G3N_ISA_AVX512,
} G3nIsa;

/* The features detected (less G3N_CPU_DISABLE), a mask of G3nCpuFeature; 0 off x86. */
guint g3n_cpu_features (void);
/* Whether the CPU has every feature of the mask. */
gboolean g3n_cpu_has (guint features);
/* GCC's name of one feature ("avx512vnni"), NULL for anything else. */
const char *g3n_cpu_feature_name (G3nCpuFeature feature);
/* The features of `needs` the CPU lacks, as "a b c" (g_free), NULL when it has them all. */
char *g3n_cpu_missing (guint needs);

/* The kernel set in use, chosen once: the best the CPU has, or G3N_KERNEL's when the CPU has it. */
G3nIsa g3n_cpu_isa (void);
/* "portable", "avx2", "avx512". */
const char *g3n_cpu_isa_name (G3nIsa isa);
/* The features each set needs (G3N_CPU_NEEDS_*; 0 for portable). */
guint g3n_cpu_isa_needs (G3nIsa isa);
/* When G3N_KERNEL forced a set this CPU lacks: what it lacks, as g3n_cpu_missing (g_free); NULL otherwise. */
char *g3n_cpu_forced_missing (void);

G_END_DECLS

#endif
