/* gemma3n.h — the public interface of libgemma3n.
 *
 * libgemma3n runs Google's Gemma 3n (text decoder, USM audio encoder, MobileNetV5 vision encoder) from
 * unmodified Hugging Face checkpoints: a folder with config.json and *.safetensors, memory-mapped.
 *
 * Conventions: opaque handles, parameter structs with *_default_params(), failures reported through GError
 * (domain G3N_ERROR) with a message naming the file, tensor or value at fault. No global state.
 */
#ifndef GEMMA3N_H
#define GEMMA3N_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ---------------------------------------------------------------- errors */

#define G3N_ERROR (g3n_error_quark ())
GQuark g3n_error_quark (void);

typedef enum {
  G3N_ERROR_IO,               /* a file or folder is missing or unreadable */
  G3N_ERROR_FORMAT,           /* a file is malformed (safetensors header, JSON, ...) */
  G3N_ERROR_CONFIG,           /* config.json lacks a value or holds an impossible one */
  G3N_ERROR_TENSOR,           /* a tensor the model needs is missing or has the wrong shape or dtype */
  G3N_ERROR_INVALID_ARGUMENT, /* a caller passed something unusable (bad token id, bad size, ...) */
  G3N_ERROR_CONTEXT_FULL,     /* the context has no room for the input */
  G3N_ERROR_UNSUPPORTED,      /* a valid input this build cannot handle */
} G3nErrorCode;

/* ---------------------------------------------------------------- model */

/* A loaded checkpoint: config.json plus memory-mapped safetensors (single file or shards). Thread-safe to
 * share; reference-counted so several users (elements of one pipeline) map the weights once. */
typedef struct _G3nModel G3nModel;

/* Loads and validates a Hugging Face Gemma 3n checkpoint folder (config.json, model.safetensors or
 * model.safetensors.index.json). Every tensor the model needs is checked for presence, shape and dtype. */
G3nModel *g3n_model_load (const char *dir, GError **error);
G3nModel *g3n_model_ref (G3nModel *model);
void g3n_model_unref (G3nModel *model);

const char *g3n_model_path (const G3nModel *model);
/* A hex SHA-256 identifying the checkpoint (config.json, tensor layout, first bytes of each tensor):
 * session files refuse to load into another model. */
const char *g3n_model_identity (G3nModel *model);
int g3n_model_n_vocab (const G3nModel *model);
int g3n_model_n_embd (const G3nModel *model);      /* text hidden size */
int g3n_model_n_layers (const G3nModel *model);
int g3n_model_n_altup (const G3nModel *model);     /* AltUp streams */
int g3n_model_n_embd_per_layer (const G3nModel *model);
int g3n_model_bos_token (const G3nModel *model);
/* Whether `token` ends generation (config eos_token_id, which may list several ids). */
gboolean g3n_model_is_eos (const G3nModel *model, int32_t token);

/* Writes the decoder input embedding of each id ([n, n_embd]): scaled text embeddings, or for ids in the
 * vision/audio vocabulary ranges the multimodal embedders' hard embeddings, as Gemma3nModel does. */
gboolean g3n_model_embed_tokens (const G3nModel *model, const int32_t *ids, int n, float *out, GError **error);

/* Sets the number of threads the numeric kernels use (0 = all cores). */
void g3n_set_threads (int n_threads);

/* ---------------------------------------------------------------- decoder context */

/* The text decoder's state for one live conversation: the KV cache and the position reached. Input is
 * appended in batches of any size; feeding a prompt whole, in chunks or token by token gives the same
 * results. Sliding-window layers keep only their window; full layers grow with the context. */
typedef struct _G3nContext G3nContext;

typedef struct {
  int n_ctx;     /* maximum positions; 0 = the model's max_position_embeddings */
} G3nContextParams;

G3nContextParams g3n_context_default_params (void);
G3nContext *g3n_context_new (G3nModel *model, const G3nContextParams *params, GError **error);
void g3n_context_free (G3nContext *ctx);
/* Positions consumed so far (the next token's position). */
int g3n_context_n_past (const G3nContext *ctx);
int g3n_context_n_ctx (const G3nContext *ctx);
G3nModel *g3n_context_get_model (const G3nContext *ctx);
/* Forgets everything: the next batch starts at position 0. */
void g3n_context_reset (G3nContext *ctx);
/* Forgets positions [begin, end) and moves later ones down by end - begin, re-rotating their cached keys
 * (a RoPE shift) instead of recomputing them — llama.cpp's context shift. Later tokens keep what they
 * attended to when they were computed. */
