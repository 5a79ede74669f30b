/* detokenizer.c — streaming decode: text handed out as ids arrive, whose concatenation equals decoding all the ids
 * at once. A short window of ids is decoded again at each push; the bytes of a trailing run of byte pieces are held
 * back until the run is settled, since a later byte can still change how it decodes. */
#include "tokenizer-internal.h"

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
  return tok_piece_byte (dt->tok->id_piece[id], dt->tok->id_piece_len[id]);
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
    if (!tok_id_kept (dt->tok, id, dt->skip_special))
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
                       && tok_utf8_check (bytes->str, bytes->len, NULL) != UTF8_INVALID;
  g_string_free (bytes, TRUE);
  return unsettled;
}

/* Append the part of decode(window) not handed out yet. */
static gsize
emit (G3nDetokenizer *dt, GString *out)
{
  GString *text = tok_decode_to_gstring (dt->tok, (const gint32 *) dt->window->data, dt->window->len, dt->skip_special);
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
    GString *text = tok_decode_to_gstring (dt->tok, (const gint32 *) dt->window->data, dt->window->len,
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
