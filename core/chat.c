/* chat.c — the Gemma 3n chat format: rendering conversations as the checkpoint's chat template does and
 * expanding image/audio placeholders as Gemma3nProcessor does.
 *
 * The template (chat_template.jinja): "<bos>", then per turn "<start_of_turn>ROLE\n" + content +
 * "<end_of_turn>\n" with assistant → "model"; a leading system message becomes a prefix of the first user
 * turn (its text + "\n\n", untrimmed); text is trimmed as Python's str.strip(); an image item renders as
 * the image token, an audio item as the audio token; add_generation_prompt appends "<start_of_turn>model\n".
 * The processor then replaces each audio token (first) and image token by
 * "\n\n" + begin + N × token + end + "\n\n" — only for a modality actually passed with the prompt, so a
 * literal "<image_soft_token>" in a text-only prompt stays one token.
 *
 * The configs are files from the internet: sequence lengths above a context's MAX_SOFT_TOKENS positions and
 * special tokens longer than MAX_TOKEN_BYTES are refused at load, and an expansion is sized (overflow-checked)
 * before it is built and refused past MAX_EXPANDED_BYTES.
 */
#include "gemma3n.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* Gemma 3n's context holds 32768 positions; each soft token takes one (the real configs: 256 and 188). */
#define MAX_SOFT_TOKENS 32768
/* Special tokens are short markup ("<start_of_image>"); a longer one is a broken or hostile config. */
#define MAX_TOKEN_BYTES 1024
/* The most g3n_chat_expand builds: far beyond any prompt a context can hold (256 × 18 bytes per image). */
#define MAX_EXPANDED_BYTES ((gsize) 256 << 20)

struct _G3nChatFormat {
  char *bos, *start_of_turn, *end_of_turn;
  char *boi, *eoi, *image_token, *boa, *eoa, *audio_token;
  int image_seq_length, audio_seq_length;
};

G3nChatFormat *
g3n_chat_format_new (void)
{
  G3nChatFormat *f = g_new0 (G3nChatFormat, 1);
  f->bos = g_strdup ("<bos>");
  f->start_of_turn = g_strdup ("<start_of_turn>");
  f->end_of_turn = g_strdup ("<end_of_turn>");
  f->boi = g_strdup ("<start_of_image>");
  f->eoi = g_strdup ("<end_of_image>");
  f->image_token = g_strdup ("<image_soft_token>");
  f->boa = g_strdup ("<start_of_audio>");
  f->eoa = g_strdup ("<end_of_audio>");
  f->audio_token = g_strdup ("<audio_soft_token>");
  f->image_seq_length = 256;
  f->audio_seq_length = 188;
  return f;
}

void
g3n_chat_format_free (G3nChatFormat *f)
{
  if (!f)
    return;
  char *strs[] = { f->bos, f->start_of_turn, f->end_of_turn, f->boi, f->eoi, f->image_token, f->boa, f->eoa,
                   f->audio_token };
  for (guint i = 0; i < G_N_ELEMENTS (strs); i++)
    g_free (strs[i]);
  g_free (f);
}

static gboolean
load_json_object (const char *path, JsonParser *parser, JsonObject **out, GError **error)
{
  *out = NULL;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_mapped_file (parser, path, &jerr)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: %s", path, jerr->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: not a JSON object", path);
    return FALSE;
  }
  *out = json_node_get_object (root);
  return TRUE;
}

/* tokenizer_config.json holds a special token either as a string or as {"content": ...}. */
static gboolean
take_string (JsonObject *o, const char *key, char **dst, const char *path, GError **error)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;
  const char *s = NULL;
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    s = json_node_get_string (n);
  else if (n && JSON_NODE_HOLDS_OBJECT (n) && json_object_has_member (json_node_get_object (n), "content"))
    s = json_object_get_string_member (json_node_get_object (n), "content");
  if (s && strlen (s) > MAX_TOKEN_BYTES) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: %s is %" G_GSIZE_FORMAT " bytes long, more than the %d a "
                 "special token may have", path, key, strlen (s), MAX_TOKEN_BYTES);
    return FALSE;
  }
  if (s && *s) {
    g_free (*dst);
    *dst = g_strdup (s);
  }
  return TRUE;
}

static gboolean
take_int (JsonObject *o, const char *key, int *dst, const char *path, GError **error)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: %s must be a non-negative integer", path, key);
    return FALSE;
  }
  if (json_node_get_int (n) < 0 || json_node_get_int (n) > MAX_SOFT_TOKENS) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: %s is %" G_GINT64_FORMAT ": must be in 0..%d (soft tokens, "
                 "each a context position)", path, key, json_node_get_int (n), MAX_SOFT_TOKENS);
    return FALSE;
  }
  *dst = (int) json_node_get_int (n);
  return TRUE;
}