gboolean g3n_context_remove (G3nContext *ctx, int begin, int end, GError **error);
/* Bytes held by the KV cache now. */
gsize g3n_context_kv_bytes (const G3nContext *ctx);

/* One step of input. ids are always required (the per-layer embeddings are looked up by id); `embeds`,
 * when set, replaces the input embedding of every token (e.g. multimodal soft tokens scattered by the
 * caller). Each output pointer is optional. */
typedef struct {
  int n_tokens;
  const int32_t *ids;          /* [n_tokens] */
  const float *embeds;         /* [n_tokens, n_embd] or NULL */
  gboolean all_logits;         /* logits for every token, or only for the last one */
  float *logits;               /* [n_tokens or 1, n_vocab] */
  float *last_hidden;          /* [n_tokens, n_embd]: final-normed hidden state (LM head input) */
  float *hidden_states;        /* [n_layers + 1, n_altup, n_tokens, n_embd]: AltUp streams per layer */
  float *per_layer_inputs;     /* [n_tokens, n_layers, n_embd_per_layer] */
} G3nBatch;

gboolean g3n_context_decode (G3nContext *ctx, const G3nBatch *batch, GError **error);

/* ---------------------------------------------------------------- sampling */

/* Next-token choice as transformers' generate(): repetition penalty, then temperature, top-k, top-p,
 * min-p, then a draw. temperature <= 0 means greedy (argmax). */
typedef struct {
  float temperature;        /* <= 0: greedy */
  int top_k;                /* 0: off */
  float top_p;              /* >= 1: off */
  float min_p;              /* 0: off */
  float repetition_penalty; /* 1: off; applies to every token accepted so far (prompt included) */
  guint64 seed;             /* 0: from the clock */
} G3nSamplerParams;

typedef struct _G3nSampler G3nSampler;

/* Gemma 3n's generation defaults: temperature 1.0, top-k 64, top-p 0.95. */
G3nSamplerParams g3n_sampler_default_params (void);
G3nSamplerParams g3n_sampler_greedy_params (void);
G3nSampler *g3n_sampler_new (const G3nSamplerParams *params);
void g3n_sampler_free (G3nSampler *sampler);
/* Picks a token (and records it for the repetition penalty). */
int32_t g3n_sampler_sample (G3nSampler *sampler, const float *logits, int n_vocab);
/* Records a token of the context (e.g. the prompt) for the repetition penalty. */
void g3n_sampler_accept (G3nSampler *sampler, int32_t token);
void g3n_sampler_reset (G3nSampler *sampler);
/* The tokens that survive the filters, most likely first, with their renormalised probabilities; returns
 * how many (ids and probs must hold n_vocab). */
int g3n_sampler_candidates (G3nSampler *sampler, const float *logits, int n_vocab, int32_t *ids, float *probs);

/* ---------------------------------------------------------------- tokenizer */

/* Hugging Face tokenizer.json (BPE): reading, encoding, decoding.
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

/* ---------------------------------------------------------------- chat format */

/* The Gemma 3n chat template and Gemma3nProcessor's placeholder expansion. Token strings come from
 * tokenizer_config.json and soft-token counts from processor_config.json when present (defaults: the real
 * checkpoint's: 256 per image, 188 per audio clip). */
typedef struct _G3nChatFormat G3nChatFormat;

typedef enum { G3N_CHAT_SYSTEM, G3N_CHAT_USER, G3N_CHAT_MODEL } G3nChatRole;
typedef enum { G3N_CHAT_TEXT, G3N_CHAT_IMAGE, G3N_CHAT_AUDIO } G3nChatItemType;

typedef struct {
  G3nChatItemType type;
  const char *text; /* G3N_CHAT_TEXT */
} G3nChatItem;

typedef struct {
  G3nChatRole role;
  const G3nChatItem *items;
  int n_items;
} G3nChatMessage;

G3nChatFormat *g3n_chat_format_new (void);
G3nChatFormat *g3n_chat_format_copy (const G3nChatFormat *format);
const char *g3n_chat_format_bos (const G3nChatFormat *format);
const char *g3n_chat_format_start_of_turn (const G3nChatFormat *format);
const char *g3n_chat_format_end_of_turn (const G3nChatFormat *format);
/* Appends one content item as the template renders it (text trimmed; image/audio as one placeholder, or
 * with `expanded` as the processor's full soft-token sequence). */
