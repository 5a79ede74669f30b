/* cli-forward.c — `gemma3n-cli forward`: reads input tensors by the fixtures' names, writes every output it
 * can compute under the names and shapes of the fixtures' MANIFEST.md files. */
#include "cli.h"

#include <string.h>

void
g3n_cli_output (G3nCliOutputs *o, const char *name, G3nDType dtype, void *data, int ndim, const int64_t *shape)
{
  G3nTensor t = { .name = name, .dtype = dtype, .ndim = ndim, .data = data };
  memcpy (t.shape, shape, sizeof (int64_t) * ndim);
  g_array_append_val (o->tensors, t);
  g_ptr_array_add (o->data, data);
}

int32_t *
g3n_cli_read_ids (const G3nSafetensors *in, const char *name, int *B, int *T, GError **error)
{
  const G3nTensor *t = g3n_safetensors_find (in, name);
  if (!t)
    return NULL;
  if ((t->dtype != G3N_DTYPE_I64 && t->dtype != G3N_DTYPE_I32) || t->ndim < 1 || t->ndim > 2
      || g3n_tensor_numel (t) == 0) {
    g_autofree char *s = g3n_shape_to_string (t->ndim, t->shape);
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s: '%s' must be a non-empty I64/I32 tensor of shape [batch, seq] (is %s %s)", t->path, name,
                 g3n_dtype_name (t->dtype), s);
    return NULL;
  }
  *B = t->ndim == 2 ? (int) t->shape[0] : 1;
  *T = (int) t->shape[t->ndim - 1];
  gsize n = (gsize) *B * *T;
  int32_t *ids = g_new (int32_t, n);
  for (gsize i = 0; i < n; i++) {
    gint64 v;
    if (t->dtype == G3N_DTYPE_I64)
      memcpy (&v, (const guint8 *) t->data + 8 * i, 8);
    else {
      gint32 v32;
      memcpy (&v32, (const guint8 *) t->data + 4 * i, 4);
      v = v32;
    }
    if (v < 0 || v > G_MAXINT32) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: '%s' holds an invalid token id %" G_GINT64_FORMAT,
                   t->path, name, v);
      g_free (ids);
      return NULL;
    }
    ids[i] = (int32_t) v;
  }
  return ids;
}

/* text_input_ids → text_logits, text_last_hidden_state, text_per_layer_inputs [, text_hidden_states]. */
static gboolean
forward_text (G3nModel *model, const int32_t *ids, int B, int T, gboolean hidden, G3nKvType kv_type, G3nCliOutputs *o,
              GError **error)
{
  int V = g3n_model_n_vocab (model), H = g3n_model_n_embd (model), L = g3n_model_n_layers (model);
  int A = g3n_model_n_altup (model), P = g3n_model_n_embd_per_layer (model);
  gsize BT = (gsize) B * T;
  float *logits = g_new (float, BT * V), *last = g_new (float, BT * H), *pli = g_new (float, BT * L * P);
  float *hs = hidden ? g_new (float, (gsize) (L + 1) * A * BT * H) : NULL;
  float *hs_one = hidden ? g_new (float, (gsize) (L + 1) * A * T * H) : NULL;
  g3n_cli_output (o, "text_logits", G3N_DTYPE_F32, logits, 3, (int64_t[]) { B, T, V });
  g3n_cli_output (o, "text_last_hidden_state", G3N_DTYPE_F32, last, 3, (int64_t[]) { B, T, H });
  g3n_cli_output (o, "text_per_layer_inputs", G3N_DTYPE_F32, pli, 4, (int64_t[]) { B, T, L, P });
  if (hidden)
    g3n_cli_output (o, "text_hidden_states", G3N_DTYPE_F32, hs, 5, (int64_t[]) { L + 1, A, B, T, H });
  gboolean ok = TRUE;
  for (int b = 0; b < B && ok; b++) {
    G3nContextParams cp = g3n_context_default_params ();
    cp.n_ctx = MAX (T, 1);
    cp.kv_type = kv_type;
    G3nContext *ctx = g3n_context_new (model, &cp, error);
    G3nBatch batch = {
      .n_tokens = T, .ids = ids + (gsize) b * T, .all_logits = TRUE, .logits = logits + (gsize) b * T * V,
      .last_hidden = last + (gsize) b * T * H, .per_layer_inputs = pli + (gsize) b * T * L * P, .hidden_states = hs_one,
    };
    ok = ctx && g3n_context_decode (ctx, &batch, error);
    /* [L+1, A, T, H] of this row into [L+1, A, B, T, H] */
    for (int r = 0; ok && hidden && r < (L + 1) * A; r++)
      memcpy (hs + (((gsize) r * B + b) * T) * H, hs_one + (gsize) r * T * H, sizeof (float) * T * H);
    g3n_context_free (ctx);
  }
  g_free (hs_one);
  return ok;
}

/* generate_prompt_ids → generated_ids [1, N], generated_logits [N, V] (greedy, no EOS stop). */
static gboolean
forward_generate (G3nModel *model, const int32_t *prompt, int T, int n_new, G3nKvType kv_type, G3nCliOutputs *o,
                  GError **error)
{
  int V = g3n_model_n_vocab (model);
  int32_t *ids32 = g_new (int32_t, n_new);
  gint64 *ids = g_new (gint64, n_new);
  float *logits = g_new (float, (gsize) n_new * V);
  g3n_cli_output (o, "generated_ids", G3N_DTYPE_I64, ids, 2, (int64_t[]) { 1, n_new });
  g3n_cli_output (o, "generated_logits", G3N_DTYPE_F32, logits, 2, (int64_t[]) { n_new, V });
  G3nContextParams cp = g3n_context_default_params ();
  cp.n_ctx = T + n_new;
  cp.kv_type = kv_type;
  G3nContext *ctx = g3n_context_new (model, &cp, error);
  gboolean ok = ctx && g3n_cli_greedy (ctx, prompt, T, n_new, ids32, logits, error);
  for (int i = 0; ok && i < n_new; i++)
    ids[i] = ids32[i];
  g3n_context_free (ctx);
  g_free (ids32);
  return ok;
}

