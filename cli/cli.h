/* cli.h — shared pieces of gemma3n-cli's commands. */
#ifndef G3N_CLI_H
#define G3N_CLI_H

#include "gemma3n.h"

/* Each command parses its own options from argv (argv[0] is the command name) and returns the exit code. */
int g3n_cli_forward (int argc, char **argv);
int g3n_cli_generate (int argc, char **argv);
int g3n_cli_tokenize (int argc, char **argv);
int g3n_cli_detokenize (int argc, char **argv);
int g3n_cli_chat (int argc, char **argv);
int g3n_cli_preprocess (int argc, char **argv);
int g3n_cli_run (int argc, char **argv);
int g3n_cli_make_random_checkpoint (int argc, char **argv);

/* Sampling options shared by generate and chat. */
typedef struct {
  double temperature, top_p, min_p, repetition_penalty;
  int top_k;
  gint64 seed;
  gboolean greedy;
} G3nCliSampling;
GOptionGroup *g3n_cli_sampling_options (G3nCliSampling *sampling);
gboolean g3n_cli_sampler_params (const G3nCliSampling *sampling, G3nSamplerParams *params, GError **error);
/* --quant TYPE and --quant-cache FILE, for the commands that run the text decoder. */
typedef struct {
  char *quant, *quant_cache;
} G3nCliWeights;
void g3n_cli_weights_options (GOptionContext *octx, G3nCliWeights *weights);
void g3n_cli_weights_clear (G3nCliWeights *weights);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (G3nCliWeights, g3n_cli_weights_clear)
/* Loads DIR with its text weights as the options ask: as stored, quantised, or through the cache file. */
G3nModel *g3n_cli_load_model (const char *dir, const G3nCliWeights *weights, GError **error);
G3nTokenizer *g3n_cli_load_tokenizer (const char *model, const char *override, GError **error);
/* Appends the ids of "2,105, 2364" to ids; FALSE unless it is a list of non-negative integers. */
gboolean g3n_cli_parse_ids (const char *text, GArray *ids);
/* The --kv-type option of the commands that make contexts: its help, and its value (NULL: f32) parsed; on
 * a bad name prints the error and returns FALSE. */
#define G3N_CLI_KV_TYPE_HELP "KV cache storage: f32 (default, reference parity), f16 (half the memory) or bf16"
gboolean g3n_cli_kv_type (const char *name, G3nKvType *type);
/* A session in the checkpoint's chat format (DIR's tokenizer_config.json / processor_config.json). */
G3nSession *g3n_cli_open_session (G3nModel *model, G3nTokenizer *tok, const char *dir, const char *system, int n_ctx,
                                  G3nKvType kv_type, GError **error);
/* One user turn (images, then audio clips, then text) and its answer streamed to stdout. */
gboolean g3n_cli_answer_turn (G3nModel *model, G3nTokenizer *tok, const char *dir, const char *system, char **images,
                              char **audios, const char *prompt, int n_new, int n_ctx, G3nKvType kv_type,
                              const G3nSamplerParams *sp, GError **error);

/* Media files (images, audio clips) into a session's next turn. */
gboolean g3n_cli_media_add_audio (G3nSession *session, const char *path, GError **error);
gboolean g3n_cli_media_add_image (G3nSession *session, const char *path, GError **error);

/* G3nTokenCallback writing each piece to stdout as it comes. */
gboolean g3n_cli_print_piece (int32_t token, const char *text, gpointer unused);

/* Prints "gemma3n-cli: MESSAGE" on stderr; returns 1 for `return fail (...)`. */
int g3n_cli_fail (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
/* Parses an option context, turning its errors into one line on stderr. */
gboolean g3n_cli_parse (GOptionContext *octx, int *argc, char ***argv);
/* Index of the largest value; the first one on ties, as torch.argmax. */
int g3n_cli_argmax (const float *x, int n);

/* Output tensors of `forward`, owning their data until written. */
typedef struct {
  GArray *tensors; /* G3nTensor */
  GPtrArray *data;
} G3nCliOutputs;

/* Adds an output (takes ownership of data, g_free'd). */
void g3n_cli_output (G3nCliOutputs *o, const char *name, G3nDType dtype, void *data, int ndim, const int64_t *shape);
/* An integer id tensor of shape [B, T] (or [T]) as int32, checked; NULL without error when absent. */
int32_t *g3n_cli_read_ids (const G3nSafetensors *in, const char *name, int *B, int *T, GError **error);
/* Audio, vision and multimodal outputs; sets *any when an input was recognised. */
gboolean g3n_cli_forward_towers (G3nModel *model, const G3nSafetensors *in, int n_generate, G3nKvType kv_type,
                                 G3nCliOutputs *o, gboolean *any, GError **error);

/* Greedy decoding: feeds `prompt` then picks the argmax n_new times. Writes the new ids and, if
 * `logits` is set, each step's logits ([n_new, n_vocab]). */
gboolean g3n_cli_greedy (G3nContext *ctx, const int32_t *prompt, int n_prompt, int n_new, int32_t *ids,
                         float *logits, GError **error);

#endif
