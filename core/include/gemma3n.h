/* gemma3n.h — the public interface of libgemma3n.
 *
 * libgemma3n runs Google's Gemma 3n (text decoder, USM audio encoder, MobileNetV5 vision encoder) from
 * unmodified Hugging Face checkpoints: a folder with config.json and *.safetensors, memory-mapped.
 *
 * Conventions: opaque handles, parameter structs with *_default_params(), failures reported through GError
 * (domain G3N_ERROR) with a message naming the file, tensor or value at fault. No global state: a loaded
 * model is read-only and shared by reference; every user of it (session, context, encoder call) brings its
 * own thread budget and cancellable and may run on its own thread at the same time as the others.
 *
 * A live conversation with audio streamed in as it arrives (error checks left out):
 *
 *   G3nModelParams mp = g3n_model_default_params ();
 *   mp.quant = G3N_QUANT_Q8_0;                      // converted once, inside load
 *   G3nModel *model = g3n_model_load_with_params (dir, &mp, &error);
 *   g_autofree char *tok_path = g_build_filename (dir, "tokenizer.json", NULL);
 *   G3nTokenizer *tok = g3n_tokenizer_new_from_file (tok_path, &error);
 *   G3nChatFormat *fmt = g3n_chat_format_load (dir, &error);
 *   G3nSessionParams sp = g3n_session_default_params ();
 *   sp.n_threads = 4;
 *   G3nSession *s = g3n_session_new (model, tok, fmt, &sp, &error);
 *   g3n_session_set_cancellable (s, cancellable);   // g_cancellable_cancel() from any thread stops it
 *
 *   g3n_session_add_text (s, "Transcribe this:", &error);
 *   g3n_session_begin_audio (s, &error);
 *   while ((n = next_pcm (pcm, 1600)) > 0)          // 16 kHz mono float, pieces of any size:
 *     g3n_session_push_audio (s, pcm, n, &error);   // encoded and prefilled while the speech arrives
 *   g3n_session_end_audio (s, &error);
 *   G3nSamplerParams greedy = g3n_sampler_greedy_params ();
 *   G3nSampler *sampler = g3n_sampler_new (&greedy);
 *   g3n_session_generate (s, sampler, 128, on_token, user_data, NULL, &error);  // on_token gets the text
 *
 *   g3n_sampler_free (sampler); g3n_session_free (s); g3n_chat_format_free (fmt);
 *   g3n_tokenizer_free (tok); g3n_model_unref (model);
 */
#ifndef GEMMA3N_H
#define GEMMA3N_H

#include <glib.h>
#include <gio/gio.h> /* GCancellable */
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

/* ---------------------------------------------------------------- build */

/* The kernel set this process runs: "avx512", "avx2" or "portable", the best the CPU has (chosen at first
 * use). The environment variable G3N_KERNEL asks for one (for tests); a set the CPU lacks is not taken. */
const char *g3n_kernels_isa (void);

/* ---------------------------------------------------------------- tensor files */

/* safetensors files (a JSON header, then the raw little-endian tensors), for the inputs and outputs of tools
 * and tests; checkpoints are read by g3n_model_load. A file opened for reading is mapped read-only with every
 * header entry validated at open (dtype, shape, offsets inside the file, no two tensors sharing bytes). */
typedef enum {
  G3N_DTYPE_F32,
  G3N_DTYPE_F16,
  G3N_DTYPE_BF16,
  G3N_DTYPE_F64,
  G3N_DTYPE_I64,
  G3N_DTYPE_I32,
  G3N_DTYPE_I16,
  G3N_DTYPE_I8,
  G3N_DTYPE_U8,
  G3N_DTYPE_BOOL,
  G3N_N_DTYPES
} G3nDType;

#define G3N_MAX_DIMS 8

/* One tensor: its bytes live in a mapped file (or, for tensors to be written, in the caller's memory). */
typedef struct {
  const char *name;
  G3nDType dtype;
  int ndim;
  int64_t shape[G3N_MAX_DIMS];
  const void *data;
  size_t nbytes;    /* set by reading; writing computes it from dtype and shape */
  const char *path; /* the file it was read from, for error messages */
} G3nTensor;

/* Bytes of one element; the file's name of the type ("F32", "BF16", "I64", "U8", "BOOL", ...). */
gsize g3n_dtype_size (G3nDType dtype);
const char *g3n_dtype_name (G3nDType dtype);
int64_t g3n_tensor_numel (const G3nTensor *t);
/* "[2, 3, 4]" — for error messages; the caller frees it. */
char *g3n_shape_to_string (int ndim, const int64_t *shape);

typedef struct _G3nSafetensors G3nSafetensors;

G3nSafetensors *g3n_safetensors_open (const char *path, GError **error);
/* The tensors (and their data) belong to the file: valid until it is freed. */
void g3n_safetensors_free (G3nSafetensors *st);
guint g3n_safetensors_count (const G3nSafetensors *st);
const G3nTensor *g3n_safetensors_nth (const G3nSafetensors *st, guint i);
/* NULL when the file has no tensor of that name. */
const G3nTensor *g3n_safetensors_find (const G3nSafetensors *st, const char *name);
const char *g3n_safetensors_path (const G3nSafetensors *st);
/* A string of the header's "__metadata__" map; NULL when absent (or not a string). */
const char *g3n_safetensors_metadata (const G3nSafetensors *st, const char *key);