void g3n_chat_format_append_item (const G3nChatFormat *format, GString *out, G3nChatItemType type, const char *text,
                                  gboolean expanded);
G3nChatFormat *g3n_chat_format_load (const char *model_dir, GError **error);
void g3n_chat_format_free (G3nChatFormat *format);
int g3n_chat_format_image_tokens (const G3nChatFormat *format);
int g3n_chat_format_audio_tokens (const G3nChatFormat *format);
void g3n_chat_format_set_seq_lengths (G3nChatFormat *format, int image_tokens, int audio_tokens);
/* apply_chat_template(tokenize=False): one placeholder token per image/audio item. */
char *g3n_chat_render (const G3nChatFormat *format, const G3nChatMessage *messages, int n_messages,
                       gboolean add_generation_prompt, GError **error);
/* The processor's expansion of each placeholder into begin + N soft tokens + end, between blank lines;
 * as the reference, only for the modalities given (images / audio clips passed with the prompt). */
char *g3n_chat_expand (const G3nChatFormat *format, const char *rendered, gboolean images, gboolean audio);

/* ---------------------------------------------------------------- media files */

/* Decodes the audio of any file FFmpeg reads into mono float PCM at sample_rate (16000 for Gemma 3n),
 * stopping after max_samples. The caller frees *pcm with g_free. */
gboolean g3n_media_read_audio (const char *path, int sample_rate, gsize max_samples, float **pcm, gsize *n_samples,
                               GError **error);

/* ---------------------------------------------------------------- session */

/* One live conversation: turns in the chat format, appended as input arrives (text, image or audio soft
 * tokens), answered by generation; only new input is prefilled. When the context fills it is shifted:
 * whole exchanges (a user turn and its answer) are dropped oldest first and later cached keys re-positioned
 * (RoPE shift), keeping the first exchange (it carries the system prompt) when keep_first_turn is set.
 * Safe for one thread appending input while another generates. */
typedef struct _G3nSession G3nSession;

typedef struct {
  int n_ctx;                /* positions; memory grows with use up to this */
  gboolean keep_first_turn; /* never shift out the first exchange (system prompt) */
  int min_free;             /* positions a shift frees beyond what is needed (0: n_ctx / 4) */
} G3nSessionParams;

typedef enum {
  G3N_STOP_END_OF_TURN, /* the model ended its turn (<end_of_turn> or EOS) */
  G3N_STOP_MAX_TOKENS,
  G3N_STOP_CALLBACK,    /* the callback asked to stop */
} G3nStopReason;

/* Called per generated token with the text it completes (complete UTF-8 only; may be empty). A final call
 * with token -1 flushes held-back text. Return FALSE to stop. */
typedef gboolean (*G3nTokenCallback) (int32_t token, const char *text, gpointer user_data);

G3nSessionParams g3n_session_default_params (void);
/* The tokenizer must outlive the session. */
G3nSession *g3n_session_new (G3nModel *model, G3nTokenizer *tokenizer, const G3nChatFormat *format,
                             const G3nSessionParams *params, GError **error);
void g3n_session_free (G3nSession *session);
/* Before the first user turn: the template prepends it to that turn. */
gboolean g3n_session_set_system (G3nSession *session, const char *text, GError **error);
gboolean g3n_session_add_text (G3nSession *session, const char *text, GError **error);
/* n rows of n_embd: exactly the processor's soft tokens per image / per audio clip. */
gboolean g3n_session_add_image_embeddings (G3nSession *session, const float *embeds, int n, GError **error);
gboolean g3n_session_add_audio_embeddings (G3nSession *session, const float *embeds, int n, GError **error);
/* A whole model turn (e.g. earlier history): closes the pending user turn first. */
gboolean g3n_session_add_model_text (G3nSession *session, const char *text, GError **error);
/* Closes the pending user turn and generates the model's answer. */
gboolean g3n_session_generate (G3nSession *session, G3nSampler *sampler, int max_tokens, G3nTokenCallback callback,
                               gpointer user_data, G3nStopReason *reason, GError **error);
int g3n_session_n_past (G3nSession *session);
int g3n_session_n_ctx (const G3nSession *session);
G3nContext *g3n_session_get_context (G3nSession *session);
/* Saves the conversation (KV cache and turn state) to a file; loading checks the model's identity. */
gboolean g3n_session_save (G3nSession *session, const char *path, GError **error);
gboolean g3n_session_load (G3nSession *session, const char *path, GError **error);

G_END_DECLS

#endif /* GEMMA3N_H */
