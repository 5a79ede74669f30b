/* cli.h — shared pieces of gemma3n-cli's commands. */
#ifndef G3N_CLI_H
#define G3N_CLI_H

#include "gemma3n.h"

/* Each command parses its own options from argv (argv[0] is the command name) and returns the exit code. */
int g3n_cli_forward (int argc, char **argv);
int g3n_cli_generate (int argc, char **argv);

/* Prints "gemma3n-cli: MESSAGE" on stderr; returns 1 for `return fail (...)`. */
int g3n_cli_fail (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
/* Parses an option context, turning its errors into one line on stderr. */
gboolean g3n_cli_parse (GOptionContext *octx, int *argc, char ***argv);
/* Index of the largest value; the first one on ties, as torch.argmax. */
int g3n_cli_argmax (const float *x, int n);

/* Greedy decoding: feeds `prompt` then picks the argmax n_new times. Writes the new ids and, if
 * `logits` is set, each step's logits ([n_new, n_vocab]). */
gboolean g3n_cli_greedy (G3nContext *ctx, const int32_t *prompt, int n_prompt, int n_new, int32_t *ids,
                         float *logits, GError **error);

#endif
