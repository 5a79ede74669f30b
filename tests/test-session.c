/* test-session — the live session on the tiny multimodal checkpoint (with its tiny tokenizer):
 *
 * - turn-by-turn appending equals rendering the same conversation with the chat template and prefilling it
 *   at once (same greedy tokens, logits within rounding);
 * - multimodal assembly: mm_input_ids with the golden image and audio soft embeddings scattered into their
 *   placeholders give the reference's mm_inputs_embeds and mm_logits and its greedy tokens;
 * - context shift: a tiny context over many turns keeps working, positions stay within n_ctx, memory stays
 *   flat, and shifting re-positions cached keys exactly (checked on layer 0, whose keys depend only on the
 *   token and its position);
 * - save → load → continue equals continuing uninterrupted; a session file of another model is refused;
 * - bad input gives clear errors.
 */
#include "test-util.h"
#include "kv-cache.h"
#include "model.h"
#include "safetensors.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  GArray *tokens;
} Collect;

static gboolean
collect (int32_t token, const char *text, gpointer data)
{
  Collect *c = data;
  if (token >= 0)
    g_array_append_val (c->tokens, token);
  return TRUE;
}

static G3nSession *
new_session (G3nModel *m, G3nTokenizer *tok, int n_ctx)
{
  G3nChatFormat *fmt = g3n_chat_format_load (g3n_model_path (m), NULL);
  G3nSessionParams p = g3n_session_default_params ();
  p.n_ctx = n_ctx;
  G3nSession *s = g3n_session_new (m, tok, fmt, &p, NULL);
  g3n_chat_format_free (fmt);
  return s;
}

static GArray *
answer (G3nSession *s, const char *text, int n)
{
  Collect c = { g_array_new (FALSE, FALSE, sizeof (int32_t)) };
  G3nSampler *greedy = g3n_sampler_new (&(G3nSamplerParams) { .temperature = 0 });
  g_autoptr (GError) error = NULL;
  if (text)
    g_assert (g3n_session_add_text (s, text, &error));
  if (!g3n_session_generate (s, greedy, n, collect, &c, NULL, &error))
    printf ("     generate: %s\n", error->message);
  g3n_sampler_free (greedy);
  return c.tokens;
}

/* Turn by turn through the session == the whole conversation rendered by the template, prefilled at once. */
static void
test_turns_equal_one_shot (G3nModel *m, G3nTokenizer *tok)
{
  G3nSession *s = new_session (m, tok, 512);
  g_autoptr (GError) error = NULL;
  g3n_session_set_system (s, "You are terse.", &error);
  g3n_session_add_text (s, "What is in the picture?", &error);
  g3n_session_add_model_text (s, "A cat on a mat.", &error);
  g_autoptr (GArray) got = answer (s, "And the colour?", 6);
  int n_past = g3n_session_n_past (s);

  G3nChatItem sys = { G3N_CHAT_TEXT, "You are terse." }, u1 = { G3N_CHAT_TEXT, "What is in the picture?" };
  G3nChatItem a1 = { G3N_CHAT_TEXT, "A cat on a mat." }, u2 = { G3N_CHAT_TEXT, "And the colour?" };
  G3nChatMessage msgs[] = { { G3N_CHAT_SYSTEM, &sys, 1 }, { G3N_CHAT_USER, &u1, 1 }, { G3N_CHAT_MODEL, &a1, 1 },
                            { G3N_CHAT_USER, &u2, 1 } };
  G3nChatFormat *fmt = g3n_chat_format_load (g3n_model_path (m), NULL);
  g_autofree char *text = g3n_chat_render (fmt, msgs, 4, TRUE, &error);
  g3n_chat_format_free (fmt);
  g_autoptr (GArray) ids = g3n_tokenizer_encode (tok, text, -1, FALSE, &error);
  int V = g3n_model_n_vocab (m);
  g_autofree float *logits = g_new (float, V);
  G3nContext *ctx = g3n_context_new (m, NULL, NULL);
  g_autoptr (GArray) want = g_array_new (FALSE, FALSE, sizeof (int32_t));
  G3nBatch b = { .n_tokens = (int) ids->len, .ids = (int32_t *) ids->data, .logits = logits };
  for (int i = 0; i < 6; i++) {
    g_assert (g3n_context_decode (ctx, &b, NULL));
    int32_t t = 0;
    for (int v = 1; v < V; v++)
      t = logits[v] > logits[t] ? v : t;
    if (t == 1 || t == 106)
      break;
    g_array_append_val (want, t);
    b.n_tokens = 1;
    b.ids = &g_array_index (want, int32_t, want->len - 1);
  }
  check (got->len == want->len && memcmp (got->data, want->data, got->len * 4) == 0 && got->len > 0,
         "turn-by-turn session == template rendering prefilled at once (%u greedy tokens; prompt %u tokens, "
         "session at %d)", got->len, ids->len, n_past);
  g3n_context_free (ctx);
  g3n_session_free (s);
}

