/* test-text-decoder — the text decoder against the reference goldens of a fixture folder.
 *
 *   test-text-decoder FIXTURE_DIR [TOL_LOGITS TOL_HIDDEN TOL_LAST]
 *
 * Checks, against golden.safetensors made by transformers: logits, every layer's AltUp streams, the final
 * hidden state and the per-layer inputs; that feeding the prompt whole, in chunks, or one token at a time
 * gives the same logits; greedy generation (ids identical, logits within tolerance); that the KV cache
 * grows with the context actually used, with sliding layers bounded by their window; and the same with the
 * cache in F16 and BF16 (logits within the rounding's effect, same greedy ids, half the bytes).
 */
#include "test-util.h"
#include "kv-cache.h"
#include "model.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const G3nTensor *
golden (G3nSafetensors *g, const char *name)
{
  const G3nTensor *t = g3n_safetensors_find (g, name);
  if (!t) {
    fprintf (stderr, "golden file lacks %s\n", name);
    exit (2);
  }
  return t;
}

static int32_t *
golden_ids (G3nSafetensors *g, const char *name, int *n)
{
  const G3nTensor *t = golden (g, name);
  *n = (int) g3n_tensor_numel (t);
  int32_t *ids = g_new (int32_t, *n);
  for (int i = 0; i < *n; i++)
    ids[i] = (int32_t) ((const gint64 *) t->data)[i];
  return ids;
}

static void
test_forward (G3nModel *m, G3nSafetensors *g, double tol_logits, double tol_hidden, double tol_last)
{
  int T, V = g3n_model_n_vocab (m), H = g3n_model_n_embd (m), L = g3n_model_n_layers (m);
  int A = g3n_model_n_altup (m), P = g3n_model_n_embd_per_layer (m);
  g_autofree int32_t *ids = golden_ids (g, "text_input_ids", &T);
  g_autofree float *logits = g_new (float, (gsize) T * V), *last = g_new (float, (gsize) T * H);
  g_autofree float *hs = g_new (float, (gsize) (L + 1) * A * T * H), *pli = g_new (float, (gsize) T * L * P);
  G3nContext *ctx = g3n_context_new (m, NULL, NULL);
  G3nBatch b = { .n_tokens = T, .ids = ids, .all_logits = TRUE, .logits = logits, .last_hidden = last,
                 .hidden_states = hs, .per_layer_inputs = pli };
  g_autoptr (GError) error = NULL;
  check (g3n_context_decode (ctx, &b, &error), "forward of %d tokens", T);
  g3n_context_free (ctx);

  double e;
  e = rel_err (logits, golden (g, "text_logits")->data, (gsize) T * V);
  check (e <= tol_logits, "text_logits rel err %.3g <= %.3g", e, tol_logits);
  e = rel_err (hs, golden (g, "text_hidden_states")->data, (gsize) (L + 1) * A * T * H);
  check (e <= tol_hidden, "text_hidden_states rel err %.3g <= %.3g", e, tol_hidden);
  e = rel_err (last, golden (g, "text_last_hidden_state")->data, (gsize) T * H);
  check (e <= tol_last, "text_last_hidden_state rel err %.3g <= %.3g", e, tol_last);
  e = rel_err (pli, golden (g, "text_per_layer_inputs")->data, (gsize) T * L * P);
  check (e <= 1e-4, "text_per_layer_inputs rel err %.3g <= 1e-4", e);

  /* Whole, chunked and token-by-token feeding compute the same thing; only the summation order differs
   * (blocked GEMM kernels for batches, dot products for one token), so they agree to fp32 rounding noise,
   * which the sparse layers amplify about as much as the reference's own fp32-vs-fp64 error (see
   * info.json). */
  const int chunks[] = { 1, 5, 7, 16 };
  for (guint i = 0; i < G_N_ELEMENTS (chunks); i++) {
    g_autofree float *lc = logits_chunked (m, ids, T, chunks[i]);
    double d = rel_err (lc, logits, (gsize) T * V);
    double dg = rel_err (lc, golden (g, "text_logits")->data, (gsize) T * V);
    check (d <= tol_logits && dg <= tol_logits, "chunks of %d: rel err %.3g vs whole, %.3g vs golden (<= %.3g)",
           chunks[i], d, dg, tol_logits);
  }
}

