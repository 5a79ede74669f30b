/* cli-run.c — `gemma3n-cli run`: one multimodal turn (images, audio clips, text) and the streamed answer. */
#include "cli.h"

#include <stdio.h>

gboolean
g3n_cli_kv_type (const char *name, G3nKvType *type)
{
  g_autoptr (GError) error = NULL;
  *type = G3N_KV_F32;
  if (!name || g3n_kv_type_from_string (name, type, &error))
    return TRUE;
  g3n_cli_fail ("--kv-type: %s", error->message);
  return FALSE;
}

G3nSession *
g3n_cli_open_session (G3nModel *model, G3nTokenizer *tok, const char *dir, const char *system, int n_ctx,
                      G3nKvType kv_type, GError **error)
{
  G3nChatFormat *fmt = g3n_chat_format_load (dir, error);
  if (!fmt)
    return NULL;
  G3nSessionParams p = g3n_session_default_params ();
  if (n_ctx > 0)
    p.n_ctx = n_ctx;
  p.kv_type = kv_type;
  G3nSession *session = g3n_session_new (model, tok, fmt, &p, error);
  g3n_chat_format_free (fmt);
  if (session && system && !g3n_session_set_system (session, system, error)) {
    g3n_session_free (session);
    return NULL;
  }
  return session;
}

gboolean
g3n_cli_answer_turn (G3nModel *model, G3nTokenizer *tok, const char *dir, const char *system, char **images,
                     char **audios, const char *prompt, int n_new, int n_ctx, G3nKvType kv_type,
                     const G3nSamplerParams *sp, GError **error)
{
  G3nSession *session = g3n_cli_open_session (model, tok, dir, system, n_ctx, kv_type, error);
  if (!session)
    return FALSE;
  G3nSampler *sampler = g3n_sampler_new (sp);
  gboolean ok = TRUE;
  /* media first, then the question: "<image> Describe this image." */
  for (int i = 0; ok && images && images[i]; i++)
    ok = g3n_cli_media_add_image (session, images[i], error);
  for (int i = 0; ok && audios && audios[i]; i++)
    ok = g3n_cli_media_add_audio (session, audios[i], error);
  if (ok && prompt)
    ok = g3n_session_add_text (session, prompt, error);
  if (ok)
    ok = g3n_session_generate (session, sampler, n_new, g3n_cli_print_piece, NULL, NULL, error);
  if (ok)
    printf ("\n");
  g3n_sampler_free (sampler);
  g3n_session_free (session);
  return ok;
}

int
g3n_cli_run (int argc, char **argv)
{
  g_auto (G3nCliWeights) weights = { 0 };
  g_autofree char *model_dir = NULL, *prompt = NULL, *system = NULL, *tokenizer = NULL, *kv_name = NULL;
  g_auto (GStrv) images = NULL, audios = NULL;
  int n_new = 256, threads = 0, n_ctx = 0;
  G3nCliSampling sampling = { 0 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder (config.json + safetensors)", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "Text of the turn (after the media)", "TEXT" },
    { "image", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &images, "Image file (PNG, JPEG, …); may be repeated", "FILE" },
    { "audio", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &audios, "Audio file (any FFmpeg format; first 30 s); may be "
      "repeated", "FILE" },
    { "system", 0, 0, G_OPTION_ARG_STRING, &system, "System prompt", "TEXT" },
    { "tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tokenizer, "tokenizer.json (default: DIR/tokenizer.json)", "FILE" },
    { "n-predict", 'n', 0, G_OPTION_ARG_INT, &n_new, "Maximum tokens to generate (default 256)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads for the kernels (default: all cores)", "N" },
    { "ctx-size", 'c', 0, G_OPTION_ARG_INT, &n_ctx, "Context size (default 4096)", "N" },
    { "kv-type", 0, 0, G_OPTION_ARG_STRING, &kv_name, G3N_CLI_KV_TYPE_HELP, "TYPE" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- one multimodal turn, answer streamed to stdout");
  g_option_context_set_description (octx, "Example: gemma3n-cli run -m gemma-3n-E2B-it --audio talk.wav -p \"Transcribe this audio.\"\n"
                                          "Images become 256 soft tokens each and audio clips 188 (the processor's\n"
                                          "counts from processor_config.json), placed before the text.");
  g_option_context_add_main_entries (octx, entries, NULL);
  g3n_cli_weights_options (octx, &weights);
  g_option_context_add_group (octx, g3n_cli_sampling_options (&sampling));
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model_dir)
    return g3n_cli_fail ("run: --model is required");
  if (!prompt && !images && !audios)
    return g3n_cli_fail ("run: give at least one of -p, --image, --audio");
  G3nKvType kv_type;
  if (!g3n_cli_kv_type (kv_name, &kv_type))
    return 1;
  g_autoptr (GError) error = NULL;
  G3nSamplerParams sp;
  if (!g3n_cli_sampler_params (&sampling, &sp, &error))
    return g3n_cli_fail ("run: %s", error->message);
  g3n_set_threads (threads);
  G3nModel *model = g3n_cli_load_model (model_dir, &weights, &error);
  if (!model)
    return g3n_cli_fail ("%s", error->message);
  G3nTokenizer *tok = g3n_cli_load_tokenizer (model_dir, tokenizer, &error);
  gboolean ok = tok && g3n_cli_answer_turn (model, tok, model_dir, system, images, audios, prompt, n_new, n_ctx,
                                              kv_type, &sp, &error);
  if (tok)
    g3n_tokenizer_free (tok);
  g3n_model_unref (model);
  return ok ? 0 : g3n_cli_fail ("%s", error->message);
}
