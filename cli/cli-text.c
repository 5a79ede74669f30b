/* cli-text.c — text in, text out: `tokenize`, `detokenize`, and loading the tokenizer, chat format and
 * sampler options that `generate` and `chat` share. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* --model may name a checkpoint folder (its tokenizer.json) or a bare tokenizer.json. */
G3nTokenizer *
g3n_cli_load_tokenizer (const char *model, const char *override, GError **error)
{
  g_autofree char *path = override ? g_strdup (override)
                          : g_file_test (model, G_FILE_TEST_IS_DIR) ? g_build_filename (model, "tokenizer.json", NULL)
                                                                     : g_strdup (model);
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: no tokenizer.json (give one with --tokenizer FILE)", path);
    return NULL;
  }
  return g3n_tokenizer_new_from_file (path, error);
}

gboolean
g3n_cli_parse_ids (const char *text, GArray *ids)
{
  const char *p = text;
  guint before = ids->len;
  while (*p) {
    while (*p == ',' || g_ascii_isspace (*p))
      p++;
    if (!*p)
      break;
    char *end;
    gint64 v = g_ascii_strtoll (p, &end, 10);
    if (end == p || v < 0 || v > G_MAXINT32 || (*end && *end != ',' && !g_ascii_isspace (*end)))
      return FALSE;
    int32_t id = (int32_t) v;
    g_array_append_val (ids, id);
    p = end;
  }
  return ids->len > before;
}

GOptionGroup *
g3n_cli_sampling_options (G3nCliSampling *s)
{
  GOptionEntry entries[] = {
    { "temp", 0, 0, G_OPTION_ARG_DOUBLE, &s->temperature, "Sampling temperature (default 1.0; 0 = greedy)", "T" },
    { "top-k", 0, 0, G_OPTION_ARG_INT, &s->top_k, "Keep the K most likely tokens (default 64; 0 = off)", "K" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &s->top_p, "Nucleus sampling mass (default 0.95; 1 = off)", "P" },
    { "min-p", 0, 0, G_OPTION_ARG_DOUBLE, &s->min_p, "Drop tokens below P × the top probability (default 0)", "P" },
    { "repeat-penalty", 0, 0, G_OPTION_ARG_DOUBLE, &s->repetition_penalty,
      "Penalise tokens already in the context (default 1.0 = off)", "R" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &s->seed, "Random seed (default: from the clock)", "N" },
    { "greedy", 0, 0, G_OPTION_ARG_NONE, &s->greedy, "Always take the most likely token", NULL },
    { NULL },
  };
  G3nSamplerParams d = g3n_sampler_default_params ();
  s->temperature = d.temperature;
  s->top_k = d.top_k;
  s->top_p = d.top_p;
  s->min_p = d.min_p;
  s->repetition_penalty = d.repetition_penalty;
  GOptionGroup *g = g_option_group_new ("sampling", "Sampling (defaults: Gemma's generation_config)",
                                        "Show sampling options", NULL, NULL);
  g_option_group_add_entries (g, entries);
  return g;
}

gboolean
g3n_cli_sampler_params (const G3nCliSampling *s, G3nSamplerParams *p, GError **error)
{
  if (s->temperature < 0 || s->top_k < 0 || s->top_p <= 0 || s->min_p < 0 || s->min_p >= 1
      || s->repetition_penalty <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "sampling options out of range (temp >= 0, top-k >= 0, 0 < top-p, 0 <= min-p < 1, repeat-penalty > 0)");
    return FALSE;
  }
  *p = (G3nSamplerParams) { .temperature = s->greedy ? 0.0f : (float) s->temperature, .top_k = s->top_k,
                            .top_p = (float) s->top_p, .min_p = (float) s->min_p,
                            .repetition_penalty = (float) s->repetition_penalty, .seed = (guint64) s->seed };
  return TRUE;
}

