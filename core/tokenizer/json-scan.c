/* json-scan.c — strict JSON scanning of tokenizer.json.
 *
 * Almost all of a real tokenizer.json (33 MB for Gemma) is model.vocab and model.merges. Building a json-glib node
 * per entry and freeing them again took over a second, so the document is first checked here, strictly as RFC 8259
 * (and the reference's serde_json) define JSON, noting where those two members lie; they are then read straight
 * from the bytes (bpe-load.c, with the tok_scan_* readers below), and json-glib parses only the rest, with them
 * emptied (tok_document_rest). */
#include "tokenizer-internal.h"

/* How deep containers may nest: the limit of the reference's parser (serde_json). It also bounds the recursion here
 * and in json-glib, which would otherwise overflow the stack on a deeply nested file. */
#define MAX_DEPTH 127

static gboolean
scan_fail (const Scanner *s, const char *what, GError **error)
{
  guint line = 1;
  const char *line_start = s->text;

  for (const char *q = s->text; q < s->p; q++)
    if (*q == '\n') {
      line++;
      line_start = q + 1;
    }
  return tok_fail (error, G3N_ERROR_FORMAT, "malformed JSON at line %u, column %u: %s", line,
                   (guint) (s->p - line_start) + 1, what);
}

/* The next byte after white space, or -1 at the end. */
int
tok_scan_peek (Scanner *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
  return s->p < s->end ? (guint8) *s->p : -1;
}

static gboolean
scan_char (Scanner *s, char c, const char *what, GError **error)
{
  if (tok_scan_peek (s) != (guint8) c)
    return scan_fail (s, what, error);
  s->p++;
  return TRUE;
}

/* Step through the items of the container opened before: TRUE in *more when another item follows (its separating
 * comma consumed), FALSE once the closing bracket has been consumed. */