/* Gemma3nModel's multimodal assembly, with the reference's soft embeddings. */
static void
test_multimodal_assembly (G3nModel *m, G3nSafetensors *g)
{
  const G3nConfig *c = m->config;
  const G3nTensor *ids_t = g3n_safetensors_find (g, "mm_input_ids");
  int T = (int) ids_t->shape[1], H = g3n_model_n_embd (m), V = g3n_model_n_vocab (m);
  g_autofree int32_t *ids = g_new (int32_t, T);
  for (int i = 0; i < T; i++)
    ids[i] = (int32_t) ((const gint64 *) ids_t->data)[i];
  g_autofree float *emb = g_new (float, (gsize) T * H);
  g_autoptr (GError) error = NULL;
  g_assert (g3n_model_embed_tokens (m, ids, T, emb, &error));
  const float *image = g3n_safetensors_find (g, "image_embeds")->data;
  const float *audio = g3n_safetensors_find (g, "audio_embeds_padded")->data;
  int ni = 0, na = 0;
  for (int i = 0; i < T; i++) {
    if (ids[i] == c->image_token_id)
      memcpy (emb + (gsize) i * H, image + (gsize) ni++ * H, sizeof (float) * H);
    else if (ids[i] == c->audio_token_id)
      memcpy (emb + (gsize) i * H, audio + (gsize) na++ * H, sizeof (float) * H);
  }
  double e = rel_err (emb, g3n_safetensors_find (g, "mm_inputs_embeds")->data, (gsize) T * H);
  check (e <= 1e-4 && ni == c->vision_soft_tokens_per_image && na == c->audio_soft_tokens_per_image,
         "mm_inputs_embeds (text, hard multimodal ids, %d image + %d audio soft tokens): rel err %.3g", ni, na, e);
  g_autofree float *logits = g_new (float, (gsize) T * V);
  G3nContext *ctx = g3n_context_new (m, NULL, NULL);
  G3nBatch b = { .n_tokens = T, .ids = ids, .embeds = emb, .all_logits = TRUE, .logits = logits };
  g_assert (g3n_context_decode (ctx, &b, NULL));
  e = rel_err (logits, g3n_safetensors_find (g, "mm_logits")->data, (gsize) T * V);
  check (e <= 2e-4, "mm_logits rel err %.3g <= 2e-4", e);
  const G3nTensor *gen = g3n_safetensors_find (g, "mm_generated_ids");
  const float *gen_logits = g3n_safetensors_find (g, "mm_generated_logits")->data;
  int N = (int) gen->shape[1];
  gboolean same = TRUE;
  double worst = 0;
  int32_t tok;
  memcpy (logits, logits + (gsize) (T - 1) * V, sizeof (float) * V);
  for (int i = 0; i < N; i++) {
    worst = fmax (worst, rel_err (logits, gen_logits + (gsize) i * V, V));
    tok = 0;
    for (int v = 1; v < V; v++)
      tok = logits[v] > logits[tok] ? v : tok;
    same = same && tok == ((const gint64 *) gen->data)[i];
    G3nBatch one = { .n_tokens = 1, .ids = &tok, .logits = logits };
    g_assert (g3n_context_decode (ctx, &one, NULL));
  }
  check (same && worst <= 1e-4, "mm greedy generation: %d tokens equal, logits rel err %.3g", N, worst);
  g3n_context_free (ctx);
}

/* Removing positions re-rotates later keys to their new positions: layer 0's keys depend only on the token
 * and its position, so after dropping a junk prefix they must equal a context that never saw it. */