/* Writes tensors (name, dtype, ndim, shape, data) to a new safetensors file. Tensors are laid out widest
 * element type first, in the given order within a type, from a 64-byte aligned data region. */
gboolean g3n_safetensors_write (const char *path, const G3nTensor *tensors, guint n_tensors, GError **error);
/* The same with a "__metadata__" map: metadata holds key, value, key, value, …, NULL (NULL for none). */
gboolean g3n_safetensors_write_with_metadata (const char *path, const G3nTensor *tensors, guint n_tensors,
                                              const char *const *metadata, GError **error);

/* ---------------------------------------------------------------- random checkpoints */

/* A checkpoint of real shapes with random weights, for benchmarks and memory checks (the real weights cannot
 * be redistributed or fetched offline): config.json as given, the processor and generation configs of
 * Google's release, and every tensor the text decoder and both towers bind, under the release's names, as
 * BF16 sharded safetensors with model.safetensors.index.json. Values are seeded normals scaled so activations
 * stay finite (norm weights near 1, matrices ~ N(0, 1/fan_in)); each tensor's values depend only on the seed
 * and its name, so the result does not depend on the shard size. Memory stays flat whatever the size: each
 * tensor is generated and written in fixed chunks. */

/* Progress of g3n_random_checkpoint_write: called once the tensors are planned (shards_done = 0), then after
 * each shard is written. */
typedef void (*G3nCheckpointProgressFunc) (int shards_done, int n_shards, guint n_tensors, guint64 total_bytes,
                                           gpointer user_data);

/* The config.json of Google's release of "e2b" or "e4b" (google/gemma-3n-E2B-it / -E4B-it, case-insensitive);
 * NULL for another name. The caller frees it. */
char *g3n_random_checkpoint_release_config (const char *name);
/* Writes the checkpoint of config_json (the text of a Gemma 3n config.json) into dir (created if needed),
 * in shards of at most max_shard_bytes (a bigger tensor gets one to itself; 0: 2 GB). `progress` may be NULL.
 * The result loads with g3n_model_load and the towers' encoders. */
gboolean g3n_random_checkpoint_write (const char *dir, const char *config_json, guint64 seed,
                                      guint64 max_shard_bytes, G3nCheckpointProgressFunc progress,
                                      gpointer user_data, GError **error);

/* ---------------------------------------------------------------- model */

/* Storage of the text decoder's large matrices. Q8_0: blocks of 32 weights along a row, one fp16 scale and
 * 32 int8 per block (8.5 bits a weight). Q4_0: the same with 4-bit codes q, weight = scale · (q − 8)
 * (4.5 bits). NONE (= BF16) keeps the checkpoint's own dtype. Quantised results differ from the reference
 * by quantisation error. */
typedef enum {
  G3N_QUANT_NONE = 0,
  G3N_QUANT_BF16 = G3N_QUANT_NONE, /* "as stored": real checkpoints are BF16 */
  G3N_QUANT_Q8_0 = 1,
  G3N_QUANT_Q4_0 = 2,
} G3nQuantType;

/* "bf16", "q8_0", "q4_0". */
const char *g3n_quant_type_name (G3nQuantType type);
/* Parses "bf16"/"none", "q8_0"/"q8", "q4_0"/"q4" (case-insensitive); G3N_ERROR_INVALID_ARGUMENT otherwise. */
gboolean g3n_quant_type_from_string (const char *name, G3nQuantType *type, GError **error);

/* A loaded checkpoint: config.json plus memory-mapped safetensors (single file or shards). Everything that
 * changes weights (quantisation, the sparse layers' layout) happens inside g3n_model_load_with_params;
 * afterwards a model is read-only, so any number of contexts, sessions and encoders on any threads may
 * share it. Reference-counted: every user holds a reference, the weights are mapped once. */
typedef struct _G3nModel G3nModel;

typedef struct {
  /* Storage of the text decoder's large matrices (and a copy of the tied LM head). Converting them
   * releases the checkpoint pages they came from, so resident memory shrinks; embedding lookups still
   * read the mapping. E2B: 7–9 s on 2 threads, unless quant_cache holds the result. */
  G3nQuantType quant;
  /* A quantised-weights file: when it exists it is read (into huge pages) instead of converting again,
   * and refused with an error naming it if it is not a valid file of `quant` for this checkpoint;
   * otherwise the conversion is saved there (atomically) for the next start-up. NULL: none. It is a
   * safetensors file: per matrix NAME.q (U8 codes), NAME.scales (F16), NAME.layout (I64 rows, cols,
   * by_input); "__metadata__" holds format, version, quant type and the checkpoint's identity. */
  const char *quant_cache;
  int n_threads;          /* threads the conversions at load use; 0 = online cores */
} G3nModelParams;

G3nModelParams g3n_model_default_params (void);
/* Loads and validates a Hugging Face Gemma 3n checkpoint folder (config.json, model.safetensors or
 * model.safetensors.index.json): every tensor the model needs is checked for presence, shape and dtype,
 * then the weights are prepared as params ask (NULL: defaults). */
G3nModel *g3n_model_load_with_params (const char *dir, const G3nModelParams *params, GError **error);
/* g3n_model_load_with_params with the defaults: weights as stored. */
G3nModel *g3n_model_load (const char *dir, GError **error);
G3nModel *g3n_model_ref (G3nModel *model);
void g3n_model_unref (G3nModel *model);