G3nChatFormat *
g3n_chat_format_load (const char *dir, GError **error)
{
  G3nChatFormat *f = g3n_chat_format_new ();
  g_autofree char *tc_path = g_build_filename (dir, "tokenizer_config.json", NULL);
  g_autofree char *pc_path = g_build_filename (dir, "processor_config.json", NULL);
  g_autoptr (JsonParser) tp = json_parser_new (), pp = json_parser_new ();
  JsonObject *tc, *pc;
  if (!load_json_object (tc_path, tp, &tc, error) || !load_json_object (pc_path, pp, &pc, error)) {
    g3n_chat_format_free (f);
    return NULL;
  }
  if (!take_string (tc, "bos_token", &f->bos, tc_path, error) || !take_string (tc, "boi_token", &f->boi, tc_path, error)
      || !take_string (tc, "eoi_token", &f->eoi, tc_path, error)
      || !take_string (tc, "image_token", &f->image_token, tc_path, error)
      || !take_string (tc, "boa_token", &f->boa, tc_path, error) || !take_string (tc, "eoa_token", &f->eoa, tc_path, error)
      || !take_string (tc, "audio_token", &f->audio_token, tc_path, error)
      || !take_int (pc, "image_seq_length", &f->image_seq_length, pc_path, error)
      || !take_int (pc, "audio_seq_length", &f->audio_seq_length, pc_path, error)) {
    g3n_chat_format_free (f);
    return NULL;
  }
  return f;
}

G3nChatFormat *
g3n_chat_format_copy (const G3nChatFormat *f)
{
  G3nChatFormat *c = g_memdup2 (f, sizeof *f);
  char **strs[] = { &c->bos, &c->start_of_turn, &c->end_of_turn, &c->boi, &c->eoi, &c->image_token, &c->boa,
                    &c->eoa, &c->audio_token };
  for (guint i = 0; i < G_N_ELEMENTS (strs); i++)
    *strs[i] = g_strdup (*strs[i]);
  return c;
}

const char *
g3n_chat_format_bos (const G3nChatFormat *f)
{
  return f->bos;
}

const char *
g3n_chat_format_start_of_turn (const G3nChatFormat *f)
{
  return f->start_of_turn;
}

const char *
g3n_chat_format_end_of_turn (const G3nChatFormat *f)
{
  return f->end_of_turn;
}

int
g3n_chat_format_image_tokens (const G3nChatFormat *f)
{
  return f->image_seq_length;
}

int
g3n_chat_format_audio_tokens (const G3nChatFormat *f)
{
  return f->audio_seq_length;
}

void
g3n_chat_format_set_seq_lengths (G3nChatFormat *f, int image_tokens, int audio_tokens)
{
  g_return_if_fail (image_tokens >= 0 && image_tokens <= MAX_SOFT_TOKENS);
  g_return_if_fail (audio_tokens >= 0 && audio_tokens <= MAX_SOFT_TOKENS);
  f->image_seq_length = image_tokens;
  f->audio_seq_length = audio_tokens;
}

