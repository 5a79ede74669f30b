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

G_END_DECLS

#endif /* GEMMA3N_H */
