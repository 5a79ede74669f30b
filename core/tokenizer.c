/* tokenizer.c — Hugging Face tokenizer.json reader, BPE encoder and decoder (see tokenizer.h).
 *
 * Encoding follows the reference pipeline:
 *   1. split the raw text on added tokens whose `normalized` flag is false (leftmost-longest match);
 *   2. normalize each remaining piece, then split it on the normalized added tokens;
 *   3. pre-tokenize what is left into words and run BPE on each word;
 *   4. optionally wrap the ids with the post-processor's template.
 * Decoding maps ids to pieces (added tokens first) and runs the decoder chain over the piece list.
 */
#include "gemma3n.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* Ids from a file above this are refused, so a corrupt number cannot trigger a huge allocation. */
#define MAX_ID (1 << 28)

static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD"; /* U+FFFD */

typedef struct {
  gsize start, end;
} Span;

/* A piece of text between or on added tokens: token is an index into tok->added, or -1 for plain text. */
typedef struct {
  gsize start, end;
  gint32 token;
} Segment;

/* ================================================================ UTF-8 and character classes */

/* Length of the UTF-8 sequence starting at s (n > 0 bytes available) under the rules of Rust's str::from_utf8, which
 * is what the reference applies to byte-fallback runs: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Returns 0 when invalid, and then sets *truncated if the bytes were a valid start cut short by the buffer end. */
static gsize
utf8_sequence (const guint8 *s, gsize n, gboolean *truncated)
{
  guint8 c = s[0], lo = 0x80, hi = 0xBF;
  gsize need;

  *truncated = FALSE;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    need = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    lo = c == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
    hi = c == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    lo = c == 0xF0 ? 0x90 : 0x80;
    hi = c == 0xF4 ? 0x8F : 0xBF; /* beyond U+10FFFF */
  } else
    return 0;
  for (gsize i = 1; i < need; i++) {
    if (i >= n) {
      *truncated = TRUE;
      return 0;
    }
    guint8 b = s[i];
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
      return 0;
  }
  return need;
}

typedef enum { UTF8_VALID, UTF8_TRUNCATED, UTF8_INVALID } Utf8Status;

/* Classify a buffer (NUL bytes are valid, unlike g_utf8_validate); *bad_at receives the first bad offset. */
static Utf8Status
utf8_check (const char *s, gsize n, gsize *bad_at)
{
  const guint8 *u = (const guint8 *) s;
  gsize i = 0;

  while (i < n) {
    gboolean truncated;
    gsize k = utf8_sequence (u + i, n - i, &truncated);
    if (k == 0) {
      if (bad_at)
        *bad_at = i;
      return truncated ? UTF8_TRUNCATED : UTF8_INVALID;
    }
    i += k;
  }
  return UTF8_VALID;
}

/* Length of the character at s in text already known to be valid UTF-8. */
static gsize
utf8_char_len (const char *s)
{
  guint8 c = (guint8) *s;
  return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Rust's char::is_whitespace and regex \s: the Unicode White_Space property. */
static gboolean
is_white_space (gunichar c)
{
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
         || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Regex \w in Unicode mode: letters, marks, decimal and letter numbers, connector punctuation, joiners. */
static gboolean
is_word_char (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);
  return g_unichar_isalnum (c) || g_unichar_ismark (c) || t == G_UNICODE_LETTER_NUMBER
         || t == G_UNICODE_CONNECT_PUNCTUATION || c == 0x200C || c == 0x200D;
}

/* The byte a "<0xNN>" piece stands for, or -1. Mirrors the reference's ByteFallback test: six bytes, "<0x" and ">",
 * the middle two parsed as a base-16 u8 — a parse that also accepts a leading '+', as in "<0x+A>". */
static int
piece_byte (const char *p, gsize len)
{
  if (len != 6 || memcmp (p, "<0x", 3) != 0 || p[5] != '>')
    return -1;
  int hi = g_ascii_xdigit_value (p[3]), lo = g_ascii_xdigit_value (p[4]);
  if (p[3] == '+' && lo >= 0)
    return lo;
  return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}

/* ================================================================ errors and JSON access */

static gboolean fail (GError **error, gint code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static gboolean
fail (GError **error, gint code, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  char *msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G3N_ERROR, code, "tokenizer.json: %s", msg);
  g_free (msg);
  return FALSE;
}

/* The member `name` of o, or NULL when it is absent or JSON null (the reference treats both alike). */
static JsonNode *
member (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

static gboolean
node_is (JsonNode *n, GType type)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

/* Optional/required string member; *out is NULL when absent and optional. */
static gboolean
get_string (JsonObject *o, const char *name, const char *where, gboolean required, const char **out, GError **error)
{
  JsonNode *n = member (o, name);
  *out = NULL;
  if (!n)
    return required ? fail (error, G3N_ERROR_FORMAT, "%s lacks the string \"%s\"", where, name) : TRUE;
  if (!node_is (n, G_TYPE_STRING))
    return fail (error, G3N_ERROR_FORMAT, "%s: \"%s\" is not a string", where, name);
  *out = json_node_get_string (n);
  return TRUE;
}

static gboolean
get_bool (JsonObject *o, const char *name, const char *where, gboolean dflt, gboolean *out, GError **error)
{
  JsonNode *n = member (o, name);
  *out = dflt;
  if (!n)
    return TRUE;
  if (!node_is (n, G_TYPE_BOOLEAN))
    return fail (error, G3N_ERROR_FORMAT, "%s: \"%s\" is not a boolean", where, name);
  *out = json_node_get_boolean (n);
  return TRUE;
}

static gboolean
get_int (JsonObject *o, const char *name, const char *where, gint64 dflt, gint64 *out, GError **error)
{
  JsonNode *n = member (o, name);
  *out = dflt;
  if (!n)
    return TRUE;
  if (!node_is (n, G_TYPE_INT64))
    return fail (error, G3N_ERROR_FORMAT, "%s: \"%s\" is not an integer", where, name);
  *out = json_node_get_int (n);
  return TRUE;
}

/* ================================================================ strict JSON scanning
 *
 * Almost all of a real tokenizer.json (33 MB for Gemma) is model.vocab and model.merges. Building a json-glib node
 * per entry and freeing them again took over a second, so the document is first checked here, strictly as RFC 8259
 * (and the reference's serde_json) define JSON, noting where those two members lie; they are then read straight
 * from the bytes, and json-glib parses only the rest, with them emptied. */

/* How deep containers may nest: the limit of the reference's parser (serde_json). It also bounds the recursion here
 * and in json-glib, which would otherwise overflow the stack on a deeply nested file. */
#define MAX_DEPTH 127

/* model.vocab and model.merges sit at this depth: the root object, then "model". */
#define TABLE_DEPTH 2

typedef struct {
  const char *text;   /* the whole document, to give positions in errors */
  const char *p, *end;
  GString *scratch;   /* unescaped text of strings that are only checked */
} Scanner;

/* A string as read: pointing into the document when it had no escapes, into a buffer otherwise. */
typedef struct {
  const char *str;
  gsize len;
} Text;

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
  return fail (error, G3N_ERROR_FORMAT, "malformed JSON at line %u, column %u: %s", line,
               (guint) (s->p - line_start) + 1, what);
}

/* The next byte after white space, or -1 at the end. */
static int
scan_peek (Scanner *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
  return s->p < s->end ? (guint8) *s->p : -1;
}

static gboolean
scan_char (Scanner *s, char c, const char *what, GError **error)
{
  if (scan_peek (s) != (guint8) c)
    return scan_fail (s, what, error);
  s->p++;
  return TRUE;
}

/* Step through the items of the container opened before: TRUE in *more when another item follows (its separating
 * comma consumed), FALSE once the closing bracket has been consumed. */
static gboolean
scan_next (Scanner *s, char close, gboolean first, gboolean *more, GError **error)
{
  int c = scan_peek (s);

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
    gsize k = utf8_sequence ((const guint8 *) s->p, s->end - s->p, &truncated);
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
static gboolean
scan_string (Scanner *s, GString *buf, Text *out, GError **error)
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
static gboolean
scan_number (Scanner *s, gint64 *id, GError **error)
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
static gboolean
scan_value (Scanner *s, guint depth, gsize *n_items, GError **error)
{
  gint64 id;
  Text t;

  switch (scan_peek (s)) {
  case '{':
  case '[':
    return scan_container (s, depth, n_items, error);
  case '"':
    return scan_string (s, s->scratch, &t, error);
  case 't':
    return scan_literal (s, "true", error);
  case 'f':
    return scan_literal (s, "false", error);
  case 'n':
    return scan_literal (s, "null", error);
  case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
    return scan_number (s, &id, error);
  default:
    return scan_fail (s, "expected a value", error);
  }
}

/* A member name and its colon. */
static gboolean
scan_key (Scanner *s, Text *key, GError **error)
{
  return scan_string (s, s->scratch, key, error) && scan_char (s, ':', "expected ':'", error);
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
  for (; scan_next (s, close, n == 0, &more, error); n++) {
    if (!more) {
      if (n_items)
        *n_items = n;
      return TRUE;
    }
    if ((close == '}' && !scan_key (s, &key, error)) || !scan_value (s, depth + 1, NULL, error))
      return FALSE;
  }
  return FALSE;
}

/* ---------------------------------------------------------------- the document outline */

/* Where a value lies in the document. */
typedef struct {
  const char *start, *end; /* NULL when absent */
  gsize n_items;           /* members or elements, when it is a container */
} ValueSpan;

typedef struct {
  const char *text; /* the caller's bytes: the file mapping or the data passed in */
  gsize len;
  GString *scratch; /* shared by the scanners over the document */
  ValueSpan vocab, merges; /* model.vocab and model.merges, those json-glib will take for them */
} Document;

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
  scan_peek (s);
  span->start = s->p;
  if (!scan_value (s, depth, &span->n_items, error))
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
  for (gsize n = 0; scan_next (s, '}', n == 0, &more, error); n++) {
    if (!more)
      return TRUE;
    if (!scan_key (s, &key, error))
      return FALSE;
    gboolean ok;
    if (model && key_is (&key, "vocab"))
      ok = scan_span (s, depth + 1, &d->vocab, error);
    else if (model && key_is (&key, "merges"))
      ok = scan_span (s, depth + 1, &d->merges, error);
    else if (!model && key_is (&key, "model")) {
      memset (&d->vocab, 0, sizeof d->vocab);
      memset (&d->merges, 0, sizeof d->merges);
      ok = scan_peek (s) == '{' ? scan_members (s, d, TRUE, error) : scan_value (s, depth + 1, NULL, error);
    } else
      ok = scan_value (s, depth + 1, NULL, error);
    if (!ok)
      return FALSE;
  }
  return FALSE;
}

/* Check the whole document, noting where the model's tables lie. */
static gboolean
scan_document (Document *d, GError **error)
{
  Scanner s = { d->text, d->text, d->text + d->len, d->scratch };

  if (d->len >= 3 && memcmp (d->text, "\xEF\xBB\xBF", 3) == 0) /* a byte order mark, which json-glib accepts */
    s.p += 3;
  gboolean ok = scan_peek (&s) == '{' ? scan_members (&s, d, FALSE, error) : scan_value (&s, 0, NULL, error);
  if (ok && scan_peek (&s) != -1)
    return scan_fail (&s, "unexpected text after the end", error);
  return ok;
}

/* A scanner over one value of the document. */
static Scanner
document_scanner (const Document *d, const ValueSpan *span)
{
  Scanner s = { d->text, span->start, span->end, d->scratch };
  return s;
}

/* The document with the model's tables emptied (a container stays a container of the same kind), for json-glib. */
static GString *
document_rest (const Document *d)
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

/* ================================================================ patterns (Replace, Split) */

typedef struct {
  char *literal; /* a {"String": ...} pattern, matched byte for byte */
  gsize literal_len;
  GRegex *regex; /* a {"Regex": ...} pattern (PCRE here, Oniguruma in the reference: same for common patterns) */
} Pattern;

static gboolean
pattern_parse (Pattern *pat, JsonObject *o, const char *where, GError **error)
{
  JsonNode *n = member (o, "pattern");
  const char *s;
  GError *re_error = NULL;

  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, G3N_ERROR_FORMAT, "%s lacks the object \"pattern\"", where);
  JsonObject *po = json_node_get_object (n);
  if (json_object_has_member (po, "String")) {
    if (!get_string (po, "String", where, TRUE, &s, error))
      return FALSE;
    pat->literal = g_strdup (s);
    pat->literal_len = strlen (s);
    return TRUE;
  }
  if (json_object_has_member (po, "Regex")) {
    if (!get_string (po, "Regex", where, TRUE, &s, error))
      return FALSE;
    pat->regex = g_regex_new (s, 0, 0, &re_error);
    if (!pat->regex) {
      fail (error, G3N_ERROR_UNSUPPORTED, "%s: cannot compile regex \"%s\": %s", where, s, re_error->message);
      g_error_free (re_error);
      return FALSE;
    }
    return TRUE;
  }
  return fail (error, G3N_ERROR_FORMAT, "%s: pattern is neither {\"String\": ...} nor {\"Regex\": ...}", where);
}

