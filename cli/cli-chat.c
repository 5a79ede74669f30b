/* cli-chat.c — `gemma3n-cli chat`: an interactive conversation on one session. The KV cache is kept across
 * turns, so each turn prefills only its own tokens. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void
usage_line (void)
{
  fprintf (stderr, "(type a message; /image FILE and /audio FILE add media to your next turn; /quit ends)\n");
}

/* Handles a /command; returns FALSE on /quit. */
static gboolean
command (G3nSession *session, const char *line, GError **error)
{
  if (g_str_equal (line, "/quit") || g_str_equal (line, "/exit"))
    return FALSE;
  if (g_str_has_prefix (line, "/image "))
    g3n_cli_media_add_image (session, g_strstrip ((char *) line + 7), error);
  else if (g_str_has_prefix (line, "/audio "))
    g3n_cli_media_add_audio (session, g_strstrip ((char *) line + 7), error);
  else
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "unknown command %s", line);
  return TRUE;
}

static gboolean
run_chat (G3nModel *model, G3nTokenizer *tok, const char *dir, const char *system, int n_new, int n_ctx,
          G3nKvType kv_type, const G3nSamplerParams *sp, GError **error)
{
  G3nSession *session = g3n_cli_open_session (model, tok, dir, system, n_ctx, kv_type, error);
  if (!session)
    return FALSE;
  G3nSampler *sampler = g3n_sampler_new (sp);
  usage_line ();
  char line[65536];
  gboolean ok = TRUE;
  for (;;) {
    fprintf (stderr, "> ");
    if (!fgets (line, sizeof line, stdin))
      break;
    g_strchomp (line);
    g_autoptr (GError) turn_error = NULL;
    if (line[0] == '/') {
      if (!command (session, line, &turn_error))
        break;
    } else if (line[0] && g3n_session_add_text (session, line, &turn_error)) {
      g3n_session_generate (session, sampler, n_new, g3n_cli_print_piece, NULL, NULL, &turn_error);
      printf ("\n");
      fflush (stdout);
    }
    if (turn_error) {
      /* a bad turn is reported and the conversation goes on, except when the context cannot take more */
      fprintf (stderr, "gemma3n-cli: %s\n", turn_error->message);
      if (g_error_matches (turn_error, G3N_ERROR, G3N_ERROR_CONTEXT_FULL)) {
        g_propagate_error (error, g_steal_pointer (&turn_error));
        ok = FALSE;
        break;
      }
    }
  }
  g3n_sampler_free (sampler);
  g3n_session_free (session);
  return ok;
}

int
g3n_cli_chat (int argc, char **argv)
{
  g_auto (G3nCliWeights) weights = { 0 };
  g_autofree char *model_dir = NULL, *system = NULL, *tokenizer = NULL, *kv_name = NULL;
  int n_new = 512, threads = 0, n_ctx = 0;
  G3nCliSampling sampling = { 0 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder (config.json + safetensors)", "DIR" },
    { "system", 0, 0, G_OPTION_ARG_STRING, &system, "System prompt", "TEXT" },
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer, "tokenizer.json (default: DIR/tokenizer.json)", "FILE" },
    { "n-predict", 'n', 0, G_OPTION_ARG_INT, &n_new, "Maximum tokens per answer (default 512)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads for the kernels (default: all cores)", "N" },
    { "ctx-size", 'c', 0, G_OPTION_ARG_INT, &n_ctx, "Context size (default 4096); when full, the oldest exchanges "
      "after the first are shifted out", "N" },
    { "kv-type", 0, 0, G_OPTION_ARG_STRING, &kv_name, G3N_CLI_KV_TYPE_HELP, "TYPE" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- interactive chat on standard input");
  g_option_context_set_description (octx, "Each line is a user turn; the answer streams to stdout. Lines starting with\n"
                                          "/image FILE or /audio FILE attach media to the next turn; /quit ends.");
  g_option_context_add_main_entries (octx, entries, NULL);
  g3n_cli_weights_options (octx, &weights);
  g_option_context_add_group (octx, g3n_cli_sampling_options (&sampling));
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model_dir)
    return g3n_cli_fail ("chat: --model is required");
  G3nKvType kv_type;
  if (!g3n_cli_kv_type (kv_name, &kv_type))
    return 1;
  g_autoptr (GError) error = NULL;
  G3nSamplerParams sp;
  if (!g3n_cli_sampler_params (&sampling, &sp, &error))
    return g3n_cli_fail ("chat: %s", error->message);
  g3n_set_threads (threads);
  G3nModel *model = g3n_cli_load_model (model_dir, &weights, &error);
  if (!model)
    return g3n_cli_fail ("%s", error->message);
  G3nTokenizer *tok = g3n_cli_load_tokenizer (model_dir, tokenizer, &error);
  gboolean ok = tok && run_chat (model, tok, model_dir, system, n_new, n_ctx, kv_type, &sp, &error);
  if (tok)
    g3n_tokenizer_free (tok);
  g3n_model_unref (model);
  return ok ? 0 : g3n_cli_fail ("%s", error->message);
}
