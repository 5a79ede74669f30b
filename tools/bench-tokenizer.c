/* bench-tokenizer.c — load time and encode/decode throughput of core/tokenizer.c.
 *
 * Usage: bench-tokenizer TOKENIZER_JSON GOLDEN_JSON [MEGABYTES]
 * The text is the golden's `encode` strings (many languages, code, emoji, whitespace runs) joined by newlines and
 * repeated up to MEGABYTES (default 10) of UTF-8.
 */
#include "gemma3n.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double
seconds_since (gint64 t0)
{
  return (g_get_monotonic_time () - t0) / 1e6;
}

static GString *
build_text (const char *golden_path, gsize target, GError **error)
{
  JsonParser *parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, golden_path, error)) {
    g_object_unref (parser);
    return NULL;
  }
  JsonArray *cases = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), "encode");
  GString *one = g_string_new (NULL), *text = g_string_sized_new (target + 4096);
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    g_string_append (one, json_object_get_string_member (json_array_get_object_element (cases, i), "text"));
    g_string_append_c (one, '\n');
  }
  while (text->len < target)
    g_string_append_len (text, one->str, one->len);
  g_string_free (one, TRUE);
  g_object_unref (parser);
  return text;
}

int
main (int argc, char **argv)
{
  GError *error = NULL;

  if (argc < 3) {
    fprintf (stderr, "usage: %s TOKENIZER_JSON GOLDEN_JSON [MEGABYTES]\n", argv[0]);
    return 2;
  }
  gsize target = (gsize) ((argc > 3 ? atof (argv[3]) : 10.0) * 1e6);

  double load_best = 1e9;
  G3nTokenizer *tok = NULL;
  for (int i = 0; i < 3; i++) { /* best of three: the first run also pays for reading the file */
    g3n_tokenizer_free (tok);
    gint64 t0 = g_get_monotonic_time ();
    tok = g3n_tokenizer_new_from_file (argv[1], &error);
    if (!tok) {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
    load_best = MIN (load_best, seconds_since (t0));
  }
  printf ("load: %.3f s (best of 3)\n", load_best);

  GString *text = build_text (argv[2], target, &error);
  if (!text) {
    fprintf (stderr, "%s\n", error->message);
    return 1;
  }
  double mb = text->len / 1e6;

  gint64 t0 = g_get_monotonic_time ();
  GArray *ids = g3n_tokenizer_encode (tok, text->str, (gssize) text->len, FALSE, &error);
  double enc = seconds_since (t0);
  if (!ids) {
    fprintf (stderr, "%s\n", error->message);
    return 1;
  }
  printf ("encode: %.1f MB in %.3f s = %.1f MB/s, %u tokens (%.2f M tokens/s)\n", mb, enc, mb / enc, ids->len,
          ids->len / enc / 1e6);

  gsize out_len;
  t0 = g_get_monotonic_time ();
  char *back = g3n_tokenizer_decode (tok, (const gint32 *) ids->data, ids->len, FALSE, &out_len);
  double dec = seconds_since (t0);
  printf ("decode: %.3f s = %.1f MB/s, round trip %s\n", dec, mb / dec,
          out_len == text->len && memcmp (back, text->str, out_len) == 0 ? "exact" : "DIFFERENT");

  G3nDetokenizer *dt = g3n_detokenizer_new (tok, FALSE);
  GString *streamed = g_string_sized_new (text->len);
  t0 = g_get_monotonic_time ();
  for (guint i = 0; i < ids->len; i++)
    g3n_detokenizer_push (dt, g_array_index (ids, gint32, i), streamed);
  g3n_detokenizer_finish (dt, streamed);
  double str = seconds_since (t0);
  printf ("streaming decode: %.3f s = %.2f us/token, %s whole decode\n", str, str / ids->len * 1e6,
          streamed->len == out_len && memcmp (streamed->str, back, out_len) == 0 ? "equals" : "DIFFERS FROM");

  g3n_detokenizer_free (dt);
  g_string_free (streamed, TRUE);
  g_free (back);
  g_array_free (ids, TRUE);
  g_string_free (text, TRUE);
  g3n_tokenizer_free (tok);
  return 0;
}