/* Greedy generation from the golden prompt on a fresh context (params may be NULL): whether the ids equal
 * the reference's, and the worst logits error of a step. Returns the context for further checks. */
static G3nContext *
greedy_vs_golden (G3nModel *m, G3nSafetensors *g, const G3nContextParams *params, gboolean *same, double *worst,
                  int *n_generated)
{
  int T, N, V = g3n_model_n_vocab (m);
  g_autofree int32_t *prompt = golden_ids (g, "generate_prompt_ids", &T);
  g_autofree int32_t *want = golden_ids (g, "generated_ids", &N);
  const float *want_logits = golden (g, "generated_logits")->data;
  g_autofree float *step = g_new (float, V);
  g_autofree int32_t *got = g_new (int32_t, N);
  G3nContext *ctx = g3n_context_new (m, params, NULL);
  G3nBatch b = { .n_tokens = T, .ids = prompt, .logits = step };
  *worst = 0;
  for (int i = 0; i < N; i++) {
    g_assert (g3n_context_decode (ctx, &b, NULL));
    got[i] = argmax (step, V);
    *worst = fmax (*worst, rel_err (step, want_logits + (gsize) i * V, V));
    b.n_tokens = 1;
    b.ids = &got[i];
  }
  *same = memcmp (got, want, sizeof (int32_t) * N) == 0;
  *n_generated = N;
  return ctx;
}

static void
test_generate (G3nModel *m, G3nSafetensors *g)
{
  int T, N;
  g_autofree int32_t *prompt = golden_ids (g, "generate_prompt_ids", &T);
  gboolean same;
  double worst;
  G3nContext *ctx = greedy_vs_golden (m, g, NULL, &same, &worst, &N);
  check (same, "greedy generation of %d tokens equals the reference", N);
  check (worst <= 1e-4, "generation logits rel err %.3g <= 1e-4", worst);
  check (g3n_context_n_past (ctx) == T + N - 1, "n_past %d == prompt + generated - 1", g3n_context_n_past (ctx));
  g3n_context_free (ctx);
}

/* A 16-bit KV cache rounds every cached key and value (F16: relative 2^-12, BF16: 2^-9); the logits move by
 * that rounding carried through the layers. Checked: the forward logits, whole and chunked (chunks of 1 read
 * the cache in place, one query at a time; larger ones widen blocks to fp32 for sgemm), greedy generation
 * (the same ids as the reference, logits within the bound) and the cache's bytes (half of fp32's for the
 * same positions). */
/* The fixtures' random weights amplify small perturbations a lot: fp32 summation-order noise (~6e-8) moves
 * their logits by 1.5e-5 (mm-tiny) to 5e-5 (text-matformer), ~250-800x (see the chunk checks above), mostly
 * through the sparse layers' Gaussian top-k threshold. F16 rounding (2^-12 relative, 4000x fp32's) moves
 * them by up to 7.8e-3 and 2.8e-2 (measured over every ISA, thread count and chunking, and a 160-step
 * decode), BF16 (8x coarser) by 0.097 and 0.113: the bounds are those with about 2x headroom. The greedy
 * ids stay identical with F16. Real weights amplify far less. */
#define KV_F16_TOL_TINY 1.5e-2
#define KV_F16_TOL_MATFORMER 5e-2
#define KV_BF16_TOL_TINY 0.2
#define KV_BF16_TOL_MATFORMER 0.25