gboolean
tok_scan_next (Scanner *s, char close, gboolean first, gboolean *more, GError **error)
{
  int c = tok_scan_peek (s);

  *more = c != close;
  if (c == -1)
    return scan_fail (s, "unexpected end of the document", error);
  if (c == close || (!first && c == ','))
    s->p++;
  else if (!first)
    return scan_fail (s, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'", error);
  return TRUE; /* before a first item, whatever follows is for the item's reader to check */
}

/* Skip string bytes up to a quote, backslash or control character, checking that they are UTF-8. */
static gboolean
scan_plain_run (Scanner *s, GError **error)
{
  while (s->p < s->end) {
    guint8 c = (guint8) *s->p;
    if (c < 0x80) {
      if (c == '"' || c == '\\' || c < 0x20)
        return TRUE;
      s->p++;
      continue;
    }
    gboolean truncated;
    gsize k = tok_utf8_sequence ((const guint8 *) s->p, s->end - s->p, &truncated);
    if (k == 0)
      return scan_fail (s, "invalid UTF-8 in a string", error);
    s->p += k;
  }
  return TRUE;
}

/* The \uXXXX escape at the cursor (the first of a pair is known to be one; the second may be missing). */
static gboolean
scan_hex4 (Scanner *s, gunichar *u, GError **error)
{
  *u = 0;
  if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
    return scan_fail (s, "a high surrogate escape without its low half", error);
  for (int i = 2; i < 6; i++) {
    int d = g_ascii_xdigit_value (s->p[i]);
    if (d < 0)
      return scan_fail (s, "bad \\u escape", error);
    *u = *u * 16 + (gunichar) d;
  }
  s->p += 6;
  return TRUE;
}

/* Decode the escape at the cursor (a backslash) onto buf. A surrogate must come as a high-low pair, as the
 * reference requires: a lone one is no character, and would make the text invalid UTF-8. */
static gboolean
scan_escape (Scanner *s, GString *buf, GError **error)
{
  static const char names[] = "\"\\/bfnrt", values[] = "\"\\/\b\f\n\r\t";
  const char *simple = s->end - s->p >= 2 && s->p[1] ? strchr (names, s->p[1]) : NULL;
  gunichar u, low;

  if (simple) {
    g_string_append_c (buf, values[simple - names]);
    s->p += 2;
    return TRUE;
  }
  if (s->end - s->p < 2 || s->p[1] != 'u')
    return scan_fail (s, "unknown escape in a string", error);
  if (!scan_hex4 (s, &u, error))
    return FALSE;
  if (u >= 0xDC00 && u <= 0xDFFF)
    return scan_fail (s, "a low surrogate escape without its high half", error);
  if (u >= 0xD800 && u <= 0xDBFF) {
    if (!scan_hex4 (s, &low, error))
      return FALSE;
    if (low < 0xDC00 || low > 0xDFFF)
      return scan_fail (s, "a high surrogate escape without its low half", error);
    u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
  }
  g_string_append_unichar (buf, u); /* U+0000 included: a JSON string may hold one */
  return TRUE;
}

/* Read the string at the cursor. Its text goes into buf only if it has escapes; otherwise *out points into the
 * document, saving a copy for the vast majority of strings. */
gboolean
tok_scan_string (Scanner *s, GString *buf, Text *out, GError **error)
{
  if (!scan_char (s, '"', "expected a string", error))
    return FALSE;
  const char *start = s->p;
  gboolean escaped = FALSE;

  for (;;) {
    const char *run = s->p;
    if (!scan_plain_run (s, error))
      return FALSE;
    if (escaped)
      g_string_append_len (buf, run, s->p - run);
    if (s->p == s->end)
      return scan_fail (s, "unterminated string", error);
    if (*s->p == '"')
      break;
    if (*s->p != '\\')
      return scan_fail (s, "control character in a string", error);
    if (!escaped) {
      g_string_truncate (buf, 0);
      g_string_append_len (buf, start, s->p - start);
      escaped = TRUE;
    }
    if (!scan_escape (s, buf, error))
      return FALSE;
  }
  out->str = escaped ? buf->str : start;
  out->len = escaped ? buf->len : (gsize) (s->p - start);
  s->p++;
  return TRUE;
}

static gboolean
scan_digits (Scanner *s, GError **error)
{
  if (s->p == s->end || !g_ascii_isdigit (*s->p))
    return scan_fail (s, "expected a digit", error);
  while (s->p < s->end && g_ascii_isdigit (*s->p))
    s->p++;
  return TRUE;
}

/* Read the number at the cursor; *id receives its value when it is an integer in 0..MAX_ID-1, otherwise -1. */
gboolean
tok_scan_number (Scanner *s, gint64 *id, GError **error)
{
  gboolean negative = s->p < s->end && *s->p == '-', integral = TRUE;
  gint64 value = 0;

  s->p += negative;
  if (s->p < s->end && *s->p == '0') /* JSON allows no other leading zero */
    s->p++;
  else {
    const char *digits = s->p;
    if (!scan_digits (s, error))
      return FALSE;
    for (const char *q = digits; q < s->p && value < MAX_ID; q++)
      value = value * 10 + (*q - '0');
  }
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    integral = FALSE;
    if (!scan_digits (s, error))
      return FALSE;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    integral = FALSE;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (!scan_digits (s, error))
      return FALSE;
  }
  *id = integral && value < MAX_ID && !(negative && value != 0) ? value : -1;
  return TRUE;
}

static gboolean
scan_literal (Scanner *s, const char *word, GError **error)
{
  gsize n = strlen (word);

  if ((gsize) (s->end - s->p) < n || memcmp (s->p, word, n) != 0)
    return scan_fail (s, "expected a value", error);
  s->p += n;
  return TRUE;
}

static gboolean scan_container (Scanner *s, guint depth, gsize *n_items, GError **error);

/* Check and skip the value at the cursor, at nesting `depth`; *n_items (may be NULL) receives the number of members
 * or elements when it is a container. */
gboolean
tok_scan_value (Scanner *s, guint depth, gsize *n_items, GError **error)
{
  gint64 id;
  Text t;

  switch (tok_scan_peek (s)) {
  case '{':
  case '[':
    return scan_container (s, depth, n_items, error);
  case '"':
    return tok_scan_string (s, s->scratch, &t, error);
  case 't':
    return scan_literal (s, "true", error);
  case 'f':
    return scan_literal (s, "false", error);
  case 'n':
    return scan_literal (s, "null", error);
  case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
    return tok_scan_number (s, &id, error);
  default:
    return scan_fail (s, "expected a value", error);
  }
}

/* A member name and its colon. */
gboolean
tok_scan_key (Scanner *s, Text *key, GError **error)
{
  return tok_scan_string (s, s->scratch, key, error) && scan_char (s, ':', "expected ':'", error);
}

