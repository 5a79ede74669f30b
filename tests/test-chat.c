/* test-chat — the chat format against transformers' renderings (tests/data/chat/chat_golden.json).
 *
 *   test-chat [TOKENIZER_JSON]
 *
 * Always: apply_chat_template text and the processor's placeholder expansion, for every case. With the
 * real Gemma tokenizer (patched with Gemma 3n's multimodal specials as gemma3n_special_tokens.json says):
 * the token ids too.
 */
#include "test-util.h"
#include "gemma3n.h"
#include "gemma3n.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

/* g3n_chat_format_load on a folder holding only `file` with `contents`: NULL with an error naming `key`. */
static void
expect_config_refused (const char *file, const char *contents, const char *key, const char *what)
{
  g_autofree char *dir = g_dir_make_tmp ("g3n-chat-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, file, NULL);
  g_assert (g_file_set_contents (path, contents, -1, NULL));
  g_autoptr (GError) error = NULL;
  G3nChatFormat *f = g3n_chat_format_load (dir, &error);
  check (!f && error && strstr (error->message, file) && strstr (error->message, key), "%s is refused: %s", what,
         error ? error->message : "(loaded)");
  g3n_chat_format_free (f);
  g_remove (path);
  g_rmdir (dir);
}

/* Issue 16's fuzz finding: a processor config with 2^20 soft tokens and a 60 KB token string asked
 * g3n_chat_expand for 4 GiB. Impossible counts and token strings are refused at load, naming the value;
 * an expansion past 256 MiB is refused (NULL) before anything is allocated. */
static void
test_hostile_configs (void)
{
  expect_config_refused ("processor_config.json", "{\"image_seq_length\": 1048576}", "image_seq_length",
                         "image_seq_length = 2^20");
  expect_config_refused ("processor_config.json", "{\"audio_seq_length\": 32769}", "audio_seq_length",
                         "audio_seq_length one past a context (32769)");
  GString *big = g_string_new ("{\"image_token\": \"<");
  for (int i = 0; i < 60 * 1024; i++)
    g_string_append_c (big, 'x');
  g_string_append (big, ">\"}");
  expect_config_refused ("tokenizer_config.json", big->str, "image_token", "a 60 KB image_token");
  g_string_free (big, TRUE);

  /* the largest sequence allowed (32768 × 18 bytes: 576 KB) for each of 500 placeholders: 288 MB */
  G3nChatFormat *f = g3n_chat_format_new ();
  g3n_chat_format_set_seq_lengths (f, 32768, 188);
  GString *rendered = g_string_new (NULL);
  for (int i = 0; i < 500; i++)
    g_string_append (rendered, "<image_soft_token>");
  char *expanded = g3n_chat_expand (f, rendered->str, TRUE, FALSE);
  check (expanded == NULL, "an expansion to 288 MB (500 images of 32768 soft tokens) is refused");
  g_free (expanded);
  g_string_truncate (rendered, 2 * strlen ("<image_soft_token>"));
  expanded = g3n_chat_expand (f, rendered->str, TRUE, FALSE);
  gsize want = 2 * (4 + strlen ("<start_of_image>") + 32768 * strlen ("<image_soft_token>") + strlen ("<end_of_image>"));
  check (expanded && strlen (expanded) == want, "two images of 32768 soft tokens expand to %" G_GSIZE_FORMAT " bytes",
         want);
  g_free (expanded);
  g_string_free (rendered, TRUE);
  g3n_chat_format_free (f);
}

/* Messages of a case as G3nChatMessage; strings stay owned by the JSON. */
static G3nChatMessage *
read_messages (JsonArray *arr, int *n)
{
  *n = (int) json_array_get_length (arr);
  G3nChatMessage *msgs = g_new0 (G3nChatMessage, *n);
  for (int i = 0; i < *n; i++) {
    JsonObject *m = json_array_get_object_element (arr, i);
    const char *role = json_object_get_string_member (m, "role");
    msgs[i].role = g_str_equal (role, "system") ? G3N_CHAT_SYSTEM
                   : g_str_equal (role, "user") ? G3N_CHAT_USER : G3N_CHAT_MODEL;
    JsonNode *content = json_object_get_member (m, "content");
    if (JSON_NODE_HOLDS_VALUE (content)) {
      G3nChatItem *it = g_new0 (G3nChatItem, 1);
      it->type = G3N_CHAT_TEXT;
      it->text = json_node_get_string (content);
      msgs[i].items = it;
      msgs[i].n_items = 1;
      continue;
    }
    JsonArray *items = json_node_get_array (content);
    msgs[i].n_items = (int) json_array_get_length (items);
    G3nChatItem *its = g_new0 (G3nChatItem, msgs[i].n_items);
    for (int k = 0; k < msgs[i].n_items; k++) {
      JsonObject *item = json_array_get_object_element (items, k);
      const char *type = json_object_get_string_member (item, "type");
      its[k].type = g_str_equal (type, "image") ? G3N_CHAT_IMAGE
                    : g_str_equal (type, "audio") ? G3N_CHAT_AUDIO : G3N_CHAT_TEXT;
      if (its[k].type == G3N_CHAT_TEXT)
        its[k].text = json_object_get_string_member (item, "text");
    }
    msgs[i].items = its;
  }
  return msgs;
}

static gboolean
same_ids (GArray *got, JsonArray *want)
{
  if (!got || got->len != json_array_get_length (want))
    return FALSE;
  for (guint i = 0; i < got->len; i++)
    if (g_array_index (got, gint32, i) != json_array_get_int_element (want, i))
      return FALSE;
  return TRUE;
}

/* The Gemma 3 tokenizer with Gemma 3n's multimodal tokens, as the chat fixture's generator patched it. */
static G3nTokenizer *
gemma3n_tokenizer (const char *path, JsonObject *specials)
{
  g_autoptr (GError) error = NULL;
  G3nTokenizer *tok = g3n_tokenizer_new_from_file (path, &error);
  if (!tok) {
    check (FALSE, "load %s: %s", path, error->message);
    return NULL;
  }
  /* In the generator's order: id 256000 is renamed to <start_of_audio> before <end_of_image> moves to 262144. */
  static const char *const order[] = { "boa_token", "eoi_token", "image_token", "eoa_token", "audio_token", "boi_token" };
  for (guint i = 0; i < G_N_ELEMENTS (order); i++) {
    JsonObject *t = json_object_get_object_member (specials, order[i]);
    if (!g3n_tokenizer_set_added_token (tok, (gint32) json_object_get_int_member (t, "id"),
                                        json_object_get_string_member (t, "token"), TRUE, &error)) {
      check (FALSE, "patch %s: %s", order[i], error->message);
      g3n_tokenizer_free (tok);
      return NULL;
    }
  }
  return tok;
}

int
main (int argc, char **argv)
{
  const char *data = g_getenv ("G3N_TEST_DATA");
  g_autofree char *dir = g_build_filename (data ? data : "tests/data", "chat", NULL);
  g_autofree char *golden = g_build_filename (dir, "chat_golden.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  if (!json_parser_load_from_file (parser, golden, &error)) {
    fprintf (stderr, "%s\n", error->message);
    return 2;
  }
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  G3nChatFormat *fmt = g3n_chat_format_load (dir, &error);
  check (fmt && g3n_chat_format_audio_tokens (fmt) == 188 && g3n_chat_format_image_tokens (fmt) == 256,
         "format from tokenizer_config.json + processor_config.json (188 audio, 256 image tokens)");
  const char *tok_path = argc > 1 ? argv[1] : g_getenv ("G3N_TOKENIZER");
  G3nTokenizer *tok = tok_path ? gemma3n_tokenizer (tok_path, json_object_get_object_member (root, "special_tokens"))
                               : NULL;
  if (!tok_path)
    printf ("# no tokenizer given: token ids not checked (set G3N_TOKENIZER)\n");

  JsonArray *cases = json_object_get_array_member (root, "cases");
  for (guint c = 0; c < json_array_get_length (cases); c++) {
    JsonObject *cs = json_array_get_object_element (cases, c);
    const char *name = json_object_get_string_member (cs, "name");
    int n;
    G3nChatMessage *msgs = read_messages (json_object_get_array_member (cs, "messages"), &n);
    g_autofree char *rendered = g3n_chat_render (fmt, msgs, n, json_object_get_boolean_member (cs, "add_generation_prompt"),
                                                 &error);
    check (rendered && g_str_equal (rendered, json_object_get_string_member (cs, "rendered")), "%s: rendering", name);
    g_autofree char *expanded = rendered ? g3n_chat_expand (fmt, rendered, json_object_get_int_member (cs, "num_images") > 0,
                                                            json_object_get_int_member (cs, "num_audios") > 0)
                                         : NULL;
    check (expanded && g_str_equal (expanded, json_object_get_string_member (cs, "expanded_text")), "%s: expansion",
           name);
    if (tok && expanded) {
      g_autoptr (GArray) ids = g3n_tokenizer_encode (tok, expanded, -1, FALSE, NULL);
      check (same_ids (ids, json_object_get_array_member (cs, "ids")), "%s: %u ids", name, ids ? ids->len : 0);
    }
    for (int i = 0; i < n; i++)
      g_free ((gpointer) msgs[i].items);
    g_free (msgs);
  }

  /* Roles must alternate; a system message only first. */
  G3nChatItem hi = { G3N_CHAT_TEXT, "hi" };
  G3nChatMessage two_users[2] = { { G3N_CHAT_USER, &hi, 1 }, { G3N_CHAT_USER, &hi, 1 } };
  g_clear_error (&error);
  char *bad = g3n_chat_render (fmt, two_users, 2, TRUE, &error);
  check (!bad && error && strstr (error->message, "alternate"), "two user turns in a row: %s",
         error ? error->message : "(accepted)");
  g_clear_error (&error);
  G3nChatItem invalid = { G3N_CHAT_TEXT, "caf\xc3" };
  G3nChatMessage inv = { G3N_CHAT_USER, &invalid, 1 };
  bad = g3n_chat_render (fmt, &inv, 1, TRUE, &error);
  check (!bad && error && strstr (error->message, "UTF-8"), "invalid UTF-8 text: %s", error ? error->message : "");
  test_hostile_configs ();
  g3n_chat_format_free (fmt);
  if (tok)
    g3n_tokenizer_free (tok);
  return test_summary ();
}