static gboolean
run_forward (G3nModel *model, const G3nSafetensors *in, gboolean hidden, int n_generate, int n_mm_generate,
             G3nKvType kv_type, G3nCliOutputs *o, GError **error)
{
  int B, T;
  gboolean any = FALSE;
  g_autofree int32_t *text = g3n_cli_read_ids (in, "text_input_ids", &B, &T, error);
  if (*error)
    return FALSE;
  if (text) {
    any = TRUE;
    if (!forward_text (model, text, B, T, hidden, kv_type, o, error))
      return FALSE;
  }
  if (n_generate > 0 && !g3n_safetensors_find (in, "generate_prompt_ids") && !g3n_safetensors_find (in, "mm_input_ids")) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s: --generate needs 'generate_prompt_ids' or 'mm_input_ids'", g3n_safetensors_path (in));
    return FALSE;
  }
  if (n_generate > 0 && g3n_safetensors_find (in, "generate_prompt_ids")) {
    g_autofree int32_t *prompt = g3n_cli_read_ids (in, "generate_prompt_ids", &B, &T, error);
    if (!prompt)
      return FALSE;
    if (B != 1) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: 'generate_prompt_ids' must hold one prompt",
                   g3n_safetensors_path (in));
      return FALSE;
    }
    any = TRUE;
    if (!forward_generate (model, prompt, T, n_generate, kv_type, o, error))
      return FALSE;
  }
  if (!g3n_cli_forward_towers (model, in, n_mm_generate >= 0 ? n_mm_generate : n_generate, kv_type, o, &any, error))
    return FALSE;
  if (!any)
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s: no input this command recognises (text_input_ids, audio_waveform, input_features, "
                 "pixel_values, mm_input_ids; generate_prompt_ids with --generate)",
                 g3n_safetensors_path (in));
  return any;
}

int
g3n_cli_forward (int argc, char **argv)
{
  g_autofree char *model_dir = NULL, *inputs = NULL, *output = NULL, *kv_name = NULL;
  int threads = 0, n_generate = 0, n_mm_generate = -1;
  gboolean hidden = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder (config.json + safetensors)", "DIR" },
    { "inputs", 'i', 0, G_OPTION_ARG_FILENAME, &inputs, "Input tensors (safetensors)", "IN.safetensors" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Where to write the outputs (safetensors)", "OUT.safetensors" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads for the kernels (default: all cores)", "N" },
    { "hidden-states", 0, 0, G_OPTION_ARG_NONE, &hidden, "Also write text_hidden_states (every layer's AltUp streams)",
      NULL },
    { "generate", 'g', 0, G_OPTION_ARG_INT, &n_generate,
      "Greedy-generate N tokens from generate_prompt_ids (generated_ids, generated_logits) and from the "
      "multimodal prompt (mm_generated_ids, mm_generated_logits)", "N" },
    { "mm-generate", 0, 0, G_OPTION_ARG_INT, &n_mm_generate,
      "Tokens to generate from mm_input_ids when it differs from --generate", "N" },
    { "kv-type", 0, 0, G_OPTION_ARG_STRING, &kv_name, G3N_CLI_KV_TYPE_HELP, "TYPE" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- run the model on named input tensors");
  g_option_context_set_description (
      octx, "Inputs recognised (names as in the fixtures' MANIFEST.md):\n"
            "  text_input_ids [B, T] int64  → text_logits [B, T, V], text_last_hidden_state [B, T, H],\n"
            "                                 text_per_layer_inputs [B, T, layers, P],\n"
            "                                 text_hidden_states [layers+1, altup, B, T, H] (--hidden-states)\n"
            "  generate_prompt_ids [1, T]   → generated_ids [1, N], generated_logits [N, V] (--generate N)\n"
            "Every output is fp32 computed from the checkpoint's weights as stored (with --kv-type f16 or bf16\n"
            "the KV cache rounds keys and values: to measure that deviation against reference outputs).");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model_dir || !inputs || !output)
    return g3n_cli_fail ("forward: --model, --inputs and --output are required");
  if (n_generate < 0)
    return g3n_cli_fail ("forward: --generate must be >= 0");
  G3nKvType kv_type;
  if (!g3n_cli_kv_type (kv_name, &kv_type))
    return 1;

  g3n_set_threads (threads);
  g_autoptr (GError) error = NULL;
  G3nSafetensors *in = g3n_safetensors_open (inputs, &error);
  if (!in)
    return g3n_cli_fail ("%s", error->message);
  G3nModel *model = g3n_model_load (model_dir, &error);
  G3nCliOutputs o = { g_array_new (FALSE, FALSE, sizeof (G3nTensor)), g_ptr_array_new_with_free_func (g_free) };
  gboolean ok = model && run_forward (model, in, hidden, n_generate, n_mm_generate, kv_type, &o, &error)
                && g3n_safetensors_write (output, (const G3nTensor *) o.tensors->data, o.tensors->len, &error);
  g_array_free (o.tensors, TRUE);
  g_ptr_array_free (o.data, TRUE);
  if (model)
    g3n_model_unref (model);
  g3n_safetensors_free (in);
  return ok ? 0 : g3n_cli_fail ("%s", error->message);
}
