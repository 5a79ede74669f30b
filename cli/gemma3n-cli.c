/* gemma3n-cli — command-line front end of libgemma3n. */
#include "config.h"

#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "forward", g3n_cli_forward, "run the model on tensors from a safetensors file and write its outputs" },
  { "generate", g3n_cli_generate, "generate from a text prompt or from token ids" },
  { "run", g3n_cli_run, "one multimodal turn (--image, --audio, -p) with the answer streamed" },
  { "chat", g3n_cli_chat, "interactive chat (text, /image, /audio), one KV cache across turns" },
  { "preprocess", g3n_cli_preprocess, "an image file into pixel_values (safetensors)" },
  { "make-random-checkpoint", g3n_cli_make_random_checkpoint,
    "write a random full-size checkpoint (e2b, e4b or a config.json) for benchmarks" },
  { "tokenize", g3n_cli_tokenize, "print the token ids of a text" },
  { "detokenize", g3n_cli_detokenize, "print the text of token ids" },
};

int
g3n_cli_fail (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "gemma3n-cli: %s\n", msg);
  return 1;
}

gboolean
g3n_cli_parse (GOptionContext *octx, int *argc, char ***argv)
{
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (octx, argc, argv, &error)) {
    g3n_cli_fail ("%s (see --help)", error->message);
    return FALSE;
  }
  return TRUE;
}

int
g3n_cli_argmax (const float *x, int n)
{
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best])
      best = i;
  return best;
}

static void
usage (FILE *out)
{
  fprintf (out, "Usage: gemma3n-cli COMMAND [OPTION…]\n\nRuns Gemma 3n from a Hugging Face checkpoint folder.\n\n"
                "Commands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\n'gemma3n-cli COMMAND --help' describes a command's options.\n");
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("gemma3n-cli %s\n", PACKAGE_VERSION);
    return 0;
  }
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  g3n_cli_fail ("unknown command '%s' (see gemma3n-cli --help)", argv[1]);
  return 2;
}