G3nQuantType g3n_model_quant_type (const G3nModel *model);
/* Bytes of weights the text decoder's matrices (LM head included) occupy in their current storage. */
gsize g3n_model_text_weight_bytes (const G3nModel *model);
/* Of those, the bytes one generated token reads: in the activation-sparse layers only the non-zero
 * activations' rows of up_proj and down_proj (their expected share, 1 - sparsity) — what bounds decode
 * speed at a given memory bandwidth. Per-layer embedding rows and the KV cache are not counted. */
gsize g3n_model_decode_bytes_per_token (const G3nModel *model);

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
/* Ids at and above this are multimodal (vision and audio vocabularies); below it, text (config
 * text_config.vocab_size_per_layer_input: the per-layer embeddings' rows). */
int g3n_model_n_vocab_per_layer (const G3nModel *model);
/* Whether config.json describes an audio / vision tower (g3n_audio_encoder_new / g3n_vision_encoder_new then
 * bind its weights, and report what the checkpoint lacks). */
gboolean g3n_model_has_audio_tower (const G3nModel *model);
gboolean g3n_model_has_vision_tower (const G3nModel *model);
/* Whether the checkpoint has embed_audio / embed_vision: the projection of the towers' outputs into soft
 * tokens of the text model (the encoders' embeds outputs), and the hard embeddings of that vocabulary. */
gboolean g3n_model_has_audio_embedder (const G3nModel *model);
gboolean g3n_model_has_vision_embedder (const G3nModel *model);
/* The placeholder ids a prompt holds, one per soft token, where image / audio soft tokens go (config
 * image_token_id / audio_token_id), and how many soft tokens one image / one audio clip takes (config
 * vision_soft_tokens_per_image / audio_soft_tokens_per_image). */
int32_t g3n_model_image_token (const G3nModel *model);
int32_t g3n_model_audio_token (const G3nModel *model);
int g3n_model_image_soft_tokens (const G3nModel *model);
int g3n_model_audio_soft_tokens (const G3nModel *model);

/* Writes the decoder input embedding of each id ([n, n_embd]): scaled text embeddings, or for ids in the
 * vision/audio vocabulary ranges the multimodal embedders' hard embeddings, as Gemma3nModel does. */
gboolean g3n_model_embed_tokens (const G3nModel *model, const int32_t *ids, int n, float *out, GError **error);
/* Whether every id can be embedded (in the vocabulary, with the embedder its range needs). */
gboolean g3n_model_check_ids (const G3nModel *model, const int32_t *ids, int n, GError **error);


/* ---------------------------------------------------------------- compute */

/* How one call computes, for the calls that take it (encoders), and the same two settings in the
 * parameters of contexts, sessions and audio streams.
 *
 * Threads: every user of the library has its own thread budget: its matrix products are split into at
 * most n_threads parts, run by the calling thread and the process's shared pool of worker threads (grown
 * so that every user computing at the same time has its whole budget, up to the cores the process may use). Several users (sessions, encoders, pipelines) on their own threads
 * compute at once: none waits for another's products, and each progresses even when every worker is busy
 * elsewhere. Results do not depend on the budget's use by others. The environment variable G3N_THREADS,
 * when set, overrides every budget (for tests and benchmarks).
 *
 * Cancellation: when `cancellable` is cancelled (from any thread), the call returns FALSE with
 * G_IO_ERROR_CANCELLED within one layer's work (milliseconds), leaving its object as it was before the
 * call (see each call for what was kept). */
typedef struct {
  int n_threads;             /* 0 = online cores */
  GCancellable *cancellable; /* NULL = not cancellable */
} G3nComputeParams;

G3nComputeParams g3n_compute_default_params (void);
/* Sets the calling thread's own budget, used by the calls it makes that are given none (n_threads 0 in
 * their parameters); 0 = online cores. Other threads are unaffected. */
void g3n_set_threads (int n_threads);

/* ---------------------------------------------------------------- decoder context */

/* The text decoder's state for one live conversation: the KV cache and the position reached. Input is
 * appended in batches of any size; feeding a prompt whole, in chunks or token by token gives the same
 * results. Sliding-window layers keep only their window; full layers grow with the context. */
typedef struct _G3nContext G3nContext;

/* How the KV cache stores keys and values. F32 (the default) keeps the reference's fp32 math. F16 halves
 * the cache's memory and the bytes attention reads per token, rounding each value to 11 significant bits
 * (llama.cpp's default); BF16 likewise with 8 bits. Keys and values are RMS-normalised, so F16's range
 * (±65504) is ample. */
typedef enum {
  G3N_KV_F32 = 0,
  G3N_KV_F16 = 1,
  G3N_KV_BF16 = 2,
} G3nKvType;

/* "f32", "f16", "bf16". */
const char *g3n_kv_type_name (G3nKvType type);
/* Parses those names (case-insensitive); G3N_ERROR_INVALID_ARGUMENT otherwise. */
gboolean g3n_kv_type_from_string (const char *name, G3nKvType *type, GError **error);

