/* bpe-load.c — the BPE model from tokenizer.json's "model" member: model.vocab into the piece -> id table and the
 * id -> piece arrays, model.merges into the pair -> (rank, merged id) table. Both are read straight from the
 * document's bytes with the strict scanner (json-scan.c), since they are almost all of the file; the options come
 * from json-glib's tree. The tables' probes are inline in tokenizer-internal.h. */
#include "tokenizer-internal.h"

static guint32
table_capacity (gsize entries)
{
  guint32 cap = 64;
  while (cap < entries * 2)
    cap *= 2;
  return cap;
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
void
tok_vocab_rebuild (G3nTokenizer *tok)
{
  vocab_table_new (tok, tok->n_model_entries);
  for (gint32 id = 0; id < tok->n_model_ids; id++) {
    if (!tok->model_piece[id])
      continue;
    guint32 h = tok_hash_bytes (tok->model_piece[id], tok->model_piece_len[id]);
    *vocab_free_slot (tok, h) = (VocabSlot) { tok->model_piece[id], tok->model_piece_len[id], h, id };
  }
}

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
  for (gsize n = 0; tok_scan_next (s, '}', n == 0, &more, error); n++) {
    if (!more)
      return TRUE;
    if (!tok_scan_key (s, &key, error))
      return FALSE;
    gint64 id = -1; /* stays so for a value that is not a number */
    int c = tok_scan_peek (s);
    if ((c == '-' || g_ascii_isdigit (c)) && !tok_scan_number (s, &id, error))
      return FALSE;
    if (id < 0)
      return tok_fail (error, G3N_ERROR_FORMAT, "model.vocab[\"%.*s\"] is not an id in 0..%d", (int) key.len, key.str,
                       MAX_ID - 1);
    VocabEntry e = { g_string_chunk_insert_len (tok->strings, key.str, key.len), (guint32) key.len,
                     tok_hash_bytes (key.str, key.len), (gint32) id };
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
  gint32 max_id = -1, max_k = -1;

  vocab_table_new (tok, entries->len);
  VocabSlot *slots = tok->vocab_slots;
  tok->n_model_entries = 0;
  for (gint32 k = (gint32) entries->len - 1; k >= 0; k--) { /* slots hold entry indices for now */
    guint32 i = e[k].hash & tok->vocab_mask;
    while (slots[i].id >= 0 && !tok_slot_holds (&slots[i], e[k].piece, e[k].len, e[k].hash))
      i = (i + 1) & tok->vocab_mask;
    if (slots[i].id >= 0) {
      e[k].id = -1;
      continue;
    }
    slots[i] = (VocabSlot) { e[k].piece, e[k].len, e[k].hash, k };
    tok->n_model_entries++;
    if (e[k].id > max_id)
      max_id = e[k].id, max_k = k;
  }
  for (guint32 i = 0; i <= tok->vocab_mask; i++)
    if (slots[i].id >= 0)
      slots[i].id = e[slots[i].id].id;
  /* The id tables are indexed by id, so they are sized by the largest one: a few entries with a huge id
   * would cost gigabytes (a 60-byte file took 3.4 GB). Real vocabularies are dense; allow as many unused
   * ids as entries, and at least MAX_SPARSE_IDS. */
  gint64 id_limit = (gint64) tok->n_model_entries + MAX (tok->n_model_entries, MAX_SPARSE_IDS);
  if (max_id >= id_limit)
    return tok_fail (error, G3N_ERROR_FORMAT,
                     "model.vocab[\"%s\"] is id %d, but the vocabulary has %d entries: ids must be below %" G_GINT64_FORMAT,
                     e[max_k].piece, max_id, tok->n_model_entries, id_limit);

  tok->n_model_ids = max_id + 1;
  tok->model_piece = g_new0 (char *, tok->n_model_ids);
  tok->model_piece_len = g_new0 (guint32, tok->n_model_ids);
  for (guint k = 0; k < entries->len; k++) {
    gint32 id = e[k].id;
    if (id < 0)
      continue;
    /* One piece per id: two pieces sharing an id would make id -> piece ambiguous. */
    if (tok->model_piece[id])
      return tok_fail (error, G3N_ERROR_FORMAT, "model.vocab maps both \"%s\" and \"%s\" to id %d",
                       tok->model_piece[id], e[k].piece, id);
    tok->model_piece[id] = (char *) e[k].piece;
    tok->model_piece_len[id] = e[k].len;
  }
  return TRUE;
}

static gboolean
load_vocab (G3nTokenizer *tok, const Document *d, GError **error)
{
  Scanner s = tok_document_scanner (d, &d->vocab);
  GArray *entries = g_array_sized_new (FALSE, FALSE, sizeof (VocabEntry), (guint) d->vocab.n_items);
  gboolean ok = read_vocab (tok, &s, entries, error) && index_vocab (tok, entries, error);

  g_array_free (entries, TRUE);
  if (!ok)
    return FALSE;
  for (int b = 0; b < 256; b++) {
    char name[8];
    g_snprintf (name, sizeof name, "<0x%02X>", b);
    tok->byte_id[b] = tok_vocab_lookup (tok, name, 6);
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
  for (; tok_scan_next (s, ']', n == 0, &more, error); n++) {
    if (!more) {
      *ok = *ok && n == 2;
      return TRUE;
    }
    if (n < 2 && tok_scan_peek (s) == '"') {
      if (!tok_scan_string (s, bufs[n], &parts[n], error))
        return FALSE;
    } else {
      *ok = FALSE;
      if (!tok_scan_value (s, TABLE_DEPTH + 2, NULL, error))
        return FALSE;
    }
  }
  return FALSE;
}

/* One merges entry, "a b" (exactly one space) or ["a", "b"], as its two parts. */
static gboolean
read_merge (Scanner *s, guint index, GString *bufs[2], Text parts[2], GError **error)
{
  int c = tok_scan_peek (s);
  gboolean ok = FALSE;
  Text t;

  if (c == '"') {
    if (!tok_scan_string (s, bufs[0], &t, error))
      return FALSE;
    const char *sp = memchr (t.str, ' ', t.len), *end = t.str + t.len;
    if (!sp || memchr (sp + 1, ' ', end - sp - 1))
      return tok_fail (error, G3N_ERROR_FORMAT, "model.merges[%u] \"%.*s\" is not two tokens separated by a space",
                       index, (int) t.len, t.str);
    parts[0] = (Text) { t.str, sp - t.str };
    parts[1] = (Text) { sp + 1, end - sp - 1 };
    return TRUE;
  }
  if (c == '[' && !read_merge_pair (s, bufs, parts, &ok, error))
    return FALSE;
  if (!ok)
    return tok_fail (error, G3N_ERROR_FORMAT, "model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", index);
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
  m->hash[part] = tok_hash_bytes (s, n);
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
  m->hash[PART_MERGED] = tok_hash_bytes (batch->text->str + m->at[PART_MERGED], m->len[PART_MERGED]);
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
      m->id[p] = tok_vocab_find (tok, s, m->len[p], m->hash[p]);
      if (m->id[p] < 0)
        return tok_fail (error, G3N_ERROR_FORMAT, "model.merges[%u] %s \"%.*s\", which is not in the vocabulary",
                         batch->first_rank + i, fmt[p], (int) m->len[p], s);
    }
    m->key = ((guint64) (guint32) m->id[PART_LEFT] << 32) | (guint32) m->id[PART_RIGHT];
    PREFETCH (&tok->merges[tok_hash_pair (m->key) & tok->merge_mask]);
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
    guint32 slot = tok_merge_slot (tok, m->key);
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
    if (!tok_scan_next (s, ']', r == 0, &more, &read_error) || !more || !read_merge (s, r, bufs, parts, &read_error))
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
  Scanner s = tok_document_scanner (d, &d->merges);
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
  JsonNode *dropout = tok_member (m, "dropout");

  if (dropout && (!JSON_NODE_HOLDS_VALUE (dropout) || json_node_get_double (dropout) != 0.0))
    return tok_fail (error, G3N_ERROR_UNSUPPORTED, "model.dropout is set: BPE dropout is random and not supported");
  if (!tok_get_bool (m, "fuse_unk", "model", FALSE, &tok->fuse_unk, error)
      || !tok_get_bool (m, "byte_fallback", "model", FALSE, &tok->byte_fallback, error)
      || !tok_get_bool (m, "ignore_merges", "model", FALSE, &tok->ignore_merges, error)
      || !tok_get_string (m, "unk_token", "model", FALSE, &unk, error)
      || !tok_get_string (m, "continuing_subword_prefix", "model", FALSE, &prefix, error)
      || !tok_get_string (m, "end_of_word_suffix", "model", FALSE, &suffix, error))
    return FALSE;
  tok->subword_prefix = g_strdup (prefix);
  tok->word_suffix = g_strdup (suffix);
  tok->unk_id = -1;
  if (unk && (tok->unk_id = tok_vocab_lookup (tok, unk, strlen (unk))) < 0)
    return tok_fail (error, G3N_ERROR_FORMAT, "model.unk_token \"%s\" is not in the vocabulary", unk);
  return TRUE;
}

gboolean
tok_load_model (G3nTokenizer *tok, JsonObject *root, const Document *d, GError **error)
{
  JsonNode *n = tok_member (root, "model");
  const char *type;

  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return tok_fail (error, G3N_ERROR_FORMAT, "no \"model\" object");
  JsonObject *m = json_node_get_object (n);
  if (!tok_get_string (m, "type", "model", FALSE, &type, error))
    return FALSE;
  if (type && strcmp (type, "BPE") != 0)
    return tok_fail (error, G3N_ERROR_UNSUPPORTED, "model type \"%s\" is not supported (only BPE)", type);

  JsonNode *vocab = tok_member (m, "vocab"), *merges = tok_member (m, "merges");
  if (!vocab || !JSON_NODE_HOLDS_OBJECT (vocab))
    return tok_fail (error, G3N_ERROR_FORMAT, "model lacks the object \"vocab\"");
  if (!merges || !JSON_NODE_HOLDS_ARRAY (merges))
    return tok_fail (error, G3N_ERROR_FORMAT, "model lacks the array \"merges\"");
  /* Those two are emptied stand-ins: the members themselves are read from the document. */
  if (!d->vocab.start || !d->merges.start)
    return tok_fail (error, G3N_ERROR_FORMAT, "model.vocab or model.merges not found where expected");
  return load_vocab (tok, d, error) && load_bpe_options (tok, m, error) && load_merges (tok, d, error);
}
