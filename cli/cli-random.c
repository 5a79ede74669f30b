/* cli-random.c — `gemma3n-cli make-random-checkpoint`: a full-size Gemma 3n checkpoint with random weights
 * (g3n_random_checkpoint_write), loaded back to check it. */
#include "cli.h"

#include <stdio.h>

static char *
config_for_shape (const char *shape, GError **error)
{
  char *json = g3n_random_checkpoint_release_config (shape);
  if (json)
    return json;
  g_autoptr (GError) ferr = NULL;
  if (!g_file_get_contents (shape, &json, NULL, &ferr))
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "--shape: not e2b, e4b or a readable config.json: %s",
                 ferr->message);
  return json;
}

/* ---------------------------------------------------------------- verification */

/* Loads the folder as every user would: the text model, then both towers. */
static gboolean
verify (const char *dir, GError **error)
{
  G3nModel *model = g3n_model_load (dir, error);
  if (!model)
    return FALSE;
  G3nAudioEncoder *audio = NULL;
  G3nVisionEncoder *vision = NULL;
  gboolean ok = (!g3n_model_has_audio_tower (model) || (audio = g3n_audio_encoder_new (model, error)))
                && (!g3n_model_has_vision_tower (model) || (vision = g3n_vision_encoder_new (model, error)));
  g3n_audio_encoder_free (audio);
  g3n_vision_encoder_free (vision);
  g3n_model_unref (model);
  return ok;
}

/* ---------------------------------------------------------------- the command */

/* The sizes once planned, then each shard's time (since the previous report). */
static void
print_progress (int shards_done, int n_shards, guint n_tensors, guint64 total, gpointer user_data)
{
  gint64 *t0 = user_data, now = g_get_monotonic_time ();
  if (shards_done == 0)
    fprintf (stderr, "%u tensors, %.2f G parameters, %.2f GB in %d shards\n", n_tensors, total / 2 / 1e9,
             total / 1e9, n_shards);
  else
    fprintf (stderr, "shard %d/%d written (%.1f s)\n", shards_done, n_shards, (now - *t0) / 1e6);
  *t0 = now;
}

int
g3n_cli_make_random_checkpoint (int argc, char **argv)
{
  g_autofree char *shape = NULL;
  gint64 seed = 0;
  int shard_mb = 2000;
  gboolean no_verify = FALSE;
  GOptionEntry entries[] = {
    { "shape", 's', 0, G_OPTION_ARG_STRING, &shape, "e2b, e4b (Google's release configs) or a config.json", "SHAPE" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Seed of the random values (default 0)", "S" },
    { "shard-size", 0, 0, G_OPTION_ARG_INT, &shard_mb, "Largest shard in MB (default 2000)", "MB" },
    { "no-verify", 0, 0, G_OPTION_ARG_NONE, &no_verify, "Skip loading the result back", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("OUT_DIR - write a random full-size checkpoint");
  g_option_context_set_description (
      octx, "Writes config.json, generation/processor configs and BF16 sharded safetensors with every tensor the\n"
            "text model and both towers need, under the release's names, then loads the folder back.\n"
            "Memory use stays small whatever the checkpoint size; E2B needs ~11 GB of disk.");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!shape || argc != 2)
    return g3n_cli_fail ("make-random-checkpoint: --shape and one OUT_DIR are required (see --help)");
  if (shard_mb < 1)
    return g3n_cli_fail ("make-random-checkpoint: --shard-size must be positive");
  g_autoptr (GError) error = NULL;
  g_autofree char *json = config_for_shape (shape, &error);
  gint64 t0 = 0;
  if (!json
      || !g3n_random_checkpoint_write (argv[1], json, (guint64) seed, (guint64) shard_mb * 1000000, print_progress,
                                       &t0, &error))
    return g3n_cli_fail ("%s", error->message);
  if (!no_verify) {
    if (!verify (argv[1], &error))
      return g3n_cli_fail ("written, but it does not load: %s", error->message);
    fprintf (stderr, "verified: text model, audio and vision towers load\n");
  }
  return 0;
}
