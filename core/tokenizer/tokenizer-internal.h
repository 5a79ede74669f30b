/* tokenizer-internal.h — what the files of the tokenizer (core/tokenizer/) share. Not API: that is the tokenizer
 * section of gemma3n.h.
 *
 * Loading a tokenizer.json (tokenizer.c ties the steps together):
 *   json-scan.c       checks the whole document strictly and finds model.vocab and model.merges in it;
 *   json-fields.c     reads typed members from json-glib's tree of the rest, and words the errors;
 *   component.c       parses the normalizer, pre_tokenizer and decoder trees (their patterns: pattern.c);
 *   bpe-load.c        reads model.vocab and model.merges from the document's bytes into hash tables;
 *   added-tokens.c    reads added_tokens and builds the tries they are found with;
 *   post-processor.c  reads the single-sequence template.
 * Encoding (tokenizer.c) runs added-tokens.c (cutting text on added tokens), normalizer.c, pre-tokenizer.c and
 * bpe.c (one word); decoding runs decoder.c, and detokenizer.c decodes a stream of ids. utf8.c holds the UTF-8 and
 * character-class rules of the reference.
 *
 * Everything declared here is named tok_ and kept out of the library's exports (G_GNUC_INTERNAL). What encoding
 * calls per character or per pair of symbols is static inline here, so that the split into files adds no calls to
 * the hot loops.
 */
#ifndef G3N_TOKENIZER_INTERNAL_H
#define G3N_TOKENIZER_INTERNAL_H

#include "gemma3n.h"

#include <json-glib/json-glib.h>
#include <string.h>

G_BEGIN_DECLS

/* Ids from a file above this are refused, so a corrupt number cannot trigger a huge allocation. */
#define MAX_ID (1 << 28)
/* model.vocab may leave this many ids unused (or as many as it has entries, if more) and no more: the id
 * tables cost ~25 bytes per id up to the largest. */
#define MAX_SPARSE_IDS (1 << 16)

/* model.vocab and model.merges sit at this depth: the root object, then "model". */
#define TABLE_DEPTH 2

typedef struct {
  gsize start, end;
} Span;

/* A piece of text between or on added tokens: token is an index into tok->added, or -1 for plain text. */
typedef struct {
  gsize start, end;
  gint32 token;
} Segment;

/* ================================================================ UTF-8 and character classes (utf8.c) */

/* Length of the UTF-8 sequence starting at s (n > 0 bytes available) under the rules of Rust's str::from_utf8, which
 * is what the reference applies to byte-fallback runs: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Returns 0 when invalid, and then sets *truncated if the bytes were a valid start cut short by the buffer end. */
static inline gsize
tok_utf8_sequence (const guint8 *s, gsize n, gboolean *truncated)
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
G_GNUC_INTERNAL Utf8Status tok_utf8_check (const char *s, gsize n, gsize *bad_at);

