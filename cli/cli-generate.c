/* cli-generate.c — `gemma3n-cli generate`: from token ids (greedy by default, ids out) or from a text
 * prompt (chat-formatted unless --raw, Gemma's sampling defaults, text streamed out). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gboolean
g3n_cli_greedy (G3nContext *ctx, const int32_t *prompt, int n_prompt, int n_new, int32_t *ids, float *logits,
                GError **error)
{
  int n_vocab = g3n_model_n_vocab (g3n_context_get_model (ctx));
  g_autofree float *step = g_new (float, n_vocab);
  G3nBatch b = { .n_tokens = n_prompt, .ids = prompt, .logits = step };
  for (int i = 0; i < n_new; i++) {
    if (!g3n_context_decode (ctx, &b, error))
      return FALSE;
    ids[i] = g3n_cli_argmax (step, n_vocab);
    if (logits)
      memcpy (logits + (gsize) i * n_vocab, step, sizeof (float) * n_vocab);
    b.n_tokens = 1;
    b.ids = &ids[i];
  }
  return TRUE;
}

gboolean
g3n_cli_print_piece (int32_t token, const char *text, gpointer unused)
{
  fputs (text, stdout);
  fflush (stdout);
  return TRUE;
}

static gboolean
generate_ids (G3nModel *model, GArray *prompt, int n_new, const G3nContextParams *cp, const G3nSamplerParams *sp,
              gboolean sampled, GError **error)
{
  G3nContext *ctx = g3n_context_new (model, cp, error);
  if (!ctx)
    return FALSE;
  int V = g3n_model_n_vocab (model);
  g_autofree int32_t *out = g_new (int32_t, MAX (n_new, 1));
  gboolean ok;
  if (!sampled) {
    ok = g3n_cli_greedy (ctx, (const int32_t *) prompt->data, (int) prompt->len, n_new, out, NULL, error);
  } else {
    G3nSampler *s = g3n_sampler_new (sp);
    g_autofree float *logits = g_new (float, V);
    for (guint i = 0; i < prompt->len; i++)
      g3n_sampler_accept (s, g_array_index (prompt, int32_t, i));
    G3nBatch b = { .n_tokens = (int) prompt->len, .ids = (const int32_t *) prompt->data, .logits = logits };
    ok = TRUE;
    for (int i = 0; ok && i < n_new; i++) {
      ok = g3n_context_decode (ctx, &b, error);
      out[i] = ok ? g3n_sampler_sample (s, logits, V) : 0;
      b.n_tokens = 1;
      b.ids = &out[i];
    }
    g3n_sampler_free (s);
  }
  for (int i = 0; ok && i < n_new; i++)
    printf ("%s%d", i ? " " : "", out[i]);
  if (ok)
    printf ("\n");
  g3n_context_free (ctx);
  return ok;
}

/* --raw: the prompt as is (with <bos>), no chat turns; stops at EOS / <end_of_turn>. */
static gboolean
generate_raw (G3nModel *model, G3nTokenizer *tok, const char *prompt, int n_new, const G3nContextParams *cp,
              const G3nSamplerParams *sp, GError **error)
{
  g_autoptr (GArray) ids = g3n_tokenizer_encode (tok, prompt, -1, TRUE, error);
  if (!ids)
    return FALSE;
  G3nContext *ctx = g3n_context_new (model, cp, error);
  if (!ctx)
    return FALSE;
  int V = g3n_model_n_vocab (model);
  int32_t eot = g3n_tokenizer_token_to_id (tok, "<end_of_turn>");
  g_autofree float *logits = g_new (float, V);
  G3nSampler *s = g3n_sampler_new (sp);
  for (guint i = 0; i < ids->len; i++)
    g3n_sampler_accept (s, g_array_index (ids, int32_t, i));
  G3nDetokenizer *dt = g3n_detokenizer_new (tok, TRUE);
  GString *piece = g_string_new (NULL);
  int32_t token;
  G3nBatch b = { .n_tokens = (int) ids->len, .ids = (const int32_t *) ids->data, .logits = logits };
  gboolean ok = TRUE;
  for (int i = 0; i < n_new && (ok = g3n_context_decode (ctx, &b, error)); i++) {
    token = g3n_sampler_sample (s, logits, V);
    if (token == eot || g3n_model_is_eos (model, token))
      break;
    g_string_truncate (piece, 0);
    g3n_detokenizer_push (dt, token, piece);
    g3n_cli_print_piece (token, piece->str, NULL);
    b.n_tokens = 1;
    b.ids = &token;
  }
  g_string_truncate (piece, 0);
  g3n_detokenizer_finish (dt, piece);
  printf ("%s\n", piece->str);
  g_string_free (piece, TRUE);
  g3n_detokenizer_free (dt);
  g3n_sampler_free (s);
  g3n_context_free (ctx);
  return ok;
}