static void
pattern_clear (Pattern *pat)
{
  g_free (pat->literal);
  if (pat->regex)
    g_regex_unref (pat->regex);
}

/* The first non-empty match of pat in s[0..n) at or after `from`; FALSE if none. Empty matches are skipped: they
 * would only produce empty pieces, which every user of patterns drops. */
static gboolean
pattern_next (const Pattern *pat, const char *s, gsize n, gsize from, Span *match)
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
static void
pattern_replace (const Pattern *pat, const char *content, const char *s, gsize n, GString *out)
{
  Span m;
  gsize at = 0;

  while (pattern_next (pat, s, n, at, &m)) {
    g_string_append_len (out, s + at, m.start - at);
    g_string_append (out, content);
    at = m.end;
  }
  g_string_append_len (out, s + at, n - at);
}

/* ================================================================ components (normalizer, pre-tokenizer, decoder) */

typedef enum { ROLE_NORMALIZER, ROLE_PRE_TOKENIZER, ROLE_DECODER } Role;

typedef enum {
  C_SEQUENCE,   /* all roles */
  C_REPLACE,    /* normalizer, decoder */
  C_PREPEND,    /* normalizer */
  C_STRIP,      /* normalizer (strip_left/right) and decoder (content/start/stop) */
  C_NFC, C_NFD, C_NFKC, C_NFKD, C_LOWERCASE, /* normalizers */
  C_SPLIT,      /* pre-tokenizer */
  C_BYTE_FALLBACK, C_FUSE, /* decoders */
} ComponentKind;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_WITH_PREVIOUS, SPLIT_MERGED_WITH_NEXT, SPLIT_CONTIGUOUS } SplitBehavior;

typedef struct Component Component;
struct Component {
  ComponentKind kind;
  Pattern pattern;         /* Replace, Split */
  char *content;           /* Replace: replacement; Prepend: prefix */
  gboolean left, right;    /* Strip normalizer */
  gunichar strip_char;     /* Strip decoder */
  gint64 start, stop;      /* Strip decoder: how many strip_char to remove at each end of every token */
  SplitBehavior behavior;  /* Split */
  gboolean invert;         /* Split */
  GPtrArray *children;     /* Sequence: Component* */
};

static void
component_free (Component *c)
{
  if (!c)
    return;
  pattern_clear (&c->pattern);
  g_free (c->content);
  if (c->children)
    g_ptr_array_free (c->children, TRUE);
  g_free (c);
}

typedef struct {
  const char *type;
  Role role;
  ComponentKind kind;
} ComponentType;

static const ComponentType component_types[] = {
  { "Sequence", ROLE_NORMALIZER, C_SEQUENCE },
  { "Replace", ROLE_NORMALIZER, C_REPLACE },
  { "Prepend", ROLE_NORMALIZER, C_PREPEND },
  { "Strip", ROLE_NORMALIZER, C_STRIP },
  { "NFC", ROLE_NORMALIZER, C_NFC },
  { "NFD", ROLE_NORMALIZER, C_NFD },
  { "NFKC", ROLE_NORMALIZER, C_NFKC },
  { "NFKD", ROLE_NORMALIZER, C_NFKD },
  { "Lowercase", ROLE_NORMALIZER, C_LOWERCASE },
  { "Sequence", ROLE_PRE_TOKENIZER, C_SEQUENCE },
  { "Split", ROLE_PRE_TOKENIZER, C_SPLIT },
  { "Sequence", ROLE_DECODER, C_SEQUENCE },
  { "Replace", ROLE_DECODER, C_REPLACE },
  { "ByteFallback", ROLE_DECODER, C_BYTE_FALLBACK },
  { "Fuse", ROLE_DECODER, C_FUSE },
  { "Strip", ROLE_DECODER, C_STRIP },
};

static const char *const role_names[] = { "normalizer", "pre_tokenizer", "decoder" };
static const char *const sequence_members[] = { "normalizers", "pretokenizers", "decoders" };

static gboolean component_parse (JsonNode *node, Role role, const char *where, Component **out, GError **error);

static gboolean
parse_sequence (Component *c, JsonObject *o, Role role, const char *where, GError **error)
{
  const char *name = sequence_members[role];
  JsonNode *n = member (o, name);

  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    return fail (error, G3N_ERROR_FORMAT, "%s lacks the array \"%s\"", where, name);
  JsonArray *a = json_node_get_array (n);
  c->children = g_ptr_array_new_with_free_func ((GDestroyNotify) component_free);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    char *child_where = g_strdup_printf ("%s.%s[%u]", where, name, i);
    Component *child = NULL;
    gboolean ok = component_parse (json_array_get_element (a, i), role, child_where, &child, error);
    g_free (child_where);
    if (!ok)
      return FALSE;
    if (child)
      g_ptr_array_add (c->children, child);
  }
  return TRUE;
}