static void
test_rope_shift (G3nModel *m)
{
  int32_t junk[7] = { 5, 6, 7, 8, 9, 10, 11 }, text[9] = { 2, 40, 41, 42, 43, 44, 45, 46, 47 };
  G3nContext *a = g3n_context_new (m, NULL, NULL), *b = g3n_context_new (m, NULL, NULL);
  G3nBatch ba = { .n_tokens = 9, .ids = text };
  g_assert (g3n_context_decode (a, &ba, NULL));
  G3nBatch bj = { .n_tokens = 7, .ids = junk }, bt = { .n_tokens = 9, .ids = text };
  g_assert (g3n_context_decode (b, &bj, NULL) && g3n_context_decode (b, &bt, NULL));
  g_autoptr (GError) error = NULL;
  gboolean removed = g3n_context_remove (b, 0, 7, &error);
  G3nKvLayer *ka = g3n_context_kv_layer (a, 0), *kb = g3n_context_kv_layer (b, 0);
  gboolean same_shape = removed && ka->len == kb->len && ka->pos0 == kb->pos0 && g3n_context_n_past (b) == 9;
  double e = same_shape ? rel_err (kb->k, ka->k, (gsize) ka->len * ka->width) : INFINITY;
  double ev = same_shape ? rel_err (kb->v, ka->v, (gsize) ka->len * ka->width) : INFINITY;
  check (same_shape && e < 1e-5 && ev == 0, "RoPE shift re-positions cached keys (rel err %.2g, values %.2g)", e, ev);
  g3n_context_free (a);
  g3n_context_free (b);
}

static void
test_context_shift (G3nModel *m, G3nTokenizer *tok)
{
  G3nSession *s = new_session (m, tok, 96);
  g_autoptr (GError) error = NULL;
  g3n_session_set_system (s, "Keep me.", &error);
  gsize kv_after_warmup = 0, kv_max = 0;
  int max_past = 0, turns = 40;
  gboolean ok = TRUE;
  for (int i = 0; i < turns && ok; i++) {
    g_autofree char *q = g_strdup_printf ("Question number %d, tell me more.", i);
    g_autoptr (GArray) a = answer (s, q, 8);
    ok = a != NULL;
    max_past = MAX (max_past, g3n_session_n_past (s));
    gsize kv = g3n_context_kv_bytes (g3n_session_get_context (s));
    if (i == 10)
      kv_after_warmup = kv;
    kv_max = MAX (kv_max, kv);
  }
  check (ok && max_past <= 96, "%d turns in a 96-position context: positions stay <= n_ctx (max %d)", turns, max_past);
  check (kv_max <= kv_after_warmup * 3 / 2 + 4096, "KV memory flat under shifting (%" G_GSIZE_FORMAT
         " bytes after 10 turns, max %" G_GSIZE_FORMAT ")", kv_after_warmup, kv_max);
  g3n_session_free (s);

  s = new_session (m, tok, 24);
  GString *big = g_string_new (NULL);
  for (int i = 0; i < 40; i++)
    g_string_append (big, "word ");
  g3n_session_add_text (s, big->str, NULL);
  g_string_free (big, TRUE);
  G3nSampler *greedy = g3n_sampler_new (&(G3nSamplerParams) { .temperature = 0 });
  ok = g3n_session_generate (s, greedy, 4, NULL, NULL, NULL, &error);
  check (!ok && g_error_matches (error, G3N_ERROR, G3N_ERROR_CONTEXT_FULL),
         "a turn larger than the context is refused: %s", error ? error->message : "(accepted)");
  g3n_sampler_free (greedy);
  g3n_session_free (s);
}