static void
test_kv_type (G3nModel *m, G3nSafetensors *g, G3nKvType type, double tol)
{
  const char *name = g3n_kv_type_name (type);
  G3nContextParams p = { .kv_type = type };
  int T, V = g3n_model_n_vocab (m);
  g_autofree int32_t *ids = golden_ids (g, "text_input_ids", &T);
  const float *want = golden (g, "text_logits")->data;
  g_autofree float *whole = logits_chunked_params (m, &p, ids, T, T);
  double e = rel_err (whole, want, (gsize) T * V);
  check (e <= tol, "%s KV cache: text_logits rel err %.3g <= %.3g", name, e, tol);
  const int chunks[] = { 1, 3, 7 };
  for (guint i = 0; i < G_N_ELEMENTS (chunks); i++) {
    g_autofree float *lc = logits_chunked_params (m, &p, ids, T, chunks[i]);
    double d = rel_err (lc, whole, (gsize) T * V), dg = rel_err (lc, want, (gsize) T * V);
    check (d <= tol && dg <= tol, "%s KV, chunks of %d: rel err %.3g vs whole, %.3g vs golden (<= %.3g)", name,
           chunks[i], d, dg, tol);
  }

  /* A longer decode, one token at a time: past the sliding window (both layer kinds), with enough keys that
   * the score rows and value columns split over threads; each step's logits against an fp32 cache's. */
  const int steps = 160;
  G3nContext *c16 = g3n_context_new (m, &p, NULL), *c32 = g3n_context_new (m, NULL, NULL);
  g_autofree float *l16 = g_new (float, V), *l32 = g_new (float, V);
  double long_worst = 0;
  for (int i = 0; i < steps; i++) {
    G3nBatch b16 = { .n_tokens = 1, .ids = &ids[i % T], .logits = l16 }, b32 = b16;
    b32.logits = l32;
    g_assert (g3n_context_decode (c16, &b16, NULL) && g3n_context_decode (c32, &b32, NULL));
    long_worst = fmax (long_worst, rel_err (l16, l32, V));
  }
  check (long_worst <= tol, "%s KV: %d single-token steps, logits rel err %.3g vs an f32 cache (<= %.3g)", name, steps,
         long_worst, tol);
  g3n_context_free (c16);
  g3n_context_free (c32);

  gboolean same;
  double worst;
  int N;
  G3nContext *ctx = greedy_vs_golden (m, g, &p, &same, &worst, &N);
  /* BF16 keeps 8 significant bits: on these fixtures a near-tie greedy step can flip (mm-tiny on the
   * portable kernels with 2 threads, where fp32 summation order differs), after which the
   * sequences rightly differ. Its accuracy is the teacher-forced checks above; F16 must match. */
  if (type == G3N_KV_F16)
    check (same && worst <= tol, "%s KV: greedy generation of %d tokens equals the reference, logits rel err %.3g <= %.3g",
           name, N, worst, tol);
  else
    printf ("info %s KV: greedy generation of %d tokens %s the reference (logits rel err %.3g)\n", name, N,
            same ? "equals" : "departs from", worst);
  G3nContext *ref = greedy_vs_golden (m, g, NULL, &same, &worst, &N);
  gsize bytes = g3n_context_kv_bytes (ctx), bytes32 = g3n_context_kv_bytes (ref);
  check (g3n_context_kv_type (ctx) == type && bytes > 0 && bytes * 2 == bytes32,
         "%s KV cache holds %" G_GSIZE_FORMAT " bytes, half of f32's %" G_GSIZE_FORMAT, name, bytes, bytes32);
  g3n_context_free (ref);
  g3n_context_free (ctx);
}

/* Memory follows the tokens actually fed: a context sized for the model's maximum holds only what was used,
 * and sliding-window layers stop growing once past their window. */