static gboolean
parse_split (Component *c, JsonObject *o, const char *where, GError **error)
{
  static const char *const behaviors[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                           "Contiguous" };
  const char *b;

  if (!pattern_parse (&c->pattern, o, where, error) || !get_string (o, "behavior", where, TRUE, &b, error)
      || !get_bool (o, "invert", where, FALSE, &c->invert, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (behaviors); i++)
    if (strcmp (b, behaviors[i]) == 0) {
      c->behavior = (SplitBehavior) i;
      return TRUE;
    }
  return fail (error, G3N_ERROR_UNSUPPORTED, "%s: unknown split behavior \"%s\"", where, b);
}

static gboolean
parse_strip_decoder (Component *c, JsonObject *o, const char *where, GError **error)
{
  const char *content;

  if (!get_string (o, "content", where, TRUE, &content, error) || !get_int (o, "start", where, 0, &c->start, error)
      || !get_int (o, "stop", where, 0, &c->stop, error))
    return FALSE;
  if (g_utf8_strlen (content, -1) != 1)
    return fail (error, G3N_ERROR_FORMAT, "%s: \"content\" must be one character", where);
  c->strip_char = g_utf8_get_char (content);
  return TRUE;
}

/* Read the fields a component of this kind needs. */
static gboolean
parse_fields (Component *c, JsonObject *o, Role role, const char *where, GError **error)
{
  const char *s;

  switch (c->kind) {
  case C_SEQUENCE:
    return parse_sequence (c, o, role, where, error);
  case C_REPLACE:
    if (!pattern_parse (&c->pattern, o, where, error) || !get_string (o, "content", where, TRUE, &s, error))
      return FALSE;
    c->content = g_strdup (s);
    return TRUE;
  case C_PREPEND:
    if (!get_string (o, "prepend", where, TRUE, &s, error))
      return FALSE;
    c->content = g_strdup (s);
    return TRUE;
  case C_STRIP:
    if (role == ROLE_DECODER)
      return parse_strip_decoder (c, o, where, error);
    return get_bool (o, "strip_left", where, TRUE, &c->left, error)
           && get_bool (o, "strip_right", where, TRUE, &c->right, error);
  case C_SPLIT:
    return parse_split (c, o, where, error);
  default:
    return TRUE; /* no parameters */
  }
}

/* Parse one component; a JSON null (or missing node) gives *out = NULL and success. */
static gboolean
component_parse (JsonNode *node, Role role, const char *where, Component **out, GError **error)
{
  const char *type;

  *out = NULL;
  if (!node || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return fail (error, G3N_ERROR_FORMAT, "%s is not an object", where);
  JsonObject *o = json_node_get_object (node);
  if (!get_string (o, "type", where, TRUE, &type, error))
    return FALSE;

  const ComponentType *ct = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (component_types); i++)
    if (component_types[i].role == role && strcmp (component_types[i].type, type) == 0)
      ct = &component_types[i];
  if (!ct)
    return fail (error, G3N_ERROR_UNSUPPORTED, "%s: unsupported %s type \"%s\"", where, role_names[role], type);

  Component *c = g_new0 (Component, 1);
  c->kind = ct->kind;
  if (!parse_fields (c, o, role, where, error)) {
    component_free (c);
    return FALSE;
  }
  *out = c;
  return TRUE;
}

static gboolean
component_uses (const Component *c, ComponentKind kind)
{
  if (!c)
    return FALSE;
  if (c->kind == kind)
    return TRUE;
  for (guint i = 0; c->children && i < c->children->len; i++)
    if (component_uses (g_ptr_array_index (c->children, i), kind))
      return TRUE;
  return FALSE;
}

/* ---------------------------------------------------------------- normalizers */

/* Rust's trim_start/trim_end: White_Space on either side. */
static void
strip_white_space (GString *s, gboolean left, gboolean right)
{
  gsize a = 0, b = s->len;

  while (left && a < b && is_white_space (g_utf8_get_char (s->str + a)))
    a += utf8_char_len (s->str + a);
  while (right && b > a) {
    const char *prev = g_utf8_find_prev_char (s->str + a, s->str + b);
    if (!prev || !is_white_space (g_utf8_get_char (prev)))
      break;
    b = prev - s->str;
  }
  g_string_truncate (s, b);
  g_string_erase (s, 0, a);
}

static void
replace_contents (GString *s, char *text, gsize len)
{
  g_string_truncate (s, 0);
  g_string_append_len (s, text, len);
  g_free (text);
}

static void
normalize (const Component *c, GString *s)
{
  static const GNormalizeMode modes[] = { G_NORMALIZE_NFC, G_NORMALIZE_NFD, G_NORMALIZE_NFKC, G_NORMALIZE_NFKD };
  GString *out;

  switch (c->kind) {
  case C_SEQUENCE:
    for (guint i = 0; i < c->children->len; i++)
      normalize (g_ptr_array_index (c->children, i), s);
    break;
  case C_REPLACE:
    out = g_string_sized_new (s->len + 16);
    pattern_replace (&c->pattern, c->content, s->str, s->len, out);
    replace_contents (s, out->str, out->len);
    g_string_free (out, FALSE);
    break;
  case C_PREPEND:
    if (s->len > 0) /* the reference leaves empty strings alone */
      g_string_prepend (s, c->content);
    break;
  case C_STRIP:
    strip_white_space (s, c->left, c->right);
    break;
  case C_NFC: case C_NFD: case C_NFKC: case C_NFKD: {
    char *n = g_utf8_normalize (s->str, s->len, modes[c->kind - C_NFC]);
    if (n) /* the text was validated, so this only guards against the impossible */
      replace_contents (s, n, strlen (n));
    break;
  }
  case C_LOWERCASE: {
    char *n = g_utf8_strdown (s->str, s->len);
    replace_contents (s, n, strlen (n));
    break;
  }
  default:
    g_assert_not_reached ();
  }
}

/* ---------------------------------------------------------------- pre-tokenizers */

typedef struct {
  Span span;
  gboolean is_match;
} Piece;

/* Cut s[span] by the pattern into alternating non-match/match pieces covering it. */
static GArray *
split_pieces (const Component *c, const char *s, Span span)
{
  GArray *pieces = g_array_new (FALSE, FALSE, sizeof (Piece));
  gsize at = span.start;
  Span m;

  /* Match within the span alone, as the reference does (anchors see the span's own ends). */
  while (pattern_next (&c->pattern, s + span.start, span.end - span.start, at - span.start, &m)) {
    m.start += span.start;
    m.end += span.start;
    if (m.start > at) {
      Piece gap = { { at, m.start }, c->invert };
      g_array_append_val (pieces, gap);
    }
    Piece hit = { m, !c->invert };
    g_array_append_val (pieces, hit);
    at = m.end;
  }
  if (at < span.end || pieces->len == 0) {
    Piece rest = { { at, span.end }, c->invert };
    g_array_append_val (pieces, rest);
  }
  return pieces;
}

/* Apply the split behavior (the reference's fold over pieces) and append the non-empty spans to out. */
static void
split_span (const Component *c, const char *s, Span span, GArray *out)
{
  GArray *pieces = split_pieces (c, s, span);
  GArray *acc = g_array_new (FALSE, FALSE, sizeof (Span));
  gboolean prev_match = FALSE;
  guint n = pieces->len;

  for (guint k = 0; k < n; k++) {
    /* MergedWithNext is MergedWithPrevious walked backwards. */
    gboolean backwards = c->behavior == SPLIT_MERGED_WITH_NEXT;
    Piece p = g_array_index (pieces, Piece, backwards ? n - 1 - k : k);
    Span *last = acc->len ? &g_array_index (acc, Span, acc->len - 1) : NULL;
    gboolean merge = FALSE;

    switch (c->behavior) {
    case SPLIT_REMOVED:
      if (p.is_match)
        continue;
      break;
    case SPLIT_ISOLATED:
      break;
    case SPLIT_CONTIGUOUS:
      merge = last && p.is_match == prev_match;
      break;
    case SPLIT_MERGED_WITH_PREVIOUS:
    case SPLIT_MERGED_WITH_NEXT:
      merge = last && p.is_match && !prev_match;
      break;
    }
    prev_match = p.is_match;
    if (merge && backwards)
      last->start = p.span.start;
    else if (merge)
      last->end = p.span.end;
    else
      g_array_append_val (acc, p.span);
  }
  for (guint k = 0; k < acc->len; k++) {
    Span sp = g_array_index (acc, Span, c->behavior == SPLIT_MERGED_WITH_NEXT ? acc->len - 1 - k : k);
    if (sp.end > sp.start)
      g_array_append_val (out, sp);
  }
  g_array_free (acc, TRUE);
  g_array_free (pieces, TRUE);
}

/* Refine the word spans of s in place. */
static void
pre_tokenize (const Component *c, const char *s, GArray *words)
{
  if (c->kind == C_SEQUENCE) {
    for (guint i = 0; i < c->children->len; i++)
      pre_tokenize (g_ptr_array_index (c->children, i), s, words);
    return;
  }
  GArray *out = g_array_new (FALSE, FALSE, sizeof (Span));
  for (guint i = 0; i < words->len; i++)
    split_span (c, s, g_array_index (words, Span, i), out);
  g_array_set_size (words, 0);
  g_array_append_vals (words, out->data, out->len);
  g_array_free (out, TRUE);
}

/* ---------------------------------------------------------------- decoders */

/* The reference's decoders transform a list of strings; here the list is one buffer plus a span per token, so a
 * decode costs a few buffers rather than allocations per token. */
typedef struct {
  GString *buf;
  GArray *spans; /* Span into buf, one per token */
} TokenList;

static void
token_list_init (TokenList *l, gsize size_hint)
{
  l->buf = g_string_sized_new (size_hint);
  l->spans = g_array_new (FALSE, FALSE, sizeof (Span));
}

static void
token_list_clear (TokenList *l)
{
  g_string_free (l->buf, TRUE);
  g_array_free (l->spans, TRUE);
}

/* Append a token; pass text NULL to close a token whose bytes the caller already appended from `start`. */
static void
token_list_add (TokenList *l, gsize start, const char *text, gsize len)
{
  if (text) {
    start = l->buf->len;
    g_string_append_len (l->buf, text, len);
  }
  Span sp = { start, l->buf->len };
  g_array_append_val (l->spans, sp);
}

static void
token_list_swap (TokenList *l, TokenList *other)
{
  token_list_clear (l);
  *l = *other;
}

/* Settle a run of byte pieces the way the reference does: the run as text when it is valid UTF-8 as a whole,
 * otherwise one U+FFFD token per byte. */
static void
flush_byte_run (GString *run, TokenList *out)
{
  if (run->len == 0)
    return;
  if (utf8_check (run->str, run->len, NULL) == UTF8_VALID)
    token_list_add (out, 0, run->str, run->len);
  else
    for (gsize i = 0; i < run->len; i++)
      token_list_add (out, 0, REPLACEMENT_CHAR, 3);
  g_string_truncate (run, 0);
}

static void
decode_byte_fallback (TokenList *l)
{
  TokenList out;
  GString *run = g_string_new (NULL);

  token_list_init (&out, l->buf->len);
  for (guint i = 0; i < l->spans->len; i++) {
    Span sp = g_array_index (l->spans, Span, i);
    int b = piece_byte (l->buf->str + sp.start, sp.end - sp.start);
    if (b >= 0) {
      g_string_append_c (run, (char) b);
      continue;
    }
    flush_byte_run (run, &out);
    token_list_add (&out, 0, l->buf->str + sp.start, sp.end - sp.start);
  }
  flush_byte_run (run, &out);
  g_string_free (run, TRUE);
  token_list_swap (l, &out);
}

static void
decode_replace (const Component *c, TokenList *l)
{
  TokenList out;

  token_list_init (&out, l->buf->len + 16);
  for (guint i = 0; i < l->spans->len; i++) {
    Span sp = g_array_index (l->spans, Span, i);
    gsize start = out.buf->len;
    pattern_replace (&c->pattern, c->content, l->buf->str + sp.start, sp.end - sp.start, out.buf);
    token_list_add (&out, start, NULL, 0);
  }
  token_list_swap (l, &out);
}

/* Narrow a token by up to c->start leading and c->stop trailing c->strip_char characters. */
static void
decode_strip (const Component *c, const char *buf, Span *sp)
{
  for (gint64 k = 0; k < c->start && sp->start < sp->end && g_utf8_get_char (buf + sp->start) == c->strip_char; k++)
    sp->start += utf8_char_len (buf + sp->start);
  for (gint64 k = 0; k < c->stop && sp->end > sp->start; k++) {
    const char *prev = g_utf8_find_prev_char (buf + sp->start, buf + sp->end);
    if (!prev || g_utf8_get_char (prev) != c->strip_char)
      break;
    sp->end = prev - buf;
  }
}

/* Run one decoder over the token list. */
static void
decode_chain (const Component *c, TokenList *l)
{
  switch (c->kind) {
  case C_SEQUENCE:
    for (guint i = 0; i < c->children->len; i++)
      decode_chain (g_ptr_array_index (c->children, i), l);
    break;
  case C_REPLACE:
    decode_replace (c, l);
    break;
  case C_BYTE_FALLBACK:
    decode_byte_fallback (l);
    break;
  case C_FUSE: { /* one token; tokens may have been narrowed by Strip, so concatenate their spans */
    TokenList out;
    token_list_init (&out, l->buf->len);
    for (guint i = 0; i < l->spans->len; i++) {
      Span sp = g_array_index (l->spans, Span, i);
      g_string_append_len (out.buf, l->buf->str + sp.start, sp.end - sp.start);
    }
    token_list_add (&out, 0, NULL, 0);
    token_list_swap (l, &out);
    break;
  }
  case C_STRIP:
    for (guint i = 0; i < l->spans->len; i++)
      decode_strip (c, l->buf->str, &g_array_index (l->spans, Span, i));
    break;
  default:
    g_assert_not_reached ();
  }
}

/* ================================================================ the tokenizer */

typedef struct {
  char *content;     /* as in tokenizer.json */
  char *match;       /* what the text is searched for: content, or its normalized form when `normalized` */
  gsize match_len;
  gint32 id;
  gboolean special, single_word, lstrip, rstrip, normalized;
} AddedToken;

/* A slot of the piece -> id table. It repeats the piece's address and length and keeps its hash, so that a lookup
 * reads only the slot and, on a likely hit, the text: loading alone makes over a million lookups. */
typedef struct {
  const char *piece;
  guint32 len, hash;
  gint32 id; /* -1 when empty */
} VocabSlot;

#define MERGE_EMPTY G_MAXUINT64

typedef struct {
  guint64 key; /* (left id << 32) | right id, or MERGE_EMPTY */
  gint32 rank, new_id;
} MergeEntry;

/* A byte trie over added-token strings, children of a node stored contiguously and sorted by byte. */
typedef struct {
  guint32 first, count; /* children: nodes[first .. first + count) */
  gint32 token;         /* index into tok->added ending here, or -1 */
  guint8 label;         /* byte on the edge into this node */
} TrieNode;

typedef struct {
  TrieNode *nodes;
  guint32 n_nodes;
  guint8 first_byte[32]; /* bitmap of bytes a match can start with: most text positions are rejected at once */
} Trie;

struct _G3nTokenizer {
  GStringChunk *strings;

  /* BPE model: pieces by id, an open-addressing table of ids keyed by their piece, and the merge table. */
  char **model_piece;
  guint32 *model_piece_len;
  gint32 n_model_ids;     /* one past the largest model id */
  gint32 n_model_entries; /* number of vocab entries: where the reference numbers new added tokens from */
  VocabSlot *vocab_slots;
  guint32 vocab_mask;
  MergeEntry *merges; /* open addressing on the pair; one entry per cache-line share */
  guint32 merge_mask;
  gint32 unk_id;
  gboolean fuse_unk, byte_fallback, ignore_merges;
  char *subword_prefix, *word_suffix;
  gint32 byte_id[256]; /* id of "<0xNN>", or -1 */

  /* added tokens */
  GPtrArray *added; /* AddedToken*, in the order they were added */
  GHashTable *added_by_content;
  Trie raw_trie, normalized_trie;

  /* id -> piece over model and added tokens (added first) */
  gint32 n_ids;
  const char **id_piece;
  guint32 *id_piece_len;
  guint8 *id_special;

  Component *normalizer, *pre_tokenizer, *decoder;
  gboolean decoder_has_byte_fallback;
  gboolean has_post_processor;
  GArray *post_prefix, *post_suffix; /* gint32 ids the single-sequence template puts around the text */
};


/* ---------------------------------------------------------------- hash tables */

static guint32
hash_bytes (const char *s, gsize n)
{
  guint32 h = 2166136261u; /* FNV-1a */
  for (gsize i = 0; i < n; i++)
    h = (h ^ (guint8) s[i]) * 16777619u;
  return h;
}

static guint32
hash_pair (guint64 key)
{
  return (guint32) ((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static guint32
table_capacity (gsize entries)
{
  guint32 cap = 64;
  while (cap < entries * 2)
    cap *= 2;
  return cap;
}

static gboolean
slot_holds (const VocabSlot *slot, const char *s, gsize n, guint32 h)
{
  return slot->hash == h && slot->len == n && memcmp (slot->piece, s, n) == 0;
}

/* The id of piece s[0..n), whose hash is h, or -1. */
static gint32
vocab_find (const G3nTokenizer *tok, const char *s, gsize n, guint32 h)
{
  for (guint32 i = h & tok->vocab_mask;; i = (i + 1) & tok->vocab_mask) {
    const VocabSlot *slot = &tok->vocab_slots[i];
    if (slot->id < 0)
      return -1;
    if (slot_holds (slot, s, n, h))
      return slot->id;
  }
}

static gint32
vocab_lookup (const G3nTokenizer *tok, const char *s, gsize n)
{
  return vocab_find (tok, s, n, hash_bytes (s, n));
}

/* An empty piece -> id table with room for `entries` pieces. */
static void
vocab_table_new (G3nTokenizer *tok, gsize entries)
{
  guint32 cap = table_capacity (entries);

  g_free (tok->vocab_slots);
  tok->vocab_slots = g_new (VocabSlot, cap);
  memset (tok->vocab_slots, 0xff, cap * sizeof (VocabSlot));
  tok->vocab_mask = cap - 1;
}

/* The first empty slot from the home of hash h on. */
static VocabSlot *
vocab_free_slot (const G3nTokenizer *tok, guint32 h)
{
  guint32 i = h & tok->vocab_mask;
  while (tok->vocab_slots[i].id >= 0)
    i = (i + 1) & tok->vocab_mask;
  return &tok->vocab_slots[i];
}

/* (Re)build the piece -> id table from model_piece. */
static void
vocab_rebuild (G3nTokenizer *tok)
{
  vocab_table_new (tok, tok->n_model_entries);
  for (gint32 id = 0; id < tok->n_model_ids; id++) {
    if (!tok->model_piece[id])
      continue;
    guint32 h = hash_bytes (tok->model_piece[id], tok->model_piece_len[id]);
    *vocab_free_slot (tok, h) = (VocabSlot) { tok->model_piece[id], tok->model_piece_len[id], h, id };
  }
}

static guint32
merge_slot (const G3nTokenizer *tok, guint64 key)
{
  guint32 i = hash_pair (key) & tok->merge_mask;
  while (tok->merges[i].key != MERGE_EMPTY && tok->merges[i].key != key)
    i = (i + 1) & tok->merge_mask;
  return i;
}

/* Rank and result of merging (left, right), or FALSE if no merge applies. */
static gboolean
merge_lookup (const G3nTokenizer *tok, gint32 left, gint32 right, gint32 *rank, gint32 *new_id)
{
  guint32 i = merge_slot (tok, ((guint64) (guint32) left << 32) | (guint32) right);
  if (tok->merges[i].key == MERGE_EMPTY)
    return FALSE;
  *rank = tok->merges[i].rank;
  *new_id = tok->merges[i].new_id;
  return TRUE;
}

/* ---------------------------------------------------------------- loading the model */

/* One model.vocab member as read, before repeated pieces are resolved. */
typedef struct {
  const char *piece; /* in tok->strings */
  guint32 len, hash;
  gint32 id;         /* -1 once a later member with the same piece overrides it */
} VocabEntry;

static gboolean
read_vocab (G3nTokenizer *tok, Scanner *s, GArray *entries, GError **error)
{
  gboolean more;
  Text key;

  s->p++; /* the '{' */
  for (gsize n = 0; scan_next (s, '}', n == 0, &more, error); n++) {
    if (!more)
      return TRUE;
    if (!scan_key (s, &key, error))
      return FALSE;
    gint64 id = -1; /* stays so for a value that is not a number */
    int c = scan_peek (s);
    if ((c == '-' || g_ascii_isdigit (c)) && !scan_number (s, &id, error))
      return FALSE;
    if (id < 0)
      return fail (error, G3N_ERROR_FORMAT, "model.vocab[\"%.*s\"] is not an id in 0..%d", (int) key.len, key.str,
                   MAX_ID - 1);
    VocabEntry e = { g_string_chunk_insert_len (tok->strings, key.str, key.len), (guint32) key.len,
                     hash_bytes (key.str, key.len), (gint32) id };
    g_array_append_val (entries, e);
  }
  return FALSE;
}

/* Build the piece -> id table and the id -> piece arrays. Of members with equal pieces the last one counts, as when
 * the reference collects the JSON object into a map: entering them last first, the later one is met first. */
static gboolean
index_vocab (G3nTokenizer *tok, GArray *entries, GError **error)
{
  VocabEntry *e = (VocabEntry *) entries->data;
  gint32 max_id = -1;

  vocab_table_new (tok, entries->len);
  VocabSlot *slots = tok->vocab_slots;
  tok->n_model_entries = 0;
  for (gint32 k = (gint32) entries->len - 1; k >= 0; k--) { /* slots hold entry indices for now */
    guint32 i = e[k].hash & tok->vocab_mask;
    while (slots[i].id >= 0 && !slot_holds (&slots[i], e[k].piece, e[k].len, e[k].hash))
      i = (i + 1) & tok->vocab_mask;
    if (slots[i].id >= 0) {
      e[k].id = -1;
      continue;
    }
    slots[i] = (VocabSlot) { e[k].piece, e[k].len, e[k].hash, k };
    tok->n_model_entries++;
    max_id = MAX (max_id, e[k].id);
  }
  for (guint32 i = 0; i <= tok->vocab_mask; i++)
    if (slots[i].id >= 0)
      slots[i].id = e[slots[i].id].id;

  tok->n_model_ids = max_id + 1;
  tok->model_piece = g_new0 (char *, tok->n_model_ids);
  tok->model_piece_len = g_new0 (guint32, tok->n_model_ids);
  for (guint k = 0; k < entries->len; k++) {
    gint32 id = e[k].id;
    if (id < 0)
      continue;
    /* One piece per id: two pieces sharing an id would make id -> piece ambiguous. */
    if (tok->model_piece[id])
      return fail (error, G3N_ERROR_FORMAT, "model.vocab maps both \"%s\" and \"%s\" to id %d",
                   tok->model_piece[id], e[k].piece, id);
    tok->model_piece[id] = (char *) e[k].piece;
    tok->model_piece_len[id] = e[k].len;
  }
  return TRUE;
}

static gboolean
load_vocab (G3nTokenizer *tok, const Document *d, GError **error)
{
  Scanner s = document_scanner (d, &d->vocab);
  GArray *entries = g_array_sized_new (FALSE, FALSE, sizeof (VocabEntry), (guint) d->vocab.n_items);
  gboolean ok = read_vocab (tok, &s, entries, error) && index_vocab (tok, entries, error);

  g_array_free (entries, TRUE);
  if (!ok)
    return FALSE;
  for (int b = 0; b < 256; b++) {
    char name[8];
    g_snprintf (name, sizeof name, "<0x%02X>", b);
    tok->byte_id[b] = vocab_lookup (tok, name, 6);
  }
  return TRUE;
}

/* The elements of a merges entry in array form; *ok tells whether they are exactly two strings. */
static gboolean
read_merge_pair (Scanner *s, GString *bufs[2], Text parts[2], gboolean *ok, GError **error)
{
  gboolean more;
  gsize n = 0;

  *ok = TRUE;
  s->p++; /* the '[' */
  for (; scan_next (s, ']', n == 0, &more, error); n++) {
    if (!more) {
      *ok = *ok && n == 2;
      return TRUE;
    }
    if (n < 2 && scan_peek (s) == '"') {
      if (!scan_string (s, bufs[n], &parts[n], error))
        return FALSE;
    } else {
      *ok = FALSE;
      if (!scan_value (s, TABLE_DEPTH + 2, NULL, error))
        return FALSE;
    }
  }
  return FALSE;
}

/* One merges entry, "a b" (exactly one space) or ["a", "b"], as its two parts. */
static gboolean
read_merge (Scanner *s, guint index, GString *bufs[2], Text parts[2], GError **error)
{
  int c = scan_peek (s);
  gboolean ok = FALSE;
  Text t;

  if (c == '"') {
    if (!scan_string (s, bufs[0], &t, error))
      return FALSE;
    const char *sp = memchr (t.str, ' ', t.len), *end = t.str + t.len;
    if (!sp || memchr (sp + 1, ' ', end - sp - 1))
      return fail (error, G3N_ERROR_FORMAT, "model.merges[%u] \"%.*s\" is not two tokens separated by a space",
                   index, (int) t.len, t.str);
    parts[0] = (Text) { t.str, sp - t.str };
    parts[1] = (Text) { sp + 1, end - sp - 1 };
    return TRUE;
  }
  if (c == '[' && !read_merge_pair (s, bufs, parts, &ok, error))
    return FALSE;
  if (!ok)
    return fail (error, G3N_ERROR_FORMAT, "model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", index);
  return TRUE;
}

/* Merges are entered in batches. Resolving a merge takes three lookups and an insertion in tables far larger than
 * the caches, each waiting for memory in turn; reading a whole batch first lets that memory be requested for all
 * of it at once, which halves the time Gemma's half a million merges take. */
#define MERGE_BATCH 64

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch (address)
#else
#define PREFETCH(address) ((void) (address))
#endif

typedef enum { PART_LEFT, PART_RIGHT, PART_MERGED, N_PARTS } MergePart;

typedef struct {
  gsize at[N_PARTS]; /* where each piece starts in the batch's text */
  guint32 len[N_PARTS], hash[N_PARTS];
  gint32 id[N_PARTS];
  guint64 key;
} PendingMerge;

typedef struct {
  GString *text; /* the pieces of the batch's merges, one after another */
  PendingMerge items[MERGE_BATCH];
  guint n, first_rank;
} MergeBatch;

static void
batch_piece (const G3nTokenizer *tok, MergeBatch *batch, PendingMerge *m, MergePart part, const char *s, gsize n)
{
  m->at[part] = batch->text->len;
  m->len[part] = (guint32) n;
  m->hash[part] = hash_bytes (s, n);
  g_string_append_len (batch->text, s, n);
  PREFETCH (&tok->vocab_slots[m->hash[part] & tok->vocab_mask]);
}

/* Queue a merge of parts a and b; the merged piece is a + b with b's continuing-subword prefix removed. */
static void
batch_add (const G3nTokenizer *tok, MergeBatch *batch, const Text parts[2])
{
  PendingMerge *m = &batch->items[batch->n++];
  gsize plen = tok->subword_prefix ? strlen (tok->subword_prefix) : 0;
  gsize skip = MIN (plen, parts[1].len); /* the reference cuts the prefix's length whatever b starts with */

  batch_piece (tok, batch, m, PART_LEFT, parts[0].str, parts[0].len);
  batch_piece (tok, batch, m, PART_RIGHT, parts[1].str, parts[1].len);
  m->at[PART_MERGED] = batch->text->len;
  g_string_append_len (batch->text, parts[0].str, parts[0].len);
  g_string_append_len (batch->text, parts[1].str + skip, parts[1].len - skip);
  m->len[PART_MERGED] = (guint32) (batch->text->len - m->at[PART_MERGED]);
  m->hash[PART_MERGED] = hash_bytes (batch->text->str + m->at[PART_MERGED], m->len[PART_MERGED]);
  PREFETCH (&tok->vocab_slots[m->hash[PART_MERGED] & tok->vocab_mask]);
}

/* Look up the pieces of every queued merge. */
static gboolean
batch_lookup (const G3nTokenizer *tok, MergeBatch *batch, GError **error)
{
  static const char *const fmt[N_PARTS] = { "names", "names", "makes" };

  for (guint i = 0; i < batch->n; i++) {
    PendingMerge *m = &batch->items[i];
    for (int p = 0; p < N_PARTS; p++) {
      const char *s = batch->text->str + m->at[p];
      m->id[p] = vocab_find (tok, s, m->len[p], m->hash[p]);
      if (m->id[p] < 0)
        return fail (error, G3N_ERROR_FORMAT, "model.merges[%u] %s \"%.*s\", which is not in the vocabulary",
                     batch->first_rank + i, fmt[p], (int) m->len[p], s);
    }
    m->key = ((guint64) (guint32) m->id[PART_LEFT] << 32) | (guint32) m->id[PART_RIGHT];
    PREFETCH (&tok->merges[hash_pair (m->key) & tok->merge_mask]);
  }
  return TRUE;
}

/* Enter the queued merges into the merge table, and empty the batch. */
static gboolean
batch_flush (G3nTokenizer *tok, MergeBatch *batch, GError **error)
{
  if (!batch_lookup (tok, batch, error))
    return FALSE;
  for (guint i = 0; i < batch->n; i++) {
    const PendingMerge *m = &batch->items[i];
    /* A repeated pair keeps its last rank, as the reference's map collection does. */
    guint32 slot = merge_slot (tok, m->key);
    tok->merges[slot].key = m->key;
    tok->merges[slot].rank = (gint32) (batch->first_rank + i);
    tok->merges[slot].new_id = m->id[PART_MERGED];
  }
  batch->first_rank += batch->n;
  batch->n = 0;
  g_string_truncate (batch->text, 0);
  return TRUE;
}

static gboolean
read_merges (G3nTokenizer *tok, Scanner *s, MergeBatch *batch, GError **error)
{
  GString *bufs[2] = { g_string_new (NULL), g_string_new (NULL) };
  GError *read_error = NULL;
  gboolean ok = TRUE, more;

  s->p++; /* the '[' */
  for (guint r = 0; ok; r++) {
    Text parts[2];
    if (!scan_next (s, ']', r == 0, &more, &read_error) || !more || !read_merge (s, r, bufs, parts, &read_error))
      break;
    batch_add (tok, batch, parts);
    if (batch->n == MERGE_BATCH)
      ok = batch_flush (tok, batch, error);
  }
  /* The merges queued before a bad one come first, and so do their errors. */
  ok = ok && batch_flush (tok, batch, error);
  if (ok && read_error) {
    g_propagate_error (error, g_steal_pointer (&read_error));
    ok = FALSE;
  }
  g_clear_error (&read_error);
  g_string_free (bufs[0], TRUE);
  g_string_free (bufs[1], TRUE);
  return ok;
}

static gboolean
load_merges (G3nTokenizer *tok, const Document *d, GError **error)
{
  Scanner s = document_scanner (d, &d->merges);
  guint32 cap = table_capacity (d->merges.n_items);
  MergeBatch *batch = g_new0 (MergeBatch, 1);

  tok->merge_mask = cap - 1;
  tok->merges = g_new (MergeEntry, cap);
  for (guint32 i = 0; i < cap; i++)
    tok->merges[i].key = MERGE_EMPTY;
  batch->text = g_string_new (NULL);
  gboolean ok = read_merges (tok, &s, batch, error);
  g_string_free (batch->text, TRUE);
  g_free (batch);
  return ok;
}

static gboolean
load_bpe_options (G3nTokenizer *tok, JsonObject *m, GError **error)
{
  const char *unk, *prefix, *suffix;
  JsonNode *dropout = member (m, "dropout");

  if (dropout && (!JSON_NODE_HOLDS_VALUE (dropout) || json_node_get_double (dropout) != 0.0))
    return fail (error, G3N_ERROR_UNSUPPORTED, "model.dropout is set: BPE dropout is random and not supported");
  if (!get_bool (m, "fuse_unk", "model", FALSE, &tok->fuse_unk, error)
      || !get_bool (m, "byte_fallback", "model", FALSE, &tok->byte_fallback, error)
      || !get_bool (m, "ignore_merges", "model", FALSE, &tok->ignore_merges, error)
      || !get_string (m, "unk_token", "model", FALSE, &unk, error)
      || !get_string (m, "continuing_subword_prefix", "model", FALSE, &prefix, error)
      || !get_string (m, "end_of_word_suffix", "model", FALSE, &suffix, error))
    return FALSE;
  tok->subword_prefix = g_strdup (prefix);
  tok->word_suffix = g_strdup (suffix);
  tok->unk_id = -1;
  if (unk && (tok->unk_id = vocab_lookup (tok, unk, strlen (unk))) < 0)
    return fail (error, G3N_ERROR_FORMAT, "model.unk_token \"%s\" is not in the vocabulary", unk);
  return TRUE;
}

static gboolean
load_model (G3nTokenizer *tok, JsonObject *root, const Document *d, GError **error)
{
  JsonNode *n = member (root, "model");
  const char *type;

  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, G3N_ERROR_FORMAT, "no \"model\" object");
  JsonObject *m = json_node_get_object (n);
  if (!get_string (m, "type", "model", FALSE, &type, error))
    return FALSE;
  if (type && strcmp (type, "BPE") != 0)
    return fail (error, G3N_ERROR_UNSUPPORTED, "model type \"%s\" is not supported (only BPE)", type);

  JsonNode *vocab = member (m, "vocab"), *merges = member (m, "merges");
  if (!vocab || !JSON_NODE_HOLDS_OBJECT (vocab))
    return fail (error, G3N_ERROR_FORMAT, "model lacks the object \"vocab\"");
  if (!merges || !JSON_NODE_HOLDS_ARRAY (merges))
    return fail (error, G3N_ERROR_FORMAT, "model lacks the array \"merges\"");
  /* Those two are emptied stand-ins: the members themselves are read from the document. */
  if (!d->vocab.start || !d->merges.start)
    return fail (error, G3N_ERROR_FORMAT, "model.vocab or model.merges not found where expected");
  return load_vocab (tok, d, error) && load_bpe_options (tok, m, error) && load_merges (tok, d, error);
}

/* ---------------------------------------------------------------- added tokens */

static void
added_token_free (AddedToken *t)
{
  g_free (t->content);
  g_free (t->match);
  g_free (t);
}

static int
compare_by_match (gconstpointer pa, gconstpointer pb, gpointer user_data)
{
  GPtrArray *added = user_data;
  const AddedToken *a = g_ptr_array_index (added, *(const gint32 *) pa);
  const AddedToken *b = g_ptr_array_index (added, *(const gint32 *) pb);
  int c = memcmp (a->match, b->match, MIN (a->match_len, b->match_len));
  return c ? c : (a->match_len > b->match_len) - (a->match_len < b->match_len);
}

/* Fill node `at` from the sorted token indices order[lo..hi), which share their first `depth` bytes. */
static void
trie_fill (Trie *t, GPtrArray *added, const gint32 *order, guint lo, guint hi, gsize depth, guint32 at)
{
  t->nodes[at].token = -1;
  /* Sorting puts the token that ends here first; a duplicate (two contents normalizing alike) keeps the first. */
  while (lo < hi && ((AddedToken *) g_ptr_array_index (added, order[lo]))->match_len == depth) {
    if (t->nodes[at].token < 0)
      t->nodes[at].token = order[lo];
    lo++;
  }
  guint32 count = 0;
  for (guint i = lo; i < hi; i++) {
    const AddedToken *a = g_ptr_array_index (added, order[i]);
    if (i == lo || a->match[depth] != ((AddedToken *) g_ptr_array_index (added, order[i - 1]))->match[depth])
      count++;
  }
  t->nodes[at].first = t->n_nodes;
  t->nodes[at].count = count;
  t->n_nodes += count;
  for (guint32 c = 0, i = lo; c < count; c++) {
    guint8 label = (guint8) ((AddedToken *) g_ptr_array_index (added, order[i]))->match[depth];
    guint j = i;
    while (j < hi && (guint8) ((AddedToken *) g_ptr_array_index (added, order[j]))->match[depth] == label)
      j++;
    t->nodes[t->nodes[at].first + c].label = label;
    trie_fill (t, added, order, i, j, depth + 1, t->nodes[at].first + c);
    i = j;
  }
}

/* Build the trie over the added tokens whose `normalized` flag equals `normalized`. */
static void
trie_build (Trie *t, GPtrArray *added, gboolean normalized)
{
  GArray *order = g_array_new (FALSE, FALSE, sizeof (gint32));
  gsize total = 1;

  g_free (t->nodes);
  memset (t, 0, sizeof *t);
  for (guint i = 0; i < added->len; i++) {
    AddedToken *a = g_ptr_array_index (added, i);
    if (a->normalized == normalized && a->match_len > 0) {
      gint32 k = (gint32) i;
      g_array_append_val (order, k);
      total += a->match_len;
      t->first_byte[(guint8) a->match[0] / 8] |= 1 << ((guint8) a->match[0] % 8);
    }
  }
  g_array_sort_with_data (order, compare_by_match, added);
  t->nodes = g_new0 (TrieNode, total);
  t->n_nodes = 1;
  trie_fill (t, added, (const gint32 *) order->data, 0, order->len, 0, 0);
  g_array_free (order, TRUE);
}

/* The longest added token starting at s (n bytes), or -1; *len receives its length. */
static gint32
trie_longest (const Trie *t, const char *s, gsize n, gsize *len)
{
  guint8 c0 = (guint8) s[0];
  gint32 best = -1;
  guint32 node = 0;

  if (!(t->first_byte[c0 / 8] & (1 << (c0 % 8))))
    return -1;
  for (gsize i = 0; i < n; i++) {
    guint8 c = (guint8) s[i];
    guint32 lo = t->nodes[node].first, hi = lo + t->nodes[node].count;
    while (lo < hi) { /* binary search among the sorted children */
      guint32 mid = (lo + hi) / 2;
      if (t->nodes[mid].label < c)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == t->nodes[node].first + t->nodes[node].count || t->nodes[lo].label != c)
      break;
    node = lo;
    if (t->nodes[node].token >= 0) {
      best = t->nodes[node].token;
      *len = i + 1;
    }
  }
  return best;
}

/* The id of a piece: added tokens first, then the model vocabulary (the reference's token_to_id). */
static gint32
lookup_id (const G3nTokenizer *tok, const char *piece)
{
  AddedToken *a = g_hash_table_lookup (tok->added_by_content, piece);
  return a ? a->id : vocab_lookup (tok, piece, strlen (piece));
}

/* Rebuild everything derived from the added tokens: id tables and tries. */
static void
refresh_added (G3nTokenizer *tok)
{
  tok->n_ids = tok->n_model_ids;
  for (guint i = 0; i < tok->added->len; i++)
    tok->n_ids = MAX (tok->n_ids, ((AddedToken *) g_ptr_array_index (tok->added, i))->id + 1);
  g_free (tok->id_piece);
  g_free (tok->id_piece_len);
  g_free (tok->id_special);
  tok->id_piece = g_new0 (const char *, tok->n_ids);
  tok->id_piece_len = g_new0 (guint32, tok->n_ids);
  tok->id_special = g_new0 (guint8, tok->n_ids);
  if (tok->n_model_ids > 0) {
    memcpy (tok->id_piece, tok->model_piece, tok->n_model_ids * sizeof (char *));
    memcpy (tok->id_piece_len, tok->model_piece_len, tok->n_model_ids * sizeof (guint32));
  }
  for (guint i = 0; i < tok->added->len; i++) {
    AddedToken *a = g_ptr_array_index (tok->added, i);
    tok->id_piece[a->id] = a->content;
    tok->id_piece_len[a->id] = (guint32) strlen (a->content);
    tok->id_special[a->id] = a->special;
  }
  trie_build (&tok->raw_trie, tok->added, FALSE);
  trie_build (&tok->normalized_trie, tok->added, TRUE);
}

/* Add or update one added token. Ids follow the reference, not the file: a content known to the vocabulary keeps
 * that id, a new one gets *next_id. */
static void
add_token (G3nTokenizer *tok, AddedToken *t, gint32 *next_id)
{
  AddedToken *old = g_hash_table_lookup (tok->added_by_content, t->content);

  t->id = lookup_id (tok, t->content);
  if (t->id < 0)
    t->id = (*next_id)++;
  /* The text is searched for what normalization makes of a normalized token. */
  GString *m = g_string_new (t->content);
  if (t->normalized && tok->normalizer)
    normalize (tok->normalizer, m);
  t->match_len = m->len;
  t->match = g_string_free (m, FALSE);
  if (old) { /* same content again: the newer properties win */
    /* A special flag once given stays, as in the reference's special-token set. */
    t->special |= old->special;
    g_hash_table_remove (tok->added_by_content, old->content);
    g_ptr_array_remove (tok->added, old); /* frees it */
  }
  g_ptr_array_add (tok->added, t);
  g_hash_table_insert (tok->added_by_content, t->content, t);
}

static gboolean
parse_added_token (JsonNode *n, guint i, AddedToken **out, GError **error)
{
  char where[48];
  const char *content;
  AddedToken t = { 0 };

  g_snprintf (where, sizeof where, "added_tokens[%u]", i);
  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, G3N_ERROR_FORMAT, "%s is not an object", where);
  JsonObject *o = json_node_get_object (n);
  if (!get_string (o, "content", where, TRUE, &content, error)
      || !get_bool (o, "special", where, FALSE, &t.special, error)
      || !get_bool (o, "single_word", where, FALSE, &t.single_word, error)
      || !get_bool (o, "lstrip", where, FALSE, &t.lstrip, error)
      || !get_bool (o, "rstrip", where, FALSE, &t.rstrip, error)
      || !get_bool (o, "normalized", where, TRUE, &t.normalized, error))
    return FALSE;
  *out = g_memdup2 (&t, sizeof t);
  (*out)->content = g_strdup (content);
  return TRUE;
}

static gboolean
load_added_tokens (G3nTokenizer *tok, JsonObject *root, GError **error)
{
  JsonNode *n = member (root, "added_tokens");
  /* New ids start after the model's entries, or after the largest added id beyond them. */
  gint32 next_id = tok->n_model_entries;

  if (n && !JSON_NODE_HOLDS_ARRAY (n))
    return fail (error, G3N_ERROR_FORMAT, "\"added_tokens\" is not an array");
  JsonArray *a = n ? json_node_get_array (n) : NULL;
  for (guint i = 0; a && i < json_array_get_length (a); i++) {
    AddedToken *t = NULL;
    if (!parse_added_token (json_array_get_element (a, i), i, &t, error))
      return FALSE;
    if (t->content[0] == '\0') { /* the reference ignores empty tokens */
      added_token_free (t);
      continue;
    }
    add_token (tok, t, &next_id);
    if (next_id >= MAX_ID)
      return fail (error, G3N_ERROR_FORMAT, "too many added tokens");
  }
  refresh_added (tok);
  return TRUE;
}

/* ---------------------------------------------------------------- post-processor */

/* The ids of special token `name` in TemplateProcessing's "special_tokens" map. */
static gboolean
template_special_ids (JsonObject *specials, const char *name, GArray *out, GError **error)
{
  JsonNode *n = specials ? member (specials, name) : NULL;
  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, G3N_ERROR_FORMAT, "post_processor: special token \"%s\" is not in \"special_tokens\"", name);
  JsonNode *ids = member (json_node_get_object (n), "ids");
  if (!ids || !JSON_NODE_HOLDS_ARRAY (ids))
    return fail (error, G3N_ERROR_FORMAT, "post_processor: special token \"%s\" lacks \"ids\"", name);
  JsonArray *a = json_node_get_array (ids);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!node_is (e, G_TYPE_INT64) || json_node_get_int (e) < 0 || json_node_get_int (e) >= MAX_ID)
      return fail (error, G3N_ERROR_FORMAT, "post_processor: special token \"%s\" has a bad id", name);
    gint32 id = (gint32) json_node_get_int (e);
    g_array_append_val (out, id);
  }
  return TRUE;
}

