/* test-bf16-activations — the decoder with g3n_kernels_set_bf16_activations on (the opt-in fast prefill:
 * multi-token products on BF16 weights with activations rounded to BF16, vdpbf16ps on AVX512_BF16 CPUs)
 * against the same decoder with it off, on the tiny text fixtures.
 *
 * The products themselves are checked by test-kernels (against the reference on rounded activations).
 * Here the question is how far the rounding (relative 2^-9 per activation) carries through the model. The
 * fixtures have random weights and amplify any perturbation enormously (test-quant.c: a 0.4% weight
 * perturbation moves their logits by 12-23% of their range; Q8_0 weights by 23-28%), so the bounds are
 * loose and only catch gross breakage. Measured (AVX-512 with vdpbf16ps, AVX2, portable, 1 and 2 threads):
 *   mm-tiny         max |dlogit| 1.18 = 0.063 of max |logit|, mean 0.083; top-1 agreement 43/48;
 *                   teacher-forced greedy ids 14/16
 *   text-matformer  max |dlogit| 2.29 = 0.132 of max |logit|, mean 0.154; top-1 agreement 34/40;
 *                   teacher-forced greedy ids 14/16 (AVX2, portable: 15/16)
 * Bounds: relative deviation <= 0.2, top-1 agreement >= 75%, teacher-forced ids >= 12 of 16. "Teacher-
 * forced": the reference's prompt + generated ids fed as one batch, each generation position's argmax
 * against the reference's id. Free-running greedy generation (the whole sequence re-fed per step, so that
 * every prediction goes through multi-token products) is reported, not bounded: it follows the exact path
 * for 4-8 of 16 tokens on mm-tiny and 1 on text-matformer, after which one different id changes all later
 * ones. With a KV cache, steps after the prompt are single tokens, which this setting does not touch.
 * Run under each G3N_KERNEL by test-kernel-paths.tap.
 */
#include "test-util.h"
#include "kernels/kernels.h"
#include "model.h"
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

#define MIN_FORCED 12

static int32_t *
golden_ids (G3nSafetensors *g, const char *name, int *n)
{
  const G3nTensor *t = g3n_safetensors_find (g, name);
  g_assert (t);
  *n = (int) g3n_tensor_numel (t);
  int32_t *ids = g_new (int32_t, *n);
  for (int i = 0; i < *n; i++)
    ids[i] = (int32_t) ((const gint64 *) t->data)[i];
  return ids;
}

/* Logits of every position, the prompt fed as one batch. */
/* N greedy tokens after prompt[T], each step a fresh context fed the whole sequence so far. */
static int32_t *
generate (G3nModel *m, const int32_t *prompt, int T, int N)
{
  int V = g3n_model_n_vocab (m);
  int32_t *seq = g_new (int32_t, T + N);
  memcpy (seq, prompt, sizeof (int32_t) * T);
  g_autofree float *last = g_new (float, V);
  for (int i = 0; i < N; i++) {
    G3nContext *ctx = g3n_context_new (m, NULL, NULL);
    G3nBatch b = { .n_tokens = T + i, .ids = seq, .logits = last };
    g_assert (g3n_context_decode (ctx, &b, NULL));
    g3n_context_free (ctx);
    seq[T + i] = argmax (last, V);
  }
  return seq;
}

static void
compare (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *golden_path = g_build_filename (dir, "golden.safetensors", NULL);
  G3nModel *m = g3n_model_load (dir, &error);
  G3nSafetensors *g = m ? g3n_safetensors_open (golden_path, &error) : NULL;
  if (!g) {
    check (FALSE, "load %s: %s", dir, error ? error->message : "?");
    return;
  }
  int T, P, N, V = g3n_model_n_vocab (m);
  g_autofree int32_t *ids = golden_ids (g, "text_input_ids", &T);
  g_autofree int32_t *prompt = golden_ids (g, "generate_prompt_ids", &P);
  g_autofree int32_t *golden_gen = golden_ids (g, "generated_ids", &N);

  g3n_kernels_set_bf16_activations (FALSE);
  g_autofree float *exact = logits_chunked (m, ids, T, T);
  g_autofree int32_t *gen_exact = generate (m, prompt, P, N);
  g3n_kernels_set_bf16_activations (TRUE);
  g_autofree float *fast = logits_chunked (m, ids, T, T);
  g_autofree int32_t *gen_fast = generate (m, prompt, P, N);
  g3n_kernels_set_bf16_activations (FALSE);

  LogitDiff q = logit_diff (fast, exact, T, V);
  double rel = q.max_diff / q.max_ref;
  check (rel <= 0.2 && q.agree >= 0.75 * T,
         "%s (%s): bf16 activations vs exact: max |dlogit| %.4f (rel %.3g <= 0.2), mean %.5f, top-1 agreement "
         "%d/%d (>= 75%%)", dir, g3n_kernels_isa (), q.max_diff, rel, q.mean_diff, q.agree, T);

  /* Teacher-forced: the reference's prompt + generated ids as one batch; the prediction at each generation
   * position against the reference's greedy id. Free of the cascade of free-running generation, where the
   * first different id makes every later one differ. */
  g_autofree int32_t *seq = g_new (int32_t, P + N - 1);
  memcpy (seq, prompt, sizeof (int32_t) * P);
  memcpy (seq + P, golden_gen, sizeof (int32_t) * (N - 1));
  g3n_kernels_set_bf16_activations (TRUE);
  g_autofree float *forced = logits_chunked (m, seq, P + N - 1, P + N - 1);
  g3n_kernels_set_bf16_activations (FALSE);
  g_autofree float *forced_exact = logits_chunked (m, seq, P + N - 1, P + N - 1);
  int forced_ok = 0, forced_exact_ok = 0, prefix = 0, exact_golden = 0;
  for (int i = 0; i < N; i++) {
    forced_ok += argmax (forced + (gsize) (P - 1 + i) * V, V) == golden_gen[i];
    forced_exact_ok += argmax (forced_exact + (gsize) (P - 1 + i) * V, V) == golden_gen[i];
    exact_golden += gen_exact[P + i] == golden_gen[i];
  }
  while (prefix < N && gen_fast[P + prefix] == gen_exact[P + prefix])
    prefix++;
  /* the exact path must reproduce the reference's greedy ids: that is what makes the comparison fair */
  check (exact_golden == N && forced_exact_ok == N,
         "%s: exact path, greedy (whole sequence per step) and teacher-forced, equals the reference: %d/%d, %d/%d",
         dir, exact_golden, N, forced_exact_ok, N);
  check (forced_ok >= MIN_FORCED * N / 16,
         "%s: bf16 activations: teacher-forced greedy ids %d/%d equal to the reference (>= %d); free-running "
         "greedy generation follows the exact path for %d/%d tokens", dir, forced_ok, N, MIN_FORCED * N / 16, prefix, N);
  g3n_safetensors_free (g);
  g3n_model_unref (m);
}

int
main (void)
{
  const char *data = g_getenv ("G3N_TEST_DATA");
  if (!data) {
    fprintf (stderr, "set G3N_TEST_DATA\n");
    return 2;
  }
  /* our kernels on every ISA: without AVX2 the default would be OpenBLAS, where the setting does nothing */
  g3n_kernels_set_gemm_blas (FALSE);
  g_autofree char *mm = g_build_filename (data, "mm-tiny", NULL);
  g_autofree char *mf = g_build_filename (data, "text-matformer", NULL);
  compare (mm);
  compare (mf);
  return test_summary ();
}
