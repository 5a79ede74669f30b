/* pattern.c — the "pattern" of Replace (normalizer and decoder) and Split (pre-tokenizer) components: a
 * {"String": ...} matched byte for byte, or a {"Regex": ...}. */
#include "tokenizer-internal.h"

gboolean
tok_pattern_parse (Pattern *pat, JsonObject *o, const char *where, GError **error)
{
  JsonNode *n = tok_member (o, "pattern");
  const char *s;
  GError *re_error = NULL;

  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return tok_fail (error, G3N_ERROR_FORMAT, "%s lacks the object \"pattern\"", where);
  JsonObject *po = json_node_get_object (n);
  if (json_object_has_member (po, "String")) {
    if (!tok_get_string (po, "String", where, TRUE, &s, error))
      return FALSE;
    pat->literal = g_strdup (s);
    pat->literal_len = strlen (s);
    return TRUE;
  }
  if (json_object_has_member (po, "Regex")) {
    if (!tok_get_string (po, "Regex", where, TRUE, &s, error))
      return FALSE;
    pat->regex = g_regex_new (s, 0, 0, &re_error);
    if (!pat->regex) {
      tok_fail (error, G3N_ERROR_UNSUPPORTED, "%s: cannot compile regex \"%s\": %s", where, s, re_error->message);
      g_error_free (re_error);
      return FALSE;
    }
    return TRUE;
  }
  return tok_fail (error, G3N_ERROR_FORMAT, "%s: pattern is neither {\"String\": ...} nor {\"Regex\": ...}", where);
}

void
tok_pattern_clear (Pattern *pat)
{
  g_free (pat->literal);
  if (pat->regex)
    g_regex_unref (pat->regex);
}

/* The first non-empty match of pat in s[0..n) at or after `from`; FALSE if none. Empty matches are skipped: they
 * would only produce empty pieces, which every user of patterns drops. */
gboolean
tok_pattern_next (const Pattern *pat, const char *s, gsize n, gsize from, Span *match)
{
  if (pat->literal) {
    gsize m = pat->literal_len;
    for (gsize i = from; m > 0 && i + m <= n;) {
      const char *hit = memchr (s + i, pat->literal[0], n - m + 1 - i);
      if (!hit)
        return FALSE;
      i = hit - s;
      if (memcmp (hit, pat->literal, m) == 0) {
        match->start = i;
        match->end = i + m;
        return TRUE;
      }
      i++;
    }
    return FALSE;
  }
  GMatchInfo *info = NULL;
  gboolean found = FALSE;
  g_regex_match_full (pat->regex, s, n, from, 0, &info, NULL);
  for (; !found && g_match_info_matches (info); g_match_info_next (info, NULL)) {
    gint a, b;
    if (g_match_info_fetch_pos (info, 0, &a, &b) && b > a) {
      match->start = a;
      match->end = b;
      found = TRUE;
    }
  }
  g_match_info_free (info);
  return found;
}

/* Append s[0..n) to out with every match of pat replaced by content. */
void
tok_pattern_replace (const Pattern *pat, const char *content, const char *s, gsize n, GString *out)
{
  Span m;
  gsize at = 0;

  while (tok_pattern_next (pat, s, n, at, &m)) {
    g_string_append_len (out, s + at, m.start - at);
    g_string_append (out, content);
    at = m.end;
  }
  g_string_append_len (out, s + at, n - at);
}