static gboolean
scan_container (Scanner *s, guint depth, gsize *n_items, GError **error)
{
  char close = *s->p == '{' ? '}' : ']';
  gsize n = 0;
  gboolean more;
  Text key;

  if (depth >= MAX_DEPTH)
    return scan_fail (s, "nested too deeply", error);
  s->p++;
  for (; tok_scan_next (s, close, n == 0, &more, error); n++) {
    if (!more) {
      if (n_items)
        *n_items = n;
      return TRUE;
    }
    if ((close == '}' && !tok_scan_key (s, &key, error)) || !tok_scan_value (s, depth + 1, NULL, error))
      return FALSE;
  }
  return FALSE;
}

/* ---------------------------------------------------------------- the document outline */

/* Whether a member name is `name` as json-glib sees it: it cuts names at a NUL (from \u0000), and both readers must
 * agree on which member is "model", "vocab" or "merges". */
static gboolean
key_is (const Text *key, const char *name)
{
  gsize n = strlen (name);
  return key->len >= n && memcmp (key->str, name, n) == 0 && (key->len == n || key->str[n] == '\0');
}

/* Skip a value, noting its extent. */
static gboolean
scan_span (Scanner *s, guint depth, ValueSpan *span, GError **error)
{
  span->n_items = 0;
  tok_scan_peek (s);
  span->start = s->p;
  if (!tok_scan_value (s, depth, &span->n_items, error))
    return FALSE;
  span->end = s->p;
  return TRUE;
}

/* Check the members of the object at the cursor; with `model` set, note where "vocab" and "merges" lie, otherwise
 * descend into "model". Of repeated names the last one counts, for json-glib and the reference alike. */
static gboolean
scan_members (Scanner *s, Document *d, gboolean model, GError **error)
{
  guint depth = model ? 1 : 0;
  gboolean more;
  Text key;

  s->p++;
  for (gsize n = 0; tok_scan_next (s, '}', n == 0, &more, error); n++) {
    if (!more)
      return TRUE;
    if (!tok_scan_key (s, &key, error))
      return FALSE;
    gboolean ok;
    if (model && key_is (&key, "vocab"))
      ok = scan_span (s, depth + 1, &d->vocab, error);
    else if (model && key_is (&key, "merges"))
      ok = scan_span (s, depth + 1, &d->merges, error);
    else if (!model && key_is (&key, "model")) {
      memset (&d->vocab, 0, sizeof d->vocab);
      memset (&d->merges, 0, sizeof d->merges);
      ok = tok_scan_peek (s) == '{' ? scan_members (s, d, TRUE, error) : tok_scan_value (s, depth + 1, NULL, error);
    } else
      ok = tok_scan_value (s, depth + 1, NULL, error);
    if (!ok)
      return FALSE;
  }
  return FALSE;
}

/* Check the whole document, noting where the model's tables lie. */
gboolean
tok_scan_document (Document *d, GError **error)
{
  Scanner s = { d->text, d->text, d->text + d->len, d->scratch };

  if (d->len >= 3 && memcmp (d->text, "\xEF\xBB\xBF", 3) == 0) /* a byte order mark, which json-glib accepts */
    s.p += 3;
  gboolean ok = tok_scan_peek (&s) == '{' ? scan_members (&s, d, FALSE, error) : tok_scan_value (&s, 0, NULL, error);
  if (ok && tok_scan_peek (&s) != -1)
    return scan_fail (&s, "unexpected text after the end", error);
  return ok;
}

/* A scanner over one value of the document. */
Scanner
tok_document_scanner (const Document *d, const ValueSpan *span)
{
  Scanner s = { d->text, span->start, span->end, d->scratch };
  return s;
}

/* The document with the model's tables emptied (a container stays a container of the same kind), for json-glib. */
GString *
tok_document_rest (const Document *d)
{
  const ValueSpan *cut[2] = { &d->vocab, &d->merges };
  GString *out = g_string_sized_new (d->len / 16);
  const char *at = d->text;

  if (cut[0]->start && cut[1]->start && cut[0]->start > cut[1]->start) {
    const ValueSpan *t = cut[0];
    cut[0] = cut[1];
    cut[1] = t;
  }
  for (int i = 0; i < 2; i++) {
    const ValueSpan *v = cut[i];
    if (!v->start || (*v->start != '{' && *v->start != '['))
      continue;
    g_string_append_len (out, at, v->start - at);
    g_string_append (out, *v->start == '{' ? "{}" : "[]");
    at = v->end;
  }
  g_string_append_len (out, at, d->text + d->len - at);
  return out;
}
