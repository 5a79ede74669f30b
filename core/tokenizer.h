/* tokenizer.h — Hugging Face tokenizer.json (BPE) reader, encoder and decoder.
 *
 * Reproduces the `tokenizers` library (0.23) on the files Gemma uses: a BPE model with merges, byte_fallback and
 * fuse_unk; added tokens matched in the raw text before anything else; Replace / Prepend / Strip / NFx / Lowercase /
 * Sequence normalizers; Split / Sequence pre-tokenizers; Replace / ByteFallback / Fuse / Strip / Sequence decoders;
 * a TemplateProcessing post-processor. Any other component type is reported as G3N_ERROR_UNSUPPORTED at load time
 * rather than being skipped, so a tokenizer that loads encodes the way the reference does.
 *
 * Token ids are gint32. Text is UTF-8 with an explicit length (it may hold NUL bytes); decoded text may hold NUL
 * bytes too (from a <0x00> piece), hence the out_len parameters. A G3nTokenizer is immutable after loading (except
 * through g3n_tokenizer_set_added_token) and may be used from several threads at once.
 */
#ifndef G3N_TOKENIZER_H
#define G3N_TOKENIZER_H

#include "gemma3n.h"

G_BEGIN_DECLS

typedef struct _G3nTokenizer G3nTokenizer;
typedef struct _G3nDetokenizer G3nDetokenizer;

/* Load tokenizer.json. Errors: G3N_ERROR_IO (unreadable file), G3N_ERROR_FORMAT (malformed JSON, missing or
 * ill-typed fields, merges naming unknown tokens), G3N_ERROR_UNSUPPORTED (a component type this reader lacks). */
G3nTokenizer *g3n_tokenizer_new_from_file (const char *path, GError **error);
/* The same from a buffer holding the JSON text; len -1 means NUL-terminated. */
G3nTokenizer *g3n_tokenizer_new_from_data (const char *data, gssize len, GError **error);
void g3n_tokenizer_free (G3nTokenizer *tok);

/* Encode UTF-8 text (len -1: NUL-terminated) into a new GArray of gint32 ids. Added tokens (special or not) found in
 * the text become single ids. add_special_tokens applies the post-processor (Gemma: prepend <bos>). Fails with
 * G3N_ERROR_INVALID_ARGUMENT when the text is not valid UTF-8. */
GArray *g3n_tokenizer_encode (const G3nTokenizer *tok, const char *text, gssize len, gboolean add_special_tokens,
                              GError **error);

/* Decode ids into a new NUL-terminated UTF-8 string; *out_len (may be NULL) receives its length, which counts any
 * NUL byte inside. skip_special drops special added tokens. Like the reference, ids with no piece are dropped and
 * byte pieces that do not form valid UTF-8 give one U+FFFD per byte of the run. */
char *g3n_tokenizer_decode (const G3nTokenizer *tok, const gint32 *ids, gsize n_ids, gboolean skip_special,
                            gsize *out_len);

/* Lookups. token_to_id gives -1 for an unknown piece; id_to_piece gives NULL for an id without one (added tokens
 * first, then the model vocabulary, as the reference does). vocab_size is one past the largest id. */
gint32 g3n_tokenizer_token_to_id (const G3nTokenizer *tok, const char *piece);
const char *g3n_tokenizer_id_to_piece (const G3nTokenizer *tok, gint32 id);
gint32 g3n_tokenizer_get_vocab_size (const G3nTokenizer *tok);
gboolean g3n_tokenizer_is_special (const G3nTokenizer *tok, gint32 id);
/* The id the post-processor puts first (Gemma: <bos>), or -1 if it adds none; the model's unk id, or -1. */
gint32 g3n_tokenizer_get_bos_id (const G3nTokenizer *tok);
gint32 g3n_tokenizer_get_unk_id (const G3nTokenizer *tok);

/* Give id the added token `content` (matched verbatim in the text, no stripping), replacing whatever added token id
 * had; if id is in the model vocabulary its piece is renamed too. This is how a Gemma 3 tokenizer.json is patched to
 * the Gemma 3n multimodal specials. Fails on an empty content, a negative id, or content already used by another id. */
gboolean g3n_tokenizer_set_added_token (G3nTokenizer *tok, gint32 id, const char *content, gboolean special,
                                        GError **error);

/* Streaming decoder: push ids one at a time; each push appends to out only text that is final, i.e. what a whole
 * decode of all ids pushed so far will certainly begin with. A run of byte pieces is held back until a non-byte piece
 * (or finish) settles it, because the reference turns the whole run into U+FFFDs if any of it is invalid. The
 * concatenation of everything appended, finish included, equals g3n_tokenizer_decode of all ids pushed. The
 * tokenizer must outlive the detokenizer. */
G3nDetokenizer *g3n_detokenizer_new (const G3nTokenizer *tok, gboolean skip_special);
/* Returns the number of bytes appended to out. */
gsize g3n_detokenizer_push (G3nDetokenizer *dt, gint32 id, GString *out);
/* Flush what is held back (as the whole decode would render it) and start over. */
gsize g3n_detokenizer_finish (G3nDetokenizer *dt, GString *out);
void g3n_detokenizer_free (G3nDetokenizer *dt);

G_END_DECLS

#endif /* G3N_TOKENIZER_H */