typedef struct {
  int n_ctx;           /* maximum positions; 0 = the model's max_position_embeddings */
  G3nKvType kv_type;   /* storage of the KV cache (default G3N_KV_F32) */
  int n_threads;       /* the context's thread budget (G3nComputeParams); 0 = online cores */
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
G3nKvType g3n_context_kv_type (const G3nContext *ctx);

/* One step of input. ids are always required (the per-layer embeddings are looked up by id); `embeds`,
 * when set, replaces the input embedding of every token (e.g. multimodal soft tokens scattered by the
 * caller). Each output pointer is optional. A cancelled batch (G_IO_ERROR_CANCELLED) leaves the context
 * exactly as before it: none of its tokens is consumed. */
typedef struct {
  int n_tokens;
  const int32_t *ids;          /* [n_tokens] */
  const float *embeds;         /* [n_tokens, n_embd] or NULL */
  gboolean all_logits;         /* logits for every token, or only for the last one */
  float *logits;               /* [n_tokens or 1, n_vocab] */
  float *last_hidden;          /* [n_tokens, n_embd]: final-normed hidden state (LM head input) */
  float *hidden_states;        /* [n_layers + 1, n_altup, n_tokens, n_embd]: AltUp streams per layer */
  float *per_layer_inputs;     /* [n_tokens, n_layers, n_embd_per_layer] */
  GCancellable *cancellable;   /* NULL = not cancellable */
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
/* Each in 0..32768 (a context's positions); g3n_chat_format_load refuses configs beyond that. */
void g3n_chat_format_set_seq_lengths (G3nChatFormat *format, int image_tokens, int audio_tokens);
/* apply_chat_template(tokenize=False): one placeholder token per image/audio item. */
char *g3n_chat_render (const G3nChatFormat *format, const G3nChatMessage *messages, int n_messages,
                       gboolean add_generation_prompt, GError **error);
/* The processor's expansion of each placeholder into begin + N soft tokens + end, between blank lines;
 * as the reference, only for the modalities given (images / audio clips passed with the prompt). NULL when
 * the result would exceed 256 MiB (far more than any context holds). */
char *g3n_chat_expand (const G3nChatFormat *format, const char *rendered, gboolean images, gboolean audio);

/* ---------------------------------------------------------------- audio features */

/* audio-features.h — log-mel features exactly as transformers' Gemma3nAudioFeatureExtractor computes them.
 *
 * 16 kHz mono float PCM → [T, feature_size] log-mel frames plus a per-frame validity mask (1 = valid, the
 * processor's input_features_mask). Whole clips follow the processor (zero padding to a multiple of 128
 * samples, truncation at 30 s); a G3nAudioFeatureStream produces the same frames from PCM pushed in pieces.
 */

/* The extractor's settings: preprocessor_config.json keys and transformers' defaults. */
typedef struct {
  int sampling_rate;            /* 16000 */
  int feature_size;             /* mel bins, 128 */
  double frame_length_ms;       /* 32 */
  double hop_length_ms;         /* 10 */
  double min_frequency;         /* 125 Hz */
  double max_frequency;         /* 7600 Hz */
  double preemphasis;           /* 0.97; 0 = none */
  gboolean preemphasis_htk_flavor;
  gboolean fft_overdrive;       /* FFT length doubled */
  double dither;                /* 0 = none (the Gemma 3n value; > 0 adds seeded Gaussian noise) */
  double input_scale_factor;    /* 1 */
  double mel_floor;             /* 1e-5 */
  const double *per_bin_mean;   /* [feature_size] or NULL; copied by g3n_audio_features_new */
  const double *per_bin_stddev; /* [feature_size] or NULL */
  int pad_to_multiple_of;       /* 128: whole clips are zero-padded to a multiple of this */
  int max_samples;              /* 480000: whole clips are truncated to this (0 = no limit) */
} G3nAudioFeatureParams;

typedef struct _G3nAudioFeatures G3nAudioFeatures;

G3nAudioFeatureParams g3n_audio_feature_default_params (void);
G3nAudioFeatures *g3n_audio_features_new (const G3nAudioFeatureParams *params, GError **error);
/* Reads PATH/preprocessor_config.json (or PATH itself when it is a file); defaults when the folder has none. */
G3nAudioFeatures *g3n_audio_features_new_from_file (const char *path, GError **error);
void g3n_audio_features_free (G3nAudioFeatures *fx);

int g3n_audio_features_size (const G3nAudioFeatures *fx);     /* mel bins */
int g3n_audio_features_hop (const G3nAudioFeatures *fx);      /* samples between frames (160) */
int g3n_audio_features_rate (const G3nAudioFeatures *fx);     /* samples per second the PCM must have (16000) */
int g3n_audio_features_window (const G3nAudioFeatures *fx);   /* samples one frame reads (frame length + 1) */
/* Samples a whole clip is truncated to (max_samples; 0 = no limit). */
gsize g3n_audio_features_max_samples (const G3nAudioFeatures *fx);
/* Frames a whole clip of n samples gives (after truncation and padding). */
int g3n_audio_features_n_frames (const G3nAudioFeatures *fx, gsize n_samples);

/* Whole clip: features [n_frames, size] and mask [n_frames] (either may be NULL), n_frames from
 * g3n_audio_features_n_frames(). Non-finite samples are an error. */
gboolean g3n_audio_features_compute (const G3nAudioFeatures *fx, const float *pcm, gsize n_samples, float *features,
                                     guint8 *mask, GError **error);
/* A batch as the processor pads it: every clip zero-padded to the longest (rounded up to pad_to_multiple_of).
 * features [batch, T, size], mask [batch, T]; *n_frames receives T (call with features = NULL to size). */
gboolean g3n_audio_features_compute_batch (const G3nAudioFeatures *fx, const float *const *pcm,
                                           const gsize *n_samples, int batch, float *features, guint8 *mask,
                                           int *n_frames, GError **error);

/* ---------------------------------------------------------------- streaming */

/* Receives frames as soon as they are final: features [n, size], mask [n], `first` = index of features[0]. */
typedef void (*G3nAudioFramesFunc) (const float *features, const guint8 *mask, int first, int n, gpointer user_data);

typedef struct _G3nAudioFeatureStream G3nAudioFeatureStream;

/* fx must outlive the stream. Memory is bounded (one window of samples), whatever the stream's length; the
 * stream is never truncated. */
G3nAudioFeatureStream *g3n_audio_feature_stream_new (const G3nAudioFeatures *fx, G3nAudioFramesFunc func,
                                                     gpointer user_data);
void g3n_audio_feature_stream_free (G3nAudioFeatureStream *s);
/* Appends samples; emits every frame whose window is complete. */
gboolean g3n_audio_feature_stream_push (G3nAudioFeatureStream *s, const float *pcm, gsize n, GError **error);
/* End of clip: pads as a whole clip is padded and emits the remaining frames. The stream can then be reused
 * for a new clip. */
gboolean g3n_audio_feature_stream_finish (G3nAudioFeatureStream *s, GError **error);
/* Samples and frames consumed / emitted so far in this clip. */
guint64 g3n_audio_feature_stream_n_samples (const G3nAudioFeatureStream *s);
int g3n_audio_feature_stream_n_frames (const G3nAudioFeatureStream *s);

/* ---------------------------------------------------------------- audio encoder */

/* audio-encoder.h — Gemma 3n's USM audio tower (Gemma3nAudioEncoder) and embed_audio's soft path, whole clip
 * or streaming.
 *
 * Masks: feature masks are 1 = valid frame (the processor's input_features_mask); tower masks are 1 = padding
 * (the tower's audio_mel_mask), as the reference names them.
 */

/* The tower's weights bound from a model; immutable, so one encoder serves any number of streams and threads
 * at once. */
typedef struct _G3nAudioEncoder G3nAudioEncoder;

/* The model's audio tower: bound and validated (model.audio_tower.*, model.embed_audio.* when present) by the
 * first caller, then shared: every caller gets the same encoder and its prepared weights exist once per
 * model. Each returned encoder holds a reference to the model; g3n_audio_encoder_free drops it. */
G3nAudioEncoder *g3n_audio_encoder_new (G3nModel *model, GError **error);
void g3n_audio_encoder_free (G3nAudioEncoder *enc);

int g3n_audio_encoder_n_hidden (const G3nAudioEncoder *enc);   /* audio hidden size */
int g3n_audio_encoder_n_embd (const G3nAudioEncoder *enc);     /* text hidden size (embeddings) */
int g3n_audio_encoder_n_layers (const G3nAudioEncoder *enc);   /* conformer blocks */
int g3n_audio_encoder_n_features (const G3nAudioEncoder *enc); /* mel bins it expects */
/* audio_soft_tokens_per_image: the placeholder count a prompt reserves for one clip. */
int g3n_audio_encoder_n_soft_tokens (const G3nAudioEncoder *enc);
/* For n_frames feature frames: rows after the sub-sampling convs, and audio tokens after the reduction. */
void g3n_audio_encoder_sizes (const G3nAudioEncoder *enc, int n_frames, int *n_sub, int *n_tokens);

/* What g3n_audio_encode writes; every pointer is optional. */
typedef struct {
  float *sscp;          /* [n_sub, hidden]: sub-sample conv projection output */
  float *blocks;        /* [n_layers, n_sub, hidden]: each conformer block's output */
  float *tower;         /* [n_tokens, hidden]: tower output, zero at padding tokens */
  guint8 *tower_mask;   /* [n_tokens]: 1 = padding */
  float *embeds;        /* [n_tokens, n_embd]: embed_audio soft embeddings of `tower` */
} G3nAudioEncodeOutputs;

/* One clip's features [n_frames, n_features] with mask [n_frames] (1 = valid; NULL = all valid). compute:
 * threads and cancellation (checked per conformer block; NULL = defaults). */
gboolean g3n_audio_encode (const G3nAudioEncoder *enc, const G3nComputeParams *compute, const float *features,
                           int n_frames, int n_features, const guint8 *mask, const G3nAudioEncodeOutputs *out,
                           GError **error);

/* What Gemma3nModel scatters into a prompt's audio placeholders: embeds with padding tokens replaced by, and
 * padded up to n_soft_tokens rows with, the hard embedding of the audio padding id (text vocab_size - 1).
 * out: [n_soft_tokens, n_embd]. */
gboolean g3n_audio_embed_padded (const G3nAudioEncoder *enc, const float *embeds, const guint8 *tower_mask,
                                 int n_tokens, float *out, GError **error);

/* ---------------------------------------------------------------- streaming */

/* Audio tokens as soon as they are final: tower rows [n, hidden], mask [n] (1 = padding), embeds [n, n_embd]
 * (NULL when the model has no embed_audio), `first` = index of the first token in the clip. */
typedef void (*G3nAudioTokensFunc) (const float *tower, const guint8 *tower_mask, const float *embeds, int first,
                                    int n, gpointer user_data);

/* PCM in → feature frames and audio tokens out, with memory bounded whatever the stream's length. Tokens equal
 * g3n_audio_encode's on the whole clip (to float rounding) for clips up to the processor's 30 s; streams are
 * never truncated. Token i (sub-sampled row 4i) is final once feature frame 16i + 6 exists: the sub-sampling
 * convs read 6 frames (60 ms) ahead and everything after them is causal; see g3n_audio_stream_set_min_rows for
 * the batching that adds to this latency. */
typedef struct _G3nAudioStream G3nAudioStream;

/* fx and enc must outlive the stream; either callback may be NULL. */
G3nAudioStream *g3n_audio_stream_new (const G3nAudioFeatures *fx, const G3nAudioEncoder *enc,
                                      G3nAudioFramesFunc on_frames, G3nAudioTokensFunc on_tokens,
                                      gpointer user_data, GError **error);
void g3n_audio_stream_free (G3nAudioStream *s);
/* Final sub-sampled rows (40 ms each) are run through the conformer in batches of `rows` (default: one
 * attention chunk, 12 = 480 ms), at fixed row boundaries, so the tokens are the same however the PCM was
 * split into pushes. 1 gives the lowest latency; larger batches amortise weight traffic. Set it before the
 * first push of a clip. */
void g3n_audio_stream_set_min_rows (G3nAudioStream *s, int rows);
/* Threads and cancellation for the stream's pushes and finish (NULL = defaults); the cancellable is
 * checked per conformer block. A cancelled push or finish (G_IO_ERROR_CANCELLED) abandons the clip: the
 * stream starts over, ready for a new one. */
void g3n_audio_stream_set_compute (G3nAudioStream *s, const G3nComputeParams *compute);
/* Runs on the calling thread (features and conformer); the callbacks are called from it. */
gboolean g3n_audio_stream_push (G3nAudioStream *s, const float *pcm, gsize n, GError **error);
/* Feature frames made elsewhere (a G3nAudioFeatureStream in another thread or pipeline element) instead of
 * PCM: features [n, n_features] with mask [n] (1 = valid frame; NULL = all valid), fed to the conformer as
 * push feeds the frames it computes, so the tokens are the same bits. A clip is fed either PCM or frames;
 * its last frames (those g3n_audio_feature_stream_finish emits) must be pushed before finish. Non-finite
 * values are an error; cancellation as for push. */
gboolean g3n_audio_stream_push_features (G3nAudioStream *s, const float *features, const guint8 *mask, int n,
                                         GError **error);
/* End of clip: pads as a whole clip is padded, emits the remaining frames and tokens, resets for a new clip. */
gboolean g3n_audio_stream_finish (G3nAudioStream *s, GError **error);
/* Abandons the clip without emitting anything more (a flush, a seek); the stream is ready for a new one. */
void g3n_audio_stream_reset (G3nAudioStream *s);

/* ---------------------------------------------------------------- images */

/* image-preprocess.h — images and video frames into Gemma 3n pixel_values.
 *
 * Equal to Gemma3nProcessor's image path (SiglipImageProcessor, torchvision backend): RGB uint8, resize to
 * size.height x size.width with torchvision's antialiased bilinear filter on uint8 (PyTorch's fixed-point
 * kernel, result uint8), then x rescale_factor (float32), optionally (x - mean) / std. The checkpoint's
 * preprocessor_config.json decides every step; its absence means the Gemma 3n defaults.
 */

/* Images larger than this (either side, or in total) are refused before any pixel buffer is allocated. */
#define G3N_IMAGE_MAX_SIDE 16384
#define G3N_IMAGE_MAX_PIXELS (8192 * 8192)

typedef struct {
  int width, height;        /* output size (size.width / size.height), 768 x 768 for Gemma 3n */
  gboolean do_resize;
  gboolean do_rescale;
  double rescale_factor;    /* 1/255 */
  gboolean do_normalize;
  float mean[3], std[3];
} G3nImageParams;

/* The Gemma 3n defaults: resize to 768x768, rescale 1/255, no normalisation. */
G3nImageParams g3n_image_default_params (void);
/* Reads DIR/preprocessor_config.json over the defaults (absent file: defaults). Refuses what this build
 * cannot reproduce exactly (a resample filter other than bilinear). */
gboolean g3n_image_params_load (const char *model_dir, G3nImageParams *params, GError **error);

/* An 8-bit RGB image, packed RGBRGB…, rows without padding. */
typedef struct {
  int width, height;
  guint8 *rgb;
} G3nImage;

void g3n_image_free (G3nImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (G3nImage, g3n_image_free)

/* Decodes a PNG, JPEG, BMP or WebP file (libavcodec) into RGB, as PIL's convert("RGB") would: alpha is
 * dropped, grey and palette images expanded. 4:2:0 JPEGs are upsampled and colour-converted as libjpeg does;
 * libavcodec's IDCT still differs from libjpeg's by a few levels on some pixels. */
G3nImage *g3n_image_load_file (const char *path, GError **error);
/* The same from bytes in memory; `origin` names them in error messages. */
G3nImage *g3n_image_load_data (const guint8 *data, gsize size, const char *origin, GError **error);

typedef enum {
  G3N_PIXEL_RGB24,  /* packed R,G,B */
  G3N_PIXEL_BGR24,
  G3N_PIXEL_RGBA,   /* packed R,G,B,A; alpha ignored */
  G3N_PIXEL_BGRA,
  G3N_PIXEL_I420,   /* planar Y, U, V (4:2:0), BT.601 limited range, converted with libswscale */
} G3nPixelFormat;

/* Copies a raw frame into an RGB image. planes/strides: one entry for packed formats, three for I420. */
G3nImage *g3n_image_from_frame (G3nPixelFormat format, int width, int height, const guint8 *const *planes,
                                const int *strides, GError **error);

/* torchvision/PyTorch antialiased bilinear resize of packed RGB uint8 (align_corners=False), bit-exact with
 * the uint8 kernel: per-axis weights rounded to int16 fixed point, horizontal pass first, each pass rounded
 * and clamped to uint8. */
void g3n_image_resize_bilinear_aa (const guint8 *src, int src_w, int src_h, guint8 *dst, int dst_w, int dst_h);

/* img → pixel_values [3, params->height, params->width] (CHW, float). */
gboolean g3n_image_preprocess (const G3nImageParams *params, const G3nImage *img, float *pixel_values,
                               GError **error);

/* ---------------------------------------------------------------- vision encoder */

/* vision-encoder.h — Gemma 3n's vision tower (timm mobilenetv5_300m_enc) and the soft image embeddings.
 *
 * pixel_values [3, 768, 768] → MobileNetV5 encoder (conv stem, edge-residual, universal inverted residual
 * and mobile multi-query attention blocks, multi-scale fusion adapter) → [2048, 16, 16] → 256 soft tokens,
 * scaled by sqrt(2048) and projected by embed_vision into the text model's space, as
 * Gemma3nModel.get_image_features does.
 */

typedef struct _G3nVisionEncoder G3nVisionEncoder;

/* The model's vision tower: every tensor (model.vision_tower.timm_model.*) bound and validated by the first
 * caller, then shared like the audio tower (one per model; each returned encoder holds a model reference
 * that g3n_vision_encoder_free drops). The architecture is built in, scaled by config
 * vision_config.model_args.channel_multiplier. Encoding keeps no state in the encoder: any number of
 * threads may encode with it at once. */
G3nVisionEncoder *g3n_vision_encoder_new (G3nModel *model, GError **error);

void g3n_vision_encoder_free (G3nVisionEncoder *enc);

int g3n_vision_encoder_image_size (const G3nVisionEncoder *enc);  /* 768: pixel_values is [3, S, S] */
int g3n_vision_encoder_n_channels (const G3nVisionEncoder *enc);  /* 2048 */
int g3n_vision_encoder_n_tokens (const G3nVisionEncoder *enc);    /* 256 (16 x 16) */
int g3n_vision_encoder_n_stats (const G3nVisionEncoder *enc);     /* stem + blocks: rows of block_stats */

/* Runs the tower on pixel_values [3, S, S]; compute: threads and cancellation (checked per block; NULL =
 * defaults). Each output is optional:
 *   tower_out    [n_channels, 16, 16]  (NCHW, the MSFA output after its norm, before any scaling)
 *   image_embeds [n_tokens, text hidden] (needs a checkpoint with embed_vision)
 *   block_stats  [n_stats, 3]: mean, rms, max|x| of the stem and every block output (diagnostics). */
gboolean g3n_vision_encoder_encode (G3nVisionEncoder *enc, const G3nComputeParams *compute,
                                    const float *pixel_values, float *tower_out, float *image_embeds,
                                    float *block_stats, GError **error);

/* ---------------------------------------------------------------- media files */

/* Decodes the audio of any file FFmpeg reads into mono float PCM at sample_rate (16000 for Gemma 3n),
 * stopping after max_samples. The caller frees *pcm with g_free. */
gboolean g3n_media_read_audio (const char *path, int sample_rate, gsize max_samples, float **pcm, gsize *n_samples,
                               GError **error);

/* ---------------------------------------------------------------- session */

/* One live conversation: turns in the chat format, input prefilled as it is added (text, image and audio
 * soft tokens, audio also as a stream), answered by generation. When the context fills it is shifted:
 * whole exchanges (a user turn and its answer) are dropped oldest first and later cached keys re-positioned
 * (RoPE shift), keeping the first exchange (it carries the system prompt) when keep_first_turn is set.
 *
 * Prefill as input arrives: each add prefills what is final of the open user turn at once, on the caller's
 * thread, so a turn's cost is paid while it arrives and generate only prefills its last few tokens. The
 * tokens and numbers are exactly those of the whole turn added at once, however the input was split into
 * calls: text is held until a special token follows it (the tokenizer splits there), soft tokens go in
 * batches of prefill_batch at fixed offsets from their clip's start.
 *
 * Threads: any thread may add input while another generates. One thread at a time computes on the context;
 * input added meanwhile is queued, not waited for, and prefilled by the next call that computes (or by
 * g3n_session_prefill). Calls that need the context (generate, add_model_text, prefill, set_system, save,
 * load, discard_turn) wait for it. Callbacks run with no lock held; calling back into the session from a
 * token callback is allowed for input (it is queued) and for n_past, and refused for calls that need the
 * context (an error instead of a deadlock).
 *
 * Cancellation: with g3n_session_set_cancellable, cancelling stops any of the session's calls within one
 * layer's work with G_IO_ERROR_CANCELLED. The session stays consistent: a cancelled prefill keeps what was
 * prefilled and leaves the rest queued (the next call resumes; g3n_session_discard_turn drops the turn);
 * a cancelled generation keeps the answer up to its last decoded token as the model's turn (the callback
 * may have seen one token more), closed by the next input; a cancelled audio clip (push_audio/end_audio)
 * discards the user turn it was in. Reset the cancellable (g_cancellable_reset) before going on. */
typedef struct _G3nSession G3nSession;

typedef struct {
  int n_ctx;                /* positions; memory grows with use up to this */
  gboolean keep_first_turn; /* never shift out the first exchange (system prompt) */
  int min_free;             /* positions a shift frees beyond what is needed (0: n_ctx / 4) */
  G3nKvType kv_type;        /* storage of the KV cache (default G3N_KV_F32) */
  int n_threads;            /* the session's thread budget (G3nComputeParams); 0 = online cores */
  /* The reference's clip layout (default TRUE): every clip's soft tokens are padded to the processor's
   * count (audio_soft_tokens_per_image, 188 = 30 s) with the padding embedding, as Gemma3nProcessor does.
   * FALSE places only the clip's own tokens between <start_of_audio> and <end_of_audio>: a 5 s clip then
   * costs 32 positions instead of 188, and its answer can differ from the reference's. */
  gboolean audio_padding;
  /* Soft tokens per prefill batch while a clip streams in (default 32 = 5 s of audio): smaller batches
   * prefill sooner after the speech, larger ones read the weights fewer times. */
  int prefill_batch;
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
/* The cancellable every later call of the session checks (NULL: none); the session keeps a reference. */
void g3n_session_set_cancellable (G3nSession *session, GCancellable *cancellable);
/* Before the first user turn: the template prepends it to that turn. */
gboolean g3n_session_set_system (G3nSession *session, const char *text, GError **error);
/* Text of the open user turn (it may not hold the soft-token placeholder strings). */
gboolean g3n_session_add_text (G3nSession *session, const char *text, GError **error);
/* n rows of n_embd: exactly the processor's soft tokens per image / per audio clip. */
gboolean g3n_session_add_image_embeddings (G3nSession *session, const float *embeds, int n, GError **error);
gboolean g3n_session_add_audio_embeddings (G3nSession *session, const float *embeds, int n, GError **error);
/* Raw media, encoded with the model's towers (shared, made on first use; errors name what the checkpoint
 * lacks) on the caller's thread: 16 kHz mono float PCM (cut at 30 s, as the processor does), or a decoded
 * image. add_audio is begin_audio + push_audio + end_audio. */
gboolean g3n_session_add_audio (G3nSession *session, const float *pcm, gsize n_samples, GError **error);
gboolean g3n_session_add_image (G3nSession *session, const G3nImage *image, GError **error);
/* A clip streamed into the open user turn: begin, any number of pushes, end. Pushes encode on the caller's
 * thread and prefill each soft token batch as soon as it is final; end pads the clip (audio_padding) and
 * closes it. Either PCM pushes or embedding pushes (soft tokens from a g3n_audio_stream elsewhere, padding
 * tokens already replaced: n rows of n_embd) make one clip. Audio beyond 30 s (the processor's
 * soft-token count) is dropped. One feeder thread at a time. */
gboolean g3n_session_begin_audio (G3nSession *session, GError **error);
gboolean g3n_session_push_audio (G3nSession *session, const float *pcm, gsize n_samples, GError **error);
gboolean g3n_session_push_audio_embeddings (G3nSession *session, const float *embeds, int n, GError **error);
gboolean g3n_session_end_audio (G3nSession *session, GError **error);
/* Prefills whatever input is queued (waiting for a thread that computes to finish first). */
gboolean g3n_session_prefill (G3nSession *session, GError **error);
/* Forgets the open user turn: its queued input, an open clip, and what of it was prefilled. */
gboolean g3n_session_discard_turn (G3nSession *session, GError **error);
/* A whole model turn (e.g. earlier history): closes the pending user turn first. */
gboolean g3n_session_add_model_text (G3nSession *session, const char *text, GError **error);
/* Closes the open user turn and generates the model's answer (an open clip must be ended first). */
gboolean g3n_session_generate (G3nSession *session, G3nSampler *sampler, int max_tokens, G3nTokenCallback callback,
                               gpointer user_data, G3nStopReason *reason, GError **error);
/* Positions in the context; callable from any thread, also while another computes. */
int g3n_session_n_past (G3nSession *session);
int g3n_session_n_ctx (const G3nSession *session);
G3nContext *g3n_session_get_context (G3nSession *session);
/* Saves the conversation (KV cache and turn state) to a file, between turns (an open user turn is refused);
 * loading replaces everything, open input included, and checks the model's identity. The
 * cache is saved in the session's KV type; loading it into a session of another KV type converts it
 * (F16/BF16 widen exactly to F32; F32 rounds to F16/BF16 as decoding would have stored it). */
gboolean g3n_session_save (G3nSession *session, const char *path, GError **error);
gboolean g3n_session_load (G3nSession *session, const char *path, GError **error);

G_END_DECLS

#endif /* GEMMA3N_H */
