/* bpe.c — BPE on one word: a symbol per character (byte pieces or the unknown token for characters outside the
 * vocabulary), then the lowest-ranked merge first, leftmost on ties, as the reference does. */
#include "tokenizer-internal.h"

typedef struct {
  gint32 id;
  gint32 prev, next; /* linked list over alive symbols; -1 at the ends */
  gboolean alive;
} Symbol;

typedef struct {
  gint32 rank, pos, new_id;
} Merge;

void
tok_bpe_work_init (BpeWork *w)
{
  w->symbols = g_array_new (FALSE, FALSE, sizeof (Symbol));
  w->heap = g_array_new (FALSE, FALSE, sizeof (Merge));
  w->piece = g_string_new (NULL);
}

void
tok_bpe_work_clear (BpeWork *w)
{
  g_array_free (w->symbols, TRUE);
  g_array_free (w->heap, TRUE);
  g_string_free (w->piece, TRUE);
}

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
queue_pair (const G3nTokenizer *tok, BpeWork *w, gint32 pos)
{
  Symbol *s = (Symbol *) w->symbols->data;
  gint32 rank, new_id;

  if (pos >= 0 && s[pos].next >= 0 && tok_merge_lookup (tok, s[pos].id, s[s[pos].next].id, &rank, &new_id)) {
    Merge m = { rank, pos, new_id };
    heap_push (w->heap, m);
  }
}

/* Initial symbols of a word: one per character, byte pieces for characters outside the vocabulary (byte_fallback),
 * otherwise the unknown token, consecutive unknowns fused when fuse_unk. The subword prefix/suffix decorate the
 * non-first/last characters, as in the reference. */
static void
initial_symbols (const G3nTokenizer *tok, const char *word, gsize len, BpeWork *w)
{
  gboolean pending_unk = FALSE;

  g_array_set_size (w->symbols, 0);
  for (gsize i = 0; i < len;) {
    gsize clen = tok_utf8_char_len (word + i);
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

    gint32 id = tok_vocab_lookup (tok, s, slen);
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
void
tok_bpe_word (const G3nTokenizer *tok, const char *word, gsize len, BpeWork *w, GArray *ids)
{
  if (tok->ignore_merges) {
    gint32 id = tok_vocab_lookup (tok, word, len);
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
    if (!tok_merge_lookup (tok, s[m.pos].id, s[right].id, &rank, &new_id) || new_id != m.new_id)
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