/* One template item, {"SpecialToken": {"id": name, ...}} or {"Sequence": {"id": "A", ...}} (the JSON form; the
 * reference's "$A"-style strings exist only in its builder API). Sets *is_sequence for the sequence item. */
static gboolean
template_item (JsonNode *n, JsonObject *specials, GArray *out, gboolean *is_sequence, GError **error)
{
  JsonObject *o = n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  JsonNode *special = o ? member (o, "SpecialToken") : NULL, *sequence = o ? member (o, "Sequence") : NULL;
  JsonNode *inner = special ? special : sequence;
  const char *name;

  *is_sequence = sequence != NULL;
  if (!inner || !JSON_NODE_HOLDS_OBJECT (inner))
    return fail (error, G3N_ERROR_FORMAT, "post_processor: bad item in the single template");
  if (!get_string (json_node_get_object (inner), "id", "post_processor.single", TRUE, &name, error))
    return FALSE;
  if (special)
    return template_special_ids (specials, name, out, error);
  if (strcmp (name, "A") != 0)
    return fail (error, G3N_ERROR_UNSUPPORTED, "post_processor: the single template uses sequence \"%s\"", name);
  return TRUE;
}

static gboolean
load_post_processor (G3nTokenizer *tok, JsonObject *root, GError **error)
{
  JsonNode *n = member (root, "post_processor");
  const char *type;
  gboolean seen_sequence = FALSE;

  tok->post_prefix = g_array_new (FALSE, FALSE, sizeof (gint32));
  tok->post_suffix = g_array_new (FALSE, FALSE, sizeof (gint32));
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (error, G3N_ERROR_FORMAT, "post_processor is not an object");
  JsonObject *o = json_node_get_object (n);
  if (!get_string (o, "type", "post_processor", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "TemplateProcessing") != 0)
    return fail (error, G3N_ERROR_UNSUPPORTED, "post_processor: unsupported type \"%s\"", type);

  JsonNode *single = member (o, "single"), *sp = member (o, "special_tokens");
  JsonObject *specials = sp && JSON_NODE_HOLDS_OBJECT (sp) ? json_node_get_object (sp) : NULL;
  if (!single || !JSON_NODE_HOLDS_ARRAY (single))
    return fail (error, G3N_ERROR_FORMAT, "post_processor lacks the array \"single\"");
  JsonArray *items = json_node_get_array (single);

  gboolean ok = TRUE;
  for (guint i = 0; ok && i < json_array_get_length (items); i++) {
    gboolean is_sequence;
    ok = template_item (json_array_get_element (items, i), specials, seen_sequence ? tok->post_suffix
                                                                                   : tok->post_prefix,
                        &is_sequence, error);
    seen_sequence |= is_sequence;
  }
  if (ok && !seen_sequence)
    ok = fail (error, G3N_ERROR_FORMAT, "post_processor: the single template has no $A");
  tok->has_post_processor = ok;
  return ok;
}