static void
test_save_restore (G3nModel *m, G3nModel *other, G3nTokenizer *tok)
{
  g_autofree char *dir = g_dir_make_tmp ("g3n-session-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "s.safetensors", NULL);
  G3nSession *a = new_session (m, tok, 256);
  g3n_session_set_system (a, "System.", NULL);
  g_autoptr (GArray) a1 = answer (a, "First question?", 5);
  g_autoptr (GError) error = NULL;
  gboolean saved = g3n_session_save (a, path, &error);
  g_autoptr (GArray) cont = answer (a, "Second question?", 8);

  G3nSession *b = new_session (m, tok, 256);
  gboolean loaded = saved && g3n_session_load (b, path, &error);
  g_autoptr (GArray) resumed = loaded ? answer (b, "Second question?", 8) : NULL;
  check (loaded && resumed && resumed->len == cont->len && memcmp (resumed->data, cont->data, cont->len * 4) == 0,
         "save → load → continue equals continuing uninterrupted (%u tokens)%s%s", cont->len, error ? ": " : "",
         error ? error->message : "");
  g_clear_error (&error);
  G3nSession *c = new_session (other, tok, 256);
  gboolean wrong = g3n_session_load (c, path, &error);
  check (!wrong && error && strstr (error->message, "another model"), "a session of another model is refused: %s",
         error ? error->message : "(accepted)");
  g_clear_error (&error);
  g_assert (g_file_set_contents (path, "garbage", 7, NULL));
  gboolean junk = g3n_session_load (c, path, &error);
  check (!junk && error, "a corrupt session file is refused: %s", error ? error->message : "(accepted)");
  g_remove (path);
  g_rmdir (dir);
  g3n_session_free (a);
  g3n_session_free (b);
  g3n_session_free (c);
}

/* One thread appends input while another generates: no lost or torn turns, no crash (ASan in CI). */
static gpointer
producer (gpointer data)
{
  G3nSession *s = data;
  for (int i = 0; i < 30; i++) {
    g_autofree char *text = g_strdup_printf ("line %d", i);
    g3n_session_add_text (s, text, NULL);
    g_usleep (200);
  }
  return NULL;
}

static void
test_producer_consumer (G3nModel *m, G3nTokenizer *tok)
{
  G3nSession *s = new_session (m, tok, 512);
  G3nSampler *greedy = g3n_sampler_new (&(G3nSamplerParams) { .temperature = 0 });
  GThread *t = g_thread_new ("producer", producer, s);
  int answers = 0;
  for (int i = 0; i < 60 && answers < 8; i++) {
    g_autoptr (GError) error = NULL;
    if (g3n_session_generate (s, greedy, 2, NULL, NULL, NULL, &error))
      answers++;
    else
      g_usleep (500);
  }
  g_thread_join (t);
  g_autoptr (GError) error = NULL;
  gboolean last = g3n_session_generate (s, greedy, 2, NULL, NULL, NULL, &error);
  check (answers > 0 && (last || error) && g3n_session_n_past (s) <= g3n_session_n_ctx (s),
         "a producer thread appending while another generates (%d answers, %d positions)", answers,
         g3n_session_n_past (s));
  g3n_sampler_free (greedy);
  g3n_session_free (s);
}

static void
test_bad_input (G3nModel *m, G3nTokenizer *tok)
{
  G3nSession *s = new_session (m, tok, 256);
  g_autoptr (GError) error = NULL;
  float row[64 * 3] = { 0 };
  gboolean ok = g3n_session_add_audio_embeddings (s, row, 3, &error);
  check (!ok && error && strstr (error->message, "soft tokens"), "audio embeddings of the wrong length: %s",
         error ? error->message : "(accepted)");
  g_clear_error (&error);
  ok = g3n_session_add_text (s, "bad \xff utf-8", &error);
  check (!ok && error, "invalid UTF-8 text: %s", error ? error->message : "(accepted)");
  g_clear_error (&error);
  G3nSampler *greedy = g3n_sampler_new (&(G3nSamplerParams) { .temperature = 0 });
  ok = g3n_session_generate (s, greedy, 3, NULL, NULL, NULL, &error);
  check (!ok && error, "generate with nothing to answer: %s", error ? error->message : "(accepted)");
  g_clear_error (&error);
  g3n_session_add_text (s, "Hi", NULL);
  g3n_session_generate (s, greedy, 2, NULL, NULL, NULL, NULL);
  ok = g3n_session_generate (s, greedy, 2, NULL, NULL, NULL, &error);
  check (!ok && error, "a second answer without new input: %s", error ? error->message : "(accepted)");
  g_clear_error (&error);
  ok = g3n_session_set_system (s, "late", &error);
  check (!ok && error, "a system prompt after the first turn: %s", error ? error->message : "(accepted)");
  g3n_sampler_free (greedy);
  g3n_session_free (s);
}

int
main (int argc, char **argv)
{
  const char *data = g_getenv ("G3N_TEST_DATA");
  g_autofree char *mm = g_build_filename (data ? data : "tests/data", "mm-tiny", NULL);
  g_autofree char *mat = g_build_filename (data ? data : "tests/data", "text-matformer", NULL);
  g_autofree char *tok_path = g_build_filename (mm, "tokenizer.json", NULL);
  g_autofree char *golden = g_build_filename (mm, "golden.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  G3nModel *m = g3n_model_load (mm, &error), *other = m ? g3n_model_load (mat, &error) : NULL;
  G3nTokenizer *tok = other ? g3n_tokenizer_new_from_file (tok_path, &error) : NULL;
  G3nSafetensors *g = tok ? g3n_safetensors_open (golden, &error) : NULL;
  if (!g) {
    fprintf (stderr, "%s\n", error->message);
    return 1;
  }
  test_turns_equal_one_shot (m, tok);
  test_multimodal_assembly (m, g);
  test_rope_shift (m);
  test_context_shift (m, tok);
  test_save_restore (m, other, tok);
  test_producer_consumer (m, tok);
  test_bad_input (m, tok);
  g3n_safetensors_free (g);
  g3n_tokenizer_free (tok);
  g3n_model_unref (other);
  g3n_model_unref (m);
  return test_summary ();
}
