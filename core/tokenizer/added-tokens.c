/* added-tokens.c — the tokens found in the text before the model sees it: read from "added_tokens" with the ids
 * the reference gives them, changed with g3n_tokenizer_set_added_token, found with a byte trie (leftmost-longest),
 * and cut out of the text honouring single_word, lstrip and rstrip.
 *
 * There are two tries: tokens whose `normalized` flag is false are found in the raw text, the others in the
 * normalized text, in their normalized form. */
#include "tokenizer-internal.h"

void
tok_added_token_free (AddedToken *t)
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
gint32
tok_lookup_id (const G3nTokenizer *tok, const char *piece)
{
  AddedToken *a = g_hash_table_lookup (tok->added_by_content, piece);
  return a ? a->id : tok_vocab_lookup (tok, piece, strlen (piece));
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

  t->id = tok_lookup_id (tok, t->content);
  if (t->id < 0)
    t->id = (*next_id)++;
  /* The text is searched for what normalization makes of a normalized token. */
  GString *m = g_string_new (t->content);
  if (t->normalized && tok->normalizer)
    tok_normalize (tok->normalizer, m);
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
    return tok_fail (error, G3N_ERROR_FORMAT, "%s is not an object", where);
  JsonObject *o = json_node_get_object (n);
  if (!tok_get_string (o, "content", where, TRUE, &content, error)
      || !tok_get_bool (o, "special", where, FALSE, &t.special, error)
      || !tok_get_bool (o, "single_word", where, FALSE, &t.single_word, error)
      || !tok_get_bool (o, "lstrip", where, FALSE, &t.lstrip, error)
      || !tok_get_bool (o, "rstrip", where, FALSE, &t.rstrip, error)
      || !tok_get_bool (o, "normalized", where, TRUE, &t.normalized, error))
    return FALSE;
  *out = g_memdup2 (&t, sizeof t);
  (*out)->content = g_strdup (content);
  return TRUE;
}

gboolean
tok_load_added_tokens (G3nTokenizer *tok, JsonObject *root, GError **error)
{
  JsonNode *n = tok_member (root, "added_tokens");
  /* New ids start after the model's entries, or after the largest added id beyond them. */
  gint32 next_id = tok->n_model_entries;

  if (n && !JSON_NODE_HOLDS_ARRAY (n))
    return tok_fail (error, G3N_ERROR_FORMAT, "\"added_tokens\" is not an array");
  JsonArray *a = n ? json_node_get_array (n) : NULL;
  for (guint i = 0; a && i < json_array_get_length (a); i++) {
    AddedToken *t = NULL;
    if (!parse_added_token (json_array_get_element (a, i), i, &t, error))
      return FALSE;
    if (t->content[0] == '\0') { /* the reference ignores empty tokens */
      tok_added_token_free (t);
      continue;
    }
    add_token (tok, t, &next_id);
    if (next_id >= MAX_ID)
      return tok_fail (error, G3N_ERROR_FORMAT, "too many added tokens");
  }
  refresh_added (tok);
  return TRUE;
}

static gboolean
ends_with_word (const char *s, gsize end)
{
  const char *prev = end > 0 ? g_utf8_find_prev_char (s, s + end) : NULL;
  return prev && tok_is_word_char (g_utf8_get_char (prev));
}

/* Split s[0..n) on the added tokens of one trie into segments, honouring single_word / lstrip / rstrip as the
 * reference does: the search resumes after each raw match, even when the token is rejected or stretched. */
void
tok_split_on_added (const G3nTokenizer *tok, const Trie *trie, const char *s, gsize n, GArray *segments)
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
    if (t->single_word && (ends_with_word (s, start) || (stop < n && tok_is_word_char (g_utf8_get_char (s + stop)))))
      continue;
    if (t->lstrip) {
      gsize a = start;
      while (a > 0) {
        const char *prev = g_utf8_find_prev_char (s, s + a);
        if (!tok_is_white_space (g_utf8_get_char (prev)))
          break;
        a = prev - s;
      }
      start = MAX (a, start_offset);
    }
    while (t->rstrip && stop < n && tok_is_white_space (g_utf8_get_char (s + stop)))
      stop += tok_utf8_char_len (s + stop);
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
  gint32 other = tok_lookup_id (tok, content);
  if (other >= 0 && other != id) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "cannot set added token %d: \"%s\" is already id %d",
                 id, content, other);
    return FALSE;
  }
  remove_added_id (tok, id);
  if (id < tok->n_model_ids && tok->model_piece[id]) { /* rename the model's piece too */
    tok->model_piece[id] = g_string_chunk_insert (tok->strings, content);
    tok->model_piece_len[id] = (guint32) strlen (content);
    tok_vocab_rebuild (tok);
  }
  AddedToken *t = g_new0 (AddedToken, 1);
  t->content = g_strdup (content);
  t->special = special;
  gint32 next_id = id; /* not in any vocabulary: add_token takes the id from here */
  add_token (tok, t, &next_id);
  refresh_added (tok);
  return TRUE;
}