/* ---------------------------------------------------------------- construction */

static gboolean
load_components (G3nTokenizer *tok, JsonObject *root, GError **error)
{
  const char *version;

  if (!get_string (root, "version", "root", FALSE, &version, error))
    return FALSE;
  if (version && strcmp (version, "1.0") != 0)
    return fail (error, G3N_ERROR_UNSUPPORTED, "unknown version \"%s\"", version);
  /* "truncation" and "padding" are ignored: they are length policies for batches, and the engine enforces its own
   * context limit. */
  if (!component_parse (member (root, "normalizer"), ROLE_NORMALIZER, "normalizer", &tok->normalizer, error)
      || !component_parse (member (root, "pre_tokenizer"), ROLE_PRE_TOKENIZER, "pre_tokenizer", &tok->pre_tokenizer,
                           error)
      || !component_parse (member (root, "decoder"), ROLE_DECODER, "decoder", &tok->decoder, error))
    return FALSE;
  tok->decoder_has_byte_fallback = component_uses (tok->decoder, C_BYTE_FALLBACK);
  return TRUE;
}

static G3nTokenizer *
tokenizer_from_root (JsonNode *root_node, const Document *d, GError **error)
{
  G3nTokenizer *tok = g_new0 (G3nTokenizer, 1);

  tok->strings = g_string_chunk_new (1 << 20);
  tok->added = g_ptr_array_new_with_free_func ((GDestroyNotify) added_token_free);
  tok->added_by_content = g_hash_table_new (g_str_hash, g_str_equal);
  if (!root_node || !JSON_NODE_HOLDS_OBJECT (root_node)) {
    fail (error, G3N_ERROR_FORMAT, "the top level is not an object");
    g3n_tokenizer_free (tok);
    return NULL;
  }
  JsonObject *root = json_node_get_object (root_node);
  /* Components first: added tokens marked `normalized` are matched in normalized form. */
  if (!load_components (tok, root, error) || !load_model (tok, root, d, error) || !load_added_tokens (tok, root, error)
      || !load_post_processor (tok, root, error)) {
    g3n_tokenizer_free (tok);
    return NULL;
  }
  return tok;
}