/* Length of the character at s in text already known to be valid UTF-8. */
static inline gsize
tok_utf8_char_len (const char *s)
{
  guint8 c = (guint8) *s;
  return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Rust's char::is_whitespace and regex \s: the Unicode White_Space property. */
static inline gboolean
tok_is_white_space (gunichar c)
{
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
         || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Regex \w in Unicode mode. */
G_GNUC_INTERNAL gboolean tok_is_word_char (gunichar c);
/* The byte a "<0xNN>" piece stands for, or -1. */
G_GNUC_INTERNAL int tok_piece_byte (const char *p, gsize len);

/* ================================================================ errors and typed members (json-fields.c) */

/* Set a G3N_ERROR `code` whose message starts "tokenizer.json: "; returns FALSE, for `return tok_fail (...)`. */
G_GNUC_INTERNAL gboolean tok_fail (GError **error, gint code, const char *format, ...) G_GNUC_PRINTF (3, 4);
/* The member `name` of o, or NULL when it is absent or JSON null. */
G_GNUC_INTERNAL JsonNode *tok_member (JsonObject *o, const char *name);
G_GNUC_INTERNAL gboolean tok_node_is (JsonNode *n, GType type);
/* Members of a type, defaulted when absent; a member of another type is a G3N_ERROR_FORMAT naming `where`. */
G_GNUC_INTERNAL gboolean tok_get_string (JsonObject *o, const char *name, const char *where, gboolean required,
                                         const char **out, GError **error);
G_GNUC_INTERNAL gboolean tok_get_bool (JsonObject *o, const char *name, const char *where, gboolean dflt,
                                       gboolean *out, GError **error);
G_GNUC_INTERNAL gboolean tok_get_int (JsonObject *o, const char *name, const char *where, gint64 dflt, gint64 *out,
                                      GError **error);

/* ================================================================ strict JSON scanning (json-scan.c) */

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

/* Check the whole document, noting where the model's tables lie. */
G_GNUC_INTERNAL gboolean tok_scan_document (Document *d, GError **error);
/* A scanner over one value of the document (one of its ValueSpans). */
G_GNUC_INTERNAL Scanner tok_document_scanner (const Document *d, const ValueSpan *span);
/* The document with the model's tables emptied, for json-glib. */
G_GNUC_INTERNAL GString *tok_document_rest (const Document *d);

/* Reading values at the cursor, for the readers of the tables (bpe-load.c). */
G_GNUC_INTERNAL int tok_scan_peek (Scanner *s);
G_GNUC_INTERNAL gboolean tok_scan_next (Scanner *s, char close, gboolean first, gboolean *more, GError **error);
G_GNUC_INTERNAL gboolean tok_scan_key (Scanner *s, Text *key, GError **error);
G_GNUC_INTERNAL gboolean tok_scan_string (Scanner *s, GString *buf, Text *out, GError **error);
G_GNUC_INTERNAL gboolean tok_scan_number (Scanner *s, gint64 *id, GError **error);
G_GNUC_INTERNAL gboolean tok_scan_value (Scanner *s, guint depth, gsize *n_items, GError **error);

/* ================================================================ patterns of Replace and Split (pattern.c) */

typedef struct {
  char *literal; /* a {"String": ...} pattern, matched byte for byte */
  gsize literal_len;
  GRegex *regex; /* a {"Regex": ...} pattern (PCRE here, Oniguruma in the reference: same for common patterns) */
} Pattern;

G_GNUC_INTERNAL gboolean tok_pattern_parse (Pattern *pat, JsonObject *o, const char *where, GError **error);
G_GNUC_INTERNAL void tok_pattern_clear (Pattern *pat);
G_GNUC_INTERNAL gboolean tok_pattern_next (const Pattern *pat, const char *s, gsize n, gsize from, Span *match);
G_GNUC_INTERNAL void tok_pattern_replace (const Pattern *pat, const char *content, const char *s, gsize n,
                                          GString *out);

/* ================================================================ components
 *
 * The normalizer, pre_tokenizer and decoder members are trees of one Component type: parsed by component.c, run by
 * normalizer.c, pre-tokenizer.c and decoder.c. */

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

typedef enum {
  SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_WITH_PREVIOUS, SPLIT_MERGED_WITH_NEXT, SPLIT_CONTIGUOUS
} SplitBehavior;

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

/* Parse one component; a JSON null (or missing node) gives *out = NULL and success. */
G_GNUC_INTERNAL gboolean tok_component_parse (JsonNode *node, Role role, const char *where, Component **out,
                                              GError **error);
G_GNUC_INTERNAL void tok_component_free (Component *c);
/* Whether the tree c holds a component of this kind. */
G_GNUC_INTERNAL gboolean tok_component_uses (const Component *c, ComponentKind kind);

/* Normalize s in place. */
G_GNUC_INTERNAL void tok_normalize (const Component *c, GString *s);
/* Refine the word spans of s in place. */
G_GNUC_INTERNAL void tok_pre_tokenize (const Component *c, const char *s, GArray *words);

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

/* ================================================================ the model's hash tables
 *
 * Probed here, inline: encoding makes a lookup per character and per pair of symbols. Built by bpe-load.c. */

static inline guint32
tok_hash_bytes (const char *s, gsize n)
{
  guint32 h = 2166136261u; /* FNV-1a */
  for (gsize i = 0; i < n; i++)
    h = (h ^ (guint8) s[i]) * 16777619u;
  return h;
}

static inline guint32
tok_hash_pair (guint64 key)
{
  return (guint32) ((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static inline gboolean
tok_slot_holds (const VocabSlot *slot, const char *s, gsize n, guint32 h)
{
  return slot->hash == h && slot->len == n && memcmp (slot->piece, s, n) == 0;
}

/* The id of piece s[0..n), whose hash is h, or -1. */
static inline gint32
tok_vocab_find (const G3nTokenizer *tok, const char *s, gsize n, guint32 h)
{
  for (guint32 i = h & tok->vocab_mask;; i = (i + 1) & tok->vocab_mask) {
    const VocabSlot *slot = &tok->vocab_slots[i];
    if (slot->id < 0)
      return -1;
    if (tok_slot_holds (slot, s, n, h))
      return slot->id;
  }
}

static inline gint32
tok_vocab_lookup (const G3nTokenizer *tok, const char *s, gsize n)
{
  return tok_vocab_find (tok, s, n, tok_hash_bytes (s, n));
}

static inline guint32
tok_merge_slot (const G3nTokenizer *tok, guint64 key)
{
  guint32 i = tok_hash_pair (key) & tok->merge_mask;
  while (tok->merges[i].key != MERGE_EMPTY && tok->merges[i].key != key)
    i = (i + 1) & tok->merge_mask;
  return i;
}

/* Rank and result of merging (left, right), or FALSE if no merge applies. */
static inline gboolean
tok_merge_lookup (const G3nTokenizer *tok, gint32 left, gint32 right, gint32 *rank, gint32 *new_id)
{
  guint32 i = tok_merge_slot (tok, ((guint64) (guint32) left << 32) | (guint32) right);
  if (tok->merges[i].key == MERGE_EMPTY)
    return FALSE;
  *rank = tok->merges[i].rank;
  *new_id = tok->merges[i].new_id;
  return TRUE;
}

/* (Re)build the piece -> id table from model_piece, after a piece was renamed. */
G_GNUC_INTERNAL void tok_vocab_rebuild (G3nTokenizer *tok);
/* Read the "model" member: the BPE vocabulary and merges (from the document's bytes) and options. */
G_GNUC_INTERNAL gboolean tok_load_model (G3nTokenizer *tok, JsonObject *root, const Document *d, GError **error);

/* ================================================================ BPE on one word (bpe.c) */

/* Scratch buffers of tok_bpe_word, reused across the words of one encode call. */
typedef struct {
  GArray *symbols; /* Symbol (bpe.c) */
  GArray *heap;    /* Merge (bpe.c), a binary min-heap on (rank, pos) */
  GString *piece;
} BpeWork;

G_GNUC_INTERNAL void tok_bpe_work_init (BpeWork *w);
G_GNUC_INTERNAL void tok_bpe_work_clear (BpeWork *w);
/* Append the ids of word[0..len) to ids. */
G_GNUC_INTERNAL void tok_bpe_word (const G3nTokenizer *tok, const char *word, gsize len, BpeWork *w, GArray *ids);

/* ================================================================ added tokens (added-tokens.c) */

G_GNUC_INTERNAL void tok_added_token_free (AddedToken *t);
/* The id of a piece: added tokens first, then the model vocabulary (the reference's token_to_id); -1 if neither. */
G_GNUC_INTERNAL gint32 tok_lookup_id (const G3nTokenizer *tok, const char *piece);
/* Read "added_tokens" (after the model, whose ids they may take) and build the tries. */
G_GNUC_INTERNAL gboolean tok_load_added_tokens (G3nTokenizer *tok, JsonObject *root, GError **error);
/* Cut s[0..n) into Segments on the added tokens of one trie. */
G_GNUC_INTERNAL void tok_split_on_added (const G3nTokenizer *tok, const Trie *trie, const char *s, gsize n,
                                         GArray *segments);

/* ================================================================ post-processor (post-processor.c) */

/* Read "post_processor" into tok->post_prefix and tok->post_suffix (empty without one). */
G_GNUC_INTERNAL gboolean tok_load_post_processor (G3nTokenizer *tok, JsonObject *root, GError **error);

/* ================================================================ decoding (decoder.c) */

/* Whether id contributes a piece to a decode (known id, and not a special token being skipped). */
static inline gboolean
tok_id_kept (const G3nTokenizer *tok, gint32 id, gboolean skip_special)
{
  return id >= 0 && id < tok->n_ids && tok->id_piece[id] && !(skip_special && tok->id_special[id]);
}

/* The text of ids: their pieces through the decoder tree. */
G_GNUC_INTERNAL GString *tok_decode_to_gstring (const G3nTokenizer *tok, const gint32 *ids, gsize n_ids,
                                                gboolean skip_special);

G_END_DECLS

#endif /* G3N_TOKENIZER_INTERNAL_H */
