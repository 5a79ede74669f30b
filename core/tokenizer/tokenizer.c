/* tokenizer.c — Hugging Face tokenizer.json: loading, encoding, decoding and lookups (API in gemma3n.h), tying
 * together the parts listed in tokenizer-internal.h.
 *
 * Encoding follows the reference pipeline:
 *   1. split the raw text on added tokens whose `normalized` flag is false (leftmost-longest match);
 *   2. normalize each remaining piece, then split it on the normalized added tokens;
 *   3. pre-tokenize what is left into words and run BPE on each word;
 *   4. optionally wrap the ids with the post-processor's template.
 * Decoding maps ids to pieces (added tokens first) and runs the decoder chain over the piece list.
 */
#include "tokenizer-internal.h"

/* ================================================================ construction */

static gboolean
load_components (G3nTokenizer *tok, JsonObject *root, GError **error)
{
  const char *version;

  if (!tok_get_string (root, "version", "root", FALSE, &version, error))
    return FALSE;
  if (version && strcmp (version, "1.0") != 0)
    return tok_fail (error, G3N_ERROR_UNSUPPORTED, "unknown version \"%s\"", version);
  /* "truncation" and "padding" are ignored: they are length policies for batches, and the engine enforces its own
   * context limit. */
  if (!tok_component_parse (tok_member (root, "normalizer"), ROLE_NORMALIZER, "normalizer", &tok->normalizer, error)
      || !tok_component_parse (tok_member (root, "pre_tokenizer"), ROLE_PRE_TOKENIZER, "pre_tokenizer",
                               &tok->pre_tokenizer, error)
      || !tok_component_parse (tok_member (root, "decoder"), ROLE_DECODER, "decoder", &tok->decoder, error))
    return FALSE;
  tok->decoder_has_byte_fallback = tok_component_uses (tok->decoder, C_BYTE_FALLBACK);
  return TRUE;
}

static G3nTokenizer *
tokenizer_from_root (JsonNode *root_node, const Document *d, GError **error)
{
  G3nTokenizer *tok = g_new0 (G3nTokenizer, 1);

  tok->strings = g_string_chunk_new (1 << 20);
  tok->added = g_ptr_array_new_with_free_func ((GDestroyNotify) tok_added_token_free);
  tok->added_by_content = g_hash_table_new (g_str_hash, g_str_equal);
  if (!root_node || !JSON_NODE_HOLDS_OBJECT (root_node)) {
    tok_fail (error, G3N_ERROR_FORMAT, "the top level is not an object");
    g3n_tokenizer_free (tok);
    return NULL;
  }
  JsonObject *root = json_node_get_object (root_node);
  /* Components first: added tokens marked `normalized` are matched in normalized form. */
  if (!load_components (tok, root, error) || !tok_load_model (tok, root, d, error)
      || !tok_load_added_tokens (tok, root, error) || !tok_load_post_processor (tok, root, error)) {
    g3n_tokenizer_free (tok);
    return NULL;
  }
  return tok;
}

/* Parse the document, less the model's tables, with json-glib and build the tokenizer. */
static G3nTokenizer *
tokenizer_from_document (const Document *d, GError **error)
{
  GString *rest = tok_document_rest (d);
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
  if (tok_scan_document (&d, error))
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
  tok_component_free (tok->normalizer);
  tok_component_free (tok->pre_tokenizer);
  tok_component_free (tok->decoder);
  if (tok->post_prefix)
    g_array_free (tok->post_prefix, TRUE);
  if (tok->post_suffix)
    g_array_free (tok->post_suffix, TRUE);
  if (tok->strings)
    g_string_chunk_free (tok->strings);
  g_free (tok);
}

/* ================================================================ encoding */

/* Scratch buffers reused across the pieces of one encode call. */
typedef struct {
  BpeWork bpe;
  GArray *words;    /* Span */
  GArray *segments; /* Segment */
} Work;

/* Normalize a piece of text that holds no raw added token, then split it on the normalized added tokens,
 * pre-tokenize and BPE the rest. */
static void
encode_plain (const G3nTokenizer *tok, const char *text, gsize len, Work *w, GArray *ids)
{
  GString *norm = g_string_new_len (text, len);

  if (tok->normalizer)
    tok_normalize (tok->normalizer, norm);
  tok_split_on_added (tok, &tok->normalized_trie, norm->str, norm->len, w->segments);
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
      tok_pre_tokenize (tok->pre_tokenizer, norm->str, w->words);
    for (guint j = 0; j < w->words->len; j++) {
      Span word = g_array_index (w->words, Span, j);
      tok_bpe_word (tok, norm->str + word.start, word.end - word.start, &w->bpe, ids);
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

  if (tok_utf8_check (text, n, &bad_at) != UTF8_VALID) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "cannot tokenize: text is not valid UTF-8 (bad byte 0x%02X at offset %" G_GSIZE_FORMAT ")",
                 (guint8) text[bad_at], bad_at);
    return NULL;
  }
  Work w = { .words = g_array_new (FALSE, FALSE, sizeof (Span)),
             .segments = g_array_new (FALSE, FALSE, sizeof (Segment)) };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  GArray *raw = g_array_new (FALSE, FALSE, sizeof (Segment));

  tok_bpe_work_init (&w.bpe);
  if (add_special_tokens)
    g_array_append_vals (ids, tok->post_prefix->data, tok->post_prefix->len);
  tok_split_on_added (tok, &tok->raw_trie, text, n, raw);
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
  tok_bpe_work_clear (&w.bpe);
  g_array_free (w.words, TRUE);
  g_array_free (w.segments, TRUE);
  return ids;
}

/* ================================================================ decoding */

char *
g3n_tokenizer_decode (const G3nTokenizer *tok, const gint32 *ids, gsize n_ids, gboolean skip_special,
                      gsize *out_len)
{
  g_return_val_if_fail (tok != NULL && (ids != NULL || n_ids == 0), NULL);
  GString *s = tok_decode_to_gstring (tok, ids, n_ids, skip_special);
  if (out_len)
    *out_len = s->len;
  return g_string_free (s, FALSE);
}

/* ================================================================ lookups */

gint32
g3n_tokenizer_token_to_id (const G3nTokenizer *tok, const char *piece)
{
  g_return_val_if_fail (tok != NULL && piece != NULL, -1);
  return tok_lookup_id (tok, piece);
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