/* Parse the document, less the model's tables, with json-glib and build the tokenizer. */
static G3nTokenizer *
tokenizer_from_document (const Document *d, GError **error)
{
  GString *rest = document_rest (d);
  JsonParser *parser = json_parser_new ();
  GError *json_error = NULL;
  G3nTokenizer *tok = NULL;

  if (json_parser_load_from_data (parser, rest->str, (gssize) rest->len, &json_error))
    tok = tokenizer_from_root (json_parser_get_root (parser), d, error);
  else { /* unexpected once the scan passed, but json-glib has its own limits */
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "tokenizer.json: malformed JSON: %s", json_error->message);
    g_error_free (json_error);
  }
  g_object_unref (parser);
  g_string_free (rest, TRUE);
  return tok;
}

G3nTokenizer *
g3n_tokenizer_new_from_data (const char *data, gssize len, GError **error)
{
  g_return_val_if_fail (data != NULL || len == 0, NULL);
  Document d = { data ? data : "", 0, g_string_new (NULL), { 0 }, { 0 } };
  G3nTokenizer *tok = NULL;

  d.len = len < 0 ? strlen (d.text) : (gsize) len;
  if (scan_document (&d, error))
    tok = tokenizer_from_document (&d, error);
  g_string_free (d.scratch, TRUE);
  return tok;
}