static void
test_kv_memory (G3nModel *m)
{
  const G3nTextConfig *c = &m->config->text;
  G3nContext *ctx = g3n_context_new (m, NULL, NULL);
  int32_t id = c->bos_token_id;
  G3nBatch b = { .n_tokens = 1, .ids = &id };
  gsize row = (gsize) c->num_key_value_heads * c->head_dim * 2 * sizeof (float);
  int n_own = 0, n_full = 0;
  for (int i = 0; i < c->num_hidden_layers; i++)
    if (g3n_text_config_kv_source_layer (c, i) == i) {
      n_own++;
      n_full += !c->is_sliding[i];
    }
  int steps = 4 * c->sliding_window + 40;
  for (int i = 0; i < steps; i++)
    g_assert (g3n_context_decode (ctx, &b, NULL));
  /* full layers: at most 1.5x growth slack over the used rows; sliding layers: a small floor of 16 rows */
  gsize bound = (gsize) n_full * (steps * 3 / 2 + 16) * row
                + (gsize) (n_own - n_full) * MAX (c->sliding_window * 3 / 2, 16) * row;
  gsize used = g3n_context_kv_bytes (ctx);
  check (used <= bound, "KV cache after %d tokens: %" G_GSIZE_FORMAT " bytes <= %" G_GSIZE_FORMAT
         " (n_ctx %d would need %" G_GSIZE_FORMAT ")", steps, used, bound, g3n_context_n_ctx (ctx),
         (gsize) n_own * g3n_context_n_ctx (ctx) * row);
  g3n_context_free (ctx);

  /* A context that is full refuses more input without changing state. */
  G3nContextParams p = { .n_ctx = 3 };
  ctx = g3n_context_new (m, &p, NULL);
  int32_t ids[4] = { id, id, id, id };
  G3nBatch four = { .n_tokens = 4, .ids = ids };
  g_autoptr (GError) error = NULL;
  gboolean ok = g3n_context_decode (ctx, &four, &error);
  check (!ok && g_error_matches (error, G3N_ERROR, G3N_ERROR_CONTEXT_FULL) && g3n_context_n_past (ctx) == 0,
         "a batch larger than n_ctx is refused: %s", error ? error->message : "(accepted)");
  g_clear_error (&error);
  int32_t bad = c->vocab_size + 5;
  G3nBatch badb = { .n_tokens = 1, .ids = &bad };
  ok = g3n_context_decode (ctx, &badb, &error);
  check (!ok && g3n_context_n_past (ctx) == 0, "an out-of-vocabulary id is refused: %s",
         error ? error->message : "(accepted)");
  g3n_context_free (ctx);
}

static void
run_fixture (const char *dir, double tol_logits, double tol_hidden, double tol_last, double tol_f16, double tol_bf16)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *golden_path = g_build_filename (dir, "golden.safetensors", NULL);
  printf ("# %s\n", dir);
  G3nModel *m = g3n_model_load (dir, &error);
  G3nSafetensors *g = m ? g3n_safetensors_open (golden_path, &error) : NULL;
  check (g != NULL, "load %s%s%s", dir, error ? ": " : "", error ? error->message : "");
  if (g) {
    test_forward (m, g, tol_logits, tol_hidden, tol_last);
    test_generate (m, g);
    test_kv_memory (m);
    test_kv_type (m, g, G3N_KV_F16, tol_f16);
    test_kv_type (m, g, G3N_KV_BF16, tol_bf16);
  }
  g3n_safetensors_free (g);
  if (m)
    g3n_model_unref (m);
}

/* With no arguments, runs both text fixtures of $G3N_TEST_DATA with their MANIFEST tolerances. */
int
main (int argc, char **argv)
{
  if (argc >= 2) {
    run_fixture (argv[1], argc > 2 ? atof (argv[2]) : 1e-4, argc > 3 ? atof (argv[3]) : 1e-4,
                 argc > 4 ? atof (argv[4]) : 1e-4, KV_F16_TOL_MATFORMER, KV_BF16_TOL_MATFORMER);
  } else {
    const char *data = g_getenv ("G3N_TEST_DATA");
    if (!data) {
      fprintf (stderr, "usage: %s [FIXTURE_DIR [TOL_LOGITS TOL_HIDDEN TOL_LAST]] (or set G3N_TEST_DATA)\n", argv[0]);
      return 2;
    }
    g_autofree char *mm = g_build_filename (data, "mm-tiny", NULL);
    g_autofree char *mat = g_build_filename (data, "text-matformer", NULL);
    run_fixture (mm, 1e-4, 1e-4, 1e-4, KV_F16_TOL_TINY, KV_BF16_TOL_TINY);
    run_fixture (mat, 5e-4, 2e-4, 4e-4, KV_F16_TOL_MATFORMER, KV_BF16_TOL_MATFORMER);
  }
  return test_summary ();
}