int
g3n_cli_generate (int argc, char **argv)
{
  g_auto (G3nCliWeights) weights = { 0 };
  g_autofree char *model_dir = NULL, *prompt_ids = NULL, *prompt = NULL, *system = NULL, *tokenizer = NULL;
  g_autofree char *kv_name = NULL;
  int n_new = 32, threads = 0, n_ctx = 0;
  gboolean raw = FALSE, sample = FALSE;
  G3nCliSampling sampling = { 0 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder (config.json + safetensors)", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "Text prompt (a user turn unless --raw)", "TEXT" },
    { "system", 0, 0, G_OPTION_ARG_STRING, &system, "System prompt (chat mode)", "TEXT" },
    { "raw", 0, 0, G_OPTION_ARG_NONE, &raw, "Feed the prompt as is (after <bos>), without chat turns", NULL },
    { "prompt-ids", 0, 0, G_OPTION_ARG_STRING, &prompt_ids, "Prompt token ids, comma separated; prints ids", "2,105,…" },
    { "sample", 0, 0, G_OPTION_ARG_NONE, &sample, "With --prompt-ids: sample instead of greedy", NULL },
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer, "tokenizer.json (default: DIR/tokenizer.json)", "FILE" },
    { "n-predict", 'n', 0, G_OPTION_ARG_INT, &n_new, "Maximum tokens to generate (default 32)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads for the kernels (default: all cores)", "N" },
    { "ctx-size", 'c', 0, G_OPTION_ARG_INT, &n_ctx, "Context size (default: 4096 for text prompts, the model's "
      "maximum for ids)", "N" },
    { "kv-type", 0, 0, G_OPTION_ARG_STRING, &kv_name, G3N_CLI_KV_TYPE_HELP, "TYPE" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- generate text or token ids");
  g_option_context_set_description (
      octx, "With -p, the prompt becomes a user turn of the Gemma chat format (with --system as its prefix) and the\n"
            "answer streams to stdout, sampled with Gemma's defaults (temperature 1.0, top-k 64, top-p 0.95;\n"
            "--greedy for argmax), stopping at <end_of_turn>, <eos> or -n tokens.\n"
            "With --prompt-ids, generation is greedy (argmax; --sample to sample), does not stop at EOS, and the\n"
            "generated ids are printed on one line.");
  g_option_context_add_main_entries (octx, entries, NULL);
  g3n_cli_weights_options (octx, &weights);
  g_option_context_add_group (octx, g3n_cli_sampling_options (&sampling));
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model_dir)
    return g3n_cli_fail ("generate: --model is required");
  if (!prompt_ids == !prompt)
    return g3n_cli_fail ("generate: give either -p TEXT or --prompt-ids IDS");
  if (n_new < 0 || n_ctx < 0)
    return g3n_cli_fail ("generate: -n and --ctx-size must be >= 0");
  G3nContextParams cp = { .n_ctx = n_ctx };
  if (!g3n_cli_kv_type (kv_name, &cp.kv_type))
    return 1;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (prompt_ids && !g3n_cli_parse_ids (prompt_ids, ids))
    return g3n_cli_fail ("generate: --prompt-ids '%s' is not a list of token ids", prompt_ids);
  g_autoptr (GError) error = NULL;
  G3nSamplerParams sp;
  if (!g3n_cli_sampler_params (&sampling, &sp, &error))
    return g3n_cli_fail ("generate: %s", error->message);

  g3n_set_threads (threads);
  G3nModel *model = g3n_cli_load_model (model_dir, &weights, &error);
  if (!model)
    return g3n_cli_fail ("%s", error->message);
  G3nTokenizer *tok = NULL;
  gboolean ok;
  if (prompt_ids) {
    ok = generate_ids (model, ids, n_new, &cp, &sp, sample, &error);
  } else {
    tok = g3n_cli_load_tokenizer (model_dir, tokenizer, &error);
    ok = tok && (raw ? generate_raw (model, tok, prompt, n_new, &cp, &sp, &error)
                     : g3n_cli_answer_turn (model, tok, model_dir, system, NULL, NULL, prompt, n_new, n_ctx,
                                              cp.kv_type, &sp, &error));
  }
  if (tok)
    g3n_tokenizer_free (tok);
  g3n_model_unref (model);
  return ok ? 0 : g3n_cli_fail ("%s", error->message);
}