G3nTokenizer *
g3n_tokenizer_new_from_file (const char *path, GError **error)
{
  GError *io_error = NULL;
  GMappedFile *file = g_mapped_file_new (path, FALSE, &io_error);

  if (!file) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "cannot read tokenizer %s: %s", path, io_error->message);
    g_error_free (io_error);
    return NULL;
  }
  GError *local = NULL;
  G3nTokenizer *tok = g3n_tokenizer_new_from_data (g_mapped_file_get_contents (file),
                                                   (gssize) g_mapped_file_get_length (file), &local);
  g_mapped_file_unref (file);
  if (local) /* name the file: the messages only say "tokenizer.json" */
    g_propagate_prefixed_error (error, local, "%s: ", path);
  return tok;
}

void
g3n_tokenizer_free (G3nTokenizer *tok)
{
  if (!tok)
    return;
  if (tok->added)
    g_ptr_array_free (tok->added, TRUE);
  if (tok->added_by_content)
    g_hash_table_destroy (tok->added_by_content);
  g_free (tok->raw_trie.nodes);
  g_free (tok->normalized_trie.nodes);
  g_free (tok->model_piece);
  g_free (tok->model_piece_len);
  g_free (tok->vocab_slots);
  g_free (tok->merges);
  g_free (tok->subword_prefix);
  g_free (tok->word_suffix);
  g_free (tok->id_piece);
  g_free (tok->id_piece_len);
  g_free (tok->id_special);
  component_free (tok->normalizer);
  component_free (tok->pre_tokenizer);
  component_free (tok->decoder);
  if (tok->post_prefix)
    g_array_free (tok->post_prefix, TRUE);
  if (tok->post_suffix)
    g_array_free (tok->post_suffix, TRUE);
  if (tok->strings)
    g_string_chunk_free (tok->strings);
  g_free (tok);
}

/* ================================================================ encoding */

typedef struct {
  gint32 id;
  gint32 prev, next; /* linked list over alive symbols; -1 at the ends */
  gboolean alive;
} Symbol;

typedef struct {
  gint32 rank, pos, new_id;
} Merge;

/* Scratch buffers reused across the words of one encode call. */
typedef struct {
  GArray *symbols; /* Symbol */
  GArray *heap;    /* Merge, a binary min-heap on (rank, pos) */
  GString *piece;
  GArray *words;   /* Span */
  GArray *segments; /* Segment */
} Work;

static gboolean
merge_before (const Merge *a, const Merge *b)
{
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void
heap_push (GArray *heap, Merge m)
{
  g_array_append_val (heap, m);
  Merge *h = (Merge *) heap->data;
  for (guint i = heap->len - 1; i > 0 && merge_before (&h[i], &h[(i - 1) / 2]); i = (i - 1) / 2) {
    Merge t = h[i];
    h[i] = h[(i - 1) / 2];
    h[(i - 1) / 2] = t;
  }
}

static Merge
heap_pop (GArray *heap)
{
  Merge *h = (Merge *) heap->data, top = h[0];
  guint n = heap->len - 1;

  h[0] = h[n];
  g_array_set_size (heap, n);
  for (guint i = 0;;) {
    guint l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && merge_before (&h[l], &h[m]))
      m = l;
    if (r < n && merge_before (&h[r], &h[m]))
      m = r;
    if (m == i)
      break;
    Merge t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
  return top;
}

static void
push_symbol (GArray *symbols, gint32 id)
{
  Symbol s = { id, (gint32) symbols->len - 1, (gint32) symbols->len + 1, TRUE };
  g_array_append_val (symbols, s);
}

/* Queue the merge of the pair starting at symbol pos, if there is one. */
static void
queue_pair (const G3nTokenizer *tok, Work *w, gint32 pos)
{
  Symbol *s = (Symbol *) w->symbols->data;
  gint32 rank, new_id;

  if (pos >= 0 && s[pos].next >= 0 && merge_lookup (tok, s[pos].id, s[s[pos].next].id, &rank, &new_id)) {
    Merge m = { rank, pos, new_id };
    heap_push (w->heap, m);
  }
}

/* Initial symbols of a word: one per character, byte pieces for characters outside the vocabulary (byte_fallback),
 * otherwise the unknown token, consecutive unknowns fused when fuse_unk. The subword prefix/suffix decorate the
 * non-first/last characters, as in the reference. */
static void
initial_symbols (const G3nTokenizer *tok, const char *word, gsize len, Work *w)
{
  gboolean pending_unk = FALSE;

  g_array_set_size (w->symbols, 0);
  for (gsize i = 0; i < len;) {
    gsize clen = utf8_char_len (word + i);
    const char *s = word + i;
    gsize slen = clen;
    if ((i > 0 && tok->subword_prefix) || (i + clen == len && tok->word_suffix)) { /* decorate a copy */
      g_string_assign (w->piece, i > 0 && tok->subword_prefix ? tok->subword_prefix : "");
      g_string_append_len (w->piece, word + i, clen);
      if (i + clen == len && tok->word_suffix)
        g_string_append (w->piece, tok->word_suffix);
      s = w->piece->str;
      slen = w->piece->len;
    }
    i += clen;

    gint32 id = vocab_lookup (tok, s, slen);
    if (id >= 0) {
      if (pending_unk)
        push_symbol (w->symbols, tok->unk_id);
      pending_unk = FALSE;
      push_symbol (w->symbols, id);
      continue;
    }
    gboolean all_bytes = tok->byte_fallback;
    for (gsize k = 0; all_bytes && k < slen; k++)
      all_bytes = tok->byte_id[(guint8) s[k]] >= 0;
    if (all_bytes) {
      /* Like the reference, a pending unknown is not flushed here: it lands after these bytes. */
      for (gsize k = 0; k < slen; k++)
        push_symbol (w->symbols, tok->byte_id[(guint8) s[k]]);
      continue;
    }
    if (tok->unk_id >= 0) {
      if (pending_unk && !tok->fuse_unk)
        push_symbol (w->symbols, tok->unk_id);
      pending_unk = TRUE;
    }
  }
  if (pending_unk)
    push_symbol (w->symbols, tok->unk_id);
  if (w->symbols->len > 0)
    g_array_index (w->symbols, Symbol, w->symbols->len - 1).next = -1;
}

/* BPE one word: repeatedly apply the lowest-ranked merge (leftmost on ties) via a heap; stale heap entries are
 * recognised and skipped, so each merge costs O(log n). */
static void
bpe_word (const G3nTokenizer *tok, const char *word, gsize len, Work *w, GArray *ids)
{
  if (tok->ignore_merges) {
    gint32 id = vocab_lookup (tok, word, len);
    if (id >= 0) {
      g_array_append_val (ids, id);
      return;
    }
  }
  initial_symbols (tok, word, len, w);
  g_array_set_size (w->heap, 0);
  for (gint32 i = 0; i + 1 < (gint32) w->symbols->len; i++)
    queue_pair (tok, w, i);

  while (w->heap->len > 0) {
    Merge m = heap_pop (w->heap);
    Symbol *s = (Symbol *) w->symbols->data;
    gint32 rank, new_id;
    if (!s[m.pos].alive || s[m.pos].next < 0)
      continue;
    gint32 right = s[m.pos].next;
    /* The entry is stale if either side changed since it was queued. */
    if (!merge_lookup (tok, s[m.pos].id, s[right].id, &rank, &new_id) || new_id != m.new_id)
      continue;
    s[m.pos].id = m.new_id;
    s[m.pos].next = s[right].next;
    s[right].alive = FALSE;
    if (s[right].next >= 0)
      s[s[right].next].prev = m.pos;
    queue_pair (tok, w, s[m.pos].prev);
    queue_pair (tok, w, m.pos);
  }
  for (guint i = 0; i < w->symbols->len; i++)
    if (g_array_index (w->symbols, Symbol, i).alive)
      g_array_append_val (ids, g_array_index (w->symbols, Symbol, i).id);
}

static gboolean
ends_with_word (const char *s, gsize end)
{
  const char *prev = end > 0 ? g_utf8_find_prev_char (s, s + end) : NULL;
  return prev && is_word_char (g_utf8_get_char (prev));
}

/* Split s[0..n) on the added tokens of one trie into segments, honouring single_word / lstrip / rstrip as the
 * reference does: the search resumes after each raw match, even when the token is rejected or stretched. */
static void
split_on_added (const G3nTokenizer *tok, const Trie *trie, const char *s, gsize n, GArray *segments)
{
  gsize start_offset = 0, pos = 0;

  g_array_set_size (segments, 0);
  while (pos < n) {
    gsize len = 0;
    gint32 k = trie_longest (trie, s + pos, n - pos, &len);
    if (k < 0) {
      pos++;
      continue;
    }
    const AddedToken *t = g_ptr_array_index (tok->added, k);
    gsize start = pos, stop = pos + len;
    pos = stop;
    if (t->single_word && (ends_with_word (s, start) || (stop < n && is_word_char (g_utf8_get_char (s + stop)))))
      continue;
    if (t->lstrip) {
      gsize a = start;
      while (a > 0) {
        const char *prev = g_utf8_find_prev_char (s, s + a);
        if (!is_white_space (g_utf8_get_char (prev)))
          break;
        a = prev - s;
      }
      start = MAX (a, start_offset);
    }
    while (t->rstrip && stop < n && is_white_space (g_utf8_get_char (s + stop)))
      stop += utf8_char_len (s + stop);
    if (start_offset < start) {
      Segment plain = { start_offset, start, -1 };
      g_array_append_val (segments, plain);
    }
    Segment hit = { start, stop, k };
    g_array_append_val (segments, hit);
    start_offset = stop;
  }
  if (start_offset < n) {
    Segment rest = { start_offset, n, -1 };
    g_array_append_val (segments, rest);
  }
}

/* Normalize a piece of text that holds no raw added token, then split it on the normalized added tokens,
 * pre-tokenize and BPE the rest. */
static void
encode_plain (const G3nTokenizer *tok, const char *text, gsize len, Work *w, GArray *ids)
{
  GString *norm = g_string_new_len (text, len);

  if (tok->normalizer)
    normalize (tok->normalizer, norm);
  split_on_added (tok, &tok->normalized_trie, norm->str, norm->len, w->segments);
  GArray *segments = w->segments;
  for (guint i = 0; i < segments->len; i++) {
    Segment seg = g_array_index (segments, Segment, i);
    if (seg.token >= 0) {
      g_array_append_val (ids, ((AddedToken *) g_ptr_array_index (tok->added, seg.token))->id);
      continue;
    }
    Span whole = { seg.start, seg.end };
    g_array_set_size (w->words, 0);
    g_array_append_val (w->words, whole);
    if (tok->pre_tokenizer)
      pre_tokenize (tok->pre_tokenizer, norm->str, w->words);
    for (guint j = 0; j < w->words->len; j++) {
      Span word = g_array_index (w->words, Span, j);
      bpe_word (tok, norm->str + word.start, word.end - word.start, w, ids);
    }
  }
  g_string_free (norm, TRUE);
}

GArray *
g3n_tokenizer_encode (const G3nTokenizer *tok, const char *text, gssize len, gboolean add_special_tokens,
                      GError **error)
{
  g_return_val_if_fail (tok != NULL && (text != NULL || len <= 0), NULL);
  if (!text)
    text = "";
  gsize n = len < 0 ? strlen (text) : (gsize) len, bad_at = 0;

  if (utf8_check (text, n, &bad_at) != UTF8_VALID) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "cannot tokenize: text is not valid UTF-8 (bad byte 0x%02X at offset %" G_GSIZE_FORMAT ")",
                 (guint8) text[bad_at], bad_at);
    return NULL;
  }
  Work w = { g_array_new (FALSE, FALSE, sizeof (Symbol)), g_array_new (FALSE, FALSE, sizeof (Merge)),
             g_string_new (NULL), g_array_new (FALSE, FALSE, sizeof (Span)),
             g_array_new (FALSE, FALSE, sizeof (Segment)) };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  GArray *raw = g_array_new (FALSE, FALSE, sizeof (Segment));

  if (add_special_tokens)
    g_array_append_vals (ids, tok->post_prefix->data, tok->post_prefix->len);
  split_on_added (tok, &tok->raw_trie, text, n, raw);
  for (guint i = 0; i < raw->len; i++) {
    Segment seg = g_array_index (raw, Segment, i);
    if (seg.token >= 0)
      g_array_append_val (ids, ((AddedToken *) g_ptr_array_index (tok->added, seg.token))->id);
    else
      encode_plain (tok, text + seg.start, seg.end - seg.start, &w, ids);
  }
  if (add_special_tokens)
    g_array_append_vals (ids, tok->post_suffix->data, tok->post_suffix->len);

  g_array_free (raw, TRUE);
  g_array_free (w.symbols, TRUE);
  g_array_free (w.heap, TRUE);
  g_string_free (w.piece, TRUE);
  g_array_free (w.words, TRUE);
  g_array_free (w.segments, TRUE);
  return ids;
}

