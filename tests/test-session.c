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
 * - the same with the KV cache in F16 / BF16 (files keep the cache's type; a file of another type converts);
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
new_session_kv (G3nModel *m, G3nTokenizer *tok, int n_ctx, G3nKvType kv_type)
{
  G3nChatFormat *fmt = g3n_chat_format_load (g3n_model_path (m), NULL);
  G3nSessionParams p = g3n_session_default_params ();
  p.n_ctx = n_ctx;
  p.kv_type = kv_type;
  G3nSession *s = g3n_session_new (m, tok, fmt, &p, NULL);
  g3n_chat_format_free (fmt);
  return s;
}

static G3nSession *
new_session (G3nModel *m, G3nTokenizer *tok, int n_ctx)
{
  return new_session_kv (m, tok, n_ctx, G3N_KV_F32);
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

/* Keys or values of a layer cache as fp32 [len, width]. */
static float *
kv_rows (const G3nKvLayer *kv, gboolean values)
{
  float *rows = g_new (float, (gsize) MAX (kv->len, 1) * kv->width);
  g3n_kv_layer_read (kv, values, 0, kv->len, 0, kv->width, rows);
  return rows;
}

/* Removing positions re-rotates later keys to their new positions: layer 0's keys depend only on the token
 * and its position, so after dropping a junk prefix they must equal a context that never saw it. In fp32
 * up to the rotation's rounding; a 16-bit cache rounds the re-rotated key once more (bound: two roundings,
 * 2 · 2^-11 of the largest key for F16, 2 · 2^-8 for BF16). */
static void
test_rope_shift (G3nModel *m, G3nKvType type, double tol)
{
  int32_t junk[7] = { 5, 6, 7, 8, 9, 10, 11 }, text[9] = { 2, 40, 41, 42, 43, 44, 45, 46, 47 };
  G3nContextParams p = { .kv_type = type };
  G3nContext *a = g3n_context_new (m, &p, NULL), *b = g3n_context_new (m, &p, NULL);
  G3nBatch ba = { .n_tokens = 9, .ids = text };
  g_assert (g3n_context_decode (a, &ba, NULL));
  G3nBatch bj = { .n_tokens = 7, .ids = junk }, bt = { .n_tokens = 9, .ids = text };
  g_assert (g3n_context_decode (b, &bj, NULL) && g3n_context_decode (b, &bt, NULL));
  g_autoptr (GError) error = NULL;
  gboolean removed = g3n_context_remove (b, 0, 7, &error);
  G3nKvLayer *ka = g3n_context_kv_layer (a, 0), *kb = g3n_context_kv_layer (b, 0);
  gboolean same_shape = removed && ka->len == kb->len && ka->pos0 == kb->pos0 && g3n_context_n_past (b) == 9;
  g_autofree float *a_k = kv_rows (ka, FALSE), *b_k = kv_rows (kb, FALSE);
  g_autofree float *a_v = kv_rows (ka, TRUE), *b_v = kv_rows (kb, TRUE);
  double e = same_shape ? rel_err (b_k, a_k, (gsize) ka->len * ka->width) : INFINITY;
  double ev = same_shape ? rel_err (b_v, a_v, (gsize) ka->len * ka->width) : INFINITY;
  check (same_shape && e < tol && ev == 0, "%s KV: RoPE shift re-positions cached keys (rel err %.2g < %.2g, values "
         "%.2g)", g3n_kv_type_name (type), e, tol, ev);
  g3n_context_free (a);
  g3n_context_free (b);
}

static void
test_context_shift (G3nModel *m, G3nTokenizer *tok, G3nKvType type)
{
  G3nSession *s = new_session_kv (m, tok, 96, type);
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
  const char *name = g3n_kv_type_name (type);
  check (ok && max_past <= 96, "%s KV: %d turns in a 96-position context: positions stay <= n_ctx (max %d)", name,
         turns, max_past);
  check (kv_max <= kv_after_warmup * 3 / 2 + 4096, "%s KV: memory flat under shifting (%" G_GSIZE_FORMAT
         " bytes after 10 turns, max %" G_GSIZE_FORMAT ")", name, kv_after_warmup, kv_max);
  g3n_session_free (s);
  if (type != G3N_KV_F32)
    return;

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

/* The dtype layer 0's keys were saved in. */
static G3nDType
saved_kv_dtype (const char *path)
{
  G3nSafetensors *f = g3n_safetensors_open (path, NULL);
  const G3nTensor *t = f ? g3n_safetensors_find (f, "kv.0.k") : NULL;
  G3nDType dtype = t ? t->dtype : G3N_DTYPE_U8;
  g3n_safetensors_free (f);
  return dtype;
}

/* Loads path, patched at tensor `tensor` (byte `at`) with `bytes`, into a fresh session; the load must fail
 * with an error naming the tensor. The file is put back afterwards. */
static void
expect_refused (G3nModel *m, G3nTokenizer *tok, const char *path, G3nKvType type, const char *tensor, gsize at,
                const void *bytes, gsize size, const char *what)
{
  g_autofree char *orig = NULL;
  gsize len = 0;
  g_assert (g_file_get_contents (path, &orig, &len, NULL));
  gboolean patched = patch_tensor (path, tensor, at, bytes, size);
  G3nSession *d = new_session_kv (m, tok, 256, type);
  g_autoptr (GError) error = NULL;
  gboolean loaded = patched && g3n_session_load (d, path, &error);
  g_autofree char *quoted = g_strdup_printf ("'%s'", tensor);
  check (patched && !loaded && error && strstr (error->message, quoted), "%s KV: a session file with %s is refused: %s",
         g3n_kv_type_name (type), what, error ? error->message : patched ? "(accepted)" : "(could not patch the file)");
  g3n_session_free (d);
  g_assert (g_file_set_contents (path, orig, len, NULL));
}

/* Hostile values in a valid session file (issue 16's fuzz findings): a non-finite key (it would make every
 * later attention score NaN, and reached exp with NaN) and a pos0 near INT64_MAX (pos0 + len overflowed in
 * the position check: undefined behaviour, reported by UBSan). */
static void
test_hostile_kv (G3nModel *m, G3nTokenizer *tok, const char *path, G3nKvType type)
{
  const guint32 f32_nan = 0x7fc00000, f32_inf = 0xff800000;
  const guint16 f16_inf = 0x7c00, bf16_nan = 0x7fc1;
  const void *bad = type == G3N_KV_F32 ? (const void *) &f32_nan : type == G3N_KV_F16 ? (const void *) &f16_inf
                                                                                       : (const void *) &bf16_nan;
  gsize size = type == G3N_KV_F32 ? 4 : 2;
  expect_refused (m, tok, path, type, "kv.0.k", 3 * size, bad, size, "a NaN or inf key");
  expect_refused (m, tok, path, type, "kv.0.v", 0, type == G3N_KV_F32 ? (const void *) &f32_inf : bad, size,
                  "a NaN or inf value");
  const gint64 near_max = G_MAXINT64 - 2;
  expect_refused (m, tok, path, type, "kv.0.pos0", 0, &near_max, 8, "kv.0.pos0 = INT64_MAX - 2");
}

static void
test_save_restore (G3nModel *m, G3nModel *other, G3nTokenizer *tok, G3nKvType type)
{
  g_autofree char *dir = g_dir_make_tmp ("g3n-session-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "s.safetensors", NULL);
  const char *name = g3n_kv_type_name (type);
  G3nSession *a = new_session_kv (m, tok, 256, type);
  g3n_session_set_system (a, "System.", NULL);
  g_autoptr (GArray) a1 = answer (a, "First question?", 5);
  g_autoptr (GError) error = NULL;
  gboolean saved = g3n_session_save (a, path, &error);
  g_autoptr (GArray) cont = answer (a, "Second question?", 8);

  G3nSession *b = new_session_kv (m, tok, 256, type);
  gboolean loaded = saved && g3n_session_load (b, path, &error);
  g_autoptr (GArray) resumed = loaded ? answer (b, "Second question?", 8) : NULL;
  check (loaded && resumed && resumed->len == cont->len && memcmp (resumed->data, cont->data, cont->len * 4) == 0,
         "%s KV: save → load → continue equals continuing uninterrupted (%u tokens)%s%s", name, cont->len,
         error ? ": " : "", error ? error->message : "");
  G3nDType want = type == G3N_KV_F16 ? G3N_DTYPE_F16 : type == G3N_KV_BF16 ? G3N_DTYPE_BF16 : G3N_DTYPE_F32;
  check (saved_kv_dtype (path) == want, "%s KV: the session file holds the cache as %s", name, g3n_dtype_name (want));
  g_clear_error (&error);
  test_hostile_kv (m, tok, path, type);
  if (type != G3N_KV_F32) {
    g_remove (path);
    g_rmdir (dir);
    g3n_session_free (a);
    g3n_session_free (b);
    return;
  }
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

/* A session file loads into a session of another KV type, converted: F16 widens exactly into an F32 cache,
 * F32 rounds into an F16 cache exactly as storing it there would; either way the conversation goes on. */
static void
test_load_other_kv_type (G3nModel *m, G3nTokenizer *tok)
{
  g_autofree char *dir = g_dir_make_tmp ("g3n-session-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "s.safetensors", NULL);
  const G3nKvType types[2] = { G3N_KV_F16, G3N_KV_F32 };
  for (int i = 0; i < 2; i++) {
    G3nKvType from = types[i], to = types[1 - i];
    G3nSession *a = new_session_kv (m, tok, 256, from);
    g3n_session_set_system (a, "System.", NULL);
    g_autoptr (GArray) a1 = answer (a, "First question?", 5);
    g_autoptr (GError) error = NULL;
    G3nSession *b = new_session_kv (m, tok, 256, to);
    gboolean ok = g3n_session_save (a, path, &error) && g3n_session_load (b, path, &error);
    /* compare as F16 values: the F32 side rounded (F32 -> F16) or the F16 side widened (F16 -> F32) */
    gsize differ = 0, n = 0;
    for (int l = 0; ok && l < g3n_model_n_layers (m); l++) {
      G3nKvLayer *ka = g3n_context_kv_layer (g3n_session_get_context (a), l);
      G3nKvLayer *kb = g3n_context_kv_layer (g3n_session_get_context (b), l);
      if (!ka)
        continue;
      g_autofree float *x = kv_rows (ka, FALSE), *y = kv_rows (kb, FALSE);
      ok = ka->len == kb->len && ka->pos0 == kb->pos0;
      for (gsize j = 0; ok && j < (gsize) ka->len * ka->width; j++, n++)
        differ += g3n_f32_to_f16 (x[j]) != g3n_f32_to_f16 (y[j]) || (to == G3N_KV_F32 && x[j] != y[j]);
    }
    g_autoptr (GArray) more = ok ? answer (b, "Second question?", 4) : NULL;
    check (ok && n > 0 && differ == 0 && more && more->len > 0 && g3n_context_kv_type (g3n_session_get_context (b)) == to,
           "a %s session file loads into a %s session: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
           " keys differ from the conversion, %u tokens after%s%s", g3n_kv_type_name (from), g3n_kv_type_name (to),
           differ, n, more ? more->len : 0, error ? ": " : "", error ? error->message : "");
    g3n_session_free (a);
    g3n_session_free (b);
  }
  g_remove (path);
  g_rmdir (dir);
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
  test_rope_shift (m, G3N_KV_F32, 1e-5);
  test_rope_shift (m, G3N_KV_F16, 2 * 0x1p-11);
  test_rope_shift (m, G3N_KV_BF16, 2 * 0x1p-8);
  test_context_shift (m, tok, G3N_KV_F32);
  test_context_shift (m, tok, G3N_KV_F16);
  test_save_restore (m, other, tok, G3N_KV_F32);
  test_save_restore (m, other, tok, G3N_KV_F16);
  test_save_restore (m, other, tok, G3N_KV_BF16);
  test_load_other_kv_type (m, tok);
  test_producer_consumer (m, tok);
  test_bad_input (m, tok);
  g3n_safetensors_free (g);
  g3n_tokenizer_free (tok);
  g3n_model_unref (other);
  g3n_model_unref (m);
  return test_summary ();
}
