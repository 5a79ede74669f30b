/* pre-tokenizer.c — normalized text cut into the words BPE runs on: Split (its five behaviors, inverted or not)
 * and Sequence. Words are spans of the normalized text, so no text is copied. */
#include "tokenizer-internal.h"

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
  while (tok_pattern_next (&c->pattern, s + span.start, span.end - span.start, at - span.start, &m)) {
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
void
tok_pre_tokenize (const Component *c, const char *s, GArray *words)
{
  if (c->kind == C_SEQUENCE) {
    for (guint i = 0; i < c->children->len; i++)
      tok_pre_tokenize (g_ptr_array_index (c->children, i), s, words);
    return;
  }
  GArray *out = g_array_new (FALSE, FALSE, sizeof (Span));
  for (guint i = 0; i < words->len; i++)
    split_span (c, s, g_array_index (words, Span, i), out);
  g_array_set_size (words, 0);
  g_array_append_vals (words, out->data, out->len);
  g_array_free (out, TRUE);
}