/* ================================================================ decoding */

/* Whether id contributes a piece to a decode (known id, and not a special token being skipped). */
static gboolean
id_kept (const G3nTokenizer *tok, gint32 id, gboolean skip_special)
{
  return id >= 0 && id < tok->n_ids && tok->id_piece[id] && !(skip_special && tok->id_special[id]);
}

static GString *
decode_to_gstring (const G3nTokenizer *tok, const gint32 *ids, gsize n_ids, gboolean skip_special)
{
  TokenList l;
  GString *out = g_string_sized_new (n_ids * 4);

  token_list_init (&l, n_ids * 4);
  for (gsize i = 0; i < n_ids; i++)
    if (id_kept (tok, ids[i], skip_special))
      token_list_add (&l, 0, tok->id_piece[ids[i]], tok->id_piece_len[ids[i]]);
  if (tok->decoder)
    decode_chain (tok->decoder, &l);
  for (guint i = 0; i < l.spans->len; i++) {
    Span sp = g_array_index (l.spans, Span, i);
    if (!tok->decoder && i > 0) /* without a decoder the reference joins pieces with spaces */
      g_string_append_c (out, ' ');
    g_string_append_len (out, l.buf->str + sp.start, sp.end - sp.start);
  }
  token_list_clear (&l);
  return out;
}

char *
g3n_tokenizer_decode (const G3nTokenizer *tok, const gint32 *ids, gsize n_ids, gboolean skip_special,
                      gsize *out_len)
{
  g_return_val_if_fail (tok != NULL && (ids != NULL || n_ids == 0), NULL);
  GString *s = decode_to_gstring (tok, ids, n_ids, skip_special);
  if (out_len)
    *out_len = s->len;
  return g_string_free (s, FALSE);
}

/* ================================================================ lookups */

gint32
g3n_tokenizer_token_to_id (const G3nTokenizer *tok, const char *piece)
{
  g_return_val_if_fail (tok != NULL && piece != NULL, -1);
  return lookup_id (tok, piece);
}

const char *
g3n_tokenizer_id_to_piece (const G3nTokenizer *tok, gint32 id)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return id >= 0 && id < tok->n_ids ? tok->id_piece[id] : NULL;
}

gint32
g3n_tokenizer_get_vocab_size (const G3nTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, 0);
  return tok->n_ids;
}

gboolean
g3n_tokenizer_is_special (const G3nTokenizer *tok, gint32 id)
{
  g_return_val_if_fail (tok != NULL, FALSE);
  return id >= 0 && id < tok->n_ids && tok->id_special[id];
}

gint32
g3n_tokenizer_get_bos_id (const G3nTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->post_prefix->len > 0 ? g_array_index (tok->post_prefix, gint32, 0) : -1;
}

gint32
g3n_tokenizer_get_unk_id (const G3nTokenizer *tok)
{
  g_return_val_if_fail (tok != NULL, -1);
  return tok->unk_id;
}

/* Drop the added token that currently has this id, if any. */
static void
remove_added_id (G3nTokenizer *tok, gint32 id)
{
  for (guint i = 0; i < tok->added->len; i++) {
    AddedToken *a = g_ptr_array_index (tok->added, i);
    if (a->id == id) {
      g_hash_table_remove (tok->added_by_content, a->content);
      g_ptr_array_remove_index (tok->added, i); /* frees it */
      return;
    }
  }
}

gboolean
g3n_tokenizer_set_added_token (G3nTokenizer *tok, gint32 id, const char *content, gboolean special, GError **error)
{
  g_return_val_if_fail (tok != NULL && content != NULL, FALSE);
  if (id < 0 || id >= MAX_ID || content[0] == '\0' || !g_utf8_validate (content, -1, NULL)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "cannot set added token %d to \"%s\"", id, content);
    return FALSE;
  }
  gint32 other = lookup_id (tok, content);
  if (other >= 0 && other != id) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "cannot set added token %d: \"%s\" is already id %d",
                 id, content, other);
    return FALSE;
  }
  remove_added_id (tok, id);
  if (id < tok->n_model_ids && tok->model_piece[id]) { /* rename the model's piece too */
    tok->model_piece[id] = g_string_chunk_insert (tok->strings, content);
    tok->model_piece_len[id] = (guint32) strlen (content);
    vocab_rebuild (tok);
  }
  AddedToken *t = g_new0 (AddedToken, 1);
  t->content = g_strdup (content);
  t->special = special;
  gint32 next_id = id; /* not in any vocabulary: add_token takes the id from here */
  add_token (tok, t, &next_id);
  refresh_added (tok);
  return TRUE;
}

/* ================================================================ streaming decoder */

struct _G3nDetokenizer {
  const G3nTokenizer *tok;
  gboolean skip_special;
  GArray *window;  /* gint32: ids whose text is not all handed out yet, plus context before them */
  gsize emitted;   /* bytes of decode(window) already handed out */
};

G3nDetokenizer *
g3n_detokenizer_new (const G3nTokenizer *tok, gboolean skip_special)
{
  g_return_val_if_fail (tok != NULL, NULL);
  G3nDetokenizer *dt = g_new0 (G3nDetokenizer, 1);
  dt->tok = tok;
  dt->skip_special = skip_special;
  dt->window = g_array_new (FALSE, FALSE, sizeof (gint32));
  return dt;
}

void
g3n_detokenizer_free (G3nDetokenizer *dt)
{
  if (!dt)
    return;
  g_array_free (dt->window, TRUE);
  g_free (dt);
}

static int
kept_byte (const G3nDetokenizer *dt, gint32 id)
{
  return piece_byte (dt->tok->id_piece[id], dt->tok->id_piece_len[id]);
}

/* Index of the first id of the byte run the window ends with (ignoring skipped ids), or -1 if the last kept piece
 * is not a byte; *last_kept receives the index of the last kept id (-1 if none). */
static gint
trailing_byte_run (const G3nDetokenizer *dt, gint *last_kept, GString *bytes)
{
  gint run_start = -1;

  *last_kept = -1;
  if (bytes)
    g_string_truncate (bytes, 0);
  for (gint i = (gint) dt->window->len - 1; i >= 0; i--) {
    gint32 id = g_array_index (dt->window, gint32, i);
    if (!id_kept (dt->tok, id, dt->skip_special))
      continue;
    if (*last_kept < 0)
      *last_kept = i;
    int b = dt->tok->decoder_has_byte_fallback ? kept_byte (dt, id) : -1;
    if (b < 0)
      break;
    run_start = i;
    if (bytes)
      g_string_prepend_c (bytes, (char) b);
  }
  return run_start;
}

/* A trailing byte run is unsettled while it is valid UTF-8 so far: a later byte could still complete it or break
 * it, and breaking it turns every byte of the run into U+FFFD. Once invalid, it stays invalid whatever follows, and
 * each of its bytes is one U+FFFD: safe to hand out. */
static gboolean
tail_unsettled (const G3nDetokenizer *dt)
{
  GString *bytes = g_string_new (NULL);
  gint last_kept;
  gboolean unsettled = trailing_byte_run (dt, &last_kept, bytes) >= 0
                       && utf8_check (bytes->str, bytes->len, NULL) != UTF8_INVALID;
  g_string_free (bytes, TRUE);
  return unsettled;
}

/* Append the part of decode(window) not handed out yet. */
static gsize
emit (G3nDetokenizer *dt, GString *out)
{
  GString *text = decode_to_gstring (dt->tok, (const gint32 *) dt->window->data, dt->window->len, dt->skip_special);
  gsize n = text->len > dt->emitted ? text->len - dt->emitted : 0;
  g_string_append_len (out, text->str + dt->emitted, n);
  dt->emitted = text->len;
  g_string_free (text, TRUE);
  return n;
}

gsize
g3n_detokenizer_push (G3nDetokenizer *dt, gint32 id, GString *out)
{
  g_return_val_if_fail (dt != NULL && out != NULL, 0);
  g_array_append_val (dt->window, id);
  if (tail_unsettled (dt))
    return 0;
  gsize n = emit (dt, out);

  /* Keep only the context later pieces need: the last kept piece (decoders such as Strip treat the first piece of
   * a decode specially), or the whole of a trailing invalid byte run (its later bytes join it). */
  gint last_kept, run_start = trailing_byte_run (dt, &last_kept, NULL);
  gint keep_from = run_start >= 0 ? run_start : last_kept;
  if (keep_from < 0)
    keep_from = (gint) dt->window->len;
  if (keep_from > 0) {
    g_array_remove_range (dt->window, 0, keep_from);
    GString *text = decode_to_gstring (dt->tok, (const gint32 *) dt->window->data, dt->window->len,
                                       dt->skip_special);
    dt->emitted = text->len;
    g_string_free (text, TRUE);
  }
  return n;
}

gsize
g3n_detokenizer_finish (G3nDetokenizer *dt, GString *out)
{
  g_return_val_if_fail (dt != NULL && out != NULL, 0);
  gsize n = emit (dt, out);
  g_array_set_size (dt->window, 0);
  dt->emitted = 0;
  return n;
}