void
g3n_cli_weights_options (GOptionContext *octx, G3nCliWeights *w)
{
  GOptionEntry entries[] = {
    { "quant", 0, 0, G_OPTION_ARG_STRING, &w->quant,
      "Text weights: bf16 (as stored, the default), or q8_0 / q4_0 quantised at load", "TYPE" },
    { "quant-cache", 0, 0, G_OPTION_ARG_FILENAME, &w->quant_cache,
      "With --quant: load the quantised weights from FILE, or quantise and save them there if it does not exist",
      "FILE" },
    { NULL },
  };
  g_option_context_add_main_entries (octx, entries, NULL);
}

void
g3n_cli_weights_clear (G3nCliWeights *w)
{
  g_clear_pointer (&w->quant, g_free);
  g_clear_pointer (&w->quant_cache, g_free);
}

G3nModel *
g3n_cli_load_model (const char *dir, const G3nCliWeights *w, GError **error)
{
  G3nQuantType type = G3N_QUANT_NONE;
  if (w->quant && !g3n_quant_type_from_string (w->quant, &type, error))
    return NULL;
  if (w->quant_cache && type == G3N_QUANT_NONE) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "--quant-cache needs --quant q8_0 or q4_0");
    return NULL;
  }
  G3nModelParams params = g3n_model_default_params ();
  params.quant = type;
  params.quant_cache = w->quant_cache;
  return g3n_model_load_with_params (dir, &params, error);
}

int
g3n_cli_tokenize (int argc, char **argv)
{
  g_autofree char *model = NULL;
  gboolean bos = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Checkpoint folder, or a tokenizer.json", "DIR|FILE" },
    { "bos", 0, 0, G_OPTION_ARG_NONE, &bos, "Add the special tokens the tokenizer's post-processor adds (<bos>)", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("TEXT - print the token ids of TEXT");
  g_option_context_set_description (octx, "Prints the ids on one line separated by spaces, exactly as Hugging Face's\n"
                                          "tokenizer.encode(TEXT, add_special_tokens=False) (with --bos: True).");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model || argc != 2)
    return g3n_cli_fail ("tokenize: needs --model and exactly one TEXT argument");
  g_autoptr (GError) error = NULL;
  G3nTokenizer *tok = g3n_cli_load_tokenizer (model, NULL, &error);
  g_autoptr (GArray) ids = tok ? g3n_tokenizer_encode (tok, argv[1], -1, bos, &error) : NULL;
  if (ids) {
    for (guint i = 0; i < ids->len; i++)
      printf ("%s%d", i ? " " : "", g_array_index (ids, gint32, i));
    printf ("\n");
  }
  if (tok)
    g3n_tokenizer_free (tok);
  return ids ? 0 : g3n_cli_fail ("%s", error->message);
}

int
g3n_cli_detokenize (int argc, char **argv)
{
  g_autofree char *model = NULL;
  gboolean skip = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Checkpoint folder, or a tokenizer.json", "DIR|FILE" },
    { "skip-special", 0, 0, G_OPTION_ARG_NONE, &skip, "Leave out special tokens", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("ID… - print the text of token ids");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model || argc < 2)
    return g3n_cli_fail ("detokenize: needs --model and at least one ID");
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  for (int i = 1; i < argc; i++)
    if (!g3n_cli_parse_ids (argv[i], ids))
      return g3n_cli_fail ("detokenize: '%s' is not a token id", argv[i]);
  g_autoptr (GError) error = NULL;
  G3nTokenizer *tok = g3n_cli_load_tokenizer (model, NULL, &error);
  if (!tok)
    return g3n_cli_fail ("%s", error->message);
  gsize len = 0;
  g_autofree char *text = g3n_tokenizer_decode (tok, (const gint32 *) ids->data, ids->len, skip, &len);
  fwrite (text, 1, len, stdout);
  printf ("\n");
  g3n_tokenizer_free (tok);
  return 0;
}