/* Python's str.isspace(), which Jinja's trim uses. */
static gboolean
py_isspace (gunichar c)
{
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680
         || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static void
append_trimmed (GString *out, const char *text)
{
  const char *start = text, *end = text + strlen (text);
  while (start < end && py_isspace (g_utf8_get_char (start)))
    start = g_utf8_next_char (start);
  while (end > start) {
    const char *prev = g_utf8_prev_char (end);
    if (!py_isspace (g_utf8_get_char (prev)))
      break;
    end = prev;
  }
  g_string_append_len (out, start, end - start);
}

static void
append_soft_sequence (GString *s, const char *begin, const char *token, int n, const char *end)
{
  g_string_append (s, "\n\n");
  g_string_append (s, begin);
  for (int i = 0; i < n; i++)
    g_string_append (s, token);
  g_string_append (s, end);
  g_string_append (s, "\n\n");
}

void
g3n_chat_format_append_item (const G3nChatFormat *f, GString *out, G3nChatItemType type, const char *text,
                             gboolean expanded)
{
  if (type == G3N_CHAT_IMAGE && expanded)
    append_soft_sequence (out, f->boi, f->image_token, f->image_seq_length, f->eoi);
  else if (type == G3N_CHAT_IMAGE)
    g_string_append (out, f->image_token);
  else if (type == G3N_CHAT_AUDIO && expanded)
    append_soft_sequence (out, f->boa, f->audio_token, f->audio_seq_length, f->eoa);
  else if (type == G3N_CHAT_AUDIO)
    g_string_append (out, f->audio_token);
  else
    append_trimmed (out, text ? text : "");
}

static void
append_content (const G3nChatFormat *f, GString *out, const G3nChatMessage *m)
{
  for (int i = 0; i < m->n_items; i++)
    g3n_chat_format_append_item (f, out, m->items[i].type, m->items[i].text, FALSE);
}

char *
g3n_chat_render (const G3nChatFormat *f, const G3nChatMessage *messages, int n_messages,
                 gboolean add_generation_prompt, GError **error)
{
  for (int i = 0; i < n_messages; i++)
    for (int k = 0; k < messages[i].n_items; k++)
      if (messages[i].items[k].type == G3N_CHAT_TEXT && messages[i].items[k].text
          && !g_utf8_validate (messages[i].items[k].text, -1, NULL)) {
        g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "message %d: text is not valid UTF-8", i);
        return NULL;
      }
  GString *out = g_string_new (f->bos);
  g_autofree char *prefix = NULL;
  int first = 0;
  if (n_messages > 0 && messages[0].role == G3N_CHAT_SYSTEM) {
    const G3nChatItem *it = messages[0].n_items > 0 ? &messages[0].items[0] : NULL;
    prefix = g_strconcat (it && it->text ? it->text : "", "\n\n", NULL);
    first = 1;
  }
  for (int i = first; i < n_messages; i++) {
    const G3nChatMessage *m = &messages[i];
    gboolean want_user = (i - first) % 2 == 0;
    if ((m->role == G3N_CHAT_USER) != want_user || m->role == G3N_CHAT_SYSTEM) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                   "message %d: conversation roles must alternate user/model/user/... (a system message may only "
                   "come first)", i);
      g_string_free (out, TRUE);
      return NULL;
    }
    g_string_append_printf (out, "%s%s\n", f->start_of_turn, m->role == G3N_CHAT_MODEL ? "model" : "user");
    if (i == first && prefix)
      g_string_append (out, prefix);
    append_content (f, out, m);
    g_string_append_printf (out, "%s\n", f->end_of_turn);
  }
  if (add_generation_prompt)
    g_string_append_printf (out, "%smodel\n", f->start_of_turn);
  return g_string_free (out, FALSE);
}

/* text with every occurrence of token replaced by with, as g_strsplit + g_strjoinv would make it; NULL when
 * that would be longer than MAX_EXPANDED_BYTES (sized first, overflow-checked, so nothing big is allocated). */
static char *
replace_bounded (const char *text, const char *token, const char *with)
{
  gsize token_len = strlen (token), with_len = strlen (with), count = 0, size = strlen (text) + 1, extra;
  for (const char *p = strstr (text, token); p; p = strstr (p + token_len, token))
    count++;
  if (with_len > token_len
      && (!g_size_checked_mul (&extra, count, with_len - token_len) || !g_size_checked_add (&size, size, extra)
          || size > MAX_EXPANDED_BYTES))
    return NULL;
  GString *out = g_string_sized_new (with_len > token_len ? size : strlen (text) + 1);
  const char *from = text;
  for (const char *p = strstr (text, token); p; from = p + token_len, p = strstr (from, token)) {
    g_string_append_len (out, from, p - from);
    g_string_append_len (out, with, (gssize) with_len);
  }
  g_string_append (out, from);
  return g_string_free (out, FALSE);
}

static char *
full_sequence (const char *begin, const char *token, int n, const char *end)
{
  GString *s = g_string_new (NULL);
  append_soft_sequence (s, begin, token, n, end);
  return g_string_free (s, FALSE);
}

char *
g3n_chat_expand (const G3nChatFormat *f, const char *rendered, gboolean images, gboolean audio)
{
  g_autofree char *audio_seq = audio ? full_sequence (f->boa, f->audio_token, f->audio_seq_length, f->eoa) : NULL;
  g_autofree char *image_seq = images ? full_sequence (f->boi, f->image_token, f->image_seq_length, f->eoi) : NULL;
  g_autofree char *a = audio ? replace_bounded (rendered, f->audio_token, audio_seq) : g_strdup (rendered);
  return images && a ? replace_bounded (a, f->image_token, image_seq) : g_steal_pointer (&a);
}
