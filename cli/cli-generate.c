/* cli-generate.c — `gemma3n-cli generate`: greedy generation from token ids. */
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

/* "2,105, 2364" → ids; FALSE on anything that is not a comma/space separated list of integers. */
static gboolean
parse_ids (const char *text, GArray *ids)
{
  const char *p = text;
  while (*p) {
    while (*p == ',' || g_ascii_isspace (*p))
      p++;
    if (!*p)
      break;
    char *end;
    gint64 v = g_ascii_strtoll (p, &end, 10);
    if (end == p || v < 0 || v > G_MAXINT32)
      return FALSE;
    int32_t id = (int32_t) v;
    g_array_append_val (ids, id);
    p = end;
  }
  return ids->len > 0;
}

int
g3n_cli_generate (int argc, char **argv)
{
  g_autofree char *model_dir = NULL, *prompt_ids = NULL;
  int n_new = 32, threads = 0, n_ctx = 0;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder (config.json + safetensors)", "DIR" },
    { "prompt-ids", 0, 0, G_OPTION_ARG_STRING, &prompt_ids, "Prompt token ids, comma separated", "2,105,…" },
    { "n-predict", 'n', 0, G_OPTION_ARG_INT, &n_new, "Number of tokens to generate (default 32)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads for the kernels (default: all cores)", "N" },
    { "ctx-size", 'c', 0, G_OPTION_ARG_INT, &n_ctx, "Context size (default: the model's maximum)", "N" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- greedy generation from token ids");
  g_option_context_set_description (octx, "Prints the generated token ids on one line, separated by spaces.\n"
                                          "Generation does not stop at end-of-sequence tokens.");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model_dir)
    return g3n_cli_fail ("generate: --model is required");
  if (!prompt_ids)
    return g3n_cli_fail ("generate: --prompt-ids is required");
  if (n_new < 0)
    return g3n_cli_fail ("generate: -n must be >= 0");
  g_autoptr (GArray) prompt = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (!parse_ids (prompt_ids, prompt))
    return g3n_cli_fail ("generate: --prompt-ids '%s' is not a list of token ids", prompt_ids);

  g3n_set_threads (threads);
  g_autoptr (GError) error = NULL;
  G3nModel *model = g3n_model_load (model_dir, &error);
  if (!model)
    return g3n_cli_fail ("%s", error->message);
  G3nContextParams cp = g3n_context_default_params ();
  cp.n_ctx = n_ctx;
  G3nContext *ctx = g3n_context_new (model, &cp, &error);
  g_autofree int32_t *out = g_new (int32_t, MAX (n_new, 1));
  gboolean ok = ctx && g3n_cli_greedy (ctx, (const int32_t *) prompt->data, (int) prompt->len, n_new, out, NULL,
                                       &error);
  if (ok) {
    for (int i = 0; i < n_new; i++)
      printf ("%s%d", i ? " " : "", out[i]);
    printf ("\n");
  }
  g3n_context_free (ctx);
  g3n_model_unref (model);
  return ok ? 0 : g3n_cli_fail ("%s", error->message);
}
