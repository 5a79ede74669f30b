/* decoder.c — ids to text: the ids' pieces (added tokens first) through the decoder tree, whose components
 * (Sequence, Replace, ByteFallback, Fuse, Strip) each transform the list of token strings as the reference's
 * do. */
#include "tokenizer-internal.h"

static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD"; /* U+FFFD */

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
  if (tok_utf8_check (run->str, run->len, NULL) == UTF8_VALID)
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
    int b = tok_piece_byte (l->buf->str + sp.start, sp.end - sp.start);
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
    tok_pattern_replace (&c->pattern, c->content, l->buf->str + sp.start, sp.end - sp.start, out.buf);
    token_list_add (&out, start, NULL, 0);
  }
  token_list_swap (l, &out);
}

/* Narrow a token by up to c->start leading and c->stop trailing c->strip_char characters. */
static void
decode_strip (const Component *c, const char *buf, Span *sp)
{
  for (gint64 k = 0; k < c->start && sp->start < sp->end && g_utf8_get_char (buf + sp->start) == c->strip_char; k++)
    sp->start += tok_utf8_char_len (buf + sp->start);
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

/* Pieces of the kept ids, through the decoder tree; without a decoder the reference joins pieces with spaces. */
GString *
tok_decode_to_gstring (const G3nTokenizer *tok, const gint32 *ids, gsize n_ids, gboolean skip_special)
{
  TokenList l;
  GString *out = g_string_sized_new (n_ids * 4);

  token_list_init (&l, n_ids * 4);
  for (gsize i = 0; i < n_ids; i++)
    if (tok_id_kept (tok, ids[i], skip_special))
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
